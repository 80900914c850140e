//! The mock backend: an in-memory table of pods, thread-safe, with scripted
//! lifecycles, an optional state file and a health switch.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::warn;
use vk_core::provider::{ByteStream, ExecIo, LogOptions, PodUsage, Tunnel};
use vk_core::toolkit::container_status::{
    self as status, Termination, reason, running, terminated, waiting,
};
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;
use vk_core::toolkit::restart::{
    BackOff, BackOffPolicy, crash_loop_back_off, restart_policy, should_restart,
};
use vk_core::{
    BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, RegistryCredential,
    ResolvedPod, StatusNotifier, VolumeFiles,
};

use crate::streams;

use crate::ipam::IpAllocator;
use crate::script::{FailCreate, Script};
use crate::state::{self, StoredPod};

/// The resolved pod as the backend keeps it: its JSON, as a real backend
/// keeps the definition it was given. A small pod is about a kilobyte of
/// JSON and several as a `Pod` (every optional field of the spec, its
/// containers and their probes is stored inline), so at 10,000 pods the
/// parsed copy was the largest part of the process's memory. It is parsed
/// back only on the rare paths: exec, listing for adoption, the state file.
/// The API's status at the time is left out: the backend has its own.
struct PodJson(Box<str>);

/// What [`PodJson`] stores: a `Pod` without its status.
#[derive(Serialize)]
struct PodDefinition<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<&'a PodSpec>,
}

impl PodJson {
    fn of(pod: &Pod) -> ProviderResult<Self> {
        let definition = PodDefinition {
            api_version: "v1",
            kind: "Pod",
            metadata: &pod.metadata,
            spec: pod.spec.as_ref(),
        };
        serde_json::to_string(&definition)
            .map(|s| PodJson(s.into_boxed_str()))
            .map_err(|e| ProviderError::InvalidInput(format!("pod cannot be stored: {e}")))
    }

    fn pod(&self) -> ProviderResult<Pod> {
        serde_json::from_str(&self.0)
            .map_err(|e| ProviderError::unavailable(format!("stored pod is unreadable: {e}")))
    }
}

struct MockPod {
    pod: PodJson,
    volumes: BTreeMap<String, VolumeFiles>,
    /// Container → registry of the pull credential its image would be pulled
    /// with (what a real backend hands its image pull).
    pulls: BTreeMap<String, String>,
    ip: Ipv4Addr,
    /// Shared with the core (see `StatusUpdate`): changed copy-on-write.
    status: Arc<PodStatus>,
    script: Option<Script>,
    timeline: Option<JoinHandle<()>>,
}

struct Inner {
    node: String,
    resources: NodeResources,
    ips: Arc<IpAllocator>,
    // Boxed: a `MockPod` holds a whole Pod inline (kilobytes), and a map
    // stores its values inline in every slot, used or not.
    pods: Mutex<HashMap<PodKey, Box<MockPod>>>,
    reserved: Mutex<HashMap<PodKey, Ipv4Addr>>,
    notifier: OnceLock<StatusNotifier>,
    /// `Some`: status changes are not pushed, the core polls this often.
    poll: Option<Duration>,
    state_file: Option<PathBuf>,
    /// The state file's modification time when this process last read or
    /// wrote it: a file changed since by another replica (`--leader-elect`
    /// with a shared `--state-dir`) is not overwritten with this one's view.
    state_seen: Mutex<Option<std::time::SystemTime>>,
    dirty: Notify,
    unhealthy_file: Option<PathBuf>,
}

/// Options shared by every mock node of a process.
#[derive(Clone)]
pub struct MockOptions {
    /// Pod IPs, unique across the process.
    pub ips: Arc<IpAllocator>,
    /// Directory of per-node state files; `None` keeps the backend in memory only.
    pub state_dir: Option<PathBuf>,
    /// While this file exists the backend is "down": ping and create fail.
    pub unhealthy_file: Option<PathBuf>,
    /// `Some(interval)`: status changes are not pushed; the core lists the
    /// backend this often, as for a provider that cannot push (the poll path).
    pub poll: Option<Duration>,
}

/// The mock provider of one node. Cheap to clone.
#[derive(Clone)]
pub struct MockProvider {
    inner: Arc<Inner>,
}

fn now() -> Time {
    Time(Timestamp::now())
}

impl MockProvider {
    /// A mock backend for `node`. Loads the node's state file when one is configured
    /// (must be called inside a Tokio runtime when it is).
    pub fn new(
        node: &str,
        resources: NodeResources,
        opts: &MockOptions,
    ) -> Result<MockProvider, String> {
        let state_file = opts.state_dir.as_ref().map(|d| state::path_for(d, node));
        let mut pods = HashMap::new();
        if let Some(path) = &state_file {
            if let Some(dir) = path.parent() {
                state::create_dir(dir).map_err(|e| format!("state dir {}: {e}", dir.display()))?;
            }
            pods = load_state(path, &opts.ips)?;
        }
        let inner = Arc::new(Inner {
            node: node.to_string(),
            resources,
            ips: opts.ips.clone(),
            pods: Mutex::new(pods),
            reserved: Mutex::default(),
            notifier: OnceLock::new(),
            poll: opts.poll,
            state_seen: Mutex::new(state_file.as_deref().and_then(state::modified)),
            state_file,
            dirty: Notify::new(),
            unhealthy_file: opts.unhealthy_file.clone(),
        });
        if inner.state_file.is_some() {
            tokio::spawn(persist_loop(Arc::downgrade(&inner)));
        }
        Ok(MockProvider { inner })
    }

    /// The resolved pod and volume files the backend holds for `key` (for tests and debugging).
    pub fn backend_pod(&self, key: &PodKey) -> Option<(Pod, BTreeMap<String, VolumeFiles>)> {
        self.inner
            .lock()
            .get(key)
            .and_then(|p| Some((p.pod.pod().ok()?, p.volumes.clone())))
    }

    fn healthy(&self) -> Result<(), ProviderError> {
        match &self.inner.unhealthy_file {
            Some(f) if f.exists() => Err(ProviderError::unavailable(format!(
                "mock backend is down ({} exists)",
                f.display()
            ))),
            _ => Ok(()),
        }
    }
}

impl MockProvider {
    /// The current (or previous) run of a container, and its image.
    fn run_of(
        &self,
        key: &PodKey,
        container: &str,
        previous: bool,
    ) -> ProviderResult<(streams::Run, String)> {
        let pods = self.inner.lock();
        let p = pods
            .get(key)
            .ok_or_else(|| ProviderError::NotFound(key.to_string()))?;
        let cs = statuses(&p.status)
            .find(|c| c.name == container)
            .ok_or_else(|| ProviderError::NotFound(format!("container {container} in {key}")))?;
        let run = streams::run_of(cs, previous).ok_or_else(|| {
            if previous {
                ProviderError::InvalidInput(format!(
                    "previous terminated container {container} not found"
                ))
            } else {
                ProviderError::InvalidInput(format!("container {container} is waiting to start"))
            }
        })?;
        Ok((run, cs.image.clone()))
    }
}

/// The pods of a state file, their IPs reserved in `ips`.
fn load_state(
    path: &std::path::Path,
    ips: &IpAllocator,
) -> Result<HashMap<PodKey, Box<MockPod>>, String> {
    let mut pods = HashMap::new();
    for sp in state::load(path)? {
        let ip: Ipv4Addr = sp
            .ip
            .parse()
            .map_err(|_| format!("state file {}: bad ip {}", path.display(), sp.ip))?;
        ips.reserve(ip);
        let script = Script::of(&sp.pod).ok().flatten();
        let pod =
            PodJson::of(&sp.pod).map_err(|e| format!("state file {}: {e}", path.display()))?;
        pods.insert(
            sp.key.clone(),
            Box::new(MockPod {
                volumes: state::decode_volumes(&sp.volumes),
                pulls: sp.pulls,
                pod,
                ip,
                status: Arc::new(sp.status),
                script,
                timeline: None,
            }),
        );
    }
    Ok(pods)
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Box<MockPod>>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes a pod's status, tells the core and marks the state dirty.
    fn update(&self, key: &PodKey, f: impl FnOnce(&mut PodStatus)) {
        let status = {
            let mut pods = self.lock();
            let Some(p) = pods.get_mut(key) else { return };
            f(Arc::make_mut(&mut p.status));
            p.status.clone()
        };
        if let Some(n) = self.notifier.get().filter(|_| self.poll.is_none()) {
            n.pod_status(key.clone(), status);
        }
        self.dirty.notify_one();
    }
}

async fn persist_loop(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let notified = async move {
            strong.dirty.notified().await;
        };
        notified.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let Some(path) = strong.state_file.clone() else {
            return;
        };
        let snapshot: Vec<StoredPod> = strong
            .lock()
            .iter()
            .filter_map(|(k, p)| match p.pod.pod() {
                Ok(pod) => Some(StoredPod {
                    key: k.clone(),
                    pod,
                    status: PodStatus::clone(&p.status),
                    ip: p.ip.to_string(),
                    volumes: state::encode_volumes(&p.volumes),
                    pulls: p.pulls.clone(),
                }),
                Err(e) => {
                    warn!(pod = %k, error = %e, "left out of the mock state file");
                    None
                }
            })
            .collect();
        let seen = *strong.state_seen.lock().unwrap_or_else(|p| p.into_inner());
        drop(strong);
        let res = tokio::task::spawn_blocking(move || {
            // Another replica wrote the file since: it leads now, and this
            // (stopped or paused) one must not write its older view over it.
            if state::modified(&path) != seen {
                return Ok(None);
            }
            state::save(&path, &snapshot).map(|()| Some(state::modified(&path)))
        })
        .await;
        match res {
            Ok(Ok(Some(now))) => {
                if let Some(strong) = inner.upgrade() {
                    *strong.state_seen.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
            }
            Ok(Ok(None)) => {
                warn!("the mock state file was changed by another replica: not overwriting it")
            }
            Ok(Err(e)) => warn!(error = %e, "writing the mock state file failed"),
            Err(e) => warn!(error = %e, "state writer task failed"),
        }
    }
}

/// The statuses of a pod's containers and ephemeral containers (the ones
/// logs, exec and attach reach by name).
fn statuses(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.ephemeral_container_statuses.iter().flatten())
}

/// Ends the ephemeral containers still running, as the kubelet kills them
/// when the pod's containers have all ended.
fn end_ephemeral(status: &mut PodStatus) {
    for c in status.ephemeral_container_statuses.iter_mut().flatten() {
        let started = c
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        if let Some(started) = started {
            c.state = Some(exited(137, &started));
        }
    }
}

/// Which pull credential each container's image gets: the registry of the one
/// [`RegistryCredential::for_image`] picks, for containers that get one.
fn pull_registries(resolved: &ResolvedPod) -> BTreeMap<String, String> {
    resolved
        .pod
        .spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .filter_map(|c| {
            let image = c.image.as_deref()?;
            let cred = RegistryCredential::for_image(&resolved.pull_credentials, image)?;
            Some((c.name.clone(), cred.registry.clone()))
        })
        .collect()
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

/// The mock's back-off between restarts: the kubelet's doubling, in seconds
/// rather than minutes (1 s to 10 s) so that tests see several restarts.
const RESTART_BACK_OFF: BackOffPolicy = BackOffPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(10),
    reset_after: Duration::MAX,
};

/// A container's status with the mock's image and container ids.
fn container_status(
    name: &str,
    image: &str,
    state: ContainerState,
    ready: bool,
    restarts: i32,
    last: Option<ContainerState>,
) -> ContainerStatus {
    ContainerStatus {
        image_id: format!("mock://{image}"),
        container_id: Some(format!("mock://{name}")),
        ready,
        restart_count: restarts,
        last_state: last,
        ..status::container_status(name, image, state)
    }
}

/// Exited with `code` just now, after starting at `started`.
fn exited(code: i32, started: &Time) -> ContainerState {
    terminated(Termination {
        exit_code: code,
        started_at: Some(started.clone()),
        finished_at: Some(now()),
        ..Default::default()
    })
}

fn set_all(
    status: &mut PodStatus,
    containers: &[(String, String)],
    f: impl Fn(&str, &str, Option<&ContainerStatus>) -> ContainerStatus,
) {
    let old = status.container_statuses.take().unwrap_or_default();
    status.container_statuses = Some(
        containers
            .iter()
            .map(|(n, i)| f(n, i, old.iter().find(|c| &c.name == n)))
            .collect(),
    );
}

/// Drives a scripted pod through its timeline.
async fn timeline(
    inner: Weak<Inner>,
    key: PodKey,
    script: Script,
    restart_policy: String,
    containers: Vec<(String, String)>,
) {
    let sleep = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));
    if script.start_delay_seconds > 0.0 {
        sleep(script.start_delay_seconds).await;
    }
    let mut restarts = 0;
    let mut back_off = BackOff::new(RESTART_BACK_OFF);
    loop {
        let Some(i) = inner.upgrade() else { return };
        let started = now();
        i.update(&key, |s| {
            s.phase = Some("Running".into());
            set_all(s, &containers, |n, img, old| {
                let last = if restarts > 0 {
                    old.and_then(|o| o.last_state.clone())
                } else {
                    None
                };
                container_status(n, img, running(Some(now())), true, restarts, last)
            });
        });
        drop(i);
        let mut elapsed = 0.0;
        if let Some(unready) = script.unready_after_seconds
            && script.exit_after_seconds.is_none_or(|e| unready < e)
        {
            sleep(unready).await;
            elapsed = unready;
            let Some(i) = inner.upgrade() else { return };
            i.update(&key, |s| {
                for c in s.container_statuses.iter_mut().flatten() {
                    c.ready = false;
                }
            });
        }
        let Some(exit_after) = script.exit_after_seconds else {
            return;
        };
        sleep((exit_after - elapsed).max(0.0)).await;
        let code = script.exit_code;
        let Some(i) = inner.upgrade() else { return };
        if !should_restart(&restart_policy, code.into()) {
            i.update(&key, |s| {
                s.phase = Some(if code == 0 { "Succeeded" } else { "Failed" }.into());
                end_ephemeral(s);
                set_all(s, &containers, |n, img, _| {
                    container_status(n, img, exited(code, &started), false, restarts, None)
                });
            });
            return;
        }
        restarts += 1;
        let delay = back_off.delay();
        back_off.advance();
        i.update(&key, |s| {
            set_all(s, &containers, |n, img, _| {
                container_status(
                    n,
                    img,
                    crash_loop_back_off(delay, n, &key.name),
                    false,
                    restarts,
                    Some(exited(code, &started)),
                )
            });
        });
        drop(i);
        tokio::time::sleep(delay).await;
    }
}

fn validate(pod: &Pod) -> ProviderResult<()> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| ProviderError::InvalidInput("pod has no spec".into()))?;
    if spec.containers.is_empty() {
        return Err(ProviderError::InvalidInput("pod has no containers".into()));
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        if c.image.as_deref().is_none_or(str::is_empty) {
            return Err(ProviderError::InvalidInput(format!(
                "container {} has no image",
                c.name
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    /// Upstream mock's defaults: 20 CPUs, 100 GiB, 110 pods.
    async fn node_capacity(&self) -> NodeCapacity {
        let defaults = CapacityDefaults {
            cpu: Some("20".into()),
            memory: Some("100Gi".into()),
            pods: None,
            provider_id: Some(format!("mock://{}", self.inner.node)),
        };
        node_capacity(&self.inner.resources, defaults)
    }

    async fn ping(&self) -> ProviderResult<()> {
        self.healthy()
    }

    /// The volumes the core materialises as files, and scratch space: the
    /// mock has no host, no network storage and no CSI drivers, so a pod
    /// that needs them is refused rather than run without them.
    fn volume_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "emptyDir",
            "configMap",
            "secret",
            "downwardAPI",
            "projected",
        ])
    }

    async fn allocate_pod_ip(&self, key: &PodKey) -> ProviderResult<Option<String>> {
        let mut reserved = self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = reserved.get(key) {
            return Ok(Some(ip.to_string()));
        }
        let ip = self
            .inner
            .ips
            .allocate()
            .ok_or_else(|| ProviderError::unavailable("pod CIDR exhausted"))?;
        reserved.insert(key.clone(), ip);
        Ok(Some(ip.to_string()))
    }

    async fn create_pod(&self, resolved: &ResolvedPod) -> ProviderResult<()> {
        self.healthy()?;
        let key = resolved.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod has no namespace, name or uid".into())
        })?;
        validate(&resolved.pod)?;
        let script = Script::of(&resolved.pod).map_err(ProviderError::InvalidInput)?;
        let pod = PodJson::of(&resolved.pod)?;
        match script.as_ref().and_then(|s| s.fail_create) {
            Some(FailCreate::Invalid) => {
                return Err(ProviderError::InvalidInput(
                    "scripted failure: invalid pod".into(),
                ));
            }
            Some(FailCreate::Unavailable) => {
                return Err(ProviderError::unavailable(
                    "scripted failure: backend unavailable",
                ));
            }
            None => {}
        }
        if self.inner.lock().contains_key(&key) {
            return Ok(());
        }
        let reserved = self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let ip = match reserved {
            Some(ip) => ip,
            None => self
                .inner
                .ips
                .allocate()
                .ok_or_else(|| ProviderError::unavailable("pod CIDR exhausted"))?,
        };
        let containers = container_names(&resolved.pod);
        let delayed = script.as_ref().is_some_and(|s| s.start_delay_seconds > 0.0);
        let mut status = PodStatus {
            phase: Some(if delayed { "Pending" } else { "Running" }.into()),
            pod_ip: Some(ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
            start_time: Some(now()),
            ..Default::default()
        };
        set_all(&mut status, &containers, |n, img, _| {
            if delayed {
                let creating = waiting(reason::CONTAINER_CREATING, None);
                container_status(n, img, creating, false, 0, None)
            } else {
                container_status(n, img, running(Some(now())), true, 0, None)
            }
        });
        let restart_policy = restart_policy(&resolved.pod).to_string();
        let mut pods = self.inner.lock();
        let timeline_task = script.clone().filter(Script::has_timeline).map(|s| {
            tokio::spawn(timeline(
                Arc::downgrade(&self.inner),
                key.clone(),
                s,
                restart_policy,
                containers,
            ))
        });
        pods.insert(
            key,
            Box::new(MockPod {
                pod,
                volumes: resolved.volumes.clone(),
                pulls: pull_registries(resolved),
                ip,
                status: Arc::new(status),
                script,
                timeline: timeline_task,
            }),
        );
        drop(pods);
        self.inner.dirty.notify_one();
        Ok(())
    }

    async fn update_pod(&self, resolved: &ResolvedPod) -> ProviderResult<()> {
        self.healthy()?;
        let key = resolved.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod has no namespace, name or uid".into())
        })?;
        let pod = PodJson::of(&resolved.pod)?;
        let mut pods = self.inner.lock();
        let p = pods
            .get_mut(&key)
            .ok_or_else(|| ProviderError::NotFound(key.to_string()))?;
        p.pod = pod;
        p.volumes = resolved.volumes.clone();
        p.pulls = pull_registries(resolved);
        drop(pods);
        self.inner.dirty.notify_one();
        Ok(())
    }

    /// Simulated: each new ephemeral container is Running at once (image
    /// never pulled), with logs, exec and attach of its own like any mock
    /// container; it runs until the pod is deleted or its containers end.
    /// Kept in the state file with the pod. A pod scripted with
    /// `refuseEphemeralContainers` refuses them.
    async fn start_ephemeral_containers(
        &self,
        resolved: &ResolvedPod,
        new: &[String],
    ) -> ProviderResult<()> {
        self.healthy()?;
        let key = resolved.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod has no namespace, name or uid".into())
        })?;
        let script = Script::of(&resolved.pod).map_err(ProviderError::InvalidInput)?;
        if script.is_some_and(|s| s.refuse_ephemeral_containers) {
            return Err(ProviderError::NotImplemented("ephemeral containers"));
        }
        let wanted: Vec<(String, String)> =
            vk_core::toolkit::ephemeral::ephemeral_containers(&resolved.pod)
                .into_iter()
                .map(|e| e.container)
                .filter(|c| new.contains(&c.name))
                .map(|c| (c.name, c.image.unwrap_or_default()))
                .collect();
        if let Some((name, _)) = wanted.iter().find(|(_, image)| image.is_empty()) {
            return Err(ProviderError::InvalidInput(format!(
                "ephemeral container {name} has no image"
            )));
        }
        let pod = PodJson::of(&resolved.pod)?;
        {
            let mut pods = self.inner.lock();
            let p = pods
                .get_mut(&key)
                .ok_or_else(|| ProviderError::NotFound(key.to_string()))?;
            // The spec with its ephemeral containers: exec reads their env.
            p.pod = pod;
        }
        self.inner.update(&key, |s| {
            let eph = s.ephemeral_container_statuses.get_or_insert_with(Vec::new);
            for (name, image) in wanted {
                // Started once: one already there (a retried call) is left as it is.
                if !eph.iter().any(|c| c.name == name) {
                    eph.push(container_status(
                        &name,
                        &image,
                        running(Some(now())),
                        false,
                        0,
                        None,
                    ));
                }
            }
        });
        Ok(())
    }

    /// The mock keeps the files with the pod (`/runningpods/` and its state
    /// file show them), so a refresh is stored like an update.
    async fn refresh_volumes(&self, resolved: &ResolvedPod) -> ProviderResult<()> {
        self.update_pod(resolved).await
    }

    async fn delete_pod(&self, key: &PodKey, grace: Duration) -> ProviderResult<()> {
        self.healthy()?;
        let termination = {
            let mut pods = self.inner.lock();
            let p = pods
                .get_mut(key)
                .ok_or_else(|| ProviderError::NotFound(key.to_string()))?;
            if let Some(t) = p.timeline.take() {
                t.abort();
            }
            p.script
                .as_ref()
                .map(|s| s.termination_seconds)
                .unwrap_or(0.0)
        };
        if termination > 0.0 {
            let wait = Duration::from_secs_f64(termination).min(grace);
            tokio::time::sleep(wait).await;
        }
        let removed = self.inner.lock().remove(key);
        if let Some(p) = removed {
            self.inner.ips.release(p.ip);
        }
        self.inner.dirty.notify_one();
        Ok(())
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        self.inner
            .lock()
            .get(key)
            .map(|p| p.status.clone())
            .ok_or_else(|| ProviderError::NotFound(key.to_string()))
    }

    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        self.inner
            .lock()
            .iter()
            .map(|(k, p)| {
                Ok(BackendPod {
                    key: k.clone(),
                    pod: p.pod.pod()?,
                    status: PodStatus::clone(&p.status),
                })
            })
            .collect()
    }

    /// A replica that stood by (`--leader-elect` with a shared
    /// `--state-dir`) holds the backend as it was when it started: the
    /// leader before it changed it since. Read the state file again.
    async fn became_leader(&self) -> ProviderResult<()> {
        let Some(path) = self.inner.state_file.clone() else {
            return Ok(());
        };
        let ips = self.inner.ips.clone();
        let (loaded, seen) = tokio::task::spawn_blocking(move || {
            let seen = state::modified(&path);
            load_state(&path, &ips).map(|pods| (pods, seen))
        })
        .await
        .map_err(|e| ProviderError::unavailable(format!("reading the state file: {e}")))?
        .map_err(ProviderError::unavailable)?;
        *self
            .inner
            .state_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = seen;
        let n = loaded.len();
        let kept: std::collections::HashSet<Ipv4Addr> = loaded.values().map(|p| p.ip).collect();
        let old = std::mem::replace(&mut *self.inner.lock(), loaded);
        for p in old.into_values() {
            if let Some(t) = p.timeline {
                t.abort();
            }
            if !kept.contains(&p.ip) {
                self.inner.ips.release(p.ip);
            }
        }
        tracing::info!(node = %self.inner.node, pods = n, "took over the backend from the state file");
        Ok(())
    }

    async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        Ok(self
            .inner
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), PodStatus::clone(&p.status)))
            .collect())
    }

    async fn container_logs(
        &self,
        key: &PodKey,
        container: &str,
        opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        let (run, image) = self.run_of(key, container, opts.previous)?;
        let weak = Arc::downgrade(&self.inner);
        let (k, c) = (key.clone(), container.to_string());
        let alive = move || {
            let inner = weak.upgrade()?;
            let pods = inner.lock();
            let cs = statuses(&pods.get(&k)?.status)
                .find(|s| s.name == c)?
                .clone();
            streams::run_of(&cs, false)
        };
        Ok(streams::log_stream(
            container.to_string(),
            image,
            run,
            opts.clone(),
            alive,
        ))
    }

    async fn exec(
        &self,
        key: &PodKey,
        container: &str,
        command: Vec<String>,
        io: ExecIo,
    ) -> ProviderResult<i32> {
        let (run, _) = self.run_of(key, container, false)?;
        if run.end.is_some() {
            return Err(ProviderError::InvalidInput(format!(
                "container {container} is not running"
            )));
        }
        let pod = self
            .inner
            .lock()
            .get(key)
            .map(|p| p.pod.pod())
            .ok_or_else(|| ProviderError::NotFound(key.to_string()))??;
        Ok(streams::exec(&pod, container, &command, io).await)
    }

    async fn attach(&self, key: &PodKey, container: &str, mut io: ExecIo) -> ProviderResult<i32> {
        let opts = LogOptions {
            follow: true,
            since: Some(k8s_openapi::jiff::Timestamp::now()),
            ..Default::default()
        };
        let mut logs = self.container_logs(key, container, &opts).await?;
        // What the client types is echoed, as by a program reading its terminal.
        let mut stdin = io.stdin.take();
        loop {
            tokio::select! {
                chunk = futures::StreamExt::next(&mut logs) => match chunk {
                    Some(Ok(b)) => {
                        if let Some(tx) = &io.stdout && tx.send(b).await.is_err() {
                            return Ok(0);
                        }
                    }
                    Some(Err(e)) => return Err(ProviderError::unavailable(e.to_string())),
                    None => break,
                },
                input = async { match stdin.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => match input {
                    Some(b) => {
                        if let Some(tx) = &io.stdout {
                            let _ = tx.send(b).await;
                        }
                    }
                    None => stdin = None,
                },
            }
        }
        let code = self
            .run_of(key, container, false)
            .ok()
            .and_then(|(r, _)| r.end.map(|(_, c)| c))
            .unwrap_or(0);
        Ok(code)
    }

    async fn port_forward(
        &self,
        key: &PodKey,
        _port: u16,
        tunnel: Box<dyn Tunnel>,
    ) -> ProviderResult<()> {
        if !self.inner.lock().contains_key(key) {
            return Err(ProviderError::NotFound(key.to_string()));
        }
        // Every port of a mock pod is an echo server.
        let (mut r, mut w) = tokio::io::split(tunnel);
        let res = tokio::io::copy(&mut r, &mut w).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
        res.map(|_| ())
            .map_err(|e| ProviderError::unavailable(format!("port-forward: {e}")))
    }

    async fn usage(&self) -> ProviderResult<Vec<PodUsage>> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let pods = self.inner.lock();
        Ok(pods
            .iter()
            .map(|(k, p)| PodUsage {
                key: k.clone(),
                start_time: p.status.start_time.as_ref().map(|t| t.0),
                containers: p
                    .status
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|cs| {
                        let run = streams::run_of(cs, false)?;
                        run.end
                            .is_none()
                            .then(|| streams::usage(&cs.name, run.start, now))
                    })
                    .collect(),
            })
            .collect())
    }

    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        let _ = self.inner.notifier.set(notifier);
        // Restart timelines of pods restored from the state file now that pushes have somewhere to go.
        let mut pods = self.inner.lock();
        for (key, p) in pods.iter_mut() {
            let terminal = matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed"));
            if let Some(s) = p.script.clone().filter(Script::has_timeline)
                && p.timeline.is_none()
                && !terminal
            {
                let pod = match p.pod.pod() {
                    Ok(pod) => pod,
                    Err(e) => {
                        warn!(pod = %key, error = %e, "scripted timeline not restarted");
                        continue;
                    }
                };
                let policy = restart_policy(&pod).to_string();
                p.timeline = Some(tokio::spawn(timeline(
                    Arc::downgrade(&self.inner),
                    key.clone(),
                    s,
                    policy,
                    container_names(&pod),
                )));
            }
        }
        // Pod events still go through the notifier; statuses only when pushing.
        self.inner.poll.is_none()
    }

    fn status_poll_interval(&self) -> Duration {
        self.inner.poll.unwrap_or(Duration::from_secs(10))
    }
}
