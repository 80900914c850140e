//! Ephemeral containers (`kubectl debug`) in the pod runtime. `kubectl
//! debug` adds them to a running pod through the `ephemeralcontainers`
//! subresource; they can never be changed or removed. The core hands each
//! new one to the provider once ([`crate::Provider::start_ephemeral_containers`]),
//! never restarts it, and reports `status.ephemeralContainerStatuses`.
//!
//! This module holds the pure parts: which of a pod's ephemeral containers
//! are still to be handed over, the status the core writes for one the
//! provider refused (Terminated, so that `kubectl debug` stops waiting and
//! shows the message), and how ephemeral statuses merge (none ever goes
//! away, none runs again once it ended).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::toolkit::container_status::{Termination, container_status, terminated};

/// The terminated reason of an ephemeral container its provider refused
/// (the pod status reason the core uses for a pod a backend refused).
pub const REFUSED_REASON: &str = "ProviderFailed";

/// The exit code of a refused one: it never ran (the runtime's code for a
/// container that could not start).
const REFUSED_EXIT_CODE: i32 = 128;

/// The ephemeral containers of `pod` to hand to the provider: those the
/// pod lists, less the ones already handed over (or refused) by this
/// process (`handed`), less the ones the API status shows started or ended
/// (handed over before a restart of this process: started once, never
/// again). One the status shows still waiting (an image being pulled when
/// this process restarted) is handed over again: the provider's call is
/// idempotent, and a backend that lost it starts it.
pub fn pending(pod: &Pod, handed: &BTreeSet<String>) -> Vec<String> {
    let reported: BTreeSet<&str> = pod
        .status
        .iter()
        .flat_map(|s| s.ephemeral_container_statuses.iter().flatten())
        .filter(|s| {
            s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
        })
        .map(|s| s.name.as_str())
        .collect();
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .map(|ec| ec.name.as_str())
        .filter(|n| !handed.contains(*n) && !reported.contains(n))
        .map(str::to_string)
        .collect()
}

/// The status of ephemeral container `name` of `pod` that the provider
/// refused with `message`: Terminated (reason [`REFUSED_REASON`]), never
/// started, never ready.
pub fn refused(pod: &Pod, name: &str, message: &str, now: &Time) -> ContainerStatus {
    let image = pod
        .spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .find(|ec| ec.name == name)
        .and_then(|ec| ec.image.clone())
        .unwrap_or_default();
    let mut state = terminated(Termination {
        exit_code: REFUSED_EXIT_CODE,
        message: Some(message.to_string()),
        finished_at: Some(now.clone()),
        ..Default::default()
    });
    if let Some(t) = state.terminated.as_mut() {
        t.reason = Some(REFUSED_REASON.to_string());
    }
    ContainerStatus {
        started: Some(false),
        ..container_status(name, &image, state)
    }
}

/// The message of a refusal, when the API status of `pod` shows ephemeral
/// container `name` as refused by the provider: the kubelet API answers
/// logs, exec and attach of it with that message.
pub fn refusal(pod: &Pod, name: &str) -> Option<String> {
    let t = pod
        .status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    (t.reason.as_deref() == Some(REFUSED_REASON)).then(|| t.message.clone().unwrap_or_default())
}

/// Merges the backend's ephemeral statuses into the API's: a container the
/// backend does not report keeps its status (the backend may not know it:
/// refused, or listed before this process restarted), and one that ended
/// stays ended (an ephemeral container never runs twice). `None` when
/// neither side has any.
pub fn merge(
    current: Option<&[ContainerStatus]>,
    backend: Option<&[ContainerStatus]>,
) -> Option<Vec<ContainerStatus>> {
    let current = current.unwrap_or_default();
    let backend = backend.unwrap_or_default();
    if current.is_empty() && backend.is_empty() {
        return None;
    }
    let ended = |s: &ContainerStatus| s.state.as_ref().is_some_and(|s| s.terminated.is_some());
    let mut out: Vec<ContainerStatus> = current
        .iter()
        .map(|c| match backend.iter().find(|b| b.name == c.name) {
            Some(b) if !ended(c) || ended(b) => b.clone(),
            _ => c.clone(),
        })
        .collect();
    for b in backend {
        if !out.iter().any(|c| c.name == b.name) {
            out.push(b.clone());
        }
    }
    for s in out.iter_mut() {
        // The kubelet's rules for ephemeral containers, whatever a backend says.
        s.ready = false;
        s.restart_count = 0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::toolkit::container_status::running;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn pod(names: &[&str], reported: &[&str]) -> Pod {
        let ecs: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "image": "busybox"}))
            .collect();
        let sts: Vec<_> = reported
            .iter()
            .map(|n| {
                json!({"name": n, "image": "busybox", "imageID": "", "ready": false,
                            "restartCount": 0, "state": {"running": {}}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "app", "image": "a"}], "ephemeralContainers": ecs},
            "status": {"phase": "Running", "ephemeralContainerStatuses": sts}
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_000).unwrap())
    }

    fn handed(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pending_containers() {
        let mut waiting = pod(&["d1"], &["d1"]);
        if let Some(st) = waiting
            .status
            .as_mut()
            .and_then(|s| s.ephemeral_container_statuses.as_mut())
        {
            st[0].state = Some(crate::toolkit::container_status::waiting(
                "ErrImagePull",
                None,
            ));
        }
        let cases: Vec<(&str, Pod, BTreeSet<String>, Vec<&str>)> = vec![
            ("none", pod(&[], &[]), handed(&[]), vec![]),
            ("a new one", pod(&["d1"], &[]), handed(&[]), vec!["d1"]),
            ("handed already", pod(&["d1"], &[]), handed(&["d1"]), vec![]),
            (
                "a second one, in order",
                pod(&["d1", "d2", "d3"], &[]),
                handed(&["d1"]),
                vec!["d2", "d3"],
            ),
            (
                "reported before a restart",
                pod(&["d1", "d2"], &["d1"]),
                handed(&[]),
                vec!["d2"],
            ),
            (
                "still waiting before a restart",
                waiting,
                handed(&[]),
                vec!["d1"],
            ),
        ];
        for (name, p, h, want) in cases {
            assert_eq!(pending(&p, &h), want, "{name}");
        }
    }

    #[test]
    fn a_refused_container_is_terminated_with_the_message() {
        let mut p = pod(&["d1"], &[]);
        let s = refused(&p, "d1", "no ephemeral containers here", &now());
        assert_eq!(s.image, "busybox");
        assert!(!s.ready);
        assert_eq!(s.restart_count, 0);
        let t = s.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(t.reason.as_deref(), Some(REFUSED_REASON));
        assert_eq!(t.exit_code, 128);
        assert_eq!(t.message.as_deref(), Some("no ephemeral containers here"));
        assert_eq!(refusal(&p, "d1"), None, "not in the API status yet");
        p.status.as_mut().unwrap().ephemeral_container_statuses = Some(vec![s]);
        assert_eq!(
            refusal(&p, "d1").as_deref(),
            Some("no ephemeral containers here")
        );
        assert_eq!(refusal(&p, "app"), None);
        // A container that ran and ended is no refusal.
        let ran = pod(&["d1"], &["d1"]);
        assert_eq!(refusal(&ran, "d1"), None);
    }

    #[test]
    fn merged_statuses_never_vanish_nor_run_again() {
        let run = |n: &str| ContainerStatus {
            ready: true,
            restart_count: 3,
            ..container_status(n, "busybox", running(Some(now())))
        };
        let p = pod(&["gone", "d1"], &[]);
        let refused_one = refused(&p, "gone", "refused", &now());
        let ended = refused(&p, "d1", "x", &now());

        assert_eq!(merge(None, None), None);
        assert_eq!(merge(Some(&[]), Some(&[])), None);

        // The backend's status wins, with the kubelet's ready and restart count.
        let m = merge(None, Some(&[run("d1")])).unwrap();
        assert_eq!(m.len(), 1);
        assert!(!m[0].ready);
        assert_eq!(m[0].restart_count, 0);
        assert!(m[0].state.as_ref().unwrap().running.is_some());

        // One the backend does not report is kept, and order is kept.
        let m = merge(Some(std::slice::from_ref(&refused_one)), Some(&[run("d1")])).unwrap();
        assert_eq!(
            m.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["gone", "d1"]
        );
        assert_eq!(m[0], refused_one);

        // Ended stays ended.
        let m = merge(Some(std::slice::from_ref(&ended)), Some(&[run("d1")])).unwrap();
        assert!(m[0].state.as_ref().unwrap().terminated.is_some());
    }
}
