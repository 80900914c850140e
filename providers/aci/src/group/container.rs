//! A pod's container → an ACI container or init container: image, argv,
//! env (secrets as `secureValue`), ports, mounts, probes and security
//! context.

use k8s_openapi::api::core::v1::{Container as KubeContainer, PodSecurityContext};
use vk_core::toolkit::restart::is_sidecar;
use vk_core::{ProviderResult, ResolvedPod};

use super::{Note, invalid, probes, resources, security, unsupported};
use crate::models::{
    Container, ContainerPort, ContainerProperties, EnvironmentVariable, InitContainer,
    InitContainerProperties, VolumeMount,
};

/// `command` then `args`; args alone cannot be expressed.
fn argv(c: &KubeContainer) -> ProviderResult<Vec<String>> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    if command.is_empty() && !args.is_empty() {
        return Err(invalid(format!(
            "container {:?} has args but no command: ACI replaces the image's entrypoint, so give the full command",
            c.name
        )));
    }
    Ok(command.into_iter().chain(args).collect())
}

fn env(pod: &ResolvedPod, c: &KubeContainer) -> Vec<EnvironmentVariable> {
    c.env
        .iter()
        .flatten()
        .map(|e| {
            let value = e.value.clone().unwrap_or_default();
            if pod.is_secret_env(&c.name, &e.name) {
                EnvironmentVariable {
                    name: e.name.clone(),
                    value: None,
                    secure_value: Some(value),
                }
            } else {
                EnvironmentVariable {
                    name: e.name.clone(),
                    value: Some(value),
                    secure_value: None,
                }
            }
        })
        .collect()
}

/// Mounts. `recursiveReadOnly` needs nothing more than `readOnly`: ACI
/// volumes have no submounts. Mount propagation has no host to share with.
fn mounts(c: &KubeContainer, notes: &mut Vec<Note>) -> ProviderResult<Vec<VolumeMount>> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
            {
                return Err(invalid(format!(
                    "container {:?} mounts volume {:?} with a subPath, which ACI cannot mount",
                    c.name, m.name
                )));
            }
            if let Some(p) = m.mount_propagation.as_deref().filter(|p| *p != "None") {
                notes.push(Note {
                    reason: "MountPropagationNotSupported",
                    message: format!(
                        "container {:?} volume {:?}: ACI has no host mounts to propagate; mountPropagation {p} is not applied",
                        c.name, m.name
                    ),
                });
            }
            Ok(VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
        })
        .collect()
}

pub(super) fn app_container(
    pod: &ResolvedPod,
    c: &KubeContainer,
    gpu_sku: Option<&str>,
    notes: &mut Vec<Note>,
) -> ProviderResult<Container> {
    unsupported::container_notes(c, notes)?;
    if c.startup_probe.is_some() {
        notes.push(Note {
            reason: "ProbeNotSupported",
            message: format!(
                "container {:?}: ACI has no startup probes; the startup probe is not run",
                c.name
            ),
        });
    }
    Ok(Container {
        name: c.name.clone(),
        properties: ContainerProperties {
            image: image(c)?,
            command: argv(c)?,
            ports: ports(c, notes)?,
            environment_variables: env(pod, c),
            resources: resources::resources(c, gpu_sku)?,
            volume_mounts: mounts(c, notes)?,
            liveness_probe: probes::probe(c, "liveness", c.liveness_probe.as_ref(), notes)?,
            readiness_probe: probes::probe(c, "readiness", c.readiness_probe.as_ref(), notes)?,
            security_context: security::security_context(pod_security(pod), c, notes)?,
            instance_view: None,
        },
    })
}

/// The pod-level security context, if any.
fn pod_security(pod: &ResolvedPod) -> Option<&PodSecurityContext> {
    pod.pod.spec.as_ref()?.security_context.as_ref()
}

/// Ports: the group's IP plays the host's part, so a `hostPort` equal to
/// the container port is what ACI does anyway; another one cannot be mapped.
fn ports(c: &KubeContainer, notes: &mut Vec<Note>) -> ProviderResult<Vec<ContainerPort>> {
    c.ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "TCP",
                "UDP" => "UDP",
                other => {
                    return Err(invalid(format!(
                        "container {:?} port {}: ACI has no {other} ports",
                        c.name, p.container_port
                    )));
                }
            };
            if let Some(host) = p.host_port.filter(|h| *h != 0 && *h != p.container_port) {
                return Err(invalid(format!(
                    "container {:?} port {}: hostPort {host} differs from the container port, and ACI exposes a port on the group's IP only as itself",
                    c.name, p.container_port
                )));
            }
            if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                notes.push(Note {
                    reason: "HostIPNotSupported",
                    message: format!(
                        "container {:?} port {}: ACI has one address per group; hostIP {ip} is not used",
                        c.name, p.container_port
                    ),
                });
            }
            Ok(ContainerPort {
                port: p.container_port,
                protocol: Some(protocol.into()),
            })
        })
        .collect()
}

fn image(c: &KubeContainer) -> ProviderResult<String> {
    c.image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid(format!("container {:?} has no image", c.name)))
}

pub(super) fn init_container(
    pod: &ResolvedPod,
    c: &KubeContainer,
    notes: &mut Vec<Note>,
) -> ProviderResult<InitContainer> {
    if is_sidecar(c) {
        return Err(invalid(format!(
            "init container {:?} is a sidecar (restartPolicy: Always): it runs among the group's containers, not its init containers",
            c.name
        )));
    }
    unsupported::container_notes(c, notes)?;
    Ok(InitContainer {
        name: c.name.clone(),
        properties: InitContainerProperties {
            image: Some(image(c)?),
            command: argv(c)?,
            environment_variables: env(pod, c),
            volume_mounts: mounts(c, notes)?,
            security_context: security::security_context(pod_security(pod), c, notes)?,
            instance_view: None,
        },
    })
}
