//! The worked example of `docs/writing-a-provider.md`
//! (`examples/timer_provider.rs`) runs a pod on the real local control
//! plane: Running, logs through the apiserver, then Succeeded on its own.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use vk_test_support::{
    KubeletProcess, approve_serving_csr, cluster_and_namespace, create_pod, free_port, kubectl,
    phase, unique_name, wait_node_ready, wait_pod, wait_running,
};

/// The example's binary: built beside this test by `cargo test` (examples
/// are built with the tests), else built now.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("timer_provider");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "vk-core", "--example", "timer_provider"])
            .status()
            .expect("cargo build --example");
        assert!(status.success(), "building the example failed");
    }
    bin
}

#[tokio::test]
async fn the_worked_example_runs_a_pod_to_completion_with_logs() {
    let (cluster, ns) = cluster_and_namespace("example").await;
    let node = unique_name("timers");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("timer-provider.log");
    let kubelet_port = free_port().expect("free port").to_string();
    let metrics = format!("127.0.0.1:{}", free_port().expect("free port"));
    let kubeconfig = cluster.kubeconfig().to_string_lossy().into_owned();
    let args = [
        "--kubeconfig",
        &kubeconfig,
        "--nodename",
        &node,
        "--kubelet-port",
        &kubelet_port,
        "--metrics-addr",
        &metrics,
    ];
    let _process = KubeletProcess::start(example_binary(), args, &log).expect("spawn example");
    let client = cluster.client();
    wait_node_ready(&client, &node, Duration::from_secs(30)).await;
    approve_serving_csr(&cluster, &node).await;

    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "timer", "annotations": { "example.vk-rs.io/run-seconds": "6" } },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
            "containers": [{ "name": "main", "image": "example" }]
        }
    });
    create_pod(&client, ns.name(), manifest).await;
    wait_running(&client, ns.name(), "timer", Duration::from_secs(20)).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, out, err) = kubectl(&cluster, &["logs", "-n", ns.name(), "timer", "--tail=1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("main: tick "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let done = wait_pod(
        &client,
        ns.name(),
        "timer",
        Duration::from_secs(30),
        "Succeeded",
        |p| phase(p) == "Succeeded",
    )
    .await;
    let state = done.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap();
    assert_eq!(state.terminated.unwrap().exit_code, 0);
    let (_, all, _) = kubectl(&cluster, &["logs", "-n", ns.name(), "timer"]).await;
    assert_eq!(all.lines().count(), 6, "six seconds, six ticks: {all}");
}
