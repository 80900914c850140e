//! Server side of SPDY/3.1 as the Kubernetes apiserver speaks it to a
//! kubelet's `/exec`, `/attach` and `/portForward` endpoints.
//!
//! After the HTTP/1.1 upgrade (`Connection: Upgrade`, `Upgrade: SPDY/3.1`,
//! answered with `101 Switching Protocols` and the chosen
//! `X-Stream-Protocol-Version`, which is the caller's job), hand the upgraded
//! transport to [`Connection::serve`]. It yields one [`Stream`] per SPDY
//! stream the client opens (`streamtype` header: `error`, `stdin`, `stdout`,
//! `stderr`, `resize`, or `data`/`error` plus `port` and `requestid` for
//! port-forward).
//!
//! ```no_run
//! # async fn example(io: tokio::io::DuplexStream) {
//! use vk_spdy::{Config, Connection};
//!
//! let (handle, mut streams) = Connection::serve(io, Config::default());
//! while let Some(mut stream) = streams.recv().await {
//!     if stream.stream_type() == Some("error") {
//!         let _ = stream.send(r#"{"status":"Success"}"#.into()).await;
//!         let _ = stream.close().await;
//!     }
//! }
//! handle.close().await;
//! handle.closed().await;
//! # }
//! ```
//!
//! # How the peer behaves (and why this crate behaves as it does)
//!
//! The client is always Go's `github.com/moby/spdystream` (through
//! `k8s.io/apimachinery/pkg/util/httpstream/spdy`), whether the apiserver
//! proxies kubectl's SPDY connection or translates a WebSocket session:
//!
//! - **Streams.** The client opens odd, increasing stream ids and waits (up
//!   to 30 s) for a SYN_REPLY before using a stream; the kubelet replies with
//!   an empty header block and so does this crate, for every accepted stream.
//!   Out-of-order ids are refused with RST_STREAM(PROTOCOL_ERROR), like
//!   spdystream does.
//! - **Headers.** One zlib context per direction for the whole connection,
//!   primed with the SPDY/3 dictionary, each block ended by SYNC_FLUSH. Go's
//!   framer rejects uppercase or duplicate header names in what we send.
//! - **Flow control.** spdystream never sends WINDOW_UPDATE or SETTINGS and
//!   ignores those it receives. Its only brake is TCP: its frame workers block
//!   until the application reads. So this crate never blocks its own sending
//!   on a window the peer will not refill: windows are tracked, and enforced
//!   only after the peer has sent a WINDOW_UPDATE (see `flow_control.rs`).
//!   Incoming data is buffered per stream up to a bound, then the socket is
//!   no longer read.
//! - **Pings.** The client may ping (kubectl port-forward does, with odd ids);
//!   they are echoed. Our own pings (optional) use even ids.
//! - **Closing.** A direction ends with an empty data frame carrying FIN;
//!   RST_STREAM(CANCEL) aborts a stream. A kubelet ending a session resets
//!   its streams and sends GOAWAY; on GOAWAY the client stops reading.
//!
//! Every codec error is fatal to the connection (the shared zlib context is
//! then out of step); the decoder enforces size limits ([`DecoderLimits`])
//! so that hostile input costs bounded memory.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compression;
pub mod config;
pub mod connection;
pub mod error;
mod flow_control;
pub mod frame;
pub mod header;
mod reader;
pub mod stream;
mod writer;

pub use compression::{HeaderCompressor, HeaderDecompressor};
pub use config::Config;
pub use connection::{Connection, ConnectionHandle};
pub use error::{Result, SpdyError};
pub use frame::{DecoderLimits, Frame, FrameDecoder, GoAwayStatus, RstStatus, Setting};
pub use header::Headers;
pub use stream::{RecvHalf, SendHalf, Stream, StreamIo};
