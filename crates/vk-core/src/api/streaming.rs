//! `/exec`, `/attach` and `/portForward`: the streaming endpoints.
//!
//! The apiserver upgrades the connection to SPDY/3.1 and opens one stream per
//! channel (`streamtype` error/stdin/stdout/stderr/resize; for port-forward a
//! data and an error stream per connection, paired by `requestid`). The exit
//! status travels on the error stream as a `metav1.Status`.
//!
//! A WebSocket upgrade (`Upgrade: websocket`) on the same paths is handed to
//! [`super::websocket`] once the request is parsed and the pod found.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use vk_spdy::{Connection, ConnectionHandle, Stream};

use super::logs::percent_decode;
use super::{AppState, has_container, status, websocket};
use crate::provider::{ExecIo, PodKey, StreamKind, TermSize};

/// How long the client has to open the streams it announced.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with no traffic at all for this long is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

const EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// `/exec/{ns}/{pod}/{container}`.
pub(super) async fn exec(
    State(s): State<AppState>,
    Path((ns, pod, c)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(s, ns, pod, None, c, true, req).await
}

/// `/exec/{ns}/{pod}/{uid}/{container}`.
pub(super) async fn exec_with_uid(
    State(s): State<AppState>,
    Path((ns, pod, uid, c)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    remote_command(s, ns, pod, Some(uid), c, true, req).await
}

/// `/attach/{ns}/{pod}/{container}`.
pub(super) async fn attach(
    State(s): State<AppState>,
    Path((ns, pod, c)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(s, ns, pod, None, c, false, req).await
}

/// `/attach/{ns}/{pod}/{uid}/{container}`.
pub(super) async fn attach_with_uid(
    State(s): State<AppState>,
    Path((ns, pod, uid, c)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    remote_command(s, ns, pod, Some(uid), c, false, req).await
}

/// `/portForward/{ns}/{pod}`.
pub(super) async fn port_forward(
    State(s): State<AppState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    forward(s, ns, pod, None, req).await
}

/// `/portForward/{ns}/{pod}/{uid}`.
pub(super) async fn port_forward_with_uid(
    State(s): State<AppState>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    forward(s, ns, pod, Some(uid), req).await
}

/// Options of an exec or attach request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOptions {
    /// The command (exec only).
    pub command: Vec<String>,
    /// Client sends stdin.
    pub stdin: bool,
    /// Client wants stdout.
    pub stdout: bool,
    /// Client wants stderr (ignored with a TTY).
    pub stderr: bool,
    /// A terminal.
    pub tty: bool,
}

/// Parses `command=..&input=1&output=1&error=1&tty=1`.
pub fn parse_command_query(query: &str) -> Result<CommandOptions, String> {
    let mut o = CommandOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("invalid value for {k}"))?;
        let on = v == "1" || v == "true";
        match k {
            "command" => o.command.push(v),
            "input" | "stdin" => o.stdin = on,
            "output" | "stdout" => o.stdout = on,
            "error" | "stderr" => o.stderr = on,
            "tty" => o.tty = on,
            _ => {}
        }
    }
    // A terminal merges stderr into stdout; some clients still ask for both.
    if o.tty {
        o.stderr = false;
    }
    if !o.stdin && !o.stdout && !o.stderr {
        return Err("you must specify at least one of stdin, stdout, stderr".into());
    }
    Ok(o)
}

/// The protocols a client offers in `X-Stream-Protocol-Version` (repeated or comma-separated).
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "spdy/3.1")
}

/// Checks the upgrade request, picks a protocol, and answers 101; the caller
/// gets the upgraded SPDY connection through the returned future.
#[allow(clippy::result_large_err)] // the error is the response to send, used once
fn upgrade(
    mut req: Request,
    supported: &[&str],
) -> Result<(Response, String, hyper::upgrade::OnUpgrade), Response> {
    if !is_spdy_upgrade(req.headers()) {
        return Err(status::bad_request(
            "this endpoint needs a SPDY/3.1 upgrade (Connection: Upgrade, Upgrade: SPDY/3.1)",
        ));
    }
    let offered = offered_protocols(req.headers());
    let chosen = supported
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .map(|p| p.to_string());
    let chosen = match (chosen, offered.is_empty()) {
        (Some(c), _) => c,
        // Very old clients send no version: the oldest protocol.
        (None, true) => supported.last().map(|s| s.to_string()).unwrap_or_default(),
        (None, false) => {
            return Err(status::failure(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
                ),
            ));
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(&chosen) {
        h.insert("X-Stream-Protocol-Version", v);
    }
    Ok((resp, chosen, on_upgrade))
}

async fn spdy(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Option<(ConnectionHandle, mpsc::Receiver<Stream>)> {
    match on_upgrade.await {
        Ok(upgraded) => Some(Connection::serve(TokioIo::new(upgraded), spdy_config())),
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            None
        }
    }
}

/// Settings of a SPDY connection, upgraded or tunnelled through a WebSocket.
pub(super) fn spdy_config() -> vk_spdy::Config {
    vk_spdy::Config {
        idle_timeout: Some(IDLE_TIMEOUT),
        ..Default::default()
    }
}

async fn remote_command(
    state: AppState,
    ns: String,
    pod: String,
    uid: Option<String>,
    container: String,
    is_exec: bool,
    req: Request,
) -> Response {
    let opts = match parse_command_query(req.uri().query().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return status::bad_request(e),
    };
    if is_exec && opts.command.is_empty() {
        return status::bad_request("exec needs a command");
    }
    let Some((node, api_pod, key)) = state.find_pod(&ns, &pod) else {
        return status::not_found(format!("pod {ns}/{pod} not found on this node"));
    };
    if uid.as_deref().is_some_and(|u| u != key.uid) {
        return status::not_found(format!(
            "pod {ns}/{pod} with UID {} not found",
            uid.unwrap_or_default()
        ));
    }
    if !has_container(&api_pod, &container) {
        return status::bad_request(format!("container {container} is not valid for pod {pod}"));
    }
    if let Some(message) = crate::pod::ephemeral::refusal(&api_pod, &container) {
        return status::bad_request(message);
    }
    let kind = if is_exec {
        StreamKind::Exec
    } else {
        StreamKind::Attach
    };
    if let Err(e) = node.provider.stream_support(kind) {
        return status::provider_error(&e);
    }
    if websocket::is_upgrade(req.headers()) {
        let provider = node.provider.clone();
        return websocket::remote_command(req, provider, key, container, opts, is_exec).await;
    }
    let (resp, protocol, on_upgrade) = match upgrade(req, &EXEC_PROTOCOLS) {
        Ok(x) => x,
        Err(r) => return r,
    };
    tokio::spawn(async move {
        let Some((conn, mut incoming)) = spdy(on_upgrade).await else {
            return;
        };
        let streams = match collect_streams(&mut incoming, &opts, &protocol).await {
            Ok(s) => s,
            Err(e) => {
                warn!(pod = %key, error = %e, "exec/attach streams were not opened");
                conn.close().await;
                return;
            }
        };
        run_remote_command(
            node.provider.clone(),
            key,
            container,
            opts,
            is_exec,
            streams,
            conn,
        )
        .await;
    });
    resp
}

/// The channels of one exec/attach session.
struct Channels {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

async fn collect_streams(
    incoming: &mut mpsc::Receiver<Stream>,
    opts: &CommandOptions,
    protocol: &str,
) -> Result<Channels, String> {
    let resize_supported = protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io";
    let mut ch = Channels {
        error: None,
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    let complete = |ch: &Channels| {
        ch.error.is_some()
            && (!opts.stdin || ch.stdin.is_some())
            && (!opts.stdout || ch.stdout.is_some())
            && (!opts.stderr || ch.stderr.is_some())
            && (!(opts.tty && resize_supported) || ch.resize.is_some())
    };
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !complete(&ch) {
        let stream = tokio::select! {
            s = incoming.recv() => s.ok_or("connection closed before all streams were opened")?,
            _ = &mut deadline => return Err("timed out waiting for the client to open its streams".into()),
        };
        match stream.headers().get("streamtype") {
            Some("error") => ch.error = Some(stream),
            Some("stdin") => ch.stdin = Some(stream),
            Some("stdout") => ch.stdout = Some(stream),
            // With a TTY stderr is not used; a client that opens it anyway gets it closed.
            Some("stderr") if !opts.tty => ch.stderr = Some(stream),
            Some("resize") => ch.resize = Some(stream),
            other => {
                debug!(streamtype = ?other, "ignoring an unexpected stream");
                let mut stream = stream;
                let _ = stream.close().await;
            }
        }
    }
    Ok(ch)
}

/// The exit status as the error stream carries it.
pub fn exit_status(code: Result<i32, String>, command: &[String]) -> serde_json::Value {
    match code {
        Ok(0) => serde_json::json!({ "metadata": {}, "status": "Success" }),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
        }),
        Err(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        }),
    }
}

async fn run_remote_command(
    provider: std::sync::Arc<dyn crate::Provider>,
    key: PodKey,
    container: String,
    opts: CommandOptions,
    is_exec: bool,
    ch: Channels,
    conn: ConnectionHandle,
) {
    let mut pumps = Vec::new();
    let stdin = ch.stdin.map(|s| {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        pumps.push(tokio::spawn(async move {
            let mut s = s;
            while let Some(b) = s.recv().await {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
        }));
        rx
    });
    let out_pump = |stream: Option<Stream>, pumps: &mut Vec<tokio::task::JoinHandle<()>>| {
        stream.map(|s| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            let mut s = s;
            pumps.push(tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if s.send(b).await.is_err() {
                        break;
                    }
                }
                let _ = s.close().await;
            }));
            tx
        })
    };
    let stdout = out_pump(ch.stdout, &mut pumps);
    let stderr = out_pump(ch.stderr, &mut pumps);
    let resize = ch.resize.map(|s| {
        let (tx, rx) = mpsc::channel::<TermSize>(4);
        tokio::spawn(async move {
            let mut s = s;
            let mut buf = Vec::new();
            while let Some(b) = s.recv().await {
                buf.extend_from_slice(&b);
                let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
                let mut consumed = 0;
                while let Some(Ok(size)) = de.next() {
                    consumed = de.byte_offset();
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                buf.drain(..consumed);
                if buf.len() > 4096 {
                    buf.clear();
                }
            }
        });
        rx
    });
    let io = ExecIo {
        stdin,
        stdout,
        stderr,
        tty: opts.tty,
        resize,
    };
    let work = async {
        if is_exec {
            provider
                .exec(&key, &container, opts.command.clone(), io)
                .await
        } else {
            provider.attach(&key, &container, io).await
        }
    };
    // A client that vanishes cancels the command.
    let result = tokio::select! {
        r = work => r,
        _ = conn.closed() => {
            debug!(pod = %key, "client went away; command cancelled");
            return;
        }
    };
    // Let the output drain before the status: kubectl prints output, then exits.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
    }
    let status = exit_status(result.map_err(|e| e.to_string()), &opts.command);
    if let Some(mut err) = ch.error {
        let _ = err.send(Bytes::from(status.to_string())).await;
        let _ = err.close().await;
    }
    conn.close().await;
}

async fn forward(
    state: AppState,
    ns: String,
    pod: String,
    uid: Option<String>,
    req: Request,
) -> Response {
    let Some((node, _, key)) = state.find_pod(&ns, &pod) else {
        return status::not_found(format!("pod {ns}/{pod} not found on this node"));
    };
    if uid.as_deref().is_some_and(|u| u != key.uid) {
        return status::not_found(format!("pod {ns}/{pod} with that UID not found"));
    }
    if let Err(e) = node.provider.stream_support(StreamKind::PortForward) {
        return status::provider_error(&e);
    }
    if websocket::is_upgrade(req.headers()) {
        return websocket::port_forward(req, node.provider.clone(), key).await;
    }
    let (resp, _, on_upgrade) = match upgrade(req, &[PORT_FORWARD_PROTOCOL]) {
        Ok(x) => x,
        Err(r) => return r,
    };
    tokio::spawn(async move {
        let Some((conn, incoming)) = spdy(on_upgrade).await else {
            return;
        };
        serve_port_forward(conn, incoming, node.provider.clone(), key).await;
    });
    resp
}

/// Serves the port-forward streams of one SPDY connection until it closes.
pub(super) async fn serve_port_forward(
    conn: ConnectionHandle,
    mut incoming: mpsc::Receiver<Stream>,
    provider: std::sync::Arc<dyn crate::Provider>,
    key: PodKey,
) {
    // Streams come in pairs (data + error) sharing a requestid.
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>, tokio::time::Instant)> =
        HashMap::new();
    loop {
        let stream = tokio::select! {
            s = incoming.recv() => match s { Some(s) => s, None => break },
            _ = conn.closed() => break,
        };
        let request_id = stream.headers().get("requestid").unwrap_or("").to_string();
        let kind = stream.headers().get("streamtype").unwrap_or("").to_string();
        pending.retain(|_, (_, _, at)| at.elapsed() < STREAM_CREATION_TIMEOUT);
        let entry =
            pending
                .entry(request_id.clone())
                .or_insert((None, None, tokio::time::Instant::now()));
        match kind.as_str() {
            "data" => entry.0 = Some(stream),
            "error" => entry.1 = Some(stream),
            _ => {
                let mut stream = stream;
                let _ = stream.reset().await;
                continue;
            }
        }
        if let (Some(_), Some(_)) = (&entry.0, &entry.1)
            && let Some((Some(mut data), Some(mut error), _)) = pending.remove(&request_id)
        {
            let provider = provider.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let port = data
                    .headers()
                    .get("port")
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p > 0);
                let Some(port) = port else {
                    let _ = error.send(Bytes::from("invalid port header")).await;
                    let _ = error.close().await;
                    let _ = data.reset().await;
                    return;
                };
                let res = provider
                    .port_forward(&key, port, Box::new(data.into_io()))
                    .await;
                if let Err(e) = res {
                    let _ = error
                        .send(Bytes::from(format!(
                            "error forwarding port {port} to pod {}: {e}",
                            key.name
                        )))
                        .await;
                }
                let _ = error.close().await;
            });
        }
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_query() {
        let o = parse_command_query(
            "command=sh&command=-c&command=exit%203&input=1&output=1&error=1&tty=0",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let t = parse_command_query("command=x&output=1&error=1&tty=1").unwrap();
        assert!(t.tty && !t.stderr, "a TTY drops stderr");
        assert!(parse_command_query("command=x").is_err());
    }

    proptest::proptest! {
        #[test]
        fn command_query_never_panics(q in ".{0,200}") {
            let _ = parse_command_query(&q);
        }
    }

    #[test]
    fn exit_status_bodies() {
        assert_eq!(exit_status(Ok(0), &[])["status"], "Success");
        let s = exit_status(Ok(3), &["sh".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
    }
}
