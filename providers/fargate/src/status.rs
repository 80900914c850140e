//! An ECS task → the pod's status. Pure.
//!
//! - Phase: PROVISIONING, PENDING and ACTIVATING → Pending; RUNNING and the
//!   states on the way down (DEACTIVATING, STOPPING, DEPROVISIONING) →
//!   Running; STOPPED → Succeeded only when every essential container
//!   exited 0, else Failed (upstream always said Succeeded).
//! - `stopCode` and `stoppedReason` make the message of a stopped task,
//!   with the volume writer's exit when it failed.
//! - The volume writer ([`crate::volume_files`]) is not one of the pod's
//!   containers: it is left out of the statuses.
//! - Containers: essential ones are the pod's containers, the others its
//!   init containers (sidecars included), each with the kubelet's states and
//!   reasons ([`vk_core::toolkit::container_status`]) and its exit code.
//! - The pod IP is the private IPv4 address of the task's network interface.

use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types::{Container as EcsContainer, HealthStatus, Task};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vk_core::provider::PodKey;
use vk_core::toolkit::container_status::{
    Termination, container_status, reason, running, terminated, waiting,
};

/// A container as the task definition declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinedContainer {
    /// Its name (the pod's container name).
    pub name: String,
    /// Its image.
    pub image: String,
    /// Essential: an app container; otherwise an init container or a sidecar.
    pub essential: bool,
}

/// The pull failure ECS reports in a container's or task's reason.
const PULL_ERROR: &str = "CannotPullContainerError";

/// The exit code shown for a container that stopped without one (it never
/// ran): what the kubelet shows for a container that could not start.
const NO_EXIT_CODE: i32 = 128;

/// The status of a pod whose task is `task`, the task definition declaring
/// `defined` (in its order).
pub fn pod_status(task: &Task, defined: &[DefinedContainer]) -> PodStatus {
    let last = task.last_status().unwrap_or("PROVISIONING");
    let stopped = last == "STOPPED";
    let has_inits = defined.iter().any(|d| !d.essential);
    let ecs = |name: &str| task.containers().iter().find(|c| c.name() == Some(name));
    let started_at = task.started_at().and_then(time);
    let stopped_at = task.stopped_at().and_then(time);
    let mut inits = Vec::new();
    let mut apps = Vec::new();
    for d in defined {
        let c = ecs(&d.name);
        let (state, ready) = match c {
            _ if stopped => (
                stopped_state(c, task, started_at.clone(), stopped_at.clone()),
                false,
            ),
            Some(c) if c.last_status() == Some("STOPPED") => (
                stopped_state(Some(c), task, started_at.clone(), stopped_at.clone()),
                false,
            ),
            Some(c) if c.last_status() == Some("RUNNING") => (
                running(started_at.clone()),
                c.health_status() != Some(&HealthStatus::Unhealthy),
            ),
            _ => (waiting_state(c, d.essential && has_inits, last), false),
        };
        let status = ContainerStatus {
            ready,
            container_id: c
                .and_then(EcsContainer::runtime_id)
                .map(|id| format!("ecs://{id}")),
            image_id: c
                .and_then(EcsContainer::image_digest)
                .unwrap_or_default()
                .to_string(),
            ..container_status(&d.name, &d.image, state)
        };
        if d.essential {
            apps.push(status);
        } else {
            inits.push(status);
        }
    }
    let phase = match last {
        "PROVISIONING" | "PENDING" | "ACTIVATING" => "Pending",
        "STOPPED" => {
            let all_zero = defined
                .iter()
                .filter(|d| d.essential)
                .all(|d| ecs(&d.name).and_then(EcsContainer::exit_code) == Some(0));
            if all_zero && defined.iter().any(|d| d.essential) {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        _ => "Running",
    };
    let message = if stopped {
        match (stop_message(task), writer_failure(task)) {
            (Some(m), Some(w)) => Some(format!("{m}; {w}")),
            (m, w) => m.or(w),
        }
    } else {
        None
    };
    let ip = pod_ip(task);
    PodStatus {
        phase: Some(phase.to_string()),
        message,
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![PodIP { ip }]),
        start_time: task.started_at().or(task.created_at()).and_then(time),
        container_statuses: Some(apps),
        init_container_statuses: (!inits.is_empty()).then_some(inits),
        ..Default::default()
    }
}

/// Why the volume writer failed, when it did: the pod's containers never
/// started then, and the task's own reason does not say why.
fn writer_failure(task: &Task) -> Option<String> {
    let writer = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(crate::volume_files::WRITER_CONTAINER))?;
    let code = writer.exit_code().filter(|c| *c != 0)?;
    let reason = writer
        .reason()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    Some(format!(
        "the volume files were not written (container {} exited {code}{reason})",
        crate::volume_files::WRITER_CONTAINER
    ))
}

/// `stopCode: stoppedReason`, or whichever of the two the task has.
fn stop_message(task: &Task) -> Option<String> {
    let code = task.stop_code().map(|c| c.as_str().to_string());
    let reason = task.stopped_reason().map(str::to_string);
    match (code, reason) {
        (Some(c), Some(r)) => Some(format!("{c}: {r}")),
        (c, r) => c.or(r),
    }
}

fn stopped_state(
    c: Option<&EcsContainer>,
    task: &Task,
    started_at: Option<Time>,
    stopped_at: Option<Time>,
) -> ContainerState {
    let exit_code = c.and_then(EcsContainer::exit_code);
    let message = c
        .and_then(EcsContainer::reason)
        .map(str::to_string)
        .or_else(|| {
            exit_code
                .is_none()
                .then(|| "the task stopped before the container ran".into())
        });
    terminated(Termination {
        exit_code: exit_code.unwrap_or(NO_EXIT_CODE),
        oom_killed: c
            .and_then(EcsContainer::reason)
            .is_some_and(|r| r.contains("OutOfMemory")),
        message,
        started_at: if exit_code.is_some() {
            started_at
        } else {
            None
        },
        finished_at: stopped_at.or_else(|| task.stopping_at().and_then(time)),
        container_id: c
            .and_then(EcsContainer::runtime_id)
            .map(|id| format!("ecs://{id}")),
    })
}

fn waiting_state(c: Option<&EcsContainer>, after_inits: bool, task_status: &str) -> ContainerState {
    if let Some(r) = c.and_then(EcsContainer::reason)
        && r.contains(PULL_ERROR)
    {
        return waiting("ErrImagePull", Some(r.to_string()));
    }
    if after_inits && task_status == "RUNNING" {
        waiting(reason::POD_INITIALIZING, None)
    } else {
        waiting(reason::CONTAINER_CREATING, None)
    }
}

/// The private IPv4 address of the task's network interface (awsvpc).
pub fn pod_ip(task: &Task) -> Option<String> {
    let from_attachment = task
        .attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .map(str::to_string);
    from_attachment.or_else(|| {
        task.containers()
            .iter()
            .flat_map(|c| c.network_interfaces())
            .find_map(|n| n.private_ipv4_address())
            .map(str::to_string)
    })
}

/// An AWS time as a Kubernetes one.
fn time(t: &DateTime) -> Option<Time> {
    jiff::Timestamp::new(t.secs(), i32::try_from(t.subsec_nanos()).ok()?)
        .ok()
        .map(Time)
}

/// The pod's containers of a task definition, as the status mapping needs
/// them (the volume writer left out).
pub fn defined_containers(
    defs: &[aws_sdk_ecs::types::ContainerDefinition],
) -> Vec<DefinedContainer> {
    defs.iter()
        // The volume writer is the provider's, not one of the pod's containers.
        .filter(|d| d.name() != Some(crate::volume_files::WRITER_CONTAINER))
        .map(|d| DefinedContainer {
            name: d.name().unwrap_or_default().to_string(),
            image: d.image().unwrap_or_default().to_string(),
            essential: d.essential().unwrap_or(true),
        })
        .collect()
}

/// The pod a task stands for, when the provider did not create it in this
/// process (after a restart): identity and containers, from the backend.
pub fn pod_of(key: &PodKey, node: &str, defined: &[DefinedContainer]) -> Pod {
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

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
