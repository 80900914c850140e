//! The crate's error type.
//!
//! Every codec failure is connection-fatal in SPDY/3: the header compression
//! context is shared by all streams of a connection, so once a frame cannot be
//! parsed the byte stream cannot be trusted any more. Stream-level trouble
//! (a reset, a closed stream) reaches stream users as `std::io::Error` instead,
//! because that is what `AsyncRead`/`AsyncWrite` users expect.

/// `Result` with [`SpdyError`] as the default error.
pub type Result<T, E = SpdyError> = std::result::Result<T, E>;

/// What can go wrong while encoding, decoding or serving SPDY frames.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame announced a protocol version other than 3.
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    UnsupportedVersion(u16),

    /// A frame's payload is larger than the configured limit (or, when
    /// encoding, larger than the 24-bit length field can express).
    #[error("frame payload of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Announced or actual payload length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },

    /// A frame's fixed fields do not fit its type (wrong length, missing fields).
    #[error("malformed {frame} frame: {reason}")]
    MalformedFrame {
        /// Frame type name, e.g. `SYN_STREAM`.
        frame: &'static str,
        /// What was wrong.
        reason: &'static str,
    },

    /// A decompressed name/value header block is structurally invalid.
    #[error("malformed header block: {0}")]
    MalformedHeaderBlock(&'static str),

    /// A decompressed header block is larger than the configured limit.
    #[error("decompressed header block exceeds the limit of {limit} bytes")]
    HeaderBlockTooLarge {
        /// The limit it broke.
        limit: usize,
    },

    /// A header block holds more names than the configured limit.
    #[error("header block holds {count} headers, the limit is {limit}")]
    TooManyHeaders {
        /// Announced number of headers.
        count: u64,
        /// The limit it broke.
        limit: usize,
    },

    /// The zlib layer of header compression failed (corrupt data, wrong dictionary).
    #[error("header compression: {0}")]
    Compression(String),

    /// The decoder already failed once; the connection must be dropped.
    #[error("frame decoder is unusable after an earlier error")]
    DecoderFailed,

    /// Reading from or writing to the underlying transport failed.
    #[error("transport I/O: {0}")]
    Io(#[from] std::io::Error),

    /// The connection is gone (closed by either side, or its tasks ended).
    #[error("connection closed")]
    ConnectionClosed,
}
