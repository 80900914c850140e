//! `/exec`, `/attach` and `/portForward`: the streaming endpoints.

use axum::extract::{Path, State};
use axum::response::Response;

use super::{status, AppState};

/// `/exec/{ns}/{pod}/{container}`.
pub(super) async fn exec(State(_s): State<AppState>, Path((_ns, _pod, _c)): Path<(String, String, String)>) -> Response {
    unavailable()
}

/// `/exec/{ns}/{pod}/{uid}/{container}`.
pub(super) async fn exec_with_uid(State(_s): State<AppState>, Path((_ns, _pod, _uid, _c)): Path<(String, String, String, String)>) -> Response {
    unavailable()
}

/// `/attach/{ns}/{pod}/{container}`.
pub(super) async fn attach(State(_s): State<AppState>, Path((_ns, _pod, _c)): Path<(String, String, String)>) -> Response {
    unavailable()
}

/// `/attach/{ns}/{pod}/{uid}/{container}`.
pub(super) async fn attach_with_uid(State(_s): State<AppState>, Path((_ns, _pod, _uid, _c)): Path<(String, String, String, String)>) -> Response {
    unavailable()
}

/// `/portForward/{ns}/{pod}`.
pub(super) async fn port_forward(State(_s): State<AppState>, Path((_ns, _pod)): Path<(String, String)>) -> Response {
    unavailable()
}

/// `/portForward/{ns}/{pod}/{uid}`.
pub(super) async fn port_forward_with_uid(State(_s): State<AppState>, Path((_ns, _pod, _uid)): Path<(String, String, String)>) -> Response {
    unavailable()
}

fn unavailable() -> Response {
    status::failure(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        "streaming (exec, attach, port-forward) is not available in this build yet",
    )
}
