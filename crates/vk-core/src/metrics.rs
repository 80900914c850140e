//! Prometheus metrics of the runtime: queue depth, sync latency, API and backend calls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an API call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Verb: get, create, patch, delete...
    pub verb: &'static str,
    /// Resource: pods, pods/status, nodes, leases, events...
    pub resource: &'static str,
    /// ok or error.
    pub result: &'static str,
}

/// Labels of a backend call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// create, update, delete, status, list, ping.
    pub operation: &'static str,
    /// ok or the error kind.
    pub result: &'static str,
}

/// Every metric the runtime exports.
pub struct Metrics {
    /// Queued plus in-flight pod keys.
    pub queue_depth: Gauge,
    /// Seconds per pod sync.
    pub sync_seconds: Histogram,
    /// API calls by verb, resource and result.
    pub api_calls: Family<ApiLabels, Counter>,
    /// Backend calls by operation and result.
    pub backend_calls: Family<BackendLabels, Counter>,
    /// Pods known to the backend.
    pub backend_pods: Gauge,
    /// Seconds per backend call, by operation.
    pub backend_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// `notAfter` (Unix seconds) of the node's client certificate; 0 without
    /// `--bootstrap-kubeconfig`.
    pub client_cert_expiration: Gauge,
    /// Failed attempts to renew the node's client certificate.
    pub client_cert_renew_errors: Counter,
}

/// Labels of a backend call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// create, update, refresh, delete, status, list, allocate_ip.
    pub operation: &'static str,
}

fn backend_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

impl Metrics {
    /// Registers the metrics under the `vk_` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            queue_depth: Gauge::default(),
            sync_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            api_calls: Family::default(),
            backend_calls: Family::default(),
            backend_pods: Gauge::default(),
            backend_seconds: Family::new_with_constructor(backend_buckets as fn() -> Histogram),
            client_cert_expiration: Gauge::default(),
            client_cert_renew_errors: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("vk");
        r.register(
            "pod_queue_depth",
            "Pod keys queued or in flight",
            m.queue_depth.clone(),
        );
        r.register(
            "pod_sync_seconds",
            "Duration of one pod sync",
            m.sync_seconds.clone(),
        );
        r.register(
            "api_calls",
            "Kubernetes API calls by verb, resource and result",
            m.api_calls.clone(),
        );
        r.register(
            "backend_calls",
            "Provider calls by operation and result",
            m.backend_calls.clone(),
        );
        r.register(
            "backend_call_seconds",
            "Duration of provider calls by operation",
            m.backend_seconds.clone(),
        );
        r.register(
            "backend_pods",
            "Pods held by the backend",
            m.backend_pods.clone(),
        );
        r.register(
            "client_certificate_expiration_timestamp_seconds",
            "When the node's client certificate expires (Unix seconds; 0 without --bootstrap-kubeconfig)",
            m.client_cert_expiration.clone(),
        );
        r.register(
            "client_certificate_renew_errors",
            "Failed attempts to renew the node's client certificate",
            m.client_cert_renew_errors.clone(),
        );
        m
    }

    /// Counts one API call.
    pub fn api(&self, verb: &'static str, resource: &'static str, ok: bool) {
        self.api_calls
            .get_or_create(&ApiLabels {
                verb,
                resource,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Counts one backend call.
    pub fn backend(&self, operation: &'static str, result: &'static str) {
        self.backend_calls
            .get_or_create(&BackendLabels { operation, result })
            .inc();
    }
}
