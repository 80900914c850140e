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
    let cert = pki.join("apiserver-kubelet-client.crt");
    let key = pki.join("apiserver-kubelet-client.key");
    curl(cluster, port, path, |c| {
        c.arg("--cert").arg(&cert).arg("--key").arg(&key);
    })
    .await
}

/// [`kubelet_get`] as the holder of a bearer `token` (the kubelet reviews
/// it with a TokenReview and authorizes it with a SubjectAccessReview).
///
/// # Panics
///
/// When `curl` cannot be run.
pub async fn kubelet_get_with_token(
    cluster: &TestCluster,
    port: impl Display,
    path: &str,
    token: &str,
) -> (String, String) {
    let header = format!("Authorization: Bearer {token}");
    curl(cluster, port, path, |c| {
        c.arg("-H").arg(&header);
    })
    .await
}

async fn curl(
    cluster: &TestCluster,
    port: impl Display,
    path: &str,
    credentials: impl FnOnce(&mut tokio::process::Command),
) -> (String, String) {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(cluster.ca_cert_path());
    credentials(&mut command);
    let out = command
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

/// The subject and subject alternative names of the serving certificate
/// the kubelet API on `127.0.0.1:<port>` presents, as `openssl` prints them
/// (e.g. `subject=O = system:nodes, CN = system:node:n0` and
/// `DNS:n0, IP Address:127.0.0.1`).
///
/// # Panics
///
/// When `openssl` cannot be run or no certificate came.
pub async fn serving_certificate(port: impl Display) -> (String, String) {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -subject -ext subjectAltName"
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let subject = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no certificate on port {port}: {text}"))
        .to_string();
    let sans = text
        .lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    (subject, sans)
}
