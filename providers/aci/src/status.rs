//! A container group as ARM reports it → the pod's status. Pure.
//!
//! - **Phase**: `provisioningState` first (a group ARM failed to provision
//!   is Failed, one still provisioning is Pending), then `instanceView.state`
//!   (absent from list results: then the containers' states decide).
//!   A group that ended (`Succeeded`, `Stopped`, `Terminated`) is Succeeded
//!   only when every container exited 0: ACI calls a group whose containers
//!   failed under `restartPolicy: Never` "Succeeded" too, and upstream
//!   reported exit code 0 for them (a bug we do not repeat).
//! - **Containers**: `currentState` and `previousState` with their exit codes
//!   and times, `restartCount`; the previous termination is `lastState`.
//!   Built with the core's container status builders and reasons.
//! - **Ready**: a running container is ready unless ACI's latest readiness
//!   event for it (since it started) is a failure.
//! - **Sidecars** (the containers the group's `io.vk-rs.sidecars` tag
//!   names, see [`crate::group`]): reported among the init containers, as
//!   Kubernetes does, and left out of the phase: the pod ends when its app
//!   containers do.
//! - **Pod IP**: `ipAddress.ip`.

use std::str::FromStr;

use k8s_openapi::api::core::v1::{ContainerState as KubeState, ContainerStatus, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vk_core::PodKey;
use vk_core::toolkit::container_status::{
    Termination, container_status, reason, running, terminated, waiting,
};
use vk_core::toolkit::pod_identity::{LABEL_NODE, PodIdentity};

use crate::group::TAG_SIDECARS;
use crate::models::{Container, ContainerGroup, ContainerInstanceView, ContainerState, Event};

/// The pod a group was created for, when it carries this node's tags.
pub fn pod_key(group: &ContainerGroup, node: &str) -> Option<PodKey> {
    if group.tags.get(LABEL_NODE).map(String::as_str) != Some(node) {
        return None;
    }
    PodIdentity::from_labels(|k| group.tags.get(k).map(String::as_str)).map(|id| id.key())
}

fn time(text: Option<&String>) -> Option<Time> {
    text.and_then(|t| jiff::Timestamp::from_str(t).ok())
        .map(Time)
}

fn state_of(s: Option<&ContainerState>) -> KubeState {
    let Some(s) = s else {
        return waiting(reason::CONTAINER_CREATING, None);
    };
    match s.state.as_deref() {
        Some("Running") => running(time(s.start_time.as_ref())),
        Some("Terminated") => terminated(Termination {
            exit_code: s.exit_code.unwrap_or(0),
            oom_killed: s.detail_status.as_deref() == Some("OOMKilled"),
            message: s.detail_status.clone().filter(|d| {
                !d.is_empty() && !matches!(d.as_str(), "Completed" | "Error" | "OOMKilled")
            }),
            started_at: time(s.start_time.as_ref()),
            finished_at: time(s.finish_time.as_ref()),
            container_id: None,
        }),
        _ => {
            let detail = s.detail_status.clone().filter(|d| !d.is_empty());
            waiting(
                detail.as_deref().unwrap_or(reason::CONTAINER_CREATING),
                None,
            )
        }
    }
}

/// Whether the latest readiness event since `since` is a failure.
fn readiness_failing(events: &[Event], since: Option<&Time>) -> bool {
    let mut latest: Option<(Option<Time>, bool)> = None;
    for e in events {
        let message = e.message.as_deref().unwrap_or("");
        if !message.contains("Readiness probe") {
            continue;
        }
        let at = time(e.last_timestamp.as_ref());
        if let (Some(since), Some(at)) = (since, &at)
            && at.0 < since.0
        {
            continue;
        }
        let failed = e.name.as_deref() == Some("Unhealthy") || message.contains("failed");
        if latest
            .as_ref()
            .is_none_or(|(t, _)| at.as_ref().map(|a| a.0) >= t.as_ref().map(|t| t.0))
        {
            latest = Some((at, failed));
        }
    }
    latest.is_some_and(|(_, failed)| failed)
}

fn status_of(name: &str, image: &str, view: Option<&ContainerInstanceView>) -> ContainerStatus {
    let state = state_of(view.and_then(|v| v.current_state.as_ref()));
    let last_state = view
        .and_then(|v| v.previous_state.as_ref())
        .filter(|p| p.state.as_deref() == Some("Terminated"))
        .map(|p| state_of(Some(p)));
    let started_at = state.running.as_ref().and_then(|r| r.started_at.clone());
    let ready = state.running.is_some()
        && !readiness_failing(
            view.map(|v| v.events.as_slice()).unwrap_or(&[]),
            started_at.as_ref(),
        );
    ContainerStatus {
        ready,
        restart_count: view.and_then(|v| v.restart_count).unwrap_or(0),
        last_state,
        ..container_status(name, image, state)
    }
}

/// The pod status of a group (see the module doc).
pub fn pod_status(group: &ContainerGroup) -> PodStatus {
    let props = &group.properties;
    let sidecars: Vec<&str> = group
        .tags
        .get(TAG_SIDECARS)
        .map(|names| names.split(',').collect())
        .unwrap_or_default();
    let (sidecars, apps): (Vec<_>, Vec<_>) = props
        .containers
        .iter()
        .partition(|c| sidecars.contains(&c.name.as_str()));
    let status_of_container = |c: &&Container| {
        status_of(
            &c.name,
            &c.properties.image,
            c.properties.instance_view.as_ref(),
        )
    };
    let containers: Vec<ContainerStatus> = apps.iter().map(status_of_container).collect();
    let sidecars: Vec<ContainerStatus> = sidecars.iter().map(status_of_container).collect();
    let init: Vec<ContainerStatus> = props
        .init_containers
        .iter()
        .map(|c| {
            status_of(
                &c.name,
                c.properties.image.as_deref().unwrap_or(""),
                c.properties.instance_view.as_ref(),
            )
        })
        .chain(sidecars)
        .collect();
    let exits: Vec<Option<i32>> = containers
        .iter()
        .map(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
        })
        .collect();
    let all_ended = !exits.is_empty() && exits.iter().all(Option::is_some);
    let ended_phase = if exits.iter().all(|e| *e == Some(0)) {
        "Succeeded"
    } else {
        "Failed"
    };
    // A listed group has no instance view of its own (the contract's list
    // item lacks it): its state then follows its containers'.
    let any_running = containers
        .iter()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let restarts = props.restart_policy.as_deref().unwrap_or("Always") == "Always";
    let from_containers = match (all_ended, any_running) {
        (true, _) if restarts => Some("Running"),
        (true, _) => Some("Succeeded"),
        (false, true) => Some("Running"),
        (false, false) => None,
    };
    let group_state = props
        .instance_view
        .as_ref()
        .and_then(|v| v.state.as_deref())
        .or(from_containers);
    let (phase, reason, message) = match props.provisioning_state.as_deref() {
        Some("Failed" | "Canceled" | "Unhealthy") => (
            "Failed",
            Some("ProviderFailed".to_string()),
            Some(failure_message(group)),
        ),
        Some("Succeeded") | None => match group_state {
            Some("Running") if all_ended && props.restart_policy.as_deref() != Some("Always") => {
                (ended_phase, None, None)
            }
            Some("Running") => ("Running", None, None),
            Some("Succeeded" | "Stopped" | "Terminated") => (ended_phase, None, None),
            Some("Failed") => ("Failed", None, None),
            _ => ("Pending", None, None),
        },
        Some(_) if group_state == Some("Running") => ("Running", None, None),
        Some(_) => ("Pending", None, None),
    };
    let ip = props.ip_address.as_ref().and_then(|a| a.ip.clone());
    PodStatus {
        phase: Some(phase.into()),
        reason,
        message,
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![PodIP { ip }]),
        container_statuses: Some(containers),
        init_container_statuses: (!init.is_empty()).then_some(init),
        ..Default::default()
    }
}

/// An event ACI reported for a group or one of its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEvent {
    /// Identifies this occurrence: the same event seen again (in the next
    /// poll) has the same id; a repeat (its count grew) has a new one.
    pub id: String,
    /// `type: Warning`.
    pub warning: bool,
    /// The event's name (`Pulling`, `Started`, `Killing`...).
    pub reason: String,
    /// The message, naming the container.
    pub message: String,
    /// When it last happened.
    pub last: Option<jiff::Timestamp>,
}

/// Every event of a group's and its containers' instance views.
pub fn group_events(group: &ContainerGroup) -> Vec<GroupEvent> {
    let props = &group.properties;
    let group_events = props
        .instance_view
        .iter()
        .flat_map(|v| &v.events)
        .map(|e| (None, e));
    let containers = props.containers.iter().flat_map(|c| {
        c.properties
            .instance_view
            .iter()
            .flat_map(|v| &v.events)
            .map(move |e| (Some(c.name.as_str()), e))
    });
    let inits = props.init_containers.iter().flat_map(|c| {
        c.properties
            .instance_view
            .iter()
            .flat_map(|v| &v.events)
            .map(move |e| (Some(c.name.as_str()), e))
    });
    group_events
        .chain(containers)
        .chain(inits)
        .map(|(container, e)| {
            let reason = e.name.clone().unwrap_or_else(|| "Event".into());
            let text = e.message.clone().unwrap_or_default();
            GroupEvent {
                id: format!(
                    "{}/{reason}/{}/{}/{text}",
                    container.unwrap_or(""),
                    e.first_timestamp.as_deref().unwrap_or(""),
                    e.count.unwrap_or(1)
                ),
                warning: e.type_.as_deref() == Some("Warning"),
                message: match container {
                    Some(c) => format!("container {c}: {text}"),
                    None => text,
                },
                reason,
                last: e
                    .last_timestamp
                    .as_deref()
                    .and_then(|t| jiff::Timestamp::from_str(t).ok()),
            }
        })
        .collect()
}

/// The group's last Warning event, or its provisioning state.
fn failure_message(group: &ContainerGroup) -> String {
    let state = group
        .properties
        .provisioning_state
        .as_deref()
        .unwrap_or("Failed");
    let events = group
        .properties
        .instance_view
        .as_ref()
        .map(|v| v.events.as_slice())
        .unwrap_or(&[]);
    match events.last() {
        Some(e) => format!(
            "container group provisioning {state}: {}: {}",
            e.name.as_deref().unwrap_or("event"),
            e.message.as_deref().unwrap_or("")
        ),
        None => format!("container group provisioning {state}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::{Value, json};

    use super::*;

    fn group(props: Value) -> ContainerGroup {
        let mut props = props;
        props["osType"] = json!("Linux");
        serde_json::from_value(json!({"properties": props, "tags": {
            "io.vk-rs.node": "aci-0", "io.vk-rs.pod-namespace": "ns",
            "io.vk-rs.pod-name": "web", "io.vk-rs.pod-uid": "u1"
        }}))
        .unwrap()
    }

    fn container(name: &str, view: Value) -> Value {
        json!({"name": name, "properties": {"image": "img", "resources": {"requests": {"cpu": 1, "memoryInGB": 1}}, "instanceView": view}})
    }

    fn running_view() -> Value {
        json!({"restartCount": 0, "currentState": {"state": "Running", "startTime": "2026-01-01T00:00:00Z"}})
    }

    fn exited(code: i32) -> Value {
        json!({"restartCount": 0, "currentState": {"state": "Terminated", "exitCode": code,
            "startTime": "2026-01-01T00:00:00Z", "finishTime": "2026-01-01T00:01:00Z", "detailStatus": "Error"}})
    }

    #[test]
    fn phase_from_provisioning_then_instance_view() {
        // provisioningState, instanceView.state, the phase, the containers.
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            Vec<Value>,
        );
        let cases: [Case; 11] = [
            (
                Some("Creating"),
                None,
                "Pending",
                vec![container("c", json!({}))],
            ),
            (
                Some("Pending"),
                Some("Pending"),
                "Pending",
                vec![container("c", json!({}))],
            ),
            (
                Some("Updating"),
                Some("Running"),
                "Running",
                vec![container("c", running_view())],
            ),
            (
                Some("Succeeded"),
                Some("Pending"),
                "Pending",
                vec![container("c", json!({}))],
            ),
            (
                Some("Succeeded"),
                Some("Running"),
                "Running",
                vec![container("c", running_view())],
            ),
            (
                Some("Succeeded"),
                Some("Succeeded"),
                "Succeeded",
                vec![container("c", exited(0))],
            ),
            (
                Some("Succeeded"),
                Some("Succeeded"),
                "Failed",
                vec![container("c", exited(0)), container("d", exited(3))],
            ),
            (
                Some("Succeeded"),
                Some("Stopped"),
                "Failed",
                vec![container("c", exited(137))],
            ),
            (
                Some("Succeeded"),
                Some("Running"),
                "Failed",
                vec![container("c", exited(3))],
            ),
            (
                Some("Succeeded"),
                Some("Failed"),
                "Failed",
                vec![container("c", json!({}))],
            ),
            (
                Some("Failed"),
                Some("Pending"),
                "Failed",
                vec![container("c", json!({}))],
            ),
        ];
        for (provisioning, state, want, containers) in cases {
            let mut props = json!({"containers": containers, "restartPolicy": "Never"});
            if let Some(p) = provisioning {
                props["provisioningState"] = json!(p);
            }
            if let Some(s) = state {
                props["instanceView"] = json!({"state": s});
            }
            let s = pod_status(&group(props));
            assert_eq!(s.phase.as_deref(), Some(want), "{provisioning:?} {state:?}");
        }
    }

    #[test]
    fn listed_groups_without_instance_view_follow_their_containers() {
        let cases = [
            (vec![container("c", json!({}))], "Never", "Pending"),
            (
                vec![container("c", running_view()), container("d", json!({}))],
                "Never",
                "Running",
            ),
            (vec![container("c", exited(0))], "Never", "Succeeded"),
            (
                vec![container("c", exited(0)), container("d", exited(3))],
                "OnFailure",
                "Failed",
            ),
            (vec![container("c", exited(3))], "Always", "Running"),
        ];
        for (containers, policy, want) in cases {
            let props = json!({"containers": containers, "restartPolicy": policy, "provisioningState": "Succeeded"});
            assert_eq!(
                pod_status(&group(props)).phase.as_deref(),
                Some(want),
                "{policy} {want}"
            );
        }
    }

    #[test]
    fn restart_always_keeps_a_running_group_running() {
        let props = json!({"containers": [container("c", exited(1))], "restartPolicy": "Always",
            "provisioningState": "Succeeded", "instanceView": {"state": "Running"}});
        assert_eq!(pod_status(&group(props)).phase.as_deref(), Some("Running"));
    }

    #[test]
    fn failed_provisioning_says_why() {
        let props = json!({"containers": [container("c", json!({}))], "provisioningState": "Failed",
            "instanceView": {"state": "Pending", "events": [{"name": "FailedMount", "type": "Warning", "message": "mount error(2)"}]}});
        let s = pod_status(&group(props));
        assert_eq!(s.reason.as_deref(), Some("ProviderFailed"));
        assert_eq!(
            s.message.as_deref(),
            Some("container group provisioning Failed: FailedMount: mount error(2)")
        );
    }

    #[test]
    fn containers_carry_exit_codes_restarts_and_last_state() {
        let view = json!({"restartCount": 2,
            "currentState": {"state": "Running", "startTime": "2026-01-01T00:02:00Z"},
            "previousState": {"state": "Terminated", "exitCode": 3, "startTime": "2026-01-01T00:01:00Z",
                "finishTime": "2026-01-01T00:01:30Z", "detailStatus": "Error"}});
        let props = json!({"containers": [container("c", view), container("d", exited(3)), container("e", json!({"currentState": {"state": "Waiting", "detailStatus": "Pulling"}}))],
            "initContainers": [{"name": "i", "properties": {"image": "busybox", "instanceView": exited(0)}}],
            "provisioningState": "Succeeded", "instanceView": {"state": "Running"},
            "ipAddress": {"type": "Public", "ip": "20.1.2.3", "ports": []}});
        let s = pod_status(&group(props));
        assert_eq!(s.pod_ip.as_deref(), Some("20.1.2.3"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "20.1.2.3");
        let cs = s.container_statuses.unwrap();
        let c = &cs[0];
        assert!(c.ready && c.started == Some(true));
        assert_eq!(c.restart_count, 2);
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        assert_eq!(
            last.finished_at.as_ref().unwrap().0.to_string(),
            "2026-01-01T00:01:30Z"
        );
        let d = cs[1].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((d.exit_code, d.reason.as_deref()), (3, Some("Error")));
        assert!(!cs[1].ready);
        let e = cs[2].state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(e.reason.as_deref(), Some("Pulling"));
        let init = &s.init_container_statuses.unwrap()[0];
        let t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(init.image, "busybox");
    }

    #[test]
    fn sidecars_are_init_statuses_and_do_not_hold_the_phase() {
        let props = json!({"containers": [container("app", exited(0)), container("proxy", running_view())],
            "initContainers": [{"name": "setup", "properties": {"image": "busybox", "instanceView": exited(0)}}],
            "restartPolicy": "Never", "provisioningState": "Succeeded", "instanceView": {"state": "Running"}});
        let mut g = group(props);
        // Without the tag, the running proxy keeps the pod Running.
        assert_eq!(pod_status(&g).phase.as_deref(), Some("Running"));
        g.tags.insert(TAG_SIDECARS.into(), "proxy".into());
        let s = pod_status(&g);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"), "the app ended");
        let apps: Vec<_> = s
            .container_statuses
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(apps, ["app"]);
        let init = s.init_container_statuses.unwrap();
        let names: Vec<_> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["setup", "proxy"]);
        assert!(init[1].state.as_ref().unwrap().running.is_some() && init[1].ready);
    }

    #[test]
    fn readiness_follows_the_latest_probe_event() {
        let probe_event = |name: &str, message: &str, at: &str| json!({"name": name, "type": "Normal", "message": message, "lastTimestamp": at});
        let cases = [
            (vec![], true),
            (
                vec![probe_event(
                    "Unhealthy",
                    "Readiness probe failed: 503",
                    "2026-01-01T00:00:10Z",
                )],
                false,
            ),
            (
                vec![probe_event(
                    "Unhealthy",
                    "Readiness probe failed: 503",
                    "2025-12-31T00:00:00Z",
                )],
                true,
            ),
            (
                vec![
                    probe_event(
                        "Unhealthy",
                        "Readiness probe failed: 503",
                        "2026-01-01T00:00:10Z",
                    ),
                    probe_event(
                        "Healthy",
                        "Readiness probe succeeded",
                        "2026-01-01T00:00:20Z",
                    ),
                ],
                true,
            ),
            (
                vec![probe_event(
                    "Unhealthy",
                    "Liveness probe failed",
                    "2026-01-01T00:00:10Z",
                )],
                true,
            ),
        ];
        for (events, ready) in cases {
            let mut view = running_view();
            view["events"] = json!(events);
            let props = json!({"containers": [container("c", view)], "provisioningState": "Succeeded", "instanceView": {"state": "Running"}});
            let s = pod_status(&group(props));
            assert_eq!(s.container_statuses.unwrap()[0].ready, ready, "{events:?}");
        }
    }

    #[test]
    fn events_name_their_container_and_repeat_only_when_counted_again() {
        let event = |count: i32| {
            json!({"name": "Pulling", "type": "Normal", "count": count,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "message": "pulling image \"nginx\""})
        };
        let mut view = running_view();
        view["events"] = json!([event(1)]);
        let props = json!({"containers": [container("c", view.clone())],
            "instanceView": {"state": "Running", "events": [{"name": "FailedMount", "type": "Warning", "message": "m"}]}});
        let events = group_events(&group(props));
        assert_eq!(events.len(), 2);
        assert_eq!(
            (
                events[0].reason.as_str(),
                events[0].warning,
                events[0].message.as_str()
            ),
            ("FailedMount", true, "m")
        );
        let pulled = &events[1];
        assert_eq!((pulled.reason.as_str(), pulled.warning), ("Pulling", false));
        assert_eq!(pulled.message, "container c: pulling image \"nginx\"");
        assert_eq!(pulled.last.unwrap().to_string(), "2026-01-01T00:00:05Z");
        view["events"] = json!([event(1)]);
        let again = group_events(&group(
            json!({"containers": [container("c", view.clone())]}),
        ));
        assert_eq!(again[0].id, pulled.id, "the same occurrence keeps its id");
        view["events"] = json!([event(2)]);
        let repeated = group_events(&group(json!({"containers": [container("c", view)]})));
        assert_ne!(repeated[0].id, pulled.id, "a repeat is new");
    }

    #[test]
    fn keys_only_from_this_nodes_tags() {
        let g = group(json!({"containers": []}));
        let key = pod_key(&g, "aci-0").unwrap();
        assert_eq!(
            (key.namespace.as_str(), key.name.as_str(), key.uid.as_str()),
            ("ns", "web", "u1")
        );
        assert!(pod_key(&g, "aci-1").is_none());
        let mut untagged = g.clone();
        untagged.tags.remove("io.vk-rs.pod-uid");
        assert!(pod_key(&untagged, "aci-0").is_none());
    }
}
