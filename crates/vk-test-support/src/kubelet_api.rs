//! A node's kubelet HTTPS API called the way the apiserver and
//! metrics-server call it. The apiserver refuses to proxy `nodes/<n>/proxy`
//! to loopback node addresses, and the nodes of these tests live on
//! 127.0.0.1, so tests call the kubelet directly, with the same TLS.
//!
//! The helpers are for test bodies and panic when they cannot do their job.

use std::fmt::Display;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::cluster::TestCluster;

/// The kubelet port node `node` advertises (`status.daemonEndpoints`).
///
/// # Panics
///
/// When the node cannot be read or advertises no valid port.
pub async fn kubelet_port(cluster: &TestCluster, node: &str) -> u16 {
    let n: Node = Api::all(cluster.client())
        .get(node)
        .await
        .unwrap_or_else(|e| panic!("reading node {node}: {e}"));
    let port = n
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    port.and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("node {node} advertises no kubelet port: {port:?}"))
}

/// `GET https://127.0.0.1:<port><path>` on a kubelet API: the cluster CA
/// verifies the node's serving certificate, the apiserver's kubelet-client
/// certificate authenticates. Returns (HTTP status code, body); the code is
/// `000` when no HTTP answer came.
///
/// # Panics
///
/// When `curl` cannot be run.
pub async fn kubelet_get(
    cluster: &TestCluster,
    port: impl Display,
    path: &str,
) -> (String, String) {
    let pki = cluster.dir().join("pki");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(cluster.ca_cert_path())
        .arg("--cert")
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}
