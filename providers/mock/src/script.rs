//! Per-pod lifecycle scripts, set with the `mock.vk-rs.io/script` annotation, so
//! Pending → Running → Succeeded/Failed, restarts and failures are testable.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     mock.vk-rs.io/script: '{"startDelaySeconds": 2, "exitAfterSeconds": 3, "exitCode": 1}'
//! ```
//!
//! `{"refuseEphemeralContainers": true}` makes the mock refuse `kubectl debug`
//! as a provider without ephemeral containers does.

use serde::Deserialize;

/// The annotation holding a pod's script.
pub const ANNOTATION: &str = "mock.vk-rs.io/script";

/// How creation fails, when scripted to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FailCreate {
    /// The pod is invalid for this backend: Failed with `ProviderFailed`.
    Invalid,
    /// The backend is unavailable: retried with backoff.
    Unavailable,
}

/// A pod's scripted behaviour. Every field is optional; an empty script is a pod
/// that runs at once and forever.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Script {
    /// Seconds in ContainerCreating before Running.
    #[serde(default)]
    pub start_delay_seconds: f64,
    /// Containers exit after running this long.
    pub exit_after_seconds: Option<f64>,
    /// Exit code used with `exitAfterSeconds`.
    #[serde(default)]
    pub exit_code: i32,
    /// Fail at creation.
    pub fail_create: Option<FailCreate>,
    /// Containers turn unready after running this long.
    pub unready_after_seconds: Option<f64>,
    /// Seconds the workload takes to stop when deleted (bounded by the grace period).
    #[serde(default)]
    pub termination_seconds: f64,
    /// Refuse ephemeral containers (`kubectl debug`) as a provider without
    /// them does (`NotImplemented`): what the core does then is testable.
    #[serde(default)]
    pub refuse_ephemeral_containers: bool,
}

impl Script {
    /// The script of a pod, from its annotation.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Result<Option<Script>, String> {
        let Some(text) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
        else {
            return Ok(None);
        };
        let s: Script =
            serde_json::from_str(text).map_err(|e| format!("annotation {ANNOTATION}: {e}"))?;
        for (name, v) in [
            ("startDelaySeconds", Some(s.start_delay_seconds)),
            ("exitAfterSeconds", s.exit_after_seconds),
            ("unreadyAfterSeconds", s.unready_after_seconds),
            ("terminationSeconds", Some(s.termination_seconds)),
        ] {
            if let Some(v) = v
                && !(0.0..=86_400.0).contains(&v)
            {
                return Err(format!(
                    "annotation {ANNOTATION}: {name} must be between 0 and 86400"
                ));
            }
        }
        Ok(Some(s))
    }

    /// Whether the pod needs a timer task at all.
    pub fn has_timeline(&self) -> bool {
        self.start_delay_seconds > 0.0
            || self.exit_after_seconds.is_some()
            || self.unready_after_seconds.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(annotation: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.annotations = Some([(ANNOTATION.to_string(), annotation.to_string())].into());
        p
    }

    #[test]
    fn parses() {
        let s = Script::of(&pod(
            r#"{"exitAfterSeconds": 1.5, "exitCode": 3, "failCreate": "invalid", "refuseEphemeralContainers": true}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(s.exit_after_seconds, Some(1.5));
        assert_eq!(s.exit_code, 3);
        assert_eq!(s.fail_create, Some(FailCreate::Invalid));
        assert!(s.refuse_ephemeral_containers);
        assert!(Script::of(&Pod::default()).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_scripts() {
        for a in [
            "{",
            r#"{"exitCode": "x"}"#,
            r#"{"bogus": 1}"#,
            r#"{"startDelaySeconds": -1}"#,
        ] {
            assert!(Script::of(&pod(a)).is_err(), "{a}");
        }
    }
}
