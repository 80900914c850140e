//! Pods as a test sees them through the API: creating one from JSON,
//! waiting for one or a set of them to reach a state, reading their phase and
//! readiness, and the events of a namespace.
//!
//! These helpers are for test bodies and fail like assertions: they panic
//! with what was expected and what was last seen.

use std::time::Duration;

use anyhow::anyhow;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use crate::wait::wait_for;

/// Creates a pod in `ns` from its JSON manifest and returns it as created.
///
/// # Panics
///
/// When the JSON is not a pod or the API server refuses it.
pub async fn create_pod(client: &Client, ns: &str, pod: serde_json::Value) -> Pod {
    let pod: Pod =
        serde_json::from_value(pod).unwrap_or_else(|e| panic!("not a pod manifest: {e}"));
    let name = pod.metadata.name.clone().unwrap_or_default();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"))
}

/// Waits until pod `ns/name` satisfies `pred` and returns it.
///
/// # Panics
///
/// After `timeout`, naming `what` and the pod's last status.
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let waited = wait_for(&format!("pod {ns}/{name}: {what}"), timeout, || async {
        match api.get_opt(name).await? {
            Some(pod) if pred(&pod) => Ok(Some(pod)),
            // Not yet: the error carries the state for the timeout message.
            Some(pod) => Err(anyhow!("last status: {:#?}", pod.status)),
            None => Err(anyhow!("the pod does not exist")),
        }
    })
    .await;
    waited.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Waits until pod `ns/name` is Running and returns it.
///
/// # Panics
///
/// When it is not Running within `timeout`.
pub async fn wait_running(client: &Client, ns: &str, name: &str, timeout: Duration) -> Pod {
    wait_pod(client, ns, name, timeout, "Running", |p| {
        phase(p) == "Running"
    })
    .await
}

/// Waits until the pods of `ns` that `params` selects satisfy `pred` as a
/// whole (a count, all Running, none left) and returns them.
///
/// # Panics
///
/// After `timeout`, naming `what` and the pods' last phases.
pub async fn wait_pods(
    client: &Client,
    ns: &str,
    params: &ListParams,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let waited = wait_for(&format!("pods in {ns}: {what}"), timeout, || async {
        let pods = api.list(params).await?.items;
        if pred(&pods) {
            return Ok(Some(pods));
        }
        let phases: Vec<String> = pods
            .iter()
            .map(|p| {
                let name = p.metadata.name.as_deref().unwrap_or("");
                format!("{name}: {}", phase(p))
            })
            .collect();
        Err(anyhow!("last seen {} pods {phases:?}", pods.len()))
    })
    .await;
    waited.unwrap_or_else(|e| panic!("{e:#}"))
}

/// The phase of a pod (empty before it has a status).
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The events of a namespace as (reason, name of the object they regard);
/// empty when they cannot be listed.
pub async fn events(client: &Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
            )
        })
        .collect()
}
