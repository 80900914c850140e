//! `kubectl exec` and `kubectl attach` as ACI sessions: ARM answers a
//! `POST .../exec` or `.../attach` with a WebSocket URI and a password, and
//! this module dials it and bridges it to the client's streams.
//!
//! What ACI gives and what it does not, and what is done about it:
//! - **One command string.** ACI takes the command as one string and splits
//!   it into words itself (azure-aci joined argv with spaces, so `["sh",
//!   "-c", "echo a b"]` became five words: azure-aci#126). Each argument is
//!   quoted here the POSIX shell way ([`shell_quote`]): an argument of only
//!   safe characters (`A-Z a-z 0-9 _ @ % + = : , . / -`) goes as it is, any
//!   other in single quotes, a `'` inside written `'\''`. `["ls", "/bin"]`
//!   is `ls /bin`; `["sh", "-c", "echo a b"]` is `sh -c 'echo a b'`.
//! - **Exec protocol**: the password is the first (Text) message on the
//!   socket; stdin goes as Binary messages; every message that comes back
//!   is output. When the client closes stdin, an EOT byte (`0x04`, Ctrl-D)
//!   is sent: ACI sessions are terminals, and a terminal reads EOT at the
//!   start of a line as end of input.
//! - **No stderr, no exit code.** ACI sends one stream: everything goes to
//!   the client's stdout (its stderr stays empty). The session reports exit
//!   code 0 when ACI closed the socket normally (close code 1000) and an
//!   error otherwise: a command's own failure cannot be seen.
//! - **Terminal size**: ACI takes it once, in the exec request. With a TTY,
//!   the client's first resize is waited for (up to [`FIRST_RESIZE_WAIT`]);
//!   without one, or if none comes, 24 rows × 80 columns. Later resizes
//!   cannot be sent and are dropped.
//! - **Attach** is output only: the password goes as the `Authorization`
//!   header of the WebSocket request (as the contract says), and stdin and
//!   resizes have nowhere to go.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use url::Url;
use vk_core::provider::{ExecIo, TermSize};
use vk_core::{ProviderError, ProviderResult};

use crate::models::{ContainerExecRequest, StreamSession, TerminalSize};

/// How long an exec with a TTY waits for the client's first terminal size.
pub const FIRST_RESIZE_WAIT: Duration = Duration::from_secs(2);
/// The terminal size when the client gives none.
pub const DEFAULT_SIZE: TermSize = TermSize {
    width: 80,
    height: 24,
};
/// What tells a terminal that input has ended (Ctrl-D).
const EOT: u8 = 0x04;

type Socket = WebSocketStream<TlsStream<TcpStream>>;

/// Quotes one argument for a POSIX shell (see the module doc).
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The one command string ACI takes for an argv.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The exec request: the quoted command and the terminal's size.
pub fn exec_request(argv: &[String], size: TermSize) -> ContainerExecRequest {
    ContainerExecRequest {
        command: Some(command_line(argv)),
        terminal_size: Some(TerminalSize {
            rows: Some(i32::from(size.height)),
            cols: Some(i32::from(size.width)),
        }),
    }
}

/// The terminal size to start with: the client's first resize when it has a
/// TTY (waited for a moment), else [`DEFAULT_SIZE`].
pub async fn first_size(io: &mut ExecIo) -> TermSize {
    if !io.tty {
        return DEFAULT_SIZE;
    }
    let Some(resize) = io.resize.as_mut() else {
        return DEFAULT_SIZE;
    };
    match tokio::time::timeout(FIRST_RESIZE_WAIT, resize.recv()).await {
        Ok(Some(size)) if size.width > 0 && size.height > 0 => size,
        _ => DEFAULT_SIZE,
    }
}

/// Dials a session's WebSocket; `authorization` puts the password in the
/// `Authorization` header (attach).
async fn dial(
    tls: Arc<rustls::ClientConfig>,
    session: &StreamSession,
    authorization: bool,
) -> ProviderResult<Socket> {
    let uri = session
        .web_socket_uri
        .as_deref()
        .ok_or_else(|| ProviderError::unavailable("ACI answered no webSocketUri"))?;
    let url = Url::parse(uri)
        .map_err(|e| ProviderError::unavailable(format!("bad webSocketUri: {e}")))?;
    if url.scheme() != "wss" {
        return Err(ProviderError::unavailable(format!(
            "webSocketUri {}://...: only wss is dialled (the password must not travel in clear)",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ProviderError::unavailable("webSocketUri has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(443);
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        ProviderError::unavailable(format!("{what} {host}:{port}: {e}"))
    };
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unavailable("connecting to", &e))?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| unavailable("server name", &e))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| unavailable("TLS with", &e))?;
    let mut request = uri
        .into_client_request()
        .map_err(|e| unavailable("WebSocket request to", &e))?;
    if authorization && let Some(password) = &session.password {
        let value = password
            .parse()
            .map_err(|e| unavailable("the password as a header for", &e))?;
        request.headers_mut().insert("authorization", value);
    }
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| unavailable("WebSocket handshake with", &e))?;
    Ok(socket)
}

/// Runs an exec session: the password first, then stdin in and output out
/// until ACI closes the socket (see the module doc for the exit code).
pub async fn run_exec(
    tls: Arc<rustls::ClientConfig>,
    session: &StreamSession,
    io: ExecIo,
) -> ProviderResult<i32> {
    let mut socket = dial(tls, session, false).await?;
    let password = session.password.clone().unwrap_or_default();
    socket
        .send(Message::text(password))
        .await
        .map_err(|e| ProviderError::unavailable(format!("sending the exec password: {e}")))?;
    bridge(socket, io, true).await
}

/// Runs an attach session: the container's output until ACI closes the
/// socket.
pub async fn run_attach(
    tls: Arc<rustls::ClientConfig>,
    session: &StreamSession,
    io: ExecIo,
) -> ProviderResult<i32> {
    let socket = dial(tls, session, true).await?;
    bridge(socket, io, false).await
}

/// Carries stdin (when `send_stdin`) to the socket and everything the socket
/// says to stdout; the exit code from how the socket closed.
async fn bridge(socket: Socket, io: ExecIo, send_stdin: bool) -> ProviderResult<i32> {
    let (mut sink, mut source) = socket.split();
    let ExecIo {
        stdin,
        stdout,
        mut resize,
        ..
    } = io;
    // ACI takes one terminal size, in the request: later ones are dropped.
    let resizes = tokio::spawn(async move {
        if let Some(r) = resize.as_mut() {
            while r.recv().await.is_some() {}
        }
    });
    let input = tokio::spawn(async move {
        let Some(mut stdin) = stdin.filter(|_| send_stdin) else {
            return;
        };
        while let Some(chunk) = stdin.recv().await {
            if sink.send(Message::binary(chunk)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::binary(Bytes::from_static(&[EOT]))).await;
    });
    let mut close = None;
    while let Some(message) = source.next().await {
        let data = match message {
            Ok(Message::Text(t)) => Bytes::from(t),
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(frame)) => {
                close = Some(frame.map(|f| f.code));
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                input.abort();
                resizes.abort();
                return Err(ProviderError::unavailable(format!(
                    "the ACI session broke: {e}"
                )));
            }
        };
        if let Some(out) = &stdout {
            // A client gone away stops nothing: the session ends on ACI's side.
            let _ = out.send(data).await;
        }
    }
    input.abort();
    resizes.abort();
    match close {
        Some(None | Some(CloseCode::Normal)) => Ok(0),
        Some(Some(code)) => Err(ProviderError::unavailable(format!(
            "ACI closed the session with code {}; the command's outcome is unknown",
            u16::from(code)
        ))),
        None => Err(ProviderError::unavailable(
            "the ACI session ended without closing; the command's outcome is unknown",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn argv_is_quoted_so_a_shell_gets_it_back() {
        let cases: [(&[&str], &str); 7] = [
            (&["ls", "/bin"], "ls /bin"),
            (&["sh", "-c", "echo a b"], "sh -c 'echo a b'"),
            (&["echo", "it's"], r"echo 'it'\''s'"),
            (&["echo", ""], "echo ''"),
            (&["echo", "$HOME", "*"], "echo '$HOME' '*'"),
            (&["a=b", "x,y:z@1%2+3"], "a=b x,y:z@1%2+3"),
            (&["printf", "a\nb"], "printf 'a\nb'"),
        ];
        for (argv, want) in cases {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            assert_eq!(command_line(&argv), want, "{argv:?}");
        }
    }

    #[test]
    fn the_request_carries_the_command_and_the_size() {
        let r = exec_request(
            &["ls".into(), "/bin".into()],
            TermSize {
                width: 120,
                height: 40,
            },
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"command": "ls /bin", "terminalSize": {"rows": 40, "cols": 120}})
        );
    }

    #[tokio::test]
    async fn the_first_resize_sizes_a_tty_and_nothing_else_waits() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut io = ExecIo {
            stdin: None,
            stdout: None,
            stderr: None,
            tty: true,
            resize: Some(rx),
        };
        let size = TermSize {
            width: 100,
            height: 30,
        };
        tx.send(size).await.unwrap();
        assert_eq!(first_size(&mut io).await, size);
        io.tty = false;
        let started = std::time::Instant::now();
        assert_eq!(first_size(&mut io).await, DEFAULT_SIZE);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
