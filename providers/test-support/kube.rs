//! Kubernetes helpers the integration tests of every provider share
//! (`providers/<name>/tests/support/mod.rs` includes this file with
//! `#[path = "../../../test-support/kube.rs"]`): waiting, pods, nodes,
//! events, and approving a node's serving certificate.
//!
//! Not a crate: a file compiled into each test binary, so it uses only what
//! every provider's tests depend on (`kube`, `k8s-openapi`, `serde_json`,
//! `tokio`, `vk-test-support`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

pub use vk_test_support::{TestCluster, TestNamespace};

/// Waits until `check` is true; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let res = vk_test_support::wait_for(what, timeout, || {
        let fut = check();
        async move { Ok(fut.await.then_some(())) }
    })
    .await;
    if let Err(e) = res {
        panic!("{e:#}");
    }
}

/// The cluster and a fresh namespace.
pub async fn cluster_and_namespace(prefix: &str) -> (TestCluster, TestNamespace) {
    let cluster = TestCluster::get().await.expect("test cluster");
    let ns = cluster.namespace(prefix).await.expect("namespace");
    (cluster, ns)
}

/// Events in a namespace as (reason, name of the object they regard).
pub async fn events(client: &Client, ns: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
            )
        })
        .collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    vk_test_support::free_port().expect("free port")
}

/// Creates a pod from JSON.
pub async fn create_pod(client: &Client, ns: &str, pod: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod).expect("pod json");
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// Waits until the pod satisfies `pred`; returns it.
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Ok(Some(p)) = api.get_opt(name).await {
            if pred(&p) {
                return p;
            }
            last = Some(p);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "pod {ns}/{name}: {what} not reached in {timeout:?}; last: {:#?}",
        last.map(|p| p.status)
    );
}

/// Waits up to 20 s for the pod to be Running; returns it.
pub async fn wait_running(client: &Client, ns: &str, name: &str) -> Pod {
    wait_pod(client, ns, name, Duration::from_secs(20), "Running", |p| {
        phase(p) == "Running"
    })
    .await
}

/// Phase of a pod.
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready condition of a node.
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

/// Deletes a node object (test cleanup).
pub async fn delete_node(client: &Client, name: &str) {
    let _ = Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Unique-ish suffix for node names.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}", n % 0xfffff)
}

/// Approves this node's kubelet-serving CSRs until one is issued (what an operator
/// or an approver controller does), and waits until the kubelet API answers TLS.
pub async fn approve_serving_csr(cluster: &TestCluster, node: &str) {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let api: Api<CertificateSigningRequest> = Api::all(cluster.client());
    let prefix = format!("csr-{node}-");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no serving certificate issued for {node}"
        );
        let list = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mine: Vec<_> = list
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        if mine.iter().any(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some()
        }) {
            break;
        }
        for c in mine {
            let approved = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|x| x.type_ == "Approved"));
            if !approved && let Some(name) = &c.metadata.name {
                let _ = cluster
                    .kubectl(["certificate", "approve", name.as_str()])
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The kubelet polls its CSR every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Waits until the node's Ready condition is True.
pub async fn wait_node_ready(cluster: &TestCluster, name: &str, timeout: Duration) {
    let client = cluster.client();
    wait_for(timeout, "node Ready", || {
        let client = client.clone();
        let name = name.to_string();
        async move {
            node_ready(&client, &name)
                .await
                .is_some_and(|(s, _)| s == "True")
        }
    })
    .await;
}

/// `GET https://127.0.0.1:<port><path>` on a node's kubelet API, as the
/// apiserver and metrics-server call it: the cluster CA verifies the node's
/// serving certificate, the apiserver's kubelet-client certificate
/// authenticates. (The apiserver refuses to proxy `nodes/<n>/proxy` to
/// loopback node addresses, so tests call the kubelet directly.) Returns
/// (HTTP status, body).
pub async fn kubelet_get(
    cluster: &TestCluster,
    port: impl std::fmt::Display,
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
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}
