//! The connection's single writer: the only code that touches the write half
//! of the transport and the outbound header compression context.
//!
//! Two queues feed it. The *control* queue carries what the reader task must
//! answer (SYN_REPLY, PING echoes, RST_STREAM, window grants); the reader
//! never waits on it (`try_send`), so a peer that stops reading cannot wedge
//! our reading, and overflow is treated as abuse. The *data* queue carries
//! everything stream users and the connection handle send, in order, with
//! backpressure (bounded, waited on). Control frames go first; a SYN_REPLY is
//! queued before its stream is handed out, so it always precedes the
//! stream's data on the wire.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::compression::HeaderCompressor;
use crate::connection::ConnShared;
use crate::error::Result;
use crate::frame::{Frame, GoAwayStatus, encode_data_header};

/// Data payloads at least this large are written straight from their buffer
/// instead of being copied behind their frame header.
const DIRECT_WRITE_MIN: usize = 8 * 1024;
/// Small frames are gathered up to this many bytes before being written.
const BATCH_BYTES: usize = 64 * 1024;

/// Something for the writer to do.
#[derive(Debug)]
pub(crate) enum WriterCmd {
    /// Encode and write one frame.
    Frame(Frame),
    /// Write GOAWAY (once per connection) naming the last accepted stream.
    GoAway(GoAwayStatus),
    /// Write GOAWAY if not done yet, flush, shut the write side down, stop.
    Close,
}

/// Runs until the connection shuts down, a write fails, or a
/// [`WriterCmd::Close`] has been carried out.
pub(crate) async fn run_writer<W>(
    io: W,
    control: mpsc::Receiver<WriterCmd>,
    data: mpsc::Receiver<WriterCmd>,
    conn: Arc<ConnShared>,
) where
    W: AsyncWrite + Unpin,
{
    let mut writer = Writer {
        io: BufWriter::with_capacity(BATCH_BYTES, io),
        control,
        data,
        compressor: HeaderCompressor::new(),
        buf: BytesMut::with_capacity(8 * 1024),
        goaway_sent: false,
        conn: conn.clone(),
    };
    let result = tokio::select! {
        result = writer.run() => result,
        () = conn.shutdown.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY connection writer failed");
        conn.shutdown.cancel();
    }
}

struct Writer<W> {
    io: BufWriter<W>,
    control: mpsc::Receiver<WriterCmd>,
    data: mpsc::Receiver<WriterCmd>,
    compressor: HeaderCompressor,
    buf: BytesMut,
    goaway_sent: bool,
    conn: Arc<ConnShared>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn run(&mut self) -> Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                Some(cmd) = self.control.recv() => cmd,
                Some(cmd) = self.data.recv() => cmd,
                else => return Ok(()),
            };
            let mut next = Some(first);
            let mut close = false;
            while let Some(cmd) = next.take() {
                if self.apply(cmd).await? {
                    close = true;
                    break;
                }
                if self.buf.len() >= BATCH_BYTES {
                    self.write_buf().await?;
                }
                next = self
                    .control
                    .try_recv()
                    .ok()
                    .or_else(|| self.data.try_recv().ok());
            }
            self.write_buf().await?;
            self.io.flush().await?;
            self.conn.touch();
            if close {
                self.io.shutdown().await?;
                self.conn.write_closed.cancel();
                return Ok(());
            }
        }
    }

    /// Encodes one command; returns whether the writer must now close.
    async fn apply(&mut self, cmd: WriterCmd) -> Result<bool> {
        match cmd {
            WriterCmd::Frame(Frame::Data {
                stream_id,
                fin,
                data,
            }) if data.len() >= DIRECT_WRITE_MIN => {
                encode_data_header(&mut self.buf, stream_id, fin, data.len())?;
                self.write_buf().await?;
                self.io.write_all(&data).await?;
            }
            WriterCmd::Frame(frame) => {
                tracing::trace!(frame = frame.kind(), "SPDY frame out");
                frame.encode(&mut self.compressor, &mut self.buf)?;
            }
            WriterCmd::GoAway(status) => self.goaway(status)?,
            WriterCmd::Close => {
                self.goaway(GoAwayStatus::Ok)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn goaway(&mut self, status: GoAwayStatus) -> Result<()> {
        if self.goaway_sent {
            return Ok(());
        }
        self.goaway_sent = true;
        Frame::GoAway {
            last_good_stream_id: self.conn.last_accepted(),
            status,
        }
        .encode(&mut self.compressor, &mut self.buf)
    }

    async fn write_buf(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}
