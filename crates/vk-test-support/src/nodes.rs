//! Node objects as a test sees them: the Ready condition, waiting for it, and
//! removing a test's node afterwards.
//!
//! The waits are for test bodies and fail like assertions (they panic).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, DeleteParams};

use crate::wait::wait_until;

/// The status (`True`, `False`, `Unknown`) and reason of node `name`'s Ready
/// condition; `None` while the node or the condition does not exist (or the
/// API cannot be reached).
pub async fn node_ready(client: &Client, name: &str) -> Option<(String, Option<String>)> {
    let node = Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .ok()??;
    let c = node
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason))
}

/// Waits until node `name`'s Ready condition is True.
///
/// # Panics
///
/// When it is not within `timeout`.
pub async fn wait_node_ready(client: &Client, name: &str, timeout: Duration) {
    wait_node_ready_is(client, name, "True", timeout).await;
}

/// Waits until node `name`'s Ready condition is False (the node reports
/// itself unhealthy).
///
/// # Panics
///
/// When it is not within `timeout`.
pub async fn wait_node_not_ready(client: &Client, name: &str, timeout: Duration) {
    wait_node_ready_is(client, name, "False", timeout).await;
}

async fn wait_node_ready_is(client: &Client, name: &str, status: &str, timeout: Duration) {
    wait_until(&format!("node {name} Ready={status}"), timeout, || async {
        node_ready(client, name)
            .await
            .is_some_and(|(s, _)| s == status)
    })
    .await;
}

/// Deletes node `name`, ignoring any error: test clean-up, for nodes a
/// kubelet under test registered.
pub async fn delete_node(client: &Client, name: &str) {
    let _ = Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}
