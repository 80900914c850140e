//! A `kube::Client` whose credentials can be replaced while every controller
//! holds a clone of it.
//!
//! The outer client hands each request to the inner client current at that
//! moment. Replacing the inner client changes the identity of every request
//! made after it; requests already running (a watch) finish on the
//! connection they started on, and the old connection pool goes away with
//! the last of them. A watch ends within its timeout (under five minutes)
//! and is started again by its watcher, on the new certificate. No
//! controller learns that anything changed.

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use hyper::{Request, Response};
use kube::Client;
use kube::client::Body;

/// The handle that replaces the inner client of [`SwappableClient::client`].
#[derive(Clone)]
pub struct SwappableClient {
    current: Arc<RwLock<Client>>,
    outer: Client,
}

impl SwappableClient {
    /// Wraps `initial`; the outer client uses the namespace of `initial`.
    pub fn new(initial: Client) -> SwappableClient {
        let default_ns = initial.default_namespace().to_string();
        let current = Arc::new(RwLock::new(initial));
        let outer = Client::new(
            Delegate {
                current: current.clone(),
            },
            default_ns,
        );
        SwappableClient { current, outer }
    }

    /// The client to hand out: its requests go through the current inner client.
    pub fn client(&self) -> Client {
        self.outer.clone()
    }

    /// Makes `next` the inner client of every later request.
    pub fn swap(&self, next: Client) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}

/// The tower service of the outer client.
#[derive(Clone)]
struct Delegate {
    current: Arc<RwLock<Client>>,
}

impl tower::Service<Request<Body>> for Delegate {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner client has its own buffer and readiness; `send` waits on it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move { client.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::Api;

    /// A client whose every answer is a ConfigMap named `who`.
    fn answering(who: &'static str) -> Client {
        let service = tower::service_fn(move |_request: Request<Body>| async move {
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": who, "namespace": "default" }
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string().into_bytes()))
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        });
        Client::new(service, "default")
    }

    async fn asked(client: &Client) -> Option<String> {
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .get("x")
            .await
            .ok()
            .and_then(|cm| cm.metadata.name)
    }

    #[tokio::test]
    async fn a_swap_changes_who_answers_every_clone_of_the_client() {
        let swappable = SwappableClient::new(answering("first"));
        let handed_out = swappable.client();
        let another = handed_out.clone();
        assert_eq!(asked(&handed_out).await.as_deref(), Some("first"));
        swappable.swap(answering("second"));
        assert_eq!(asked(&handed_out).await.as_deref(), Some("second"));
        assert_eq!(asked(&another).await.as_deref(), Some("second"));
        assert_eq!(handed_out.default_namespace(), "default");
    }
}
