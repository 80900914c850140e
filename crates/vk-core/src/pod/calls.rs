//! Every pod lifecycle call the core makes to a provider goes through
//! [`ProviderCalls`]: a timeout (a hung cloud API call must not hold a sync
//! worker forever), metrics (count by operation and result, duration), and the
//! provider's optional request budget ([`Provider::call_rate_limit`]).
//!
//! It is also where the fence of `--leader-elect` stands: every call that
//! changes the backend (create, update, volume refresh, delete, IP
//! reservation) is refused, as a retryable error, unless this replica holds
//! the node's leader Lease ([`crate::leader`]).
//!
//! It owns no state of its own beyond the budget, and must not interpret the
//! results: what an error means for a pod is decided by the sync.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use tokio::time::Instant;

use crate::leader::Fence;
use crate::metrics::{Metrics, OperationLabels};
use crate::provider::{
    BackendPod, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod, StatusNotifier,
};
use crate::ratelimit::RateLimiter;

/// The provider of one node, behind timeouts, metrics and a budget.
pub struct ProviderCalls {
    provider: Arc<dyn Provider>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    budget: Option<RateLimiter>,
    fence: Fence,
}

impl ProviderCalls {
    /// Wraps `provider`; each call may take `timeout` (plus a deletion's
    /// grace period); mutations pass `fence` first.
    pub fn new(
        provider: Arc<dyn Provider>,
        metrics: Arc<Metrics>,
        timeout: Duration,
        fence: Fence,
    ) -> Self {
        let budget = provider
            .call_rate_limit()
            .map(|l| RateLimiter::new(l.qps, l.burst));
        ProviderCalls {
            provider,
            metrics,
            timeout,
            budget,
            fence,
        }
    }

    /// The fence of the node's leader election.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Refuses a mutation when this replica does not hold the node's lease.
    fn fenced(
        &self,
        operation: &'static str,
        object: &dyn std::fmt::Display,
    ) -> ProviderResult<()> {
        self.fence.check(operation, object).map_err(|e| {
            self.metrics.backend(operation, "fenced");
            ProviderError::unavailable(e.to_string())
        })
    }

    /// The provider itself, for what is not a lifecycle call (subscriptions, names).
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// How long a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        call: impl Future<Output = ProviderResult<T>>,
    ) -> ProviderResult<T> {
        if let Some(budget) = &self.budget {
            budget.acquire().await;
        }
        let started = Instant::now();
        let (result, label) = match tokio::time::timeout(limit, call).await {
            Ok(result) => {
                let label = result_label(&result);
                (result, label)
            }
            Err(_) => {
                let message = format!("{operation} did not answer within {}s", limit.as_secs_f64());
                (Err(ProviderError::unavailable(message)), "timeout")
            }
        };
        self.metrics
            .backend_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        self.metrics.backend(operation, label);
        result
    }

    /// [`Provider::create_pod`].
    pub async fn create(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.fenced("create", &PodName(pod))?;
        self.call("create", self.timeout, self.provider.create_pod(pod))
            .await
    }

    /// [`Provider::update_pod`].
    pub async fn update(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.fenced("update", &PodName(pod))?;
        self.call("update", self.timeout, self.provider.update_pod(pod))
            .await
    }

    /// [`Provider::refresh_volumes`].
    pub async fn refresh_volumes(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        self.fenced("refresh", &PodName(pod))?;
        self.call("refresh", self.timeout, self.provider.refresh_volumes(pod))
            .await
    }

    /// [`Provider::start_ephemeral_containers`].
    pub async fn start_ephemeral(&self, pod: &ResolvedPod, new: &[String]) -> ProviderResult<()> {
        self.fenced("ephemeral", &PodName(pod))?;
        self.call(
            "ephemeral",
            self.timeout,
            self.provider.start_ephemeral_containers(pod, new),
        )
        .await
    }

    /// [`Provider::delete_pod`]; the timeout starts after the grace period.
    pub async fn delete(&self, key: &PodKey, grace: Duration) -> ProviderResult<()> {
        self.fenced("delete", key)?;
        self.call(
            "delete",
            grace.saturating_add(self.timeout),
            self.provider.delete_pod(key, grace),
        )
        .await
    }

    /// [`Provider::get_pod_status`].
    pub async fn status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        self.call("status", self.timeout, self.provider.get_pod_status(key))
            .await
    }

    /// [`Provider::became_leader`]: not fenced, it must not mutate the backend.
    pub async fn became_leader(&self) -> ProviderResult<()> {
        self.call("became_leader", self.timeout, self.provider.became_leader())
            .await
    }

    /// [`Provider::list_pods`].
    pub async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        self.call("list", self.timeout, self.provider.list_pods())
            .await
    }

    /// [`Provider::list_statuses`].
    pub async fn list_statuses(&self) -> ProviderResult<Vec<(PodKey, PodStatus)>> {
        self.call("list", self.timeout, self.provider.list_statuses())
            .await
    }

    /// [`Provider::allocate_pod_ip`].
    pub async fn allocate_pod_ip(&self, key: &PodKey) -> ProviderResult<Option<String>> {
        self.fenced("allocate_ip", key)?;
        self.call(
            "allocate_ip",
            self.timeout,
            self.provider.allocate_pod_ip(key),
        )
        .await
    }

    /// [`Provider::notify_status`]: whether the provider pushes.
    pub fn subscribe(&self, notifier: StatusNotifier) -> bool {
        self.provider.notify_status(notifier)
    }

    /// [`Provider::status_poll_interval`].
    pub fn poll_interval(&self) -> Duration {
        self.provider.status_poll_interval()
    }
}

/// A resolved pod's `namespace/name/uid`, as [`PodKey`] shows a key.
struct PodName<'a>(&'a ResolvedPod);

impl std::fmt::Display for PodName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.key() {
            Some(key) => key.fmt(f),
            None => f.write_str("(a pod without namespace, name or uid)"),
        }
    }
}

/// The `result` label of `vk_backend_calls`.
fn result_label<T>(result: &ProviderResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProviderError::NotFound(_)) => "not_found",
        Err(ProviderError::InvalidInput(_)) => "invalid",
        Err(ProviderError::NotImplemented(_)) => "not_implemented",
        Err(ProviderError::Unavailable { .. }) => "error",
    }
}
