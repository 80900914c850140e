//! Listing a cluster's tasks, as the status poll, the deletion and the
//! adoption need them: `ListTasks` for desired RUNNING and for STOPPED (a
//! task that stopped on its own is still the pod's record), then
//! `DescribeTasks` with tags, 100 tasks a call: never a call per pod.

use aws_sdk_ecs::types::{DesiredStatus, Task, TaskField};
use vk_core::provider::ProviderResult;

use crate::aws::{Clients, provider_error};

/// `DescribeTasks` takes at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

/// Task ARNs of the cluster (of one family when given), desired RUNNING and STOPPED.
pub async fn list_task_arns(
    clients: &Clients,
    cluster: &str,
    family: Option<&str>,
) -> ProviderResult<Vec<String>> {
    let ecs = &clients.ecs;
    let mut arns = Vec::new();
    for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let mut token = None;
        loop {
            let out = ecs
                .list_tasks()
                .cluster(cluster)
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
pub async fn describe_tasks(
    clients: &Clients,
    cluster: &str,
    arns: &[String],
) -> ProviderResult<Vec<Task>> {
    let ecs = &clients.ecs;
    let mut tasks = Vec::new();
    for chunk in arns.chunks(DESCRIBE_BATCH) {
        let out = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| provider_error("DescribeTasks", e))?;
        tasks.extend(out.tasks().iter().cloned());
    }
    Ok(tasks)
}
