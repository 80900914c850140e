//! `vk-bench floor`: the least a kubelet can do and still take pods through
//! their lifecycle, run as a kubelet process like any other so that the
//! harness measures it the same way.
//!
//! Per node: create the Node (Ready, with room for a million pods) and renew
//! its Lease every 10 s, so the control plane keeps it; watch the node's pods
//! (`spec.nodeName=<node>`, as a kubelet must); merge-patch `status.phase:
//! Running` onto each new pod the moment it is seen; and once a pod has a
//! `deletionTimestamp`, delete it with grace 0 and a UID precondition. No
//! rate limit, no backend, no events, no status beyond the phase. What is
//! left is what the apiserver, etcd and the machine cost for the same work.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    Pod, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Semaphore;

/// API calls in flight per node at most: enough to keep the apiserver busy.
const IN_FLIGHT: usize = 64;
const LEASE_RENEW: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 5;

/// Flags of `vk-bench floor`, named like a virtual kubelet's.
#[derive(clap::Args, Debug, Clone)]
pub struct FloorArgs {
    /// Node name (with --nodes N > 1, the prefix of `<name>-0..N-1`).
    #[arg(
        long = "nodename",
        env = "DEFAULT_NODE_NAME",
        default_value = "vk-bench"
    )]
    pub node_name: String,
    /// Number of nodes served.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Kubeconfig of the kubelet's identity.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: std::path::PathBuf,
    /// Port written to the node's `daemonEndpoints` (nothing listens on it).
    #[arg(long = "kubelet-port", env = "KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Accepted and ignored, so the harness can pass the same flags to every kubelet.
    #[arg(long = "kube-api-qps")]
    pub kube_api_qps: Option<f64>,
    /// Accepted and ignored (see --kube-api-qps).
    #[arg(long = "kube-api-burst")]
    pub kube_api_burst: Option<u32>,
}

/// The node names a virtual kubelet serves for `--nodename` and `--nodes`.
pub fn node_names(prefix: &str, nodes: u32) -> Vec<String> {
    if nodes <= 1 {
        vec![prefix.to_string()]
    } else {
        (0..nodes).map(|i| format!("{prefix}-{i}")).collect()
    }
}

/// Runs the floor kubelet until SIGINT or SIGTERM.
pub async fn run(args: FloorArgs) -> Result<()> {
    let client = crate::client_from(&args.kubeconfig).await?;
    let names = node_names(&args.node_name, args.nodes);
    let mut uids = Vec::new();
    for name in &names {
        uids.push(register(&client, name, args.kubelet_port).await?);
    }
    eprintln!("floor: {} node(s) registered", names.len());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(renew_leases(
        client.clone(),
        names.iter().cloned().zip(uids).collect(),
    )));
    for name in names {
        tasks.push(tokio::spawn(serve_pods(client.clone(), name)));
    }
    shutdown_signal().await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn register(client: &Client, name: &str, port: u16) -> Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let status = node_status(port);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("type".to_string(), "virtual-kubelet".to_string()),
                ("kubernetes.io/role".to_string(), "agent".to_string()),
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "virtual-kubelet.io/provider".into(),
                value: Some("floor".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            ..Default::default()
        }),
        status: Some(status.clone()),
    };
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await?,
        Err(e) => return Err(e).with_context(|| format!("creating node {name}")),
    };
    // Status given at creation may be dropped: write it once more.
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .with_context(|| format!("writing the status of node {name}"))?;
    Ok(created.metadata.uid.unwrap_or_default())
}

fn node_status(port: u16) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity("1000".into())),
        ("memory".to_string(), Quantity("4Ti".into())),
        ("pods".to_string(), Quantity("1000000".into())),
    ]);
    let now = Time(Timestamp::now());
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("floor kubelet".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: "127.0.0.1".into(),
        }]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        ..Default::default()
    }
}

async fn renew_leases(client: Client, nodes: Vec<(String, String)>) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut held: Vec<Option<Lease>> = vec![None; nodes.len()];
    let mut tick = tokio::time::interval(LEASE_RENEW);
    loop {
        tick.tick().await;
        for ((name, uid), cached) in nodes.iter().zip(held.iter_mut()) {
            let now = MicroTime(Timestamp::now());
            let res = match cached.take() {
                Some(mut lease) => {
                    if let Some(spec) = lease.spec.as_mut() {
                        spec.renew_time = Some(now);
                    }
                    api.replace(name, &PostParams::default(), &lease).await
                }
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            owner_references: Some(vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid: uid.clone(),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(name.clone()),
                            lease_duration_seconds: Some(40),
                            renew_time: Some(now),
                            ..Default::default()
                        }),
                    };
                    match api.create(&PostParams::default(), &lease).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await,
                        other => other,
                    }
                }
            };
            match res {
                Ok(lease) => *cached = Some(lease),
                Err(e) => eprintln!("floor: renewing the lease of {name}: {e}"),
            }
        }
    }
}

/// Watches one node's pods and takes each through Running and deletion.
async fn serve_pods(client: Client, node: String) {
    let pods: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    // UIDs already patched to Running / already deleted: the watch echoes our
    // own writes, which must not cause more.
    let mut started: HashSet<String> = HashSet::new();
    let mut deleting: HashSet<String> = HashSet::new();
    let mut stream = std::pin::pin!(watcher(pods, cfg).default_backoff());
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = p.metadata.uid.as_ref() {
                    started.remove(uid);
                    deleting.remove(uid);
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("floor: pod watch of {node}: {e}");
                continue;
            }
        };
        let (Some(ns), Some(uid)) = (pod.namespace(), pod.metadata.uid.clone()) else {
            continue;
        };
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if deleting.insert(uid.clone()) {
                let permit = limit.clone().acquire_owned().await;
                tokio::spawn(async move {
                    let _permit = permit;
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    retry(&format!("deleting {ns}/{name}"), || api.delete(&name, &dp)).await;
                });
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Running" | "Succeeded" | "Failed")) {
            started.insert(uid);
            continue;
        }
        if started.insert(uid) {
            let permit = limit.clone().acquire_owned().await;
            tokio::spawn(async move {
                let _permit = permit;
                let patch = Patch::Merge(serde_json::json!({ "status": { "phase": "Running" } }));
                let pp = PatchParams::default();
                retry(&format!("patching {ns}/{name}"), || {
                    api.patch_status(&name, &pp, &patch)
                })
                .await;
            });
        }
    }
}

/// A few attempts with a short pause; 404 and 409 mean someone else finished the job.
async fn retry<T, F, Fut>(what: &str, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for attempt in 1..=ATTEMPTS {
        match call().await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
            Err(e) if attempt == ATTEMPTS => eprintln!("floor: {what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_the_virtual_kubelet_convention() {
        assert_eq!(node_names("vk", 1), vec!["vk"]);
        assert_eq!(node_names("vk", 3), vec!["vk-0", "vk-1", "vk-2"]);
    }
}
