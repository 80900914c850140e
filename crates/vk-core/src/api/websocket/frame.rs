//! Framing of the WebSocket channel protocols: protocol table and
//! negotiation, channel messages (binary, base64, the `v5` close signal), the
//! port-forward port header and `port` query, resize payloads. Pure functions,
//! no I/O.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::api::streaming::exit_status;
use crate::provider::TermSize;

/// Channel numbers of exec/attach.
pub(super) const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
pub(super) const ERROR: u8 = 3;
pub(super) const RESIZE: u8 = 4;
/// Number of exec/attach channels; a close signal naming another is a protocol error.
pub(super) const EXEC_CHANNELS: u8 = 5;

/// First byte of the `v5` close signal, `[255, channel]`.
pub(super) const CLOSE_SIGNAL: u8 = 255;

/// Port-forward channels are bytes, two per port.
const MAX_PORTS: usize = 127;

/// A resize payload that has not become a complete JSON object by this size is dropped.
const MAX_RESIZE_BUFFER: usize = 4096;

/// How a protocol puts channel data into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Codec {
    /// Binary messages: the channel byte, then the payload.
    Binary,
    /// Text messages: the channel as an ASCII digit, then the payload in base64.
    Base64,
}

/// One WebSocket subprotocol of the channel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ChannelProtocol {
    /// `Sec-WebSocket-Protocol` value; empty when the client named none.
    pub(super) name: &'static str,
    /// How channel data is put into messages.
    pub(super) codec: Codec,
    /// The error channel carries the whole `metav1.Status` as JSON (`v4` on),
    /// rather than the failure message alone.
    pub(super) json_status: bool,
    /// The client may send the close signal (`v5`).
    pub(super) close_signal: bool,
}

const fn protocol(
    name: &'static str,
    codec: Codec,
    json_status: bool,
    close_signal: bool,
) -> ChannelProtocol {
    ChannelProtocol {
        name,
        codec,
        json_status,
        close_signal,
    }
}

/// exec/attach protocols; the client's order of preference decides.
pub(super) const EXEC_PROTOCOLS: [ChannelProtocol; 7] = [
    protocol("v5.channel.k8s.io", Codec::Binary, true, true),
    protocol("v4.channel.k8s.io", Codec::Binary, true, false),
    protocol("v4.base64.channel.k8s.io", Codec::Base64, true, false),
    protocol("v3.channel.k8s.io", Codec::Binary, false, false),
    protocol("v2.channel.k8s.io", Codec::Binary, false, false),
    protocol("channel.k8s.io", Codec::Binary, false, false),
    protocol("base64.channel.k8s.io", Codec::Base64, false, false),
];

/// A client that names no protocol gets raw channels and the plain-text status.
pub(super) const EXEC_UNNAMED: ChannelProtocol = protocol("", Codec::Binary, false, false);

/// Port-forward channel protocols (the status format does not apply).
pub(super) const PORT_FORWARD_PROTOCOLS: [ChannelProtocol; 2] = [
    protocol("v4.channel.k8s.io", Codec::Binary, true, false),
    protocol("v4.base64.channel.k8s.io", Codec::Base64, true, false),
];

/// A port-forward client that names no protocol gets raw channels.
pub(super) const PORT_FORWARD_UNNAMED: ChannelProtocol = protocol("", Codec::Binary, true, false);

/// The protocols a client offers in `Sec-WebSocket-Protocol`, most preferred first.
pub(super) fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The client's most preferred protocol among `supported`; `unnamed` when it
/// offers none; `None` when it offers only protocols we do not speak.
pub(super) fn negotiate(
    offered: &[String],
    supported: &[ChannelProtocol],
    unnamed: ChannelProtocol,
) -> Option<ChannelProtocol> {
    if offered.is_empty() {
        return Some(unnamed);
    }
    offered
        .iter()
        .find_map(|o| supported.iter().find(|p| p.name == o).copied())
}

/// A message from the client, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Inbound {
    /// Payload for a channel.
    Data {
        /// Channel number.
        channel: u8,
        /// The payload (base64 already decoded).
        payload: Bytes,
    },
    /// `v5`: the client will send nothing more on this channel.
    Close(u8),
    /// An empty message: nothing to do.
    Empty,
}

/// A message that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum FrameError {
    /// The close signal must be followed by exactly one channel byte.
    #[error("the stream close signal must name one channel, got {0} bytes after it")]
    CloseSignal(usize),
    /// A base64 protocol message whose payload is not base64.
    #[error("invalid base64 payload on channel {0}")]
    Base64(u8),
}

/// Decodes one message (binary or text, as the Go server does not tell them apart).
pub(super) fn decode(data: &[u8], codec: Codec, close_signal: bool) -> Result<Inbound, FrameError> {
    let Some((&first, rest)) = data.split_first() else {
        return Ok(Inbound::Empty);
    };
    if close_signal && first == CLOSE_SIGNAL {
        return match rest {
            [channel] => Ok(Inbound::Close(*channel)),
            _ => Err(FrameError::CloseSignal(rest.len())),
        };
    }
    match codec {
        Codec::Binary => Ok(Inbound::Data {
            channel: first,
            payload: Bytes::copy_from_slice(rest),
        }),
        Codec::Base64 => {
            let channel = first.wrapping_sub(b'0');
            // Line breaks inside base64 are skipped, as by Go's decoder.
            let decoded = if rest.iter().any(|b| *b == b'\r' || *b == b'\n') {
                let clean: Vec<u8> = rest
                    .iter()
                    .copied()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .collect();
                BASE64.decode(clean)
            } else {
                BASE64.decode(rest)
            };
            decoded
                .map(|p| Inbound::Data {
                    channel,
                    payload: Bytes::from(p),
                })
                .map_err(|_| FrameError::Base64(channel))
        }
    }
}

/// Encodes a payload for a channel as the server sends it.
pub(super) fn encode(channel: u8, payload: &[u8], codec: Codec) -> Message {
    match codec {
        Codec::Binary => {
            let mut frame = Vec::with_capacity(payload.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(payload);
            Message::Binary(Bytes::from(frame))
        }
        Codec::Base64 => {
            let mut text = String::with_capacity(payload.len() * 4 / 3 + 5);
            text.push(char::from(b'0'.wrapping_add(channel)));
            BASE64.encode_string(payload, &mut text);
            Message::Text(text.into())
        }
    }
}

/// The first message on each port-forward channel: the port, little-endian.
pub(super) fn port_header(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

/// Ports of a WebSocket port-forward: `port` (what the apiserver sends) or
/// `ports` (the pod subresource's name), repeated or comma-separated.
pub(super) fn parse_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    let mut named = false;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "port" && k != "ports" {
            continue;
        }
        named = true;
        let v = v.replace("%2C", ",").replace("%2c", ",");
        if v.is_empty() {
            return Err(format!("query parameter {k:?} cannot be empty"));
        }
        for p in v.split(',') {
            let port: u16 = p
                .trim()
                .parse()
                .map_err(|_| format!("unable to parse {p:?} as a port"))?;
            if port == 0 {
                return Err(format!("port {p:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    if !named {
        return Err("query parameter \"port\" is required".into());
    }
    if ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} ports per connection"));
    }
    Ok(ports)
}

/// What the error channel carries when the command has ended, if anything.
pub(super) fn final_status(
    json: bool,
    code: Result<i32, String>,
    command: &[String],
) -> Option<String> {
    let status = exit_status(code, command);
    if json {
        return Some(status.to_string());
    }
    // Before v4 only a failure is reported, as its message.
    (status["status"] != "Success").then(|| status["message"].as_str().unwrap_or("").to_string())
}

/// Terminal sizes from the resize channel: JSON objects, possibly split across
/// messages or several in one.
#[derive(Debug, Default)]
pub(super) struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Adds a message's payload; returns the sizes it completed.
    pub(super) fn push(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TermSize>();
        let consumed = loop {
            match de.next() {
                Some(Ok(size)) => sizes.push(size),
                // An object still arriving: keep it.
                Some(Err(e)) if e.is_eof() => break de.byte_offset(),
                // Not a size: drop everything buffered.
                Some(Err(_)) => break self.buf.len(),
                None => break self.buf.len(),
            }
        };
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_RESIZE_BUFFER {
            self.buf.clear();
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn binary(m: Message) -> Vec<u8> {
        match m {
            Message::Binary(b) => b.to_vec(),
            other => panic!("not binary: {other:?}"),
        }
    }

    fn text(m: Message) -> String {
        match m {
            Message::Text(t) => t.as_str().to_string(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn binary_frames_round_trip() {
        let m = binary(encode(STDOUT, b"hi\n", Codec::Binary));
        assert_eq!(m, b"\x01hi\n");
        assert_eq!(
            decode(&m, Codec::Binary, false),
            Ok(Inbound::Data {
                channel: 1,
                payload: Bytes::from_static(b"hi\n")
            })
        );
        // The session-is-up message: the channel byte alone.
        assert_eq!(binary(encode(STDOUT, b"", Codec::Binary)), [1]);
        assert_eq!(decode(&[], Codec::Binary, true), Ok(Inbound::Empty));
    }

    #[test]
    fn base64_frames_round_trip() {
        // "foo\n" on stdin, as in the protocol's own example.
        assert_eq!(
            decode(b"0Zm9vCg==", Codec::Base64, false),
            Ok(Inbound::Data {
                channel: 0,
                payload: Bytes::from_static(b"foo\n")
            })
        );
        let t = text(encode(STDOUT, b"\n", Codec::Base64));
        assert_eq!(t, "1Cg==");
        assert_eq!(text(encode(ERROR, b"", Codec::Base64)), "3");
        assert_eq!(
            decode(t.as_bytes(), Codec::Base64, false),
            Ok(Inbound::Data {
                channel: 1,
                payload: Bytes::from_static(b"\n")
            })
        );
        assert_eq!(
            decode(b"0Zm9v\r\nCg==", Codec::Base64, false),
            Ok(Inbound::Data {
                channel: 0,
                payload: Bytes::from_static(b"foo\n")
            })
        );
        assert_eq!(
            decode(b"0not base64!", Codec::Base64, false),
            Err(FrameError::Base64(0))
        );
    }

    #[test]
    fn close_signal_only_in_v5() {
        assert_eq!(
            decode(&[CLOSE_SIGNAL, STDIN], Codec::Binary, true),
            Ok(Inbound::Close(STDIN))
        );
        assert_eq!(
            decode(&[CLOSE_SIGNAL], Codec::Binary, true),
            Err(FrameError::CloseSignal(0))
        );
        assert_eq!(
            decode(&[CLOSE_SIGNAL, 0, 1], Codec::Binary, true),
            Err(FrameError::CloseSignal(2))
        );
        // Before v5, 255 is just a channel number nobody uses.
        assert_eq!(
            decode(&[CLOSE_SIGNAL, STDIN], Codec::Binary, false),
            Ok(Inbound::Data {
                channel: 255,
                payload: Bytes::from_static(&[0])
            })
        );
    }

    #[test]
    fn port_headers_and_query() {
        assert_eq!(port_header(8080), [0x90, 0x1f]);
        assert_eq!(port_header(1), [1, 0]);
        assert_eq!(parse_ports("port=8080,9090"), Ok(vec![8080, 9090]));
        assert_eq!(parse_ports("ports=80&ports=443"), Ok(vec![80, 443]));
        assert_eq!(parse_ports("port=80%2C81"), Ok(vec![80, 81]));
        assert!(parse_ports("").is_err());
        assert!(parse_ports("port=").is_err());
        assert!(parse_ports("port=0").is_err());
        assert!(parse_ports("port=70000").is_err());
        assert!(parse_ports("port=http").is_err());
        let many = (1..=200)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_ports(&format!("port={many}")).is_err());
    }

    #[test]
    fn negotiation_follows_the_client() {
        let offered = |s: &[&str]| s.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let pick =
            |s: &[&str]| negotiate(&offered(s), &EXEC_PROTOCOLS, EXEC_UNNAMED).map(|p| p.name);
        assert_eq!(
            pick(&["v4.base64.channel.k8s.io", "v5.channel.k8s.io"]),
            Some("v4.base64.channel.k8s.io")
        );
        assert_eq!(
            pick(&["foo", "v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(pick(&[]), Some(""));
        assert_eq!(pick(&["foo"]), None);
        let v5 = negotiate(
            &offered(&["v5.channel.k8s.io"]),
            &EXEC_PROTOCOLS,
            EXEC_UNNAMED,
        );
        assert!(v5.is_some_and(|p| p.close_signal && p.json_status));
        let old = negotiate(&offered(&["channel.k8s.io"]), &EXEC_PROTOCOLS, EXEC_UNNAMED);
        assert!(old.is_some_and(|p| !p.close_signal && !p.json_status));
        // v5 is an exec/attach protocol only.
        assert_eq!(
            negotiate(
                &offered(&["v5.channel.k8s.io"]),
                &PORT_FORWARD_PROTOCOLS,
                PORT_FORWARD_UNNAMED
            ),
            None
        );

        let mut h = HeaderMap::new();
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("channel.k8s.io"),
        );
        assert_eq!(
            offered_protocols(&h),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
    }

    #[test]
    fn status_per_protocol_version() {
        let cmd = ["sh".to_string()];
        let v4_ok = final_status(true, Ok(0), &cmd).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&v4_ok).unwrap()["status"],
            "Success"
        );
        let v4_fail = final_status(true, Ok(3), &cmd).unwrap();
        let v: serde_json::Value = serde_json::from_str(&v4_fail).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        // Before v4: nothing on success, the message on failure.
        assert_eq!(final_status(false, Ok(0), &cmd), None);
        let old = final_status(false, Ok(3), &cmd).unwrap();
        assert!(
            old.starts_with("command terminated with non-zero exit code"),
            "{old}"
        );
        assert_eq!(
            final_status(false, Err("boom".into()), &cmd).as_deref(),
            Some("boom")
        );
    }

    #[test]
    fn resize_messages() {
        let mut d = ResizeDecoder::default();
        let size = |w, h| TermSize {
            width: w,
            height: h,
        };
        assert_eq!(d.push(br#"{"Width":80,"Height":24}"#), [size(80, 24)]);
        // Split across messages, and two in one.
        assert_eq!(d.push(br#"{"Width":100,"#), []);
        assert_eq!(
            d.push(br#""Height":30}{"Width":1,"Height":2}"#),
            [size(100, 30), size(1, 2)]
        );
        // Garbage is dropped, later sizes still count.
        assert_eq!(d.push(b"nonsense"), []);
        assert_eq!(d.push(br#" {"Width":5,"Height":6}"#), [size(5, 6)]);
        assert_eq!(d.push(&[b'['; 5000]), []);
        assert!(d.buf.len() <= MAX_RESIZE_BUFFER);
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            base64 in proptest::prelude::any::<bool>(),
            close in proptest::prelude::any::<bool>(),
        ) {
            let codec = if base64 { Codec::Base64 } else { Codec::Binary };
            let _ = decode(&data, codec, close);
            let mut d = ResizeDecoder::default();
            let _ = d.push(&data);
        }

        #[test]
        fn binary_and_base64_round_trip(
            channel in 0u8..10,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let b = binary(encode(channel, &payload, Codec::Binary));
            proptest::prop_assert_eq!(
                decode(&b, Codec::Binary, false),
                Ok(Inbound::Data { channel, payload: Bytes::from(payload.clone()) })
            );
            let t = text(encode(channel, &payload, Codec::Base64));
            proptest::prop_assert_eq!(
                decode(t.as_bytes(), Codec::Base64, false),
                Ok(Inbound::Data { channel, payload: Bytes::from(payload) })
            );
        }
    }
}
