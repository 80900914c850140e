//! SPDY/3 frames: their in-memory form, the encoder and the incremental decoder.
//!
//! Every frame starts with an 8-byte header (integers big-endian):
//!
//! ```text
//! control: |1| version (15) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream id (31)           | flags (8) | length (24) | payload
//! ```
//!
//! Control payloads (version 3; SPDY/3.1 keeps version 3 on the wire):
//!
//! | type | frame         | payload                                                        |
//! |------|---------------|----------------------------------------------------------------|
//! | 1    | SYN_STREAM    | stream id, associated stream id, priority (3 bits) + 5 unused, slot, compressed headers |
//! | 2    | SYN_REPLY     | stream id, compressed headers                                  |
//! | 3    | RST_STREAM    | stream id, status code                                         |
//! | 4    | SETTINGS      | count, then count × (flags (8) + id (24), value (32))          |
//! | 6    | PING          | ping id                                                        |
//! | 7    | GOAWAY        | last good stream id, status code                               |
//! | 8    | HEADERS       | stream id, compressed headers                                  |
//! | 9    | WINDOW_UPDATE | stream id (0 = the whole session in SPDY/3.1), delta (31 bits) |
//!
//! Flags: `FIN` (0x01) on SYN_STREAM, SYN_REPLY, HEADERS and data frames;
//! `UNIDIRECTIONAL` (0x02) on SYN_STREAM; `CLEAR_SETTINGS` (0x01) on SETTINGS.
//! Unknown control types are kept as [`Frame::Unknown`] so the connection can
//! ignore them, as the protocol asks.
//!
//! This module does no I/O and keeps no stream state: it turns bytes into
//! frames and back. The only state is the pair of zlib contexts that header
//! blocks require, which is why encoding takes a [`HeaderCompressor`] and the
//! [`FrameDecoder`] owns a decompressor.

use bytes::{BufMut, Bytes, BytesMut};

use crate::compression::HeaderCompressor;
use crate::error::{Result, SpdyError};
use crate::header::Headers;

mod decoder;

pub use decoder::{DecoderLimits, FrameDecoder};

/// The protocol version on the wire.
pub const SPDY_VERSION: u16 = 3;
/// Size of every frame header.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: usize = 0x00ff_ffff;
/// Initial per-stream (and, in SPDY/3.1, session) flow-control window.
pub const DEFAULT_INITIAL_WINDOW: u32 = 65_536;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// Status carried by RST_STREAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RstStatus {
    /// Generic protocol violation.
    ProtocolError,
    /// A frame arrived for a stream that is not active.
    InvalidStream,
    /// The stream was refused before any processing (safe to retry).
    RefusedStream,
    /// The peer's protocol version is not supported.
    UnsupportedVersion,
    /// The stream is no longer needed (what `spdystream` sends on `Reset`).
    Cancel,
    /// An internal error not caused by the peer.
    InternalError,
    /// The peer broke flow control.
    FlowControlError,
    /// SYN_STREAM for an id already in use.
    StreamInUse,
    /// Data or SYN_REPLY for a half-closed stream.
    StreamAlreadyClosed,
    /// Obsolete credential error (CREDENTIAL frames are not used).
    InvalidCredentials,
    /// A frame was too large to process.
    FrameTooLarge,
    /// Any other code, kept verbatim.
    Other(u32),
}

impl RstStatus {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            Self::ProtocolError => 1,
            Self::InvalidStream => 2,
            Self::RefusedStream => 3,
            Self::UnsupportedVersion => 4,
            Self::Cancel => 5,
            Self::InternalError => 6,
            Self::FlowControlError => 7,
            Self::StreamInUse => 8,
            Self::StreamAlreadyClosed => 9,
            Self::InvalidCredentials => 10,
            Self::FrameTooLarge => 11,
            Self::Other(code) => code,
        }
    }

    /// The status for a wire code.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => Self::ProtocolError,
            2 => Self::InvalidStream,
            3 => Self::RefusedStream,
            4 => Self::UnsupportedVersion,
            5 => Self::Cancel,
            6 => Self::InternalError,
            7 => Self::FlowControlError,
            8 => Self::StreamInUse,
            9 => Self::StreamAlreadyClosed,
            10 => Self::InvalidCredentials,
            11 => Self::FrameTooLarge,
            other => Self::Other(other),
        }
    }
}

/// Status carried by GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoAwayStatus {
    /// Normal shutdown.
    Ok,
    /// The peer broke the protocol.
    ProtocolError,
    /// Internal failure of the sender.
    InternalError,
    /// Any other code, kept verbatim.
    Other(u32),
}

impl GoAwayStatus {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            Self::Ok => 0,
            Self::ProtocolError => 1,
            Self::InternalError => 2,
            Self::Other(code) => code,
        }
    }

    /// The status for a wire code.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::ProtocolError,
            2 => Self::InternalError,
            other => Self::Other(other),
        }
    }
}

/// Well-known SETTINGS ids (SPDY/3 section 2.6.4).
pub mod setting_id {
    /// Expected upload bandwidth.
    pub const UPLOAD_BANDWIDTH: u32 = 1;
    /// Expected download bandwidth.
    pub const DOWNLOAD_BANDWIDTH: u32 = 2;
    /// Expected round-trip time.
    pub const ROUND_TRIP_TIME: u32 = 3;
    /// How many streams the sender allows its peer to open.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    /// TCP congestion window hint.
    pub const CURRENT_CWND: u32 = 5;
    /// Retransmission rate hint.
    pub const DOWNLOAD_RETRANS_RATE: u32 = 6;
    /// Initial flow-control window of every stream the receiver sends on.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
    /// Obsolete client-certificate vector size.
    pub const CLIENT_CERTIFICATE_VECTOR_SIZE: u32 = 8;
}

/// One SETTINGS entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Per-entry flags (`0x1` persist value, `0x2` persisted).
    pub flags: u8,
    /// Setting id, 24 bits (see [`setting_id`]).
    pub id: u32,
    /// Setting value.
    pub value: u32,
}

/// A decoded SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A peer opens a stream.
    SynStream {
        /// New stream id (odd when opened by a client).
        stream_id: u32,
        /// Stream this one is associated with (0 if none).
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused by Kubernetes).
        slot: u8,
        /// The opener sends nothing more on this stream.
        fin: bool,
        /// The receiver must not send on this stream.
        unidirectional: bool,
        /// Stream headers (`streamtype`, `port`, `requestid`, ...).
        headers: Headers,
    },
    /// Acceptance of a stream opened by the other side.
    SynReply {
        /// Accepted stream id.
        stream_id: u32,
        /// The replier sends nothing more on this stream.
        fin: bool,
        /// Reply headers (empty from a kubelet).
        headers: Headers,
    },
    /// Abnormal termination of a stream.
    RstStream {
        /// Terminated stream id.
        stream_id: u32,
        /// Why.
        status: RstStatus,
    },
    /// Connection parameters.
    Settings {
        /// Clear previously persisted settings.
        clear: bool,
        /// The entries, in wire order.
        entries: Vec<Setting>,
    },
    /// Liveness probe; the receiver echoes pings the other side started.
    Ping {
        /// Ping id: odd from the client, even from the server.
        id: u32,
    },
    /// The sender accepts no new streams.
    GoAway {
        /// Highest stream id the sender accepted.
        last_good_stream_id: u32,
        /// Why.
        status: GoAwayStatus,
    },
    /// Extra headers for a stream.
    Headers {
        /// Stream id.
        stream_id: u32,
        /// The sender sends nothing more on this stream.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate {
        /// Stream id, or 0 for the session window (SPDY/3.1).
        stream_id: u32,
        /// Additional bytes the receiver of this frame may send (31 bits).
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// Stream id.
        stream_id: u32,
        /// The sender sends nothing more on this stream.
        fin: bool,
        /// The payload (may be empty, e.g. a bare FIN).
        data: Bytes,
    },
    /// A control frame of a type this crate does not know; to be ignored.
    Unknown {
        /// Control frame type.
        frame_type: u16,
        /// Raw flags.
        flags: u8,
        /// Raw payload.
        payload: Bytes,
    },
}

impl Frame {
    /// A short name for logs, e.g. `SYN_STREAM`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SynStream { .. } => "SYN_STREAM",
            Self::SynReply { .. } => "SYN_REPLY",
            Self::RstStream { .. } => "RST_STREAM",
            Self::Settings { .. } => "SETTINGS",
            Self::Ping { .. } => "PING",
            Self::GoAway { .. } => "GOAWAY",
            Self::Headers { .. } => "HEADERS",
            Self::WindowUpdate { .. } => "WINDOW_UPDATE",
            Self::Data { .. } => "DATA",
            Self::Unknown { .. } => "UNKNOWN",
        }
    }

    /// Appends the wire form of the frame to `out`. Header blocks go through
    /// `compressor`, which must be the connection's one outbound context and
    /// see frames in the order they are written.
    pub fn encode(&self, compressor: &mut HeaderCompressor, out: &mut BytesMut) -> Result<()> {
        match self {
            Self::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let block = compress(headers, compressor)?;
                let mut flags = 0;
                if *fin {
                    flags |= FLAG_FIN;
                }
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                control_header(out, TYPE_SYN_STREAM, flags, 10 + block.len())?;
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(associated_to & STREAM_ID_MASK);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(*slot);
                out.put_slice(&block);
            }
            Self::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Self::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let frame_type = if matches!(self, Self::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let block = compress(headers, compressor)?;
                control_header(out, frame_type, fin_flag(*fin), 4 + block.len())?;
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_slice(&block);
            }
            Self::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(status.code());
            }
            Self::Settings { clear, entries } => {
                let len = entries
                    .len()
                    .checked_mul(8)
                    .and_then(|n| n.checked_add(4))
                    .ok_or(SpdyError::FrameTooLarge {
                        len: usize::MAX,
                        limit: MAX_PAYLOAD_LEN,
                    })?;
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control_header(out, TYPE_SETTINGS, flags, len)?;
                out.put_u32(entries.len() as u32);
                for entry in entries {
                    out.put_u32((u32::from(entry.flags) << 24) | (entry.id & 0x00ff_ffff));
                    out.put_u32(entry.value);
                }
            }
            Self::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4)?;
                out.put_u32(*id);
            }
            Self::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, TYPE_GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & STREAM_ID_MASK);
                out.put_u32(status.code());
            }
            Self::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Self::Data {
                stream_id,
                fin,
                data,
            } => {
                encode_data_header(out, *stream_id, *fin, data.len())?;
                out.put_slice(data);
            }
            Self::Unknown {
                frame_type,
                flags,
                payload,
            } => {
                control_header(out, *frame_type, *flags, payload.len())?;
                out.put_slice(payload);
            }
        }
        Ok(())
    }
}

/// Writes only the 8-byte header of a data frame carrying `len` bytes, so a
/// writer can send a large payload without copying it into the buffer.
pub fn encode_data_header(out: &mut BytesMut, stream_id: u32, fin: bool, len: usize) -> Result<()> {
    if len > MAX_PAYLOAD_LEN {
        return Err(SpdyError::FrameTooLarge {
            len,
            limit: MAX_PAYLOAD_LEN,
        });
    }
    out.put_u32(stream_id & STREAM_ID_MASK);
    out.put_u32((u32::from(fin_flag(fin)) << 24) | len as u32);
    Ok(())
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn control_header(out: &mut BytesMut, frame_type: u16, flags: u8, len: usize) -> Result<()> {
    if len > MAX_PAYLOAD_LEN {
        return Err(SpdyError::FrameTooLarge {
            len,
            limit: MAX_PAYLOAD_LEN,
        });
    }
    out.reserve(FRAME_HEADER_LEN + len);
    out.put_u16(0x8000 | SPDY_VERSION);
    out.put_u16(frame_type);
    out.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

fn compress(headers: &Headers, compressor: &mut HeaderCompressor) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    headers.encode(&mut raw)?;
    let mut block = Vec::with_capacity(raw.len() / 2 + 16);
    compressor.compress_block(&raw, &mut block)?;
    Ok(block)
}
