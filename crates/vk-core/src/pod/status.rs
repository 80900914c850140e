//! Pod status as the core writes it: the backend's view merged into the API object's
//! status so that conditions keep their transition times, `startTime` is set once,
//! and nothing goes backwards (no Running → Pending, no terminal → running).

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Merges the backend status into the current API status.
///
/// `host_ip` is the node's IP; `now` is used for new transition times.
pub fn merge_status(
    current: Option<&PodStatus>,
    backend: &PodStatus,
    host_ip: &str,
    now: &Time,
) -> PodStatus {
    let empty = PodStatus::default();
    let cur = current.unwrap_or(&empty);
    let mut phase = backend.phase.clone().unwrap_or_else(|| "Pending".into());
    let cur_phase = cur.phase.as_deref().unwrap_or("Pending");
    // Never go backwards.
    if is_terminal(cur_phase) && !is_terminal(&phase) {
        phase = cur_phase.to_string();
    } else if cur_phase == "Running" && phase == "Pending" {
        phase = "Running".into();
    }

    let containers = merge_containers(
        cur.container_statuses.as_deref(),
        backend.container_statuses.as_deref(),
    );
    let init_containers = merge_containers(
        cur.init_container_statuses.as_deref(),
        backend.init_container_statuses.as_deref(),
    );

    let all_ready = containers
        .as_ref()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
        && phase == "Running";
    let initialized = init_containers.as_ref().is_none_or(|cs| {
        cs.iter().all(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        })
    }) || phase == "Running"
        || phase == "Succeeded";

    let mut conditions: Vec<PodCondition> = Vec::new();
    let mut cond = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let previous = cur.conditions.iter().flatten().find(|c| c.type_ == type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        conditions.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time,
            reason: if ok { None } else { reason.map(str::to_string) },
            ..Default::default()
        });
    };
    let not_ready_reason = if is_terminal(&phase) {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    cond(
        "PodReadyToStartContainers",
        phase != "Pending" || backend.pod_ip.is_some(),
        None,
    );
    cond("Initialized", initialized, Some("ContainersNotInitialized"));
    cond("ContainersReady", all_ready, Some(not_ready_reason));
    cond("Ready", all_ready, Some(not_ready_reason));
    cond("PodScheduled", true, None);
    // Keep conditions owned by others (readiness gates, DisruptionTarget...).
    for other in cur.conditions.iter().flatten() {
        if !conditions.iter().any(|c| c.type_ == other.type_) {
            conditions.push(other.clone());
        }
    }

    let pod_ip = backend.pod_ip.clone().or_else(|| cur.pod_ip.clone());
    PodStatus {
        phase: Some(phase),
        reason: backend.reason.clone(),
        message: backend.message.clone(),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: cur
            .start_time
            .clone()
            .or_else(|| backend.start_time.clone())
            .or_else(|| Some(now.clone())),
        conditions: Some(conditions),
        container_statuses: containers,
        init_container_statuses: init_containers,
        ephemeral_container_statuses: super::ephemeral::merge(
            cur.ephemeral_container_statuses.as_deref(),
            backend.ephemeral_container_statuses.as_deref(),
        ),
        qos_class: cur.qos_class.clone(),
        ..Default::default()
    }
}

fn is_terminal(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

fn merge_containers(
    cur: Option<&[ContainerStatus]>,
    backend: Option<&[ContainerStatus]>,
) -> Option<Vec<ContainerStatus>> {
    let backend = backend?;
    Some(
        backend
            .iter()
            .map(|b| {
                let Some(c) = cur.and_then(|cs| cs.iter().find(|c| c.name == b.name)) else {
                    return b.clone();
                };
                let was_running = c.state.as_ref().is_some_and(|s| s.running.is_some());
                let now_waiting = b.state.as_ref().is_none_or(|s| s.waiting.is_some());
                // A container that ended and waits to be restarted (back-off)
                // says so with its termination in lastState.
                let ended = b
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| {
                        t.finished_at.is_none()
                            || t.finished_at.as_ref().map(|f| f.0)
                                >= c.state
                                    .as_ref()
                                    .and_then(|s| s.running.as_ref())
                                    .and_then(|r| r.started_at.as_ref())
                                    .map(|s| s.0)
                    });
                // Running → Waiting without a restart would go backwards: keep Running.
                if was_running && now_waiting && !ended && b.restart_count <= c.restart_count {
                    return ContainerStatus {
                        ready: b.ready,
                        ..c.clone()
                    };
                }
                let mut merged = b.clone();
                merged.restart_count = merged.restart_count.max(c.restart_count);
                merged
            })
            .collect(),
    )
}

/// Whether writing `new` over `current` would change anything a reader sees.
/// Transition times are kept by [`merge_status`]; condition order is not
/// significant (a strategic merge keeps the server's order), so it is normalised.
///
/// The two are compared as they are written, in JSON: the API keeps times to
/// the second, so a backend time with sub-second digits (a container's
/// `startedAt`) is no change once the API holds it. Compared in memory, it
/// would be a change on every sync: a no-op status write per pod per event
/// and per resync.
///
/// The JSON is compared as bytes: both sides are the same type, whose fields
/// serialise in declaration order and whose maps are sorted, so equal bytes
/// is equal JSON, without building two `Value` trees per sync.
pub fn status_changed(current: Option<&PodStatus>, new: &PodStatus) -> bool {
    let Some(current) = current else { return true };
    match (
        serde_json::to_vec(&normalised(current)),
        serde_json::to_vec(&normalised(new)),
    ) {
        (Ok(a), Ok(b)) => a != b,
        _ => normalised(current) != normalised(new),
    }
}

/// A fingerprint of a status as it would be written: equal for statuses
/// [`status_changed`] considers the same.
pub fn status_fingerprint(s: &PodStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match serde_json::to_vec(&normalised(s)) {
        Ok(bytes) => bytes.hash(&mut h),
        Err(_) => format!("{s:?}").hash(&mut h),
    }
    h.finish()
}

fn normalised(s: &PodStatus) -> PodStatus {
    let mut s = s.clone();
    if let Some(cs) = s.conditions.as_mut() {
        cs.sort_by(|a, b| a.type_.cmp(&b.type_));
    }
    for statuses in [
        s.init_container_statuses.as_mut(),
        s.container_statuses.as_mut(),
        s.ephemeral_container_statuses.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for c in statuses {
            // The API always holds `state` and `lastState`, as `{}` when empty:
            // a backend that leaves them out means the same.
            c.state.get_or_insert_with(Default::default);
            c.last_state.get_or_insert_with(Default::default);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn container(name: &str, running: bool, ready: bool, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            restart_count: restarts,
            state: Some(if running {
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(t(1)),
                    }),
                    ..Default::default()
                }
            } else {
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                }
            }),
            ..Default::default()
        }
    }

    fn running() -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.1".into()),
            container_statuses: Some(vec![container("c", true, true, 0)]),
            ..Default::default()
        }
    }

    #[test]
    fn ready_conditions_and_host_ip() {
        let s = merge_status(None, &running(), "192.168.1.1", &t(100));
        let cond = |ty: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == ty)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(cond("Ready"), "True");
        assert_eq!(cond("ContainersReady"), "True");
        assert_eq!(cond("PodScheduled"), "True");
        assert_eq!(cond("Initialized"), "True");
        assert_eq!(s.host_ip.as_deref(), Some("192.168.1.1"));
        assert_eq!(s.start_time, Some(t(100)));
    }

    #[test]
    fn transition_times_are_kept_when_nothing_changes() {
        let first = merge_status(None, &running(), "h", &t(100));
        let second = merge_status(Some(&first), &running(), "h", &t(200));
        assert_eq!(first, second);
        assert!(!status_changed(Some(&first), &second));
        let mut reordered = second.clone();
        reordered.conditions.as_mut().unwrap().reverse();
        assert!(
            !status_changed(Some(&reordered), &second),
            "order is not a change"
        );
        let mut unready = running();
        unready.container_statuses = Some(vec![container("c", true, false, 0)]);
        let third = merge_status(Some(&second), &unready, "h", &t(300));
        let ready = third
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(t(300)));
        assert_eq!(third.start_time, Some(t(100)));
    }

    #[test]
    fn sub_second_backend_times_are_no_change_once_the_api_holds_them() {
        let precise = |secs: i64| {
            Time(Timestamp::from_second(secs).unwrap() + std::time::Duration::from_millis(250))
        };
        let mut backend = running();
        if let Some(cs) = backend.container_statuses.as_mut() {
            cs[0]
                .state
                .as_mut()
                .unwrap()
                .running
                .as_mut()
                .unwrap()
                .started_at = Some(precise(5));
        }
        backend.start_time = Some(precise(5));
        let written = merge_status(None, &backend, "h", &precise(100));
        // What the watch returns: the same status, times to the second, and
        // `lastState: {}` where the backend left it out.
        let mut stored: PodStatus =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        assert_ne!(
            stored, written,
            "the round trip drops the sub-second digits"
        );
        assert!(
            written.container_statuses.as_ref().unwrap()[0]
                .last_state
                .is_none()
        );
        stored.container_statuses.as_mut().unwrap()[0].last_state = Some(Default::default());
        let again = merge_status(Some(&stored), &backend, "h", &precise(200));
        assert!(!status_changed(Some(&stored), &again));
        // A real change is still one.
        let mut unready = backend.clone();
        unready.container_statuses.as_mut().unwrap()[0].ready = false;
        let changed = merge_status(Some(&stored), &unready, "h", &precise(200));
        assert!(status_changed(Some(&stored), &changed));
    }

    #[test]
    fn never_goes_backwards() {
        let first = merge_status(None, &running(), "h", &t(100));
        let pending = PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(vec![container("c", false, false, 0)]),
            ..Default::default()
        };
        let s = merge_status(Some(&first), &pending, "h", &t(200));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(
            s.container_statuses.unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .running
                .is_some()
        );

        let failed = PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        };
        let done = merge_status(Some(&first), &failed, "h", &t(300));
        let again = merge_status(Some(&done), &running(), "h", &t(400));
        assert_eq!(again.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn ephemeral_statuses_are_written_and_kept() {
        let mut backend = running();
        backend.ephemeral_container_statuses = Some(vec![container("debugger", true, true, 0)]);
        let first = merge_status(None, &backend, "h", &t(100));
        let eph = first.ephemeral_container_statuses.as_ref().unwrap();
        assert_eq!(eph.len(), 1);
        assert!(eph[0].state.as_ref().unwrap().running.is_some());
        assert!(!eph[0].ready, "an ephemeral container is never ready");
        // A backend that no longer lists it (restarted, or never knew it)
        // does not erase it.
        let again = merge_status(Some(&first), &running(), "h", &t(200));
        assert_eq!(
            again.ephemeral_container_statuses,
            first.ephemeral_container_statuses
        );
        assert!(!status_changed(Some(&first), &again));
        assert_eq!(
            merge_status(None, &running(), "h", &t(100)).ephemeral_container_statuses,
            None
        );
    }

    #[test]
    fn a_restart_may_go_to_waiting() {
        let first = merge_status(None, &running(), "h", &t(100));
        let crash = PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![container("c", false, false, 1)]),
            ..Default::default()
        };
        let s = merge_status(Some(&first), &crash, "h", &t(200));
        let c = &s.container_statuses.unwrap()[0];
        assert_eq!(c.restart_count, 1);
        assert!(c.state.as_ref().unwrap().waiting.is_some());
    }

    #[test]
    fn a_container_that_ended_may_wait_for_its_restart_with_the_same_count() {
        let first = merge_status(None, &running(), "h", &t(100));
        let mut backoff = container("c", false, false, 0);
        backoff.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 3,
                finished_at: Some(t(150)),
                ..Default::default()
            }),
            ..Default::default()
        });
        let crash = PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![backoff]),
            ..Default::default()
        };
        let s = merge_status(Some(&first), &crash, "h", &t(200));
        let c = &s.container_statuses.unwrap()[0];
        assert!(c.state.as_ref().unwrap().waiting.is_some(), "{c:?}");
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
    }
}
