//! `kubectl get --raw /api/v1/nodes/<node>/proxy/...` through the real apiserver.
//!
//! The apiserver refuses to proxy to a node whose address is not a global
//! unicast IP ("address not allowed"), so this test gives the node a test host
//! of its own: a network namespace with a veth pair, the node's InternalIP
//! inside it, and a forwarder there that hands each connection over a Unix
//! socket to the kubelet API on loopback. Traffic goes only to loopback and
//! to the namespace the test created.

use crate::support::test_host::{TestHost, not_root};
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn node_proxy_stats_summary_through_the_apiserver() {
    if not_root() {
        eprintln!("SKIPPED: creating a network namespace needs root");
        return;
    }
    let host = TestHost::create("proxy").expect("network namespace and veth pair (iproute2, root)");
    let (cluster, ns) = cluster_and_namespace("proxy").await;
    let name = unique_name("proxy");
    // Inside the namespace: the node's IP and port → the kubelet on loopback.
    let (node, forward) = host.start_node(&cluster, &name, &[]).await;
    run_app(&cluster, ns.name(), &name).await;

    let path = format!("/api/v1/nodes/{name}/proxy/stats/summary");
    let out = cluster
        .kubectl(["get", "--raw", path.as_str()])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["node"]["nodeName"], json!(name));
    assert!(
        summary["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["podRef"]["name"] == "app" && p["podRef"]["namespace"] == json!(ns.name())),
        "{summary}"
    );
    for sub in ["pods", "runningpods/", "metrics/resource"] {
        let path = format!("/api/v1/nodes/{name}/proxy/{sub}");
        let out = cluster
            .kubectl(["get", "--raw", path.as_str()])
            .await
            .unwrap();
        assert!(out.status.success(), "{sub}: {}", out.stderr);
        assert!(out.stdout.contains("app"), "{sub}: {}", out.stdout);
    }
    // logs and exec take the same way (the node's InternalIP) and keep working.
    let out = cluster
        .kubectl(["logs", "-n", ns.name(), "app", "--tail=1"])
        .await
        .unwrap();
    assert!(out.stdout.starts_with("main: "), "{}", out.stderr);

    drop(forward);
    drop(node);
    delete_node(&cluster.client(), &name).await;
}
