//! The pod controller of one node: a watch on `spec.nodeName=<node>`, a work queue,
//! and [`PodController::sync`], the idempotent reconcile of one pod key.
//!
//! It owns the backend view (which workloads the provider holds, with their
//! UIDs and last known status) and is the only writer of pod status for its node.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::env::{self, EnvSources};
use super::lean::LeanPod;
use super::queue::{Backoff, WorkQueue};
use super::status::{merge_status, status_changed, status_fingerprint};
use super::volumes;
use super::writes;
use crate::context::NodeContext;
use crate::objects::ApiObjects;
use crate::provider::{
    PodEvent, PodKey, Provider, ProviderError, RegistryCredential, ResolvedPod, StatusNotifier,
    StatusUpdate,
};

/// Namespace and name of a pod: the unit of work.
pub type ObjectKey = (String, String);

/// What the backend holds for one pod UID.
#[derive(Debug, Clone)]
struct BackendEntry {
    uid: String,
    /// Shared, not copied: a sync reads the entry several times.
    status: Option<Arc<PodStatus>>,
    spec_hash: u64,
    /// Of the volume files the backend last received; 0: none, or not known.
    volumes_hash: u64,
    /// [`volumes::downward_inputs_hash`] of the pod the files were made from.
    downward_hash: u64,
    /// When the volume files must be re-materialised: a token's renewal, or
    /// the next `--volume-refresh-period` for files that follow ConfigMaps
    /// and Secrets. `None`: never without a change to the pod.
    refresh_at: Option<SystemTime>,
    /// When the queued re-sync for `refresh_at` fires, so that the syncs in
    /// between (watch events, resyncs) do not queue a timer each.
    timer: Option<Instant>,
    /// Counts the backend statuses this entry has held.
    status_gen: u64,
    /// The pod's resourceVersion and the `status_gen` at which a sync last
    /// found nothing to do: until either changes (or `refresh_at` comes), a
    /// sync of the pod has nothing to do either and skips reading it.
    settled: Option<(String, u64)>,
}

/// Why a pod is resolved, which decides what the resolution may cost and report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Before `create_pod`: may ask the provider for the pod's IP.
    Create,
    /// The spec of a running pod changed.
    Update,
    /// Volume files re-materialised (their objects, a token or the pod's
    /// labels may have changed). Only failures are reported: a refresh that
    /// finds nothing new must write nothing to the API.
    Refresh,
}

/// The pod controller of one node.
pub struct PodController {
    ctx: Arc<NodeContext>,
    provider: Arc<dyn Provider>,
    objects: Arc<ApiObjects>,
    /// The node's pods as the watch last showed them (see [`LeanPod`]).
    store: Store<LeanPod>,
    writer: Mutex<Option<reflector::store::Writer<LeanPod>>>,
    queue: WorkQueue<ObjectKey>,
    backend: Mutex<HashMap<ObjectKey, Vec<BackendEntry>>>,
    node_allocatable: Mutex<BTreeMap<String, String>>,
    vanished: Mutex<HashSet<PodKey>>,
    /// Pods whose API object this controller has deleted (key → UID), until
    /// the watch shows them gone: the watch reports the delete in two events
    /// (grace period set to 0, then gone), and the first must not cause a
    /// second DELETE.
    api_deleted: Mutex<HashMap<ObjectKey, String>>,
    /// The last status write per pod: UID, the resourceVersion it was based
    /// on, and a fingerprint of the backend status it carried. Until the watch
    /// brings that write back, the store still shows the older object; a sync
    /// in that window (another event, a resync) would write the same status
    /// again.
    written: Mutex<HashMap<ObjectKey, StatusWrite>>,
}

/// See [`PodController::written`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatusWrite {
    uid: String,
    based_on: String,
    backend: u64,
}

enum Outcome {
    Done,
    /// Done, and the API already shows the backend's status.
    Settled,
    Retry,
}

impl PodController {
    /// A controller for the node in `ctx`, backed by `provider`.
    pub fn new(
        ctx: Arc<NodeContext>,
        provider: Arc<dyn Provider>,
        objects: Arc<ApiObjects>,
    ) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(PodController {
            ctx,
            provider,
            objects,
            store,
            writer: Mutex::new(Some(writer)),
            queue: WorkQueue::new(Backoff::default()),
            backend: Mutex::default(),
            node_allocatable: Mutex::default(),
            vanished: Mutex::default(),
            api_deleted: Mutex::default(),
            written: Mutex::default(),
        })
    }

    /// Sets node allocatable, used for `resourceFieldRef` limits left unset.
    pub fn set_node_allocatable(&self, alloc: BTreeMap<String, String>) {
        *self
            .node_allocatable
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = alloc;
    }

    /// A pod of this node by namespace and name, as the API shows it.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        let lean = self.store.get(&ObjectRef::new(name).within(namespace))?;
        readable(&lean)
    }

    /// Pods of this node as the API shows them (for the kubelet API's `/pods`).
    pub fn api_pods(&self) -> Vec<Pod> {
        self.store
            .state()
            .iter()
            .filter_map(|lean| readable(lean))
            .collect()
    }

    fn written_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, StatusWrite>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn api_deleted_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, String>> {
        self.api_deleted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backend_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Vec<BackendEntry>>> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `stop` is cancelled: watch, adoption, workers, status intake, resync.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let node = self.ctx.config.name.clone();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("pod controller for {node} started twice"))?;
        // Kept lean (see `lean`): parsed when a sync reads the pod.
        let api: Api<LeanPod> = Api::all(self.ctx.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (init_tx, mut init_rx) = mpsc::channel::<()>(1);
        let queue = self.queue.clone();
        let stream = reflector::reflector(writer, watcher(api, cfg));
        let watch_task = tokio::spawn(
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(
                            watcher::Event::Apply(p)
                            | watcher::Event::InitApply(p)
                            | watcher::Event::Delete(p),
                        ) => {
                            if let Some(ns) = p.namespace() {
                                queue.add((ns, p.name_any()));
                            }
                        }
                        Ok(watcher::Event::InitDone) => {
                            let _ = init_tx.try_send(());
                        }
                        Ok(watcher::Event::Init) => {}
                        Err(e) => {
                            warn!(error = %e, "pod watch failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            .instrument(info_span!("pod_watch", node = %node)),
        );

        // Adopt what the backend already runs before any worker may create anything.
        tokio::select! {
            _ = init_rx.recv() => {}
            _ = stop.cancelled() => { watch_task.abort(); return Ok(()); }
        }
        self.adopt().await;

        let (notifier, mut updates) = StatusNotifier::channel();
        let (event_tx, mut pod_events) = tokio::sync::mpsc::unbounded_channel::<PodEvent>();
        let pushes = self.provider.notify_status(notifier.with_events(event_tx));
        let provider_events = {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(ev) = pod_events.recv().await {
                    this.provider_event(ev).await;
                }
            })
        };
        let intake = {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(update) = updates.recv().await {
                    this.intake(update);
                }
            })
        };
        let poll_every = if pushes {
            self.ctx.config.full_resync_period
        } else {
            self.provider.status_poll_interval()
        };
        let poller = {
            let this = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(poll_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    this.reconcile_backend().await;
                }
            })
        };
        let resync = {
            let this = self.clone();
            let period = self.ctx.config.full_resync_period;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    for pod in this.store.state() {
                        if let Some(ns) = pod.namespace() {
                            this.queue.add((ns, pod.name_any()));
                        }
                    }
                }
            })
        };
        let mut workers = Vec::new();
        for _ in 0..self.ctx.config.pod_sync_workers.max(1) {
            let this = self.clone();
            workers.push(tokio::spawn(async move {
                while let Some(key) = this.queue.next().await {
                    let started = Instant::now();
                    let span = info_span!("pod_sync", pod = %format!("{}/{}", key.0, key.1));
                    let outcome = this.sync(&key).instrument(span).await;
                    this.ctx.metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
                    match outcome {
                        Outcome::Done | Outcome::Settled => this.queue.forget(&key),
                        Outcome::Retry => {
                            let delay = this.queue.add_rate_limited(key.clone());
                            debug!(pod = %format!("{}/{}", key.0, key.1), ?delay, "sync will be retried");
                        }
                    }
                    this.queue.done(&key);
                    this.ctx.metrics.queue_depth.set(this.queue.len() as i64);
                }
            }));
        }
        info!(node = %self.ctx.config.name, "pod controller running");
        stop.cancelled().await;
        self.queue.shutdown();
        for t in [watch_task, intake, provider_events, poller, resync] {
            t.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        Ok(())
    }

    /// Fills the backend view from the provider and queues every pod it holds, so
    /// the sync adopts matching ones and removes orphans.
    async fn adopt(&self) {
        loop {
            match self.provider.list_pods().await {
                Ok(pods) => {
                    self.ctx.metrics.backend("list", "ok");
                    let n = pods.len();
                    let mut keys = Vec::new();
                    {
                        let mut backend = self.backend_lock();
                        for bp in pods {
                            let key = (bp.key.namespace.clone(), bp.key.name.clone());
                            // What files the workload holds is not known (and its
                            // objects or tokens may have changed while this process
                            // was down): the first sync re-materialises them, and
                            // pushes them when the pod has any.
                            let entry = BackendEntry {
                                uid: bp.key.uid.clone(),
                                status: Some(Arc::new(bp.status)),
                                spec_hash: spec_hash(&bp.pod),
                                volumes_hash: 0,
                                downward_hash: 0,
                                refresh_at: Some(SystemTime::UNIX_EPOCH),
                                timer: None,
                                status_gen: 0,
                                settled: None,
                            };
                            backend.entry(key.clone()).or_default().push(entry);
                            keys.push(key);
                        }
                        self.ctx.metrics.backend_pods.inc_by(n as i64);
                    }
                    for k in keys {
                        self.queue.add(k);
                    }
                    info!(node = %self.ctx.config.name, pods = n, "adopted the backend's pods");
                    return;
                }
                Err(e) => {
                    self.ctx.metrics.backend("list", "error");
                    warn!(error = %e, "listing backend pods failed; retrying in 2s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    fn intake(&self, update: StatusUpdate) {
        let key = (update.key.namespace.clone(), update.key.name.clone());
        {
            let mut backend = self.backend_lock();
            let Some(entries) = backend.get_mut(&key) else {
                return;
            };
            let Some(entry) = entries.iter_mut().find(|e| e.uid == update.key.uid) else {
                return;
            };
            match update.status {
                Some(s) => {
                    entry.status = Some(s);
                    entry.status_gen += 1;
                }
                None => {
                    self.remove_entry(&mut backend, &key, &update.key.uid);
                    drop(backend);
                    self.mark_vanished(update.key.clone());
                }
            }
        }
        self.queue.add(key);
    }

    /// Lists the backend and feeds every changed status in (the fallback for providers that do not push).
    async fn reconcile_backend(&self) {
        match self.provider.list_statuses().await {
            Ok(pods) => {
                self.ctx.metrics.backend("list", "ok");
                let mut seen = HashSet::new();
                for (key, status) in pods {
                    seen.insert(key.clone());
                    let changed = {
                        let backend = self.backend_lock();
                        backend
                            .get(&(key.namespace.clone(), key.name.clone()))
                            .and_then(|es| es.iter().find(|e| e.uid == key.uid))
                            .is_some_and(|e| e.status.as_deref() != Some(&status))
                    };
                    if changed {
                        self.intake(StatusUpdate {
                            key,
                            status: Some(Arc::new(status)),
                        });
                    }
                }
                let vanished: Vec<PodKey> = self
                    .backend_lock()
                    .iter()
                    .flat_map(|((ns, name), es)| {
                        es.iter().map(|e| PodKey {
                            namespace: ns.clone(),
                            name: name.clone(),
                            uid: e.uid.clone(),
                        })
                    })
                    .filter(|k| !seen.contains(k))
                    .collect();
                for key in vanished {
                    self.intake(StatusUpdate { key, status: None });
                }
            }
            Err(e) => {
                self.ctx.metrics.backend("list", "error");
                debug!(error = %e, "backend reconcile failed");
            }
        }
    }

    /// Remembers that a pod's workload vanished so the sync marks it Failed/NotFound.
    fn mark_vanished(&self, key: PodKey) {
        self.vanished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
    }

    fn take_vanished(&self, key: &PodKey) -> bool {
        self.vanished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }

    /// Reconciles one pod key. Idempotent.
    async fn sync(&self, key: &ObjectKey) -> Outcome {
        let pod = self.store.get(&ObjectRef::new(&key.1).within(&key.0));
        let uid = pod.as_ref().and_then(|p| p.uid());

        // 1. Backend workloads of another UID (or of a pod gone from the API) are stale: remove them.
        let stale: Vec<String> = self
            .backend_lock()
            .get(key)
            .map(|es| {
                es.iter()
                    .filter(|e| Some(&e.uid) != uid.as_ref())
                    .map(|e| e.uid.clone())
                    .collect()
            })
            .unwrap_or_default();
        for stale_uid in stale {
            let pk = PodKey {
                namespace: key.0.clone(),
                name: key.1.clone(),
                uid: stale_uid.clone(),
            };
            match self.backend_delete(&pk, Duration::ZERO).await {
                Ok(()) => info!(pod = %pk, "removed a backend workload whose pod is gone"),
                Err(e) => {
                    warn!(pod = %pk, error = %e, "removing a stale backend workload failed");
                    return Outcome::Retry;
                }
            }
            self.objects.forget_pod(&stale_uid);
        }
        let Some(lean) = pod else {
            self.api_deleted_lock().remove(key);
            self.written_lock().remove(key);
            return Outcome::Done;
        };
        if self.settled(key, &lean) {
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

        // 2. Deletion requested: stop in the backend, then remove the API object.
        if pod.metadata.deletion_timestamp.is_some() {
            return self.sync_deletion(&pod, &pk).await;
        }

        let entry = self.entry(key, &pk.uid);
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let terminal = phase == "Succeeded" || phase == "Failed";
        if self.take_vanished(&pk) && !terminal {
            return self.write_vanished(&pod).await;
        }
        let entry = match entry {
            Some(e) => e,
            None if terminal => return Outcome::Done,
            None => match self.create(&pod, &pk).await {
                Ok(e) => e,
                Err(outcome) => return outcome,
            },
        };

        // 3. Spec changes; volume files whose inputs may have changed (token
        // renewal, ConfigMaps and Secrets every --volume-refresh-period, labels
        // and annotations read by downwardAPI files). A finished pod's files
        // are left as they are, as the kubelet does.
        let due = !terminal && entry.refresh_at.is_some_and(|t| t <= SystemTime::now());
        let spec_changed = spec_hash(&pod) != entry.spec_hash;
        let downward_changed =
            !terminal && volumes::downward_inputs_hash(&pod) != entry.downward_hash;
        if (spec_changed || downward_changed || due)
            && let Some(outcome) = self.update(&pod, &pk, &entry, spec_changed).await
        {
            return outcome;
        }
        if let Some(at) = self
            .entry(key, &pk.uid)
            .and_then(|e| e.refresh_at)
            .filter(|_| !terminal)
        {
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            if self.arm_timer(key, &pk.uid, Instant::now() + wait) {
                self.queue.add_after(key.clone(), wait);
            }
        }

        // 4. Status.
        let Some((backend_status, status_gen)) = self
            .entry(key, &pk.uid)
            .and_then(|e| Some((e.status?, e.status_gen)))
        else {
            return Outcome::Done;
        };
        let outcome = self.write_status(&pod, &backend_status).await;
        if let (Outcome::Settled, Some(rv)) = (&outcome, &pod.metadata.resource_version) {
            self.with_entry(key, &pk.uid, |e| e.settled = Some((rv.clone(), status_gen)));
        }
        outcome
    }

    /// Whether the pod is as the last sync that found nothing to do left it
    /// (see [`BackendEntry::settled`]): the periodic resync of an idle node
    /// then costs a lookup per pod, not a parse and a status comparison.
    fn settled(&self, key: &ObjectKey, lean: &LeanPod) -> bool {
        let meta = lean.meta();
        let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) else {
            return false;
        };
        if meta.deletion_timestamp.is_some() {
            return false;
        }
        self.backend_lock()
            .get(key)
            .and_then(|es| es.iter().find(|e| e.uid == uid))
            .is_some_and(|e| {
                e.settled
                    .as_ref()
                    .is_some_and(|(r, g)| r == rv && *g == e.status_gen)
                    && e.refresh_at.is_none_or(|t| t > SystemTime::now())
            })
    }

    /// Forgets the backend entry of `uid` under `key`, keeping the
    /// `vk_backend_pods` gauge. The gauge is counted up and down, not
    /// re-summed: it is the process's (every node's), and a sum per call
    /// would be quadratic in the node's pods.
    fn remove_entry(
        &self,
        backend: &mut HashMap<ObjectKey, Vec<BackendEntry>>,
        key: &ObjectKey,
        uid: &str,
    ) {
        let Some(es) = backend.get_mut(key) else {
            return;
        };
        let before = es.len();
        es.retain(|e| e.uid != uid);
        self.ctx
            .metrics
            .backend_pods
            .dec_by((before - es.len()) as i64);
        if es.is_empty() {
            backend.remove(key);
        }
    }

    fn entry(&self, key: &ObjectKey, uid: &str) -> Option<BackendEntry> {
        self.backend_lock()
            .get(key)
            .and_then(|es| es.iter().find(|e| e.uid == uid).cloned())
    }

    /// Records a re-sync timer firing at `deadline`; `false` when one that fires
    /// no later is already pending (the pod needs no second one).
    fn arm_timer(&self, key: &ObjectKey, uid: &str, deadline: Instant) -> bool {
        let mut armed = false;
        self.with_entry(key, uid, |e| {
            // A second of slack: `deadline` is recomputed from the wall clock
            // on every sync and wobbles against the monotonic one.
            let covered = e
                .timer
                .is_some_and(|t| t > Instant::now() && t <= deadline + Duration::from_secs(1));
            if !covered {
                e.timer = Some(deadline);
                armed = true;
            }
        });
        armed
    }

    async fn backend_delete(&self, pk: &PodKey, grace: Duration) -> Result<(), ProviderError> {
        let res = self.provider.delete_pod(pk, grace).await;
        let result = match &res {
            Ok(()) => "ok",
            Err(ProviderError::NotFound(_)) => "not_found",
            Err(_) => "error",
        };
        self.ctx.metrics.backend("delete", result);
        match res {
            Ok(()) | Err(ProviderError::NotFound(_)) => {
                let key = (pk.namespace.clone(), pk.name.clone());
                self.remove_entry(&mut self.backend_lock(), &key, &pk.uid);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn sync_deletion(&self, pod: &Pod, pk: &PodKey) -> Outcome {
        let key = (pk.namespace.clone(), pk.name.clone());
        if self.entry(&key, &pk.uid).is_some() {
            let grace = Duration::from_secs(
                pod.metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(30)
                    .max(0) as u64,
            );
            match self.backend_delete(pk, grace).await {
                Ok(()) => {
                    if self.ctx.config.success_events.delete() {
                        self.ctx.success_event(
                            pod.object_ref(&()),
                            "ProviderDeleteSuccess",
                            "Delete pod in provider successfully".into(),
                        );
                    }
                }
                Err(e) => {
                    warn!(pod = %pk, error = %e, "deleting the pod in the backend failed");
                    self.event(
                        pod,
                        true,
                        "ProviderDeleteFailed",
                        format!("Delete pod in provider failed: {e}"),
                    )
                    .await;
                    return Outcome::Retry;
                }
            }
        }
        self.objects.forget_pod(&pk.uid);
        if self.api_deleted_lock().get(&key) == Some(&pk.uid) {
            return Outcome::Done;
        }
        // Grace 0 with a UID precondition: a newer pod with the same name is never touched.
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pk.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.ctx.limiter.acquire().await;
        let res = writes::delete_pod(&self.ctx.client, &pk.namespace, &pk.name, &dp).await;
        self.ctx.metrics.api("delete", "pods", res.is_ok());
        match res {
            Ok(_) => {
                self.api_deleted_lock().insert(key, pk.uid.clone());
                Outcome::Done
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Outcome::Done,
            Err(e) => {
                warn!(pod = %pk, error = %e, "deleting the pod object failed");
                Outcome::Retry
            }
        }
    }

    /// Resolves env, volumes and pull credentials into what the provider
    /// receives, and when the volume files are due for a refresh.
    async fn resolve(
        &self,
        pod: &Pod,
        pk: &PodKey,
        purpose: Purpose,
    ) -> Result<(ResolvedPod, Option<SystemTime>), Outcome> {
        let report = purpose != Purpose::Refresh;
        let (cm_names, secret_names) = env::referenced_objects(pod);
        let mut src = EnvSources {
            host_ip: self.ctx.config.node_ip.clone(),
            node_allocatable: self
                .node_allocatable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Default::default()
        };
        for name in cm_names {
            match volumes::ObjectSource::config_map(&*self.objects, &pk.namespace, &name).await {
                Ok(v) => {
                    src.config_maps.insert(name, v);
                }
                Err(e) => {
                    self.event(pod, true, "FailedToReadMandatoryConfigMap", e)
                        .await;
                    return Err(Outcome::Retry);
                }
            }
        }
        for name in secret_names {
            match volumes::ObjectSource::secret(&*self.objects, &pk.namespace, &name).await {
                Ok(v) => {
                    src.secrets.insert(name, v);
                }
                Err(e) => {
                    self.event(pod, true, "FailedToReadMandatorySecret", e)
                        .await;
                    return Err(Outcome::Retry);
                }
            }
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        src.services = self.objects.services_for(&pk.namespace, links);
        if env::needs_pod_ip(pod) {
            if purpose == Purpose::Create {
                match self.provider.allocate_pod_ip(pk).await {
                    Ok(ip) => src.pod_ip = ip,
                    Err(e) => {
                        warn!(pod = %pk, error = %e, "pod IP not known before start");
                    }
                }
            } else {
                // A running workload has its IP: asking the provider again
                // would reserve another one.
                let key = (pk.namespace.clone(), pk.name.clone());
                src.pod_ip = self
                    .entry(&key, &pk.uid)
                    .and_then(|e| e.status)
                    .and_then(|s| s.pod_ip.clone())
                    .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
            }
        }
        let mut resolved = pod.clone();
        match env::resolve_pod_env(&mut resolved, &src) {
            Ok(events) => {
                for ev in events.into_iter().filter(|_| report) {
                    self.event(pod, ev.warning, ev.reason, ev.message).await;
                }
            }
            Err(e) => {
                self.event(pod, true, e.reason, e.message).await;
                return Err(Outcome::Retry);
            }
        }
        let materialised = match volumes::materialise(pod, &src, &*self.objects).await {
            Ok(m) => m,
            Err(e) => {
                self.event(pod, true, "FailedMount", e.to_string()).await;
                return Err(Outcome::Retry);
            }
        };
        let mut refresh_at = materialised.refresh_at;
        if volumes::follows_objects(pod) {
            // Reads go through the object cache; the timer runs only for pods
            // with such volumes, so a node of pods without them pays nothing.
            let next = SystemTime::now() + self.ctx.config.volume_refresh_period;
            refresh_at = Some(refresh_at.map_or(next, |t| t.min(next)));
        }
        let pull_credentials = self.pull_credentials(pod, &pk.namespace, report).await;
        Ok((
            ResolvedPod {
                pod: resolved,
                volumes: materialised.volumes,
                pull_credentials,
            },
            refresh_at,
        ))
    }

    /// The credentials of the pod's `imagePullSecrets`. A Secret that is
    /// missing, unreadable or not a docker config is skipped with a
    /// `FailedToRetrieveImagePullSecret` warning (when `report`): like the
    /// kubelet, the pod still runs, and the pull may work without it.
    async fn pull_credentials(
        &self,
        pod: &Pod,
        namespace: &str,
        report: bool,
    ) -> Vec<RegistryCredential> {
        let names = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty());
        let mut creds = Vec::new();
        let mut failed = Vec::new();
        for name in names {
            let problem = match volumes::ObjectSource::secret(&*self.objects, namespace, name).await
            {
                Ok(Some(secret)) => match RegistryCredential::from_secret(&secret) {
                    Ok(c) => {
                        creds.extend(c);
                        continue;
                    }
                    Err(e) => e,
                },
                Ok(None) => format!("secret {namespace}/{name} not found"),
                Err(e) => e,
            };
            failed.push((name, problem));
        }
        if report && !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
            let problems: Vec<&str> = failed.iter().map(|(_, p)| p.as_str()).collect();
            self.event(
                pod,
                true,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed: {}",
                    names.join(", "),
                    problems.join("; ")
                ),
            )
            .await;
        }
        creds
    }

    async fn create(&self, pod: &Pod, pk: &PodKey) -> Result<BackendEntry, Outcome> {
        let (resolved, refresh_at) = self.resolve(pod, pk, Purpose::Create).await?;
        match self.provider.create_pod(&resolved).await {
            Ok(()) => {
                self.ctx.metrics.backend("create", "ok");
                let status = match self.provider.get_pod_status(pk).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        debug!(pod = %pk, error = %e, "status not available right after create");
                        None
                    }
                };
                let entry = BackendEntry {
                    uid: pk.uid.clone(),
                    status,
                    spec_hash: spec_hash(pod),
                    volumes_hash: volumes_hash(&resolved),
                    downward_hash: volumes::downward_inputs_hash(pod),
                    refresh_at,
                    timer: None,
                    status_gen: 0,
                    settled: None,
                };
                {
                    let mut backend = self.backend_lock();
                    backend
                        .entry((pk.namespace.clone(), pk.name.clone()))
                        .or_default()
                        .push(entry.clone());
                    self.ctx.metrics.backend_pods.inc();
                }
                if self.ctx.config.success_events.live() {
                    self.ctx.success_event(
                        pod.object_ref(&()),
                        "ProviderCreateSuccess",
                        "Create pod in provider successfully".into(),
                    );
                }
                Ok(entry)
            }
            Err(ProviderError::InvalidInput(msg)) => {
                // The pod can never run here: fail it for good, no retry.
                self.ctx.metrics.backend("create", "invalid");
                self.event(
                    pod,
                    true,
                    "ProviderCreateFailed",
                    format!("Create pod in provider failed: {msg}"),
                )
                .await;
                let failed = PodStatus {
                    phase: Some("Failed".into()),
                    reason: Some("ProviderFailed".into()),
                    message: Some(msg),
                    ..Default::default()
                };
                Err(self.write_status(pod, &failed).await)
            }
            Err(e) => {
                self.ctx.metrics.backend("create", "error");
                self.event(
                    pod,
                    true,
                    "ProviderCreateFailed",
                    format!("Create pod in provider failed: {e}"),
                )
                .await;
                Err(Outcome::Retry)
            }
        }
    }

    /// Pushes a changed spec or refreshed volume files to the backend; the
    /// backend is called only when one of them differs from what it holds.
    /// `None` when the sync may go on to the status.
    async fn update(
        &self,
        pod: &Pod,
        pk: &PodKey,
        entry: &BackendEntry,
        spec_changed: bool,
    ) -> Option<Outcome> {
        let key = (pk.namespace.clone(), pk.name.clone());
        let purpose = if spec_changed {
            Purpose::Update
        } else {
            Purpose::Refresh
        };
        let (resolved, refresh_at) = match self.resolve(pod, pk, purpose).await {
            Ok(r) => r,
            Err(_) if purpose == Purpose::Refresh => {
                // The failure has its event; the workload keeps the files it
                // has (as a kubelet keeps a volume whose ConfigMap is gone),
                // its status is still written, and the refresh is tried again
                // a period later.
                let next = SystemTime::now() + self.ctx.config.volume_refresh_period;
                self.with_entry(&key, &pk.uid, |e| e.refresh_at = Some(next));
                return None;
            }
            Err(o) => return Some(o),
        };
        let new_spec = spec_hash(pod);
        let new_volumes = volumes_hash(&resolved);
        if new_spec != entry.spec_hash || new_volumes != entry.volumes_hash {
            match self.provider.update_pod(&resolved).await {
                Ok(()) => {
                    self.ctx.metrics.backend("update", "ok");
                    if self.ctx.config.success_events.live() && new_spec != entry.spec_hash {
                        self.ctx.success_event(
                            pod.object_ref(&()),
                            "ProviderUpdateSuccess",
                            "Update pod in provider successfully".into(),
                        );
                    }
                }
                Err(e) => {
                    self.ctx.metrics.backend("update", "error");
                    self.event(
                        pod,
                        true,
                        "ProviderUpdateFailed",
                        format!("Update pod in provider failed: {e}"),
                    )
                    .await;
                    return Some(Outcome::Retry);
                }
            }
        }
        let downward = volumes::downward_inputs_hash(pod);
        self.with_entry(&key, &pk.uid, |e| {
            e.spec_hash = new_spec;
            e.volumes_hash = new_volumes;
            e.downward_hash = downward;
            e.refresh_at = refresh_at;
        });
        None
    }

    /// Changes the backend entry of one pod UID, if it is still there.
    fn with_entry(&self, key: &ObjectKey, uid: &str, change: impl FnOnce(&mut BackendEntry)) {
        let mut backend = self.backend_lock();
        if let Some(e) = backend
            .get_mut(key)
            .and_then(|es| es.iter_mut().find(|e| e.uid == uid))
        {
            change(e);
        }
    }

    /// Writes the merged status when it differs from the API's, with a UID precondition.
    async fn write_status(&self, pod: &Pod, backend_status: &PodStatus) -> Outcome {
        let now = Time(Timestamp::now());
        let new = merge_status(
            pod.status.as_ref(),
            backend_status,
            &self.ctx.config.node_ip,
            &now,
        );
        if !status_changed(pod.status.as_ref(), &new) {
            return Outcome::Settled;
        }
        let (Some(ns), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.uid.as_deref(),
        ) else {
            return Outcome::Done;
        };
        let key = (ns.to_string(), pod.name_any());
        let this_write = StatusWrite {
            uid: uid.to_string(),
            based_on: pod.metadata.resource_version.clone().unwrap_or_default(),
            backend: status_fingerprint(backend_status),
        };
        if self.written_lock().get(&key) == Some(&this_write) {
            // Our own write of this very status has not come back on the watch
            // yet; when it does, the pod is synced again against it.
            return Outcome::Done;
        }
        self.ctx.limiter.acquire().await;
        let res = writes::patch_pod_status(&self.ctx.client, ns, &pod.name_any(), uid, &new).await;
        self.ctx.metrics.api("patch", "pods/status", res.is_ok());
        match res {
            Ok(_) => {
                self.written_lock().insert(key, this_write);
                Outcome::Done
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Outcome::Done,
            Err(e) => {
                warn!(error = %e, "writing pod status failed");
                Outcome::Retry
            }
        }
    }

    /// The workload vanished from the backend while its pod should run: fail it (upstream reason `NotFound`).
    async fn write_vanished(&self, pod: &Pod) -> Outcome {
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

    /// Records an event a provider reported, on the pod it names (when that
    /// pod, with that UID, is still in the store).
    async fn provider_event(&self, ev: PodEvent) {
        let Some(pod) = self
            .store
            .get(&ObjectRef::new(&ev.key.name).within(&ev.key.namespace))
        else {
            return;
        };
        if pod.meta().uid.as_deref() != Some(ev.key.uid.as_str()) {
            return;
        }
        // The event names the pod: its metadata is all it needs.
        self.ctx
            .event(&pod.object_ref(&()), ev.warning, &ev.reason, ev.message)
            .await;
    }

    async fn event(&self, pod: &Pod, warning: bool, reason: &str, note: String) {
        self.ctx
            .event(&pod.object_ref(&()), warning, reason, note)
            .await;
    }
}

/// The pod a store entry holds, parsed; `None` (logged) when its text is not
/// a pod's.
fn readable(lean: &LeanPod) -> Option<Pod> {
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

/// Hash of what a provider can act on when a running pod's spec changes.
fn spec_hash(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(spec) = &pod.spec {
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            c.name.hash(&mut h);
            c.image.hash(&mut h);
        }
        spec.active_deadline_seconds.hash(&mut h);
    }
    h.finish()
}

/// Hash of the volume files; 0 for a pod without any.
fn volumes_hash(pod: &ResolvedPod) -> u64 {
    if pod.volumes.is_empty() {
        return 0;
    }
    let mut h = DefaultHasher::new();
    for (name, v) in &pod.volumes {
        name.hash(&mut h);
        v.files.hash(&mut h);
    }
    h.finish()
}
