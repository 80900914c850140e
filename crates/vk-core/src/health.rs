//! The plain-HTTP side port: `/metrics` (Prometheus), `/healthz`, `/readyz`, and
//! `/runningpods/` (the backends' pods with their original UIDs, as upstream's debug endpoint).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::pod::PodController;
use crate::provider::Provider;

type NodeHandles = Vec<(Arc<dyn Provider>, Arc<PodController>)>;

/// What the health endpoints look at.
pub struct HealthState {
    expected: usize,
    registered: AtomicUsize,
    all_registered: Notify,
    nodes: Mutex<NodeHandles>,
}

impl HealthState {
    /// State for `expected` nodes.
    pub fn new(expected: usize) -> Self {
        HealthState {
            expected,
            registered: AtomicUsize::new(0),
            all_registered: Notify::new(),
            nodes: Mutex::default(),
        }
    }

    /// Adds a node's provider and pod controller.
    pub fn add_node(&self, provider: Arc<dyn Provider>, pods: Arc<PodController>) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((provider, pods));
    }

    /// Marks one more node as registered.
    pub fn node_registered(&self) {
        if self.registered.fetch_add(1, Ordering::SeqCst) + 1 >= self.expected {
            self.all_registered.notify_waiters();
        }
    }

    /// Whether every node is registered.
    pub fn ready(&self) -> bool {
        self.registered.load(Ordering::SeqCst) >= self.expected
    }

    /// Waits until every node is registered.
    pub async fn wait_registered(&self) {
        loop {
            let notified = self.all_registered.notified();
            if self.ready() {
                return;
            }
            notified.await;
        }
    }

    fn providers(&self) -> Vec<Arc<dyn Provider>> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<HealthState>,
}

/// Serves the side port until `stop`.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<HealthState>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/runningpods/", get(running_pods))
        .route("/runningpods", get(running_pods))
        .with_state(AppState { registry, health });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(%addr, error = %e, "cannot listen for metrics and health");
            return;
        }
    };
    info!(%addr, "metrics and health endpoints listening");
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = res {
        error!(error = %e, "metrics server stopped");
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.health.ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "nodes not registered yet").into_response()
    }
}

async fn running_pods(State(s): State<AppState>) -> Response {
    let mut items: Vec<Pod> = Vec::new();
    for p in s.health.providers() {
        match p.list_pods().await {
            Ok(pods) => items.extend(pods.into_iter().map(|bp| {
                let mut pod = bp.pod;
                pod.status = Some(bp.status);
                pod
            })),
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
    let list = serde_json::json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items });
    axum::Json(list).into_response()
}
