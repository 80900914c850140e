//! The backend view of one node: which workloads the provider holds, by pod
//! namespace/name and UID, with their last known status and what the core
//! last pushed to them.
//!
//! Fed by adoption (the first list after a start), by pushed status updates
//! and by the periodic list; read and amended by the sync. It never calls the
//! provider or the API itself: every function returns the pod keys that need
//! a sync, and the controller queues them.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};

use crate::metrics::Metrics;
use crate::provider::{BackendPod, PodKey, ResolvedPod, StatusUpdate};

/// Namespace and name of a pod: the unit of work.
pub type ObjectKey = (String, String);

/// The object key of a backend identity.
pub fn object_key(key: &PodKey) -> ObjectKey {
    (key.namespace.clone(), key.name.clone())
}

/// What the backend holds for one pod UID.
#[derive(Debug, Clone)]
pub struct BackendEntry {
    /// The UID of the pod the workload was created for.
    pub uid: String,
    /// The last status the backend reported. Shared, not copied: a sync
    /// reads the entry several times.
    pub status: Option<Arc<PodStatus>>,
    /// [`spec_hash`] of the pod the backend last received.
    pub spec_hash: u64,
    /// [`volumes_hash`] of the files the backend last received; 0: none, or not known.
    pub volumes_hash: u64,
    /// `volumes::downward_inputs_hash` of the pod the files were made from.
    pub downward_hash: u64,
    /// When the volume files must be re-materialised: a token's renewal, or
    /// the next `--volume-refresh-period` for files that follow ConfigMaps
    /// and Secrets. `None`: never without a change to the pod.
    pub refresh_at: Option<SystemTime>,
    /// When the pod's `activeDeadlineSeconds` runs out (from the pod the
    /// last sync read): a settled pod is synced again from then on.
    pub deadline_at: Option<SystemTime>,
    /// When the queued re-sync for `refresh_at` or `deadline_at` fires, so that the syncs in
    /// between (watch events, resyncs) do not queue a timer each.
    pub timer: Option<Instant>,
    /// When the entry was made: a list of the backend that started before
    /// then may not show the workload yet, and proves nothing about it.
    pub since: Instant,
    /// Counts the backend statuses this entry has held.
    pub status_gen: u64,
    /// The pod's resourceVersion and the `status_gen` at which a sync last
    /// found nothing to do: until either changes (or `refresh_at` comes), a
    /// sync of the pod has nothing to do either and skips reading it.
    pub settled: Option<(String, u64)>,
    /// The ephemeral containers this process handed to the provider (or
    /// that the provider refused): each is handed over once.
    pub ephemeral: BTreeSet<String>,
    /// The statuses of the ephemeral containers the provider refused, which
    /// the backend does not report: the core writes them itself.
    pub ephemeral_refused: Vec<ContainerStatus>,
}

impl BackendEntry {
    /// An entry for a workload just created or adopted.
    pub fn new(uid: String, status: Option<Arc<PodStatus>>, spec_hash: u64) -> BackendEntry {
        BackendEntry {
            uid,
            status,
            spec_hash,
            volumes_hash: 0,
            downward_hash: 0,
            refresh_at: None,
            deadline_at: None,
            timer: None,
            since: Instant::now(),
            status_gen: 0,
            settled: None,
            ephemeral: BTreeSet::new(),
            ephemeral_refused: Vec::new(),
        }
    }
}

/// The table of one node's backend workloads.
pub struct BackendView {
    table: Mutex<HashMap<ObjectKey, Vec<BackendEntry>>>,
    /// Workloads that vanished from the backend while their pod should run:
    /// the next sync fails the pod with reason `NotFound`.
    vanished: Mutex<HashSet<PodKey>>,
    metrics: Arc<Metrics>,
}

impl BackendView {
    /// An empty view; `metrics.backend_pods` follows its size.
    pub fn new(metrics: Arc<Metrics>) -> BackendView {
        BackendView {
            table: Mutex::default(),
            vanished: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Vec<BackendEntry>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn vanished(&self) -> MutexGuard<'_, HashSet<PodKey>> {
        self.vanished.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in the backend's workloads at start-up. What files they hold is
    /// not known (and their objects or tokens may have changed while this
    /// process was down): each is due for a refresh at once, which pushes
    /// files only when the pod has any. Returns the keys to sync: matching
    /// pods are adopted, orphans removed.
    pub fn adopt(&self, pods: Vec<BackendPod>) -> Vec<ObjectKey> {
        let mut keys = Vec::with_capacity(pods.len());
        let mut table = self.lock();
        self.metrics.backend_pods.inc_by(pods.len() as i64);
        for bp in pods {
            let key = object_key(&bp.key);
            let mut entry =
                BackendEntry::new(bp.key.uid, Some(Arc::new(bp.status)), spec_hash(&bp.pod));
            entry.refresh_at = Some(SystemTime::UNIX_EPOCH);
            table.entry(key.clone()).or_default().push(entry);
            keys.push(key);
        }
        keys
    }

    /// Takes in a status pushed by the provider (or found by a list). Returns
    /// the key to sync, or `None` when the workload is not one the view knows.
    pub fn intake(&self, update: StatusUpdate) -> Option<ObjectKey> {
        let key = object_key(&update.key);
        let mut table = self.lock();
        let entry = table
            .get_mut(&key)?
            .iter_mut()
            .find(|e| e.uid == update.key.uid)?;
        match update.status {
            Some(s) => {
                entry.status = Some(s);
                entry.status_gen += 1;
            }
            None => {
                self.remove_locked(&mut table, &key, &update.key.uid);
                drop(table);
                self.vanished().insert(update.key);
            }
        }
        Some(key)
    }

    /// Compares a full list of the backend, asked for at `asked`, with the
    /// view: changed statuses are taken in, and workloads missing from the
    /// list are gone, unless they were created after the list was asked for
    /// (a slow list, a create that finished meanwhile). Returns the keys to sync.
    pub fn reconcile(&self, listed: Vec<(PodKey, PodStatus)>, asked: Instant) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        let mut seen = HashSet::with_capacity(listed.len());
        for (key, status) in listed {
            let changed = self
                .lock()
                .get(&object_key(&key))
                .and_then(|es| es.iter().find(|e| e.uid == key.uid))
                .is_some_and(|e| e.status.as_deref() != Some(&status));
            seen.insert(key.clone());
            if changed {
                let update = StatusUpdate {
                    key,
                    status: Some(Arc::new(status)),
                };
                keys.extend(self.intake(update));
            }
        }
        for key in self
            .keys_older_than(asked)
            .into_iter()
            .filter(|k| !seen.contains(k))
        {
            keys.extend(self.intake(StatusUpdate { key, status: None }));
        }
        keys
    }

    /// The entry of one pod UID.
    pub fn entry(&self, key: &ObjectKey, uid: &str) -> Option<BackendEntry> {
        self.lock()
            .get(key)
            .and_then(|es| es.iter().find(|e| e.uid == uid).cloned())
    }

    /// The UIDs the backend holds under `key` other than `uid`: workloads of
    /// pods deleted (or recreated) while nobody removed them.
    pub fn stale_uids(&self, key: &ObjectKey, uid: Option<&str>) -> Vec<String> {
        self.lock()
            .get(key)
            .map(|es| {
                es.iter()
                    .filter(|e| Some(e.uid.as_str()) != uid)
                    .map(|e| e.uid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a workload the provider just created.
    pub fn insert(&self, key: ObjectKey, entry: BackendEntry) {
        self.lock().entry(key).or_default().push(entry);
        self.metrics.backend_pods.inc();
    }

    /// Forgets the workload of `uid` under `key` (deleted, or gone).
    pub fn remove(&self, key: &ObjectKey, uid: &str) {
        self.remove_locked(&mut self.lock(), key, uid);
    }

    /// Counts the `vk_backend_pods` gauge down rather than re-summing it: it
    /// is the process's (every node's), and a sum per call would be
    /// quadratic in the node's pods.
    fn remove_locked(
        &self,
        table: &mut HashMap<ObjectKey, Vec<BackendEntry>>,
        key: &ObjectKey,
        uid: &str,
    ) {
        let Some(es) = table.get_mut(key) else {
            return;
        };
        let before = es.len();
        es.retain(|e| e.uid != uid);
        self.metrics.backend_pods.dec_by((before - es.len()) as i64);
        if es.is_empty() {
            table.remove(key);
        }
    }

    /// Changes the entry of one pod UID, if it is still there.
    pub fn amend(&self, key: &ObjectKey, uid: &str, change: impl FnOnce(&mut BackendEntry)) {
        if let Some(e) = self
            .lock()
            .get_mut(key)
            .and_then(|es| es.iter_mut().find(|e| e.uid == uid))
        {
            change(e);
        }
    }

    /// Whether the workload of `key` vanished since the last call (and forgets it).
    pub fn take_vanished(&self, key: &PodKey) -> bool {
        self.vanished().remove(key)
    }

    /// Whether the pod is as the last sync that found nothing to do left it
    /// (see [`BackendEntry::settled`]): the periodic resync of an idle node
    /// then costs a lookup per pod, not a parse and a status comparison.
    pub fn settled(&self, key: &ObjectKey, uid: &str, resource_version: &str) -> bool {
        self.lock()
            .get(key)
            .and_then(|es| es.iter().find(|e| e.uid == uid))
            .is_some_and(|e| {
                e.settled
                    .as_ref()
                    .is_some_and(|(rv, g)| rv == resource_version && *g == e.status_gen)
                    && e.refresh_at.is_none_or(|t| t > SystemTime::now())
                    && e.deadline_at.is_none_or(|t| t > SystemTime::now())
            })
    }

    /// Records a re-sync timer firing at `deadline`; `false` when one that
    /// fires no later is already pending (the pod needs no second one).
    pub fn arm_timer(&self, key: &ObjectKey, uid: &str, deadline: Instant) -> bool {
        let mut armed = false;
        self.amend(key, uid, |e| {
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

    /// The identity of every workload the view took in before `at`.
    fn keys_older_than(&self, at: Instant) -> Vec<PodKey> {
        self.lock()
            .iter()
            .flat_map(|((ns, name), es)| {
                es.iter().filter(|e| e.since < at).map(|e| PodKey {
                    namespace: ns.clone(),
                    name: name.clone(),
                    uid: e.uid.clone(),
                })
            })
            .collect()
    }
}

/// Hash of what a provider can act on when a running pod's spec changes.
pub fn spec_hash(pod: &Pod) -> u64 {
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
pub fn volumes_hash(pod: &ResolvedPod) -> u64 {
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
