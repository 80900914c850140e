//! The pod controller of one node: a watch on `spec.nodeName=<node>`, a work
//! queue and its workers, and the tasks that keep the backend view current
//! (adoption at start, pushed statuses, the periodic list).
//!
//! It wires the pieces and owns no decision: what a sync does is in
//! [`super::sync`] and [`super::decide`], what the backend holds in
//! [`super::backend`], how a pod is resolved in [`super::resolve`], what is
//! written back in [`super::report`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::backend::BackendView;
pub use super::backend::ObjectKey;
use super::calls::ProviderCalls;
use super::lean::LeanPod;
use super::queue::{Backoff, WorkQueue};
use super::report::{ApiWriter, PodWriter, Reporter};
use super::resolve::Resolver;
use super::sync::{Outcome, Syncer, readable};
use super::volumes::ObjectSource;
use crate::context::{NodeConfig, NodeContext};
use crate::metrics::Metrics;
use crate::provider::{PodEvent, Provider, StatusNotifier};

/// The pod controller of one node.
pub struct PodController {
    node: String,
    workers: usize,
    full_resync_period: Duration,
    metrics: Arc<Metrics>,
    sync: Syncer,
    writer: Mutex<Option<reflector::store::Writer<LeanPod>>>,
}

/// The watch events the controller consumes (a `kube` watcher in production).
pub type WatchEvent = Result<watcher::Event<LeanPod>, watcher::Error>;

impl PodController {
    /// A controller for the node in `ctx`, backed by `provider`.
    pub fn new(
        ctx: Arc<NodeContext>,
        provider: Arc<dyn Provider>,
        objects: Arc<dyn ObjectSource>,
    ) -> Arc<Self> {
        let api = Arc::new(ApiWriter::new(ctx.clone()));
        PodController::with_parts(&ctx.config, ctx.metrics.clone(), api, objects, provider)
    }

    /// A controller from its parts: what it writes to the API through `api`,
    /// reads through `objects`, and runs on `provider`.
    pub fn with_parts(
        config: &NodeConfig,
        metrics: Arc<Metrics>,
        api: Arc<dyn PodWriter>,
        objects: Arc<dyn ObjectSource>,
        provider: Arc<dyn Provider>,
    ) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let calls = Arc::new(ProviderCalls::new(
            provider,
            metrics.clone(),
            config.provider_call_timeout,
            config.fence.clone(),
        ));
        Arc::new(PodController {
            node: config.name.clone(),
            workers: config.pod_sync_workers.max(1),
            full_resync_period: config.full_resync_period,
            metrics: metrics.clone(),
            sync: Syncer {
                store,
                backend: Arc::new(BackendView::new(metrics)),
                calls,
                resolver: Resolver::new(
                    objects,
                    config.node_ip.clone(),
                    config.volume_refresh_period,
                ),
                reporter: Reporter::new(api, config.node_ip.clone()),
                queue: WorkQueue::new(Backoff::default()),
                success_events: config.success_events,
                admission: Default::default(),
            },
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Sets node allocatable, used for `resourceFieldRef` limits left unset.
    pub fn set_node_allocatable(&self, alloc: BTreeMap<String, String>) {
        self.sync.resolver.set_node_allocatable(alloc);
    }

    /// A pod of this node by namespace and name, as the API shows it.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        let lean = self
            .sync
            .store
            .get(&ObjectRef::new(name).within(namespace))?;
        readable(&lean)
    }

    /// Pods of this node as the API shows them (for the kubelet API's `/pods`).
    pub fn api_pods(&self) -> Vec<Pod> {
        self.sync
            .store
            .state()
            .iter()
            .filter_map(|lean| readable(lean))
            .collect()
    }

    /// Runs until `stop` is cancelled, watching this node's pods in the API.
    pub async fn run(
        self: Arc<Self>,
        client: kube::Client,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        // Kept lean (see `lean`): parsed when a sync reads the pod.
        let api: Api<LeanPod> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        self.serve(watcher(api, cfg), stop).await
    }

    /// Runs on the given watch events until `stop` is cancelled: the store,
    /// adoption once the initial list is in, workers, status intake, resync.
    pub async fn serve(
        self: Arc<Self>,
        watch: impl Stream<Item = WatchEvent> + Send + 'static,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("pod controller for {} started twice", self.node))?;
        let (init_tx, mut init_rx) = mpsc::channel::<()>(1);
        let watch_task = self.spawn_watch(reflector::reflector(writer, watch), init_tx);

        // Adopt what the backend already runs before any worker may create anything.
        tokio::select! {
            _ = init_rx.recv() => {}
            _ = stop.cancelled() => { watch_task.abort(); return Ok(()); }
        }
        // A standby (`--leader-elect`) stops here, its store kept current by
        // the watch, until it holds the node's lease: then it adopts what
        // the previous leader left running.
        let fence = self.sync.calls.fence().clone();
        if fence.elected() {
            info!(node = %self.node, "standing by: pods watched, nothing written until this replica leads");
            tokio::select! {
                _ = fence.acquired() => {}
                _ = stop.cancelled() => { watch_task.abort(); return Ok(()); }
            }
            self.took_over().await;
        }
        self.adopt().await;

        let (notifier, mut updates) = StatusNotifier::channel();
        let (event_tx, mut pod_events) = mpsc::unbounded_channel::<PodEvent>();
        let pushes = self.sync.calls.subscribe(notifier.with_events(event_tx));
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
                    if let Some(key) = this.sync.backend.intake(update) {
                        this.sync.queue.add(key);
                    }
                }
            })
        };
        let poll_every = if pushes {
            self.full_resync_period
        } else {
            self.sync.calls.poll_interval()
        };
        let poller = self.every(poll_every, |this| async move { this.poll().await });
        let resync = self.every(self.full_resync_period, |this| async move {
            for pod in this.sync.store.state() {
                if let Some(ns) = pod.namespace() {
                    this.sync.queue.add((ns, pod.name_any()));
                }
            }
        });
        let workers: Vec<_> = (0..self.workers)
            .map(|_| tokio::spawn(self.clone().work()))
            .collect();
        info!(node = %self.node, pushes, "pod controller running");
        stop.cancelled().await;
        self.sync.queue.shutdown();
        for t in [watch_task, intake, provider_events, poller, resync] {
            t.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        Ok(())
    }

    /// Feeds the store and queues every pod the watch shows changing.
    fn spawn_watch(
        &self,
        stream: impl Stream<Item = WatchEvent> + Send + 'static,
        init_done: mpsc::Sender<()>,
    ) -> JoinHandle<()> {
        let queue = self.sync.queue.clone();
        tokio::spawn(
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
                            let _ = init_done.try_send(());
                        }
                        Ok(watcher::Event::Init) => {}
                        Err(e) => {
                            warn!(error = %e, "pod watch failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            .instrument(info_span!("pod_watch", node = %self.node)),
        )
    }

    /// Runs `tick` every `period` (first after one period), until aborted.
    fn every<F, Fut>(self: &Arc<Self>, period: Duration, tick: F) -> JoinHandle<()>
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.tick().await;
            loop {
                interval.tick().await;
                tick(this.clone()).await;
            }
        })
    }

    /// One sync worker: takes keys until the queue shuts down.
    async fn work(self: Arc<Self>) {
        let queue = &self.sync.queue;
        while let Some(key) = queue.next().await {
            let started = Instant::now();
            let span = info_span!("pod_sync", pod = %format!("{}/{}", key.0, key.1));
            let outcome = self.sync.sync(&key).instrument(span).await;
            self.metrics
                .sync_seconds
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Outcome::Done | Outcome::Settled => queue.forget(&key),
                Outcome::Retry(None) => {
                    let delay = queue.add_rate_limited(key.clone());
                    debug!(pod = %format!("{}/{}", key.0, key.1), ?delay, "sync will be retried");
                }
                Outcome::Retry(Some(after)) => {
                    let delay = queue.add_retry_after(key.clone(), after);
                    debug!(pod = %format!("{}/{}", key.0, key.1), ?delay, "sync will be retried when the backend asked");
                }
            }
            queue.done(&key);
            self.metrics.queue_depth.set(queue.len() as i64);
        }
    }

    /// Lets the provider reload what the previous leader changed (retried
    /// until it answers: adopting a stale view would recreate workloads).
    async fn took_over(&self) {
        loop {
            match self.sync.calls.became_leader().await {
                Ok(()) => return,
                Err(e) => {
                    let wait = e.retry_hint().unwrap_or(Duration::from_secs(2));
                    warn!(error = %e, ?wait, "the provider could not take over the backend; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Fills the backend view from the provider and queues every pod it holds, so
    /// the sync adopts matching ones and removes orphans.
    async fn adopt(&self) {
        loop {
            match self.sync.calls.list_pods().await {
                Ok(pods) => {
                    let n = pods.len();
                    for key in self.sync.backend.adopt(pods) {
                        self.sync.queue.add(key);
                    }
                    info!(node = %self.node, pods = n, "adopted the backend's pods");
                    return;
                }
                Err(e) => {
                    let wait = e.retry_hint().unwrap_or(Duration::from_secs(2));
                    warn!(error = %e, ?wait, "listing backend pods failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Lists the backend and queues every pod whose status changed or whose
    /// workload is gone (the fallback for providers that do not push).
    async fn poll(&self) {
        let asked = Instant::now();
        match self.sync.calls.list_statuses().await {
            Ok(listed) => {
                for key in self.sync.backend.reconcile(listed, asked) {
                    self.sync.queue.add(key);
                }
            }
            Err(e) => debug!(error = %e, "backend reconcile failed"),
        }
    }

    /// Records an event a provider reported, on the pod it names (when that
    /// pod, with that UID, is still in the store).
    async fn provider_event(&self, ev: PodEvent) {
        let Some(pod) = self
            .sync
            .store
            .get(&ObjectRef::new(&ev.key.name).within(&ev.key.namespace))
        else {
            return;
        };
        if pod.meta().uid.as_deref() != Some(ev.key.uid.as_str()) {
            return;
        }
        // The event names the pod: its metadata is all it needs.
        self.sync
            .reporter
            .api()
            .event(&pod.object_ref(&()), ev.warning, &ev.reason, ev.message)
            .await;
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
