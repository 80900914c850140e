//! The `vk-mock` image: built by `cargo xtask build-images` with the other
//! providers' (no container engine involved), loaded into rootful podman from its
//! `docker-archive` tarball, run for `--version`, and run with host
//! networking against the local control plane, where it registers a Ready node
//! and runs the demo's workload.
//!
//! Podman on these machines needs `--runtime runc --cgroup-manager=cgroupfs`
//! and `default_ulimits = []` under `[containers]` in
//! `/etc/containers/containers.conf`: `vk_test_support::prepare_podman`
//! (run as root, it installs the Debian packages `podman` and `runc` when
//! missing and writes that setting when absent) and `vk_test_support::podman`
//! (the CLI with those flags). When podman cannot run at all the tests say
//! so loudly and skip.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use vk_test_support::{PodmanContainer, provider_image};

use crate::support::*;

#[tokio::test]
async fn the_image_loads_and_prints_its_version() {
    let Some(image) = provider_image("mock").await else {
        return;
    };
    image.assert_runs_and_declares();
}

#[tokio::test]
async fn the_image_with_host_networking_registers_a_ready_node_and_runs_pods() {
    let Some(image) = provider_image("mock").await else {
        return;
    };
    let (cluster, ns) = cluster_and_namespace("vk-image").await;
    let client = cluster.client();
    let node = unique_name("vk-image");
    let _node_cleanup = cluster.delete_on_drop("node", None, &node);
    let _lease_cleanup = cluster.delete_on_drop("lease", Some("kube-node-lease"), &node);
    let approver = CsrApprover::start(&cluster, &node, None);

    // The container runs as uid 65532: give it a readable copy of the kubeconfig.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig).expect("copy kubeconfig");
    set_mode(&kubeconfig, 0o644);
    let metrics_port = free_port().expect("free port");
    let container = PodmanContainer::run(
        &format!("vk-mock-test-{node}"),
        &[
            "--network",
            "host",
            "-v",
            &format!("{}:/kubeconfig:ro", kubeconfig.display()),
            &image.reference,
            "--kubeconfig",
            "/kubeconfig",
            "--nodename",
            &node,
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--kubelet-port",
            &free_port().expect("free port").to_string(),
        ],
    );

    wait_node_ready(&client, &node, Duration::from_secs(60)).await;
    // The health endpoint of the process inside the container, over the host network.
    let healthz = http_get(&format!("http://127.0.0.1:{metrics_port}/healthz")).await;
    assert!(healthz.is_ok(), "/healthz did not answer 200: {healthz:?}");

    // The demo's workload, pinned to this node.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &demo_deployment(&node))
        .await
        .expect("create the demo deployment");
    let params = ListParams::default().labels("app=demo");
    let list = wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "3 demo pods Running and Ready",
        |list| {
            list.len() == 3
                && list.iter().all(|p| {
                    phase(p) == "Running"
                        && is_ready(p)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            == Some(node.as_str())
                })
        },
    )
    .await;

    // Logs through the apiserver, served by the kubelet API inside the
    // container with its CSR-issued certificate.
    if has_kubelet_api() {
        let pod_name = list[0].metadata.name.clone().unwrap_or_default();
        let logs = logs_via_apiserver(&cluster, ns.name(), &pod_name, "nginx")
            .await
            .unwrap_or_else(|e| panic!("kubectl logs {pod_name}: {e}"));
        assert!(
            logs.contains("nginx: started (image nginx)"),
            "logs: {logs}"
        );
        assert!(
            !approver.approved().is_empty(),
            "no serving CSR was approved"
        );
    }

    deployments
        .delete("demo", &DeleteParams::default())
        .await
        .expect("delete the deployment");
    wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "the demo pods gone",
        <[Pod]>::is_empty,
    )
    .await;
    drop(container);
}

/// `examples/demo-deployment.yaml`, with a node selector for this test's node.
fn demo_deployment(node: &str) -> Deployment {
    let path = vk_test_support::workspace_root().join("examples/demo-deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("demo deployment");
    let mut value: Value = serde_saphyr::from_str(&text).expect("demo deployment YAML");
    value["spec"]["template"]["spec"]["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    serde_json::from_value(value).expect("a Deployment")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
