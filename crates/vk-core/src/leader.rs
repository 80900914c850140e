//! Leader election per node (`--leader-elect`): a hot standby replica.
//!
//! Two or more replicas serve the same node; a `coordination.k8s.io/v1`
//! Lease of their own (not the node's heartbeat Lease in `kube-node-lease`)
//! says which one acts. The semantics are client-go's `leaderelection`:
//!
//! - a replica takes the Lease when it is free (no holder, released) or
//!   when the record it last saw has not changed for `leaseDurationSeconds`
//!   of its own clock (never the holder's timestamps: clocks may differ);
//! - the holder renews every retry period, and gives up when it could not
//!   renew for the renew deadline;
//! - `leaseTransitions` counts the changes of holder; the value a replica
//!   wrote when it took the Lease is its term;
//! - on a graceful stop the holder releases the Lease (no holder,
//!   `leaseDurationSeconds: 1`), so the standby takes it at once.
//!
//! [`Fence`] is what the writers ask: every backend mutation and every API
//! write of the node checks it first, and it refuses unless this replica
//! holds the Lease and its last renewal is fresh (younger than the lease
//! duration minus [`SAFETY_MARGIN`], measured from when the renewal was
//! sent). A leader that lost the Lease therefore stops writing at once, even
//! before its election loop notices. Each write the fence allows is logged
//! on the `vk_audit` target with the replica's identity and term, so a test
//! (or an operator) can hold the writes against the Lease's history.
//!
//! This module owns the election Lease and the fence; it must not write
//! anything else.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use futures::StreamExt;

/// How much earlier than the lease duration a holder stops trusting its last
/// renewal: room for the time the renewal took to reach the apiserver and
/// for clocks that run at slightly different rates.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(2);

/// Timings of one election, client-go's defaults unless the flags say otherwise.
#[derive(Clone, Debug)]
pub struct Timings {
    /// How long a standby waits without a change of the record before it
    /// takes the Lease (`leaseDurationSeconds`, 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby tries (2 s).
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Which Lease one node's replicas compete for, and who this replica is.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's `holderIdentity` (unique per process).
    pub identity: String,
    /// Durations.
    pub timings: Timings,
}

/// A unique identity for this process: hostname, pid and a random suffix
/// (a restarted process, or a pod with the same name, is another holder).
pub fn replica_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    format!(
        "{host}_{}_{:08x}",
        std::process::id(),
        hasher.finish() as u32
    )
}

/// The term this replica holds the Lease in.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    /// `leaseTransitions` as written when the Lease was taken.
    transitions: i32,
    /// Until when the last renewal is trusted.
    fresh_until: Instant,
}

/// A write refused because this replica does not hold the Lease (or its
/// last renewal is too old to trust).
#[derive(Debug, thiserror::Error)]
#[error("not writing {op} {object}: this replica does not hold the node's leader lease")]
pub struct NotLeader {
    op: &'static str,
    object: String,
}

#[derive(Debug)]
struct Shared {
    identity: String,
    term: watch::Sender<Option<Term>>,
}

/// The check every writer of a node makes before it writes. Cheap to clone.
/// Without leader election ([`Fence::open`]) it allows everything.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    shared: Option<Arc<Shared>>,
}

impl Fence {
    /// A fence that allows every write: one replica, no election.
    pub fn open() -> Fence {
        Fence { shared: None }
    }

    /// A closed fence for the replica `identity`, opened by its [`Elector`].
    pub fn closed(identity: &str) -> Fence {
        let (term, _) = watch::channel(None);
        Fence {
            shared: Some(Arc::new(Shared {
                identity: identity.to_string(),
                term,
            })),
        }
    }

    /// Whether this fence is guarded by an election.
    pub fn elected(&self) -> bool {
        self.shared.is_some()
    }

    /// Allows the write `op` on `object` when this replica holds a fresh
    /// Lease, and records it on the `vk_audit` target; refuses it otherwise.
    pub fn check(&self, op: &'static str, object: impl fmt::Display) -> Result<(), NotLeader> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let term = shared.term.borrow().clone();
        match term {
            Some(t) if Instant::now() < t.fresh_until => {
                info!(
                    target: "vk_audit",
                    identity = %shared.identity,
                    term = t.transitions,
                    op,
                    object = %object,
                    "write"
                );
                Ok(())
            }
            _ => {
                warn!(identity = %shared.identity, op, object = %object, "write refused: not the leader");
                Err(NotLeader {
                    op,
                    object: object.to_string(),
                })
            }
        }
    }

    /// Whether this replica may write now (no audit record).
    pub fn is_leader(&self) -> bool {
        match &self.shared {
            None => true,
            Some(s) => s
                .term
                .borrow()
                .as_ref()
                .is_some_and(|t| Instant::now() < t.fresh_until),
        }
    }

    /// Waits until this replica holds the Lease (at once without election).
    pub async fn acquired(&self) {
        let Some(shared) = &self.shared else { return };
        let mut rx = shared.term.subscribe();
        let _ = rx.wait_for(|t| t.is_some()).await;
    }

    /// Makes this replica the leader in `term` for `fresh` (tests of the writers).
    #[cfg(test)]
    pub(crate) fn lead_for(&self, term: i32, fresh: Duration) {
        self.set(Some(Term {
            transitions: term,
            fresh_until: Instant::now() + fresh,
        }));
    }

    fn set(&self, term: Option<Term>) {
        if let Some(s) = &self.shared {
            s.term.send_replace(term);
        }
    }
}

/// The record as last seen, and when it was first seen so (local clock).
#[derive(Clone, Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration: Duration,
    at: Instant,
}

/// Runs the election of one node's Lease and opens or closes its [`Fence`].
pub struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    fence: Fence,
    observed: Mutex<Option<Observed>>,
    released: Notify,
}

/// How an election loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` was cancelled (the Lease is released by [`Elector::release`]).
    Stopped,
    /// This replica held the Lease and lost it: it must stop acting.
    Lost,
}

impl Elector {
    /// An elector for `config`; its fence starts closed.
    pub fn new(client: kube::Client, config: ElectionConfig) -> Arc<Elector> {
        let fence = Fence::closed(&config.identity);
        Arc::new(Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            fence,
            observed: Mutex::new(None),
            released: Notify::new(),
        })
    }

    /// The fence this election opens.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Campaigns, then renews, until `stop` or until the Lease is lost.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Ended {
        let watch = tokio::spawn(self.clone().watch_lease());
        let ended = tokio::select! {
            ended = self.campaign_and_hold() => ended,
            _ = stop.cancelled() => Ended::Stopped,
        };
        watch.abort();
        ended
    }

    async fn campaign_and_hold(&self) -> Ended {
        let t = &self.config.timings;
        let lease = format!("{}/{}", self.config.namespace, self.config.name);
        // Standby: try every retry period, at the moment the record we saw
        // expires, and at once when the watch shows the Lease released.
        let mut last_renewed;
        loop {
            let started = Instant::now();
            // A hung request must not hold the campaign: one attempt may take a renew deadline.
            match tokio::time::timeout(t.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Some(transitions))) => {
                    self.fence.set(Some(Term {
                        transitions,
                        fresh_until: started + t.lease_duration.saturating_sub(SAFETY_MARGIN),
                    }));
                    info!(lease = %lease, identity = %self.config.identity, term = transitions, "became the leader");
                    last_renewed = started;
                    break;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => debug!(lease = %lease, error = %e, "leader election attempt failed"),
                Err(_) => debug!(lease = %lease, "leader election attempt timed out"),
            }
            let expiry = self
                .observed_now()
                .map(|o| o.at + o.duration + Duration::from_millis(10));
            let next = match expiry {
                Some(e) if e > Instant::now() => (Instant::now() + t.retry_period).min(e),
                _ => Instant::now() + t.retry_period,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.released.notified() => {}
            }
        }
        // Leader: renew every retry period; give up after the renew deadline
        // (a renewal still hanging then counts as failed).
        loop {
            tokio::time::sleep(t.retry_period).await;
            let started = Instant::now();
            let attempt = tokio::time::timeout_at(
                last_renewed + t.renew_deadline,
                self.try_acquire_or_renew(),
            )
            .await;
            let attempt = match attempt {
                Ok(result) => result,
                Err(_) => {
                    self.fence.set(None);
                    warn!(lease = %lease, identity = %self.config.identity, "leader lease not renewed within the renew deadline: stopped acting");
                    return Ended::Lost;
                }
            };
            match attempt {
                Ok(Some(transitions)) => {
                    last_renewed = started;
                    self.fence.set(Some(Term {
                        transitions,
                        fresh_until: started + t.lease_duration.saturating_sub(SAFETY_MARGIN),
                    }));
                }
                Ok(None) => {
                    self.fence.set(None);
                    warn!(lease = %lease, identity = %self.config.identity, "another replica holds the lease now: stopped acting");
                    return Ended::Lost;
                }
                Err(e) => {
                    warn!(lease = %lease, error = %e, "renewing the leader lease failed");
                    if last_renewed.elapsed() >= t.renew_deadline {
                        self.fence.set(None);
                        warn!(lease = %lease, identity = %self.config.identity, "leader lease not renewed within the renew deadline: stopped acting");
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    fn observed_now(&self) -> Option<Observed> {
        self.observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes the record; the observation time moves only when it changed.
    fn observe(&self, spec: Option<&LeaseSpec>) -> Observed {
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        let transitions = spec.and_then(|s| s.lease_transitions);
        let duration = Duration::from_secs(
            spec.and_then(|s| s.lease_duration_seconds)
                .unwrap_or(0)
                .max(0) as u64,
        );
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        let same = observed.as_ref().is_some_and(|o| {
            o.holder == holder && o.renew_time == renew_time && o.transitions == transitions
        });
        if !same {
            // A renewal only moves the expiry later; a released Lease is
            // free at once: wake the standby for that.
            if holder.is_none() {
                self.released.notify_one();
            }
            *observed = Some(Observed {
                holder,
                renew_time,
                transitions,
                duration,
                at: Instant::now(),
            });
        }
        observed.clone().unwrap_or(Observed {
            holder: None,
            renew_time: None,
            transitions: None,
            duration,
            at: Instant::now(),
        })
    }

    /// Watches the Lease so that a standby sees each renewal when it
    /// happens: its expiry is then counted from the holder's last renewal,
    /// not from the next poll after it.
    async fn watch_lease(self: Arc<Self>) {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", self.config.name));
        let stream = watcher(self.api.clone(), cfg)
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(lease) => {
                    self.observe(lease.spec.as_ref());
                }
                Err(e) => debug!(error = %e, "leader lease watch failed; retrying"),
            }
        }
    }

    /// One attempt: `Some(term)` when this replica holds the Lease after it.
    async fn try_acquire_or_renew(&self) -> Result<Option<i32>, kube::Error> {
        let me = &self.config.identity;
        let duration_secs = self.config.timings.lease_duration.as_secs().max(1) as i32;
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            // Created by another replica at the same moment: a 409, an
            // error like any other (the next attempt reads its record).
            return self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| Some(0));
        };
        let observed = self.observe(lease.spec.as_ref());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let held_by_me = observed.holder.as_deref() == Some(me.as_str());
        if !held_by_me
            && observed.holder.is_some()
            && Instant::now() < observed.at + observed.duration
        {
            return Ok(None);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        if !held_by_me {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(transitions + 1);
        }
        spec.holder_identity = Some(me.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        let term = spec.lease_transitions.unwrap_or(0);
        // The resourceVersion of the read makes this a compare-and-swap:
        // of two replicas taking the same record, one gets a conflict (an
        // error: a holder retries until its renew deadline, and the next
        // read says whether someone else holds the Lease now).
        let written = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        self.observe(written.spec.as_ref());
        Ok(Some(term))
    }

    /// Closes the fence and, when this replica holds the Lease, releases it
    /// as client-go's `ReleaseOnCancel` does (no holder, duration 1 s), so a
    /// standby takes over without waiting out the lease duration.
    pub async fn release(&self) {
        let held = self.fence.is_leader();
        self.fence.set(None);
        if !held {
            return;
        }
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "could not read the leader lease to release it");
                return;
            }
        };
        let mut lease = lease;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %format!("{}/{}", self.config.namespace, self.config.name), "leader lease released")
            }
            Err(e) => {
                warn!(error = %e, "releasing the leader lease failed; the standby takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_open_fence_allows_and_a_closed_one_refuses() {
        assert!(Fence::open().check("create", "ns/a").is_ok());
        let fence = Fence::closed("me");
        assert!(fence.check("create", "ns/a").is_err());
        fence.set(Some(Term {
            transitions: 3,
            fresh_until: Instant::now() + Duration::from_secs(13),
        }));
        assert!(fence.check("create", "ns/a").is_ok());
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(fence.check("create", "ns/a").is_ok());
        // A renewal older than the lease duration minus the margin is not trusted.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fence.check("create", "ns/a").is_err());
        assert!(!fence.is_leader());
    }

    #[tokio::test(start_paused = true)]
    async fn acquired_waits_for_a_term() {
        let fence = Fence::closed("me");
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.acquired().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        fence.set(Some(Term {
            transitions: 0,
            fresh_until: Instant::now() + Duration::from_secs(13),
        }));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("acquired() returned")
            .expect("task ran");
    }

    #[test]
    fn identities_differ_per_call() {
        let a = replica_identity();
        let b = replica_identity();
        assert_ne!(a, b);
        assert!(a.contains(&format!("_{}_", std::process::id())));
    }
}
