//! The incremental frame decoder and the limits it enforces.
//!
//! Bytes arrive in arbitrary pieces; the decoder takes whole frames off the
//! front of the buffer, checks an announced length against the limit before
//! buffering anything for it, and decompresses header blocks through the
//! connection's single inbound zlib context.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, FRAME_HEADER_LEN, Frame, GoAwayStatus,
    MAX_PAYLOAD_LEN, RstStatus, SPDY_VERSION, STREAM_ID_MASK, Setting, TYPE_GOAWAY, TYPE_HEADERS,
    TYPE_PING, TYPE_RST_STREAM, TYPE_SETTINGS, TYPE_SYN_REPLY, TYPE_SYN_STREAM, TYPE_WINDOW_UPDATE,
};
use crate::compression::HeaderDecompressor;
use crate::error::{Result, SpdyError};
use crate::header::Headers;

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
