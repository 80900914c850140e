//! The downward API's values: `fieldRef` (metadata, labels, annotations,
//! node, service account, pod and host IPs) and `resourceFieldRef` (requests
//! and limits with a divisor), as env values and downwardAPI volume files
//! both read them. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::EnvSources;
use crate::quantity;

/// The value of a downward-API `fieldRef`.
pub fn field_value(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => src.host_ip.clone(),
        "status.podIP" | "status.podIPs" => src.pod_ip.clone().unwrap_or_default(),
        _ => {
            if let Some(k) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef path {path:?}"));
            }
        }
    };
    Ok(value)
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...), divided
/// by the divisor and rounded up. Unset limits fall back to node allocatable.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    src: &EnvSources,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !name.starts_with("hugepages-") {
        return Err(format!("unsupported resource {resource:?}"));
    }
    let res = c.resources.as_ref();
    let declared = match kind {
        "limits" => res
            .and_then(|r| r.limits.as_ref())
            .and_then(|m| m.get(name)),
        "requests" => res
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(name)),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let value = match (declared, kind) {
        (Some(q), _) => quantity::quantity_nanos(q).map_err(|e| e.to_string())?,
        // The kubelet uses node allocatable for unset limits, and zero for unset requests
        // (cpu requests default to the limit; we keep it simple and use 0 there).
        (None, "limits") => match src.node_allocatable.get(name) {
            Some(q) => quantity::parse_nanos(q).map_err(|e| e.to_string())?,
            None => 0,
        },
        (None, _) => 0,
    };
    // The apiserver defaults an unset divisor to "0"; like the kubelet, zero means 1.
    let divisor = match divisor {
        Some(d) if !d.is_empty() => quantity::parse_nanos(d).map_err(|e| e.to_string())?,
        _ => 0,
    };
    let divisor = if divisor == 0 { 1_000_000_000 } else { divisor };
    quantity::divide_ceil(value, divisor)
        .map(|v| v.to_string())
        .ok_or_else(|| format!("divisor of {resource} must be positive"))
}
