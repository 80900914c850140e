//! Liveness and readiness probes → ACI probes. ACI runs exec and httpGet
//! probes; a tcpSocket or grpc probe becomes a [`Note`].

use k8s_openapi::api::core::v1::{Container as KubeContainer, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use vk_core::ProviderResult;

use super::{Note, invalid};
use crate::models::{ContainerExec, ContainerHttpGet, ContainerProbe, HttpHeader};

pub(super) fn probe(
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
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => c
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
