//! [`FargateProvider`]: the [`Provider`] over ECS, CloudWatch Logs and
//! Secrets Manager. Everything a pod becomes is in [`crate::task`] and
//! everything a task says is in [`crate::status`]; this file makes the calls.
//!
//! - Create: its secret, its task definition and `RunTask`. A retry (or a
//!   create before this process first listed the cluster) first looks for
//!   the pod's task by `startedBy`, so no second task runs: `clientToken`
//!   alone does not protect against that everywhere. A first attempt needs
//!   no look-up: the periodic listing already answered.
//! - Delete: `StopTask`, the pod's task definitions deregistered, its
//!   secret deleted ([`crate::launch`] makes and unmakes). For a pod this
//!   process created at one go, the tasks it ran are the ones it stops, with
//!   no look-up, and the secret is deleted only when it made one.
//! - The first status after a create is the task `RunTask` answered.
//! - Restarts: a stopped task is replaced after the back-off, as
//!   [`crate::restart`] decides, while its status is listed.
//! - Status: poll-only. One list of the cluster's tasks per poll
//!   (`ListTasks` for desired RUNNING and STOPPED, `DescribeTasks` by 100),
//!   never a call per pod; a task definition is described once per process.
//! - Node: capacity from the config, the region as a label, healthy while
//!   the cluster is ACTIVE; the cluster is created when missing.
//! - Leftovers: at the first full listing and every `SweepInterval`, task
//!   definitions and secrets of this node whose pod has no task and was not
//!   created here are looked for, and removed at their second sighting
//!   ([`crate::sweep`]).
//! - Volume files are written once, at the task's start: `refresh_volumes`
//!   keeps the core's default (the files the task started with), as ECS
//!   cannot change a running task.
//! - Exec and attach would need ECS Exec (`ExecuteCommand` and its Session
//!   Manager data channel), stats CloudWatch Container Insights: neither is
//!   implemented, and each answers `NotImplemented` saying so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecs::types::{Task, TaskDefinitionField};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tracing::{info, warn};
use vk_core::provider::{
    BackendPod, ByteStream, CallRateLimit, ExecIo, LogOptions, NodeCapacity, PodKey, PodUsage,
    Provider, ProviderError, ProviderResult, ResolvedPod, StatusNotifier, StreamKind,
};
use vk_core::toolkit::log_lines::log_stream;
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;
use vk_core::toolkit::pod_identity::{NameRules, PodIdentity, backend_name};
use vk_core::toolkit::restart::BackOff;

use crate::aws::{Clients, provider_error};
use crate::config::FargateConfig;
use crate::launch::{
    RunSpec, delete_secret, deregister_family, put_secret, register, replace_task, run_task,
    stop_tasks,
};
use crate::listing::{describe_tasks, list_task_arns};
use crate::logs::CloudWatchLines;
use crate::restart::{
    Next, PodTasks, TAG_RESTART_POLICY, group, next, restart_count, seeded_backoff, tag,
    with_restarts,
};
use crate::status::{DefinedContainer, defined_containers, pod_of, pod_status};
use crate::sweep::{Sweeper, family_of_arn};
use crate::task::{Placement, TaskPlan, TaskSettings, plan_task};

/// What `exec` answers: ECS Exec (`ExecuteCommand` and the Session Manager
/// data channel it opens) is not implemented. [`Provider::stream_support`]
/// says so before the connection is upgraded: the kubelet API answers 501
/// with this message, and `kubectl exec` prints it.
pub const EXEC_NOT_IMPLEMENTED: &str =
    "exec through ECS Exec (ExecuteCommand and its Session Manager data channel)";

/// What `attach` answers (ECS Exec, as for exec).
pub const ATTACH_NOT_IMPLEMENTED: &str =
    "attach through ECS Exec (ExecuteCommand and its Session Manager data channel)";

/// What stats answer: ECS reports no per-task usage without CloudWatch
/// Container Insights, which vk-fargate does not read.
pub const STATS_NOT_IMPLEMENTED: &str =
    "stats of Fargate tasks (they would come from CloudWatch Container Insights)";

/// How often a followed log asks CloudWatch again.
const LOG_POLL: Duration = Duration::from_secs(2);

/// What the provider remembers between calls; the backend is the record.
#[derive(Default)]
struct State {
    /// Pods as they were created, for `/runningpods/`.
    pods: HashMap<PodKey, Pod>,
    /// Containers of each task definition (immutable, so kept for good).
    definitions: HashMap<String, Arc<Vec<DefinedContainer>>>,
    /// Tasks stopped for a deleted pod: ECS keeps showing them for an hour.
    deleted: HashSet<String>,
    /// The restart back-off of each pod whose task stopped.
    backoffs: HashMap<PodKey, BackOff>,
    /// When each stopped task (without `stoppedAt`) was first seen stopped.
    stopped_seen: HashMap<String, SystemTime>,
    /// Pods whose replacement task is being run (by another call).
    replacing: HashSet<PodKey>,
    /// UIDs of the pods this process was asked to create, until deleted:
    /// what they registered is never swept.
    attempted: HashSet<String>,
    /// What each pod has in ECS, as far as this process made or listed it.
    known: HashMap<PodKey, Known>,
    /// Whether a full listing of the cluster's tasks has been made: from
    /// then on, a pod not in [`State::known`] has no task.
    listed: bool,
}

/// A pod's tasks and secret as this process made or last
/// listed them, so that the create, the first status and the delete of a
/// pod need no look-up of their own: the periodic listing is the look-up.
#[derive(Default)]
struct Known {
    /// Its tasks by ARN, as `RunTask` answered or as last listed.
    tasks: BTreeMap<String, Task>,
    /// Whether it has a secret to delete; `None`: not known (an adopted pod).
    secret: Option<bool>,
    /// Whether these are all the pod's tasks: true only for a pod this
    /// process created at its first attempt, with no failed replacement
    /// since. A retried create or replacement may have run a task whose
    /// answer was lost.
    complete: bool,
}

impl Known {
    fn task(&mut self, task: Task) {
        if let Some(arn) = task.task_arn() {
            self.tasks.insert(arn.to_string(), task);
        }
    }
}

/// One virtual node's pods as Fargate tasks.
pub struct FargateProvider {
    node: String,
    config: FargateConfig,
    clients: tokio::sync::OnceCell<Clients>,
    cluster_ready: tokio::sync::OnceCell<()>,
    state: Mutex<State>,
    sweeper: Sweeper,
    notifier: OnceLock<StatusNotifier>,
}

impl FargateProvider {
    /// The provider of node `node`. No AWS call until the first use.
    pub fn new(node: &str, config: FargateConfig) -> FargateProvider {
        let sweeper = Sweeper::new(config.sweep_interval);
        FargateProvider {
            node: node.to_string(),
            config,
            clients: tokio::sync::OnceCell::new(),
            cluster_ready: tokio::sync::OnceCell::new(),
            state: Mutex::default(),
            sweeper,
            notifier: OnceLock::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| Clients::load(&self.config.region))
            .await
    }

    fn event(&self, key: &PodKey, warning: bool, reason: &str, message: String) {
        if let Some(n) = self.notifier.get() {
            n.pod_event(key.clone(), warning, reason, message);
        }
    }

    /// The cluster's status (`ACTIVE`...), `None` when it does not exist.
    async fn cluster_status(&self) -> ProviderResult<Option<String>> {
        let out = self
            .clients()
            .await
            .ecs
            .describe_clusters()
            .clusters(&self.config.cluster_name)
            .send()
            .await
            .map_err(|e| provider_error("DescribeClusters", e))?;
        Ok(out
            .clusters()
            .iter()
            .find(|c| c.cluster_name() == Some(self.config.cluster_name.as_str()))
            .and_then(|c| c.status())
            .map(str::to_string))
    }

    /// Creates the cluster when it is missing (once per process, as upstream did).
    async fn ensure_cluster(&self) -> ProviderResult<()> {
        self.cluster_ready
            .get_or_try_init(|| async {
                if self.cluster_status().await?.as_deref() == Some("ACTIVE") {
                    return Ok(());
                }
                info!(cluster = %self.config.cluster_name, "creating the ECS cluster");
                let mut create = self
                    .clients()
                    .await
                    .ecs
                    .create_cluster()
                    .cluster_name(&self.config.cluster_name);
                if self.config.capacity_provider.name().is_some() {
                    create = create
                        .capacity_providers("FARGATE")
                        .capacity_providers("FARGATE_SPOT");
                }
                create
                    .send()
                    .await
                    .map_err(|e| provider_error("CreateCluster", e))?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Task ARNs of the cluster (of one family when given), any desired status.
    async fn task_arns(&self, family: Option<&str>) -> ProviderResult<Vec<String>> {
        list_task_arns(self.clients().await, &self.config.cluster_name, family).await
    }

    /// The tasks of `arns`, with their tags.
    async fn describe(&self, arns: &[String]) -> ProviderResult<Vec<Task>> {
        describe_tasks(self.clients().await, &self.config.cluster_name, arns).await
    }

    /// The containers of a task definition, described once.
    async fn defined(&self, arn: &str) -> ProviderResult<Arc<Vec<DefinedContainer>>> {
        if let Some(d) = self.state().definitions.get(arn) {
            return Ok(d.clone());
        }
        let out = self
            .clients()
            .await
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| provider_error("DescribeTaskDefinition", e))?;
        let defs = out
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default();
        let defined = Arc::new(defined_containers(defs));
        self.state()
            .definitions
            .insert(arn.to_string(), defined.clone());
        Ok(defined)
    }

    /// This node's tasks (not those of deleted pods), by pod.
    async fn node_tasks(&self, family: Option<&str>) -> ProviderResult<BTreeMap<PodKey, PodTasks>> {
        self.ensure_cluster().await?;
        let arns = self.task_arns(family).await?;
        let arns: Vec<String> = {
            let mut state = self.state();
            if family.is_none() {
                // ECS forgets stopped tasks after a while: so do we.
                let listed: HashSet<&String> = arns.iter().collect();
                state.deleted.retain(|a| listed.contains(a));
            }
            arns.iter()
                .filter(|a| !state.deleted.contains(*a))
                .cloned()
                .collect()
        };
        let mut mine = Vec::new();
        for task in self.describe(&arns).await? {
            let tags: HashMap<&str, &str> = task
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?)))
                .collect();
            let Some(identity) = PodIdentity::from_labels(|k| tags.get(k).copied()) else {
                continue;
            };
            if identity.node != self.node {
                continue;
            }
            mine.push((identity.key(), task));
        }
        let mut state = self.state();
        for (key, task) in &mine {
            if !state.deleted.contains(task.task_arn().unwrap_or_default()) {
                state
                    .known
                    .entry(key.clone())
                    .or_default()
                    .task(task.clone());
            }
        }
        if family.is_none() {
            state.listed = true;
            // A stopped task ECS no longer lists is forgotten here too.
            let listed: HashSet<&str> = mine.iter().filter_map(|(_, t)| t.task_arn()).collect();
            for known in state.known.values_mut() {
                known.tasks.retain(|arn, t| {
                    listed.contains(arn.as_str()) || t.last_status() != Some("STOPPED")
                });
            }
        }
        drop(state);
        Ok(group(mine))
    }

    /// Statuses of this node's tasks.
    async fn statuses(
        &self,
        family: Option<&str>,
    ) -> ProviderResult<Vec<(PodKey, PodStatus, Arc<Vec<DefinedContainer>>)>> {
        let tasks = self.node_tasks(family).await?;
        if family.is_none() {
            self.sweep_if_due(&tasks).await;
        }
        self.statuses_of(tasks).await
    }

    /// The statuses of `tasks`; stopped tasks are replaced as their policy says.
    async fn statuses_of(
        &self,
        tasks: BTreeMap<PodKey, PodTasks>,
    ) -> ProviderResult<Vec<(PodKey, PodStatus, Arc<Vec<DefinedContainer>>)>> {
        let mut out = Vec::new();
        for (key, tasks) in tasks {
            let task = &tasks.current;
            let Some(def_arn) = task.task_definition_arn() else {
                continue;
            };
            let defined = self.defined(def_arn).await?;
            let count = restart_count(task);
            let previous = match tasks.previous.as_ref() {
                Some(p) if count > 0 => match p.task_definition_arn() {
                    Some(arn) => Some(pod_status(p, &self.defined(arn).await?)),
                    None => None,
                },
                _ => None,
            };
            let waiting = match self.restart_due(&key, task, &defined) {
                Next::Stay => None,
                Next::Wait { delay } => Some(delay),
                Next::Replace => {
                    let delay = self.backoff_delay(&key);
                    if let Err(e) = self.replace(&key, task).await {
                        warn!(pod = %key, error = %e, "the replacement task did not start; the next poll tries again");
                    }
                    Some(delay)
                }
            };
            let status = with_restarts(
                pod_status(task, &defined),
                previous.as_ref(),
                count,
                waiting,
                &key.name,
            );
            out.push((key, status, defined));
        }
        Ok(out)
    }

    /// Runs the sweep of leftovers when it is due (see [`crate::sweep`]);
    /// `tasks`: this node's tasks, just listed. Errors wait for the next one.
    async fn sweep_if_due(&self, tasks: &BTreeMap<PodKey, PodTasks>) {
        if !self.sweeper.due_now() {
            return;
        }
        let mut known_families: HashSet<String> = tasks
            .values()
            .flat_map(|t| [Some(&t.current), t.previous.as_ref()])
            .flatten()
            .filter_map(|t| t.task_definition_arn())
            .map(|arn| family_of_arn(arn).to_string())
            .collect();
        let mut live: HashSet<String> = tasks.keys().map(|k| k.uid.clone()).collect();
        {
            let state = self.state();
            known_families.extend(state.pods.keys().map(family_of));
            live.extend(state.attempted.iter().cloned());
        }
        let clients = self.clients().await;
        // A create that started meanwhile keeps what it registered.
        let not_created = |uid: &str| !self.state().attempted.contains(uid);
        if let Err(e) = self
            .sweeper
            .run(clients, &self.node, &known_families, &live, not_created)
            .await
        {
            warn!(error = %e, "looking for task definitions and secrets without a pod failed; the next sweep tries again");
        }
    }

    /// Whether the pod has a task already, from an earlier attempt or an
    /// earlier process. What this process knows answers, once it has listed
    /// the cluster; a retry asks ECS (`ListTasks` by `startedBy`), as an
    /// attempt cut short may have run a task whose answer was lost.
    async fn has_task(
        &self,
        key: &PodKey,
        started_by: &str,
        retry: bool,
        pod: &str,
    ) -> ProviderResult<bool> {
        {
            let state = self.state();
            if state.known.get(key).is_some_and(|k| !k.tasks.is_empty()) {
                return Ok(true);
            }
            if state.listed && !retry {
                return Ok(false);
            }
        }
        let existing = self
            .clients()
            .await
            .ecs
            .list_tasks()
            .cluster(&self.config.cluster_name)
            .started_by(started_by)
            .send()
            .await
            .map_err(|e| provider_error(&format!("ListTasks for {pod}"), e))?;
        Ok(!existing.task_arns().is_empty())
    }

    /// Deletes what this process created for the pod: its tasks stopped
    /// and its secret deleted when it has one. Its revisions are listed
    /// (`ListTaskDefinitions`) all the same: an SDK retry of a
    /// `RegisterTaskDefinition` whose answer was lost registers a second
    /// one that only ECS knows of. Returns the pod's task ARNs.
    async fn delete_known(&self, key: &PodKey) -> ProviderResult<Vec<String>> {
        let clients = self.clients().await;
        let (tasks, secret) = match self.state().known.get(key) {
            Some(k) => (k.tasks.values().cloned().collect::<Vec<_>>(), k.secret),
            None => return Ok(Vec::new()),
        };
        stop_tasks(clients, &self.config, &tasks, key).await?;
        let arns: Vec<String> = tasks
            .iter()
            .filter_map(|t| t.task_arn().map(str::to_string))
            .collect();
        deregister_family(clients, &family_of(key), key).await?;
        if secret != Some(false) {
            delete_secret(clients, &format!("vk-rs/{}", family_of(key)), key).await?;
        }
        Ok(arns)
    }

    /// Deletes a pod this process did not create at one go (adopted, or
    /// created by retries): its tasks and revisions looked up by family,
    /// its secret deleted whether or not it has one.
    async fn delete_looked_up(&self, key: &PodKey) -> ProviderResult<Vec<String>> {
        let family = family_of(key);
        let clients = self.clients().await;
        let arns = self.task_arns(Some(&family)).await?;
        stop_tasks(clients, &self.config, &self.describe(&arns).await?, key).await?;
        deregister_family(clients, &family, key).await?;
        delete_secret(clients, &format!("vk-rs/{family}"), key).await?;
        Ok(arns)
    }

    fn backoff_delay(&self, key: &PodKey) -> Duration {
        self.state()
            .backoffs
            .get(key)
            .map_or_else(|| BackOff::kubelet().delay(), BackOff::delay)
    }

    /// Whether the pod's current task is replaced, now or later.
    fn restart_due(&self, key: &PodKey, task: &Task, defined: &[DefinedContainer]) -> Next {
        if task.last_status() != Some("STOPPED") {
            return Next::Stay;
        }
        let policy = tag(task, TAG_RESTART_POLICY).unwrap_or("Never");
        let now = SystemTime::now();
        let mut state = self.state();
        let since = match task
            .stopped_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
        {
            Some(at) => at,
            None => *state
                .stopped_seen
                .entry(task.task_arn().unwrap_or_default().to_string())
                .or_insert(now),
        };
        let backoff = state
            .backoffs
            .entry(key.clone())
            .or_insert_with(|| seeded_backoff(restart_count(task)));
        // A task that ran long enough starts the back-off over, as a container does.
        if let (Some(start), Some(stop)) = (task.started_at(), task.stopped_at()) {
            let ran = u64::try_from(stop.secs() - start.secs()).unwrap_or(0);
            backoff.ran_for(Duration::from_secs(ran));
        }
        next(task, defined, policy, backoff, since, now)
    }

    /// Runs the task that replaces `stopped` (once, even across calls and restarts).
    async fn replace(&self, key: &PodKey, stopped: &Task) -> ProviderResult<()> {
        if !self.state().replacing.insert(key.clone()) {
            return Ok(());
        }
        let result = replace_task(self.clients().await, &self.config, key, stopped).await;
        {
            let mut state = self.state();
            state.replacing.remove(key);
            if result.is_err() {
                state.known.entry(key.clone()).or_default().complete = false;
            }
        }
        let Some((count, task)) = result? else {
            return Ok(());
        };
        {
            let mut state = self.state();
            if let Some(b) = state.backoffs.get_mut(key) {
                b.advance();
            }
            state.known.entry(key.clone()).or_default().task(task);
        }
        info!(pod = %key, restarts = count, "stopped task replaced");
        self.event(
            key,
            true,
            "TaskReplaced",
            format!(
                "the pod's task stopped ({}); restart {count} runs a new task",
                stopped.stopped_reason().unwrap_or("no reason given")
            ),
        );
        Ok(())
    }
}

fn family_of(key: &PodKey) -> String {
    backend_name(
        &key.namespace,
        &key.name,
        &key.uid,
        &NameRules::ECS_TASK_FAMILY,
    )
}

#[async_trait]
impl Provider for FargateProvider {
    fn name(&self) -> &str {
        "fargate"
    }

    async fn node_capacity(&self) -> NodeCapacity {
        let c = &self.config;
        let resources: NodeResources = NodeResources {
            cpu: Some(c.cpu.clone()),
            memory: Some(c.memory.clone()),
            pods: Some(c.pods.clone()),
            others: BTreeMap::from([("ephemeral-storage".to_string(), c.storage.clone())]),
            ..Default::default()
        };
        let mut capacity = node_capacity(&resources, CapacityDefaults::default());
        capacity
            .labels
            .insert("topology.kubernetes.io/region".into(), c.region.clone());
        capacity.operating_system = Some("linux".into());
        capacity
    }

    async fn ping(&self) -> ProviderResult<()> {
        self.ensure_cluster().await?;
        match self.cluster_status().await?.as_deref() {
            Some("ACTIVE") => Ok(()),
            Some(other) => Err(ProviderError::unavailable(format!(
                "ECS cluster {} is {other}",
                self.config.cluster_name
            ))),
            None => Err(ProviderError::unavailable(format!(
                "ECS cluster {} does not exist",
                self.config.cluster_name
            ))),
        }
    }

    async fn create_pod(&self, resolved: &ResolvedPod) -> ProviderResult<()> {
        let key = resolved.key().ok_or_else(|| {
            ProviderError::InvalidInput("pod without namespace, name or UID".into())
        })?;
        let pod = format!("{}/{}", key.namespace, key.name);
        let retry = {
            let mut state = self.state();
            let retry = !state.attempted.insert(key.uid.clone());
            state.known.entry(key.clone()).or_default().complete = !retry;
            retry
        };
        let plan = plan_task(
            resolved,
            TaskSettings {
                node: &self.node,
                config: &self.config,
            },
        )?;
        if plan.needs_secret() && self.config.execution_role_arn.is_none() {
            return Err(ProviderError::InvalidInput(format!(
                "pod {pod}: its env values from Secrets, its volume files and its pull credentials go through Secrets Manager, which needs ExecutionRoleArn in the provider config"
            )));
        }
        self.ensure_cluster().await?;
        if self.has_task(&key, &plan.started_by, retry, &pod).await? {
            info!(pod = %key, "task already running: adopted");
        } else {
            let clients = self.clients().await;
            let secret_arn = if plan.needs_secret() {
                let body = plan.secret_body();
                Some(put_secret(clients, &plan.secret_name, &body, &plan.tags, &pod).await?)
            } else {
                None
            };
            self.state().known.entry(key.clone()).or_default().secret = Some(secret_arn.is_some());
            let (definition, defs) =
                register(clients, &self.config, &plan, secret_arn.as_deref(), &pod).await?;
            self.state()
                .definitions
                .insert(definition.clone(), Arc::new(defined_containers(&defs)));
            let placed = Placement {
                network: plan.network.clone(),
                capacity: plan.capacity,
            };
            let spec = RunSpec {
                definition: &definition,
                placement: &placed,
                started_by: &plan.started_by,
                client_token: &plan.client_token,
                tags: &plan.tags,
            };
            let task = run_task(clients, &self.config, spec, &pod).await?;
            self.state()
                .known
                .entry(key.clone())
                .or_default()
                .task(task);
            info!(pod = %key, family = %plan.family, size = %plan.size.describe(), "task started");
            self.event(
                &key,
                false,
                "TaskSized",
                format!(
                    "Fargate task of {}: the smallest valid size that holds the pod's CPU and memory",
                    plan.size.describe()
                ),
            );
            for skipped in &plan.skipped_volumes {
                self.event(&key, true, "VolumeNotMounted", skipped.clone());
            }
        }
        self.state().pods.insert(key, resolved.pod.clone());
        Ok(())
    }

    async fn update_pod(&self, resolved: &ResolvedPod) -> ProviderResult<()> {
        // A running task cannot change; what the core asks (new images) waits
        // for the next task. Remember the spec for /runningpods/.
        if let Some(key) = resolved.key() {
            self.state().pods.insert(key, resolved.pod.clone());
        }
        Ok(())
    }

    async fn delete_pod(&self, key: &PodKey, _grace: Duration) -> ProviderResult<()> {
        self.ensure_cluster().await?;
        let complete = self.state().known.get(key).is_some_and(|k| k.complete);
        let arns = if complete {
            self.delete_known(key).await?
        } else {
            self.delete_looked_up(key).await?
        };
        {
            let mut state = self.state();
            state.deleted.extend(arns.iter().cloned());
            state.known.remove(key);
            state.pods.remove(key);
            state.backoffs.remove(key);
            state.attempted.remove(&key.uid);
        }
        if arns.is_empty() {
            return Err(ProviderError::NotFound(format!("no task for pod {key}")));
        }
        Ok(())
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        let known: Vec<(PodKey, Task)> = self
            .state()
            .known
            .get(key)
            .map(|k| k.tasks.values().map(|t| (key.clone(), t.clone())).collect())
            .unwrap_or_default();
        let statuses = if known.is_empty() {
            self.statuses(Some(&family_of(key))).await?
        } else {
            self.statuses_of(group(known)).await?
        };
        statuses
            .into_iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, status, _)| Arc::new(status))
            .ok_or_else(|| ProviderError::NotFound(format!("no task for pod {key}")))
    }

    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        let statuses = self.statuses(None).await?;
        let state = self.state();
        Ok(statuses
            .into_iter()
            .map(|(key, status, defined)| BackendPod {
                pod: state
                    .pods
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| pod_of(&key, &self.node, &defined)),
                key,
                status,
            })
            .collect())
    }

    async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        Ok(self
            .statuses(None)
            .await?
            .into_iter()
            .map(|(key, status, _)| (key, status))
            .collect())
    }

    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        // Kept for events only: ECS pushes nothing, so the core polls.
        let _ = self.notifier.set(notifier);
        false
    }

    fn status_poll_interval(&self) -> Duration {
        self.config.poll_interval
    }

    fn stream_support(&self, kind: StreamKind) -> ProviderResult<()> {
        match kind {
            StreamKind::Exec => Err(ProviderError::NotImplemented(EXEC_NOT_IMPLEMENTED)),
            StreamKind::Attach => Err(ProviderError::NotImplemented(ATTACH_NOT_IMPLEMENTED)),
            // The core's default method answers NotImplemented too.
            StreamKind::PortForward => Err(ProviderError::NotImplemented("port-forward")),
        }
    }

    fn call_rate_limit(&self) -> Option<CallRateLimit> {
        // ECS's documented RunTask budget per account and region.
        Some(CallRateLimit {
            qps: 20.0,
            burst: 100,
        })
    }

    async fn container_logs(
        &self,
        key: &PodKey,
        container: &str,
        opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        let Some(group) = self.config.log_group.clone() else {
            return Err(ProviderError::NotImplemented(
                "container logs: the provider config names no CloudWatchLogGroupName",
            ));
        };
        let family = family_of(key);
        let tasks = self
            .node_tasks(Some(&family))
            .await?
            .remove(key)
            .ok_or_else(|| ProviderError::NotFound(format!("no task for pod {key}")))?;
        let task = if opts.previous {
            tasks.previous.ok_or_else(|| {
                ProviderError::NotFound(format!(
                    "pod {key}: no previous task (it was never replaced, or ECS no longer shows it)"
                ))
            })?
        } else {
            tasks.current
        };
        let task_id = task
            .task_arn()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        let source = CloudWatchLines {
            client: self.clients().await.logs.clone(),
            group,
            stream: TaskPlan::log_stream(&family, container, &task_id),
            task_stopped: task.last_status() == Some("STOPPED"),
        };
        if task
            .containers()
            .iter()
            .all(|c| c.name() != Some(container))
        {
            warn!(pod = %key, container, "container not in the task: its log may not exist");
        }
        Ok(log_stream(source, opts, LOG_POLL))
    }

    async fn exec(
        &self,
        _key: &PodKey,
        _container: &str,
        _command: Vec<String>,
        _io: ExecIo,
    ) -> ProviderResult<i32> {
        Err(ProviderError::NotImplemented(EXEC_NOT_IMPLEMENTED))
    }

    async fn attach(&self, _key: &PodKey, _container: &str, _io: ExecIo) -> ProviderResult<i32> {
        Err(ProviderError::NotImplemented(ATTACH_NOT_IMPLEMENTED))
    }

    async fn usage(&self) -> ProviderResult<Vec<PodUsage>> {
        Err(ProviderError::NotImplemented(STATS_NOT_IMPLEMENTED))
    }
}
