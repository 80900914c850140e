//! Environment resolution: turns a container's `env` and `envFrom` into plain values,
//! the way the kubelet does, before a pod is handed to a provider.
//!
//! Pure: the objects a pod references are fetched by the caller into [`EnvSources`];
//! this module only computes. It owns the upstream event reasons for env problems.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret, Service};

pub use super::downward::{field_value, resource_value};

/// The objects a pod's env may reference, as fetched from the API.
/// A `None` value means the object does not exist.
#[derive(Default, Debug, Clone)]
pub struct EnvSources {
    /// ConfigMaps of the pod's namespace by name.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets of the pod's namespace by name.
    pub secrets: HashMap<String, Option<Secret>>,
    /// Services whose link variables are injected (the namespace's, when
    /// `enableServiceLinks`, plus `default/kubernetes`).
    pub services: Vec<Service>,
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The pod's IP (`status.podIP`), when the backend knows it before the start.
    pub pod_ip: Option<String>,
    /// Node allocatable, used for `resourceFieldRef` limits that the container leaves unset.
    pub node_allocatable: BTreeMap<String, String>,
}

/// An event to record on the pod while resolving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEvent {
    /// `true` for a Warning event.
    pub warning: bool,
    /// Upstream reason string.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// A mandatory reference could not be resolved: the pod must not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct EnvError {
    /// Upstream reason string, e.g. `MandatoryConfigMapNotFound`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The names of ConfigMaps and Secrets a pod's env refers to (containers and init containers).
pub fn referenced_objects(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let ephemeral = ephemeral_containers(pod);
    for c in all_containers(pod).chain(ephemeral.iter()) {
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.push(r.name.clone());
            }
        }
        for var in c.env.iter().flatten() {
            if let Some(src) = &var.value_from {
                if let Some(r) = &src.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &src.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Does any container read `status.podIP`/`status.podIPs`?
pub fn needs_pod_ip(pod: &Pod) -> bool {
    let ephemeral = ephemeral_containers(pod);
    all_containers(pod).chain(ephemeral.iter()).any(|c| {
        c.env.iter().flatten().any(|v| {
            v.value_from
                .as_ref()
                .and_then(|s| s.field_ref.as_ref())
                .is_some_and(|f| f.field_path.starts_with("status.podIP"))
        })
    })
}

/// The pod's ephemeral containers (`kubectl debug`), as regular containers.
fn ephemeral_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .map(crate::toolkit::ephemeral::as_container)
        .collect()
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// What [`resolve_pod_env`] found besides the values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvResolution {
    /// Events to record on the pod.
    pub events: Vec<EnvEvent>,
    /// Per container, the env names whose value came from a Secret
    /// (`secretKeyRef`, `envFrom` of a Secret, or a `$(VAR)` expansion that
    /// took in one of those).
    pub secret_env: BTreeMap<String, BTreeSet<String>>,
}

/// Resolves every container's env in place. Returns the events to record and
/// which values are secret, or the first mandatory reference that is missing.
pub fn resolve_pod_env(pod: &mut Pod, sources: &EnvSources) -> Result<EnvResolution, EnvError> {
    let mut events = Vec::new();
    let mut secret_env = BTreeMap::new();
    let service_env = service_link_env(sources);
    let snapshot = pod.clone();
    let Some(spec) = pod.spec.as_mut() else {
        return Ok(EnvResolution::default());
    };
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        let (env, secret) = resolve_container(&snapshot, c, sources, &service_env, &mut events)?;
        expand_command_and_args(&mut c.command, &mut c.args, &env);
        c.env = Some(env);
        c.env_from = None;
        if !secret.is_empty() {
            secret_env.insert(c.name.clone(), secret);
        }
    }
    for ec in spec.ephemeral_containers.iter_mut().flatten() {
        let c = crate::toolkit::ephemeral::as_container(ec);
        let (env, secret) = resolve_container(&snapshot, &c, sources, &service_env, &mut events)?;
        expand_command_and_args(&mut ec.command, &mut ec.args, &env);
        ec.env = Some(env);
        ec.env_from = None;
        if !secret.is_empty() {
            secret_env.insert(ec.name.clone(), secret);
        }
    }
    Ok(EnvResolution { events, secret_env })
}

/// Expands `$(VAR)` in a container's command and args with its resolved
/// env, as the kubelet does before it starts the container (unknown
/// references stay verbatim, `$$` is a `$`).
fn expand_command_and_args(
    command: &mut Option<Vec<String>>,
    args: &mut Option<Vec<String>>,
    env: &[EnvVar],
) {
    let lookup = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .map(|e| e.value.clone().unwrap_or_default())
    };
    for list in [command, args].into_iter().flatten() {
        for item in list.iter_mut() {
            if item.contains('$') {
                *item = expand(item, lookup);
            }
        }
    }
}

/// Resolves one container into an ordered list of literal env vars, and the
/// names among them whose value is secret.
fn resolve_container(
    pod: &Pod,
    c: &Container,
    src: &EnvSources,
    service_env: &[(String, String)],
    events: &mut Vec<EnvEvent>,
) -> Result<(Vec<EnvVar>, BTreeSet<String>), EnvError> {
    // Ordered map: envFrom first, then env (later entries win), service links last
    // where not already defined, exactly the kubelet's precedence.
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    };
    // The names whose current value in `out` came from a Secret.
    let mut secret: BTreeSet<String> = BTreeSet::new();
    let pod_ns = pod.metadata.namespace.clone().unwrap_or_default();

    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let mut invalid = Vec::new();
        if let Some(r) = &from.config_map_ref {
            match src.config_maps.get(&r.name).cloned().flatten() {
                Some(cm) => {
                    let mut data: Vec<(String, String)> =
                        cm.data.unwrap_or_default().into_iter().collect();
                    for (k, v) in cm.binary_data.unwrap_or_default() {
                        data.push((k, String::from_utf8_lossy(&v.0).into_owned()));
                    }
                    for (k, v) in data {
                        let name = format!("{prefix}{k}");
                        if is_env_var_name(&name) {
                            secret.remove(&name);
                            set(&mut out, name, v);
                        } else {
                            invalid.push(name);
                        }
                    }
                }
                None if r.optional == Some(true) => events.push(EnvEvent {
                    warning: true,
                    reason: "OptionalConfigMapNotFound",
                    message: format!(
                        "configmap {pod_ns}/{} not found; continuing without it",
                        r.name
                    ),
                }),
                None => {
                    return Err(EnvError {
                        reason: "MandatoryConfigMapNotFound",
                        message: format!("configmap {pod_ns}/{} not found", r.name),
                    });
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match src.secrets.get(&r.name).cloned().flatten() {
                Some(obj) => {
                    let mut data: Vec<(String, String)> = obj
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    data.extend(obj.string_data.unwrap_or_default());
                    for (k, v) in data {
                        let name = format!("{prefix}{k}");
                        if is_env_var_name(&name) {
                            secret.insert(name.clone());
                            set(&mut out, name, v);
                        } else {
                            invalid.push(name);
                        }
                    }
                }
                None if r.optional == Some(true) => events.push(EnvEvent {
                    warning: true,
                    reason: "OptionalSecretNotFound",
                    message: format!(
                        "secret {pod_ns}/{} not found; continuing without it",
                        r.name
                    ),
                }),
                None => {
                    return Err(EnvError {
                        reason: "MandatorySecretNotFound",
                        message: format!("secret {pod_ns}/{} not found", r.name),
                    });
                }
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            events.push(EnvEvent {
                warning: true,
                reason: "InvalidEnvironmentVariableNames",
                message: format!(
                    "keys [{}] are not valid environment variable names and were skipped in container {}",
                    invalid.join(", "),
                    c.name
                ),
            });
        }
    }

    for var in c.env.iter().flatten() {
        let from_secret = Cell::new(false);
        let value = if let Some(from) = &var.value_from {
            let resolved = if let Some(f) = &from.field_ref {
                Some(
                    field_value(pod, &f.field_path, src).map_err(|message| EnvError {
                        reason: "InvalidFieldPath",
                        message,
                    })?,
                )
            } else if let Some(r) = &from.resource_field_ref {
                let container = r.container_name.as_deref().filter(|n| !n.is_empty());
                let target = match container {
                    Some(name) => find_container(pod, name).ok_or_else(|| EnvError {
                        reason: "InvalidResourceFieldRef",
                        message: format!("container {name} named by env {} not found", var.name),
                    })?,
                    None => c,
                };
                Some(
                    resource_value(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        src,
                    )
                    .map_err(|message| EnvError {
                        reason: "InvalidResourceFieldRef",
                        message,
                    })?,
                )
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match src.config_maps.get(&r.name).cloned().flatten() {
                    None if optional => {
                        events.push(EnvEvent {
                            warning: true,
                            reason: "OptionalConfigMapNotFound",
                            message: format!(
                                "configmap {pod_ns}/{} not found; env {} skipped",
                                r.name, var.name
                            ),
                        });
                        None
                    }
                    None => {
                        return Err(EnvError {
                            reason: "MandatoryConfigMapNotFound",
                            message: format!(
                                "configmap {pod_ns}/{} not found (env {})",
                                r.name, var.name
                            ),
                        });
                    }
                    Some(cm) => {
                        let v = cm
                            .data
                            .as_ref()
                            .and_then(|d| d.get(&r.key))
                            .cloned()
                            .or_else(|| {
                                cm.binary_data
                                    .as_ref()
                                    .and_then(|d| d.get(&r.key))
                                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                            });
                        match v {
                            Some(v) => Some(v),
                            None if optional => {
                                events.push(EnvEvent {
                                    warning: true,
                                    reason: "OptionalConfigMapKeyNotFound",
                                    message: format!(
                                        "key {} not in configmap {pod_ns}/{}; env {} skipped",
                                        r.key, r.name, var.name
                                    ),
                                });
                                None
                            }
                            None => {
                                return Err(EnvError {
                                    reason: "MandatoryConfigMapKeyNotFound",
                                    message: format!(
                                        "key {} not in configmap {pod_ns}/{} (env {})",
                                        r.key, r.name, var.name
                                    ),
                                });
                            }
                        }
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match src.secrets.get(&r.name).cloned().flatten() {
                    None if optional => {
                        events.push(EnvEvent {
                            warning: true,
                            reason: "OptionalSecretNotFound",
                            message: format!(
                                "secret {pod_ns}/{} not found; env {} skipped",
                                r.name, var.name
                            ),
                        });
                        None
                    }
                    None => {
                        return Err(EnvError {
                            reason: "MandatorySecretNotFound",
                            message: format!(
                                "secret {pod_ns}/{} not found (env {})",
                                r.name, var.name
                            ),
                        });
                    }
                    Some(obj) => {
                        from_secret.set(true);
                        let v = obj
                            .data
                            .as_ref()
                            .and_then(|d| d.get(&r.key))
                            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                            .or_else(|| {
                                obj.string_data
                                    .as_ref()
                                    .and_then(|d| d.get(&r.key))
                                    .cloned()
                            });
                        match v {
                            Some(v) => Some(v),
                            None if optional => {
                                events.push(EnvEvent {
                                    warning: true,
                                    reason: "OptionalSecretKeyNotFound",
                                    message: format!(
                                        "key {} not in secret {pod_ns}/{}; env {} skipped",
                                        r.key, r.name, var.name
                                    ),
                                });
                                None
                            }
                            None => {
                                return Err(EnvError {
                                    reason: "MandatorySecretKeyNotFound",
                                    message: format!(
                                        "key {} not in secret {pod_ns}/{} (env {})",
                                        r.key, r.name, var.name
                                    ),
                                });
                            }
                        }
                    }
                }
            } else {
                None
            };
            match resolved {
                Some(v) => v,
                None => continue,
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            expand(&raw, |name| {
                out.iter()
                    .find(|(n, _)| n == name)
                    .map(|(n, v)| {
                        if secret.contains(n) {
                            from_secret.set(true);
                        }
                        v.clone()
                    })
                    .or_else(|| {
                        service_env
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                    })
            })
        };
        if from_secret.get() {
            secret.insert(var.name.clone());
        } else {
            secret.remove(&var.name);
        }
        set(&mut out, var.name.clone(), value);
    }

    for (k, v) in service_env {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    let env = out
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();
    Ok((env, secret))
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    all_containers(pod).find(|c| c.name == name)
}

/// Expands `$(VAR)` references like the kubelet: `$$` escapes a `$`, unknown
/// references stay verbatim.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push_str(&input[last..i]);
                    out.push('$');
                    i += 2;
                    last = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        out.push_str(&input[last..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        last = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[last..]);
    out
}

/// Whether `name` is a valid environment variable name: the relaxed rule of
/// Kubernetes 1.34+ (printable ASCII without `=`), as the kubelet applies to `envFrom` keys.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// Docker-links style service variables (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`...).
pub fn service_link_env(src: &EnvSources) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in &src.services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pname.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), pr.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
