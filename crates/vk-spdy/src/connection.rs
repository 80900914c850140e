//! Serving one SPDY connection: [`Connection::serve`], the state its tasks
//! share, and the [`ConnectionHandle`].
//!
//! `serve` splits the transport and starts two tasks: the reader
//! (`reader.rs`), which decodes frames and acts on them, and the writer
//! (`writer.rs`), the only code that writes. Neither waits on the other. This
//! module wires them up; it reads and writes nothing itself and does not
//! interpret stream headers: what a stream is for is the caller's business.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::error::{Result, SpdyError};
use crate::flow_control::{MAX_WINDOW, SendWindows};
use crate::frame::{
    DEFAULT_INITIAL_WINDOW, Frame, FrameDecoder, GoAwayStatus, Setting, setting_id,
};
use crate::reader::Reader;
use crate::stream::Stream;
use crate::writer::{WriterCmd, run_writer};

/// Control frames the reader may have queued for the writer. Only a peer that
/// keeps sending pings or new streams while not reading our answers fills it.
const CONTROL_QUEUE: usize = 1024;

/// State shared by the reader, the writer, the streams and the handle.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) config: Config,
    /// Ordered, bounded queue to the writer for stream users and the handle.
    pub(crate) data_tx: mpsc::Sender<WriterCmd>,
    /// Queue to the writer for the reader's answers (never waited on).
    pub(crate) control_tx: mpsc::Sender<WriterCmd>,
    pub(crate) windows: SendWindows,
    /// Cancelled when the connection is over (both tasks stop).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled once our GOAWAY has been written and our side shut down.
    pub(crate) write_closed: CancellationToken,
    /// No new streams are accepted.
    pub(crate) going_away: AtomicBool,
    pub(crate) last_accepted: AtomicU32,
    started: Instant,
    last_activity_ms: AtomicU64,
}

impl ConnShared {
    /// Highest stream id accepted so far (for GOAWAY).
    pub(crate) fn last_accepted(&self) -> u32 {
        self.last_accepted.load(Ordering::Acquire)
    }

    /// Records that a frame was read or written just now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Release);
    }

    pub(crate) fn last_activity(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity_ms.load(Ordering::Acquire))
    }

    pub(crate) fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Acquire)
    }
}

/// Entry point: serves the server side of a SPDY/3.1 connection.
///
/// Read every accepted stream (or drop its [`crate::RecvHalf`]): data that
/// nobody reads fills the stream's buffer, and then the whole connection
/// stops reading, as it does with the Go kubelet.
#[derive(Debug)]
pub struct Connection;

impl Connection {
    /// Starts serving `io` (an upgraded HTTP connection, already past the
    /// `101 Switching Protocols` response) and returns a handle plus the
    /// streams the peer opens, each already answered with SYN_REPLY.
    ///
    /// Must be called inside a Tokio runtime: the reader and the writer run
    /// as spawned tasks until the connection ends. Dropping the receiver
    /// makes the connection refuse further streams; dropping the handle does
    /// not end the connection (open streams keep it alive).
    pub fn serve<IO>(io: IO, config: Config) -> (ConnectionHandle, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = config.sanitized();
        let (data_tx, data_rx) = mpsc::channel(config.write_queue_frames);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (accept_tx, accept_rx) = mpsc::channel(config.max_concurrent_streams.min(1024));
        let decoder = FrameDecoder::new(config.decoder_limits);
        let conn = Arc::new(ConnShared {
            config,
            data_tx,
            control_tx,
            windows: SendWindows::new(),
            shutdown: CancellationToken::new(),
            write_closed: CancellationToken::new(),
            going_away: AtomicBool::new(false),
            last_accepted: AtomicU32::new(0),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        });

        if conn.config.grant_large_windows {
            let grant = [
                Frame::Settings {
                    clear: false,
                    entries: vec![Setting {
                        flags: 0,
                        id: setting_id::INITIAL_WINDOW_SIZE,
                        value: MAX_WINDOW as u32,
                    }],
                },
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta: MAX_WINDOW as u32 - DEFAULT_INITIAL_WINDOW,
                },
            ];
            for frame in grant {
                // The queue is empty and far larger than two frames.
                let _ = conn.control_tx.try_send(WriterCmd::Frame(frame));
            }
        }

        let (read_half, write_half) = tokio::io::split(io);
        // The tasks log under the caller's span (which names the pod).
        let span = tracing::Span::current();
        tokio::spawn(
            run_writer(write_half, control_rx, data_rx, conn.clone()).instrument(span.clone()),
        );
        let reader = Reader::new(read_half, decoder, conn.clone(), accept_tx);
        tokio::spawn(reader.run().instrument(span));
        (ConnectionHandle { conn }, accept_rx)
    }
}

/// Controls a served connection and tells when it has ended. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    conn: Arc<ConnShared>,
}

impl ConnectionHandle {
    /// Sends GOAWAY (after everything already queued by streams) and refuses
    /// new streams; open streams carry on.
    pub async fn goaway(&self) -> Result<()> {
        self.conn.going_away.store(true, Ordering::Release);
        self.conn
            .data_tx
            .send(WriterCmd::GoAway(GoAwayStatus::Ok))
            .await
            .map_err(|_| SpdyError::ConnectionClosed)
    }

    /// Starts a graceful close: after everything already queued, writes
    /// GOAWAY, flushes and shuts our side down; the connection then ends when
    /// the peer closes or `Config::close_linger` has passed. Await
    /// [`ConnectionHandle::closed`] to learn when it is over.
    pub async fn close(&self) {
        self.conn.going_away.store(true, Ordering::Release);
        tokio::select! {
            sent = self.conn.data_tx.send(WriterCmd::Close) => {
                if sent.is_err() {
                    self.conn.shutdown.cancel();
                }
            }
            () = self.conn.shutdown.cancelled() => {}
        }
    }

    /// Ends the connection at once, dropping whatever is still queued.
    pub fn abort(&self) {
        self.conn.shutdown.cancel();
    }

    /// Resolves when the connection has ended: the peer went away, the idle
    /// timeout hit, a close finished, or a protocol or I/O error occurred.
    /// Use it to cancel work (an exec) whose client has vanished.
    pub async fn closed(&self) {
        self.conn.shutdown.cancelled().await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.shutdown.is_cancelled()
    }
}
