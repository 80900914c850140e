//! [`FargateProvider`]: the [`Provider`] over ECS, CloudWatch Logs and
//! Secrets Manager. Everything a pod becomes is in [`crate::task`] and
//! everything a task says is in [`crate::status`]; this file makes the calls.
//!
//! - Create: the pod's task found again by `startedBy` first (a retry or a
//!   restart never runs a second task: `clientToken` alone does not protect
//!   against that everywhere), then its secret, its task definition and
//!   `RunTask`.
//! - Delete: `StopTask`, every revision of the pod's family deregistered,
//!   its secret deleted.
//! - Status: poll-only. One list of the cluster's tasks per poll
//!   (`ListTasks` for desired RUNNING and STOPPED, `DescribeTasks` by 100),
//!   never a call per pod; a task definition is described once per process.
//! - Node: capacity from the config, the region as a label, healthy while
//!   the cluster is ACTIVE; the cluster is created when missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, Compatibility, DesiredStatus, EphemeralStorage, LaunchType,
    NetworkMode, Task, TaskDefinitionField, TaskDefinitionStatus, TaskField,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use tracing::{info, warn};
use vk_core::provider::{
    BackendPod, ByteStream, CallRateLimit, LogOptions, NodeCapacity, PodKey, Provider,
    ProviderError, ProviderResult, ResolvedPod, StatusNotifier,
};
use vk_core::toolkit::log_lines::log_stream;
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;
use vk_core::toolkit::pod_identity::{NameRules, PodIdentity, backend_name};

use crate::aws::{Clients, error_code, is_not_found, provider_error};
use crate::config::FargateConfig;
use crate::logs::CloudWatchLines;
use crate::status::{DefinedContainer, pod_status};
use crate::task::{TaskPlan, TaskSettings, plan_task};

/// `DescribeTasks` takes at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

/// How often a followed log asks CloudWatch again.
const LOG_POLL: Duration = Duration::from_secs(2);

/// The `stoppedReason` of a task stopped because its pod was deleted.
const DELETED_REASON: &str = "Pod deleted in Kubernetes (vk-fargate)";

/// What the provider remembers between calls; the backend is the record.
#[derive(Default)]
struct State {
    /// Pods as they were created, for `/runningpods/`.
    pods: HashMap<PodKey, Pod>,
    /// Containers of each task definition (immutable, so kept for good).
    definitions: HashMap<String, Arc<Vec<DefinedContainer>>>,
    /// Tasks stopped for a deleted pod: ECS keeps showing them for an hour.
    deleted: HashSet<String>,
}

/// One virtual node's pods as Fargate tasks.
pub struct FargateProvider {
    node: String,
    config: FargateConfig,
    clients: tokio::sync::OnceCell<Clients>,
    cluster_ready: tokio::sync::OnceCell<()>,
    state: Mutex<State>,
    notifier: OnceLock<StatusNotifier>,
}

impl FargateProvider {
    /// The provider of node `node`. No AWS call until the first use.
    pub fn new(node: &str, config: FargateConfig) -> FargateProvider {
        FargateProvider {
            node: node.to_string(),
            config,
            clients: tokio::sync::OnceCell::new(),
            cluster_ready: tokio::sync::OnceCell::new(),
            state: Mutex::default(),
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

    /// Task ARNs of the cluster (of one family when given), desired RUNNING and STOPPED.
    async fn task_arns(&self, family: Option<&str>) -> ProviderResult<Vec<String>> {
        let ecs = &self.clients().await.ecs;
        let mut arns = Vec::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut token = None;
            loop {
                let out = ecs
                    .list_tasks()
                    .cluster(&self.config.cluster_name)
                    .set_family(family.map(str::to_string))
                    .desired_status(desired.clone())
                    .max_results(100)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| provider_error("ListTasks", e))?;
                arns.extend(out.task_arns().iter().cloned());
                token = out.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        arns.sort();
        arns.dedup();
        Ok(arns)
    }

    /// The tasks of `arns`, with their tags, 100 a call.
    async fn describe(&self, arns: &[String]) -> ProviderResult<Vec<Task>> {
        let ecs = &self.clients().await.ecs;
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = ecs
                .describe_tasks()
                .cluster(&self.config.cluster_name)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| provider_error("DescribeTasks", e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
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

    /// This node's tasks (not those of deleted pods), the best one per pod:
    /// one still running, else the latest.
    async fn node_tasks(&self, family: Option<&str>) -> ProviderResult<BTreeMap<PodKey, Task>> {
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
        let mut best: BTreeMap<PodKey, Task> = BTreeMap::new();
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
            let key = identity.key();
            let better = best
                .get(&key)
                .is_none_or(|current| rank(&task) > rank(current));
            if better {
                best.insert(key, task);
            }
        }
        Ok(best)
    }

    /// Statuses of this node's tasks.
    async fn statuses(
        &self,
        family: Option<&str>,
    ) -> ProviderResult<Vec<(PodKey, PodStatus, Arc<Vec<DefinedContainer>>)>> {
        let mut out = Vec::new();
        for (key, task) in self.node_tasks(family).await? {
            let Some(def_arn) = task.task_definition_arn() else {
                continue;
            };
            let defined = self.defined(def_arn).await?;
            out.push((key, pod_status(&task, &defined), defined));
        }
        Ok(out)
    }

    /// Stores the pod's Secret-backed values in its secret; returns its ARN.
    async fn put_secret(&self, plan: &TaskPlan, pod: &str) -> ProviderResult<String> {
        let secrets = &self.clients().await.secrets;
        let body = serde_json::to_string(&plan.secret_values)
            .map_err(|e| ProviderError::unavailable(format!("secret of {pod}: {e}")))?;
        let tags = plan
            .tags
            .iter()
            .filter_map(|t| {
                Some(
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(t.key()?)
                        .value(t.value()?)
                        .build(),
                )
            })
            .collect();
        let created = secrets
            .create_secret()
            .name(&plan.secret_name)
            .secret_string(&body)
            .set_tags(Some(tags))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.arn().map(str::to_string),
            // A retry: the secret is there from the earlier attempt.
            Err(e) if error_code(&e) == Some("ResourceExistsException") => secrets
                .put_secret_value()
                .secret_id(&plan.secret_name)
                .secret_string(&body)
                .send()
                .await
                .map_err(|e| provider_error(&format!("PutSecretValue for {pod}"), e))?
                .arn()
                .map(str::to_string),
            Err(e) => return Err(provider_error(&format!("CreateSecret for {pod}"), e)),
        };
        arn.ok_or_else(|| ProviderError::unavailable(format!("CreateSecret for {pod}: no ARN")))
    }

    /// Registers the pod's task definition and runs its task.
    async fn run(
        &self,
        plan: &TaskPlan,
        secret_arn: Option<&str>,
        pod: &str,
    ) -> ProviderResult<()> {
        let ecs = &self.clients().await.ecs;
        let defs = plan.container_definitions(secret_arn);
        let storage = plan
            .size
            .storage_gib
            .map(|gib| EphemeralStorage::builder().size_in_gib(gib).build());
        let registered = ecs
            .register_task_definition()
            .family(&plan.family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu(plan.size.cpu())
            .memory(plan.size.memory())
            .set_container_definitions(Some(defs.clone()))
            .set_volumes(Some(plan.volumes.clone()))
            .set_ephemeral_storage(storage)
            .set_execution_role_arn(self.config.execution_role_arn.clone())
            .set_task_role_arn(self.config.task_role_arn.clone())
            .set_tags(Some(plan.tags.clone()))
            .send()
            .await
            .map_err(|e| provider_error(&format!("RegisterTaskDefinition for {pod}"), e))?;
        let def_arn = registered
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| {
                ProviderError::unavailable(format!("RegisterTaskDefinition for {pod}: no ARN"))
            })?
            .to_string();
        self.state()
            .definitions
            .insert(def_arn.clone(), Arc::new(defined_containers(&defs)));
        let mut run = ecs
            .run_task()
            .cluster(&self.config.cluster_name)
            .task_definition(&def_arn)
            .count(1)
            .network_configuration(plan.network.clone())
            .platform_version(&self.config.platform_version)
            .started_by(&plan.started_by)
            .client_token(&plan.client_token)
            .set_tags(Some(plan.tags.clone()));
        run = match plan.capacity.name() {
            None => run.launch_type(LaunchType::Fargate),
            Some(provider) => run.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(provider)
                    .weight(1)
                    .build()
                    .map_err(|e| ProviderError::InvalidInput(e.to_string()))?,
            ),
        };
        let out = run
            .send()
            .await
            .map_err(|e| provider_error(&format!("RunTask for {pod}"), e))?;
        if out.tasks().is_empty() {
            let reasons: Vec<String> = out
                .failures()
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f.reason().unwrap_or("unknown"),
                        f.detail().unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            return Err(ProviderError::unavailable(format!(
                "RunTask for {pod} started no task: {}",
                reasons.join("; ")
            )));
        }
        Ok(())
    }
}

/// Which of a pod's tasks speaks for it: one still running, else the latest.
fn rank(task: &Task) -> (bool, i64) {
    (
        task.last_status() != Some("STOPPED"),
        task.created_at().map_or(0, |t| t.secs()),
    )
}

/// The containers of a task definition, as the status mapping needs them.
fn defined_containers(defs: &[aws_sdk_ecs::types::ContainerDefinition]) -> Vec<DefinedContainer> {
    defs.iter()
        .map(|d| DefinedContainer {
            name: d.name().unwrap_or_default().to_string(),
            image: d.image().unwrap_or_default().to_string(),
            essential: d.essential().unwrap_or(true),
        })
        .collect()
}

/// The pod a task stands for, when the provider did not create it in this
/// process (after a restart): identity and containers, from the backend.
fn pod_of(key: &PodKey, node: &str, defined: &[DefinedContainer]) -> Pod {
    let containers = |essential: bool| -> Vec<Container> {
        defined
            .iter()
            .filter(|d| d.essential == essential)
            .map(|d| Container {
                name: d.name.clone(),
                image: Some(d.image.clone()),
                ..Default::default()
            })
            .collect()
    };
    let inits = containers(false);
    Pod {
        metadata: key.metadata(),
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            containers: containers(true),
            init_containers: (!inits.is_empty()).then_some(inits),
            ..Default::default()
        }),
        status: None,
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
        let plan = plan_task(
            resolved,
            TaskSettings {
                node: &self.node,
                config: &self.config,
            },
        )?;
        if !plan.secret_values.is_empty() && self.config.execution_role_arn.is_none() {
            return Err(ProviderError::InvalidInput(format!(
                "pod {pod}: its env values from Secrets go through Secrets Manager, which needs ExecutionRoleArn in the provider config"
            )));
        }
        self.ensure_cluster().await?;
        // A task from an earlier attempt (a retry, a restart) is the pod's task.
        let existing = self
            .clients()
            .await
            .ecs
            .list_tasks()
            .cluster(&self.config.cluster_name)
            .started_by(&plan.started_by)
            .send()
            .await
            .map_err(|e| provider_error(&format!("ListTasks for {pod}"), e))?;
        if existing.task_arns().is_empty() {
            let secret_arn = if plan.secret_values.is_empty() {
                None
            } else {
                Some(self.put_secret(&plan, &pod).await?)
            };
            self.run(&plan, secret_arn.as_deref(), &pod).await?;
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
        } else {
            info!(pod = %key, "task already running: adopted");
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
        let family = family_of(key);
        let clients = self.clients().await;
        self.ensure_cluster().await?;
        let arns = self.task_arns(Some(&family)).await?;
        let tasks = self.describe(&arns).await?;
        for task in &tasks {
            let (Some(arn), false) = (task.task_arn(), task.last_status() == Some("STOPPED"))
            else {
                continue;
            };
            clients
                .ecs
                .stop_task()
                .cluster(&self.config.cluster_name)
                .task(arn)
                .reason(DELETED_REASON)
                .send()
                .await
                .map_err(|e| provider_error(&format!("StopTask for {key}"), e))?;
        }
        // Every revision of the family: retries may have registered more than one.
        let mut token = None;
        loop {
            let out = clients
                .ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(TaskDefinitionStatus::Active)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error(&format!("ListTaskDefinitions for {key}"), e))?;
            for arn in out.task_definition_arns() {
                if !arn.contains(&format!("/{family}:")) {
                    continue;
                }
                clients
                    .ecs
                    .deregister_task_definition()
                    .task_definition(arn)
                    .send()
                    .await
                    .map_err(|e| {
                        provider_error(&format!("DeregisterTaskDefinition for {key}"), e)
                    })?;
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let secret = format!("vk-rs/{family}");
        let deleted = clients
            .secrets
            .delete_secret()
            .secret_id(&secret)
            .force_delete_without_recovery(true)
            .send()
            .await;
        match deleted {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(provider_error(&format!("DeleteSecret for {key}"), e)),
        }
        {
            let mut state = self.state();
            state.deleted.extend(arns.iter().cloned());
            state.pods.remove(key);
        }
        if arns.is_empty() {
            return Err(ProviderError::NotFound(format!("no task for pod {key}")));
        }
        Ok(())
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        let family = family_of(key);
        self.statuses(Some(&family))
            .await?
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
        if opts.previous {
            return Err(ProviderError::NotFound(format!(
                "pod {key}: no previous task (vk-fargate does not restart tasks yet)"
            )));
        }
        let family = family_of(key);
        let task = self
            .node_tasks(Some(&family))
            .await?
            .remove(key)
            .ok_or_else(|| ProviderError::NotFound(format!("no task for pod {key}")))?;
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
}
