//! What a create interrupted between `RegisterTaskDefinition` and `RunTask`
//! leaves when its pod is deleted before vk-fargate is back: a task
//! definition and a secret tagged with the node and the pod, and no task.
//! The sweep removes them, and only them.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, NetworkMode, Tag, TaskDefinitionStatus,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use vk_core::toolkit::pod_identity::{NameRules, backend_name};

use crate::support::*;

/// Registers a task definition and creates a secret as vk-fargate would
/// for pod `ns/name` (UID `uid`) on node `node`; returns (definition ARN,
/// secret name).
async fn leave_behind(
    node: &FargateNode,
    owner_node: &str,
    ns: &str,
    name: &str,
    uid: &str,
) -> (String, String) {
    let family = backend_name(ns, name, uid, &NameRules::ECS_TASK_FAMILY);
    let tags = [
        ("io.vk-rs.node", owner_node),
        ("io.vk-rs.pod-namespace", ns),
        ("io.vk-rs.pod-name", name),
        ("io.vk-rs.pod-uid", uid),
    ];
    let registered = node
        .clients
        .ecs
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image("busybox")
                .memory_reservation(6)
                .build(),
        )
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    let arn = registered
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_string();
    let secret = format!("vk-rs/{family}");
    node.clients
        .secrets
        .create_secret()
        .name(&secret)
        .secret_string(r#"{"main.PASSWORD":"left-behind"}"#)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| {
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(*k)
                        .value(*v)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    (arn, secret)
}

async fn definition_status(node: &FargateNode, arn: &str) -> TaskDefinitionStatus {
    node.clients
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .and_then(|t| t.status())
        .cloned()
        .unwrap()
}

async fn secret_exists(node: &FargateNode, name: &str) -> bool {
    node.clients
        .secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn definitions_and_secrets_an_interrupted_create_left_are_swept_and_nothing_else() {
    let (cluster, ns, node) =
        FargateNode::ready_configured("sweep", "SweepInterval = \"2s\"").await;
    let client = cluster.client();
    // A live pod with a task, a definition and a secret: kept.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"password": "hunter2"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let env = json!({"env": [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]});
    let created = create_pod(&client, ns.name(), pod("keep", &node.name, env)).await;
    wait_running(&client, ns.name(), "keep", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    let kept_definition = task.task_definition_arn().unwrap().to_string();
    let kept_family = kept_definition
        .rsplit('/')
        .next()
        .and_then(|t| t.rsplit_once(':'))
        .unwrap()
        .0
        .to_string();
    let kept_secret = format!("vk-rs/{kept_family}");
    assert!(secret_exists(&node, &kept_secret).await);

    // Left by a create of this node for a pod that is gone, and by another node.
    let gone_uid = "0c6b1f0e-0000-4000-8000-00000000dead";
    let (leaked_definition, leaked_secret) =
        leave_behind(&node, &node.name, ns.name(), "gone", gone_uid).await;
    let (foreign_definition, foreign_secret) = leave_behind(
        &node,
        "another-node",
        ns.name(),
        "elsewhere",
        "0c6b1f0e-0000-4000-8000-00000000beef",
    )
    .await;

    let deadline = std::time::Instant::now() + RUNNING_WITHIN;
    loop {
        let inactive =
            definition_status(&node, &leaked_definition).await == TaskDefinitionStatus::Inactive;
        let deleted = !secret_exists(&node, &leaked_secret).await;
        if inactive && deleted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not swept (definition inactive {inactive}, secret deleted {deleted}): {}",
            node.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // A few sweeps more: the rest stays.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        definition_status(&node, &kept_definition).await,
        TaskDefinitionStatus::Active
    );
    assert!(
        secret_exists(&node, &kept_secret).await,
        "the live pod's secret"
    );
    assert_eq!(
        definition_status(&node, &foreign_definition).await,
        TaskDefinitionStatus::Active
    );
    assert!(
        secret_exists(&node, &foreign_secret).await,
        "another node's secret"
    );
    wait_running(&client, ns.name(), "keep", RUNNING_WITHIN).await;
    assert_eq!(
        node.task_of(created.metadata.uid.as_deref().unwrap())
            .await
            .last_status(),
        Some("RUNNING")
    );
}
