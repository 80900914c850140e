#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Fargate provider against the real local control plane and moto (over
//! the AWS wire protocol, through our wrapper `tests/rig/moto_ecs.py`).
//! Every test runs its own moto and its own `vk-fargate` process with its
//! own node.

#[path = "fargate/support.rs"]
mod support;

use std::collections::BTreeMap;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use support::*;

#[tokio::test]
async fn a_pod_runs_as_a_task_with_the_tasks_ip() {
    let (cluster, ns, node) = FargateNode::ready("run").await;
    let client = cluster.client();
    let created = create_pod(&client, ns.name(), pod("web", &node.name, json!({}))).await;
    let uid = created.metadata.uid.clone().unwrap();
    let running = wait_running(&client, ns.name(), "web", RUNNING_WITHIN).await;

    let task = node.task_of(&uid).await;
    assert_eq!(task.last_status(), Some("RUNNING"));
    let eni_ip = vk_fargate::status::pod_ip(&task).expect("the task's ENI address");
    let status = running.status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some(eni_ip.as_str()));
    let container = &status.container_statuses.unwrap()[0];
    assert!(
        container.state.as_ref().unwrap().running.is_some(),
        "{container:?}"
    );
    // Tags carry the pod; the task is the smallest Fargate size.
    let tags: BTreeMap<&str, &str> = task
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(tags.get("io.vk-rs.pod-uid"), Some(&uid.as_str()));
    assert_eq!(tags.get("io.vk-rs.pod-name"), Some(&"web"));
    assert_eq!(tags.get("io.vk-rs.node"), Some(&node.name.as_str()));
    let definition = node.task_definition(&task).await;
    assert_eq!(
        (definition.cpu(), definition.memory()),
        (Some("256"), Some("512"))
    );
    assert!(
        events(&client, ns.name())
            .await
            .iter()
            .any(|(reason, name)| reason == "TaskSized" && name == "web"),
        "a TaskSized event"
    );
}

#[tokio::test]
async fn exit_1_fails_the_pod_with_its_code_and_the_stopped_reason() {
    let (cluster, ns, node) = FargateNode::ready("exit").await;
    let client = cluster.client();
    let created = create_pod(&client, ns.name(), pod("job", &node.name, json!({}))).await;
    wait_running(&client, ns.name(), "job", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    let arn = task.task_arn().unwrap();
    node.moto
        .set_container(arn, "main", json!({"lastStatus": "STOPPED", "exitCode": 1}))
        .unwrap();
    node.moto
        .set_task(
            arn,
            json!({"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
                   "stoppedReason": "Essential container in task exited"}),
        )
        .unwrap();
    let failed = wait_pod(&client, ns.name(), "job", RUNNING_WITHIN, "Failed", |p| {
        phase(p) == "Failed"
    })
    .await;
    let status = failed.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("Essential container in task exited")
            && message.contains("EssentialContainerExited"),
        "{message}"
    );
    let terminated = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .expect("terminated");
    assert_eq!(terminated.exit_code, 1);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
}

#[tokio::test]
async fn secret_env_stays_out_of_the_task_definition_and_goes_with_the_pod() {
    let (cluster, ns, node) = FargateNode::ready("secret").await;
    let client = cluster.client();
    let value = format!("hunter2-{}", unique_name("v"));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"password": value},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let env = json!({"env": [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "PLAIN", "value": "visible"},
    ]});
    let created = create_pod(&client, ns.name(), pod("app", &node.name, env)).await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;

    // Nowhere in the task definition nor the tags, yet in the secret store.
    let definition = node.task_definition(&task).await;
    let shown = format!("{definition:?} {:?}", task.tags());
    assert!(!shown.contains(&value), "the value leaked: {shown}");
    let main = &definition.container_definitions()[0];
    let plain: Vec<(&str, &str)> = main
        .environment()
        .iter()
        .filter_map(|e| Some((e.name()?, e.value()?)))
        .collect();
    // Plain values (the service links the core adds too) stay plain.
    assert!(plain.contains(&("PLAIN", "visible")), "{plain:?}");
    assert!(
        plain.iter().all(|(name, _)| *name != "DB_PASSWORD"),
        "{plain:?}"
    );
    let secrets = main.secrets();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(secrets[0].name(), "DB_PASSWORD");
    let value_from = secrets[0].value_from();
    let (secret_arn, json_key) = value_from
        .trim_end_matches("::")
        .rsplit_once(':')
        .expect("ARN:key::");
    let stored = node
        .clients
        .secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(stored.secret_string().unwrap()).unwrap();
    assert_eq!(stored[json_key], value.as_str());

    // Deleted with the pod: task stopped, definition deregistered, secret gone.
    Api::<Pod>::namespaced(client.clone(), ns.name())
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("pod app gone", RUNNING_WITHIN, || {
        let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
        async move { pods.get_opt("app").await.ok().flatten().is_none() }
    })
    .await;
    let gone = node
        .clients
        .secrets
        .describe_secret()
        .secret_id(secret_arn)
        .send()
        .await;
    assert!(gone.is_err(), "the secret is still there: {gone:?}");
    let stopped = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    assert_eq!(stopped.last_status(), Some("STOPPED"));
    let definition = node.task_definition(&stopped).await;
    assert_eq!(definition.status().map(|s| s.as_str()), Some("INACTIVE"));
}

#[test]
fn a_bad_config_is_one_line_on_stderr_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let no_region = dir.path().join("fargate.toml");
    std::fs::write(&no_region, "Subnets = [\"subnet-1\"]\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--provider-config", no_region.to_str().unwrap()],
            "Region is a required field",
        ),
        (&[], "--provider-config is required"),
        (
            &["--provider-config", "/nonexistent/fargate.toml"],
            "cannot read provider config /nonexistent/fargate.toml",
        ),
    ];
    for (args, want) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vk-fargate"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("vk-fargate: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn kubectl_logs_reads_the_containers_cloudwatch_stream() {
    let (cluster, ns, node) = FargateNode::ready("logs").await;
    approve_serving_csr(&cluster, &node.name).await;
    let client = cluster.client();
    let created = create_pod(&client, ns.name(), pod("app", &node.name, json!({}))).await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    // What the awslogs driver would write: `<prefix>/<container>/<task id>`,
    // the prefix naming the pod (its task definition family).
    let definition = node.task_definition(&task).await;
    let options = definition.container_definitions()[0]
        .log_configuration()
        .and_then(|l| l.options())
        .cloned()
        .unwrap();
    let prefix = &options["awslogs-stream-prefix"];
    assert_eq!(Some(prefix.as_str()), definition.family());
    let task_id = task.task_arn().unwrap().rsplit('/').next().unwrap();
    let stream = format!("{prefix}/main/{task_id}");
    let logs = &node.clients.logs;
    logs.create_log_group()
        .log_group_name(&options["awslogs-group"])
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&options["awslogs-group"])
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let events: Vec<InputLogEvent> = (1..=3)
        .map(|n| {
            InputLogEvent::builder()
                .timestamp(now - 3000 + n * 1000)
                .message(format!("line {n}"))
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(&options["awslogs-group"])
        .log_stream_name(&stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();

    let all = kubectl_ok(&cluster, &["logs", "-n", ns.name(), "app"]).await;
    assert_eq!(all, "line 1\nline 2\nline 3\n");
    let tail = kubectl_ok(&cluster, &["logs", "-n", ns.name(), "app", "--tail", "1"]).await;
    assert_eq!(tail, "line 3\n");
    let stamped = kubectl_ok(
        &cluster,
        &[
            "logs",
            "-n",
            ns.name(),
            "app",
            "--tail",
            "1",
            "--timestamps",
        ],
    )
    .await;
    let (time, text) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "line 3");
    let time: jiff::Timestamp = time.parse().unwrap();
    assert_eq!(time.as_millisecond(), now);
}
