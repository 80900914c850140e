//! Kubernetes `Status` bodies for the kubelet API's errors (what kubectl prints).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A `metav1.Status` failure response.
pub fn failure(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A plain-text error, as a kubelet answers `/containerLogs`: the apiserver
/// hands a 4xx body from the kubelet to the client as the message, so a JSON
/// `Status` would reach `kubectl logs` users as JSON.
pub fn plain(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        message.into(),
    )
        .into_response()
}

/// [`provider_error`] as plain text (see [`plain`]).
pub fn provider_error_plain(e: &crate::ProviderError) -> Response {
    use crate::ProviderError::*;
    match e {
        NotFound(m) => plain(StatusCode::NOT_FOUND, m.clone()),
        InvalidInput(m) => plain(StatusCode::BAD_REQUEST, m.clone()),
        Unavailable { message, .. } => plain(StatusCode::SERVICE_UNAVAILABLE, message.clone()),
        NotImplemented(what) => plain(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not supported by this provider"),
        ),
    }
}

/// 400 Bad Request.
pub fn bad_request(message: impl Into<String>) -> Response {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// 404 Not Found.
pub fn not_found(message: impl Into<String>) -> Response {
    failure(StatusCode::NOT_FOUND, "NotFound", message)
}

/// Maps a provider error to a response: 501 for a missing capability.
pub fn provider_error(e: &crate::ProviderError) -> Response {
    use crate::ProviderError::*;
    match e {
        NotFound(m) => not_found(m.clone()),
        InvalidInput(m) => bad_request(m.clone()),
        Unavailable { message, .. } => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message.clone(),
        ),
        NotImplemented(what) => failure(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("{what} is not supported by this provider"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_capability_is_501_with_a_status_body() {
        let resp = provider_error(&crate::ProviderError::NotImplemented("exec"));
        assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], 501);
        assert_eq!(v["reason"], "NotImplemented");
        assert!(v["message"].as_str().unwrap().contains("exec"));
        let nf = provider_error(&crate::ProviderError::NotFound("p".into()));
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        let un = provider_error(&crate::ProviderError::unavailable("down"));
        assert_eq!(un.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn log_errors_are_plain_text() {
        let resp = provider_error_plain(&crate::ProviderError::InvalidInput(
            "previous terminated container \"main\" not found".into(),
        ));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        assert_eq!(
            &body[..],
            b"previous terminated container \"main\" not found"
        );
    }
}
