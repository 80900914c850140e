//! One WebSocket connection of the kubelet API: the handshake on hyper's
//! upgrade, a writer task that owns the sending half, the idle watchdog, the
//! closing handshake and the TLS shutdown. Knows nothing of channels' meaning.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use super::frame::{Codec, encode};
use crate::api::status;
use crate::api::streaming::IDLE_TIMEOUT;

/// After the final status the server closes the WebSocket and waits this long
/// for the client's reply before it drops the connection. Dropping it at once
/// would let the kernel answer the client's next frame with a reset, and a
/// client still reading would lose the output buffered on its way.
pub(super) const FINISH_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the TLS close (close_notify, then FIN) may take at the very end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The server side of an upgraded connection.
pub(super) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type Sink = SplitSink<Socket, Message>;
pub(super) type Source = SplitStream<Socket>;

/// The last time a message went either way: the idle timeout counts from it,
/// as the Go server pushes its deadline on every read and write.
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Starts counting now.
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records a message.
    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Ends the session after `idle` without traffic.
async fn watchdog(activity: Arc<Activity>, idle: Duration, ended: CancellationToken) {
    loop {
        let quiet = activity.idle_for();
        if quiet >= idle {
            debug!("WebSocket idle timeout");
            ended.cancel();
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(idle - quiet) => {}
            _ = ended.cancelled() => return,
        }
    }
}

/// What the writer task sends.
pub(super) enum Outgoing {
    /// A data message.
    Message(Message),
    /// The close frame; nothing is sent after it.
    Close,
}

/// A normal closure (1000), which starts the closing handshake.
pub(super) fn close_message() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Owns the sending half: messages go out in the order they were queued.
/// Gives the half back when the session ends or the close frame is out.
async fn write_loop(
    mut sink: Sink,
    mut queue: mpsc::Receiver<Outgoing>,
    activity: Arc<Activity>,
    ended: CancellationToken,
) -> Sink {
    loop {
        let item = tokio::select! {
            item = queue.recv() => item,
            _ = ended.cancelled() => None,
        };
        let (msg, last) = match item {
            Some(Outgoing::Message(m)) => (m, false),
            Some(Outgoing::Close) => (close_message(), true),
            None => return sink,
        };
        let sent = tokio::select! {
            r = sink.send(msg) => r.is_ok(),
            _ = ended.cancelled() => false,
        };
        if !sent {
            ended.cancel();
            return sink;
        }
        activity.touch();
        if last {
            return sink;
        }
    }
}

/// The next message's bytes, or `None` once the client has gone (closed, or
/// the connection failed).
pub(super) async fn next_payload(source: &mut Source, activity: &Activity) -> Option<Bytes> {
    loop {
        let msg = match source.next().await {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                debug!(error = %e, "WebSocket read failed");
                return None;
            }
            None => return None,
        };
        activity.touch();
        match msg {
            Message::Binary(b) => return Some(b),
            Message::Text(t) => return Some(Bytes::from(t)),
            // Reading on lets the close handshake complete; then the stream ends.
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Sends unless the session ends first; false when the receiver is gone or the session ended.
pub(super) async fn send_or_end<T>(
    tx: &mpsc::Sender<T>,
    value: T,
    ended: &CancellationToken,
) -> bool {
    tokio::select! {
        r = tx.send(value) => r.is_ok(),
        _ = ended.cancelled() => false,
    }
}

/// Checks the WebSocket handshake and answers 101 with the chosen protocol;
/// the connection comes through the returned future.
pub(super) fn accept(
    mut req: Request,
    protocol: &str,
) -> Result<(Response, hyper::upgrade::OnUpgrade), Box<Response>> {
    let refuse = |code: StatusCode, reason: &str, message: &str| {
        Box::new(status::failure(code, reason, message))
    };
    if req.method() != Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "a WebSocket upgrade is a GET",
        ));
    }
    let version_13 = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_13 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let accept_key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| HeaderValue::from_str(&derive_accept_key(k.as_bytes())).ok());
    let Some(accept_key) = accept_key else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Sec-WebSocket-Key is missing",
        ));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
    if !protocol.is_empty()
        && let Ok(p) = HeaderValue::from_str(protocol)
    {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    Ok((resp, on_upgrade))
}

/// The WebSocket once the 101 is out, or `None` when the upgrade failed.
pub(super) async fn upgraded(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<Socket> {
    match on_upgrade.await {
        Ok(io) => {
            Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await)
        }
        Err(e) => {
            debug!(error = %e, "WebSocket upgrade failed");
            None
        }
    }
}

/// Ends a connection with TLS close_notify and FIN: clients treat a
/// connection that merely drops as an error.
pub(super) async fn shutdown(sink: Sink, source: Source) {
    if let Ok(mut ws) = source.reunite(sink) {
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, ws.get_mut().shutdown()).await;
    }
}

/// The shared plumbing of a channel session: writer, idle watchdog, end signal.
pub(super) struct Session {
    /// Messages for the writer.
    pub(super) out: mpsc::Sender<Outgoing>,
    /// Traffic, for the idle timeout.
    pub(super) activity: Arc<Activity>,
    /// Cancelled when the session is over (client gone, idle, or finished).
    pub(super) ended: CancellationToken,
    /// The negotiated codec.
    pub(super) codec: Codec,
    writer: JoinHandle<Sink>,
}

impl Session {
    /// Starts the writer and the watchdog; the caller reads the returned half.
    pub(super) fn start(socket: Socket, codec: Codec) -> (Session, Source) {
        let (sink, source) = socket.split();
        let (out, queue) = mpsc::channel(32);
        let activity = Activity::new();
        let ended = CancellationToken::new();
        let writer = tokio::spawn(
            write_loop(sink, queue, activity.clone(), ended.clone()).in_current_span(),
        );
        tokio::spawn(watchdog(activity.clone(), IDLE_TIMEOUT, ended.clone()).in_current_span());
        let session = Session {
            out,
            activity,
            ended,
            codec,
            writer,
        };
        (session, source)
    }

    pub(super) async fn send(&self, channel: u8, payload: &[u8]) -> bool {
        let msg = Outgoing::Message(encode(channel, payload, self.codec));
        send_or_end(&self.out, msg, &self.ended).await
    }

    /// Sends the close frame and waits (bounded) for the client's reply,
    /// which ends the reader.
    pub(super) async fn finish(&self) {
        if send_or_end(&self.out, Outgoing::Close, &self.ended).await {
            let _ = tokio::time::timeout(FINISH_TIMEOUT, self.ended.cancelled()).await;
        }
    }

    /// Stops the tasks and closes the connection once the reader has given its half back.
    pub(super) async fn end(self, reader: JoinHandle<Source>) {
        self.ended.cancel();
        if let (Ok(sink), Ok(source)) = (self.writer.await, reader.await) {
            shutdown(sink, source).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn watchdog_counts_from_the_last_message() {
        let activity = Activity::new();
        let ended = CancellationToken::new();
        let dog = tokio::spawn(watchdog(
            activity.clone(),
            Duration::from_secs(10),
            ended.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(8)).await;
        activity.touch();
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(!ended.is_cancelled(), "traffic pushes the deadline");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(ended.is_cancelled());
        dog.await.unwrap();
    }
}
