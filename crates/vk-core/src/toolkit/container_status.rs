//! `ContainerStatus` builders: the waiting, running and terminated states with
//! the kubelet's reasons, so that every backend reports a container the way
//! `kubectl` and controllers expect. Pure functions; a provider fills in what
//! only it knows (ids, readiness, restart count) with struct update syntax:
//!
//! ```
//! use vk_core::toolkit::container_status::{container_status, running};
//! use k8s_openapi::api::core::v1::ContainerStatus;
//!
//! let status = ContainerStatus {
//!     ready: true,
//!     restart_count: 2,
//!     ..container_status("web", "nginx:1.27", running(None))
//! };
//! assert_eq!(status.started, Some(true));
//! ```

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The kubelet's reasons for container states.
pub mod reason {
    /// Waiting: the sandbox, volumes or image are being prepared.
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// Waiting: an app container while the init containers run.
    pub const POD_INITIALIZING: &str = "PodInitializing";
    /// Waiting: the back-off before restarting a container that exited.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// Terminated with exit code 0.
    pub const COMPLETED: &str = "Completed";
    /// Terminated with another exit code.
    pub const ERROR: &str = "Error";
    /// Terminated by the out-of-memory killer.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// Terminated without ever starting (the runtime could not start it).
    pub const START_ERROR: &str = "StartError";
}

/// A container status with `name`, `image` and `state`; `started` follows
/// the state (running). Not ready, never restarted, no ids, no last state:
/// the caller sets those it knows.
pub fn container_status(name: &str, image: &str, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        started: Some(state.running.is_some()),
        state: Some(state),
        ..Default::default()
    }
}

/// Waiting, with a reason ([`reason`] or the kubelet's image and create
/// errors: `ErrImagePull`, `CreateContainerError`...) and an optional message.
pub fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// Running since `started_at` (when the backend says).
pub fn running(started_at: Option<Time>) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning { started_at }),
        ..Default::default()
    }
}

/// How a container ended, as the backend reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Termination {
    /// The exit code.
    pub exit_code: i32,
    /// The out-of-memory killer ended it.
    pub oom_killed: bool,
    /// The backend's error, if it gave one (a failed start, a removal).
    pub message: Option<String>,
    /// When it started; `None` when it never did.
    pub started_at: Option<Time>,
    /// When it ended.
    pub finished_at: Option<Time>,
    /// The backend's id of the container (`docker://…`).
    pub container_id: Option<String>,
}

impl Termination {
    /// The kubelet's reason: `OOMKilled`, `Completed` (code 0), `StartError`
    /// (an error and no start time), else `Error`.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            reason::OOM_KILLED
        } else if self.exit_code == 0 {
            reason::COMPLETED
        } else if self.message.is_some() && self.started_at.is_none() {
            reason::START_ERROR
        } else {
            reason::ERROR
        }
    }
}

/// Terminated, with the kubelet's reason ([`Termination::reason`]).
pub fn terminated(t: Termination) -> ContainerState {
    let reason = t.reason();
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: Some(reason.to_string()),
            message: t.message,
            started_at: t.started_at,
            finished_at: t.finished_at,
            container_id: t.container_id,
            signal: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn at(second: i64) -> Option<Time> {
        Some(Time(jiff::Timestamp::from_second(second).unwrap()))
    }

    #[test]
    fn terminations_carry_the_kubelet_reasons() {
        let cases = [
            (0, false, None, at(1), "Completed"),
            (2, false, None, at(1), "Error"),
            (137, true, None, at(1), "OOMKilled"),
            (0, true, None, at(1), "OOMKilled"),
            (128, false, Some("exec: not found"), None, "StartError"),
            (128, false, Some("removed"), at(1), "Error"),
            (1, false, None, None, "Error"),
            (0, false, Some("removed"), None, "Completed"),
        ];
        for (code, oom, message, started, want) in cases {
            let t = Termination {
                exit_code: code,
                oom_killed: oom,
                message: message.map(str::to_string),
                started_at: started.clone(),
                finished_at: at(5),
                container_id: Some("x://1".into()),
            };
            let state = terminated(t);
            assert!(state.running.is_none() && state.waiting.is_none());
            let got = state.terminated.unwrap();
            assert_eq!(
                got.reason.as_deref(),
                Some(want),
                "{code} {oom} {message:?}"
            );
            assert_eq!(got.exit_code, code);
            assert_eq!(got.message.as_deref(), message);
            assert_eq!(got.started_at, started);
            assert_eq!(got.finished_at, at(5));
            assert_eq!(got.container_id.as_deref(), Some("x://1"));
        }
    }

    #[test]
    fn a_status_is_started_only_when_running() {
        let cases = [
            (running(at(3)), true),
            (waiting(reason::CONTAINER_CREATING, None), false),
            (
                waiting(reason::CRASH_LOOP_BACK_OFF, Some("back-off 10s".into())),
                false,
            ),
            (terminated(Termination::default()), false),
        ];
        for (state, started) in cases {
            let s = container_status("c", "img:1", state.clone());
            assert_eq!(s.name, "c");
            assert_eq!(s.image, "img:1");
            assert_eq!(s.started, Some(started), "{state:?}");
            assert_eq!(s.state, Some(state));
            assert!(!s.ready);
            assert_eq!(s.restart_count, 0);
            assert!(s.last_state.is_none() && s.container_id.is_none());
        }
    }

    #[test]
    fn states_hold_exactly_one_variant() {
        let w = waiting("ErrImagePull", Some("no such image".into()));
        let inner = w.waiting.unwrap();
        assert_eq!(inner.reason.as_deref(), Some("ErrImagePull"));
        assert_eq!(inner.message.as_deref(), Some("no such image"));
        assert!(w.running.is_none() && w.terminated.is_none());
        let r = running(at(7));
        assert_eq!(r.running.unwrap().started_at, at(7));
        assert!(r.waiting.is_none() && r.terminated.is_none());
    }
}
