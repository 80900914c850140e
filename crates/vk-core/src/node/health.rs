//! The node's health as the node controller reports it: the provider's
//! pings through a gate that lets one failure pass, and whether the Ready
//! condition the API shows is what this kubelet wrote. Pure, table-tested.

use std::sync::atomic::{AtomicU8, Ordering};

use k8s_openapi::api::core::v1::Node;

/// What the node reports: Ready, or not and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// Whether the node reports Ready.
    pub ready: bool,
    /// Why the last ping failed (empty after a success).
    pub message: String,
}

/// Failed pings in a row that make a node whose backend answered before
/// NotReady: 3 heartbeats (at most 30 s, within the lease's 40 s).
pub const PING_FAILURES_NOT_READY: u32 = 3;

/// The node's health from its pings: Ready until [`PING_FAILURES_NOT_READY`]
/// pings in a row failed, once one succeeded; NotReady at the first failure
/// before any success (a backend never reached is not a blip). Pure.
#[derive(Debug, Default)]
pub struct HealthGate {
    proven: bool,
    failures: u32,
}

impl HealthGate {
    /// Failed pings in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The health after one ping's result (`Err`: why it failed).
    pub fn observe(&mut self, ping: Result<(), String>) -> Health {
        match ping {
            Ok(()) => {
                self.proven = true;
                self.failures = 0;
                Health {
                    ready: true,
                    message: String::new(),
                }
            }
            Err(message) => {
                self.failures = self.failures.saturating_add(1);
                Health {
                    ready: self.proven && self.failures < PING_FAILURES_NOT_READY,
                    message,
                }
            }
        }
    }
}

/// The Ready status this kubelet reports: `True` or `False`.
fn ready_status(ready: bool) -> &'static str {
    if ready { "True" } else { "False" }
}

/// Whether the node's Ready condition in the API differs from what this
/// kubelet last wrote (`reported`; `None` before its first write): the node
/// lifecycle controller sets it to `Unknown` when the lease went stale, and
/// a missing condition is as wrong. Pure.
pub fn ready_drifted(node: &Node, reported: Option<bool>) -> bool {
    let Some(reported) = reported else {
        return false;
    };
    let in_api = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    in_api != Some(ready_status(reported))
}

/// What this kubelet last wrote as Ready, shared with the node watch:
/// 0 nothing yet, 1 True, 2 False.
#[derive(Default)]
pub struct ReportedReady(AtomicU8);

impl ReportedReady {
    /// Records what was written.
    pub fn set(&self, ready: bool) {
        self.0.store(if ready { 1 } else { 2 }, Ordering::Relaxed);
    }
    /// What was last written, if anything.
    pub fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    #[test]
    fn health_gate() {
        let ok = || Ok(());
        let fail = || Err("down".to_string());
        // (name, pings, Ready after each)
        type Case = (&'static str, Vec<Result<(), String>>, Vec<bool>);
        let cases: Vec<Case> = vec![
            ("healthy", vec![ok(), ok()], vec![true, true]),
            (
                "one failure is a blip",
                vec![ok(), fail(), ok()],
                vec![true, true, true],
            ),
            (
                "three in a row: NotReady",
                vec![ok(), fail(), fail(), fail(), fail()],
                vec![true, true, true, false, false],
            ),
            (
                "failures apart never add up",
                vec![ok(), fail(), fail(), ok(), fail(), fail()],
                vec![true, true, true, true, true, true],
            ),
            (
                "a success makes it Ready again at once",
                vec![ok(), fail(), fail(), fail(), ok()],
                vec![true, true, true, false, true],
            ),
            (
                "never reached: NotReady at the first failure",
                vec![fail(), ok()],
                vec![false, true],
            ),
        ];
        for (name, pings, want) in cases {
            let mut gate = HealthGate::default();
            let got: Vec<bool> = pings.into_iter().map(|p| gate.observe(p).ready).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    fn node_with_ready(status: Option<&str>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: status.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_drift() {
        let cases: Vec<(&str, Option<&str>, Option<bool>, bool)> = vec![
            ("as reported", Some("True"), Some(true), false),
            (
                "Unknown from the lifecycle controller",
                Some("Unknown"),
                Some(true),
                true,
            ),
            ("Unknown while NotReady", Some("Unknown"), Some(false), true),
            ("NotReady as reported", Some("False"), Some(false), false),
            (
                "True while we say NotReady",
                Some("True"),
                Some(false),
                true,
            ),
            ("no condition", None, Some(true), true),
            ("nothing written yet", Some("Unknown"), None, false),
        ];
        for (name, in_api, reported, want) in cases {
            assert_eq!(
                ready_drifted(&node_with_ready(in_api), reported),
                want,
                "{name}"
            );
        }
    }
}
