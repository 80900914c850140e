//! The kubelet HTTPS API on `KUBELET_PORT`: what the apiserver calls for
//! `kubectl logs/exec/attach/port-forward/top` and `nodes/<n>/proxy/...`.
//!
//! Each node of the process has a server of its own, on its own port (the
//! port its Node object advertises), with its own serving certificate, and
//! authorizes each request against its own node: a caller allowed for one
//! node sees nothing of another node of the same process. Providers offer the optional
//! capabilities ([`crate::Provider::container_logs`] and friends); a missing one
//! is a 501 for that endpoint only.
//!
//! - [`listener`]: connection caps, accept back-off, throttled warnings; the
//!   deadlines of each connection are in [`serve_http1`];
//! - [`tls`]: serving certificate (files or CSR) and the client CA;
//! - [`auth`]: x509/TokenReview authentication, SubjectAccessReview authorization;
//! - [`logs`], [`stats`]: the plain endpoints; `exec`/`attach`/`portForward` in [`streaming`]
//!   (SPDY) and [`websocket`] (the WebSocket channel protocols).

pub mod auth;
pub mod listener;
pub mod logs;
pub mod stats;
pub mod status;
mod streaming;
pub mod tls;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use rustls::server::WebPkiClientVerifier;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::pod::PodController;
use crate::provider::{PodKey, Provider};
use auth::{Authenticator, Decision, Identity};
use tls::CertStore;

pub use streaming::{CommandOptions, parse_command_query};

/// One node served by this process, as the API sees it.
#[derive(Clone)]
pub struct NodeHandle {
    /// Node name.
    pub name: String,
    /// Its provider.
    pub provider: Arc<dyn Provider>,
    /// Its pod controller (the API view of its pods).
    pub pods: Arc<PodController>,
}

/// How callers are authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizationMode {
    /// SubjectAccessReview per request (what a real kubelet does).
    Webhook,
    /// Every authenticated caller may do everything (tests and demos only).
    AlwaysAllow,
}

/// Settings of the kubelet API servers of a process (one per node).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Addresses the serving certificate must cover (the node's InternalIP).
    pub node_ips: Vec<std::net::IpAddr>,
    /// Serving certificate and key files; a CSR is used when absent.
    pub cert_files: Option<(PathBuf, PathBuf)>,
    /// Client CA file; the cluster's published client CA when absent.
    pub client_ca_file: Option<PathBuf>,
    /// The CA of the node's bootstrap kubeconfig: the client CA when there is
    /// no file and the published one cannot be read (a node may not read
    /// `kube-system/extension-apiserver-authentication`).
    pub cluster_ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    /// Allow unauthenticated requests (as `system:anonymous`).
    pub anonymous: bool,
    /// Authorization mode.
    pub authorization: AuthorizationMode,
    /// Lifetime and renewal margin of a CSR-issued serving certificate.
    pub csr_renewal: tls::CsrRenewal,
    /// Deadline of a new connection's TLS handshake and first request
    /// headers, counted from accept.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request's headers.
    pub idle_timeout: Duration,
    /// Caps on connections open at once.
    pub limits: listener::ConnectionLimits,
}

#[derive(Clone)]
struct AppState {
    /// The one node this server is for.
    node: NodeHandle,
    auth: Arc<Authenticator>,
    config: Arc<ApiConfig>,
    started: jiff::Timestamp,
}

/// The verified client certificate identity of a connection, if any.
#[derive(Clone, Debug)]
struct PeerIdentity(Option<Identity>);

impl AppState {
    /// The node and key of a pod of this server's node (a pod of another
    /// node of the process is not found here).
    fn find_pod(&self, ns: &str, name: &str) -> Option<(NodeHandle, Pod, PodKey)> {
        let pod = self.node.pods.find(ns, name)?;
        let key = PodKey::of(&pod)?;
        Some((self.node.clone(), pod, key))
    }
}

/// Binds the kubelet API port of one node (port 0: one the OS picks), so
/// that the port is known before the node advertises it.
pub async fn bind(addr: SocketAddr, node: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("the kubelet API of node {node} cannot listen on {addr}: {e}"))
}

/// The kubelet API ports of `nodes` nodes from `--kubelet-port`: the first
/// node's is the port given, the next ones follow it; 0 lets the OS pick
/// each node's port.
pub fn node_ports(first: u16, nodes: usize) -> anyhow::Result<Vec<u16>> {
    if first == 0 {
        return Ok(vec![0; nodes]);
    }
    (0..nodes)
        .map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| first.checked_add(i))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--kubelet-port {first} leaves no room for {nodes} nodes' ports (each node has the next port; use --kubelet-port 0 to let the OS pick them)"
                    )
                })
        })
        .collect()
}

/// Serves one node's kubelet API on `listener` with `client` (the node's
/// own credentials: authentication, authorization and its serving CSR go
/// through it) until `stop`. Errors only when it cannot start.
pub async fn serve(
    client: Client,
    config: ApiConfig,
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let store = Arc::new(CertStore::default());
    let node_name = node.name.clone();
    match &config.cert_files {
        Some((cert, key)) => {
            tls::serve_from_files(store.clone(), cert.clone(), key.clone(), stop.clone())
                .await
                .map_err(|e| anyhow::anyhow!("serving certificate: {e}"))?
        }
        None => {
            tokio::spawn(tls::serve_from_csr(
                client.clone(),
                store.clone(),
                node_name.clone(),
                config.node_ips.clone(),
                config.csr_renewal,
                stop.clone(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_ca = match tls::client_ca(&client, config.client_ca_file.as_deref()).await {
        Err(e)
            if config.client_ca_file.is_none()
                && config.cluster_ca.as_ref().is_some_and(|c| !c.is_empty()) =>
        {
            info!(error = %e, "the published client CA cannot be read; client certificates are verified against the cluster CA of the bootstrap kubeconfig (set --client-ca-file to choose another)");
            Ok(config.cluster_ca.clone().unwrap_or_default())
        }
        other => other,
    };
    let verifier = match client_ca {
        Ok(cas) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| anyhow::anyhow!("client CA: {e}"))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| anyhow::anyhow!("client CA: {e}"))?
        }
        Err(e) => {
            warn!(error = %e, "no client CA: client certificates are not accepted, only bearer tokens");
            WebPkiClientVerifier::no_client_auth()
        }
    };
    let mut tls_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));

    let state = AppState {
        node,
        auth: Arc::new(Authenticator::new(client)),
        config: Arc::new(config.clone()),
        started: jiff::Timestamp::now(),
    };
    let app = router(state.clone());
    let addr = listener
        .local_addr()
        .map_err(|e| anyhow::anyhow!("the kubelet API's address: {e}"))?;
    info!(
        node = %node_name,
        %addr,
        max_connections = config.limits.total,
        max_connections_per_ip = config.limits.per_ip,
        "kubelet API listening"
    );
    let mut listener = listener::Listener::new(listener, "kubelet API", config.limits);
    while let Some((tcp, peer, slot)) = listener.next(&stop).await {
        let acceptor = acceptor.clone();
        let app = app.clone();
        let deadline = tokio::time::Instant::now() + config.header_timeout;
        let idle = config.idle_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "no TLS handshake within the header deadline; closed");
                    return;
                }
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| auth::identity_from_cert(c.as_ref()));
            let svc = app.layer(Extension(PeerIdentity(identity)));
            // The slot goes with the IO: an upgraded stream still counts.
            let io = listener::Counted::new(TokioIo::new(tls), slot);
            serve_http1(io, svc, peer, deadline, idle).await;
        });
    }
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades, for exec, attach and port-forward) on one
/// connection, and nothing else: an HTTP/2 preface is answered as a bad
/// HTTP/1 request and the connection closed. The first request's headers
/// must be in by `deadline`; after each response, the next request's
/// headers must be in within `idle` (hyper's header timer, which runs from
/// the end of a response; a response being streamed is not idle).
pub(crate) async fn serve_http1<I>(
    io: I,
    app: Router,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    idle: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = first_request.clone();
    let svc = app.map_request(move |r: hyper::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Relaxed);
        r.map(Body::new)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true)
        .serve_connection(io, TowerToHyperService::new(svc))
        .with_upgrades();
    tokio::pin!(conn);
    let res = tokio::select! {
        res = &mut conn => res,
        _ = tokio::time::sleep_until(deadline) => {
            if !first_request.load(Ordering::Relaxed) {
                debug!(%peer, "no request headers within the header deadline; closed");
                return;
            }
            conn.await
        }
    };
    if let Err(e) = res {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/runningpods/", get(running_pods))
        .route("/runningpods", get(running_pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/stats/summary", get(stats_summary))
        .route("/stats/summary/", get(stats_summary))
        .route("/metrics/resource", get(metrics_resource))
        .route("/exec/{ns}/{pod}/{container}", any(streaming::exec))
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            any(streaming::exec_with_uid),
        )
        .route("/attach/{ns}/{pod}/{container}", any(streaming::attach))
        .route(
            "/attach/{ns}/{pod}/{uid}/{container}",
            any(streaming::attach_with_uid),
        )
        .route("/portForward/{ns}/{pod}", any(streaming::port_forward))
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            any(streaming::port_forward_with_uid),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn authenticate(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerIdentity>,
    req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let identity = match (peer.0, bearer) {
        (Some(id), _) => id,
        (None, Some(token)) => match state.auth.token(&token).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return status::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            }
            Err(e) => {
                warn!(error = %e, "token review failed");
                return status::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            }
        },
        (None, None) if state.config.anonymous => Identity::anonymous(),
        (None, None) => {
            return status::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    };
    if state.config.authorization == AuthorizationMode::Webhook {
        let path = req.uri().path().to_string();
        let attrs = auth::attributes(req.method().as_str(), &path, &state.node.name);
        match state.auth.authorize(&identity, &attrs).await {
            Ok(Decision::Allow) => {}
            Ok(Decision::Deny(reason)) => {
                let msg = format!(
                    "Forbidden (user={}, verb={}, resource=nodes, subresource={}){}",
                    identity.user,
                    attrs.verb,
                    attrs.subresource,
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                );
                return status::failure(StatusCode::FORBIDDEN, "Forbidden", msg);
            }
            Err(e) => {
                warn!(error = %e, "authorization failed");
                return status::failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "authorization check failed",
                );
            }
        }
    }
    next.run(req).await
}

async fn pods(State(state): State<AppState>) -> Response {
    let items: Vec<Pod> = state.node.pods.api_pods();
    axum::Json(serde_json::json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items })).into_response()
}

/// `/runningpods/`: what the backends run, each pod as the API has it (env
/// and volumes as references, never the values the core resolved for the
/// backend), with the backend's status.
async fn running_pods(State(state): State<AppState>) -> Response {
    let node = &state.node;
    let items: Vec<Pod> = match node.provider.list_pods().await {
        Ok(pods) => pods.into_iter().map(|bp| running_pod(node, bp)).collect(),
        Err(e) => return status::provider_error(&e),
    };
    axum::Json(serde_json::json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items })).into_response()
}

/// One backend pod for `/runningpods/`. The provider's copy is the resolved
/// pod (Secret values in its env): it is never served. The API's copy is,
/// when it is the pod the workload was created for; a workload whose pod is
/// gone from the API shows only its identity and status.
fn running_pod(node: &NodeHandle, bp: crate::provider::BackendPod) -> Pod {
    let api_pod = node
        .pods
        .find(&bp.key.namespace, &bp.key.name)
        .filter(|p| p.metadata.uid.as_deref() == Some(bp.key.uid.as_str()));
    let mut pod = api_pod.unwrap_or_else(|| Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(bp.key.name.clone()),
            namespace: Some(bp.key.namespace.clone()),
            uid: Some(bp.key.uid.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    pod.status = Some(bp.status);
    pod
}

async fn container_logs(
    State(state): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    // Errors in plain text, as a kubelet writes them (see `status::plain`).
    let opts = match logs::parse_log_query(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return status::plain(StatusCode::BAD_REQUEST, e),
    };
    let Some((node, api_pod, key)) = state.find_pod(&ns, &pod) else {
        return status::plain(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} not found on this node"),
        );
    };
    if !has_container(&api_pod, &container) {
        return status::plain(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}"),
        );
    }
    if let Some(message) = crate::pod::ephemeral::refusal(&api_pod, &container) {
        // What `kubectl debug` shows when it falls back to the logs of an
        // ephemeral container that never started.
        return status::plain(StatusCode::BAD_REQUEST, message);
    }
    match node.provider.container_logs(&key, &container, &opts).await {
        Ok(stream) => logs::stream_response(stream, opts.limit_bytes),
        Err(e) => status::provider_error_plain(&e),
    }
}

/// Whether the pod has a container (or init or ephemeral container) with this name.
fn has_container(pod: &Pod, name: &str) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == name)
    }) || crate::toolkit::ephemeral::is_ephemeral(pod, name)
}

async fn usage(state: &AppState) -> Result<Vec<crate::provider::PodUsage>, Response> {
    state
        .node
        .provider
        .usage()
        .await
        .map_err(|e| status::provider_error(&e))
}

async fn stats_summary(State(state): State<AppState>) -> Response {
    match usage(&state).await {
        Ok(pods) => {
            axum::Json(stats::summary(&state.node.name, state.started, &pods)).into_response()
        }
        Err(r) => r,
    }
}

async fn metrics_resource(State(state): State<AppState>) -> Response {
    match usage(&state).await {
        Ok(pods) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            stats::resource_metrics(&pods),
        )
            .into_response(),
        Err(r) => r,
    }
}
