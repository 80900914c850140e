//! Connection settings.

use std::time::Duration;

use crate::frame::{DecoderLimits, MAX_PAYLOAD_LEN};

/// How a served connection behaves. `Config::default()` suits the kubelet
/// streaming endpoints; every field is public so callers can tune one thing.
#[derive(Clone, Debug)]
pub struct Config {
    /// Close the connection when no frame has been read or written for this
    /// long (`None`: never). The kubelet's default streaming idle timeout is
    /// four hours.
    pub idle_timeout: Option<Duration>,
    /// Streams open at once; further SYN_STREAMs are refused with
    /// RST_STREAM(REFUSED_STREAM).
    pub max_concurrent_streams: usize,
    /// Bytes received on one stream but not yet read by its user. When a
    /// stream's buffer is full the connection stops reading from the socket
    /// (TCP backpressure): `spdystream` ignores flow control, so this is the
    /// only brake on a fast sender.
    pub stream_recv_buffer: usize,
    /// Largest payload put in one outgoing data frame; larger writes are split.
    pub max_send_frame: usize,
    /// Frames the connection's writer may have queued before stream writers
    /// wait (bounds memory per connection to about this many × `max_send_frame`).
    pub write_queue_frames: usize,
    /// Limits applied to incoming frames and header blocks.
    pub decoder_limits: DecoderLimits,
    /// Send a PING this often (`None`: never). Peers ping us on their own;
    /// pings from our side only keep middleboxes from timing out.
    pub ping_interval: Option<Duration>,
    /// After our GOAWAY has been written and our side shut down, keep reading
    /// (and discarding) for at most this long so the peer receives everything
    /// before the socket closes.
    pub close_linger: Duration,
    /// At the start of the connection, announce the largest windows SPDY
    /// allows (SETTINGS initial window 2^31-1 and a session WINDOW_UPDATE),
    /// and top them up every gigabyte. `spdystream` ignores both frames; a
    /// peer that does enforce flow control then never stalls on us, while we
    /// still rely on TCP backpressure for buffering.
    pub grant_large_windows: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(4 * 60 * 60)),
            max_concurrent_streams: 256,
            stream_recv_buffer: 256 * 1024,
            max_send_frame: 32 * 1024,
            write_queue_frames: 64,
            decoder_limits: DecoderLimits::default(),
            ping_interval: None,
            close_linger: Duration::from_secs(5),
            grant_large_windows: true,
        }
    }
}

impl Config {
    /// The settings with out-of-range values pulled into range (zero sizes
    /// would stall, sizes past the protocol maximum cannot be encoded).
    pub(crate) fn sanitized(mut self) -> Self {
        self.max_concurrent_streams = self.max_concurrent_streams.max(1);
        self.stream_recv_buffer = self.stream_recv_buffer.clamp(1, u32::MAX as usize);
        self.max_send_frame = self.max_send_frame.clamp(1, MAX_PAYLOAD_LEN);
        self.write_queue_frames = self.write_queue_frames.max(1);
        self
    }
}
