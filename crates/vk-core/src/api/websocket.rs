//! The WebSocket channel protocols of `/exec`, `/attach` and `/portForward`.
//!
//! Who speaks WebSocket to a kubelet: clients that call it directly, the
//! apiserver on behalf of clients that offer only the legacy channel protocols,
//! and from Kubernetes 1.36 the apiserver for every stream of a node that
//! declares `ExtendWebSocketsToKubelet`.
//!
//! - exec/attach (`v5`, `v4`, `v3`, `v2` and unversioned `channel.k8s.io`,
//!   plus the `base64` variants of `v4` and unversioned): every message starts
//!   with its channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize) as a
//!   byte, or for `base64` protocols as an ASCII digit followed by the payload
//!   in base64 (text messages). `v5.channel.k8s.io` adds the close signal
//!   `[255, channel]`: the client will send nothing more there (stdin EOF).
//!   The server first sends an empty message on the lowest channel the client
//!   reads, which tells it the session is up; at the end the error channel
//!   carries the `metav1.Status` (JSON from `v4` on; before `v4`, the failure
//!   message only, nothing on success), then the server closes the WebSocket.
//! - port-forward with `?port=8080,9090` (the apiserver's name; `ports` is
//!   accepted too): port i uses data channel 2i and error channel 2i+1, and
//!   each of these channels opens with the port as a little-endian `u16`.
//! - port-forward with `SPDY/3.1+portforward.k8s.io`: a whole SPDY session in
//!   binary messages (kubectl's WebSocket port-forward), served by the SPDY
//!   code in [`super::streaming`].
//!
//! A session ends when the command ends, when the client goes away (which
//! cancels the command: its future is dropped), or after the streaming idle
//! timeout (four hours) without a message either way.
//!
//! - `frame`: protocol table, negotiation, message encoding, pure;
//! - `session`: one connection (handshake, writer, idle watchdog, closing);
//! - `exec`, `port_forward`: what the channels mean.
//!
//! Query parsing, pod lookup and the exit status stay in [`super::streaming`].

mod exec;
mod frame;
mod port_forward;
mod session;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::status;
use frame::ChannelProtocol;

pub(super) use exec::remote_command;
pub(super) use port_forward::port_forward;

/// Whether the request asks for a WebSocket (`Upgrade: websocket` with `Connection: upgrade`).
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// 403 for a client that offers only protocols we do not speak, as the Go server answers.
fn unsupported_protocols(offered: &[String], supported: &[ChannelProtocol]) -> Response {
    let names: Vec<&str> = supported.iter().map(|p| p.name).collect();
    status::failure(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "unable to upgrade: requested protocol(s) are not supported: {offered:?}; supports {names:?}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&h), "Connection: upgrade is required");
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_upgrade(&h));
    }
}
