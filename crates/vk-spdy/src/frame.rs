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

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::compression::{HeaderCompressor, HeaderDecompressor};
use crate::error::{Result, SpdyError};
use crate::header::Headers;

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

/// Limits that keep a hostile peer from making the decoder allocate without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest accepted frame payload, data or control. A frame announcing
    /// more is rejected as soon as its header is read, before it is buffered.
    pub max_frame_len: usize,
    /// Largest accepted decompressed header block.
    pub max_header_block_len: usize,
    /// Largest accepted number of header values (hence names) in one block.
    pub max_headers: usize,
}

impl Default for DecoderLimits {
    /// Data frames up to the protocol maximum (Go clients write a whole
    /// in-memory stdin as one frame), header blocks up to 256 KiB and 1000
    /// values (the same count `spdystream` allows).
    fn default() -> Self {
        Self {
            max_frame_len: MAX_PAYLOAD_LEN,
            max_header_block_len: 256 * 1024,
            max_headers: 1000,
        }
    }
}

/// Incremental frame decoder: feed it the bytes read so far; it takes whole
/// frames off the front of the buffer.
///
/// After it returns an error it is unusable (the header decompression
/// context can no longer be trusted) and every later call fails.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: DecoderLimits,
    decompressor: HeaderDecompressor,
    failed: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl FrameDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            decompressor: HeaderDecompressor::new(),
            failed: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecoderLimits {
        &self.limits
    }

    /// Decodes the next frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole frame (after
    /// reserving room for the rest of it, at most the frame length limit).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        if self.failed {
            return Err(SpdyError::DecoderFailed);
        }
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let flags = header[4];
        let len = (u32::from(header[5]) << 16 | u32::from(header[6]) << 8 | u32::from(header[7]))
            as usize;
        if len > self.limits.max_frame_len {
            return Err(SpdyError::FrameTooLarge {
                len,
                limit: self.limits.max_frame_len,
            });
        }
        let total = FRAME_HEADER_LEN + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total).freeze();
        frame.advance(FRAME_HEADER_LEN);
        let payload = frame;

        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & STREAM_ID_MASK,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != SPDY_VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
        let frame_type = (first & 0xffff) as u16;
        self.decode_control(frame_type, flags, payload).map(Some)
    }

    fn decode_control(&mut self, frame_type: u16, flags: u8, mut p: Bytes) -> Result<Frame> {
        let fin = flags & FLAG_FIN != 0;
        match frame_type {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(malformed("SYN_STREAM", "shorter than 10 bytes"));
                }
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                let associated_to = p.get_u32() & STREAM_ID_MASK;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                let headers = self.headers(&p)?;
                Ok(Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                })
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let name = if frame_type == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                if p.len() < 4 {
                    return Err(malformed(name, "shorter than 4 bytes"));
                }
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                let headers = self.headers(&p)?;
                Ok(if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                })
            }
            TYPE_RST_STREAM => {
                exact_len("RST_STREAM", &p, 8)?;
                Ok(Frame::RstStream {
                    stream_id: p.get_u32() & STREAM_ID_MASK,
                    status: RstStatus::from_code(p.get_u32()),
                })
            }
            TYPE_SETTINGS => {
                if p.len() < 4 {
                    return Err(malformed("SETTINGS", "shorter than 4 bytes"));
                }
                let count = p.get_u32() as usize;
                if count.checked_mul(8) != Some(p.len()) {
                    return Err(malformed(
                        "SETTINGS",
                        "length does not match the entry count",
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let flags_and_id = p.get_u32();
                        Setting {
                            flags: (flags_and_id >> 24) as u8,
                            id: flags_and_id & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Ok(Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                })
            }
            TYPE_PING => {
                exact_len("PING", &p, 4)?;
                Ok(Frame::Ping { id: p.get_u32() })
            }
            TYPE_GOAWAY => {
                exact_len("GOAWAY", &p, 8)?;
                Ok(Frame::GoAway {
                    last_good_stream_id: p.get_u32() & STREAM_ID_MASK,
                    status: GoAwayStatus::from_code(p.get_u32()),
                })
            }
            TYPE_WINDOW_UPDATE => {
                exact_len("WINDOW_UPDATE", &p, 8)?;
                Ok(Frame::WindowUpdate {
                    stream_id: p.get_u32() & STREAM_ID_MASK,
                    delta: p.get_u32() & 0x7fff_ffff,
                })
            }
            _ => Ok(Frame::Unknown {
                frame_type,
                flags,
                payload: p,
            }),
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers> {
        let raw = self
            .decompressor
            .decompress_block(compressed, self.limits.max_header_block_len)?;
        Headers::decode(&raw, self.limits.max_headers)
    }
}

fn malformed(frame: &'static str, reason: &'static str) -> SpdyError {
    SpdyError::MalformedFrame { frame, reason }
}

fn exact_len(frame: &'static str, p: &Bytes, len: usize) -> Result<()> {
    if p.len() == len {
        Ok(())
    } else {
        Err(malformed(frame, "wrong payload length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::SPDY3_DICTIONARY;
    use flate2::{Decompress, FlushDecompress};

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 0x7fff_ffff,
                associated_to: 3,
                priority: 0,
                slot: 9,
                fin: true,
                unidirectional: true,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 5,
                fin: false,
                headers: Headers::new(),
            },
            Frame::SynReply {
                stream_id: 7,
                fin: true,
                headers: headers(&[("a", "b")]),
            },
            Frame::RstStream {
                stream_id: 9,
                status: RstStatus::Cancel,
            },
            Frame::RstStream {
                stream_id: 9,
                status: RstStatus::Other(77),
            },
            Frame::Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 1,
                        id: setting_id::INITIAL_WINDOW_SIZE,
                        value: 1 << 20,
                    },
                    Setting {
                        flags: 0,
                        id: setting_id::MAX_CONCURRENT_STREAMS,
                        value: 100,
                    },
                ],
            },
            Frame::Settings {
                clear: false,
                entries: vec![],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 11,
                status: GoAwayStatus::Ok,
            },
            Frame::GoAway {
                last_good_stream_id: 0,
                status: GoAwayStatus::ProtocolError,
            },
            Frame::Headers {
                stream_id: 3,
                fin: true,
                headers: headers(&[("x", "y")]),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x7fff_ffff,
            },
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Unknown {
                frame_type: 10,
                flags: 3,
                payload: Bytes::from_static(b"credential"),
            },
        ]
    }

    #[test]
    fn every_frame_type_round_trips_on_one_connection() {
        let mut compressor = HeaderCompressor::new();
        let mut decoder = FrameDecoder::default();
        let mut wire = BytesMut::new();
        let frames = all_frames();
        for frame in &frames {
            frame.encode(&mut compressor, &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = decoder.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert!(wire.is_empty());
        assert_eq!(decoded, frames);
    }

    #[test]
    fn byte_at_a_time_input_decodes_the_same() {
        let mut compressor = HeaderCompressor::new();
        let mut wire = BytesMut::new();
        let frames = all_frames();
        for frame in &frames {
            frame.encode(&mut compressor, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
    }

    /// The SYN_STREAM of an exec error stream, built from the specification
    /// by hand: header fields, then a name/value block whose compressed form
    /// an independent zlib inflater (primed with the dictionary) must read.
    #[test]
    fn syn_stream_bytes_follow_the_spec() {
        let mut compressor = HeaderCompressor::new();
        let mut wire = BytesMut::new();
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("streamType", "error")]),
        }
        .encode(&mut compressor, &mut wire)
        .unwrap();

        // Control bit + version 3, type 1, flags 0.
        assert_eq!(wire[..5], [0x80, 0x03, 0x00, 0x01, 0x00]);
        let len = (usize::from(wire[5]) << 16) | (usize::from(wire[6]) << 8) | usize::from(wire[7]);
        assert_eq!(len, wire.len() - 8);
        // Stream id 1, associated 0, priority 0, slot 0.
        assert_eq!(wire[8..18], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

        let mut inflater = Decompress::new(true);
        let mut raw = Vec::with_capacity(1024);
        let compressed = &wire[18..];
        let err = inflater
            .decompress_vec(compressed, &mut raw, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(err.needs_dictionary(), Some(0xe3c6_a7c2));
        let used = inflater.total_in() as usize;
        inflater.set_dictionary(&SPDY3_DICTIONARY).unwrap();
        inflater
            .decompress_vec(&compressed[used..], &mut raw, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflater.total_in() as usize, compressed.len());
        let expected: &[u8] = b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error";
        assert_eq!(raw, expected);

        // And our decoder reads the same bytes back.
        let frame = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                assert_eq!(stream_id, 1);
                assert_eq!(headers.get("streamtype"), Some("error"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A hand-assembled frame whose header block is stored uncompressed
    /// (zlib "stored" block), as a foreign compressor could legally send it.
    #[test]
    fn decodes_a_hand_built_syn_stream() {
        let raw: &[u8] = b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x048080";
        let mut zlib = vec![0x78, 0xbb]; // CMF/FLG with FDICT (0x78bb % 31 == 0)
        zlib.extend_from_slice(&0xe3c6_a7c2u32.to_be_bytes());
        zlib.push(0x00); // stored block, not final
        zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
        zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
        zlib.extend_from_slice(raw);
        let mut frame = vec![0x80, 0x03, 0x00, 0x01, 0x01, 0, 0, 0];
        frame.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0x60, 0]);
        frame.extend_from_slice(&zlib);
        let len = (frame.len() - 8) as u32;
        frame[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        let mut buf = BytesMut::from(&frame[..]);
        let decoded = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            decoded,
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 3,
                slot: 0,
                fin: true,
                unidirectional: false,
                headers: headers(&[("port", "8080")]),
            }
        );
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let mut wire = BytesMut::new();
        Frame::Ping { id: 1 }
            .encode(&mut HeaderCompressor::new(), &mut wire)
            .unwrap();
        let mut decoder = FrameDecoder::default();
        for cut in 0..wire.len() {
            let mut partial = BytesMut::from(&wire[..cut]);
            assert_eq!(decoder.decode(&mut partial).unwrap(), None);
            assert_eq!(partial.len(), cut, "nothing consumed before a whole frame");
        }
    }

    #[test]
    fn oversized_frames_are_rejected_before_buffering() {
        let limits = DecoderLimits {
            max_frame_len: 16,
            ..DecoderLimits::default()
        };
        let mut decoder = FrameDecoder::new(limits);
        // A data frame announcing 1 MiB.
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 0][..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                SpdyError::FrameTooLarge {
                    len: 0x10_0000,
                    limit: 16
                }
            ),
            "{err}"
        );
        assert!(
            buf.capacity() < 1024,
            "no room reserved for the oversized frame"
        );
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(SpdyError::DecoderFailed)
        ));
    }

    #[test]
    fn malformed_control_frames_are_errors() {
        let cases: &[&[u8]] = &[
            // Version 2.
            &[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1],
            // PING with 3 bytes.
            &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1],
            // RST_STREAM with 4 bytes.
            &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1],
            // SETTINGS claiming 2 entries with room for 1.
            &[
                0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1,
            ],
            // SYN_STREAM too short.
            &[0x80, 0x03, 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 1],
            // SYN_STREAM with garbage instead of zlib.
            &[
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ],
            // SYN_REPLY with an empty header block.
            &[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 4, 0, 0, 0, 1],
            // WINDOW_UPDATE with 4 bytes.
            &[0x80, 0x03, 0x00, 0x09, 0, 0, 0, 4, 0, 0, 0, 1],
            // GOAWAY with 4 bytes (SPDY/2 layout).
            &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 4, 0, 0, 0, 1],
        ];
        for case in cases {
            let mut buf = BytesMut::from(*case);
            assert!(
                FrameDecoder::default().decode(&mut buf).is_err(),
                "{case:02x?} should fail"
            );
        }
    }

    #[test]
    fn header_bomb_is_rejected() {
        let mut big = Headers::new();
        big.insert("x", "a".repeat(100_000));
        let mut wire = BytesMut::new();
        Frame::Headers {
            stream_id: 1,
            fin: false,
            headers: big,
        }
        .encode(&mut HeaderCompressor::new(), &mut wire)
        .unwrap();
        assert!(wire.len() < 2000);
        let mut decoder = FrameDecoder::new(DecoderLimits {
            max_header_block_len: 10_000,
            ..DecoderLimits::default()
        });
        assert!(matches!(
            decoder.decode(&mut wire),
            Err(SpdyError::HeaderBlockTooLarge { limit: 10_000 })
        ));
    }

    #[test]
    fn encoding_refuses_payloads_over_24_bits() {
        let frame = Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]),
        };
        assert!(
            frame
                .encode(&mut HeaderCompressor::new(), &mut BytesMut::new())
                .is_err()
        );
    }
}
