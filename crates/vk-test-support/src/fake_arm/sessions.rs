//! Exec and attach: `POST .../containers/{c}/exec` and `.../attach` (bodies
//! checked against the contract) answer a `wss://` URI of the fake's own
//! and a password; the WebSocket there runs the session.
//!
//! - **exec**: the first message must be the password as Text (else the
//!   socket is closed with 1008 and a violation recorded); the command
//!   string is split like a shell and run from the tiny command set of
//!   [`super::shell`]; stdin arrives as Binary messages, output goes as
//!   Text or Binary; EOT (0x04) ends input; the socket is closed with 1000
//!   when the command ends. There is no stderr and no exit code, as in ACI.
//! - **attach**: the password must be the `Authorization` header of the
//!   upgrade request (else 401 and a violation); the container's log lines
//!   are sent, then the socket is closed with 1000.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::routes::{Answer, Shape, answer, error, reply};
use super::shell::{Program, plan, shell_line, split};
use super::state::{State, advance};
use super::{ExecRecord, RecordedRequest};

/// Where the sessions' WebSockets are served.
pub(super) const SESSIONS_PATH: &str = "/fake/sessions/";

/// End of input on a terminal (Ctrl-D).
const EOT: u8 = 0x04;

/// A session waiting for its WebSocket.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) record: usize,
    pub(super) attach: bool,
    pub(super) password: String,
    pub(super) argv: Vec<String>,
    pub(super) group: String,
    pub(super) container: String,
}

/// `POST .../exec` (`body`: the request) or `.../attach` (`body`: `None`).
pub(super) fn start(
    st: &mut State,
    group: &str,
    container: &str,
    attach: bool,
    body: Option<&Value>,
) -> Answer {
    let running_after = st.options.running_after;
    let running = st.groups.get_mut(group).is_some_and(|g| {
        advance(g, running_after);
        g.containers
            .iter()
            .any(|c| c.name == container && c.current["state"] == "Running")
    });
    if !st.groups.contains_key(group) {
        return error(
            404,
            "ResourceNotFound",
            &format!("container group {group} not found"),
        );
    }
    if !running {
        return error(
            409,
            "ContainerNotRunning",
            &format!("container {container} of {group} is not running"),
        );
    }
    let (command, terminal_size) = match (attach, body) {
        (true, _) => (None, None),
        (false, None) => return error(400, "InvalidRequestContent", "no JSON body"),
        (false, Some(body)) => {
            let problems = st.contract.check_exec_request(body);
            if !problems.is_empty() {
                st.violations
                    .extend(problems.iter().map(|p| format!("POST exec {group}: {p}")));
                return error(400, "InvalidRequestContent", &problems.join("; "));
            }
            let size = &body["terminalSize"];
            (
                body["command"].as_str().map(str::to_string),
                size.get("rows")
                    .and_then(Value::as_i64)
                    .zip(size.get("cols").and_then(Value::as_i64)),
            )
        }
    };
    let argv = match command.as_deref().map(split) {
        Some(Ok(argv)) => argv,
        Some(Err(e)) => vec!["sh".into(), "-c".into(), format!("false # {e}")],
        None => Vec::new(),
    };
    let id = st.next_id;
    st.next_id += 1;
    let password = format!("fake-session-password-{id}");
    st.exec_log.push(ExecRecord {
        group: group.to_string(),
        container: container.to_string(),
        attach,
        command,
        argv: argv.clone(),
        terminal_size,
        connected: false,
    });
    st.sessions.insert(
        id.to_string(),
        Session {
            record: st.exec_log.len() - 1,
            attach,
            password: password.clone(),
            argv,
            group: group.to_string(),
            container: container.to_string(),
        },
    );
    let uri = format!(
        "{}{SESSIONS_PATH}{id}",
        st.base.replacen("https://", "wss://", 1)
    );
    let shape = if attach { Shape::Attach } else { Shape::Exec };
    answer(
        200,
        json!({"webSocketUri": uri, "password": password}),
        shape,
    )
}

/// The upgrade of `GET /fake/sessions/{id}` to the session's WebSocket.
pub(super) fn upgrade(state: Arc<Mutex<State>>, mut req: Request<Incoming>) -> Response<String> {
    let path = req.uri().path().to_string();
    let id = path.trim_start_matches(SESSIONS_PATH).to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (key, authorization) = (header("sec-websocket-key"), header("authorization"));
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let session = st.sessions.remove(&id);
    let status = match (&session, &key) {
        (None, _) => 404,
        (Some(_), None) => 400,
        (Some(s), Some(_)) if s.attach && authorization.as_deref() != Some(&s.password) => {
            st.violations.push(format!(
                "attach session {id}: the Authorization header is not the session's password"
            ));
            401
        }
        _ => 101,
    };
    let at = st.started.elapsed();
    st.requests.push(RecordedRequest {
        at,
        method: "GET".into(),
        path,
        query: String::new(),
        body: None,
        status,
        response: None,
    });
    drop(st);
    let (Some(session), Some(key), 101) = (session, key, status) else {
        return reply(status, None, &[]);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve(state, session, ws).await;
    });
    reply(
        101,
        None,
        &[
            ("upgrade", "websocket".into()),
            ("connection", "Upgrade".into()),
            ("sec-websocket-accept", derive_accept_key(key.as_bytes())),
        ],
    )
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn serve(state: Arc<Mutex<State>>, session: Session, mut ws: Socket) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    if session.attach {
        let lines: Vec<String> = lock()
            .groups
            .get(&session.group)
            .and_then(|g| g.containers.iter().find(|c| c.name == session.container))
            .map(|c| c.logs.iter().map(|(_, l)| format!("{l}\n")).collect())
            .unwrap_or_default();
        if let Some(r) = lock().exec_log.get_mut(session.record) {
            r.connected = true;
        }
        for line in lines {
            if ws.send(Message::text(line)).await.is_err() {
                return;
            }
        }
        return close(ws, CloseCode::Normal).await;
    }
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == session.password => {
            if let Some(r) = lock().exec_log.get_mut(session.record) {
                r.connected = true;
            }
        }
        other => {
            lock().violations.push(format!(
                "exec session {:?}: the first message is not the password as Text: {other:?}",
                session.argv
            ));
            return close(ws, CloseCode::Policy).await;
        }
    }
    match plan(&session.argv) {
        Program::Output(out) => {
            if !out.is_empty() {
                let _ = ws.send(Message::text(out)).await;
            }
        }
        Program::Cat => {
            while let Some(data) = input(&mut ws).await {
                let (data, end) = until_eot(data);
                if !data.is_empty() && ws.send(Message::binary(data)).await.is_err() {
                    return;
                }
                if end {
                    break;
                }
            }
        }
        Program::Shell => {
            let mut pending = String::new();
            'session: while ws.send(Message::text("$ ")).await.is_ok() {
                loop {
                    if let Some(at) = pending.find(['\n', '\r']) {
                        let line: String = pending.drain(..=at).collect();
                        match shell_line(line.trim_end()) {
                            Some(out) => {
                                if ws.send(Message::text(out)).await.is_err() {
                                    return;
                                }
                                continue 'session;
                            }
                            None => break 'session,
                        }
                    }
                    let Some(data) = input(&mut ws).await else {
                        break 'session;
                    };
                    let (data, end) = until_eot(data);
                    pending.push_str(&String::from_utf8_lossy(&data));
                    if end {
                        break 'session;
                    }
                }
            }
        }
    }
    close(ws, CloseCode::Normal).await
}

/// The next stdin bytes; `None` when the client closed.
async fn input(ws: &mut Socket) -> Option<Vec<u8>> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) => return Some(b.to_vec()),
            Ok(Message::Text(t)) => return Some(t.as_bytes().to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The bytes before an EOT, and whether there was one.
fn until_eot(mut data: Vec<u8>) -> (Vec<u8>, bool) {
    match data.iter().position(|b| *b == EOT) {
        Some(at) => {
            data.truncate(at);
            (data, true)
        }
        None => (data, false),
    }
}

async fn close(mut ws: Socket, code: CloseCode) {
    let _ = ws
        .close(Some(CloseFrame {
            code,
            reason: "".into(),
        }))
        .await;
    // Until the client answers the close (or goes).
    while let Some(Ok(_)) = ws.next().await {}
}
