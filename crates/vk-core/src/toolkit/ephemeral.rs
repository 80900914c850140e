//! Ephemeral containers (`kubectl debug`) as a provider handles them: each
//! one of `spec.ephemeralContainers` as a plain [`Container`] (the fields are
//! the same, less `targetContainerName`), so that a backend builds, execs
//! into and reports on it with the code it has for regular containers.
//!
//! Which ephemeral containers are new, and the status of one a provider
//! refused, are the core's (`crate::pod::ephemeral`).

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};

/// An ephemeral container of a pod, as a backend runs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ephemeral {
    /// The container, as a regular one.
    pub container: Container,
    /// `targetContainerName`: the container whose process namespace it
    /// shares, when set.
    pub target: Option<String>,
}

/// The same container as a regular [`Container`].
pub fn as_container(ec: &EphemeralContainer) -> Container {
    let ec = ec.clone();
    Container {
        args: ec.args,
        command: ec.command,
        env: ec.env,
        env_from: ec.env_from,
        image: ec.image,
        image_pull_policy: ec.image_pull_policy,
        lifecycle: ec.lifecycle,
        liveness_probe: ec.liveness_probe,
        name: ec.name,
        ports: ec.ports,
        readiness_probe: ec.readiness_probe,
        resize_policy: ec.resize_policy,
        resources: ec.resources,
        restart_policy: ec.restart_policy,
        restart_policy_rules: ec.restart_policy_rules,
        security_context: ec.security_context,
        startup_probe: ec.startup_probe,
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        termination_message_path: ec.termination_message_path,
        termination_message_policy: ec.termination_message_policy,
        tty: ec.tty,
        volume_devices: ec.volume_devices,
        volume_mounts: ec.volume_mounts,
        working_dir: ec.working_dir,
    }
}

/// The pod's ephemeral containers, in the order the pod lists them.
pub fn ephemeral_containers(pod: &Pod) -> Vec<Ephemeral> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .map(|ec| Ephemeral {
            container: as_container(ec),
            target: ec.target_container_name.clone().filter(|t| !t.is_empty()),
        })
        .collect()
}

/// Whether `name` is one of the pod's ephemeral containers.
pub fn is_ephemeral(pod: &Pod, name: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .any(|ec| ec.name == name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_ephemeral_container_keeps_its_fields_as_a_container() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "image": "a"}],
                "ephemeralContainers": [
                    {"name": "debugger-1", "image": "busybox", "command": ["sh"],
                     "stdin": true, "tty": true, "targetContainerName": "app",
                     "env": [{"name": "A", "value": "1"}]},
                    {"name": "debugger-2", "image": "busybox", "targetContainerName": ""}
                ]
            }
        }))
        .unwrap();
        let eph = ephemeral_containers(&pod);
        assert_eq!(eph.len(), 2);
        let c = &eph[0].container;
        assert_eq!(c.name, "debugger-1");
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.command.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!((c.stdin, c.tty), (Some(true), Some(true)));
        assert_eq!(c.env.as_ref().unwrap()[0].value.as_deref(), Some("1"));
        assert_eq!(eph[0].target.as_deref(), Some("app"));
        assert_eq!(eph[1].target, None, "an empty target is none");
        assert!(is_ephemeral(&pod, "debugger-2"));
        assert!(!is_ephemeral(&pod, "app"));
        assert!(ephemeral_containers(&Pod::default()).is_empty());
    }
}
