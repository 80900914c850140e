//! Port-forward over WebSocket: the channel protocols (two channels per port,
//! each opened by the port number) and the SPDY session tunnelled in binary
//! messages.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use super::frame::{
    Codec, Inbound, PORT_FORWARD_PROTOCOLS, PORT_FORWARD_UNNAMED, decode, negotiate,
    offered_protocols, parse_ports, port_header,
};
use super::session::{
    Activity, FINISH_TIMEOUT, Session, Socket, Source, accept, close_message, next_payload,
    send_or_end, shutdown, upgraded,
};
use super::unsupported_protocols;
use crate::Provider;
use crate::api::{status, streaming};
use crate::provider::PodKey;

/// kubectl's port-forward: SPDY tunnelled through binary WebSocket messages.
const SPDY_TUNNEL_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// Bytes buffered between a port-forward channel and the provider's tunnel.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Port-forward over a WebSocket; the pod has been found.
pub(in crate::api) async fn port_forward(
    req: Request,
    provider: Arc<dyn Provider>,
    key: PodKey,
) -> Response {
    let offered = offered_protocols(req.headers());
    if offered.iter().any(|p| p == SPDY_TUNNEL_PORT_FORWARD) {
        let (resp, on_upgrade) = match accept(req, SPDY_TUNNEL_PORT_FORWARD) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let span = info_span!("websocket_spdy_tunnel", pod = %key);
        tokio::spawn(
            async move {
                if let Some(socket) = upgraded(on_upgrade).await {
                    tunnel_spdy(socket, provider, key).await;
                }
            }
            .instrument(span),
        );
        return resp;
    }
    let Some(proto) = negotiate(&offered, &PORT_FORWARD_PROTOCOLS, PORT_FORWARD_UNNAMED) else {
        return unsupported_protocols(&offered, &PORT_FORWARD_PROTOCOLS);
    };
    let ports = match parse_ports(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return status::bad_request(e),
    };
    let (resp, on_upgrade) = match accept(req, proto.name) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let span = info_span!("websocket_port_forward", pod = %key, protocol = proto.name, ?ports);
    tokio::spawn(
        async move {
            if let Some(socket) = upgraded(on_upgrade).await {
                run_port_forward(socket, proto.codec, ports, provider, key).await;
            }
        }
        .instrument(span),
    );
    resp
}

async fn run_port_forward(
    socket: Socket,
    codec: Codec,
    ports: Vec<u16>,
    provider: Arc<dyn Provider>,
    key: PodKey,
) {
    let (session, source) = Session::start(socket, codec);
    let (to_ports, from_client): (Vec<_>, Vec<_>) = ports
        .iter()
        .map(|_| {
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            (Some(tx), rx)
        })
        .unzip();
    let reader = tokio::spawn(
        read_port_forward_input(
            source,
            codec,
            to_ports,
            session.activity.clone(),
            session.ended.clone(),
        )
        .in_current_span(),
    );
    forward_ports(&session, &ports, from_client, &provider, &key).await;
    session.end(reader).await;
}

/// Opens every port's channels and runs the forwards; closes the WebSocket
/// when all have ended.
async fn forward_ports(
    session: &Session,
    ports: &[u16],
    from_client: Vec<mpsc::Receiver<Bytes>>,
    provider: &Arc<dyn Provider>,
    key: &PodKey,
) {
    let mut forwards = Vec::with_capacity(ports.len());
    for ((i, port), rx) in ports.iter().copied().enumerate().zip(from_client) {
        let Ok(data) = u8::try_from(2 * i) else {
            return;
        };
        for channel in [data, data + 1] {
            if !session.send(channel, &port_header(port)).await {
                return;
            }
        }
        forwards.push(forward_port(data, port, rx, session, provider, key));
    }
    tokio::select! {
        _ = futures::future::join_all(forwards) => {}
        _ = session.ended.cancelled() => {
            debug!("client went away; port-forward closed");
            return;
        }
    }
    session.finish().await;
}

/// One port: client data goes into the provider's tunnel, the tunnel's output
/// to the data channel, a provider error as text to the error channel.
async fn forward_port(
    data_channel: u8,
    port: u16,
    mut from_client: mpsc::Receiver<Bytes>,
    session: &Session,
    provider: &Arc<dyn Provider>,
    key: &PodKey,
) {
    let (ours, theirs) = tokio::io::duplex(TUNNEL_BUFFER);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let to_provider = async move {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let to_client = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !session.send(data_channel, &buf[..n]).await {
                        break;
                    }
                }
            }
        }
    };
    let run = async {
        if let Err(e) = provider.port_forward(key, port, Box::new(theirs)).await {
            debug!(error = %e, port, "port-forward failed");
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                key.name, key.uid
            );
            session.send(data_channel + 1, msg.as_bytes()).await;
        }
    };
    // The port is done when the provider is done and its output delivered; the
    // client's side may stay open until the connection closes.
    let done = async {
        tokio::join!(run, to_client);
    };
    tokio::pin!(done);
    tokio::select! {
        _ = &mut done => return,
        _ = to_provider => {}
    }
    done.await;
}

/// Reads the client's port-forward messages into the ports' tunnels, and gives
/// the half back when the client has gone.
async fn read_port_forward_input(
    mut source: Source,
    codec: Codec,
    mut ports: Vec<Option<mpsc::Sender<Bytes>>>,
    activity: Arc<Activity>,
    ended: CancellationToken,
) -> Source {
    loop {
        let data = tokio::select! {
            d = next_payload(&mut source, &activity) => d,
            _ = ended.cancelled() => None,
        };
        let Some(data) = data else { break };
        match decode(&data, codec, false) {
            Ok(Inbound::Data { channel, payload }) if channel % 2 == 0 && !payload.is_empty() => {
                if let Some(slot) = ports.get_mut(usize::from(channel / 2))
                    && let Some(tx) = slot
                    && !send_or_end(tx, payload, &ended).await
                {
                    *slot = None;
                }
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "message ignored"),
        }
    }
    ended.cancel();
    source
}

/// kubectl's WebSocket port-forward: the binary messages carry a SPDY session,
/// served exactly like an upgraded SPDY connection (whose idle timeout applies).
async fn tunnel_spdy(socket: Socket, provider: Arc<dyn Provider>, key: PodKey) {
    let (mut sink, mut source) = socket.split();
    let (ours, theirs) = tokio::io::duplex(TUNNEL_BUFFER);
    let (conn, incoming) = vk_spdy::Connection::serve(theirs, streaming::spdy_config());
    let (mut rd, mut wr) = tokio::io::split(ours);
    // Set once our close frame is out: the client then has a bounded time to answer.
    let closing = CancellationToken::new();
    let from_client = async {
        let answer_deadline = async {
            closing.cancelled().await;
            tokio::time::sleep(FINISH_TIMEOUT).await;
        };
        tokio::pin!(answer_deadline);
        loop {
            let msg = tokio::select! {
                m = source.next() => m,
                _ = &mut answer_deadline => None,
            };
            match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    debug!("text message in a SPDY tunnel; closing");
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(error = %e, "WebSocket read failed");
                    break;
                }
                None => break,
            }
        }
        let _ = wr.shutdown().await;
    };
    let to_client = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(close_message()).await;
        closing.cancel();
    };
    let serve = streaming::serve_port_forward(conn, incoming, provider, key);
    tokio::join!(from_client, to_client, serve);
    shutdown(sink, source).await;
}
