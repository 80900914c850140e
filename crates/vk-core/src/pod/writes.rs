//! The pod controller's API writes whose answer it does not read: the status
//! patch, the final delete and the success events.
//!
//! `Api::patch_status` and `Api::delete` parse the answer into a `Pod`, with
//! its `managedFields` and everything else, for every pod at every step; the
//! controller only needs to know whether the write was accepted. Here the
//! answer is skipped by the parser instead of built: less CPU and far fewer
//! allocations per pod lifecycle. Errors are the same as with `Api`
//! (`kube::Error::Api` for a refusal, with its code).

use k8s_openapi::api::core::v1::PodStatus;
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
    status: &'a PodStatus,
}

#[derive(Serialize, Debug)]
struct UidPrecondition<'a> {
    uid: &'a str,
}

/// `PATCH pods/<name>/status` (as `Api::<Pod>::patch_status`) with a
/// strategic merge patch of `status`, preconditioned on `uid`.
pub async fn patch_pod_status(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    status: &PodStatus,
) -> Result<(), kube::Error> {
    let patch = Patch::Strategic(StatusPatch {
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
