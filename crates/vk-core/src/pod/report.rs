//! What the pod controller writes back to the API about its pods: the merged
//! status (`pods/status`), the final delete of a pod object, and events.
//!
//! The writes go through [`PodWriter`]: [`ApiWriter`] in production (the
//! node's client, rate limiter and metrics), a recording fake in the
//! controller's unit tests. [`Reporter`] remembers its own writes until the
//! watch brings them back, so that no write is sent twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ObjectReference, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::backend::ObjectKey;
use super::status::{merge_status, status_changed, status_fingerprint};
use super::writes;
use crate::context::NodeContext;

/// A write the API refused for good, or could not take now.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The object is gone or is another incarnation (404, 409): nothing to retry.
    #[error("the pod is gone or was replaced")]
    Gone,
    /// The API found the write invalid (422): the same write would be
    /// refused again, so it is not retried (see [`Reporter::write_status`]).
    #[error("refused as invalid: {0}")]
    Invalid(String),
    /// Anything else: retried.
    #[error("{0}")]
    Failed(String),
}

/// The API writes of the pod controller.
#[async_trait]
pub trait PodWriter: Send + Sync {
    /// A strategic-merge patch of `pods/status`, preconditioned on `uid`.
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        status: PodStatus,
    ) -> Result<(), WriteError>;
    /// `DELETE` with grace 0 and a UID precondition.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), WriteError>;
    /// Records an event (failures are logged, never returned).
    async fn event(&self, pod: &ObjectReference, warning: bool, reason: &str, note: String);
    /// Records a Normal success event in the background (`Provider*Success`).
    fn success_event(&self, pod: ObjectReference, reason: &'static str, note: String);
}

/// [`PodWriter`] over the node's API client, rate limiter and metrics.
pub struct ApiWriter {
    ctx: Arc<NodeContext>,
}

impl ApiWriter {
    /// Writes for the node of `ctx`.
    pub fn new(ctx: Arc<NodeContext>) -> ApiWriter {
        ApiWriter { ctx }
    }
}

fn write_error(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.code == 404 || s.code == 409 => WriteError::Gone,
        kube::Error::Api(s) if s.code == 422 => WriteError::Invalid(s.message),
        other => WriteError::Failed(other.to_string()),
    }
}

#[async_trait]
impl PodWriter for ApiWriter {
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        mut status: PodStatus,
    ) -> Result<(), WriteError> {
        self.ctx.limiter.acquire().await;
        self.ctx
            .config
            .fence
            .check("patch_status", format_args!("{namespace}/{name}"))
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        let res =
            writes::patch_pod_status(&self.ctx.client, namespace, name, uid, &mut status).await;
        self.ctx.metrics.api("patch", "pods/status", res.is_ok());
        match res.map_err(write_error) {
            Err(WriteError::Invalid(message)) => {
                // A strategic merge combines lists with what the API holds;
                // a merge patch replaces them. Tried once.
                warn!(
                    pod = %format!("{namespace}/{name}"),
                    error = %message,
                    "the API refused the pod's status patch as invalid; sending it as a merge patch"
                );
                self.ctx.limiter.acquire().await;
                let res =
                    writes::merge_pod_status(&self.ctx.client, namespace, name, uid, &status).await;
                self.ctx.metrics.api("patch", "pods/status", res.is_ok());
                res.map_err(write_error)
            }
            other => other,
        }
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), WriteError> {
        // Grace 0 with a UID precondition: a newer pod with the same name is never touched.
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.ctx.limiter.acquire().await;
        self.ctx
            .config
            .fence
            .check("delete_pod", format_args!("{namespace}/{name}"))
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        let res = writes::delete_pod(&self.ctx.client, namespace, name, &dp).await;
        self.ctx.metrics.api("delete", "pods", res.is_ok());
        res.map_err(write_error)
    }

    async fn event(&self, pod: &ObjectReference, warning: bool, reason: &str, note: String) {
        self.ctx.event(pod, warning, reason, note).await;
    }

    fn success_event(&self, pod: ObjectReference, reason: &'static str, note: String) {
        self.ctx.success_event(pod, reason, note);
    }
}

/// What a status write or a delete came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Sent (or nothing to send because the pod is gone).
    Done,
    /// Nothing to send: the API already shows this status.
    Unchanged,
    /// Failed; retry.
    Failed,
}

/// The last status write per pod: UID, the resourceVersion it was based on,
/// and a fingerprint of the backend status it carried. Until the watch
/// brings that write back, the store still shows the older object; a sync in
/// that window (another event, a resync) would write the same status again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatusWrite {
    uid: String,
    based_on: String,
    backend: u64,
}

/// The status and delete writes of one node's pods.
pub struct Reporter {
    api: Arc<dyn PodWriter>,
    node_ip: String,
    written: Mutex<HashMap<ObjectKey, StatusWrite>>,
    /// Pods whose API object this controller has deleted (key → UID), until
    /// the watch shows them gone: the watch reports the delete in two events
    /// (grace period set to 0, then gone), and the first must not cause a
    /// second DELETE.
    deleted: Mutex<HashMap<ObjectKey, String>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter {
    /// A reporter writing through `api` for the node at `node_ip`.
    pub fn new(api: Arc<dyn PodWriter>, node_ip: String) -> Reporter {
        Reporter {
            api,
            node_ip,
            written: Mutex::default(),
            deleted: Mutex::default(),
        }
    }

    /// The writer, for events.
    pub fn api(&self) -> &Arc<dyn PodWriter> {
        &self.api
    }

    /// Records an event on `pod`.
    pub async fn event(&self, pod: &Pod, warning: bool, reason: &str, note: String) {
        self.api
            .event(&pod.object_ref(&()), warning, reason, note)
            .await;
    }

    /// Forgets what was written for a pod that is gone from the API.
    pub fn forget(&self, key: &ObjectKey) {
        locked(&self.written).remove(key);
        locked(&self.deleted).remove(key);
    }

    /// Writes the merged status when it differs from the API's, with a UID precondition.
    pub async fn write_status(&self, pod: &Pod, backend_status: &PodStatus) -> Written {
        let now = Time(Timestamp::now());
        let new = merge_status(pod.status.as_ref(), backend_status, &self.node_ip, &now);
        if !status_changed(pod.status.as_ref(), &new) {
            return Written::Unchanged;
        }
        let (Some(ns), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.uid.as_deref(),
        ) else {
            return Written::Done;
        };
        let name = pod.name_any();
        let key = (ns.to_string(), name.clone());
        let this_write = StatusWrite {
            uid: uid.to_string(),
            based_on: pod.metadata.resource_version.clone().unwrap_or_default(),
            backend: status_fingerprint(backend_status),
        };
        if locked(&self.written).get(&key) == Some(&this_write) {
            // Our own write of this very status has not come back on the watch
            // yet; when it does, the pod is synced again against it.
            return Written::Done;
        }
        match self.api.patch_status(ns, &name, uid, new).await {
            Ok(()) => {
                locked(&self.written).insert(key, this_write);
                Written::Done
            }
            Err(WriteError::Gone) => Written::Done,
            Err(WriteError::Invalid(message)) => {
                // Logged once per pod and backend status: the same write is
                // not sent again. The next change of the backend status or of
                // the pod writes afresh; a retry loop would only repeat it.
                warn!(
                    pod = %format!("{ns}/{name}"),
                    error = %message,
                    "the API refused the pod's status as invalid; not retried until the status changes"
                );
                locked(&self.written).insert(key, this_write);
                Written::Done
            }
            Err(e) => {
                warn!(error = %e, "writing pod status failed");
                Written::Failed
            }
        }
    }

    /// Fails a pod whose workload vanished from the backend (upstream reason `NotFound`).
    pub async fn write_vanished(&self, pod: &Pod) -> Written {
        let mut status = pod.status.clone().unwrap_or_default();
        status.phase = Some("Failed".into());
        status.reason = Some("NotFound".into());
        status.message =
            Some("The pod status was not found and may have been deleted from the provider".into());
        for cs in status.container_statuses.iter_mut().flatten() {
            cs.ready = false;
        }
        self.write_status(pod, &status).await
    }

    /// Fails a pod whose `activeDeadlineSeconds` ran out, with the kubelet's
    /// reason and message; its containers are shown stopped.
    pub async fn write_deadline_exceeded(&self, pod: &Pod) -> Written {
        let mut status = pod.status.clone().unwrap_or_default();
        status.phase = Some("Failed".into());
        status.reason = Some("DeadlineExceeded".into());
        status.message =
            Some("Pod was active on the node longer than the specified deadline".into());
        let now = Time(Timestamp::now());
        for cs in status.container_statuses.iter_mut().flatten() {
            cs.ready = false;
            cs.started = Some(false);
            let started_at = cs
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone());
            if cs.state.as_ref().is_none_or(|s| s.terminated.is_none()) {
                cs.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("Error".into()),
                        started_at,
                        finished_at: Some(now.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        self.write_status(pod, &status).await
    }

    /// Fails a pod that admission refused, as the kubelet does: phase
    /// Failed, the refusal's reason, "Pod was rejected: " and its message.
    pub async fn write_rejected(&self, pod: &Pod, reason: &str, message: &str) -> Written {
        let failed = PodStatus {
            phase: Some("Failed".into()),
            reason: Some(reason.to_string()),
            message: Some(format!("Pod was rejected: {message}")),
            ..Default::default()
        };
        self.write_status(pod, &failed).await
    }

    /// Fails a pod the backend refused for good (reason `ProviderFailed`).
    pub async fn write_refused(&self, pod: &Pod, message: String) -> Written {
        let failed = PodStatus {
            phase: Some("Failed".into()),
            reason: Some("ProviderFailed".into()),
            message: Some(message),
            ..Default::default()
        };
        self.write_status(pod, &failed).await
    }

    /// Deletes the pod object of `uid` (once: see [`Reporter::deleted`]).
    pub async fn delete_object(&self, key: &ObjectKey, uid: &str) -> Written {
        if locked(&self.deleted).get(key).map(String::as_str) == Some(uid) {
            return Written::Done;
        }
        match self.api.delete_pod(&key.0, &key.1, uid).await {
            Ok(()) => {
                locked(&self.deleted).insert(key.clone(), uid.to_string());
                Written::Done
            }
            Err(WriteError::Gone) => Written::Done,
            Err(e) => {
                warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "deleting the pod object failed");
                Written::Failed
            }
        }
    }
}
