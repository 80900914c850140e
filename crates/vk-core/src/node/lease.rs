//! The node's heartbeat: a `coordination.k8s.io/v1` Lease in `kube-node-lease`,
//! owned by the Node, renewed every 10 s with a 40 s duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::context::NodeContext;

/// Seconds the control plane waits for a renewal before it considers the node gone.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the lease is renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const NAMESPACE: &str = "kube-node-lease";

/// Renews (or creates) the lease of the node whose UID is `node_uid`. `cached`
/// holds the lease from the previous renewal, so a steady renewal is one write
/// and no read; it is refreshed from the API after a conflict.
pub async fn renew(
    ctx: &NodeContext,
    node_uid: &str,
    cached: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let res = renew_once(ctx, node_uid, cached).await;
    if res.is_err() {
        *cached = None;
    }
    res
}

async fn renew_once(
    ctx: &NodeContext,
    node_uid: &str,
    cached: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let name = &ctx.config.name;
    let now = MicroTime(Timestamp::now());
    let existing = match cached.take() {
        Some(l) => Ok(Some(l)),
        None => {
            ctx.limiter.acquire().await;
            let r = api.get_opt(name).await;
            ctx.metrics.api("get", "leases", r.is_ok());
            r
        }
    };
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.clone(),
        uid: node_uid.to_string(),
        ..Default::default()
    };
    match existing? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(now);
            // A lease left over from an earlier node object of the same name points to
            // the wrong owner: fix it so garbage collection follows the current node.
            lease.metadata.owner_references = Some(vec![owner]);
            ctx.limiter.acquire().await;
            fenced(ctx)?;
            let res = api.replace(name, &PostParams::default(), &lease).await;
            ctx.metrics.api("update", "leases", res.is_ok());
            *cached = Some(res?);
            Ok(())
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            ctx.limiter.acquire().await;
            fenced(ctx)?;
            let res = api.create(&PostParams::default(), &lease).await;
            ctx.metrics.api("create", "leases", res.is_ok());
            *cached = Some(res?);
            Ok(())
        }
    }
}

/// The fence of `--leader-elect`: only the node's leader renews its heartbeat.
fn fenced(ctx: &NodeContext) -> Result<(), kube::Error> {
    ctx.config
        .fence
        .check("renew_node_lease", &ctx.config.name)
        .map_err(|e| kube::Error::Service(Box::new(e)))
}
