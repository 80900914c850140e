//! The sync of one pod key: carries out the [`Plan`] that [`decide`] makes,
//! and nothing else. Stale workloads first (another UID under the same name),
//! then the plan (delete, create, push a spec or files), then the status.
//!
//! Every provider call goes through [`ProviderCalls`], every API write
//! through [`Reporter`]; the backend view is read once per step.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::admit::{
    Admission, Candidate, Rejection, parse_allocatable, pod_requests, volume_refusal,
};
use super::backend::{BackendEntry, BackendView, ObjectKey, object_key, spec_hash, volumes_hash};
use super::calls::ProviderCalls;
use super::decide::{Plan, Push, active_deadline, decide, is_terminal};
use super::env;
use super::ephemeral;
use super::lean::LeanPod;
use super::queue::WorkQueue;
use super::report::{Reporter, Written};
use super::resolve::{Note, Purpose, Resolver};
use super::volumes;
use crate::cli::SuccessEvents;
use crate::provider::{PodKey, ProviderError};

/// How a sync ended, for the work queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the key's backoff is reset.
    Done,
    /// Done, and the API already shows the backend's status.
    Settled,
    /// Try again: after the backend's hint when it gave one, else with backoff.
    Retry(Option<Duration>),
}

impl Outcome {
    fn of(written: Written) -> Outcome {
        match written {
            Written::Done => Outcome::Done,
            Written::Unchanged => Outcome::Settled,
            Written::Failed => Outcome::Retry(None),
        }
    }

    fn retry(e: &ProviderError) -> Outcome {
        Outcome::Retry(e.retry_hint())
    }
}

/// What a sync needs: the pods, the backend, and the ways to change both.
pub struct Syncer {
    /// The node's pods as the watch last showed them.
    pub store: Store<LeanPod>,
    /// What the backend holds.
    pub backend: Arc<BackendView>,
    /// The provider, behind timeouts and metrics.
    pub calls: Arc<ProviderCalls>,
    /// Pod → what the provider receives.
    pub resolver: Resolver,
    /// Status, delete and event writes.
    pub reporter: Reporter,
    /// The node's work queue (for refresh timers).
    pub queue: WorkQueue<ObjectKey>,
    /// Which success events to record.
    pub success_events: SuccessEvents,
    /// Kubelet admission, decided once per pod.
    pub admission: Admission,
}

impl Syncer {
    /// Reconciles one pod key. Idempotent.
    pub async fn sync(&self, key: &ObjectKey) -> Outcome {
        let lean = self.store.get(&ObjectRef::new(&key.1).within(&key.0));
        let uid = lean.as_ref().and_then(|p| p.uid());
        if let Err(outcome) = self.remove_stale(key, uid.as_deref()).await {
            return outcome;
        }
        let Some(lean) = lean else {
            self.reporter.forget(key);
            self.admission.forget(key);
            return Outcome::Done;
        };
        if let (Some(uid), Some(rv)) = (&uid, lean.meta().resource_version.as_deref())
            && lean.meta().deletion_timestamp.is_none()
            && self.backend.settled(key, uid, rv)
        {
            return Outcome::Done;
        }
        // Not retried: the same text would fail the same way; the next watch
        // event of the pod brings a new one.
        let Some(pod) = readable(&lean) else {
            return Outcome::Done;
        };
        let Some(pk) = PodKey::of(&pod) else {
            return Outcome::Done;
        };
        let entry = self.backend.entry(key, &pk.uid);
        let vanished = self.backend.take_vanished(&pk);
        if is_terminal(&pod) {
            self.admission.release(key, &pk.uid);
        }
        let push = match decide(&pod, entry.as_ref(), vanished, SystemTime::now()) {
            Plan::Delete { in_backend, grace } => {
                return self.delete(&pod, &pk, in_backend, grace).await;
            }
            Plan::DeadlineExceeded { in_backend, grace } => {
                return self.deadline_exceeded(&pod, &pk, in_backend, grace).await;
            }
            Plan::FailVanished => return Outcome::of(self.reporter.write_vanished(&pod).await),
            Plan::Nothing => return Outcome::Done,
            Plan::Create => {
                if let Err(rejection) = self.admit(&pod, key, &pk.uid) {
                    return self.reject(&pod, &pk, rejection).await;
                }
                match self.create(&pod, &pk).await {
                    Ok(()) => None,
                    Err(outcome) => return outcome,
                }
            }
            Plan::Run(push) => {
                if !is_terminal(&pod) {
                    self.admission.running(key, &pk.uid, || pod_requests(&pod));
                }
                push
            }
        };
        if let (Some(push), Some(entry)) = (push, &entry)
            && let Some(outcome) = self.push(&pod, &pk, entry, push).await
        {
            return outcome;
        }
        // Most pods never get an ephemeral container: no backend look-up for them.
        let debugged = pod.spec.as_ref().is_some_and(|s| {
            s.ephemeral_containers
                .as_ref()
                .is_some_and(|e| !e.is_empty())
        });
        if debugged
            && !is_terminal(&pod)
            && let Some(entry) = self.backend.entry(key, &pk.uid)
        {
            let new = ephemeral::pending(&pod, &entry.ephemeral);
            if !new.is_empty()
                && let Some(outcome) = self.start_ephemeral(&pod, &pk, &entry, new).await
            {
                return outcome;
            }
        }
        self.arm_timer(&pod, key, &pk.uid);
        self.report(&pod, key, &pk.uid).await
    }

    /// The pod's `activeDeadlineSeconds` ran out: stop the workload, then
    /// fail the pod (reason `DeadlineExceeded`). A stop that fails is retried
    /// before the status is written, so a Failed pod never runs on.
    async fn deadline_exceeded(
        &self,
        pod: &Pod,
        pk: &PodKey,
        in_backend: bool,
        grace: Duration,
    ) -> Outcome {
        if in_backend {
            info!(pod = %pk, "activeDeadlineSeconds exceeded: stopping the workload");
            if let Err(e) = self.backend_delete(pk, grace).await {
                warn!(pod = %pk, error = %e, "stopping a pod past its deadline failed");
                let note = format!("Delete pod in provider failed: {e}");
                self.reporter
                    .event(pod, true, "ProviderDeleteFailed", note)
                    .await;
                return Outcome::retry(&e);
            }
            self.resolver.objects().forget_pod(&pk.uid);
        }
        // Whatever the backend said of this UID before the stop is history.
        self.backend.take_vanished(pk);
        Outcome::of(self.reporter.write_deadline_exceeded(pod).await)
    }

    /// Kubelet admission of a pod about to be created (decided once; see
    /// [`super::admit`]).
    fn admit(&self, pod: &Pod, key: &ObjectKey, uid: &str) -> Result<(), Rejection> {
        let allocatable = parse_allocatable(&self.resolver.node_allocatable());
        let provider = self.calls.provider();
        let honoured = provider.volume_types();
        let provider_name = provider.name();
        let order_of = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let created = meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            (
                created,
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        let own_order = order_of(&pod.metadata);
        self.admission.admit(key, uid, &allocatable, |known| {
            self.store
                .state()
                .iter()
                .filter_map(|lean| {
                    let meta = lean.meta();
                    let cand_uid = meta.uid.clone()?;
                    let cand_key = (meta.namespace.clone()?, meta.name.clone()?);
                    if known(&cand_key, &cand_uid) {
                        return None;
                    }
                    let running = self.backend.entry(&cand_key, &cand_uid).is_some();
                    let order = order_of(meta);
                    // Pods ordered after this one are decided after it: not
                    // read now (a burst of new pods would be read n² times).
                    if !running && order > own_order {
                        return None;
                    }
                    let p = if cand_uid == uid {
                        pod.clone()
                    } else {
                        readable(lean)?
                    };
                    Some(Candidate {
                        order,
                        running,
                        finished: is_terminal(&p)
                            || (!running && meta.deletion_timestamp.is_some()),
                        requests: pod_requests(&p),
                        refusal: volume_refusal(&p, provider_name, honoured),
                        key: cand_key,
                        uid: cand_uid,
                    })
                })
                .collect()
        })
    }

    /// A pod admission refused: a warning event with the reason, and the pod
    /// Failed. Never created, never retried.
    async fn reject(&self, pod: &Pod, pk: &PodKey, rejection: Rejection) -> Outcome {
        info!(pod = %pk, reason = %rejection.reason, message = %rejection.message, "pod rejected by admission");
        self.reporter
            .event(pod, true, &rejection.reason, rejection.message.clone())
            .await;
        let written = self
            .reporter
            .write_rejected(pod, &rejection.reason, &rejection.message)
            .await;
        match Outcome::of(written) {
            Outcome::Settled => Outcome::Done,
            other => other,
        }
    }

    /// Removes backend workloads under `key` whose UID is not the API pod's
    /// (or all of them, when the pod is gone): force-deleted pods and stale
    /// incarnations.
    async fn remove_stale(&self, key: &ObjectKey, uid: Option<&str>) -> Result<(), Outcome> {
        for stale_uid in self.backend.stale_uids(key, uid) {
            let pk = PodKey {
                namespace: key.0.clone(),
                name: key.1.clone(),
                uid: stale_uid,
            };
            if let Err(e) = self.backend_delete(&pk, Duration::ZERO).await {
                warn!(pod = %pk, error = %e, "removing a stale backend workload failed");
                return Err(Outcome::retry(&e));
            }
            info!(pod = %pk, "removed a backend workload whose pod is gone");
            self.resolver.objects().forget_pod(&pk.uid);
        }
        Ok(())
    }

    /// `delete_pod`, then forget the entry (also when it was gone already).
    async fn backend_delete(&self, pk: &PodKey, grace: Duration) -> Result<(), ProviderError> {
        match self.calls.delete(pk, grace).await {
            Ok(()) | Err(ProviderError::NotFound(_)) => {
                self.backend.remove(&object_key(pk), &pk.uid);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletion requested: stop in the backend, then remove the API object.
    async fn delete(&self, pod: &Pod, pk: &PodKey, in_backend: bool, grace: Duration) -> Outcome {
        if in_backend {
            if let Err(e) = self.backend_delete(pk, grace).await {
                warn!(pod = %pk, error = %e, "deleting the pod in the backend failed");
                let note = format!("Delete pod in provider failed: {e}");
                self.reporter
                    .event(pod, true, "ProviderDeleteFailed", note)
                    .await;
                return Outcome::retry(&e);
            }
            if self.success_events.delete() {
                self.reporter.api().success_event(
                    pod.object_ref(&()),
                    "ProviderDeleteSuccess",
                    "Delete pod in provider successfully".into(),
                );
            }
        }
        self.resolver.objects().forget_pod(&pk.uid);
        Outcome::of(self.reporter.delete_object(&object_key(pk), &pk.uid).await)
    }

    /// Records the events a resolution found.
    async fn record(&self, pod: &Pod, notes: Vec<Note>) {
        for n in notes {
            self.reporter
                .event(pod, n.warning, n.reason, n.message)
                .await;
        }
    }

    /// Resolves and creates the workload; records its entry.
    async fn create(&self, pod: &Pod, pk: &PodKey) -> Result<(), Outcome> {
        let pod_ip = if env::needs_pod_ip(pod) {
            self.calls.allocate_pod_ip(pk).await.unwrap_or_else(|e| {
                warn!(pod = %pk, error = %e, "pod IP not known before start");
                None
            })
        } else {
            None
        };
        let resolved = match self.resolver.resolve(pod, Purpose::Create, pod_ip).await {
            Ok(r) => r,
            Err(note) => {
                self.record(pod, vec![note]).await;
                return Err(Outcome::Retry(None));
            }
        };
        self.record(pod, resolved.notes).await;
        match self.calls.create(&resolved.pod).await {
            Ok(()) => {}
            Err(ProviderError::InvalidInput(msg)) => {
                // The pod can never run here: fail it for good, no retry.
                let note = format!("Create pod in provider failed: {msg}");
                self.reporter
                    .event(pod, true, "ProviderCreateFailed", note)
                    .await;
                let written = self.reporter.write_refused(pod, msg).await;
                return Err(match Outcome::of(written) {
                    Outcome::Settled => Outcome::Done,
                    other => other,
                });
            }
            Err(e) => {
                let note = format!("Create pod in provider failed: {e}");
                self.reporter
                    .event(pod, true, "ProviderCreateFailed", note)
                    .await;
                return Err(Outcome::retry(&e));
            }
        }
        let status = match self.calls.status(pk).await {
            Ok(s) => Some(s),
            Err(e) => {
                debug!(pod = %pk, error = %e, "status not available right after create");
                None
            }
        };
        let mut entry = BackendEntry::new(pk.uid.clone(), status, spec_hash(pod));
        entry.volumes_hash = volumes_hash(&resolved.pod);
        entry.downward_hash = volumes::downward_inputs_hash(pod);
        entry.refresh_at = resolved.refresh_at;
        self.backend.insert(object_key(pk), entry);
        if self.success_events.live() {
            self.reporter.api().success_event(
                pod.object_ref(&()),
                "ProviderCreateSuccess",
                "Create pod in provider successfully".into(),
            );
        }
        Ok(())
    }

    /// Pushes a changed spec or refreshed volume files to the backend; the
    /// backend is called only when what it holds differs. `None` when the
    /// sync may go on to the status.
    async fn push(
        &self,
        pod: &Pod,
        pk: &PodKey,
        entry: &BackendEntry,
        push: Push,
    ) -> Option<Outcome> {
        let key = object_key(pk);
        let purpose = match push {
            Push::Spec => Purpose::Update,
            Push::Files => Purpose::Refresh,
        };
        let pod_ip = known_pod_ip(pod, entry);
        let resolved = match self.resolver.resolve(pod, purpose, pod_ip).await {
            Ok(r) => r,
            Err(note) => {
                self.record(pod, vec![note]).await;
                if push == Push::Spec {
                    return Some(Outcome::Retry(None));
                }
                // The workload keeps the files it has (as a kubelet keeps a
                // volume whose ConfigMap is gone), its status is still
                // written, and the refresh is tried again a period later.
                let next = self.resolver.next_refresh();
                self.backend
                    .amend(&key, &pk.uid, |e| e.refresh_at = Some(next));
                return None;
            }
        };
        self.record(pod, resolved.notes).await;
        let new_spec = spec_hash(pod);
        let new_volumes = volumes_hash(&resolved.pod);
        let mut refresh_at = resolved.refresh_at;
        match push {
            Push::Spec => match self.calls.update(&resolved.pod).await {
                Ok(()) if self.success_events.live() => self.reporter.api().success_event(
                    pod.object_ref(&()),
                    "ProviderUpdateSuccess",
                    "Update pod in provider successfully".into(),
                ),
                Ok(()) => {}
                Err(e) => {
                    let note = format!("Update pod in provider failed: {e}");
                    self.reporter
                        .event(pod, true, "ProviderUpdateFailed", note)
                        .await;
                    return Some(Outcome::retry(&e));
                }
            },
            Push::Files if new_volumes == entry.volumes_hash => {}
            Push::Files => match self.calls.refresh_volumes(&resolved.pod).await {
                Ok(()) => {}
                Err(ProviderError::NotImplemented(_)) => {
                    debug!(pod = %pk, "the backend keeps the files the workload started with");
                }
                Err(e) => {
                    // Never a tight loop, never a failed pod: the next refresh
                    // tries again with whatever is current then.
                    warn!(pod = %pk, error = %e, "refreshing volume files failed; trying again at the next refresh");
                    let next = self.resolver.next_refresh();
                    refresh_at = Some(refresh_at.map_or(next, |t| t.min(next)));
                    let downward = volumes::downward_inputs_hash(pod);
                    self.backend.amend(&key, &pk.uid, |e| {
                        e.downward_hash = downward;
                        e.refresh_at = refresh_at;
                    });
                    return None;
                }
            },
        }
        let downward = volumes::downward_inputs_hash(pod);
        self.backend.amend(&key, &pk.uid, |e| {
            e.spec_hash = new_spec;
            e.volumes_hash = new_volumes;
            e.downward_hash = downward;
            e.refresh_at = refresh_at;
        });
        None
    }

    /// Hands the pod's new ephemeral containers (`kubectl debug`) to the
    /// provider, once each. A refusal (the provider cannot run them, or not
    /// this one) is a Warning event naming the provider and a Terminated
    /// status with its message, written by [`Syncer::report`]; other errors
    /// are retried. `None` when the sync may go on to the status.
    async fn start_ephemeral(
        &self,
        pod: &Pod,
        pk: &PodKey,
        entry: &BackendEntry,
        new: Vec<String>,
    ) -> Option<Outcome> {
        let key = object_key(pk);
        let resolved = match self
            .resolver
            .resolve(pod, Purpose::Update, known_pod_ip(pod, entry))
            .await
        {
            Ok(r) => r,
            Err(note) => {
                self.record(pod, vec![note]).await;
                return Some(Outcome::Retry(None));
            }
        };
        self.record(pod, resolved.notes).await;
        let names = new.join(", ");
        let refusal = match self.calls.start_ephemeral(&resolved.pod, &new).await {
            Ok(()) => {
                info!(pod = %pk, containers = %names, "ephemeral containers handed to the provider");
                None
            }
            Err(ProviderError::NotImplemented(_)) => Some((
                "EphemeralContainersNotSupported",
                format!(
                    "provider {:?} cannot run ephemeral containers: not started",
                    self.calls.provider().name()
                ),
            )),
            Err(ProviderError::InvalidInput(msg)) => Some((
                "ProviderEphemeralContainerFailed",
                format!(
                    "provider {:?} refused the ephemeral container: {msg}",
                    self.calls.provider().name()
                ),
            )),
            Err(e) => {
                warn!(pod = %pk, containers = %names, error = %e, "starting ephemeral containers failed");
                let note = format!("Start of ephemeral container {names} failed: {e}");
                self.reporter
                    .event(pod, true, "ProviderEphemeralContainerFailed", note)
                    .await;
                return Some(Outcome::retry(&e));
            }
        };
        let refused: Vec<_> = match refusal {
            None => Vec::new(),
            Some((reason, message)) => {
                info!(pod = %pk, containers = %names, %message, "ephemeral containers refused");
                let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                );
                let mut statuses = Vec::new();
                for name in &new {
                    let message = format!("ephemeral container {name:?}: {message}");
                    statuses.push(ephemeral::refused(pod, name, &message, &now));
                    self.reporter.event(pod, true, reason, message).await;
                }
                statuses
            }
        };
        self.backend.amend(&key, &pk.uid, |e| {
            e.ephemeral.extend(new);
            e.ephemeral_refused.extend(refused);
        });
        None
    }

    /// Queues a re-sync for when the pod's volume files are next due or its
    /// `activeDeadlineSeconds` runs out, whichever comes first.
    fn arm_timer(&self, pod: &Pod, key: &ObjectKey, uid: &str) {
        if is_terminal(pod) {
            return;
        }
        let deadline = active_deadline(pod);
        self.backend.amend(key, uid, |e| e.deadline_at = deadline);
        let refresh = self.backend.entry(key, uid).and_then(|e| e.refresh_at);
        let Some(at) = [refresh, deadline].into_iter().flatten().min() else {
            return;
        };
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        if self.backend.arm_timer(key, uid, Instant::now() + wait) {
            self.queue.add_after(key.clone(), wait);
        }
    }

    /// Writes the backend's status; remembers a pod that needs nothing more.
    async fn report(&self, pod: &Pod, key: &ObjectKey, uid: &str) -> Outcome {
        let Some((mut status, generation, refused)) = self
            .backend
            .entry(key, uid)
            .and_then(|e| Some((e.status?, e.status_gen, e.ephemeral_refused)))
        else {
            return Outcome::Done;
        };
        if !refused.is_empty() {
            // The backend does not know the ephemeral containers it refused.
            let s = Arc::make_mut(&mut status);
            let eph = s.ephemeral_container_statuses.get_or_insert_with(Vec::new);
            for r in refused {
                if !eph.iter().any(|e| e.name == r.name) {
                    eph.push(r);
                }
            }
        }
        let outcome = Outcome::of(self.reporter.write_status(pod, &status).await);
        if let (Outcome::Settled, Some(rv)) = (outcome, &pod.metadata.resource_version) {
            self.backend
                .amend(key, uid, |e| e.settled = Some((rv.clone(), generation)));
        }
        outcome
    }
}

/// The IP a running workload has, for env that reads `status.podIP`: asking
/// the provider again would reserve another one.
fn known_pod_ip(pod: &Pod, entry: &BackendEntry) -> Option<String> {
    if !env::needs_pod_ip(pod) {
        return None;
    }
    entry
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()))
}

/// The pod a store entry holds, parsed; `None` (logged) when its text is not
/// a pod's.
pub fn readable(lean: &LeanPod) -> Option<Pod> {
    lean.pod()
        .inspect_err(|e| {
            warn!(
                namespace = lean.namespace().unwrap_or_default(),
                pod = %lean.name_any(),
                error = %e,
                "the pod's spec or status cannot be read; it is ignored until it changes"
            );
        })
        .ok()
}
