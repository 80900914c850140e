//! The calls that make and unmake a pod's task: its Secrets Manager secret,
//! its task definition, `RunTask` (the first task and, [`replace_task`],
//! its replacements), and, once [`stop_tasks`] stopped the tasks, the
//! definitions deregistered and the secret deleted. Each is safe to repeat: a retry finds what an earlier
//! attempt left and carries on.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, Compatibility, ContainerDefinition, DesiredStatus,
    EphemeralStorage, LaunchType, NetworkMode, Tag, Task, TaskDefinitionStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vk_core::provider::{PodKey, ProviderError, ProviderResult};

use crate::aws::{Clients, error_code, is_not_found, provider_error};
use crate::config::FargateConfig;
use crate::restart::{DELETED_REASON, TAG_RESTART_COUNT, restart_count, tag};
use crate::task::{PLACEMENT_ANNOTATIONS, Placement, TaskPlan, placement};

/// Stores `body` (JSON) in the secret `name`, created with `tags` or
/// overwritten when an earlier attempt created it; returns its ARN.
pub async fn put_secret(
    clients: &Clients,
    name: &str,
    body: &BTreeMap<String, String>,
    tags: &[Tag],
    pod: &str,
) -> ProviderResult<String> {
    let secrets = &clients.secrets;
    let body = serde_json::to_string(body)
        .map_err(|e| ProviderError::unavailable(format!("secret of {pod}: {e}")))?;
    let tags = tags
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
        .name(name)
        .secret_string(&body)
        .set_tags(Some(tags))
        .send()
        .await;
    let arn = match created {
        Ok(out) => out.arn().map(str::to_string),
        // A retry: the secret is there from the earlier attempt.
        Err(e) if error_code(&e) == Some("ResourceExistsException") => secrets
            .put_secret_value()
            .secret_id(name)
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

/// Registers the pod's task definition; returns its ARN and containers.
pub async fn register(
    clients: &Clients,
    config: &FargateConfig,
    plan: &TaskPlan,
    secret_arn: Option<&str>,
    pod: &str,
) -> ProviderResult<(String, Vec<ContainerDefinition>)> {
    let defs = plan.container_definitions(secret_arn);
    let storage = plan
        .size
        .storage_gib
        .map(|gib| EphemeralStorage::builder().size_in_gib(gib).build());
    let registered = clients
        .ecs
        .register_task_definition()
        .family(&plan.family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(plan.size.cpu())
        .memory(plan.size.memory())
        .set_container_definitions(Some(defs.clone()))
        .set_volumes(Some(plan.volumes.clone()))
        .set_ephemeral_storage(storage)
        .set_execution_role_arn(config.execution_role_arn.clone())
        .set_task_role_arn(config.task_role_arn.clone())
        .set_tags(Some(plan.tags.clone()))
        .send()
        .await
        .map_err(|e| provider_error(&format!("RegisterTaskDefinition for {pod}"), e))?;
    let arn = registered
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .ok_or_else(|| {
            ProviderError::unavailable(format!("RegisterTaskDefinition for {pod}: no ARN"))
        })?;
    Ok((arn.to_string(), defs))
}

/// One `RunTask`.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec<'a> {
    /// The task definition's ARN.
    pub definition: &'a str,
    /// Network and capacity.
    pub placement: &'a Placement,
    /// `startedBy`: the pod's UID.
    pub started_by: &'a str,
    /// `clientToken`: the pod's UID (and the replacement's count).
    pub client_token: &'a str,
    /// The task's tags.
    pub tags: &'a [Tag],
}

/// Runs one task and returns it as `RunTask` answered (with the tags it was
/// given: the answer need not carry them); an answer without a task is an
/// error with ECS's reasons.
pub async fn run_task(
    clients: &Clients,
    config: &FargateConfig,
    spec: RunSpec<'_>,
    pod: &str,
) -> ProviderResult<Task> {
    let mut run = clients
        .ecs
        .run_task()
        .cluster(&config.cluster_name)
        .task_definition(spec.definition)
        .count(1)
        .network_configuration(spec.placement.network.clone())
        .platform_version(&config.platform_version)
        .started_by(spec.started_by)
        .client_token(spec.client_token)
        .set_tags(Some(spec.tags.to_vec()));
    run = match spec.placement.capacity.name() {
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
    let mut task = out.tasks()[0].clone();
    if task.tags().is_empty() {
        task.tags = Some(spec.tags.to_vec());
    }
    Ok(task)
}

/// Deregisters every active revision of `family`: retries may have
/// registered more than one.
pub async fn deregister_family(
    clients: &Clients,
    family: &str,
    key: &PodKey,
) -> ProviderResult<()> {
    let mut token = None;
    loop {
        let out = clients
            .ecs
            .list_task_definitions()
            .family_prefix(family)
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
                .map_err(|e| provider_error(&format!("DeregisterTaskDefinition for {key}"), e))?;
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(());
        }
    }
}

/// Deletes the pod's secret at once (no recovery window); gone already is fine.
pub async fn delete_secret(clients: &Clients, name: &str, key: &PodKey) -> ProviderResult<()> {
    let deleted = clients
        .secrets
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(true)
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(provider_error(&format!("DeleteSecret for {key}"), e)),
    }
}

/// Runs the task that replaces `stopped` (the pod's current task), unless a
/// task of the pod already runs; returns the replacement's count and task,
/// `None` when there was one already. Placed as the first task was (its
/// annotations are its tags), tagged with the next count, its
/// `clientToken` the pod UID and that count.
pub async fn replace_task(
    clients: &Clients,
    config: &FargateConfig,
    key: &PodKey,
    stopped: &Task,
) -> ProviderResult<Option<(u32, Task)>> {
    let pod = format!("{}/{}", key.namespace, key.name);
    let started_by = stopped.started_by().unwrap_or_default();
    let definition = stopped.task_definition_arn().unwrap_or_default();
    let running = clients
        .ecs
        .list_tasks()
        .cluster(&config.cluster_name)
        .started_by(started_by)
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .map_err(|e| provider_error(&format!("ListTasks for {pod}"), e))?;
    if !running.task_arns().is_empty() {
        return Ok(None);
    }
    let annotations = PLACEMENT_ANNOTATIONS
        .iter()
        .filter_map(|a| Some((a.to_string(), tag(stopped, a)?.to_string())))
        .collect();
    let annotated = Pod {
        metadata: ObjectMeta {
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    };
    let placed = placement(&annotated, config, &pod)?;
    let count = restart_count(stopped) + 1;
    let tags: Vec<Tag> = stopped
        .tags()
        .iter()
        .filter(|t| t.key() != Some(TAG_RESTART_COUNT))
        .cloned()
        .chain([Tag::builder()
            .key(TAG_RESTART_COUNT)
            .value(count.to_string())
            .build()])
        .collect();
    let token = format!("{}-{count}", key.uid);
    let spec = RunSpec {
        definition,
        placement: &placed,
        started_by,
        client_token: &token,
        tags: &tags,
    };
    let task = run_task(clients, config, spec, &pod).await?;
    Ok(Some((count, task)))
}

/// Stops those of `tasks` still running, with the reason that says the pod
/// was deleted (such a task is never replaced).
pub async fn stop_tasks(
    clients: &Clients,
    config: &FargateConfig,
    tasks: &[Task],
    key: &PodKey,
) -> ProviderResult<()> {
    for task in tasks {
        let (Some(arn), false) = (task.task_arn(), task.last_status() == Some("STOPPED")) else {
            continue;
        };
        clients
            .ecs
            .stop_task()
            .cluster(&config.cluster_name)
            .task(arn)
            .reason(DELETED_REASON)
            .send()
            .await
            .map_err(|e| provider_error(&format!("StopTask for {key}"), e))?;
    }
    Ok(())
}
