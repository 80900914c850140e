//! The provider contract: what a backend implements so the core can run pods on it.
//!
//! A provider translates a [`Pod`] into its backend's workload and back. Everything
//! else (watching the API, queues, retries, env and volume resolution, token
//! projection, status conditions, events, the lease) belongs to the core and must
//! not be re-implemented here. See the `vk-mock` crate for the worked example.
//!
//! Identity: a backend workload is identified by namespace, name **and UID**
//! ([`PodKey`]). A pod deleted and recreated with the same name has a new UID, so
//! the core can always tell the old workload from the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{NodeAddress, Pod, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::mpsc;

pub use crate::registry::RegistryCredential;

/// Errors a provider returns. The core decides what each means for the pod.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The workload does not exist in the backend.
    #[error("not found in the backend: {0}")]
    NotFound(String),
    /// The pod can never run on this backend as specified: the core fails it with
    /// reason `ProviderFailed` and does not retry.
    #[error("invalid pod for this backend: {0}")]
    InvalidInput(String),
    /// The backend is unavailable or answered with a transient error: retried
    /// with backoff, or after `retry_after` when the backend said when (a
    /// throttled cloud API's `Retry-After`). Build it with
    /// [`ProviderError::unavailable`] and [`ProviderError::retry_after`].
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
        /// When the backend asked to be called again, if it did.
        retry_after: Option<Duration>,
    },
    /// The operation is not offered by this provider.
    #[error("not implemented by this provider: {0}")]
    NotImplemented(&'static str),
}

impl ProviderError {
    /// A transient failure without a retry hint: the core backs off.
    pub fn unavailable(message: impl Into<String>) -> ProviderError {
        ProviderError::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, asking the core to retry no sooner than `after`
    /// (only [`ProviderError::Unavailable`] carries it; others are unchanged).
    pub fn retry_after(self, after: Duration) -> ProviderError {
        match self {
            ProviderError::Unavailable { message, .. } => ProviderError::Unavailable {
                message,
                retry_after: Some(after),
            },
            other => other,
        }
    }

    /// The retry hint of an [`ProviderError::Unavailable`], if any.
    pub fn retry_hint(&self) -> Option<Duration> {
        match self {
            ProviderError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error's message, without the kind's prefix.
    pub fn message(&self) -> &str {
        match self {
            ProviderError::NotFound(m) | ProviderError::InvalidInput(m) => m,
            ProviderError::Unavailable { message, .. } => message,
            ProviderError::NotImplemented(what) => what,
        }
    }
}

/// Result alias for provider calls.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// The identity of one pod in the backend.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PodKey {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// UID of the pod object this workload was created for.
    pub uid: String,
}

impl PodKey {
    /// The key of a pod object, when it has namespace, name and UID.
    pub fn of(pod: &Pod) -> Option<PodKey> {
        Some(PodKey {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }
}

impl PodKey {
    /// Object metadata naming this pod (namespace, name, UID): the start of
    /// the `Pod` a provider reports for a workload it holds (`list_pods`,
    /// `/runningpods/`) when the backend keeps no copy of the pod.
    pub fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// Files of one volume, by relative path, as the core materialised them:
/// configMap, secret, downwardAPI and projected volumes (service-account tokens
/// included). Providers write them wherever their backend mounts files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeFiles {
    /// Relative path → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// File mode requested for the files (defaultMode or item mode), if any.
    pub default_mode: Option<i32>,
    /// The paths (keys of `files`) whose content is a secret: taken from a
    /// Secret (a secret volume, a projected secret source) or a
    /// service-account token. A cloud backend keeps them out of anything it
    /// does not treat as secret (task definitions, tags, plain values).
    pub sensitive: BTreeSet<String>,
}

impl VolumeFiles {
    /// Whether the file at `path` holds secret content.
    pub fn is_sensitive(&self, path: &str) -> bool {
        self.sensitive.contains(path)
    }
}

/// A pod as handed to a provider: the API object with every container's `env`
/// resolved to plain values (envFrom flattened, references and `$(VAR)` expanded,
/// service links added), the files of the volumes the core materialises, and
/// the registry credentials of its image pull secrets.
#[derive(Clone, Debug, Default)]
pub struct ResolvedPod {
    /// The pod. `spec.containers[*].env` holds only literal values; `envFrom` is empty.
    pub pod: Pod,
    /// Materialised volume contents by volume name.
    pub volumes: BTreeMap<String, VolumeFiles>,
    /// Credentials from the Secrets named in `spec.imagePullSecrets`, in the
    /// order the pod lists them (a secret's own entries ordered by registry).
    /// Secrets that are missing or unreadable are left out (the pod got a
    /// `FailedToRetrieveImagePullSecret` event); the pod still runs, as with
    /// the kubelet. Pick the one for an image with [`RegistryCredential::for_image`].
    pub pull_credentials: Vec<RegistryCredential>,
    /// Which env values came from Secrets, by container name (init
    /// containers included): `secretKeyRef`, `envFrom` of a Secret, and
    /// literals whose `$(VAR)` expansion took in one of those. A backend
    /// sends them as its secret kind of value (ACI `secureValue`, ECS
    /// `secrets`), never as plain values. See [`ResolvedPod::is_secret_env`].
    pub secret_env: BTreeMap<String, BTreeSet<String>>,
    /// Set when env reads `status.podIP` but the IP was not known before
    /// the start ([`Provider::allocate_pod_ip`] said `None`, so those values
    /// are ""): see [`ResolvedPod::with_pod_ip`].
    pub pod_ip_env: PodIpEnv,
}

/// What it takes to resolve the pod's env again once its IP is known: the
/// pod as the API has it and the objects its env read. Opaque; its `Debug`
/// shows nothing of the objects (they hold Secret values).
#[derive(Clone, Default)]
pub struct PodIpEnv(Option<Arc<(Pod, crate::pod::env::EnvSources)>>);

impl PodIpEnv {
    /// For `pod` (as the API has it), resolved from `sources` without an IP.
    pub(crate) fn pending(pod: &Pod, sources: &crate::pod::env::EnvSources) -> PodIpEnv {
        PodIpEnv(Some(Arc::new((pod.clone(), sources.clone()))))
    }

    /// Whether env waits for the pod's IP.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }
}

impl PodIpEnv {
    /// The pod with env resolved for `ip`; see [`ResolvedPod::with_pod_ip`].
    pub fn resolve(&self, ip: &str) -> Option<Pod> {
        let (pod, sources) = self.0.as_deref()?;
        let mut sources = sources.clone();
        sources.pod_ip = Some(ip.to_string());
        let mut pod = pod.clone();
        // The same objects resolved once already, so this cannot fail but
        // for a bug; then the values stay as first resolved.
        crate::pod::env::resolve_pod_env(&mut pod, &sources).ok()?;
        Some(pod)
    }
}

impl fmt::Debug for PodIpEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_pending() {
            "PodIpEnv(pending)"
        } else {
            "PodIpEnv(none)"
        })
    }
}

impl ResolvedPod {
    /// The pod with its env resolved again, `status.podIP` and
    /// `status.podIPs` (and every `$(VAR)` that takes them in) now `ip`: for
    /// a provider that learns the pod's IP before it starts the containers,
    /// as the kubelet does with its sandbox (edge: the infra container).
    /// `None` when no env waits for the IP.
    pub fn with_pod_ip(&self, ip: &str) -> Option<Pod> {
        self.pod_ip_env.resolve(ip)
    }

    /// The backend identity of this pod.
    pub fn key(&self) -> Option<PodKey> {
        PodKey::of(&self.pod)
    }

    /// Whether env `name` of container `container` holds a value from a Secret.
    pub fn is_secret_env(&self, container: &str, name: &str) -> bool {
        self.secret_env
            .get(container)
            .is_some_and(|names| names.contains(name))
    }
}

/// A workload the backend holds, as reported by [`Provider::list_pods`].
#[derive(Clone, Debug)]
pub struct BackendPod {
    /// Identity, with the UID of the pod it was created for.
    pub key: PodKey,
    /// The pod object as the provider last received it: resolved, Secret
    /// values included. The core never serves or logs it (`/runningpods/`
    /// shows the API's copy).
    pub pod: Pod,
    /// Current status in the backend.
    pub status: PodStatus,
}

/// What the node looks like from this provider's side.
#[derive(Clone, Debug, Default)]
pub struct NodeCapacity {
    /// Capacity (and allocatable) by resource name: `cpu`, `memory`, `pods`, extended resources.
    pub capacity: BTreeMap<String, Quantity>,
    /// Extra labels for the node.
    pub labels: BTreeMap<String, String>,
    /// Extra taints for the node (the core adds the provider taint itself).
    pub taints: Vec<Taint>,
    /// Extra addresses (the core adds InternalIP and Hostname).
    pub addresses: Vec<NodeAddress>,
    /// `spec.providerID`, if the backend has one.
    pub provider_id: Option<String>,
    /// Operating system of the workloads: `linux` or `windows`.
    pub operating_system: Option<String>,
}

/// A status change pushed by a provider.
#[derive(Clone, Debug)]
pub struct StatusUpdate {
    /// Which pod.
    pub key: PodKey,
    /// Its new status. `None` means the workload is gone from the backend.
    /// Shared: the core keeps it as it is, so a backend that keeps the same
    /// `Arc` holds one copy of each pod's status between the two, not two.
    pub status: Option<Arc<PodStatus>>,
}

/// A Kubernetes event about a pod, reported by a provider (image pulls, probe
/// failures, container kills: what only the backend sees). The core records it
/// on the pod with the node as its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    /// Which pod.
    pub key: PodKey,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// The kubelet's reason (`Pulling`, `Failed`, `BackOff`, `Unhealthy`, `Killing`...).
    pub reason: String,
    /// The message.
    pub message: String,
}

/// The channel a provider pushes status changes (and pod events) into. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StatusNotifier {
    tx: mpsc::UnboundedSender<StatusUpdate>,
    events: Option<mpsc::UnboundedSender<PodEvent>>,
}

impl StatusNotifier {
    /// A notifier and the receiving end the core reads. Events are dropped
    /// unless [`StatusNotifier::with_events`] adds their channel.
    pub fn channel() -> (StatusNotifier, mpsc::UnboundedReceiver<StatusUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (StatusNotifier { tx, events: None }, rx)
    }

    /// The same notifier, with pod events going to `events`.
    pub fn with_events(self, events: mpsc::UnboundedSender<PodEvent>) -> StatusNotifier {
        StatusNotifier {
            events: Some(events),
            ..self
        }
    }

    /// Tell the core to record an event on a pod. Never blocks.
    pub fn pod_event(&self, key: PodKey, warning: bool, reason: &str, message: String) {
        if let Some(tx) = &self.events {
            let _ = tx.send(PodEvent {
                key,
                warning,
                reason: reason.to_string(),
                message,
            });
        }
    }

    /// Tell the core that a pod's status changed. Never blocks; a closed core is ignored.
    pub fn pod_status(&self, key: PodKey, status: impl Into<Arc<PodStatus>>) {
        let _ = self.tx.send(StatusUpdate {
            key,
            status: Some(status.into()),
        });
    }

    /// Tell the core that a pod's workload vanished from the backend.
    pub fn pod_gone(&self, key: PodKey) {
        let _ = self.tx.send(StatusUpdate { key, status: None });
    }
}

/// Options of a `/containerLogs` request, validated by the core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the client goes away or the container ends.
    pub follow: bool,
    /// Logs of the previous instance of a restarted container.
    pub previous: bool,
    /// Prefix each line with an RFC3339Nano timestamp.
    pub timestamps: bool,
    /// Only lines at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes (the core enforces it too).
    pub limit_bytes: Option<u64>,
}

/// A stream of bytes from a backend (logs).
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// A terminal size sent by a client (`resize` channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client side of an exec or attach session, as the provider sees it.
pub struct ExecIo {
    /// Client input (`None` when the client sends none); ends when the client closes stdin.
    pub stdin: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    /// Output to the client's stdout (`None` when not requested).
    pub stdout: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    /// Output to the client's stderr (`None` when not requested or with a TTY).
    pub stderr: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    /// A terminal was requested.
    pub tty: bool,
    /// Terminal size changes.
    pub resize: Option<tokio::sync::mpsc::Receiver<TermSize>>,
}

/// A bidirectional byte stream handed to [`Provider::port_forward`].
pub trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Tunnel for T {}

/// CPU and memory usage of one container, for `/stats/summary` and `/metrics/resource`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// When the container started.
    pub start_time: Option<jiff::Timestamp>,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nanoseconds: u64,
    /// Current CPU usage in nanocores.
    pub cpu_usage_nano_cores: u64,
    /// Working set in bytes.
    pub memory_working_set_bytes: u64,
    /// Usage in bytes.
    pub memory_usage_bytes: u64,
}

/// Usage of one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodUsage {
    /// Which pod.
    pub key: PodKey,
    /// When it started.
    pub start_time: Option<jiff::Timestamp>,
    /// Its containers.
    pub containers: Vec<ContainerUsage>,
}

/// A streaming request of the kubelet API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// A request budget for a provider's backend calls: a cloud API's rate limit
/// (ECS, ARM), kept by the core for the pod lifecycle calls so that a burst
/// of pods waits in the core's queue instead of being throttled by the cloud.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallRateLimit {
    /// Calls per second, sustained.
    pub qps: f64,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
}

/// The backend contract. All methods must be idempotent: the core retries after
/// errors and after restarts.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Short provider name, used in the default taint `virtual-kubelet.io/provider=<name>`.
    fn name(&self) -> &str;

    /// Node capacity, labels, taints and addresses. Called at registration and on each status refresh.
    async fn node_capacity(&self) -> NodeCapacity;

    /// Health of the backend. An error turns the node NotReady with its message.
    async fn ping(&self) -> ProviderResult<()> {
        Ok(())
    }

    /// The IP the pod will have, when the backend can tell before the pod starts.
    /// Called only for pods whose env reads `status.podIP`, right before
    /// [`Provider::create_pod`]; with the default (`None`) such variables are ""
    /// in [`ResolvedPod::pod`], and [`ResolvedPod::with_pod_ip`] resolves them
    /// once the backend has given the pod its IP.
    async fn allocate_pod_ip(&self, _key: &PodKey) -> ProviderResult<Option<String>> {
        Ok(None)
    }

    /// Start the workload. Called only when the backend does not hold this [`PodKey`].
    async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()>;

    /// Apply a changed spec to an existing workload: the core calls it when
    /// what a backend can act on changed (images, `activeDeadlineSeconds`),
    /// with the volume files as they are now. Reported as `ProviderUpdateSuccess`.
    async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()>;

    /// New contents of the materialised volume files of a running workload:
    /// a renewed service-account token, a ConfigMap or Secret that changed
    /// (seen within `--volume-refresh-period`), labels read by a downwardAPI
    /// file. Called only when a file differs from what the backend last got.
    ///
    /// The default keeps the files the workload started with, which is what
    /// a backend that cannot swap files into a running workload (most cloud
    /// APIs) does: the core records that and calls again only at the next
    /// refresh. An error is retried at the next refresh too, never in a
    /// tight loop, and never fails the pod.
    async fn refresh_volumes(&self, _pod: &ResolvedPod) -> ProviderResult<()> {
        Err(ProviderError::NotImplemented("volume refresh"))
    }

    /// Starts the pod's ephemeral containers (`spec.ephemeralContainers`,
    /// what `kubectl debug` adds to a running pod) named in `new`, inside the
    /// running workload: each joins the pod's namespaces (network, IPC, UTS;
    /// and the process namespace of its `targetContainerName`, when set).
    /// `pod` is the whole resolved pod, env of the ephemeral containers
    /// resolved too. Each one is started once and never restarted; its
    /// status goes into `status.ephemeralContainerStatuses` (`ready` false,
    /// `restartCount` 0), and exec, attach and logs reach it by name.
    ///
    /// Must be idempotent: after a restart of the process, the core may hand
    /// over again a container the backend already started (or ran to its
    /// end), which must not run a second time.
    ///
    /// The default refuses ([`ProviderError::NotImplemented`]): the core
    /// records a Warning event naming the provider and reports the
    /// container Terminated with that message, so that `kubectl debug`
    /// fails at once instead of waiting for a container that never comes.
    /// [`ProviderError::InvalidInput`] is a refusal too; other errors are retried.
    async fn start_ephemeral_containers(
        &self,
        _pod: &ResolvedPod,
        _new: &[String],
    ) -> ProviderResult<()> {
        Err(ProviderError::NotImplemented("ephemeral containers"))
    }

    /// Stop and remove the workload, honouring `grace` before killing it. Returns
    /// once the backend no longer runs it; [`ProviderError::NotFound`] when it was already gone.
    async fn delete_pod(&self, key: &PodKey, grace: Duration) -> ProviderResult<()>;

    /// Status of one workload (shared, as in [`StatusUpdate`]).
    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>>;

    /// Every workload this backend holds for this node (adoption, orphan removal, resync).
    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>>;

    /// Called once when this replica becomes the node's leader
    /// (`--leader-elect`), before the core adopts the backend's workloads
    /// with [`Provider::list_pods`]. Another replica may have changed the
    /// backend while this one stood by: a provider that keeps the backend's
    /// state in the process reloads it here. It must not mutate the backend.
    async fn became_leader(&self) -> ProviderResult<()> {
        Ok(())
    }

    /// Identity and status of every workload: all the periodic reconcile reads.
    /// The default takes them from [`Provider::list_pods`]; a provider that
    /// keeps whole pods in memory should answer without copying them (the
    /// reconcile runs every minute over every pod of the node).
    async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        Ok(self
            .list_pods()
            .await?
            .into_iter()
            .map(|p| (p.key, p.status))
            .collect())
    }

    /// Subscribe to status pushes. Providers that can push return `true` after storing
    /// the notifier; the core then relies on pushes and a slow periodic reconcile.
    /// Providers that cannot push return `false` and are reconciled every
    /// [`Provider::status_poll_interval`].
    fn notify_status(&self, _notifier: StatusNotifier) -> bool {
        false
    }

    /// How often the core lists the backend to reconcile statuses when the provider does not push.
    fn status_poll_interval(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// The volume types this provider honours, spelt as their field in the
    /// API (`emptyDir`, `configMap`, `secret`, `downwardAPI`, `projected`,
    /// `persistentVolumeClaim`, `hostPath`, `nfs`, `csi`...). A pod with a
    /// volume of another type is refused before it reaches the provider
    /// (event and pod reason `UnsupportedVolume`, phase Failed), instead of
    /// running without it. `None` (the default): every type is passed on.
    fn volume_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Whether this provider serves a streaming request (`exec`, `attach`,
    /// `port-forward`) at all: `Err(NotImplemented(..))` makes the kubelet
    /// API answer 501 with that message *before* upgrading the connection,
    /// so `kubectl` shows it as the error instead of a stream that ends at
    /// once. The default serves all three (the provider's method may still
    /// fail per call).
    fn stream_support(&self, _kind: StreamKind) -> ProviderResult<()> {
        Ok(())
    }

    /// The budget the core keeps for this provider's pod lifecycle calls
    /// (create, update, refresh, delete, status, list); `None`: unlimited.
    fn call_rate_limit(&self) -> Option<CallRateLimit> {
        None
    }

    // ---- Optional capabilities: the kubelet API answers 501 for the ones a provider lacks.

    /// A container's logs, honouring `opts` (the core also enforces `limit_bytes`).
    async fn container_logs(
        &self,
        _key: &PodKey,
        _container: &str,
        _opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        Err(ProviderError::NotImplemented("container logs"))
    }

    /// Runs `command` in a container; returns its exit code.
    async fn exec(
        &self,
        _key: &PodKey,
        _container: &str,
        _command: Vec<String>,
        _io: ExecIo,
    ) -> ProviderResult<i32> {
        Err(ProviderError::NotImplemented("exec"))
    }

    /// Attaches to a container's main process; returns its exit code when it ends.
    async fn attach(&self, _key: &PodKey, _container: &str, _io: ExecIo) -> ProviderResult<i32> {
        Err(ProviderError::NotImplemented("attach"))
    }

    /// Carries one port-forward connection to `port` of the pod until either side closes.
    async fn port_forward(
        &self,
        _key: &PodKey,
        _port: u16,
        _tunnel: Box<dyn Tunnel>,
    ) -> ProviderResult<()> {
        Err(ProviderError::NotImplemented("port-forward"))
    }

    /// CPU and memory usage of every pod.
    async fn usage(&self) -> ProviderResult<Vec<PodUsage>> {
        Err(ProviderError::NotImplemented("stats"))
    }
}
