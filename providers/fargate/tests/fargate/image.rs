//! The `vk-fargate` image: built by `cargo xtask build-images` (every
//! provider in one cargo invocation), loaded into rootful podman, and run
//! with host networking against the local control plane and moto: it
//! registers a Ready node and runs a pod as a task.

use std::path::Path;

use serde_json::json;
use vk_test_support::{PodmanContainer, provider_image};

use crate::support::*;

#[tokio::test]
async fn the_image_runs_a_pod_as_a_task_against_moto() {
    let Some(image) = provider_image("fargate").await else {
        return;
    };
    image.assert_runs_and_declares();

    let (cluster, ns) = cluster_and_namespace("fargate-image").await;
    let client = cluster.client();
    let node = unique_name("fargate-image");
    let _node_cleanup = cluster.delete_on_drop("node", None, &node);
    let _lease_cleanup = cluster.delete_on_drop("lease", Some("kube-node-lease"), &node);
    let moto = MotoServer::start(&moto_script()).expect("moto starts");
    let (subnet, group) = moto
        .default_network(REGION)
        .expect("moto's default network");

    // The container runs as uid 65532: readable copies of its inputs.
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig).expect("copy kubeconfig");
    set_mode(&kubeconfig, 0o644);
    let config = dir.path().join("fargate.toml");
    std::fs::write(
        &config,
        format!(
            "Region = \"{REGION}\"\nClusterName = \"{CLUSTER}\"\nSubnets = [\"{subnet}\"]\n\
             SecurityGroups = [\"{group}\"]\nPollInterval = \"1s\"\n"
        ),
    )
    .expect("write fargate.toml");
    set_mode(&config, 0o644);

    let container = PodmanContainer::run(
        &format!("vk-fargate-test-{node}"),
        &[
            "--network",
            "host",
            "-v",
            &format!("{}:/etc/vk:ro", dir.path().display()),
            "-e",
            &format!("AWS_ENDPOINT_URL={}", moto.endpoint()),
            "-e",
            "AWS_ACCESS_KEY_ID=testing",
            "-e",
            "AWS_SECRET_ACCESS_KEY=testing",
            "-e",
            "AWS_EC2_METADATA_DISABLED=true",
            &image.reference,
            "--kubeconfig",
            "/etc/vk/kubeconfig",
            "--provider-config",
            "/etc/vk/fargate.toml",
            "--nodename",
            &node,
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port().expect("free port")),
            "--kubelet-port",
            &free_port().expect("free port").to_string(),
        ],
    );
    wait_node_ready(&client, &node, std::time::Duration::from_secs(60)).await;

    create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "nodeName": node,
                "containers": [{ "name": "main", "image": "public.ecr.aws/nginx/nginx:1" }]
            }
        }),
    )
    .await;
    let running = wait_running(&client, ns.name(), "web", RUNNING_WITHIN).await;
    let ip = running.status.and_then(|s| s.pod_ip).unwrap_or_default();
    assert!(
        !ip.is_empty(),
        "the pod has no IP; container log:\n{}",
        container.logs()
    );
    // The task behind it, seen from outside the container.
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_ecs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ));
    let ecs = vk_fargate::aws::Clients::from_loader(REGION, loader)
        .await
        .ecs;
    let tasks = ecs
        .list_tasks()
        .cluster(CLUSTER)
        .send()
        .await
        .expect("ListTasks");
    assert_eq!(tasks.task_arns().len(), 1, "{tasks:?}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
