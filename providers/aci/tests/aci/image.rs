//! The `vk-aci` image: built by `cargo xtask build-images` (every provider
//! in one cargo invocation), loaded into rootful podman, and run with host
//! networking against the local control plane and the contract-checked fake
//! ARM server: it registers a Ready node and runs a pod as a container group.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use vk_test_support::{
    FakeArm, FakeArmOptions, PodmanContainer, cluster_and_namespace, create_pod, provider_image,
    unique_name, wait_node_ready, wait_running,
};

use crate::rig::{RUNNING_WITHIN, assert_contract_kept, group_of, node_flags};

#[tokio::test]
async fn the_image_runs_a_pod_as_a_container_group_against_the_fake_arm() {
    let Some(image) = provider_image("aci").await else {
        return;
    };
    image.assert_runs_and_declares();

    let arm = FakeArm::start(FakeArmOptions {
        client_secret: Some("s3cret".into()),
        ..Default::default()
    })
    .await
    .expect("fake ARM");
    let (cluster, ns) = cluster_and_namespace("aci-image").await;
    let client = cluster.client();
    let node = unique_name("aci-image");
    let _node_cleanup = cluster.delete_on_drop("node", None, &node);
    let _lease_cleanup = cluster.delete_on_drop("lease", Some("kube-node-lease"), &node);

    // The container runs as uid 65532: readable copies of its inputs.
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    for (from, to) in [
        (cluster.kubeconfig(), "kubeconfig"),
        (arm.ca_file(), "arm-ca.pem"),
    ] {
        let copy = dir.path().join(to);
        std::fs::copy(from, &copy).expect("copy an input");
        set_mode(&copy, 0o644);
    }
    let mut args: Vec<String> = [
        "--network",
        "host",
        "-v",
        &format!("{}:/etc/vk:ro", dir.path().display()),
        "-e",
        "AZURE_CLIENT_SECRET=s3cret",
        &image.reference,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(node_flags(
        &arm,
        "/etc/vk/kubeconfig",
        "/etc/vk/arm-ca.pem",
        &node,
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let container = PodmanContainer::run(&format!("vk-aci-test-{node}"), &args);
    wait_node_ready(&client, &node, Duration::from_secs(60)).await;

    let pod = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "nodeName": node,
                "containers": [{
                    "name": "main", "image": "nginx", "command": ["nginx"],
                    "ports": [{ "containerPort": 80 }]
                }]
            }
        }),
    )
    .await;
    let running = wait_running(&client, ns.name(), "web", RUNNING_WITHIN).await;
    let group = group_of(&pod);
    let ip = running.status.and_then(|s| s.pod_ip);
    assert_eq!(
        ip,
        arm.group_ip(&group),
        "the pod's IP is its group's; container log:\n{}",
        container.logs()
    );
    assert_contract_kept(&arm);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
