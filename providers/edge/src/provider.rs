//! The edge provider of one node: the `vk_core::Provider` implementation over
//! a Docker or Podman engine. A supervisor task per pod ([`crate::pod`]) does
//! the work; this file routes the core's calls to them and to the engine, and
//! runs the one engine event subscription that wakes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PodStatus;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vk_core::provider::{ByteStream, ExecIo, LogOptions, PodUsage, Tunnel};
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;
use vk_core::toolkit::pod_identity::{LABEL_NODE, LABEL_UID, PodIdentity};
use vk_core::{
    BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod,
    StatusNotifier,
};

use crate::engine::{Engine, RECONNECT_DELAY, map_error};
use crate::pod::{self, NodeShared, PodShared, Supervisor, Update};
use crate::spec::{self, LABEL_ROLE, Policy};
use crate::streams;

struct Running {
    shared: Arc<PodShared>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    node: Arc<NodeShared>,
    resources: NodeResources,
    pods: Mutex<HashMap<PodKey, Running>>,
    /// Serialises adoption (list_pods may run concurrently with creates).
    adopt: tokio::sync::Mutex<()>,
    usage: streams::UsageCache,
    events_started: std::sync::atomic::AtomicBool,
}

/// The edge provider of one node. Cheap to clone.
#[derive(Clone)]
pub struct EdgeProvider {
    inner: Arc<Inner>,
}

/// Lists this node's containers (all states), optionally of one pod only.
pub async fn list_containers(
    engine: &Engine,
    node: &str,
    uid: Option<&str>,
) -> ProviderResult<Vec<ContainerSummary>> {
    let mut labels = vec![format!("{LABEL_NODE}={node}")];
    if let Some(uid) = uid {
        labels.push(format!("{LABEL_UID}={uid}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let docker = engine.docker()?;
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    // Podman lists a container that has just exited as `stopped`, a state
    // the client cannot parse, for a few milliseconds: ask again.
    let mut tries = 0;
    loop {
        match docker.list_containers(Some(opts.clone())).await {
            Err(e) if crate::engine::status_of(&e).is_none() && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                // Podman ORs several label filters where Docker ANDs them.
                let wanted = |c: &ContainerSummary| {
                    label(c, LABEL_NODE) == Some(node)
                        && uid.is_none_or(|u| label(c, LABEL_UID) == Some(u))
                };
                return other
                    .map(|cs| cs.into_iter().filter(wanted).collect())
                    .map_err(|e| map_error(e, "listing containers"));
            }
        }
    }
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

impl EdgeProvider {
    /// A provider for `node` on `engine`; `host_ip` is the node's IP.
    pub fn new(
        node: &str,
        engine: Engine,
        policy: Policy,
        resources: NodeResources,
        host_ip: String,
    ) -> EdgeProvider {
        EdgeProvider {
            inner: Arc::new(Inner {
                node: Arc::new(NodeShared {
                    node: node.to_string(),
                    engine,
                    policy,
                    host_ip,
                    notifier: std::sync::OnceLock::new(),
                }),
                resources,
                pods: Mutex::default(),
                adopt: tokio::sync::Mutex::new(()),
                usage: streams::UsageCache::default(),
                events_started: Default::default(),
            }),
        }
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Running>> {
        self.inner.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn engine(&self) -> &Engine {
        &self.inner.node.engine
    }

    pub(crate) fn shared(&self, key: &PodKey) -> ProviderResult<Arc<PodShared>> {
        self.pods()
            .get(key)
            .map(|r| r.shared.clone())
            .ok_or_else(|| ProviderError::NotFound(format!("pod {key}")))
    }

    fn spawn(&self, sup: Supervisor) -> Arc<PodShared> {
        let shared = sup.shared();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(sup.run(cancel.clone()));
        self.pods().insert(
            shared.key.clone(),
            Running {
                shared: shared.clone(),
                cancel,
                task,
            },
        );
        shared
    }

    /// The one engine event subscription of this node: every container event
    /// wakes the supervisor of the pod it belongs to. Reconnects after errors
    /// and wakes every supervisor then (events may have been missed).
    fn start_events(&self) {
        if self
            .inner
            .events_started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let provider = EdgeProvider { inner };
                let docker = match provider.engine().docker() {
                    Ok(d) => d,
                    Err(_) => {
                        drop(provider);
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                };
                let filters = HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    (
                        "label".to_string(),
                        vec![format!("{LABEL_NODE}={}", provider.inner.node.node)],
                    ),
                ]);
                let mut events = docker.events(Some(EventsOptions {
                    filters: Some(filters),
                    ..Default::default()
                }));
                // Anything may have happened while we were not listening.
                provider.wake_all();
                let weak_inner = Arc::downgrade(&provider.inner);
                drop(provider);
                while let Some(ev) = events.next().await {
                    let Some(inner) = weak_inner.upgrade() else {
                        return;
                    };
                    match ev {
                        Ok(ev) => {
                            let attrs = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
                            if let Some(uid) = attrs.get(LABEL_UID) {
                                let pods = inner.pods.lock().unwrap_or_else(|p| p.into_inner());
                                for (k, r) in pods.iter() {
                                    if &k.uid == uid {
                                        r.shared.wake.notify_one();
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "engine event stream failed; resubscribing");
                            break;
                        }
                    }
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        });
    }

    fn wake_all(&self) {
        for r in self.pods().values() {
            r.shared.wake.notify_one();
        }
    }

    /// Finds pods in the engine that no supervisor looks after (after a
    /// restart of vk-edge) and adopts them without touching their containers.
    async fn adopt_from_engine(&self) -> ProviderResult<()> {
        let _guard = self.inner.adopt.lock().await;
        let all = list_containers(self.engine(), &self.inner.node.node, None).await?;
        let mut by_uid: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
        for c in all {
            if let Some(uid) = label(&c, LABEL_UID) {
                by_uid.entry(uid.to_string()).or_default().push(c);
            }
        }
        for (uid, containers) in by_uid {
            let key = containers
                .iter()
                .find(|c| label(c, LABEL_ROLE) == Some("infra"))
                .and_then(|infra| PodIdentity::from_labels(|k| label(infra, k)))
                .map(|id| id.key());
            let Some(key) = key else {
                // Containers without their sandbox: nothing can be run from them.
                warn!(uid = %uid, "removing containers whose infra container is gone");
                let _ = pod::remove_pod(self.engine(), &self.inner.node.node, &uid, Duration::ZERO)
                    .await;
                continue;
            };
            if self.pods().contains_key(&key) {
                continue;
            }
            match Supervisor::adopt(self.inner.node.clone(), key.clone(), &containers) {
                Ok((mut sup, stale)) => {
                    for id in stale {
                        if let Ok(d) = self.engine().docker() {
                            let _ = d
                                .remove_container(
                                    &id,
                                    Some(bollard::query_parameters::RemoveContainerOptions {
                                        force: true,
                                        ..Default::default()
                                    }),
                                )
                                .await;
                        }
                    }
                    sup.observe_once().await;
                    info!(pod = %key, "adopted a pod from the engine");
                    self.spawn(sup);
                }
                Err(e) => {
                    warn!(pod = %key, error = %e, "cannot adopt this pod; removing it");
                    let _ =
                        pod::remove_pod(self.engine(), &self.inner.node.node, &uid, Duration::ZERO)
                            .await;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for EdgeProvider {
    fn name(&self) -> &str {
        "edge"
    }

    /// CPU and memory default to what the engine reports.
    async fn node_capacity(&self) -> NodeCapacity {
        let info = self.engine().info().await.ok().cloned();
        let defaults = CapacityDefaults {
            cpu: info.as_ref().map(|i| i.cpus.to_string()),
            memory: info.as_ref().map(|i| format!("{}Ki", i.memory / 1024)),
            ..Default::default()
        };
        let mut labels = BTreeMap::new();
        if let Some(i) = &info {
            labels.insert(
                "kubernetes.io/arch".to_string(),
                i.arch.oci_name().to_string(),
            );
        }
        NodeCapacity {
            labels,
            operating_system: Some("linux".into()),
            ..node_capacity(&self.inner.resources, defaults)
        }
    }

    async fn ping(&self) -> ProviderResult<()> {
        self.engine().ping().await
    }

    async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        let key = pod.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod without namespace, name or uid".into())
        })?;
        if self.pods().contains_key(&key) {
            return Ok(());
        }
        spec::validate(&pod.pod, &self.inner.node.policy).map_err(ProviderError::InvalidInput)?;
        // A down engine is a retry, not a failed pod.
        self.engine().ping().await?;
        self.start_events();
        let sup = Supervisor::new(
            self.inner.node.clone(),
            key,
            pod.pod.clone(),
            pod.volumes.clone(),
            pod.pull_credentials.clone(),
        )
        .map_err(ProviderError::InvalidInput)?
        .with_pod_ip_env(pod.pod_ip_env.clone());
        self.spawn(sup);
        Ok(())
    }

    async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        let key = pod.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod without namespace, name or uid".into())
        })?;
        let shared = self.shared(&key)?;
        shared.push_update(Update {
            pod: pod.pod.clone(),
            files: Some(pod.volumes.clone()),
            pod_ip_env: pod.pod_ip_env.clone(),
        });
        Ok(())
    }

    /// Ephemeral containers (`kubectl debug`) join the pod's infra
    /// container namespaces (network, IPC, UTS) and, with
    /// `targetContainerName`, that container's process namespace. The
    /// supervisor starts each new one once and never restarts it.
    async fn start_ephemeral_containers(
        &self,
        pod: &ResolvedPod,
        _new: &[String],
    ) -> ProviderResult<()> {
        let key = pod.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod without namespace, name or uid".into())
        })?;
        let ephemeral = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default();
        self.shared(&key)?.push_ephemeral(ephemeral);
        Ok(())
    }

    /// The engine's volumes take new files while the containers run: the
    /// supervisor writes them through the archive API, as for an update.
    async fn refresh_volumes(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.update_pod(pod).await
    }

    async fn delete_pod(&self, key: &PodKey, grace: Duration) -> ProviderResult<()> {
        let running = self.pods().remove(key);
        if let Some(r) = &running {
            r.cancel.cancel();
        }
        if let Some(r) = running {
            let _ = r.task.await;
        }
        let had_any =
            pod::remove_pod(self.engine(), &self.inner.node.node, &key.uid, grace).await?;
        if !had_any {
            return Err(ProviderError::NotFound(format!("pod {key}")));
        }
        Ok(())
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        Ok(Arc::new(self.shared(key)?.status()))
    }

    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        self.start_events();
        self.adopt_from_engine().await?;
        Ok(self
            .pods()
            .values()
            .map(|r| BackendPod {
                key: r.shared.key.clone(),
                pod: r.shared.pod(),
                status: r.shared.status(),
            })
            .collect())
    }

    async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        Ok(self
            .pods()
            .values()
            .map(|r| (r.shared.key.clone(), r.shared.status()))
            .collect())
    }

    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        let _ = self.inner.node.notifier.set(notifier);
        true
    }

    async fn container_logs(
        &self,
        key: &PodKey,
        container: &str,
        opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        let view = self.shared(key)?.view();
        streams::logs(self.engine(), &view, container, opts).await
    }

    async fn exec(
        &self,
        key: &PodKey,
        container: &str,
        command: Vec<String>,
        io: ExecIo,
    ) -> ProviderResult<i32> {
        let view = self.shared(key)?.view();
        streams::exec(self.engine(), &view, container, command, io).await
    }

    async fn attach(&self, key: &PodKey, container: &str, io: ExecIo) -> ProviderResult<i32> {
        let view = self.shared(key)?.view();
        streams::attach(self.engine(), &view, container, io).await
    }

    async fn port_forward(
        &self,
        key: &PodKey,
        port: u16,
        tunnel: Box<dyn Tunnel>,
    ) -> ProviderResult<()> {
        let view = self.shared(key)?.view();
        streams::port_forward(&view, port, tunnel).await
    }

    async fn usage(&self) -> ProviderResult<Vec<PodUsage>> {
        let pods: Vec<(PodKey, crate::pod::PodView)> = self
            .pods()
            .values()
            .map(|r| (r.shared.key.clone(), r.shared.view()))
            .collect();
        streams::usage(self.engine(), &self.inner.usage, pods).await
    }
}
