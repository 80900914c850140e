//! The connection's reader task: decodes frames and acts on them.
//!
//! It answers every accepted SYN_STREAM with an empty SYN_REPLY (as the
//! kubelet does), echoes the peer's PINGs, delivers data to streams, records
//! window grants, refuses streams it cannot take, and enforces the idle
//! timeout. It hands its answers to the writer without waiting and treats a
//! full control queue as abuse, so a peer that stops reading cannot wedge it.
//!
//! Incoming data is buffered per stream up to `Config::stream_recv_buffer`;
//! beyond that the reader stops reading the socket until the stream's user
//! catches up. That is the brake `spdystream` relies on as well (its frame
//! workers block on unbuffered channels), since it ignores SPDY flow control.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::connection::ConnShared;
use crate::error::{Result, SpdyError};
use crate::flow_control::MAX_WINDOW;
use crate::frame::{Frame, FrameDecoder, GoAwayStatus, RstStatus, Setting, setting_id};
use crate::header::Headers;
use crate::stream::{Chunk, Stream, StreamState};
use crate::writer::WriterCmd;

/// With `grant_large_windows`, received bytes after which the window is
/// topped up again (half the 2^31-1 window).
const WINDOW_TOP_UP: u64 = 1 << 30;

/// What the reader knows about one stream.
struct Entry {
    state: Arc<StreamState>,
    /// Where data goes; `None` once the peer finished the stream.
    tx: Option<mpsc::UnboundedSender<Chunk>>,
    /// Receive-buffer space left (closed when the user dropped the receiver).
    budget: Arc<Semaphore>,
    /// Bytes received since the last window top-up.
    received: u64,
}

impl Entry {
    /// Both directions are over: the entry can go.
    fn finished(&self) -> bool {
        self.state.local_closed.load(Ordering::Acquire)
            && (self.tx.is_none() || self.budget.is_closed())
    }
}

pub(crate) struct Reader<R> {
    io: R,
    buf: BytesMut,
    decoder: FrameDecoder,
    conn: Arc<ConnShared>,
    accept: mpsc::Sender<Stream>,
    streams: HashMap<u32, Entry>,
    highest_stream_id: u32,
    next_ping_id: u32,
    session_received: u64,
    /// When set, the reader stops at this instant (we are closing).
    closing_deadline: Option<Instant>,
    /// The byte stream can no longer be decoded; input is discarded.
    broken: bool,
}

enum Wake {
    Read(std::io::Result<usize>),
    Shutdown,
    Idle,
    Ping,
    WriteClosed,
    Deadline,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(
        io: R,
        decoder: FrameDecoder,
        conn: Arc<ConnShared>,
        accept: mpsc::Sender<Stream>,
    ) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            decoder,
            conn,
            accept,
            streams: HashMap::new(),
            highest_stream_id: 0,
            next_ping_id: 2,
            session_received: 0,
            closing_deadline: None,
            broken: false,
        }
    }

    /// Runs until the connection ends, then ends every stream.
    pub(crate) async fn run(mut self) {
        match self.run_loop().await {
            Ok(()) => tracing::debug!("SPDY connection ended"),
            Err(e) => tracing::debug!(error = %e, "SPDY connection ended with an error"),
        }
        self.finish();
    }

    async fn run_loop(&mut self) -> Result<()> {
        let idle_timeout = self.conn.config.idle_timeout;
        let mut ping = self.conn.config.ping_interval.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        loop {
            if self.broken {
                self.buf.clear();
            } else {
                loop {
                    match self.decoder.decode(&mut self.buf) {
                        Ok(Some(frame)) => {
                            self.conn.touch();
                            self.handle(frame).await?;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "SPDY protocol error, closing the connection");
                            self.broken = true;
                            self.begin_close(GoAwayStatus::ProtocolError);
                            self.buf.clear();
                            break;
                        }
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let idle_deadline = idle_timeout.map(|t| self.conn.last_activity() + t);
            let write_closed = self.conn.write_closed.clone();
            let wake = tokio::select! {
                () = self.conn.shutdown.cancelled() => Wake::Shutdown,
                read = self.io.read_buf(&mut self.buf) => Wake::Read(read),
                () = sleep_until(idle_deadline) => Wake::Idle,
                () = tick(&mut ping) => Wake::Ping,
                () = write_closed.cancelled(), if self.closing_deadline.is_none() => Wake::WriteClosed,
                () = sleep_until(self.closing_deadline) => Wake::Deadline,
            };
            match wake {
                Wake::Read(Ok(0)) | Wake::Shutdown | Wake::Deadline => return Ok(()),
                Wake::Read(Ok(_)) => {}
                Wake::Read(Err(e)) => return Err(e.into()),
                Wake::Idle => {
                    if let Some(timeout) = idle_timeout
                        && self.conn.last_activity().elapsed() >= timeout
                    {
                        tracing::debug!(?timeout, "SPDY connection idle, closing");
                        self.begin_close(GoAwayStatus::Ok);
                    }
                }
                Wake::Ping => {
                    let id = self.next_ping_id;
                    self.next_ping_id = if id >= 0x7fff_fffe { 2 } else { id + 2 };
                    self.control(Frame::Ping { id })?;
                }
                Wake::WriteClosed => {
                    self.closing_deadline = Some(Instant::now() + self.conn.config.close_linger);
                    // Senders waiting for window credit must learn that
                    // nothing can be sent any more.
                    self.conn.windows.changed.notify_waiters();
                }
            }
        }
    }

    /// Closes from the reader's side (idle, protocol error): GOAWAY ahead of
    /// queued data, then the writer shuts down; stop reading after the linger
    /// time even if the writer is stuck.
    fn begin_close(&mut self, status: GoAwayStatus) {
        self.conn.going_away.store(true, Ordering::Release);
        let _ = self.conn.control_tx.try_send(WriterCmd::GoAway(status));
        let _ = self.conn.control_tx.try_send(WriterCmd::Close);
        let deadline = Instant::now() + self.conn.config.close_linger;
        self.closing_deadline = Some(self.closing_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn closing(&self) -> bool {
        self.closing_deadline.is_some() || self.conn.write_closed.is_cancelled()
    }

    /// Queues a control frame without waiting. A full queue means the peer
    /// keeps sending while not reading our answers: give up on it.
    fn control(&self, frame: Frame) -> Result<()> {
        match self.conn.control_tx.try_send(WriterCmd::Frame(frame)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SpdyError::Io(std::io::Error::other(
                "peer does not read while it keeps sending control frames",
            ))),
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<()> {
        tracing::trace!(frame = frame.kind(), "SPDY frame in");
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                headers,
                ..
            } => {
                self.on_syn_stream(stream_id, fin, unidirectional, headers)
                    .await
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data).await,
            Frame::RstStream { stream_id, status } => {
                self.on_reset(stream_id, status);
                Ok(())
            }
            Frame::Headers { stream_id, fin, .. } => {
                if fin {
                    self.on_remote_fin(stream_id);
                }
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => {
                self.on_window_update(stream_id, delta);
                Ok(())
            }
            Frame::Settings { entries, .. } => {
                self.on_settings(&entries);
                Ok(())
            }
            Frame::Ping { id } => {
                // Odd ids are the client's: echo them. Even ids are answers
                // to our own pings.
                if id % 2 == 1 {
                    self.control(Frame::Ping { id })?;
                }
                Ok(())
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                tracing::debug!(last_good_stream_id, ?status, "SPDY peer sent GOAWAY");
                self.conn.going_away.store(true, Ordering::Release);
                Ok(())
            }
            Frame::SynReply { stream_id, .. } => {
                // We never open streams, so there is nothing to reply to.
                tracing::debug!(
                    stream_id,
                    "SPDY SYN_REPLY for a stream we did not open, ignored"
                );
                Ok(())
            }
            Frame::Unknown { frame_type, .. } => {
                tracing::debug!(frame_type, "SPDY control frame of unknown type ignored");
                Ok(())
            }
        }
    }

    async fn on_syn_stream(
        &mut self,
        stream_id: u32,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    ) -> Result<()> {
        if stream_id == 0 {
            tracing::debug!("SPDY SYN_STREAM with stream id 0 ignored");
            return Ok(());
        }
        if stream_id.is_multiple_of(2) || stream_id <= self.highest_stream_id {
            // Clients open odd ids in increasing order; spdystream answers a
            // violation with RST_STREAM(PROTOCOL_ERROR) as well.
            tracing::debug!(
                stream_id,
                "SPDY SYN_STREAM with an invalid stream id refused"
            );
            return self.control(Frame::RstStream {
                stream_id,
                status: RstStatus::ProtocolError,
            });
        }
        self.highest_stream_id = stream_id;
        let refuse = |this: &Self| {
            this.control(Frame::RstStream {
                stream_id,
                status: RstStatus::RefusedStream,
            })
        };
        if self.conn.going_away() || self.closing() {
            return refuse(self);
        }
        self.streams.retain(|_, entry| !entry.finished());
        if self.streams.len() >= self.conn.config.max_concurrent_streams {
            tracing::debug!(stream_id, "SPDY stream refused: too many open streams");
            return refuse(self);
        }
        let accept = self.accept.clone();
        let write_closed = self.conn.write_closed.clone();
        let permit = tokio::select! {
            permit = accept.reserve_owned() => permit.ok(),
            () = self.conn.shutdown.cancelled() => return Ok(()),
            () = write_closed.cancelled() => None,
        };
        let Some(permit) = permit else {
            return refuse(self);
        };

        let state = Arc::new(StreamState::new(
            stream_id,
            self.conn.windows.initial_stream_window(),
            unidirectional,
        ));
        let budget = Arc::new(Semaphore::new(self.conn.config.stream_recv_buffer));
        let (tx, rx) = mpsc::unbounded_channel();
        if !unidirectional {
            // Queued before the stream is handed out, so it precedes any data
            // the stream's user sends.
            self.control(Frame::SynReply {
                stream_id,
                fin: false,
                headers: Headers::new(),
            })?;
        }
        self.conn.last_accepted.store(stream_id, Ordering::Release);
        tracing::debug!(stream_id, ?headers, "SPDY stream accepted");
        let stream = Stream::new(
            headers,
            state.clone(),
            self.conn.clone(),
            rx,
            budget.clone(),
        );
        permit.send(stream);
        self.streams.insert(
            stream_id,
            Entry {
                state,
                tx: (!fin).then_some(tx),
                budget,
                received: 0,
            },
        );
        Ok(())
    }

    async fn on_data(&mut self, stream_id: u32, fin: bool, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        self.session_received += len;
        let Some(entry) = self.streams.get_mut(&stream_id) else {
            if stream_id.is_multiple_of(2) || stream_id > self.highest_stream_id {
                // Never opened: tell the peer. Streams we already forgot
                // (closed or reset) just drop late data.
                self.control(Frame::RstStream {
                    stream_id,
                    status: RstStatus::InvalidStream,
                })?;
            }
            return self.top_up_session();
        };
        entry.received += len;
        let deliver = match &entry.tx {
            Some(tx) if !data.is_empty() && !entry.budget.is_closed() => {
                Some((tx.clone(), entry.budget.clone()))
            }
            _ => None,
        };
        if let Some((tx, budget)) = deliver {
            let permits = data.len().min(self.conn.config.stream_recv_buffer) as u32;
            let write_closed = self.conn.write_closed.clone();
            let acquired = tokio::select! {
                permit = budget.acquire_many_owned(permits) => permit.ok(),
                () = self.conn.shutdown.cancelled() => return Ok(()),
                () = write_closed.cancelled() => None,
            };
            if let Some(permit) = acquired {
                // The credit travels with the chunk and returns when it is read.
                permit.forget();
                let _ = tx.send(Chunk { data, permits });
            }
        }
        if fin {
            self.on_remote_fin(stream_id);
        } else if let Some(entry) = self.streams.get_mut(&stream_id)
            && self.conn.config.grant_large_windows
            && entry.received >= WINDOW_TOP_UP
        {
            let delta = entry.received.min(MAX_WINDOW as u64) as u32;
            entry.received -= u64::from(delta);
            self.control(Frame::WindowUpdate { stream_id, delta })?;
        }
        self.top_up_session()
    }

    fn top_up_session(&mut self) -> Result<()> {
        if self.conn.config.grant_large_windows && self.session_received >= WINDOW_TOP_UP {
            let delta = self.session_received.min(MAX_WINDOW as u64) as u32;
            self.session_received -= u64::from(delta);
            self.control(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            })?;
        }
        Ok(())
    }

    fn on_remote_fin(&mut self, stream_id: u32) {
        if let Some(entry) = self.streams.get_mut(&stream_id) {
            // Dropping the sender ends the user's reads after buffered data.
            entry.tx = None;
            if entry.finished() {
                self.streams.remove(&stream_id);
            }
        }
    }

    fn on_reset(&mut self, stream_id: u32, status: RstStatus) {
        tracing::debug!(stream_id, ?status, "SPDY stream reset by the peer");
        if let Some(entry) = self.streams.remove(&stream_id) {
            entry.state.reset.store(true, Ordering::Release);
            // Never answer a reset with a reset: the stream is closed for us too.
            entry.state.local_closed.store(true, Ordering::Release);
            drop(entry.tx);
            self.conn.windows.changed.notify_waiters();
        }
    }

    fn on_window_update(&mut self, stream_id: u32, delta: u32) {
        if delta == 0 {
            return;
        }
        if stream_id == 0 {
            self.conn.windows.grant_session(delta);
        } else if let Some(entry) = self.streams.get(&stream_id) {
            self.conn
                .windows
                .grant_stream(&entry.state.send_window, delta);
        }
    }

    fn on_settings(&mut self, entries: &[Setting]) {
        for setting in entries {
            if setting.id == setting_id::INITIAL_WINDOW_SIZE {
                let delta = self.conn.windows.set_initial_stream_window(setting.value);
                for entry in self.streams.values() {
                    entry.state.send_window.fetch_add(delta, Ordering::AcqRel);
                }
                self.conn.windows.changed.notify_waiters();
            }
        }
    }

    /// The connection is over: end every stream and wake waiting senders.
    fn finish(&mut self) {
        self.conn.going_away.store(true, Ordering::Release);
        self.conn.shutdown.cancel();
        self.streams.clear();
        self.conn.windows.changed.notify_waiters();
    }
}
