//! One SPDY stream as its user sees it: the headers it was opened with, an
//! incoming byte sequence and an outgoing one.
//!
//! A [`Stream`] can be used whole (`recv`/`send`), split into a [`RecvHalf`]
//! and a [`SendHalf`] for two tasks, or turned into a [`StreamIo`] that
//! implements `AsyncRead + AsyncWrite` (for `tokio::io::copy_bidirectional`
//! in port-forwarding).
//!
//! Closing follows `spdystream`: [`SendHalf::close`] sends an empty data
//! frame with FIN (our direction is done, the peer's may go on);
//! [`SendHalf::reset`] sends RST_STREAM(CANCEL) and ends both directions.
//! Dropping a whole stream (both halves) that was neither closed nor reset
//! resets it, which is also what a kubelet does to every stream when it ends
//! a session. Dropping only one half does nothing on the wire: a kubelet
//! never writes to `stdin` nor reads `stdout`, and must not reset them for that.
//! Incoming data ends (`None`) on the peer's FIN, the peer's reset, or the end
//! of the connection.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::PollSender;

use crate::connection::ConnShared;
use crate::frame::{Frame, RstStatus};
use crate::header::Headers;
use crate::writer::WriterCmd;

/// Per-stream state shared by the stream's halves and the connection reader.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) id: u32,
    /// Send window granted by the peer (see `flow_control`).
    pub(crate) send_window: AtomicI64,
    /// We sent FIN or RST_STREAM, or the peer reset the stream.
    pub(crate) local_closed: AtomicBool,
    /// The peer reset the stream.
    pub(crate) reset: AtomicBool,
}

impl StreamState {
    pub(crate) fn new(id: u32, send_window: i64, local_closed: bool) -> Self {
        Self {
            id,
            send_window: AtomicI64::new(send_window),
            local_closed: AtomicBool::new(local_closed),
            reset: AtomicBool::new(false),
        }
    }
}

/// A piece of received data and the receive-buffer credit it holds.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) data: Bytes,
    pub(crate) permits: u32,
}

/// A stream opened by the peer and accepted by the connection (it has
/// already been answered with SYN_REPLY).
pub struct Stream {
    headers: Headers,
    recv: RecvHalf,
    send: SendHalf,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Stream {
    pub(crate) fn new(
        headers: Headers,
        state: Arc<StreamState>,
        conn: Arc<ConnShared>,
        rx: mpsc::UnboundedReceiver<Chunk>,
        budget: Arc<Semaphore>,
    ) -> Self {
        let guard = Arc::new(StreamGuard { state, conn });
        Self {
            headers,
            recv: RecvHalf::new(rx, budget, guard.clone()),
            send: SendHalf::new(guard),
        }
    }

    /// The stream id (odd: opened by the client).
    pub fn id(&self) -> u32 {
        self.send.state.id
    }

    /// The headers of the SYN_STREAM that opened the stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The Kubernetes `streamtype` header (`error`, `stdin`, `stdout`,
    /// `stderr`, `resize`, `data`), if present.
    pub fn stream_type(&self) -> Option<&str> {
        self.headers.get("streamtype")
    }

    /// Next piece of incoming data; `None` once the peer finished or reset
    /// the stream or the connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.recv.recv().await
    }

    /// Sends all of `data`, split into frames, waiting for room in the
    /// connection's write queue (and for peer credit if the peer enforces
    /// flow control).
    pub async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.send.send(data).await
    }

    /// Ends our direction (empty data frame with FIN). Idempotent.
    pub async fn close(&mut self) -> io::Result<()> {
        self.send.close().await
    }

    /// Aborts the stream in both directions (RST_STREAM with CANCEL).
    pub async fn reset(&mut self) -> io::Result<()> {
        self.send.reset().await
    }

    /// Whether the peer reset the stream.
    pub fn is_reset(&self) -> bool {
        self.recv.is_reset()
    }

    /// Splits the stream so that reading and writing can happen in different
    /// tasks. Dropping one half does not affect the other; the stream is
    /// reset when both are gone without [`SendHalf::close`].
    pub fn into_split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }

    /// Wraps the stream as `AsyncRead + AsyncWrite`. Shutting the writer down
    /// sends FIN; reading returns EOF on the peer's FIN and
    /// `ErrorKind::ConnectionReset` after the peer's reset.
    pub fn into_io(self) -> StreamIo {
        StreamIo {
            recv: self.recv,
            send: self.send,
            pending: Bytes::new(),
        }
    }
}

/// The receiving direction of a stream.
pub struct RecvHalf {
    rx: mpsc::UnboundedReceiver<Chunk>,
    budget: Arc<Semaphore>,
    state: Arc<StreamState>,
    _guard: Arc<StreamGuard>,
}

impl fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf")
            .field("id", &self.state.id)
            .finish()
    }
}

impl RecvHalf {
    fn new(
        rx: mpsc::UnboundedReceiver<Chunk>,
        budget: Arc<Semaphore>,
        guard: Arc<StreamGuard>,
    ) -> Self {
        Self {
            rx,
            budget,
            state: guard.state.clone(),
            _guard: guard,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Next piece of incoming data; `None` once the peer finished or reset
    /// the stream or the connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`RecvHalf::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match ready!(self.rx.poll_recv(cx)) {
            Some(chunk) => {
                // Reading frees buffer space: the connection may read on.
                self.budget.add_permits(chunk.permits as usize);
                Poll::Ready(Some(chunk.data))
            }
            None => Poll::Ready(None),
        }
    }

    /// Whether the peer reset the stream.
    pub fn is_reset(&self) -> bool {
        self.state.reset.load(Ordering::Acquire)
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        // Nobody will read: the connection discards further data instead of
        // waiting for buffer space.
        self.budget.close();
    }
}

/// The sending direction of a stream.
pub struct SendHalf {
    state: Arc<StreamState>,
    conn: Arc<ConnShared>,
    sender: PollSender<WriterCmd>,
    window_wait: Option<Pin<Box<OwnedNotified>>>,
    _guard: Arc<StreamGuard>,
}

impl fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf")
            .field("id", &self.state.id)
            .finish()
    }
}

fn closed_connection() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed")
}

impl SendHalf {
    fn new(guard: Arc<StreamGuard>) -> Self {
        Self {
            state: guard.state.clone(),
            conn: guard.conn.clone(),
            sender: PollSender::new(guard.conn.data_tx.clone()),
            window_wait: None,
            _guard: guard,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Sends all of `data`, split into frames of at most
    /// `Config::max_send_frame` bytes.
    pub async fn send(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_send_with(cx, data.len(), |n| data.slice(..n))).await?;
            data.advance(n);
        }
        Ok(())
    }

    /// Ends our direction with an empty FIN data frame. Idempotent; a no-op
    /// after a reset.
    pub async fn close(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_close(cx)).await
    }

    /// Aborts the stream with RST_STREAM(CANCEL). A no-op if the stream is
    /// already closed in our direction or was reset.
    pub async fn reset(&mut self) -> io::Result<()> {
        if self.state.local_closed.load(Ordering::Acquire) {
            return Ok(());
        }
        poll_fn(|cx| self.sender.poll_reserve(cx))
            .await
            .map_err(|_| closed_connection())?;
        if self.state.local_closed.swap(true, Ordering::AcqRel) {
            self.sender.abort_send();
            return Ok(());
        }
        self.sender
            .send_item(WriterCmd::Frame(Frame::RstStream {
                stream_id: self.state.id,
                status: RstStatus::Cancel,
            }))
            .map_err(|_| closed_connection())
    }

    fn check_open(&self) -> io::Result<()> {
        if self.state.reset.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "SPDY stream reset by the peer",
            ));
        }
        if self.state.local_closed.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY stream already closed for sending",
            ));
        }
        if self.conn.shutdown.is_cancelled() || self.conn.write_closed.is_cancelled() {
            return Err(closed_connection());
        }
        Ok(())
    }

    fn can_proceed(&self) -> bool {
        self.conn.windows.available(&self.state.send_window) > 0 || self.check_open().is_err()
    }

    /// Ready once the peer's windows allow sending (or the stream or the
    /// connection ended, which the caller then reports).
    fn poll_window(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(wait) = self.window_wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                self.window_wait = None;
            }
            if self.can_proceed() {
                return Poll::Ready(());
            }
            let mut wait = Box::pin(self.conn.windows.changed.clone().notified_owned());
            // Register before the second check so a grant in between is not missed.
            wait.as_mut().enable();
            if self.can_proceed() {
                return Poll::Ready(());
            }
            self.window_wait = Some(wait);
        }
    }

    /// Queues one data frame of at most `len` bytes (and at most one frame's
    /// worth), built by `make(n)`; returns `n`.
    fn poll_send_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        make: impl FnOnce(usize) -> Bytes,
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            self.check_open()?;
            ready!(self.poll_window(cx));
            self.check_open()?;
            ready!(self.sender.poll_reserve(cx)).map_err(|_| closed_connection())?;
            let want = len.min(self.conn.config.max_send_frame);
            let n = self.conn.windows.take(&self.state.send_window, want);
            if n == 0 {
                // Another stream took the session credit meanwhile.
                self.sender.abort_send();
                continue;
            }
            let frame = Frame::Data {
                stream_id: self.state.id,
                fin: false,
                data: make(n),
            };
            self.sender
                .send_item(WriterCmd::Frame(frame))
                .map_err(|_| closed_connection())?;
            return Poll::Ready(Ok(n));
        }
    }

    /// Poll form of [`SendHalf::close`].
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.local_closed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        if self.conn.shutdown.is_cancelled() || self.conn.write_closed.is_cancelled() {
            return Poll::Ready(Err(closed_connection()));
        }
        ready!(self.sender.poll_reserve(cx)).map_err(|_| closed_connection())?;
        if self.state.local_closed.swap(true, Ordering::AcqRel) {
            self.sender.abort_send();
            return Poll::Ready(Ok(()));
        }
        let fin = Frame::Data {
            stream_id: self.state.id,
            fin: true,
            data: Bytes::new(),
        };
        Poll::Ready(
            self.sender
                .send_item(WriterCmd::Frame(fin))
                .map_err(|_| closed_connection()),
        )
    }
}

/// Shared by both halves of a stream; resets the stream when the last half
/// goes away while our direction is still open.
struct StreamGuard {
    state: Arc<StreamState>,
    conn: Arc<ConnShared>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.state.local_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let rst = || {
            WriterCmd::Frame(Frame::RstStream {
                stream_id: self.state.id,
                status: RstStatus::Cancel,
            })
        };
        // Behind the stream's queued data if there is room, else ahead of it:
        // either way the peer learns the stream is gone.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.conn.data_tx.try_send(rst()) {
            let _ = self.conn.control_tx.try_send(rst());
        }
    }
}

/// A stream as `AsyncRead + AsyncWrite`.
pub struct StreamIo {
    recv: RecvHalf,
    send: SendHalf,
    pending: Bytes,
}

impl fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamIo")
            .field("id", &self.send.state.id)
            .finish()
    }
}

impl StreamIo {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.send.state.id
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.recv.poll_recv(cx)) {
                Some(data) => this.pending = data,
                None if this.recv.is_reset() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "SPDY stream reset by the peer",
                    )));
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .send
            .poll_send_with(cx, buf.len(), |n| Bytes::copy_from_slice(&buf[..n]))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued frames are the connection writer's to flush; it does so as
        // soon as its queues run empty.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().send.poll_close(cx)
    }
}
