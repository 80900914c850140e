//! Container restarts, as the kubelet does them: whether a container that
//! exited starts again (`restartPolicy`, sidecars), and when: the crash-loop
//! back-off, 10 s doubling to 5 min, reset once a container ran 10 min, shown
//! as `CrashLoopBackOff` while it waits.
//!
//! The back-off is a value a provider keeps per container (or per image pull,
//! per sandbox): it reads [`BackOff::delay`] to schedule the next try and
//! calls [`BackOff::advance`] once it is used.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerState, Pod};

use crate::toolkit::container_status::{reason, waiting};

/// The pod's `restartPolicy`: `Always` when unset (the API's default).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether a container that exited with `exit_code` is started again under
/// `policy` (`Always`, `OnFailure` or `Never`; anything else is `Always`).
pub fn should_restart(policy: &str, exit_code: i64) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether an init container is a sidecar (`restartPolicy: Always`): it runs
/// beside the app containers and is restarted whenever it ends.
pub fn is_sidecar(init_container: &Container) -> bool {
    init_container.restart_policy.as_deref() == Some("Always")
}

/// How a back-off grows and when it starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A container that ran this long without exiting starts over at `initial`.
    pub reset_after: Duration,
}

impl BackOffPolicy {
    /// The kubelet's: 10 s doubling to 5 min, reset after 10 min.
    pub const KUBELET: BackOffPolicy = BackOffPolicy {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
        reset_after: Duration::from_secs(600),
    };
}

/// One container's (or pull's) back-off: the delay before its next try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackOff {
    policy: BackOffPolicy,
    delay: Duration,
}

impl BackOff {
    /// A back-off at its first delay.
    pub fn new(policy: BackOffPolicy) -> BackOff {
        BackOff {
            policy,
            delay: policy.initial,
        }
    }

    /// The kubelet's back-off ([`BackOffPolicy::KUBELET`]).
    pub fn kubelet() -> BackOff {
        BackOff::new(BackOffPolicy::KUBELET)
    }

    /// The delay before the next try.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The delay was used: the next one is twice as long, up to the maximum.
    pub fn advance(&mut self) {
        self.delay = (self.delay * 2).min(self.policy.max);
    }

    /// Starts over at the first delay (a pull that worked, a sandbox that started).
    pub fn reset(&mut self) {
        self.delay = self.policy.initial;
    }

    /// The container has run for `running`: long enough, and the back-off
    /// starts over. Returns whether it did.
    pub fn ran_for(&mut self, running: Duration) -> bool {
        let reset = running > self.policy.reset_after;
        if reset {
            self.reset();
        }
        reset
    }
}

impl Default for BackOff {
    fn default() -> Self {
        BackOff::kubelet()
    }
}

/// The kubelet's message while a container waits to restart:
/// `back-off 40s restarting failed container=web pod=web-1`.
pub fn crash_loop_message(delay: Duration, container: &str, pod: &str) -> String {
    format!(
        "back-off {}s restarting failed container={container} pod={pod}",
        delay.as_secs()
    )
}

/// The waiting state of a container between an exit and its restart
/// (`CrashLoopBackOff`, with [`crash_loop_message`]).
pub fn crash_loop_back_off(delay: Duration, container: &str, pod: &str) -> ContainerState {
    waiting(
        reason::CRASH_LOOP_BACK_OFF,
        Some(crash_loop_message(delay, container, pod)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn restart_policies() {
        let cases = [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("OnFailure", -1, true),
            ("Never", 0, false),
            ("Never", 2, false),
            ("", 0, true),
        ];
        for (policy, code, want) in cases {
            assert_eq!(should_restart(policy, code), want, "{policy} {code}");
        }
    }

    #[test]
    fn the_policy_defaults_to_always_and_sidecars_are_init_containers_that_always_restart() {
        let pod = |policy: Option<&str>| -> Pod {
            serde_json::from_value(serde_json::json!({
                "spec": {"containers": [], "restartPolicy": policy}
            }))
            .unwrap()
        };
        assert_eq!(restart_policy(&Pod::default()), "Always");
        assert_eq!(restart_policy(&pod(None)), "Always");
        assert_eq!(restart_policy(&pod(Some("Never"))), "Never");
        let init = |policy: Option<&str>| Container {
            name: "i".into(),
            restart_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert!(is_sidecar(&init(Some("Always"))));
        assert!(!is_sidecar(&init(None)));
        assert!(!is_sidecar(&init(Some("Never"))));
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let mut b = BackOff::kubelet();
        let mut seen = vec![b.delay().as_secs()];
        for _ in 0..6 {
            b.advance();
            seen.push(b.delay().as_secs());
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300]);
        b.reset();
        assert_eq!(b.delay(), Duration::from_secs(10));
    }

    #[test]
    fn a_quick_policy_doubles_to_its_own_maximum() {
        let mut b = BackOff::new(BackOffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(60),
        });
        let mut seen = vec![];
        for _ in 0..6 {
            seen.push(b.delay().as_secs());
            b.advance();
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_container_that_ran_ten_minutes_starts_over() {
        let cases = [
            (Duration::from_secs(0), false, 40),
            (Duration::from_secs(599), false, 40),
            (Duration::from_secs(600), false, 40),
            (Duration::from_secs(601), true, 10),
            (Duration::from_secs(86_400), true, 10),
        ];
        for (running, reset, delay) in cases {
            let mut b = BackOff::kubelet();
            b.advance();
            b.advance();
            assert_eq!(b.ran_for(running), reset, "{running:?}");
            assert_eq!(b.delay().as_secs(), delay, "{running:?}");
        }
    }

    #[test]
    fn crash_loop_state_names_container_pod_and_delay() {
        let s = crash_loop_back_off(Duration::from_secs(40), "main", "web-1");
        let w = s.waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            w.message.as_deref(),
            Some("back-off 40s restarting failed container=main pod=web-1")
        );
        assert!(s.running.is_none() && s.terminated.is_none());
    }
}
