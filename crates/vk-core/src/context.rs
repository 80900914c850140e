//! What every controller of one node shares: the API client, the node's settings,
//! the process-wide rate limiter, metrics and the event recorder.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Taint};
use k8s_openapi::api::events::v1::Event as ApiEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::ObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::SuccessEvents;
use crate::leader::Fence;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Settings of one virtual node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name.
    pub name: String,
    /// Its InternalIP (what the apiserver dials for logs and exec).
    pub node_ip: String,
    /// Port of the kubelet HTTPS API (`status.daemonEndpoints`).
    pub kubelet_port: u16,
    /// The taint every pod must tolerate, `None` when disabled.
    pub taint: Option<Taint>,
    /// `kubernetes.io/os` label: `linux` unless the provider says otherwise.
    pub os: String,
    /// Extra node labels from the command line.
    pub labels: Vec<(String, String)>,
    /// Number of pods synced at once.
    pub pod_sync_workers: usize,
    /// How often every pod is reconciled even without events.
    pub full_resync_period: Duration,
    /// How often the files of configMap, secret, projected and downwardAPI
    /// volumes are re-materialised to follow their objects (pods with such volumes only).
    pub volume_refresh_period: Duration,
    /// Cluster domain for DNS (kept for providers that configure DNS).
    pub cluster_domain: String,
    /// Which `Provider*Success` events to record (`--success-events`).
    pub success_events: SuccessEvents,
    /// How long one provider call may take (`--provider-call-timeout`);
    /// a deletion gets its grace period on top.
    pub provider_call_timeout: Duration,
    /// The node works with its own credentials (`--bootstrap-kubeconfig`),
    /// under NodeRestriction: labels a node may not set on itself are left out.
    pub node_restricted: bool,
    /// The write check of `--leader-elect` ([`Fence::open`] without it):
    /// every API write and backend mutation of the node asks it first.
    pub fence: Fence,
}

/// The shared context of one node's controllers.
pub struct NodeContext {
    /// API client (shared by every node of the process).
    pub client: Client,
    /// This node's settings.
    pub config: NodeConfig,
    /// The process-wide API rate limiter.
    pub limiter: Arc<RateLimiter>,
    /// The process-wide rate limiter of events (their own budget, as the kubelet's).
    event_limiter: Arc<RateLimiter>,
    /// Process-wide metrics.
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The queue of [`NodeContext::success_event`], with its sender task
    /// started on first use.
    success_events: OnceLock<mpsc::UnboundedSender<PendingEvent>>,
}

/// Success events wait until the API client has been this long without a
/// request of the main budget...
pub const EVENTS_YIELD: Duration = Duration::from_millis(250);
/// ...but no longer than this after they were raised.
pub const EVENTS_MAX_DELAY: Duration = Duration::from_secs(30);
/// Success events in flight at once. Each is one short POST, so a few
/// carry the whole event budget; each one more can be one more pooled
/// connection, with its TLS and read buffers, held for the pool's idle time.
const EVENTS_IN_FLIGHT: usize = 8;

/// A success event waiting for its turn: what it is made from (an
/// `events.k8s.io/v1` Event is about a kilobyte of mostly empty fields, and
/// a burst of 10,000 pods queues 10,000 of these).
struct PendingEvent {
    object: ObjectReference,
    reason: &'static str,
    note: String,
    /// When it happened (its `eventTime`).
    at: Timestamp,
    raised: Instant,
}

/// Sends the queued success events in order (see [`NodeContext::success_event`]),
/// until the context is gone.
async fn send_success_events(
    ctx: std::sync::Weak<NodeContext>,
    mut queue: mpsc::UnboundedReceiver<PendingEvent>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT));
    while let Some(pending) = queue.recv().await {
        let Some((limiter, event_limiter)) = ctx
            .upgrade()
            .map(|c| (c.limiter.clone(), c.event_limiter.clone()))
        else {
            return;
        };
        limiter
            .wait_quiet(EVENTS_YIELD, pending.raised + EVENTS_MAX_DELAY)
            .await;
        event_limiter.acquire().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(ctx) = ctx.upgrade() else { return };
        let object = format!(
            "{}/{}",
            pending.object.namespace.as_deref().unwrap_or_default(),
            pending.object.name.as_deref().unwrap_or_default()
        );
        if ctx.config.fence.check("event", object).is_err() {
            continue;
        }
        tokio::spawn(async move {
            let event = ctx.normal_event(&pending.object, pending.reason, pending.note, pending.at);
            let res = crate::pod::writes::create_event(&ctx.client, &event).await;
            ctx.metrics.api("create", "events", res.is_ok());
            if let Err(e) = res {
                tracing::debug!(reason = pending.reason, error = %e, "could not record event");
            }
            drop(permit);
        });
    }
}

impl NodeContext {
    /// A context for one node.
    pub fn new(
        client: Client,
        config: NodeConfig,
        limiter: Arc<RateLimiter>,
        event_limiter: Arc<RateLimiter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: "vk-rs".into(),
            instance: Some(config.name.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        NodeContext {
            client,
            config,
            limiter,
            event_limiter,
            metrics,
            recorder,
            success_events: OnceLock::new(),
        }
    }

    /// Records an event on an object. Failures are logged, never returned: an
    /// event is not worth failing a sync for.
    pub async fn event(&self, object: &ObjectReference, warning: bool, reason: &str, note: String) {
        self.event_limiter.acquire().await;
        let target = format!(
            "{}/{}",
            object.namespace.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default()
        );
        if self.config.fence.check("event", target).is_err() {
            return;
        }
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        let res = self.recorder.publish(&ev, object).await;
        self.metrics.api("create", "events", res.is_ok());
        if let Err(e) = res {
            tracing::debug!(reason, error = %e, "could not record event");
        }
    }

    /// Records a Normal event in the background: for the success events
    /// (`ProviderCreateSuccess`...), one per pod and reason. They must not
    /// delay the status write that follows them, and they skip the recorder's
    /// aggregation cache, which is scanned in full on every publish and holds
    /// every event of the last minutes: with thousands of pods that scan was
    /// the largest CPU cost of a sync. The event is the one the recorder
    /// would create (same name scheme and fields).
    ///
    /// They also yield to the writes that pods wait on: queued in order, each
    /// is sent once the API client has been quiet for [`EVENTS_YIELD`]
    /// (status patches, deletions, node writes), or [`EVENTS_MAX_DELAY`]
    /// after it was raised, whichever comes first. Under a burst of new pods
    /// the apiserver's capacity goes to making them Running; the events
    /// follow, at the event budget, when the burst is over.
    pub fn success_event(
        self: &Arc<Self>,
        object: ObjectReference,
        reason: &'static str,
        note: String,
    ) {
        let queue = self.success_events.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_success_events(Arc::downgrade(self), rx));
            tx
        });
        if queue
            .send(PendingEvent {
                object,
                reason,
                note,
                at: Timestamp::now(),
                raised: Instant::now(),
            })
            .is_err()
        {
            tracing::debug!(reason, "event sender stopped; event dropped");
        }
    }

    fn normal_event(
        &self,
        object: &ObjectReference,
        reason: &str,
        note: String,
        now: Timestamp,
    ) -> ApiEvent {
        let controller = "vk-rs".to_string();
        ApiEvent {
            action: Some(reason.to_string()),
            reason: Some(reason.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(object.clone()),
            note: Some(note),
            metadata: ObjectMeta {
                namespace: object.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    object.name.as_deref().unwrap_or(&controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller),
            reporting_instance: Some(self.config.name.clone()),
            type_: Some("Normal".into()),
            ..Default::default()
        }
    }
}
