//! A pod → the container group that runs it. Pure: no client, no clock.
//!
//! What a pod asks for that ACI cannot do is refused here with
//! [`ProviderError::InvalidInput`] and a sentence saying what and why (the
//! core fails the pod with `ProviderFailed`); what ACI can do without but
//! that changes behaviour (startup and tcpSocket probes) becomes a
//! [`Note`] the provider records as a Warning event. Nothing is dropped
//! silently.
//!
//! Choices worth knowing:
//! - **argv** is the container's `command` followed by its `args`, as one
//!   exec-form array. ACI replaces the image's entrypoint with it, so `args`
//!   without `command` cannot be expressed and is refused.
//! - **Resources**: ACI sizes a group as the sum of its containers' requests
//!   and refuses a limit above that sum (azure-aci#149). The group is made
//!   big enough for the largest limit: the shortfall is added to the request
//!   of the container with that limit. CPU goes in 0.01-core steps, memory
//!   in 0.1 GB steps (decimal GB, as upstream), always rounded up. A
//!   container without requests gets upstream's 1 core and 1.5 GB.
//! - **Secrets** never travel as plain values: env from Secrets is
//!   `secureValue`; configMap, secret, downwardAPI and projected volumes
//!   (service-account tokens included) are ACI `secret` volumes, base64.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{Container as KubeContainer, Probe, Volume as KubeVolume};
use vk_core::quantity::parse_nanos;
use vk_core::toolkit::pod_identity::{NameRules, PodIdentity};
use vk_core::toolkit::restart::{is_sidecar, restart_policy};
use vk_core::{ProviderError, ProviderResult, ResolvedPod};

use crate::models::{
    ConfidentialComputeProperties, Container, ContainerExec, ContainerGroup,
    ContainerGroupIdentity, ContainerGroupProperties, ContainerHttpGet, ContainerPort,
    ContainerProbe, ContainerProperties, DnsConfiguration, EnvironmentVariable, GpuResource,
    HttpHeader, ImageRegistryCredential, InitContainer, InitContainerProperties, IpAddress, Port,
    ResourceLimits, ResourceRequests, ResourceRequirements, SubnetId, UserAssignedIdentity, Volume,
    VolumeMount,
};

/// Annotation: user-assigned managed identities (ARM ids, comma-separated).
pub const ANNOTATION_IDENTITY: &str = "aci.vk-rs.io/user-assigned-identity";
/// Annotation: `Spot` or `Regular` priority.
pub const ANNOTATION_PRIORITY: &str = "aci.vk-rs.io/priority";
/// Annotation: the group's SKU (`Standard`, `Dedicated`, `Confidential`).
pub const ANNOTATION_SKU: &str = "aci.vk-rs.io/sku";
/// Annotation: the base64 confidential compute enforcement policy.
pub const ANNOTATION_CCE_POLICY: &str = "aci.vk-rs.io/cce-policy";
/// Annotation: the GPU SKU for `nvidia.com/gpu` (`K80`, `P100`, `V100`).
pub const ANNOTATION_GPU_SKU: &str = "aci.vk-rs.io/gpu-sku";

/// Requests of a container that names none: upstream azure-aci's defaults.
const DEFAULT_CPU_CENTI: i128 = 100;
const DEFAULT_MEMORY_DECI_GB: i128 = 15;

/// Where the groups of this node go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// The node's name (a tag on every group).
    pub node: String,
    /// Azure region.
    pub region: String,
    /// Subnet ARM id of VNet injection.
    pub subnet_id: Option<String>,
}

/// Something of the pod ACI runs differently: the provider records it as a
/// Warning event on the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The event reason.
    pub reason: &'static str,
    /// The event message.
    pub message: String,
}

/// The group for a pod, its name and what the pod loses on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// The group's name (≤ 63 characters, unique per pod UID).
    pub name: String,
    /// The request body.
    pub group: ContainerGroup,
    /// What ACI cannot express.
    pub notes: Vec<Note>,
}

fn invalid(message: String) -> ProviderError {
    ProviderError::InvalidInput(message)
}

/// The group name of a pod (see `vk_core::toolkit::pod_identity`).
pub fn group_name(namespace: &str, name: &str, uid: &str) -> String {
    vk_core::toolkit::pod_identity::backend_name(
        namespace,
        name,
        uid,
        &NameRules::ACI_CONTAINER_GROUP,
    )
}

/// Translates a resolved pod (see the module doc).
pub fn container_group(pod: &ResolvedPod, settings: &GroupSettings) -> ProviderResult<Translation> {
    let key = pod
        .key()
        .ok_or_else(|| invalid("the pod has no namespace, name or UID".into()))?;
    let spec = pod
        .pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("the pod has no spec".into()))?;
    let annotations = pod.pod.metadata.annotations.clone().unwrap_or_default();
    let identity = PodIdentity::new(&settings.node, &key);
    let mut notes = Vec::new();

    let gpu_sku = annotations.get(ANNOTATION_GPU_SKU).cloned();
    let mut containers = spec
        .containers
        .iter()
        .map(|c| app_container(pod, c, gpu_sku.as_deref(), &mut notes))
        .collect::<ProviderResult<Vec<_>>>()?;
    fit_limits(&mut containers);
    let init_containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| init_container(pod, c))
        .collect::<ProviderResult<Vec<_>>>()?;
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| volume(pod, v))
        .collect::<ProviderResult<Vec<_>>>()?;

    let ports: Vec<Port> = containers
        .iter()
        .flat_map(|c| &c.properties.ports)
        .map(|p| Port {
            port: p.port,
            protocol: p.protocol.clone(),
        })
        .collect();
    let ip_address = match (&settings.subnet_id, ports.is_empty()) {
        (Some(_), _) => Some(IpAddress {
            ports,
            type_: "Private".into(),
            ip: None,
        }),
        (None, false) => Some(IpAddress {
            ports,
            type_: "Public".into(),
            ip: None,
        }),
        (None, true) => None,
    };

    let os_type = match spec
        .node_selector
        .as_ref()
        .and_then(|s| s.get("kubernetes.io/os"))
        .map(String::as_str)
    {
        Some("windows") => "Windows",
        _ => "Linux",
    };
    let dns_config = spec.dns_config.as_ref().and_then(|d| {
        let name_servers = d.nameservers.clone().unwrap_or_default();
        if name_servers.is_empty() {
            return None;
        }
        let searches = d.searches.clone().unwrap_or_default();
        let options: Vec<String> = d
            .options
            .iter()
            .flatten()
            .filter_map(|o| {
                let name = o.name.as_deref()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name.to_string(),
                })
            })
            .collect();
        Some(DnsConfiguration {
            name_servers,
            search_domains: (!searches.is_empty()).then(|| searches.join(" ")),
            options: (!options.is_empty()).then(|| options.join(" ")),
        })
    });

    let identity_ids: Vec<String> = annotations
        .get(ANNOTATION_IDENTITY)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for id in &identity_ids {
        if !id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.managedidentity/userassignedidentities/")
        {
            return Err(invalid(format!(
                "annotation {ANNOTATION_IDENTITY}: {id:?} is not the ARM id of a user-assigned managed identity"
            )));
        }
    }
    let group_identity = (!identity_ids.is_empty()).then(|| ContainerGroupIdentity {
        type_: Some("UserAssigned".into()),
        user_assigned_identities: identity_ids
            .into_iter()
            .map(|id| (id, UserAssignedIdentity::default()))
            .collect(),
        ..Default::default()
    });
    let priority = match annotations.get(ANNOTATION_PRIORITY).map(String::as_str) {
        None => None,
        Some(p @ ("Spot" | "Regular")) => Some(p.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_PRIORITY}: {other:?} is neither Spot nor Regular"
            )));
        }
    };
    let sku = match annotations.get(ANNOTATION_SKU).map(String::as_str) {
        None => None,
        Some(s @ ("Standard" | "Dedicated" | "Confidential")) => Some(s.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_SKU}: {other:?} is not Standard, Dedicated or Confidential"
            )));
        }
    };
    let confidential_compute_properties = match annotations.get(ANNOTATION_CCE_POLICY) {
        Some(_) if sku.as_deref() != Some("Confidential") => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_CCE_POLICY} needs {ANNOTATION_SKU}: Confidential"
            )));
        }
        policy => policy.map(|p| ConfidentialComputeProperties {
            cce_policy: Some(p.clone()),
        }),
    };

    let group = ContainerGroup {
        location: Some(settings.region.clone()),
        tags: identity.labels(),
        identity: group_identity,
        properties: ContainerGroupProperties {
            containers,
            init_containers,
            image_registry_credentials: registry_credentials(pod),
            restart_policy: Some(restart_policy(&pod.pod).to_string()),
            ip_address,
            os_type: Some(os_type.into()),
            volumes,
            subnet_ids: settings
                .subnet_id
                .iter()
                .map(|id| SubnetId {
                    id: id.clone(),
                    name: None,
                })
                .collect(),
            dns_config,
            sku,
            priority,
            confidential_compute_properties,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(Translation {
        name: identity.backend_name(&NameRules::ACI_CONTAINER_GROUP),
        group,
        notes,
    })
}

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

fn mounts(c: &KubeContainer) -> ProviderResult<Vec<VolumeMount>> {
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
            Ok(VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
        })
        .collect()
}

fn app_container(
    pod: &ResolvedPod,
    c: &KubeContainer,
    gpu_sku: Option<&str>,
    notes: &mut Vec<Note>,
) -> ProviderResult<Container> {
    let ports = c
        .ports
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
            Ok(ContainerPort {
                port: p.container_port,
                protocol: Some(protocol.into()),
            })
        })
        .collect::<ProviderResult<Vec<_>>>()?;
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
            ports,
            environment_variables: env(pod, c),
            resources: resources(c, gpu_sku)?,
            volume_mounts: mounts(c)?,
            liveness_probe: probe(c, "liveness", c.liveness_probe.as_ref(), notes)?,
            readiness_probe: probe(c, "readiness", c.readiness_probe.as_ref(), notes)?,
            instance_view: None,
        },
    })
}

fn image(c: &KubeContainer) -> ProviderResult<String> {
    c.image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid(format!("container {:?} has no image", c.name)))
}

fn init_container(pod: &ResolvedPod, c: &KubeContainer) -> ProviderResult<InitContainer> {
    if is_sidecar(c) {
        return Err(invalid(format!(
            "init container {:?} is a sidecar (restartPolicy: Always); ACI init containers must run to completion",
            c.name
        )));
    }
    Ok(InitContainer {
        name: c.name.clone(),
        properties: InitContainerProperties {
            image: Some(image(c)?),
            command: argv(c)?,
            environment_variables: env(pod, c),
            volume_mounts: mounts(c)?,
            instance_view: None,
        },
    })
}

/// A quantity in whole `step`s of nano-units, rounded up.
fn steps(
    c: &KubeContainer,
    list: &str,
    resource: &str,
    text: &str,
    step: i128,
) -> ProviderResult<i128> {
    let nanos = parse_nanos(text).map_err(|e| {
        invalid(format!(
            "container {:?} {list} {resource} {text:?}: {e}",
            c.name
        ))
    })?;
    Ok((nanos.max(0) + step - 1) / step)
}

/// CPU in hundredths of a core, memory in tenths of a GB.
const CENTI_CORE: i128 = 10_000_000;
const DECI_GB: i128 = 100_000_000 * 1_000_000_000;

fn resources(c: &KubeContainer, gpu_sku: Option<&str>) -> ProviderResult<ResourceRequirements> {
    let r = c.resources.as_ref();
    let get = |list: &str, resource: &str| -> ProviderResult<Option<i128>> {
        let map = match list {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        match map.and_then(|m| m.get(resource)) {
            None => Ok(None),
            Some(q) => {
                let step = if resource == "cpu" {
                    CENTI_CORE
                } else {
                    DECI_GB
                };
                steps(c, list, resource, &q.0, step).map(|s| Some(s.max(1)))
            }
        }
    };
    let cpu_limit = get("limits", "cpu")?;
    let memory_limit = get("limits", "memory")?;
    let cpu = get("requests", "cpu")?
        .or(cpu_limit)
        .unwrap_or(DEFAULT_CPU_CENTI.min(cpu_limit.unwrap_or(i128::MAX)));
    let memory = get("requests", "memory")?
        .or(memory_limit)
        .unwrap_or(DEFAULT_MEMORY_DECI_GB.min(memory_limit.unwrap_or(i128::MAX)));
    let gpu_of = |list: &str| -> ProviderResult<Option<GpuResource>> {
        let map = match list {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        let Some(q) = map.and_then(|m| m.get("nvidia.com/gpu")) else {
            return Ok(None);
        };
        let count = steps(c, list, "nvidia.com/gpu", &q.0, 1_000_000_000)?;
        let sku = gpu_sku.ok_or_else(|| {
            invalid(format!(
                "container {:?} asks for nvidia.com/gpu: set annotation {ANNOTATION_GPU_SKU} (K80, P100 or V100)",
                c.name
            ))
        })?;
        Ok(Some(GpuResource {
            count: i32::try_from(count).unwrap_or(i32::MAX),
            sku: sku.to_string(),
        }))
    };
    let gpu_limit = gpu_of("limits")?;
    let gpu = gpu_of("requests")?.or_else(|| gpu_limit.clone());
    let limits =
        (cpu_limit.is_some() || memory_limit.is_some() || gpu_limit.is_some()).then(|| {
            ResourceLimits {
                cpu: cpu_limit.map(|l| cores(l.max(cpu))),
                memory_in_gb: memory_limit.map(|l| gigabytes(l.max(memory))),
                gpu: gpu_limit,
            }
        });
    Ok(ResourceRequirements {
        requests: ResourceRequests {
            cpu: cores(cpu),
            memory_in_gb: gigabytes(memory),
            gpu,
        },
        limits,
    })
}

fn cores(centi: i128) -> f64 {
    centi as f64 / 100.0
}

fn gigabytes(deci: i128) -> f64 {
    deci as f64 / 10.0
}

fn centi(cores: f64) -> i128 {
    (cores * 100.0).round() as i128
}

fn deci(gb: f64) -> i128 {
    (gb * 10.0).round() as i128
}

/// Grows requests so the group (the sum of requests) holds every limit.
fn fit_limits(containers: &mut [Container]) {
    type Get = fn(&ResourceRequirements) -> (i128, Option<i128>);
    type Set = fn(&mut ResourceRequests, i128);
    let dims: [(Get, Set); 2] = [
        (
            |r| {
                (
                    centi(r.requests.cpu),
                    r.limits.as_ref().and_then(|l| l.cpu).map(centi),
                )
            },
            |r, v| r.cpu = cores(v),
        ),
        (
            |r| {
                (
                    deci(r.requests.memory_in_gb),
                    r.limits.as_ref().and_then(|l| l.memory_in_gb).map(deci),
                )
            },
            |r, v| r.memory_in_gb = gigabytes(v),
        ),
    ];
    for (get, set) in dims {
        let total: i128 = containers
            .iter()
            .map(|c| get(&c.properties.resources).0)
            .sum();
        let Some((index, limit)) = containers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, get(&c.properties.resources).1?)))
            .max_by_key(|(_, l)| *l)
        else {
            continue;
        };
        if limit > total
            && let Some(c) = containers.get_mut(index)
        {
            let own = get(&c.properties.resources).0;
            set(&mut c.properties.resources.requests, own + limit - total);
        }
    }
}

fn probe(
    c: &KubeContainer,
    kind: &str,
    p: Option<&Probe>,
    notes: &mut Vec<Note>,
) -> ProviderResult<Option<ContainerProbe>> {
    let Some(p) = p else { return Ok(None) };
    let mut out = ContainerProbe {
        initial_delay_seconds: p.initial_delay_seconds,
        period_seconds: p.period_seconds,
        failure_threshold: p.failure_threshold,
        success_threshold: p.success_threshold,
        timeout_seconds: p.timeout_seconds,
        ..Default::default()
    };
    if let Some(exec) = &p.exec {
        out.exec = Some(ContainerExec {
            command: exec.command.clone().unwrap_or_default(),
        });
    } else if let Some(h) = &p.http_get {
        let port = match &h.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    invalid(format!(
                        "container {:?} {kind} probe: no port named {name:?}",
                        c.name
                    ))
                })?,
        };
        out.http_get = Some(ContainerHttpGet {
            path: h.path.clone(),
            port,
            scheme: h.scheme.as_ref().map(|s| s.to_ascii_lowercase()),
            http_headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|h| HttpHeader {
                    name: Some(h.name.clone()),
                    value: Some(h.value.clone()),
                })
                .collect(),
        });
    } else {
        let what = if p.tcp_socket.is_some() {
            "tcpSocket"
        } else if p.grpc.is_some() {
            "grpc"
        } else {
            "handler-less"
        };
        notes.push(Note {
            reason: "ProbeNotSupported",
            message: format!(
                "container {:?}: ACI runs only exec and httpGet probes; the {what} {kind} probe is not run",
                c.name
            ),
        });
        return Ok(None);
    }
    Ok(Some(out))
}

fn volume(pod: &ResolvedPod, v: &KubeVolume) -> ProviderResult<Volume> {
    let mut out = Volume {
        name: v.name.clone(),
        ..Default::default()
    };
    if v.empty_dir.is_some() {
        out.empty_dir = Some(serde_json::json!({}));
    } else if v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
    {
        let files = pod.volumes.get(&v.name).map(|f| &f.files);
        let mut secret = BTreeMap::new();
        for (path, content) in files.into_iter().flatten() {
            if path.contains('/') {
                return Err(invalid(format!(
                    "volume {:?}: file {path:?} is in a subdirectory, which ACI secret volumes cannot hold",
                    v.name
                )));
            }
            secret.insert(
                path.clone(),
                base64::engine::general_purpose::STANDARD.encode(content),
            );
        }
        out.secret = Some(secret);
    } else {
        let kind = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object()?
                    .keys()
                    .find(|k| k.as_str() != "name")
                    .cloned()
            })
            .unwrap_or_else(|| "unknown".into());
        return Err(invalid(format!(
            "volume {:?} is a {kind} volume: ACI takes emptyDir, secret, configMap, downwardAPI and projected volumes",
            v.name
        )));
    }
    Ok(out)
}

/// Registry host of a credential's key: no scheme, no path.
fn registry_host(registry: &str) -> String {
    let rest = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn registry_credentials(pod: &ResolvedPod) -> Vec<ImageRegistryCredential> {
    let mut seen = std::collections::BTreeSet::new();
    pod.pull_credentials
        .iter()
        .filter_map(|c| {
            let server = registry_host(&c.registry);
            if server.is_empty() || !seen.insert(server.clone()) {
                return None;
            }
            let password = if c.password.is_empty() {
                c.identity_token.clone()
            } else {
                Some(c.password.clone())
            };
            Some(ImageRegistryCredential {
                server,
                username: Some(c.username.clone()),
                password,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
