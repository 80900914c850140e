//! The plain-HTTP side port: `/metrics` (Prometheus), `/healthz` and `/readyz`,
//! nothing else. It has no authentication, so it serves nothing about pods:
//! `/runningpods/` and every endpoint that returns pod specs are on the
//! authenticated kubelet API (`crate::api`). It binds to loopback unless
//! `--metrics-addr` says otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// What the health endpoints look at.
pub struct HealthState {
    expected: usize,
    registered: AtomicUsize,
    all_registered: Notify,
}

impl HealthState {
    /// State for `expected` nodes.
    pub fn new(expected: usize) -> Self {
        HealthState {
            expected,
            registered: AtomicUsize::new(0),
            all_registered: Notify::new(),
        }
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
        .with_state(AppState { registry, health });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(%addr, error = %e, "cannot listen for metrics and health");
            return;
        }
    };
    info!(%addr, "metrics and health endpoints listening");
    // Probes and a scraper: a few connections. The cap keeps this port from
    // taking the descriptors the kubelet API leaves for the process.
    let limits = crate::api::listener::ConnectionLimits {
        total: 64,
        per_ip: 64,
    };
    let mut listener = crate::api::listener::Listener::new(listener, "metrics", limits);
    while let Some((tcp, peer, slot)) = listener.next(&stop).await {
        let app = app.clone();
        let deadline = tokio::time::Instant::now() + HEADER_TIMEOUT;
        tokio::spawn(async move {
            let io = crate::api::listener::Counted::new(TokioIo::new(tcp), slot);
            crate::api::serve_http1(io, app, peer, deadline, IDLE_TIMEOUT).await;
        });
    }
}

/// Deadline of a metrics connection's first request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive metrics connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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
