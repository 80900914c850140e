//! The node runtime: registration (or adoption of an existing Node of the same
//! name), the lease heartbeat, node status and the provider's health.
//!
//! Status is written when something changes (health, capacity), when the
//! node's Ready condition in the API is not what this kubelet reports (the
//! node lifecycle controller set it to Unknown during an outage: answered at
//! once, not at the next refresh), and at least every five minutes; the lease
//! is the 10 s heartbeat. A node deleted by someone else is registered again.
//!
//! Health: once the provider answered a ping, it takes
//! [`health::PING_FAILURES_NOT_READY`] failed pings in a row to make the node
//! NotReady (one throttled or slow health check is not an outage).

pub mod health;
pub mod lease;
pub mod restriction;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::health::{Health, HealthGate, ReportedReady, ready_drifted};
use crate::context::NodeContext;
use crate::pod::PodController;
use crate::provider::{NodeCapacity, Provider};

/// How often status is written even when nothing changed: the kubelet's
/// `nodeStatusReportFrequency` default. The lease (every 10 s) is what tells
/// the node lifecycle controller the node is alive; this refresh only keeps
/// the conditions' heartbeat times from going stale.
pub const STATUS_REFRESH: Duration = Duration::from_secs(300);

/// The longest a health check may take (`Provider::ping`): one heartbeat.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest time between two status writes the node watch asks for: a
/// controller that keeps rewriting the condition gets an answer, not a loop.
const DRIFT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The version this kubelet reports in `nodeInfo.kubeletVersion`.
pub fn kubelet_version() -> String {
    format!("v1.35.0-vk-rs.{}", env!("CARGO_PKG_VERSION"))
}

/// The node controller of one node.
pub struct NodeController {
    ctx: Arc<NodeContext>,
    provider: Arc<dyn Provider>,
    pods: Arc<PodController>,
}

impl NodeController {
    /// A controller for the node in `ctx`.
    pub fn new(
        ctx: Arc<NodeContext>,
        provider: Arc<dyn Provider>,
        pods: Arc<PodController>,
    ) -> Self {
        NodeController {
            ctx,
            provider,
            pods,
        }
    }

    /// Registers the node, then heartbeats until `stop`. `registered` is notified
    /// once the node object exists.
    pub async fn run(self, stop: CancellationToken, registered: Arc<Notify>) {
        let name = self.ctx.config.name.clone();
        let deleted = Arc::new(Notify::new());
        let drifted = Arc::new(Notify::new());
        let reported = Arc::new(ReportedReady::default());
        let watch = tokio::spawn(watch_node(
            self.ctx.client.clone(),
            name.clone(),
            deleted.clone(),
            drifted.clone(),
            reported.clone(),
        ));
        let mut gate = HealthGate::default();
        let mut force_status = false;
        let mut last_forced: Option<Instant> = None;
        let mut node_uid = String::new();
        let mut lease_cache = None;
        let mut health = Health {
            ready: true,
            message: String::new(),
        };
        let mut last_status: Option<(Instant, Health, NodeStatus)> = None;
        let mut needs_register = true;
        let mut tick = tokio::time::interval(lease::RENEW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if needs_register {
                match self.register(&health).await {
                    Ok(uid) => {
                        info!(node = %name, "node registered");
                        node_uid = uid;
                        needs_register = false;
                        lease_cache = None;
                        last_status = None;
                        registered.notify_waiters();
                        registered.notify_one();
                    }
                    Err(e) => {
                        warn!(node = %name, error = %e, "node registration failed; retrying in 2s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                            _ = stop.cancelled() => break,
                        }
                    }
                }
            }

            // Bounded: a health check that hangs must not hold the Lease
            // renewals below (the node would go Unknown instead of saying why).
            let ping_timeout = self.ctx.config.provider_call_timeout.min(PING_TIMEOUT);
            let ping = match tokio::time::timeout(ping_timeout, self.provider.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "the backend's health check did not answer within {}s",
                    ping_timeout.as_secs_f64()
                )),
            };
            self.ctx
                .metrics
                .backend("ping", if ping.is_ok() { "ok" } else { "error" });
            if let Err(e) = &ping {
                warn!(node = %name, error = %e, failures = gate.failures() + 1, "the backend's health check failed");
            }
            health = gate.observe(ping);
            let status = self.status(&health, None).await;
            // Only the Ready state counts as a change of health: the message
            // of a failing ping changes while the node is still Ready.
            let due = force_status
                || match &last_status {
                    None => true,
                    Some((at, h, s)) => {
                        at.elapsed() >= STATUS_REFRESH
                            || h.ready != health.ready
                            || (!health.ready && h.message != health.message)
                            || !same_resources(s, &status)
                    }
                };
            let answering_drift = std::mem::take(&mut force_status);
            if due {
                // After the lifecycle controller set the conditions to
                // Unknown, writing them back is a transition: new times.
                let previous = last_status
                    .as_ref()
                    .filter(|_| !answering_drift)
                    .map(|(_, _, s)| s.clone());
                let status = self.status(&health, previous.as_ref()).await;
                match self.write_status(&status).await {
                    Ok(()) => {
                        if !health.ready {
                            warn!(node = %name, reason = %health.message, "backend unhealthy: node NotReady");
                        }
                        reported.set(health.ready);
                        last_status = Some((Instant::now(), health.clone(), status));
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => needs_register = true,
                    Err(e) => {
                        warn!(node = %name, error = %e, "writing node status failed; trying again at the next heartbeat");
                        // The watch will not say it again: remember it.
                        force_status = answering_drift;
                    }
                }
            }
            if !needs_register {
                match lease::renew(&self.ctx, &node_uid, &mut lease_cache).await {
                    Ok(()) => {}
                    Err(e) => warn!(node = %name, error = %e, "lease renewal failed"),
                }
            }

            tokio::select! {
                _ = tick.tick() => {}
                _ = deleted.notified() => {
                    warn!(node = %name, "node object deleted by someone else: registering again");
                    needs_register = true;
                }
                _ = drifted.notified() => {
                    info!(node = %name, "the node's Ready condition is not what this kubelet reports: writing status now");
                    if let Some(at) = last_forced {
                        let wait = DRIFT_MIN_INTERVAL.saturating_sub(at.elapsed());
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    last_forced = Some(Instant::now());
                    force_status = true;
                }
                _ = stop.cancelled() => break,
            }
        }
        watch.abort();
    }

    async fn register(&self, health: &Health) -> Result<String, kube::Error> {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let cap = self.provider.node_capacity().await;
        let desired = self.desired_node(&cap, self.status(health, None).await);
        self.ctx.limiter.acquire().await;
        let existing = api.get_opt(&self.ctx.config.name).await;
        self.ctx.metrics.api("get", "nodes", existing.is_ok());
        let node = match existing? {
            None => {
                self.ctx.limiter.acquire().await;
                self.fenced("create_node")?;
                let res = api.create(&PostParams::default(), &desired).await;
                self.ctx.metrics.api("create", "nodes", res.is_ok());
                match res {
                    Ok(n) => n,
                    // Lost a race with another registration: adopt what is there.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        api.get(&self.ctx.config.name).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            Some(existing) => {
                // Adopt: our labels and taints on top of what others added.
                let mut taints: Vec<Taint> = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| {
                        !desired
                            .spec
                            .iter()
                            .flat_map(|s| s.taints.iter().flatten())
                            .any(|d| d.key == t.key)
                    })
                    .collect();
                taints.extend(
                    desired
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.clone())
                        .unwrap_or_default(),
                );
                let patch = serde_json::json!({
                    "metadata": { "labels": desired.metadata.labels },
                    "spec": { "taints": taints, "providerID": desired.spec.as_ref().and_then(|s| s.provider_id.clone()) },
                });
                self.ctx.limiter.acquire().await;
                self.fenced("patch_node")?;
                let res = api
                    .patch(
                        &self.ctx.config.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                self.ctx.metrics.api("patch", "nodes", res.is_ok());
                res?
            }
        };
        if let Some(status) = &desired.status {
            self.write_status(status).await?;
        }
        Ok(node.metadata.uid.unwrap_or_default())
    }

    fn desired_node(&self, cap: &NodeCapacity, status: NodeStatus) -> Node {
        let cfg = &self.ctx.config;
        let os = cap
            .operating_system
            .clone()
            .unwrap_or_else(|| cfg.os.clone());
        let mut labels: BTreeMap<String, String> = [
            ("type", "virtual-kubelet"),
            ("kubernetes.io/role", "agent"),
            ("kubernetes.io/os", os.as_str()),
            ("beta.kubernetes.io/os", os.as_str()),
            ("kubernetes.io/arch", arch()),
            ("kubernetes.io/hostname", cfg.name.as_str()),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers",
                "true",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.extend(cap.labels.clone());
        labels.extend(cfg.labels.iter().cloned());
        if cfg.node_restricted {
            // `kubernetes.io/role` and its kind are the admin's to set: with
            // them NodeRestriction refuses the whole registration.
            labels.retain(|key, _| restriction::node_may_set_label(key));
        }
        let mut taints: Vec<Taint> = cfg.taint.iter().cloned().collect();
        taints.extend(cap.taints.iter().cloned());
        Node {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                provider_id: cap.provider_id.clone(),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    async fn status(&self, health: &Health, previous: Option<&NodeStatus>) -> NodeStatus {
        let cfg = &self.ctx.config;
        let cap = self.provider.node_capacity().await;
        let resources: BTreeMap<String, Quantity> = cap.capacity.clone();
        self.pods.set_node_allocatable(
            resources
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        );
        let now = Time(Timestamp::now());
        let cond = |type_: &str, ok: bool, reason: &str, message: &str| {
            let status = if ok { "True" } else { "False" };
            let last_transition_time = previous
                .and_then(|p| p.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .or_else(|| Some(now.clone()));
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time,
            }
        };
        let ready_msg = if health.ready {
            "kubelet is ready".to_string()
        } else {
            format!("backend unhealthy: {}", health.message)
        };
        let conditions = vec![
            cond(
                "Ready",
                health.ready,
                if health.ready {
                    "KubeletReady"
                } else {
                    "ProviderUnhealthy"
                },
                &ready_msg,
            ),
            cond(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "NetworkUnavailable",
                false,
                "RouteCreated",
                "provider manages the pod network",
            ),
        ];
        let mut addresses = vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ];
        addresses.extend(cap.addresses.iter().cloned());
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(conditions),
            addresses: Some(addresses),
            // The kubelet API speaks the WebSocket channel protocols itself, so a
            // 1.36+ apiserver may pass streams through untranslated.
            declared_features: Some(vec!["ExtendWebSocketsToKubelet".into()]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(cfg.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: arch().into(),
                operating_system: cap
                    .operating_system
                    .clone()
                    .unwrap_or_else(|| cfg.os.clone()),
                kubelet_version: kubelet_version(),
                kube_proxy_version: String::new(),
                container_runtime_version: format!("vk-rs://{}", self.provider.name()),
                os_image: format!("vk-rs {}", self.provider.name()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The fence of `--leader-elect` before a write of the node's objects.
    fn fenced(&self, op: &'static str) -> Result<(), kube::Error> {
        self.ctx
            .config
            .fence
            .check(op, &self.ctx.config.name)
            .map_err(|e| kube::Error::Service(Box::new(e)))
    }

    async fn write_status(&self, status: &NodeStatus) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let patch = serde_json::json!({ "status": status });
        self.ctx.limiter.acquire().await;
        self.fenced("patch_node_status")?;
        let res = api
            .patch_status(
                &self.ctx.config.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await;
        self.ctx.metrics.api("patch", "nodes/status", res.is_ok());
        res.map(|_| ())
    }
}

fn same_resources(a: &NodeStatus, b: &NodeStatus) -> bool {
    a.capacity == b.capacity && a.addresses == b.addresses
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Watches the node's own object: a deletion (or a relist without it)
/// notifies `deleted`; a Ready condition that is not what this kubelet
/// reported notifies `drifted`.
async fn watch_node(
    client: kube::Client,
    name: String,
    deleted: Arc<Notify>,
    drifted: Arc<Notify>,
    reported: Arc<ReportedReady>,
) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    // `present`: the node existed at the last look; `relisted`: seen in the current relist.
    let mut present = false;
    let mut relisted = false;
    let mut stream = std::pin::pin!(watcher(api, cfg));
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(node)) => {
                present = true;
                if ready_drifted(&node, reported.get()) {
                    drifted.notify_one();
                }
            }
            Ok(watcher::Event::InitApply(node)) => {
                relisted = true;
                if ready_drifted(&node, reported.get()) {
                    drifted.notify_one();
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                present = false;
                deleted.notify_one();
            }
            Ok(watcher::Event::InitDone) => {
                // A relist that no longer contains a node we saw means it was deleted meanwhile.
                if present && !relisted {
                    deleted.notify_one();
                }
                present = relisted;
            }
            Ok(watcher::Event::Init) => relisted = false,
            Err(e) => {
                warn!(node = %name, error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
