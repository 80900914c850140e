//! exec and attach over the WebSocket channel protocols: channels to and
//! from the provider's [`ExecIo`], the final status on the error channel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::frame::{
    ChannelProtocol, Codec, ERROR, EXEC_CHANNELS, EXEC_PROTOCOLS, EXEC_UNNAMED, FrameError,
    Inbound, RESIZE, ResizeDecoder, STDERR, STDIN, STDOUT, decode, encode, final_status, negotiate,
    offered_protocols,
};
use super::session::{
    Activity, Outgoing, Session, Socket, Source, accept, next_payload, send_or_end, upgraded,
};
use super::unsupported_protocols;
use crate::Provider;
use crate::api::streaming::CommandOptions;
use crate::provider::{ExecIo, PodKey, TermSize};

/// How long the output still queued is waited for once the command has ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// exec/attach over a WebSocket; the request has been parsed and the pod found.
pub(in crate::api) async fn remote_command(
    req: Request,
    provider: Arc<dyn Provider>,
    key: PodKey,
    container: String,
    opts: CommandOptions,
    is_exec: bool,
) -> Response {
    let offered = offered_protocols(req.headers());
    let Some(proto) = negotiate(&offered, &EXEC_PROTOCOLS, EXEC_UNNAMED) else {
        return unsupported_protocols(&offered, &EXEC_PROTOCOLS);
    };
    let (resp, on_upgrade) = match accept(req, proto.name) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let span = info_span!(
        "websocket_command",
        pod = %key,
        container = %container,
        protocol = proto.name,
        exec = is_exec
    );
    let command = RemoteCommand {
        provider,
        key,
        container,
        opts,
        is_exec,
    };
    tokio::spawn(
        async move {
            if let Some(socket) = upgraded(on_upgrade).await {
                command.run(socket, proto).await;
            }
        }
        .instrument(span),
    );
    resp
}

/// One exec or attach.
struct RemoteCommand {
    provider: Arc<dyn Provider>,
    key: PodKey,
    container: String,
    opts: CommandOptions,
    is_exec: bool,
}

impl RemoteCommand {
    async fn run(self, socket: Socket, proto: ChannelProtocol) {
        let (session, source) = Session::start(socket, proto.codec);
        let (stdin_tx, stdin_rx) = match self.opts.stdin {
            true => {
                let (tx, rx) = mpsc::channel::<Bytes>(16);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let (resize_tx, resize_rx) = match self.opts.tty {
            true => {
                let (tx, rx) = mpsc::channel::<TermSize>(4);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let reader = tokio::spawn(
            read_command_input(
                source,
                proto,
                stdin_tx,
                resize_tx,
                session.activity.clone(),
                session.ended.clone(),
            )
            .in_current_span(),
        );
        self.serve(&session, proto, stdin_rx, resize_rx).await;
        session.end(reader).await;
    }

    async fn serve(
        &self,
        session: &Session,
        proto: ChannelProtocol,
        stdin: Option<mpsc::Receiver<Bytes>>,
        resize: Option<mpsc::Receiver<TermSize>>,
    ) {
        let opts = &self.opts;
        // An empty message on the lowest channel the client reads: the session is up.
        let first = if opts.stdout {
            STDOUT
        } else if opts.stderr {
            STDERR
        } else {
            ERROR
        };
        if !session.send(first, &[]).await {
            return;
        }
        let mut pumps = Vec::new();
        let mut output = |wanted: bool, channel: u8| {
            wanted.then(|| {
                let (tx, pump) = output_pump(channel, session.codec, session.out.clone());
                pumps.push(pump);
                tx
            })
        };
        let io = ExecIo {
            stdout: output(opts.stdout, STDOUT),
            stderr: output(opts.stderr, STDERR),
            stdin,
            tty: opts.tty,
            resize,
        };
        let work = async {
            if self.is_exec {
                self.provider
                    .exec(&self.key, &self.container, opts.command.clone(), io)
                    .await
            } else {
                self.provider.attach(&self.key, &self.container, io).await
            }
        };
        let pumps = futures::future::join_all(pumps);
        tokio::pin!(work, pumps);
        // The output flows while the command runs and is complete once the
        // provider has dropped its senders. A client that goes away cancels both.
        let mut result = None;
        let mut drained = false;
        let drain_deadline = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain_deadline);
        while result.is_none() || !drained {
            tokio::select! {
                r = &mut work, if result.is_none() => {
                    result = Some(r);
                    drain_deadline.as_mut().reset(Instant::now() + DRAIN_TIMEOUT);
                }
                _ = &mut pumps, if !drained => drained = true,
                _ = &mut drain_deadline => {
                    warn!("output still open after the command ended; sending the status");
                    drained = true;
                }
                _ = session.ended.cancelled() => {
                    debug!("client went away; command cancelled");
                    return;
                }
            }
        }
        let Some(result) = result else { return };
        let code = result.map_err(|e| e.to_string());
        if let Some(text) = final_status(proto.json_status, code, &opts.command)
            && !session.send(ERROR, text.as_bytes()).await
        {
            return;
        }
        session.finish().await;
    }
}

/// Forwards what the provider writes to one output channel.
fn output_pump(
    channel: u8,
    codec: Codec,
    out: mpsc::Sender<Outgoing>,
) -> (mpsc::Sender<Bytes>, impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let pump = async move {
        while let Some(chunk) = rx.recv().await {
            if chunk.is_empty() {
                continue;
            }
            if out
                .send(Outgoing::Message(encode(channel, &chunk, codec)))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    (tx, pump)
}

/// Reads the client's messages: stdin, resize and the close signal. Ends the
/// session when the client has gone, and gives the half back.
async fn read_command_input(
    mut source: Source,
    proto: ChannelProtocol,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    mut resize: Option<mpsc::Sender<TermSize>>,
    activity: Arc<Activity>,
    ended: CancellationToken,
) -> Source {
    let mut sizes = ResizeDecoder::default();
    loop {
        let data = tokio::select! {
            d = next_payload(&mut source, &activity) => d,
            _ = ended.cancelled() => None,
        };
        let Some(data) = data else { break };
        match decode(&data, proto.codec, proto.close_signal) {
            Ok(Inbound::Data {
                channel: STDIN,
                payload,
            }) => {
                if let Some(tx) = &stdin
                    && !payload.is_empty()
                    && !send_or_end(tx, payload, &ended).await
                {
                    // The command no longer reads its input: drop what follows.
                    stdin = None;
                }
            }
            Ok(Inbound::Data {
                channel: RESIZE,
                payload,
            }) => {
                if let Some(tx) = &resize {
                    for size in sizes.push(&payload) {
                        if !send_or_end(tx, size, &ended).await {
                            resize = None;
                            break;
                        }
                    }
                }
            }
            Ok(Inbound::Data { .. } | Inbound::Empty) => {}
            Ok(Inbound::Close(STDIN)) => stdin = None,
            Ok(Inbound::Close(RESIZE)) => resize = None,
            Ok(Inbound::Close(channel)) if channel < EXEC_CHANNELS => {}
            Ok(Inbound::Close(channel)) => {
                warn!(
                    channel,
                    "close signal for an unknown channel; closing the session"
                );
                break;
            }
            Err(e @ FrameError::CloseSignal(_)) => {
                warn!(error = %e, "closing the session");
                break;
            }
            Err(e) => debug!(error = %e, "message ignored"),
        }
    }
    ended.cancel();
    source
}
