//! Restarts of a pod whose task stopped. Pure: the provider lists, decides
//! here, and runs the replacement.
//!
//! ECS never starts a stopped task again, so under `restartPolicy` Always
//! (or OnFailure after a failure) the pod's stopped task is replaced with a
//! new task of the same task definition, after the kubelet's crash-loop
//! back-off ([`vk_core::toolkit::restart`]). The backend is the record:
//!
//! - every task carries the pod's policy ([`TAG_RESTART_POLICY`]) and its
//!   place in the pod's line of tasks ([`TAG_RESTART_COUNT`]: 0 for the
//!   first, n for the n-th replacement), so `restartCount` survives a
//!   restart of vk-fargate and the replacement is never run twice (it is
//!   looked up by `startedBy` before `RunTask`, and its `clientToken` is the
//!   pod UID and its count);
//! - the task with the highest count speaks for the pod ([`group`]); the
//!   stopped one before it gives `lastState` and `--previous` logs;
//! - while the back-off runs, the containers are `CrashLoopBackOff` with the
//!   last exit as `lastState`, and the pod stays Running, as with the kubelet;
//! - a replacement's own ENI address is not reported: the pod keeps the IP
//!   of its first task (see [`with_restarts`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_ecs::types::Task;
use k8s_openapi::api::core::v1::PodStatus;
use vk_core::provider::PodKey;
use vk_core::toolkit::restart::{BackOff, crash_loop_back_off, should_restart};

use crate::status::DefinedContainer;

/// Tag: the pod's `restartPolicy` (`Always`, `OnFailure`, `Never`).
pub const TAG_RESTART_POLICY: &str = "io.vk-rs.restart-policy";

/// Tag: which task of the pod this is: 0 the first, n the n-th replacement.
pub const TAG_RESTART_COUNT: &str = "io.vk-rs.restart-count";

/// The `stoppedReason` of a task stopped because its pod was deleted: never
/// replaced.
pub const DELETED_REASON: &str = "Pod deleted in Kubernetes (vk-fargate)";

/// A tag of a task.
pub fn tag<'a>(task: &'a Task, key: &str) -> Option<&'a str> {
    task.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The task's place in its pod's line of tasks (0 without the tag).
pub fn restart_count(task: &Task) -> u32 {
    tag(task, TAG_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn stopped(task: &Task) -> bool {
    task.last_status() == Some("STOPPED")
}

/// A pod's tasks: the one that speaks for it and the stopped one before.
#[derive(Clone, Debug)]
pub struct PodTasks {
    /// The latest task: one still running, else the highest count.
    pub current: Task,
    /// The latest stopped task before it, when ECS still shows one.
    pub previous: Option<Task>,
}

/// Which task speaks for a pod: one still running, then the highest count,
/// then the latest created.
fn rank(task: &Task) -> (bool, u32, i64) {
    (
        !stopped(task),
        restart_count(task),
        task.created_at().map_or(0, |t| t.secs()),
    )
}

/// The tasks of each pod, grouped.
pub fn group(tasks: Vec<(PodKey, Task)>) -> BTreeMap<PodKey, PodTasks> {
    let mut by_pod: BTreeMap<PodKey, Vec<Task>> = BTreeMap::new();
    for (key, task) in tasks {
        by_pod.entry(key).or_default().push(task);
    }
    by_pod
        .into_iter()
        .filter_map(|(key, mut tasks)| {
            tasks.sort_by_key(|t| std::cmp::Reverse(rank(t)));
            let mut tasks = tasks.into_iter();
            let current = tasks.next()?;
            let previous = tasks.find(|t| stopped(t) && rank(t) < rank(&current));
            Some((key, PodTasks { current, previous }))
        })
        .collect()
}

/// Whether every essential container of a stopped task exited 0.
pub fn succeeded(task: &Task, defined: &[DefinedContainer]) -> bool {
    let mut essential = defined.iter().filter(|d| d.essential).peekable();
    essential.peek().is_some()
        && essential.all(|d| {
            task.containers()
                .iter()
                .find(|c| c.name() == Some(d.name.as_str()))
                .and_then(|c| c.exit_code())
                == Some(0)
        })
}

/// What becomes of a pod's current task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: it runs, or it stopped for good.
    Stay,
    /// It stopped and is replaced once the back-off `delay` has passed.
    Wait {
        /// The back-off in force (what `CrashLoopBackOff` says).
        delay: Duration,
    },
    /// It stopped and the back-off has passed: run the replacement.
    Replace,
}

/// What becomes of `task` (the pod's current task, its definition declaring
/// `defined`) under `policy`, stopped since `stopped_since`, at `now`.
pub fn next(
    task: &Task,
    defined: &[DefinedContainer],
    policy: &str,
    backoff: &BackOff,
    stopped_since: SystemTime,
    now: SystemTime,
) -> Next {
    if !stopped(task) || task.stopped_reason() == Some(DELETED_REASON) {
        return Next::Stay;
    }
    let exit = if succeeded(task, defined) { 0 } else { 1 };
    if !should_restart(policy, exit) {
        return Next::Stay;
    }
    let delay = backoff.delay();
    let waited = now.duration_since(stopped_since).unwrap_or_default();
    if waited >= delay {
        Next::Replace
    } else {
        Next::Wait { delay }
    }
}

/// The back-off of a pod seen for the first time with `count` restarts
/// behind it: the kubelet's, advanced once per restart.
pub fn seeded_backoff(count: u32) -> BackOff {
    let mut b = BackOff::kubelet();
    for _ in 0..count.min(8) {
        b.advance();
    }
    b
}

/// `status` (of the pod's current task) with its restarts: `restartCount`
/// of every app container, `lastState` from `previous` (the status of the
/// task before), and, while the back-off runs (`waiting`), each app
/// container `CrashLoopBackOff` with the exit it just made as `lastState`,
/// and the pod Running.
pub fn with_restarts(
    mut status: PodStatus,
    previous: Option<&PodStatus>,
    count: u32,
    waiting: Option<Duration>,
    pod: &str,
) -> PodStatus {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let earlier = |name: &str| {
        previous
            .and_then(|p| p.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == name))
            .and_then(|c| c.state.clone())
    };
    for c in status.container_statuses.iter_mut().flatten() {
        c.restart_count = count;
        match waiting {
            Some(delay) => {
                c.last_state = c.state.take();
                c.state = Some(crash_loop_back_off(delay, &c.name, pod));
                c.ready = false;
                c.started = Some(false);
            }
            None => {
                if count > 0 {
                    c.last_state = earlier(&c.name);
                }
            }
        }
    }
    if waiting.is_some() {
        status.phase = Some("Running".into());
        status.message = None;
    }
    // A replacement has a network interface of its own: its address is the
    // pod's from now on (the core's status patch replaces `podIPs`).
    status
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{Container, Tag};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus};
    use vk_core::toolkit::container_status::{Termination, container_status, running, terminated};

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn task(arn: &str, last: &str, count: Option<u32>, exit: Option<i32>) -> Task {
        let mut b = Task::builder()
            .task_arn(arn)
            .last_status(last)
            .created_at(DateTime::from_secs(100))
            .containers(
                Container::builder()
                    .name("main")
                    .last_status(last)
                    .set_exit_code(exit)
                    .build(),
            );
        if let Some(n) = count {
            b = b.tags(
                Tag::builder()
                    .key(TAG_RESTART_COUNT)
                    .value(n.to_string())
                    .build(),
            );
        }
        b.build()
    }

    fn defined() -> Vec<DefinedContainer> {
        vec![DefinedContainer {
            name: "main".into(),
            image: "busybox".into(),
            essential: true,
        }]
    }

    #[test]
    fn the_running_task_or_the_highest_count_speaks_for_the_pod() {
        let grouped = group(vec![
            (key("a"), task("a0", "STOPPED", None, Some(1))),
            (key("a"), task("a2", "RUNNING", Some(2), None)),
            (key("a"), task("a1", "STOPPED", Some(1), Some(1))),
            (key("b"), task("b0", "STOPPED", None, Some(1))),
            (key("b"), task("b1", "STOPPED", Some(1), Some(0))),
            (key("c"), task("c0", "RUNNING", None, None)),
        ]);
        let arns = |k: &str| {
            let t = &grouped[&key(k)];
            (
                t.current.task_arn().unwrap().to_string(),
                t.previous
                    .as_ref()
                    .and_then(|p| p.task_arn())
                    .map(str::to_string),
            )
        };
        assert_eq!(arns("a"), ("a2".into(), Some("a1".into())));
        assert_eq!(arns("b"), ("b1".into(), Some("b0".into())));
        assert_eq!(arns("c"), ("c0".into(), None));
    }

    #[test]
    fn a_stopped_task_is_replaced_per_policy_after_the_back_off() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let b = BackOff::kubelet();
        let ten = Duration::from_secs(10);
        let cases = [
            ("RUNNING", None, "Always", 0, Next::Stay),
            ("STOPPED", Some(1), "Never", 60, Next::Stay),
            ("STOPPED", Some(0), "OnFailure", 60, Next::Stay),
            (
                "STOPPED",
                Some(1),
                "OnFailure",
                3,
                Next::Wait { delay: ten },
            ),
            ("STOPPED", Some(1), "OnFailure", 10, Next::Replace),
            ("STOPPED", None, "OnFailure", 10, Next::Replace),
            ("STOPPED", Some(0), "Always", 9, Next::Wait { delay: ten }),
            ("STOPPED", Some(0), "Always", 11, Next::Replace),
        ];
        for (last, exit, policy, after, want) in cases {
            let t = task("t", last, None, exit);
            let got = next(
                &t,
                &defined(),
                policy,
                &b,
                t0,
                t0 + Duration::from_secs(after),
            );
            assert_eq!(got, want, "{last} {exit:?} {policy} {after}");
        }
        let deleted = Task::builder()
            .last_status("STOPPED")
            .stopped_reason(DELETED_REASON)
            .build();
        let late = t0 + Duration::from_secs(3_600);
        assert_eq!(
            next(&deleted, &defined(), "Always", &b, t0, late),
            Next::Stay
        );
    }

    #[test]
    fn a_pod_seen_after_restarts_resumes_its_back_off() {
        assert_eq!(seeded_backoff(0).delay(), Duration::from_secs(10));
        assert_eq!(seeded_backoff(2).delay(), Duration::from_secs(40));
        assert_eq!(seeded_backoff(50).delay(), Duration::from_secs(300));
    }

    fn status_of(state: ContainerState) -> PodStatus {
        PodStatus {
            phase: Some("Failed".into()),
            message: Some("EssentialContainerExited".into()),
            container_statuses: Some(vec![container_status("main", "busybox", state)]),
            ..Default::default()
        }
    }

    #[test]
    fn restarts_show_in_the_container_statuses() {
        let exited = terminated(Termination {
            exit_code: 1,
            ..Default::default()
        });
        // Waiting for the back-off: CrashLoopBackOff, the exit as lastState.
        let s = with_restarts(
            status_of(exited.clone()),
            None,
            1,
            Some(Duration::from_secs(20)),
            "job",
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.message, None);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.last_state.as_ref(), Some(&exited));
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            w.message.as_deref(),
            Some("back-off 20s restarting failed container=main pod=job")
        );
        assert!(!c.ready);

        // The replacement runs: the previous task's exit is lastState.
        let mut running_status = status_of(running(None));
        running_status.phase = Some("Running".into());
        running_status.pod_ip = Some("10.0.0.2".into());
        let s = with_restarts(
            running_status,
            Some(&status_of(exited.clone())),
            1,
            None,
            "job",
        );
        assert_eq!(
            s.pod_ip.as_deref(),
            Some("10.0.0.2"),
            "the replacement's address"
        );
        let c: &ContainerStatus = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.last_state.as_ref(), Some(&exited));
        assert!(c.state.as_ref().unwrap().running.is_some());

        // The first task: nothing to add.
        let s = with_restarts(status_of(running(None)), None, 0, None, "job");
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!((c.restart_count, c.last_state.is_none()), (0, true));
    }
}
