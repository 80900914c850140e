//! The pod controller without a cluster: an in-memory API that feeds the
//! controller's own watch back (as the apiserver does), in-memory objects,
//! and fake providers, one that pushes and one that can only be polled.
//! Time is tokio's paused clock unless a test needs the wall clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, Container, EnvVar, EnvVarSource, ObjectReference, Pod,
    PodSpec, PodStatus, ProjectedVolumeSource, Secret, SecretKeySelector,
    ServiceAccountTokenProjection, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cli::SuccessEvents;
use crate::metrics::BackendLabels;
use crate::pod::report::{PodWriter, WriteError};
use crate::provider::{BackendPod, PodKey, ProviderError, ProviderResult, ResolvedPod};

type Events = mpsc::UnboundedSender<WatchEvent>;

fn lean(pod: &Pod) -> LeanPod {
    serde_json::from_value(serde_json::to_value(pod).unwrap()).unwrap()
}

/// The API: pods by name, the writes the controller made, and the watch it feeds.
struct FakeApi {
    pods: Mutex<HashMap<String, Pod>>,
    watch: Events,
    rv: AtomicU64,
    deletes: Mutex<Vec<String>>,
    events: Mutex<Vec<(String, String)>>,
    /// Status writes tried.
    status_writes: AtomicU64,
    /// Refuse status writes as invalid (422).
    invalid: std::sync::atomic::AtomicBool,
}

impl FakeApi {
    /// Stores `pod` with a new resourceVersion and shows it on the watch.
    fn apply(&self, mut pod: Pod) {
        let rv = self.rv.fetch_add(1, Ordering::SeqCst) + 1;
        pod.metadata.resource_version = Some(rv.to_string());
        let name = pod.metadata.name.clone().unwrap();
        self.pods.lock().unwrap().insert(name, pod.clone());
        let _ = self.watch.send(Ok(watcher::Event::Apply(lean(&pod))));
    }

    fn pod(&self, name: &str) -> Option<Pod> {
        self.pods.lock().unwrap().get(name).cloned()
    }

    fn phase(&self, name: &str) -> Option<String> {
        self.pod(name)?.status?.phase
    }

    fn reason(&self, name: &str) -> Option<String> {
        self.pod(name)?.status?.reason
    }

    fn events(&self, reason: &str) -> usize {
        let events = self.events.lock().unwrap();
        events.iter().filter(|(_, r)| r == reason).count()
    }
}

#[async_trait]
impl PodWriter for FakeApi {
    async fn patch_status(
        &self,
        _namespace: &str,
        name: &str,
        uid: &str,
        status: PodStatus,
    ) -> Result<(), WriteError> {
        self.status_writes.fetch_add(1, Ordering::SeqCst);
        if self.invalid.load(Ordering::SeqCst) {
            return Err(WriteError::Invalid("status.podIPs: Invalid value".into()));
        }
        let mut pod = self.pod(name).ok_or(WriteError::Gone)?;
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Err(WriteError::Gone);
        }
        pod.status = Some(status);
        self.apply(pod);
        Ok(())
    }

    async fn delete_pod(&self, _namespace: &str, name: &str, uid: &str) -> Result<(), WriteError> {
        let mut pods = self.pods.lock().unwrap();
        match pods.get(name) {
            Some(p) if p.metadata.uid.as_deref() == Some(uid) => {
                let pod = pods.remove(name).unwrap();
                self.deletes.lock().unwrap().push(uid.to_string());
                let _ = self.watch.send(Ok(watcher::Event::Delete(lean(&pod))));
                Ok(())
            }
            _ => Err(WriteError::Gone),
        }
    }

    async fn event(&self, pod: &ObjectReference, _warning: bool, reason: &str, _note: String) {
        let name = pod.name.clone().unwrap_or_default();
        self.events.lock().unwrap().push((name, reason.to_string()));
    }

    fn success_event(&self, pod: ObjectReference, reason: &'static str, _note: String) {
        let name = pod.name.unwrap_or_default();
        self.events.lock().unwrap().push((name, reason.to_string()));
    }
}

/// ConfigMaps and Secrets of namespace `ns`, and tokens that live `token_ttl`.
#[derive(Default)]
struct FakeObjects {
    config_maps: Mutex<HashMap<String, ConfigMap>>,
    secrets: HashMap<String, Secret>,
    token_ttl: Duration,
}

#[async_trait]
impl ObjectSource for FakeObjects {
    async fn config_map(&self, _ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Ok(self.config_maps.lock().unwrap().get(name).cloned())
    }
    async fn secret(&self, _ns: &str, name: &str) -> Result<Option<Secret>, String> {
        Ok(self.secrets.get(name).cloned())
    }
    async fn token(
        &self,
        _pod: &Pod,
        _sa: &str,
        _audience: Option<&str>,
        _expiration_seconds: i64,
    ) -> Result<(String, SystemTime), String> {
        let now = SystemTime::now();
        let serial = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Ok((format!("token-{serial}"), now + self.token_ttl))
    }
}

/// What the fake provider does on its next `create_pod`.
enum Fault {
    Unavailable(Option<Duration>),
    Invalid,
    Hang,
}

/// A provider holding pods in memory; `pushes` decides whether it notifies.
#[derive(Default)]
struct FakeProvider {
    pushes: bool,
    notifier: OnceLock<StatusNotifier>,
    pods: Mutex<HashMap<PodKey, (ResolvedPod, PodStatus)>>,
    calls: Mutex<Vec<(&'static str, Instant, Duration)>>,
    faults: Mutex<VecDeque<Fault>>,
    /// How long a list takes after it took its snapshot (a slow cloud API).
    list_delay: Duration,
}

fn running() -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.0.0.7".into()),
        ..Default::default()
    }
}

impl FakeProvider {
    fn new(pushes: bool) -> FakeProvider {
        FakeProvider {
            pushes,
            ..Default::default()
        }
    }

    fn holding(self, pod: &Pod) -> FakeProvider {
        let key = PodKey::of(pod).unwrap();
        let resolved = ResolvedPod {
            pod: pod.clone(),
            ..Default::default()
        };
        self.pods.lock().unwrap().insert(key, (resolved, running()));
        self
    }

    fn fail_next(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    fn record(&self, op: &'static str, grace: Duration) {
        self.calls.lock().unwrap().push((op, Instant::now(), grace));
    }

    /// When each call of `op` was made.
    fn times(&self, op: &str) -> Vec<Instant> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.0 == op).map(|c| c.1).collect()
    }

    fn count(&self, op: &str) -> usize {
        self.times(op).len()
    }

    fn resolved(&self, name: &str) -> Option<ResolvedPod> {
        let pods = self.pods.lock().unwrap();
        pods.iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, (r, _))| r.clone())
    }

    /// Changes a workload's phase in the backend (and pushes it, if it pushes).
    fn set_phase(&self, name: &str, phase: &str) {
        let mut pods = self.pods.lock().unwrap();
        let (key, (_, status)) = pods.iter_mut().find(|(k, _)| k.name == name).unwrap();
        status.phase = Some(phase.into());
        if let Some(n) = self.notifier.get().filter(|_| self.pushes) {
            n.pod_status(key.clone(), status.clone());
        }
    }

    /// The workload disappears without the provider being asked (and is pushed, if it pushes).
    fn lose(&self, name: &str) {
        let mut pods = self.pods.lock().unwrap();
        let key = pods.keys().find(|k| k.name == name).cloned().unwrap();
        pods.remove(&key);
        if let Some(n) = self.notifier.get().filter(|_| self.pushes) {
            n.pod_gone(key);
        }
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }
    async fn node_capacity(&self) -> crate::NodeCapacity {
        crate::NodeCapacity::default()
    }
    async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.record("create", Duration::ZERO);
        let fault = self.faults.lock().unwrap().pop_front();
        match fault {
            Some(Fault::Unavailable(None)) => return Err(ProviderError::unavailable("down")),
            Some(Fault::Unavailable(Some(after))) => {
                return Err(ProviderError::unavailable("throttled").retry_after(after));
            }
            Some(Fault::Invalid) => return Err(ProviderError::InvalidInput("no GPUs here".into())),
            Some(Fault::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        let key = pod.key().unwrap();
        self.pods
            .lock()
            .unwrap()
            .insert(key.clone(), (pod.clone(), running()));
        if let Some(n) = self.notifier.get().filter(|_| self.pushes) {
            n.pod_status(key, running());
        }
        Ok(())
    }
    async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.record("update", Duration::ZERO);
        let key = pod.key().unwrap();
        let mut pods = self.pods.lock().unwrap();
        let entry = pods
            .get_mut(&key)
            .ok_or(ProviderError::NotFound(key.to_string()))?;
        entry.0 = pod.clone();
        Ok(())
    }
    async fn delete_pod(&self, key: &PodKey, grace: Duration) -> ProviderResult<()> {
        self.record("delete", grace);
        match self.pods.lock().unwrap().remove(key) {
            Some(_) => Ok(()),
            None => Err(ProviderError::NotFound(key.to_string())),
        }
    }
    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        let pods = self.pods.lock().unwrap();
        let (_, status) = pods
            .get(key)
            .ok_or(ProviderError::NotFound(key.to_string()))?;
        Ok(Arc::new(status.clone()))
    }
    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        self.record("list", Duration::ZERO);
        let listed: Vec<BackendPod> = {
            let pods = self.pods.lock().unwrap();
            pods.iter()
                .map(|(k, (r, s))| BackendPod {
                    key: k.clone(),
                    pod: r.pod.clone(),
                    status: s.clone(),
                })
                .collect()
        };
        tokio::time::sleep(self.list_delay).await;
        Ok(listed)
    }
    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        let _ = self.notifier.set(notifier);
        self.pushes
    }
    fn status_poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

fn pod(name: &str, uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("vk-test".into()),
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn with_env(mut pod: Pod, env: Vec<EnvVar>) -> Pod {
    pod.spec.as_mut().unwrap().containers[0].env = Some(env);
    pod
}

/// A running controller over the fakes.
struct Rig {
    api: Arc<FakeApi>,
    provider: Arc<FakeProvider>,
    objects: Arc<FakeObjects>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config() -> NodeConfig {
    NodeConfig {
        name: "vk-test".into(),
        node_ip: "10.1.0.1".into(),
        kubelet_port: 10250,
        taint: None,
        os: "linux".into(),
        labels: Vec::new(),
        pod_sync_workers: 4,
        full_resync_period: Duration::from_secs(60),
        volume_refresh_period: Duration::from_secs(30),
        cluster_domain: "cluster.local".into(),
        success_events: SuccessEvents::Live,
        provider_call_timeout: Duration::from_secs(5),
        node_restricted: false,
        fence: crate::leader::Fence::open(),
    }
}

/// Starts a controller whose API already holds `existing`.
async fn start(provider: FakeProvider, objects: FakeObjects, existing: Vec<Pod>) -> Rig {
    start_with(config(), provider, objects, existing).await
}

/// [`start`] with the node's settings (a closed fence: a standby).
async fn start_with(
    config: NodeConfig,
    provider: FakeProvider,
    objects: FakeObjects,
    existing: Vec<Pod>,
) -> Rig {
    let (tx, rx) = mpsc::unbounded_channel();
    let api = Arc::new(FakeApi {
        pods: Mutex::default(),
        watch: tx.clone(),
        rv: AtomicU64::new(0),
        deletes: Mutex::default(),
        events: Mutex::default(),
        status_writes: AtomicU64::new(0),
        invalid: Default::default(),
    });
    let _ = tx.send(Ok(watcher::Event::Init));
    for p in existing {
        api.pods
            .lock()
            .unwrap()
            .insert(p.metadata.name.clone().unwrap(), p.clone());
        let _ = tx.send(Ok(watcher::Event::InitApply(lean(&p))));
    }
    let _ = tx.send(Ok(watcher::Event::InitDone));
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let provider = Arc::new(provider);
    let objects = Arc::new(objects);
    let controller = PodController::with_parts(
        &config,
        metrics.clone(),
        api.clone(),
        objects.clone(),
        provider.clone(),
    );
    controller.set_node_allocatable(
        [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let stop = CancellationToken::new();
    let watch = tokio_stream_of(rx);
    tokio::spawn(controller.serve(watch, stop.clone()));
    Rig {
        api,
        provider,
        objects,
        metrics,
        stop,
    }
}

fn tokio_stream_of(
    mut rx: mpsc::UnboundedReceiver<WatchEvent>,
) -> impl futures::Stream<Item = WatchEvent> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Waits (in the test's clock) until `cond` holds, at most `secs` seconds.
async fn until(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Rig {
    fn backend_calls(&self, operation: &'static str, result: &'static str) -> u64 {
        self.metrics
            .backend_calls
            .get_or_create(&BackendLabels { operation, result })
            .get()
    }
}

#[path = "controller_cases.rs"]
mod cases;
