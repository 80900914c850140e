//! One pod's supervisor: a task per pod that makes the engine run what the pod
//! says, the way a kubelet's pod worker does. It creates the infra container
//! and volumes, runs init containers in order to completion, starts the app
//! containers, restarts them per `restartPolicy` with the kubelet's back-off
//! (10 s doubling to 5 min), pulls images per `imagePullPolicy`, runs probes,
//! and publishes the pod's status whenever it changes.
//!
//! It wakes on engine events for its containers (the provider's event stream),
//! on its own timers (back-off, probes), on spec or volume updates, and once a
//! minute regardless. Each wake inspects this pod's containers only.
//!
//! Every container attempt is its own engine container, labelled with the pod
//! UID, container name and attempt number, so a restarted `vk-edge` rebuilds
//! this state from the engine ([`Supervisor::adopt`]). The current and the
//! previous attempt are kept (`kubectl logs --previous`); older ones are removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{ContainerStateStatusEnum, ContainerSummary, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, EphemeralContainer, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vk_core::provider::RegistryCredential;
use vk_core::toolkit::container_status::{
    self as status, Termination, reason, running, terminated, waiting,
};
use vk_core::toolkit::pod_identity::PodIdentity;
use vk_core::toolkit::restart::{
    BackOff, crash_loop_message, is_sidecar, restart_policy, should_restart,
};
use vk_core::{PodKey, StatusNotifier, VolumeFiles};

use crate::engine::{Engine, engine_message, status_of};
use crate::probe::{self, ProbeKind, ProbeState};
use crate::spec::{
    self, INFRA_CONTAINER, INFRA_VOLUME_ROOT, LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_ROLE,
    LABEL_SPEC_HASH, MountContext, Policy, Role, VolumeSource,
};
use crate::volumes;

/// A wake-up at least this often, whatever happens.
const RESYNC: Duration = Duration::from_secs(60);

/// What the provider shares with every supervisor of a node.
pub struct NodeShared {
    /// Node name.
    pub node: String,
    /// The engine.
    pub engine: Engine,
    /// What the node allows.
    pub policy: Policy,
    /// The node's IP: the pod IP of hostNetwork pods.
    pub host_ip: String,
    /// Where status changes and events go (set once the core subscribes).
    pub notifier: std::sync::OnceLock<StatusNotifier>,
}

/// The engine containers of a pod that the streaming calls need.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    /// The infra container.
    pub infra: Option<String>,
    /// The pod IP.
    pub ip: Option<String>,
    /// Per container name: (current attempt, previous attempt) engine ids.
    pub containers: HashMap<String, (Option<String>, Option<String>)>,
}

/// A pending change from `update_pod`.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The new resolved pod.
    pub pod: Pod,
    /// Its volume files; `None` keeps the ones the supervisor has.
    pub files: Option<BTreeMap<String, VolumeFiles>>,
    /// Its env that waits for the pod's IP, if any
    /// ([`vk_core::ResolvedPod::with_pod_ip`]).
    pub pod_ip_env: vk_core::PodIpEnv,
}

/// What the provider holds of a running supervisor.
pub struct PodShared {
    /// Which pod.
    pub key: PodKey,
    /// The pod as last handed over (for `list_pods`).
    pub pod: Mutex<Pod>,
    /// The last published status.
    pub status: Mutex<PodStatus>,
    /// Containers for logs, exec, attach, port-forward, stats.
    pub view: Mutex<PodView>,
    /// A spec or volume update waiting for the supervisor.
    pub update: Mutex<Option<Update>>,
    /// Wakes the supervisor.
    pub wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PodShared {
    /// The last published status.
    pub fn status(&self) -> PodStatus {
        lock(&self.status).clone()
    }

    /// The streaming view.
    pub fn view(&self) -> PodView {
        lock(&self.view).clone()
    }

    /// The pod as last handed over.
    pub fn pod(&self) -> Pod {
        lock(&self.pod).clone()
    }

    /// Queues an update and wakes the supervisor.
    pub fn push_update(&self, update: Update) {
        *lock(&self.pod) = update.pod.clone();
        *lock(&self.update) = Some(update);
        self.wake.notify_one();
    }

    /// Queues the pod's ephemeral containers (`kubectl debug`) and wakes the
    /// supervisor. Nothing else of the pod changes: its other containers
    /// are not compared with a new resolution of their env (which a
    /// ConfigMap changed since may alter), and an update still pending
    /// keeps its own spec and files.
    pub fn push_ephemeral(&self, ephemeral: Vec<EphemeralContainer>) {
        let mut pending = lock(&self.update);
        let update = pending.get_or_insert_with(|| Update {
            pod: lock(&self.pod).clone(),
            ..Update::default()
        });
        if let Some(spec) = update.pod.spec.as_mut() {
            spec.ephemeral_containers = Some(ephemeral);
        }
        *lock(&self.pod) = update.pod.clone();
        drop(pending);
        self.wake.notify_one();
    }
}

/// What the engine said about one container attempt.
#[derive(Debug, Clone, PartialEq)]
enum Observed {
    Created,
    Running {
        started_at: Option<String>,
    },
    Exited {
        code: i64,
        oom: bool,
        error: Option<String>,
        started_at: Option<String>,
        finished_at: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    number: u32,
    spec_hash: String,
    observed: Observed,
    image_id: Option<String>,
    /// When this supervisor saw it start (for probe delays and back-off reset).
    seen_running: Option<Instant>,
}

#[derive(Debug)]
struct Ctr {
    role: Role,
    spec: Container,
    current: Option<Attempt>,
    previous: Option<Attempt>,
    waiting: Option<(String, String)>,
    retry_at: Option<Instant>,
    backoff: BackOff,
    pull_retry_at: Option<Instant>,
    pull_backoff: BackOff,
    probes: Vec<ProbeState>,
    /// The container is being stopped (liveness failure, image change).
    stopping: bool,
    /// A new attempt must be made at once (the image changed).
    recreate: bool,
    /// An ephemeral container's `targetContainerName`: it shares that
    /// container's process namespace.
    target: Option<String>,
}

impl Ctr {
    fn new(role: Role, spec: Container) -> Ctr {
        Ctr {
            role,
            spec,
            current: None,
            previous: None,
            waiting: None,
            retry_at: None,
            backoff: BackOff::kubelet(),
            pull_retry_at: None,
            pull_backoff: BackOff::kubelet(),
            probes: Vec::new(),
            stopping: false,
            recreate: false,
            target: None,
        }
    }

    /// An ephemeral container (`kubectl debug`).
    fn ephemeral(e: vk_core::toolkit::ephemeral::Ephemeral) -> Ctr {
        Ctr {
            target: e.target,
            ..Ctr::new(Role::Ephemeral, e.container)
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    /// An init container with `restartPolicy: Always`: runs beside the app containers.
    fn sidecar(&self) -> bool {
        self.role == Role::Init && is_sidecar(&self.spec)
    }

    /// Done as an init container: exited 0, or a sidecar that has started.
    fn init_done(&self) -> bool {
        self.exit() == Some(0) || (self.sidecar() && self.started())
    }

    fn exit(&self) -> Option<i64> {
        match self.current.as_ref().map(|a| &a.observed) {
            Some(Observed::Exited { code, .. }) => Some(*code),
            _ => None,
        }
    }

    fn running(&self) -> bool {
        matches!(
            self.current.as_ref().map(|a| &a.observed),
            Some(Observed::Running { .. })
        )
    }

    fn probe_verdict(&self, kind: ProbeKind) -> Option<Option<bool>> {
        self.probes
            .iter()
            .find(|p| p.kind == kind)
            .map(|p| p.verdict)
    }

    /// Started: running and past its startup probe (if any).
    fn started(&self) -> bool {
        self.running()
            && self
                .probe_verdict(ProbeKind::Startup)
                .is_none_or(|v| v == Some(true))
    }

    fn ready(&self) -> bool {
        self.started()
            && !self.stopping
            && self
                .probe_verdict(ProbeKind::Readiness)
                .is_none_or(|v| v == Some(true))
    }
}

/// The supervisor of one pod.
pub struct Supervisor {
    node: Arc<NodeShared>,
    shared: Arc<PodShared>,
    pod: Pod,
    files: BTreeMap<String, VolumeFiles>,
    /// Files must be (re)written into the volumes.
    files_dirty: bool,
    creds: Vec<RegistryCredential>,
    plan: BTreeMap<String, VolumeSource>,
    mountpoints: BTreeMap<String, String>,
    infra: Option<(String, bool)>,
    ip: Option<String>,
    /// Env that reads `status.podIP`, resolved once the infra container has
    /// the IP (the kubelet's sandbox comes first for the same reason).
    pod_ip_env: vk_core::PodIpEnv,
    /// The IP the containers' specs were last resolved for.
    env_ip: Option<String>,
    infra_error: Option<String>,
    infra_retry_at: Option<Instant>,
    infra_backoff: BackOff,
    ctrs: Vec<Ctr>,
    failed: Option<(String, String)>,
    last_published: Option<PodStatus>,
    first_publish: bool,
    /// The engine answered the last observation.
    engine_reachable: bool,
}

impl Supervisor {
    /// A supervisor for a new pod (nothing in the engine yet).
    pub fn new(
        node: Arc<NodeShared>,
        key: PodKey,
        pod: Pod,
        files: BTreeMap<String, VolumeFiles>,
        creds: Vec<RegistryCredential>,
    ) -> Result<Supervisor, String> {
        let plan = spec::plan_volumes(&pod, &node.policy)?;
        let ctrs = containers_of(&pod);
        let shared = Arc::new(PodShared {
            key,
            pod: Mutex::new(pod.clone()),
            status: Mutex::new(PodStatus::default()),
            view: Mutex::default(),
            update: Mutex::default(),
            wake: Notify::new(),
        });
        let mut s = Supervisor {
            node,
            shared,
            pod,
            files,
            files_dirty: true,
            creds,
            plan,
            mountpoints: BTreeMap::new(),
            infra: None,
            ip: None,
            pod_ip_env: vk_core::PodIpEnv::default(),
            env_ip: None,
            infra_error: None,
            infra_retry_at: None,
            infra_backoff: BackOff::kubelet(),
            ctrs,
            failed: None,
            last_published: None,
            first_publish: true,
            engine_reachable: false,
        };
        s.publish();
        Ok(s)
    }

    /// Env that waits for the pod's IP ([`vk_core::ResolvedPod::with_pod_ip`]).
    pub fn with_pod_ip_env(mut self, env: vk_core::PodIpEnv) -> Supervisor {
        self.pod_ip_env = env;
        self
    }

    /// Resolves env that reads `status.podIP` for the infra container's IP,
    /// before the containers start: again when a new infra container got a
    /// new IP (its containers are recreated with it).
    fn resolve_pod_ip_env(&mut self) {
        let Some(ip) = self.ip.clone() else {
            return;
        };
        if !self.pod_ip_env.is_pending() || self.env_ip.as_deref() == Some(ip.as_str()) {
            return;
        }
        let Some(pod) = self.pod_ip_env.resolve(&ip) else {
            warn!(pod = %self.shared.key, "env reading status.podIP could not be resolved again; it stays empty");
            self.pod_ip_env = vk_core::PodIpEnv::default();
            return;
        };
        let specs = containers_of(&pod);
        for c in self.ctrs.iter_mut() {
            if let Some(n) = specs.iter().find(|n| n.spec.name == c.spec.name) {
                c.spec = n.spec.clone();
            }
        }
        // What the provider reports and what `kubectl debug` builds on,
        // unless an update is on its way.
        let pending = lock(&self.shared.update);
        if pending.is_none() {
            *lock(&self.shared.pod) = pod.clone();
        }
        drop(pending);
        self.pod = pod;
        self.env_ip = Some(ip);
    }

    /// A supervisor for a pod found in the engine: `summaries` are all its
    /// containers (the infra container's label holds the pod). Nothing is
    /// recreated; the next pass inspects what runs.
    pub fn adopt(
        node: Arc<NodeShared>,
        key: PodKey,
        summaries: &[ContainerSummary],
    ) -> Result<(Supervisor, Vec<String>), String> {
        let infra = summaries
            .iter()
            .find(|c| label(c, LABEL_ROLE) == Some("infra"))
            .ok_or("no infra container")?;
        let pod: Pod = serde_json::from_str(label(infra, spec::LABEL_POD).unwrap_or_default())
            .map_err(|e| format!("the infra container's pod label is not a pod: {e}"))?;
        let mut s = Supervisor::new(node, key, pod, BTreeMap::new(), Vec::new())?;
        s.files_dirty = false;
        s.infra = infra.id.clone().map(|id| (id, false));
        // Ephemeral containers are not in the infra container's pod: each
        // carries its own spec.
        for x in summaries {
            let Some(text) = label(x, spec::LABEL_EPHEMERAL) else {
                continue;
            };
            match serde_json::from_str::<EphemeralContainer>(text) {
                Ok(ec) if !s.ctrs.iter().any(|c| c.spec.name == ec.name) => {
                    s.ctrs
                        .push(Ctr::ephemeral(vk_core::toolkit::ephemeral::Ephemeral {
                            container: vk_core::toolkit::ephemeral::as_container(&ec),
                            target: ec.target_container_name.clone().filter(|t| !t.is_empty()),
                        }));
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(pod = %s.shared.key, error = %e, "an ephemeral container's spec label is unreadable; it is left as it is");
                }
            }
        }
        let mut stale = Vec::new();
        for c in s.ctrs.iter_mut() {
            let mut attempts: Vec<(u32, &ContainerSummary)> = summaries
                .iter()
                .filter(|x| label(x, LABEL_CONTAINER) == Some(c.spec.name.as_str()))
                .filter(|x| label(x, LABEL_ROLE) != Some("infra"))
                .filter_map(|x| Some((label(x, LABEL_ATTEMPT)?.parse().ok()?, x)))
                .collect();
            attempts.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
            let mut it = attempts.into_iter();
            let to_attempt = |(n, x): (u32, &ContainerSummary)| Attempt {
                id: x.id.clone().unwrap_or_default(),
                number: n,
                spec_hash: label(x, LABEL_SPEC_HASH).unwrap_or_default().to_string(),
                observed: Observed::Created,
                image_id: x.image_id.clone(),
                seen_running: None,
            };
            c.current = it.next().map(to_attempt);
            c.previous = it.next().map(to_attempt);
            stale.extend(it.filter_map(|(_, x)| x.id.clone()));
        }
        Ok((s, stale))
    }

    /// The handle the provider keeps.
    pub fn shared(&self) -> Arc<PodShared> {
        self.shared.clone()
    }

    fn identity(&self) -> PodIdentity<'_> {
        PodIdentity::new(&self.node.node, &self.shared.key)
    }

    /// Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let pass = async {
                self.apply_update().await;
                self.observe().await;
                if !self.engine_reachable {
                    // Nothing can be done or known until the engine answers;
                    // an outage is no reason to fail, pull or restart anything.
                    return Instant::now() + crate::engine::RECONNECT_DELAY;
                }
                let next = self.act().await;
                let next_probe = self.probes().await;
                self.publish();
                next.min(next_probe)
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = pass => next,
            };
            let deadline = next.min(Instant::now() + RESYNC);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Inspects once and publishes (for adopted pods, before the core reads their status).
    pub async fn observe_once(&mut self) {
        self.observe().await;
        self.publish();
    }

    async fn apply_update(&mut self) {
        let Some(mut update) = lock(&self.shared.update).take() else {
            return;
        };
        // Env that reads the pod's IP, for the IP the pod has (else its
        // running containers would look changed).
        self.pod_ip_env = std::mem::take(&mut update.pod_ip_env);
        self.env_ip = None;
        if let Some(ip) = self.ip.clone()
            && let Some(mut pod) = self.pod_ip_env.resolve(&ip)
        {
            // Ephemeral containers come resolved, and may be newer.
            if let (Some(spec), Some(from)) = (pod.spec.as_mut(), update.pod.spec.as_ref()) {
                spec.ephemeral_containers = from.ephemeral_containers.clone();
            }
            update.pod = pod;
            self.env_ip = Some(ip);
        }
        let new_ctrs = containers_of(&update.pod);
        for c in self.ctrs.iter_mut() {
            if let Some(n) = new_ctrs.iter().find(|n| n.spec.name == c.spec.name) {
                let changed = c
                    .current
                    .as_ref()
                    .is_some_and(|a| a.spec_hash != spec::container_hash(&n.spec));
                c.spec = n.spec.clone();
                if changed && c.role == Role::App {
                    info!(pod = %self.shared.key, container = %c.spec.name, "container spec changed; restarting it");
                    c.recreate = true;
                }
            }
        }
        // New ephemeral containers (`kubectl debug`); the pod's list only grows.
        for n in new_ctrs {
            if n.role == Role::Ephemeral && !self.ctrs.iter().any(|c| c.spec.name == n.spec.name) {
                info!(pod = %self.shared.key, container = %n.spec.name, "ephemeral container added");
                self.ctrs.push(n);
            }
        }
        if let Some(files) = update.files
            && files != self.files
        {
            self.files = files;
            self.files_dirty = true;
        }
        self.pod = update.pod;
    }

    async fn observe(&mut self) {
        self.engine_reachable = false;
        let Ok(docker) = self.node.engine.docker() else {
            return;
        };
        if let Some((id, _)) = self.infra.clone() {
            match inspect(&docker, &id).await {
                Ok(info) => {
                    let running = info.state.as_ref().and_then(|s| s.running) == Some(true);
                    self.infra = Some((id, running));
                    let host_network = self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.host_network)
                        .unwrap_or(false);
                    self.ip = if host_network {
                        Some(self.node.host_ip.clone())
                    } else {
                        info.network_settings
                            .and_then(|n| n.networks)
                            .and_then(|nets| nets.into_values().find_map(|e| e.ip_address))
                            .filter(|ip| !ip.is_empty())
                    };
                }
                Err(e) if status_of(&e) == Some(404) => {
                    warn!(pod = %self.shared.key, "the infra container is gone; recreating the pod's sandbox");
                    self.infra = None;
                }
                Err(e) => {
                    debug!(pod = %self.shared.key, error = %e, "inspecting the infra container failed");
                    return;
                }
            }
        }
        let mut reachable = true;
        for c in self.ctrs.iter_mut() {
            let Some(a) = c.current.as_mut() else {
                continue;
            };
            match inspect(&docker, &a.id).await {
                Ok(info) => {
                    let st = info.state.unwrap_or_default();
                    a.image_id = info.image.or(a.image_id.take());
                    let observed = match st.status {
                        Some(ContainerStateStatusEnum::RUNNING)
                        | Some(ContainerStateStatusEnum::PAUSED)
                        | Some(ContainerStateStatusEnum::RESTARTING) => Observed::Running {
                            started_at: st.started_at.clone(),
                        },
                        Some(ContainerStateStatusEnum::EXITED)
                        | Some(ContainerStateStatusEnum::DEAD) => Observed::Exited {
                            code: st.exit_code.unwrap_or(0),
                            oom: st.oom_killed.unwrap_or(false),
                            error: st.error.clone().filter(|e| !e.is_empty()),
                            started_at: st.started_at.clone(),
                            finished_at: st.finished_at.clone(),
                        },
                        _ if st.running == Some(true) => Observed::Running {
                            started_at: st.started_at.clone(),
                        },
                        _ => Observed::Created,
                    };
                    if matches!(observed, Observed::Running { .. }) && a.seen_running.is_none() {
                        a.seen_running = Some(Instant::now());
                        c.probes = probes_of(&c.spec, Instant::now());
                    }
                    if matches!(observed, Observed::Exited { .. }) {
                        c.stopping = false;
                    }
                    a.observed = observed;
                }
                Err(e) if status_of(&e) == Some(404) => {
                    // Removed behind our back: the next attempt replaces it.
                    c.previous = c.current.take();
                    if let Some(p) = c.previous.as_mut() {
                        p.observed = Observed::Exited {
                            code: 137,
                            oom: false,
                            error: Some("the container was removed from the engine".into()),
                            started_at: None,
                            finished_at: None,
                        }
                    }
                }
                Err(e) => {
                    reachable &= status_of(&e).is_some();
                    debug!(pod = %self.shared.key, error = %e, "inspect failed");
                }
            }
        }
        self.engine_reachable = reachable;
    }

    /// Does the next step for every container; returns when to come back.
    async fn act(&mut self) -> Instant {
        let now = Instant::now();
        let mut next = now + RESYNC;
        if self.failed.is_some() {
            return next;
        }
        match &self.infra {
            Some((_, true)) => {}
            _ => {
                if let Some(at) = self.infra_retry_at
                    && at > now
                {
                    return at;
                }
                match self.ensure_infra().await {
                    Ok(()) => {
                        self.infra_error = None;
                        self.infra_retry_at = None;
                        self.infra_backoff.reset();
                    }
                    Err(e) => {
                        warn!(pod = %self.shared.key, error = %e, "creating the pod sandbox failed");
                        self.event(
                            true,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {e}"),
                        );
                        self.infra_error = Some(e);
                        let at = now + self.infra_backoff.delay();
                        self.infra_backoff.advance();
                        self.infra_retry_at = Some(at);
                        return at;
                    }
                }
            }
        }
        if self.files_dirty {
            self.write_files().await;
        }
        let policy = restart_policy(&self.pod).to_string();
        let Some(infra_id) = self.infra.as_ref().map(|(id, _)| id.clone()) else {
            return next;
        };

        // Init containers, one at a time, in order.
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].role != Role::Init {
                continue;
            }
            if self.ctrs[i].sidecar() {
                // A sidecar lets the next init container start once it has
                // started, and is restarted whenever it ends.
                if let Some(at) = self.step(i, "Always", &infra_id, now).await {
                    next = next.min(at);
                }
                if self.ctrs[i].started() {
                    continue;
                }
                return next;
            }
            match self.ctrs[i].exit() {
                Some(0) => continue,
                Some(code) if !should_restart(&policy, code) || policy == "Never" => {
                    let name = self.ctrs[i].name().to_string();
                    self.failed = Some((
                        "InitContainerFailed".into(),
                        format!("init container {name} exited with {code}"),
                    ));
                    return next;
                }
                _ => {}
            }
            if let Some(at) = self.step(i, &policy, &infra_id, now).await {
                next = next.min(at);
            }
            return next;
        }

        // App containers.
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].role != Role::App {
                continue;
            }
            if let Some(at) = self.step(i, &policy, &infra_id, now).await {
                next = next.min(at);
            }
        }

        // Ephemeral containers: started once, never restarted, not even
        // when removed from the engine behind our back.
        for i in 0..self.ctrs.len() {
            let c = &self.ctrs[i];
            if c.role != Role::Ephemeral || (c.current.is_none() && c.previous.is_some()) {
                continue;
            }
            if let Some(at) = self.step(i, "Never", &infra_id, now).await {
                next = next.min(at);
            }
        }
        next
    }

    /// One container's next step. Returns a time to come back, if any.
    async fn step(
        &mut self,
        i: usize,
        policy: &str,
        infra_id: &str,
        now: Instant,
    ) -> Option<Instant> {
        let c = &mut self.ctrs[i];
        if c.recreate && c.running() && !c.stopping {
            c.stopping = true;
            let id = c.current.as_ref().map(|a| a.id.clone()).unwrap_or_default();
            self.stop_in_background(id, "Killing", "spec changed".into());
            return None;
        }
        match c.current.as_ref().map(|a| a.observed.clone()) {
            Some(Observed::Running { .. }) => {
                if let Some(seen) = c.current.as_ref().and_then(|a| a.seen_running) {
                    c.backoff.ran_for(now.duration_since(seen));
                }
                None
            }
            Some(Observed::Created) => {
                // Created but never started (vk-edge stopped in between): start it.
                let id = c.current.as_ref().map(|a| a.id.clone()).unwrap_or_default();
                self.start(i, &id).await;
                None
            }
            Some(Observed::Exited { code, .. }) => {
                let recreate = c.recreate;
                if !recreate && !should_restart(policy, code) {
                    c.waiting = None;
                    return None;
                }
                if recreate {
                    c.retry_at = Some(now);
                }
                let at = *c.retry_at.get_or_insert(now + c.backoff.delay());
                if at > now {
                    c.waiting = Some((
                        reason::CRASH_LOOP_BACK_OFF.into(),
                        crash_loop_message(c.backoff.delay(), &c.spec.name, &self.shared.key.name),
                    ));
                    return Some(at);
                }
                if !recreate {
                    c.backoff.advance();
                }
                c.recreate = false;
                self.new_attempt(i, infra_id, now).await
            }
            None => self.new_attempt(i, infra_id, now).await,
        }
    }

    /// Pulls (if needed), creates and starts the next attempt of container `i`.
    async fn new_attempt(&mut self, i: usize, infra_id: &str, now: Instant) -> Option<Instant> {
        if let Some(at) = self.ctrs[i].pull_retry_at
            && at > now
        {
            let image = self.ctrs[i].spec.image.clone().unwrap_or_default();
            self.ctrs[i].waiting = Some((
                "ImagePullBackOff".into(),
                format!("Back-off pulling image \"{image}\""),
            ));
            return Some(at);
        }
        if let Err(e) = self.ensure_image(i).await {
            let c = &mut self.ctrs[i];
            let image = c.spec.image.clone().unwrap_or_default();
            let never = e.0 == "ErrImageNeverPull";
            c.waiting = Some((e.0.clone(), e.1.clone()));
            let at = now + c.pull_backoff.delay();
            c.pull_backoff.advance();
            c.pull_retry_at = Some(at);
            let reason = if never { "ErrImageNeverPull" } else { "Failed" };
            self.event(
                true,
                reason,
                format!("Failed to pull image \"{image}\": {}", e.1),
            );
            return Some(at);
        }
        {
            let c = &mut self.ctrs[i];
            c.pull_retry_at = None;
            c.pull_backoff.reset();
        }
        let number = self.ctrs[i]
            .current
            .as_ref()
            .or(self.ctrs[i].previous.as_ref())
            .map(|a| a.number + 1)
            .unwrap_or(0);
        let id = match self.create(i, infra_id, number).await {
            Ok(id) => id,
            Err(msg) => {
                let c = &mut self.ctrs[i];
                c.waiting = Some(("CreateContainerError".into(), msg.clone()));
                let at = now + c.backoff.delay();
                c.retry_at = Some(at);
                c.backoff.advance();
                self.event(true, "Failed", format!("Error: {msg}"));
                return Some(at);
            }
        };
        // Keep the current attempt as the previous one; remove the one before.
        let c = &mut self.ctrs[i];
        let older = c.previous.take();
        c.previous = c.current.take();
        c.current = Some(Attempt {
            id: id.clone(),
            number,
            spec_hash: spec::container_hash(&c.spec),
            observed: Observed::Created,
            image_id: None,
            seen_running: None,
        });
        c.retry_at = None;
        c.probes.clear();
        if let Some(old) = older {
            self.remove_in_background(old.id);
        }
        self.start(i, &id).await;
        None
    }

    async fn start(&mut self, i: usize, id: &str) {
        let Ok(docker) = self.node.engine.docker() else {
            return;
        };
        let name = self.ctrs[i].spec.name.clone();
        let started = docker.start_container(id, None).await;
        let failed = started.is_err();
        match started {
            Ok(()) => {
                self.ctrs[i].waiting = None;
                debug!(pod = %self.shared.key, container = %name, "started");
            }
            Err(e) => {
                let msg = engine_message(&e);
                self.ctrs[i].waiting = Some(("RunContainerError".into(), msg.clone()));
                let at = Instant::now() + self.ctrs[i].backoff.delay();
                self.ctrs[i].retry_at = Some(at);
                self.event(true, "Failed", format!("Error: {msg}"));
            }
        }
        // The engine may have run and ended it already: look again now.
        self.observe().await;
        let start_error = self.ctrs[i].waiting.as_ref().map(|w| w.1.clone());
        if let Some(a) = self.ctrs[i].current.as_mut()
            && failed
            && matches!(a.observed, Observed::Created)
        {
            // Start failed and left a created container: it counts as exited.
            a.observed = Observed::Exited {
                code: 128,
                oom: false,
                error: start_error,
                started_at: None,
                finished_at: None,
            };
        }
    }

    /// Pulls the container's image when its pull policy says so.
    /// Errors are `(reason, message)` for the container's waiting state.
    async fn ensure_image(&mut self, i: usize) -> Result<(), (String, String)> {
        let c = &self.ctrs[i].spec;
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let (_, tag) = crate::engine::split_tag(&image);
            if tag == Some("latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = self
            .node
            .engine
            .has_image(&image)
            .await
            .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?;
        match policy.as_str() {
            "Never" if !present => {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!("Container image \"{image}\" is not present with pull policy of Never"),
                ));
            }
            "Never" => return Ok(()),
            "IfNotPresent" if present => return Ok(()),
            _ => {}
        }
        let creds = RegistryCredential::for_image(&self.creds, &image).map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            identitytoken: c.identity_token.clone(),
            serveraddress: Some(c.registry.clone()),
            ..Default::default()
        });
        info!(pod = %self.shared.key, image = %image, "pulling image");
        self.event(false, "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match self.node.engine.pull(&image, creds).await {
            Ok(()) => {
                self.event(
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(())
            }
            Err(e) if present && policy != "Always" => {
                warn!(pod = %self.shared.key, error = %e, "pull failed; using the local image");
                Ok(())
            }
            Err(e) => Err(("ErrImagePull".into(), e)),
        }
    }

    /// Creates attempt `number` of container `i`; returns the engine id.
    async fn create(&mut self, i: usize, infra_id: &str, number: u32) -> Result<String, String> {
        let docker = self.node.engine.docker().map_err(|e| e.to_string())?;
        let flavor = self
            .node
            .engine
            .info()
            .await
            .map_err(|e| e.to_string())?
            .flavor;
        let ctx = MountContext {
            mountpoints: self.mountpoints.clone(),
        };
        let c = &self.ctrs[i];
        let id = self.identity();
        let mut body = spec::app_body(
            &self.pod, &id, &c.spec, c.role, number, infra_id, &self.plan, &ctx, flavor,
        )?;
        if c.role == Role::Ephemeral {
            let target = match &c.target {
                Some(t) => Some(
                    self.ctrs
                        .iter()
                        .find(|x| x.role != Role::Ephemeral && &x.spec.name == t)
                        .filter(|x| x.running())
                        .and_then(|x| x.current.as_ref())
                        .map(|a| a.id.clone())
                        .ok_or_else(|| format!("target container {t:?} is not running"))?,
                ),
                None => None,
            };
            spec::as_ephemeral(&mut body, &c.spec, c.target.as_deref(), target.as_deref());
        }
        let name = spec::container_name(&id, &c.spec.name, number);
        create_replacing(&docker, &name, body).await
    }

    /// Creates the volumes and the infra container, writes the volume files, starts it.
    async fn ensure_infra(&mut self) -> Result<(), String> {
        let engine = self.node.engine.clone();
        let docker = engine.docker().map_err(|e| e.to_string())?;
        if let Some((id, false)) = self.infra.clone() {
            // It exists but is not running: start it again. The app
            // containers joined its old namespaces, so they restart too.
            docker
                .start_container(&id, None)
                .await
                .map_err(|e| engine_message(&e))?;
            for c in self.ctrs.iter_mut().filter(|c| c.role == Role::App) {
                if c.running() {
                    c.recreate = true;
                }
            }
            self.observe().await;
            self.resolve_pod_ip_env();
            return Ok(());
        }
        engine
            .ensure_pause_image()
            .await
            .map_err(|e| e.to_string())?;
        let labels: HashMap<String, String> = self.identity().labels();
        for (name, src) in &self.plan {
            if let VolumeSource::Engine {
                name: vol, memory, ..
            } = src
            {
                let mountpoint = match docker.inspect_volume(vol).await {
                    Ok(v) => v.mountpoint,
                    Err(_) => {
                        let mut req = VolumeCreateRequest {
                            name: Some(vol.clone()),
                            labels: Some(labels.clone()),
                            ..Default::default()
                        };
                        if *memory {
                            req.driver_opts = Some(HashMap::from([
                                ("type".to_string(), "tmpfs".to_string()),
                                ("device".to_string(), "tmpfs".to_string()),
                            ]));
                        }
                        docker
                            .create_volume(req)
                            .await
                            .map_err(|e| format!("creating volume {name}: {}", engine_message(&e)))?
                            .mountpoint
                    }
                };
                self.mountpoints.insert(name.clone(), mountpoint);
            }
        }
        let id = self.identity();
        let body = spec::infra_body(&self.pod, &id, &self.plan, &self.node.policy);
        let cname = spec::container_name(&id, INFRA_CONTAINER, 0);
        let infra_id = create_replacing(&docker, &cname, body).await?;
        self.infra = Some((infra_id.clone(), false));
        self.files_dirty = true;
        self.write_files().await;
        docker
            .start_container(&infra_id, None)
            .await
            .map_err(|e| engine_message(&e))?;
        // After the start: Podman gives a new volume's root to the user of
        // the first container that mounts it.
        self.prepare_empty_dirs(&infra_id).await?;
        self.observe().await;
        self.resolve_pod_ip_env();
        Ok(())
    }

    /// The pod's `fsGroup`, which owns its volumes.
    fn fs_group(&self) -> Option<u64> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .and_then(|g| u64::try_from(g).ok())
    }

    /// Gives every emptyDir the kubelet's permissions (writable by any user;
    /// owned by the pod's `fsGroup`) through the infra container.
    async fn prepare_empty_dirs(&self, infra_id: &str) -> Result<(), String> {
        let fs_group = self.fs_group();
        for (name, src) in &self.plan {
            if !matches!(src, VolumeSource::Engine { files: false, .. }) {
                continue;
            }
            let tar = volumes::empty_dir_root(fs_group)
                .map_err(|e| format!("preparing emptyDir {name}: {e}"))?;
            let path = format!("{INFRA_VOLUME_ROOT}/{name}");
            self.node
                .engine
                .upload(infra_id, &path, tar)
                .await
                .map_err(|e| format!("preparing emptyDir {name}: {e}"))?;
        }
        Ok(())
    }

    /// Writes the materialised volume files through the infra container.
    async fn write_files(&mut self) {
        let Some((infra_id, _)) = self.infra.clone() else {
            return;
        };
        let fs_group = self.fs_group();
        let mut ok = true;
        for (name, files) in &self.files {
            if !matches!(
                self.plan.get(name),
                Some(VolumeSource::Engine { files: true, .. })
            ) {
                continue;
            }
            let tar = match volumes::archive(files, fs_group) {
                Ok(t) => t,
                Err(e) => {
                    warn!(pod = %self.shared.key, volume = %name, error = %e, "building the volume archive failed");
                    ok = false;
                    continue;
                }
            };
            let path = format!("{INFRA_VOLUME_ROOT}/{name}");
            if let Err(e) = self.node.engine.upload(&infra_id, &path, tar).await {
                warn!(pod = %self.shared.key, volume = %name, error = %e, "writing volume files failed");
                ok = false;
            }
        }
        self.files_dirty = !ok;
    }

    /// Runs the probes that are due; returns when the next one is.
    async fn probes(&mut self) -> Instant {
        let now = Instant::now();
        let mut next = now + RESYNC;
        let ip = self.ip.clone();
        let mut kills = Vec::new();
        let mut events = Vec::new();
        for c in self
            .ctrs
            .iter_mut()
            .filter(|c| c.role == Role::App || c.sidecar())
        {
            if !c.running() || c.stopping {
                continue;
            }
            let Some(id) = c.current.as_ref().map(|a| a.id.clone()) else {
                continue;
            };
            let startup_done = c
                .probe_verdict(ProbeKind::Startup)
                .is_none_or(|v| v == Some(true));
            for p in 0..c.probes.len() {
                let kind = c.probes[p].kind;
                if kind != ProbeKind::Startup && !startup_done {
                    continue;
                }
                if kind == ProbeKind::Startup && startup_done {
                    continue;
                }
                if c.probes[p].next > now {
                    next = next.min(c.probes[p].next);
                    continue;
                }
                let result =
                    probe::run(&self.node.engine, &id, &c.spec, ip.as_deref(), &c.probes[p]).await;
                if let Err(e) = &result {
                    events.push(format!("{} probe failed: {e}", kind.title()));
                }
                let changed = c.probes[p].record(result, Instant::now());
                next = next.min(c.probes[p].next);
                if changed == Some(false) && kind != ProbeKind::Readiness {
                    c.stopping = true;
                    kills.push((
                        id.clone(),
                        format!(
                            "Container {} failed {} probe, will be restarted",
                            c.spec.name,
                            kind.title().to_lowercase()
                        ),
                    ));
                    break;
                }
            }
        }
        for e in events {
            self.event(true, "Unhealthy", e);
        }
        for (id, why) in kills {
            self.stop_in_background(id, "Killing", why);
        }
        next
    }

    /// Stops a container with the pod's grace period without holding up the
    /// supervisor; its exit arrives as an engine event.
    fn stop_in_background(&self, id: String, reason: &str, why: String) {
        self.event(false, reason, why);
        let engine = self.node.engine.clone();
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Ok(docker) = engine.docker() {
                let _ = docker
                    .stop_container(
                        &id,
                        Some(StopContainerOptions {
                            t: Some(grace.clamp(0, i64::from(i32::MAX)) as i32),
                            ..Default::default()
                        }),
                    )
                    .await;
            }
            shared.wake.notify_one();
        });
    }

    fn remove_in_background(&self, id: String) {
        let engine = self.node.engine.clone();
        tokio::spawn(async move {
            if let Ok(docker) = engine.docker() {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        });
    }

    fn event(&self, warning: bool, reason: &str, message: String) {
        if warning {
            info!(pod = %self.shared.key, reason, %message, "pod event");
        } else {
            debug!(pod = %self.shared.key, reason, %message, "pod event");
        }
        if let Some(n) = self.node.notifier.get() {
            n.pod_event(self.shared.key.clone(), warning, reason, message);
        }
    }

    /// Computes the status and pushes it when it changed.
    fn publish(&mut self) {
        let status = self.status();
        {
            let mut view = lock(&self.shared.view);
            view.infra = self.infra.as_ref().map(|(id, _)| id.clone());
            view.ip = self.ip.clone();
            view.containers = self
                .ctrs
                .iter()
                .map(|c| {
                    (
                        c.spec.name.clone(),
                        (
                            c.current.as_ref().map(|a| a.id.clone()),
                            c.previous.as_ref().map(|a| a.id.clone()),
                        ),
                    )
                })
                .collect();
        }
        if self.last_published.as_ref() == Some(&status) {
            return;
        }
        *lock(&self.shared.status) = status.clone();
        self.last_published = Some(status.clone());
        if self.first_publish {
            self.first_publish = false;
            return;
        }
        if let Some(n) = self.node.notifier.get() {
            n.pod_status(self.shared.key.clone(), status);
        }
    }

    fn status(&self) -> PodStatus {
        let policy = restart_policy(&self.pod);
        let inits: Vec<&Ctr> = self.ctrs.iter().filter(|c| c.role == Role::Init).collect();
        let apps: Vec<&Ctr> = self.ctrs.iter().filter(|c| c.role == Role::App).collect();
        let ephemeral: Vec<ContainerStatus> = self
            .ctrs
            .iter()
            .filter(|c| c.role == Role::Ephemeral)
            .map(|c| ContainerStatus {
                ready: false,
                ..container_status(c, None, self.infra_error.as_deref())
            })
            .collect();
        let init_done = inits.iter().all(|c| c.init_done());
        let app_terminal = |c: &&Ctr| c.exit().is_some_and(|code| !should_restart(policy, code));
        let phase = if self.failed.is_some() {
            "Failed"
        } else if !init_done {
            "Pending"
        } else if !apps.is_empty() && apps.iter().all(app_terminal) {
            if apps.iter().all(|c| c.exit() == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if apps.iter().any(|c| c.running() || c.exit().is_some()) {
            "Running"
        } else {
            "Pending"
        };
        let initializing = !init_done;
        let statuses = |cs: &[&Ctr], app: bool| -> Vec<ContainerStatus> {
            cs.iter()
                .map(|c| {
                    container_status(
                        c,
                        if app && initializing {
                            Some(reason::POD_INITIALIZING)
                        } else {
                            None
                        },
                        self.infra_error.as_deref(),
                    )
                })
                .collect()
        };
        let (reason, message) = match &self.failed {
            Some((r, m)) => (Some(r.clone()), Some(m.clone())),
            None => (None, None),
        };
        PodStatus {
            phase: Some(phase.to_string()),
            reason,
            message,
            pod_ip: self.ip.clone(),
            container_statuses: Some(statuses(&apps, true)),
            init_container_statuses: (!inits.is_empty()).then(|| statuses(&inits, false)),
            ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
            ..Default::default()
        }
    }
}

/// Creates a container named `name`; one of that name left over from an
/// attempt that never got recorded (vk-edge stopped in between) is replaced.
async fn create_replacing(
    docker: &bollard::Docker,
    name: &str,
    body: bollard::models::ContainerCreateBody,
) -> Result<String, String> {
    let opts = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match docker
        .create_container(Some(opts.clone()), body.clone())
        .await
    {
        Ok(r) => Ok(r.id),
        Err(e) if status_of(&e) == Some(409) => {
            let _ = docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            docker
                .create_container(Some(opts), body)
                .await
                .map(|r| r.id)
                .map_err(|e| engine_message(&e))
        }
        Err(e) => Err(engine_message(&e)),
    }
}

/// Inspects a container. Podman reports a container that has just exited as
/// `stopped` for a few milliseconds, a state the Docker API does not have (and
/// the client cannot parse): such answers are asked again.
pub(crate) async fn inspect(
    docker: &bollard::Docker,
    id: &str,
) -> Result<bollard::models::ContainerInspectResponse, bollard::errors::Error> {
    let mut tries = 0;
    loop {
        match docker.inspect_container(id, None).await {
            Err(e) if status_of(&e).is_none() && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                debug!(container = id, error = %e, "inspect answer not understood; asking again");
            }
            other => return other,
        }
    }
}

fn containers_of(pod: &Pod) -> Vec<Ctr> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .map(|c| Ctr::new(Role::Init, c))
        .chain(spec.containers.into_iter().map(|c| Ctr::new(Role::App, c)))
        .chain(
            vk_core::toolkit::ephemeral::ephemeral_containers(pod)
                .into_iter()
                .map(Ctr::ephemeral),
        )
        .collect()
}

fn probes_of(c: &Container, started: Instant) -> Vec<ProbeState> {
    [
        (ProbeKind::Startup, &c.startup_probe),
        (ProbeKind::Liveness, &c.liveness_probe),
        (ProbeKind::Readiness, &c.readiness_probe),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.clone().map(|p| ProbeState::new(k, p, started)))
    .collect()
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

fn time(s: &Option<String>) -> Option<Time> {
    let s = s.as_deref()?;
    let ts: jiff::Timestamp = s.parse().ok()?;
    // Engines write the zero time for "never".
    (ts.as_second() > 0).then_some(Time(ts))
}

/// How an attempt that exited ended, as the engine told.
fn termination(a: &Attempt) -> Option<Termination> {
    match &a.observed {
        Observed::Exited {
            code,
            oom,
            error,
            started_at,
            finished_at,
        } => Some(Termination {
            exit_code: i32::try_from(*code).unwrap_or(i32::MAX),
            oom_killed: *oom,
            message: error.clone(),
            started_at: time(started_at),
            finished_at: time(finished_at),
            container_id: Some(format!("docker://{}", a.id)),
        }),
        _ => None,
    }
}

fn container_status(
    c: &Ctr,
    pending: Option<&str>,
    sandbox_error: Option<&str>,
) -> ContainerStatus {
    let current = c.current.as_ref();
    let state = if let Some((r, m)) = &c.waiting {
        waiting(r, Some(m.clone()))
    } else if let Some(Observed::Running { started_at }) = current.map(|a| &a.observed) {
        running(time(started_at))
    } else if let Some(t) = current.and_then(termination) {
        terminated(t)
    } else {
        match (pending, sandbox_error) {
            (_, Some(e)) => waiting(reason::CONTAINER_CREATING, Some(e.to_string())),
            (Some(p), None) => waiting(p, None),
            (None, None) => waiting(reason::CONTAINER_CREATING, None),
        }
    };
    // The last termination: of this attempt when it is being restarted, else
    // of the previous attempt.
    let last = if c.waiting.is_some() {
        current.and_then(termination)
    } else {
        None
    }
    .or_else(|| c.previous.as_ref().and_then(termination));
    let image = c.spec.image.as_deref().unwrap_or_default();
    ContainerStatus {
        image_id: current.and_then(|a| a.image_id.clone()).unwrap_or_default(),
        container_id: current.map(|a| format!("docker://{}", a.id)),
        ready: c.ready(),
        started: Some(c.started()),
        restart_count: current.map(|a| a.number as i32).unwrap_or(0),
        last_state: last.map(terminated),
        ..status::container_status(&c.spec.name, image, state)
    }
}

/// Stops and removes everything of one pod in the engine: app containers with
/// the grace period, then the rest, then its volumes. Returns whether anything
/// was there.
pub async fn remove_pod(
    engine: &Engine,
    node: &str,
    uid: &str,
    grace: Duration,
) -> Result<bool, vk_core::ProviderError> {
    let docker = engine.docker()?;
    let containers = crate::provider::list_containers(engine, node, Some(uid)).await?;
    let grace_secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
    let stops = containers
        .iter()
        .filter(|c| label(c, LABEL_ROLE) != Some("infra"))
        .filter(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| format!("{s:?}").to_lowercase().contains("running"))
        })
        .filter_map(|c| c.id.clone())
        .map(|id| {
            let docker = docker.clone();
            async move {
                let _ = docker
                    .stop_container(
                        &id,
                        Some(StopContainerOptions {
                            t: Some(grace_secs),
                            ..Default::default()
                        }),
                    )
                    .await;
            }
        });
    futures::future::join_all(stops).await;
    // Ephemeral containers first (they join their target's process
    // namespace), the infra container last: Podman refuses to remove a
    // container others still join ("has dependent containers").
    let mut ordered: Vec<&ContainerSummary> = containers.iter().collect();
    ordered.sort_by_key(|c| match label(c, LABEL_ROLE) {
        Some("ephemeral") => 0,
        Some("infra") => 2,
        _ => 1,
    });
    for c in ordered {
        let Some(id) = &c.id else { continue };
        if label(c, LABEL_ROLE) == Some("infra") {
            let _ = docker
                .kill_container(
                    id,
                    Some(KillContainerOptions {
                        signal: "KILL".into(),
                    }),
                )
                .await;
        }
        match docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(crate::engine::map_error(e, "removing a container")),
        }
    }
    let removed_volumes = volumes::remove_for_pod(engine, node, uid).await?;
    Ok(!containers.is_empty() || removed_volumes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(pod: Pod) -> PodShared {
        PodShared {
            key: PodKey::default(),
            pod: Mutex::new(pod),
            status: Mutex::default(),
            view: Mutex::default(),
            update: Mutex::default(),
            wake: Notify::new(),
        }
    }

    fn pod_with_image(image: &str) -> Pod {
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn debugger() -> Vec<EphemeralContainer> {
        vec![EphemeralContainer {
            name: "dbg".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }]
    }

    #[test]
    fn ephemeral_containers_change_nothing_else_of_the_pod() {
        // Nothing pending: the pod as handed over, plus them; files kept.
        let s = shared(pod_with_image("v1"));
        s.push_ephemeral(debugger());
        let u = lock(&s.update).clone().unwrap();
        assert!(u.files.is_none(), "the files are kept");
        let spec = u.pod.spec.unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("v1"));
        assert_eq!(spec.ephemeral_containers.unwrap()[0].name, "dbg");

        // An update still pending keeps its spec and files.
        let s = shared(pod_with_image("v1"));
        let files = BTreeMap::from([("cfg".to_string(), VolumeFiles::default())]);
        s.push_update(Update {
            pod: pod_with_image("v2"),
            files: Some(files.clone()),
            ..Update::default()
        });
        s.push_ephemeral(debugger());
        let u = lock(&s.update).clone().unwrap();
        assert_eq!(u.files, Some(files));
        let spec = u.pod.spec.unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("v2"));
        assert_eq!(spec.ephemeral_containers.unwrap().len(), 1);
        assert_eq!(
            s.pod().spec.unwrap().ephemeral_containers.unwrap()[0].name,
            "dbg"
        );
    }

    fn attempt(observed: Observed, number: u32) -> Attempt {
        Attempt {
            id: format!("id{number}"),
            number,
            spec_hash: String::new(),
            observed,
            image_id: Some("sha256:x".into()),
            seen_running: None,
        }
    }

    #[test]
    fn a_crash_looping_container_shows_its_last_termination() {
        let mut c = Ctr::new(
            Role::App,
            Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            },
        );
        c.current = Some(attempt(
            Observed::Exited {
                code: 3,
                oom: false,
                error: None,
                started_at: Some("2026-12-01T10:00:00Z".into()),
                finished_at: Some("2026-12-01T10:00:01Z".into()),
            },
            2,
        ));
        c.waiting = Some(("CrashLoopBackOff".into(), "back-off 40s".into()));
        let s = container_status(&c, None, None);
        assert_eq!(s.restart_count, 2);
        let w = s.state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let t = s.last_state.unwrap().terminated.unwrap();
        assert_eq!(t.exit_code, 3);
        assert_eq!(t.reason.as_deref(), Some("Error"));
        assert!(!s.ready);
    }

    #[test]
    fn terminations_carry_the_kubelet_reasons() {
        // (exit code, OOM, engine error, engine start time, reason)
        let cases = [
            (0, false, None, "2026-12-01T10:00:00Z", "Completed"),
            (2, false, None, "2026-12-01T10:00:00Z", "Error"),
            (137, true, None, "2026-12-01T10:00:00Z", "OOMKilled"),
            (5_000_000_000, false, None, "2026-12-01T10:00:00Z", "Error"),
            (
                128,
                false,
                Some("no such file"),
                "0001-01-01T00:00:00Z",
                "StartError",
            ),
            (137, false, Some("removed"), "2026-12-01T10:00:00Z", "Error"),
        ];
        for (code, oom, error, started, want) in cases {
            let t = termination(&attempt(
                Observed::Exited {
                    code,
                    oom,
                    error: error.map(str::to_string),
                    started_at: Some(started.into()),
                    finished_at: None,
                },
                0,
            ))
            .unwrap();
            assert_eq!(t.reason(), want, "{code} {error:?}");
            assert_eq!(i64::from(t.exit_code), code.min(i64::from(i32::MAX)));
            assert_eq!(t.container_id.as_deref(), Some("docker://id0"));
        }
        assert!(termination(&attempt(Observed::Created, 0)).is_none());
    }

    #[test]
    fn readiness_needs_a_passing_probe() {
        let mut c = Ctr::new(
            Role::App,
            Container {
                name: "c".into(),
                readiness_probe: Some(Default::default()),
                ..Default::default()
            },
        );
        c.current = Some(attempt(Observed::Running { started_at: None }, 0));
        c.probes = probes_of(&c.spec, Instant::now());
        assert!(c.started());
        assert!(!c.ready());
        c.probes[0].verdict = Some(true);
        assert!(c.ready());
    }
}
