//! The pod controller's API writes whose answer it does not read: the status
//! patch, the final delete and the success events.
//!
//! `Api::patch_status` and `Api::delete` parse the answer into a `Pod`, with
//! its `managedFields` and everything else, for every pod at every step; the
//! controller only needs to know whether the write was accepted. Here the
//! answer is skipped by the parser instead of built: less CPU and far fewer
//! allocations per pod lifecycle. Errors are the same as with `Api`
//! (`kube::Error::Api` for a refusal, with its code).

use k8s_openapi::api::core::v1::{HostIP, PodIP, PodStatus};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use serde::{Deserialize, Serialize};

/// Any JSON object, skipped while parsing.
#[derive(Deserialize)]
struct Ignored {}

async fn send(
    client: &Client,
    req: Result<hyper::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), kube::Error> {
    let req = req.map_err(kube::Error::BuildRequest)?;
    client.request::<Ignored>(req).await.map(|_| ())
}

fn pods(namespace: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
}

/// The body of a status write: the pod's UID, a precondition (a recreated
/// pod of the same name is never written to), and the status. Serialised
/// straight from the status, with no `serde_json::Value` tree in between.
#[derive(Serialize, Debug)]
struct StatusPatch<'a> {
    metadata: UidPrecondition<'a>,
    status: StatusBody<'a>,
}

/// The status with its IP lists replaced rather than merged. `podIPs` and
/// `hostIPs` merge by `ip` in a strategic merge patch: a pod whose IP changed
/// (a cloud backend that replaced a stopped task) would get both IPs, which
/// the apiserver refuses ("no more than one IP for each IP family"), and
/// the status could never be written again.
#[derive(Serialize, Debug)]
struct StatusBody<'a> {
    /// Everything else; its `podIPs` and `hostIPs` were taken out.
    #[serde(flatten)]
    rest: &'a PodStatus,
    #[serde(rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pod_ips: Option<Replace<'a, PodIP>>,
    #[serde(rename = "hostIPs", skip_serializing_if = "Option::is_none")]
    host_ips: Option<Replace<'a, HostIP>>,
}

/// A list sent with the strategic merge patch directive `{"$patch": "replace"}`.
#[derive(Debug)]
struct Replace<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Replace<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len() + 1))?;
        seq.serialize_element(&ReplaceDirective { patch: "replace" })?;
        for item in self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

#[derive(Serialize, Debug)]
struct ReplaceDirective {
    #[serde(rename = "$patch")]
    patch: &'static str,
}

impl<'a> StatusPatch<'a> {
    /// The patch of `rest` (a status whose IP lists were taken out) with
    /// those lists, for the pod of `uid`.
    fn new(
        uid: &'a str,
        rest: &'a PodStatus,
        pod_ips: Option<&'a [PodIP]>,
        host_ips: Option<&'a [HostIP]>,
    ) -> StatusPatch<'a> {
        StatusPatch {
            metadata: UidPrecondition { uid },
            status: StatusBody {
                rest,
                pod_ips: pod_ips.map(Replace),
                host_ips: host_ips.map(Replace),
            },
        }
    }
}

#[derive(Serialize, Debug)]
struct UidPrecondition<'a> {
    uid: &'a str,
}

/// `PATCH pods/<name>/status` (as `Api::<Pod>::patch_status`) with a
/// strategic merge patch of `status`, preconditioned on `uid`. `status` is
/// as it was afterwards: its IP lists are only lent to the body.
pub async fn patch_pod_status(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    status: &mut PodStatus,
) -> Result<(), kube::Error> {
    let pod_ips = status.pod_ips.take();
    let host_ips = status.host_ips.take();
    // The body is serialised here, before anything is sent.
    let req = pods(namespace).patch_subresource(
        "status",
        name,
        &PatchParams::default(),
        &Patch::Strategic(StatusPatch::new(
            uid,
            status,
            pod_ips.as_deref(),
            host_ips.as_deref(),
        )),
    );
    status.pod_ips = pod_ips;
    status.host_ips = host_ips;
    send(client, req).await
}

/// The body of the fallback status write: the status as it is, lists
/// included, for a JSON merge patch (which replaces every list it names).
#[derive(Serialize, Debug)]
struct MergeStatusPatch<'a> {
    metadata: UidPrecondition<'a>,
    status: &'a PodStatus,
}

/// `PATCH pods/<name>/status` with a JSON merge patch of `status`,
/// preconditioned on `uid`: every list it carries (`podIPs`, conditions,
/// container statuses) replaces the API's, so nothing the strategic merge
/// would combine with what the API holds can make it invalid. The fallback
/// when a strategic patch was refused as invalid.
pub async fn merge_pod_status(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    status: &PodStatus,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(MergeStatusPatch {
        metadata: UidPrecondition { uid },
        status,
    });
    send(
        client,
        pods(namespace).patch_subresource("status", name, &PatchParams::default(), &patch),
    )
    .await
}

/// `DELETE pods/<name>` (as `Api::<Pod>::delete`).
pub async fn delete_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    dp: &DeleteParams,
) -> Result<(), kube::Error> {
    send(client, pods(namespace).delete(name, dp)).await
}

/// `POST events.k8s.io/v1 events` in the event's namespace.
pub async fn create_event(client: &Client, event: &Event) -> Result<(), kube::Error> {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let body = serde_json::to_vec(event).map_err(kube::Error::SerdeError)?;
    let req = Request::new(format!(
        "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    ))
    .create(&PostParams::default(), body);
    send(client, req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_status_patch_replaces_the_ip_lists_and_keeps_the_rest() {
        let mut status = PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.9".into()),
            pod_ips: Some(vec![PodIP {
                ip: "10.0.0.9".into(),
            }]),
            host_ips: Some(vec![HostIP {
                ip: "192.0.2.1".into(),
            }]),
            ..Default::default()
        };
        let pod_ips = status.pod_ips.take();
        let host_ips = status.host_ips.take();
        let patch = StatusPatch::new("u1", &status, pod_ips.as_deref(), host_ips.as_deref());
        let body = serde_json::to_value(patch).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "metadata": { "uid": "u1" },
                "status": {
                    "phase": "Running",
                    "podIP": "10.0.0.9",
                    "podIPs": [{ "$patch": "replace" }, { "ip": "10.0.0.9" }],
                    "hostIPs": [{ "$patch": "replace" }, { "ip": "192.0.2.1" }],
                }
            })
        );
        let bare = PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        };
        let body = serde_json::to_value(StatusPatch::new("u1", &bare, None, None)).unwrap();
        assert_eq!(body["status"], serde_json::json!({ "phase": "Pending" }));
    }
}
