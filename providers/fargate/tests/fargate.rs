#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Fargate provider against the real local control plane and moto (over
//! the AWS wire protocol, through our wrapper `tests/rig/moto_ecs.py`).
//! Every test runs its own moto and its own `vk-fargate` process with its
//! own node.

#[path = "fargate/chart.rs"]
mod chart;
#[path = "fargate/image.rs"]
mod image;
#[path = "fargate/support.rs"]
mod support;
#[path = "fargate/sweep.rs"]
mod sweep;
#[path = "fargate/volumes.rs"]
mod volumes;
#[path = "fargate/workloads.rs"]
mod workloads;

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
    let mut spec = pod("job", &node.name, json!({}));
    spec["spec"]["restartPolicy"] = "Never".into();
    let created = create_pod(&client, ns.name(), spec).await;
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
    // The pod's container (the volume writer comes first).
    let main = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("main"))
        .expect("container main");
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
    let options = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("main"))
        .expect("container main")
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

#[tokio::test]
async fn on_failure_replaces_the_stopped_task_after_the_back_off() {
    let (cluster, ns, node) = FargateNode::ready("restart").await;
    approve_serving_csr(&cluster, &node.name).await;
    let client = cluster.client();
    let mut spec = pod("job", &node.name, json!({}));
    spec["spec"]["restartPolicy"] = "OnFailure".into();
    let created = create_pod(&client, ns.name(), spec).await;
    let uid = created.metadata.uid.clone().unwrap();
    wait_running(&client, ns.name(), "job", RUNNING_WITHIN).await;
    let first = node.task_of(&uid).await;
    write_log(&node, &first, "main", &["first task says bye"]).await;
    exit_task(&node, &first, "main", 1);

    // While the back-off runs: CrashLoopBackOff, the exit as lastState, still Running.
    let waiting = wait_pod(
        &client,
        ns.name(),
        "job",
        RUNNING_WITHIN,
        "CrashLoopBackOff",
        |p| {
            main_status(p).is_some_and(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
            })
        },
    )
    .await;
    assert_eq!(phase(&waiting), "Running");
    let c = main_status(&waiting).unwrap();
    assert_eq!(c.restart_count, 0);
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(last.map(|t| t.exit_code), Some(1), "{c:?}");

    // After the back-off (10 s): a second task, restartCount 1, lastState exit 1.
    let restarted = wait_pod(
        &client,
        ns.name(),
        "job",
        RESTART_WITHIN,
        "restartCount 1",
        |p| {
            main_status(p).is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        },
    )
    .await;
    let c = main_status(&restarted).unwrap();
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(last.map(|t| t.exit_code), Some(1), "{c:?}");
    let tasks = node.tasks_of(&uid).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let second = tasks
        .iter()
        .find(|t| t.last_status() == Some("RUNNING"))
        .expect("the replacement runs");
    assert_eq!(second.task_definition_arn(), first.task_definition_arn());
    // The pod's address is the replacement's (its own network interface).
    let second_ip = vk_fargate::status::pod_ip(second);
    assert_ne!(second_ip, vk_fargate::status::pod_ip(&first));
    wait_pod(
        &client,
        ns.name(),
        "job",
        RUNNING_WITHIN,
        "the new task's IP",
        |p| p.status.as_ref().and_then(|s| s.pod_ip.clone()) == second_ip,
    )
    .await;

    // A few more polls: still exactly two tasks.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(node.tasks_of(&uid).await.len(), 2);

    // --previous reads the first task's stream.
    let previous = kubectl_ok(&cluster, &["logs", "-n", ns.name(), "job", "--previous"]).await;
    assert_eq!(previous, "first task says bye\n");
}

/// The UID in a task's `startedBy` (`vk-rs/<uid>`).
fn started_uid(task: &aws_sdk_ecs::types::Task) -> String {
    task.started_by()
        .and_then(|s| s.strip_prefix("vk-rs/"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_killed_vk_fargate_adopts_its_tasks_and_never_runs_a_second_one() {
    let (cluster, ns, mut node) = FargateNode::ready("durable").await;
    let client = cluster.client();
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    // All 20 at once, RunTask slowed and one at a time, SIGKILL once the
    // first task exists.
    node.moto.set_latency("RunTask", 0.3).unwrap();
    let creations: Vec<_> = (0..20)
        .map(|i| {
            let (client, ns, node) = (client.clone(), ns.name().to_string(), node.name.clone());
            tokio::spawn(async move {
                let created =
                    create_pod(&client, &ns, pod(&format!("p{i}"), &node, json!({}))).await;
                (created.metadata.uid.unwrap(), format!("p{i}"))
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + RUNNING_WITHIN;
    while node.all_tasks().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no task at all");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    node.kill();
    let before = node.all_tasks().await;
    eprintln!("{} tasks at the kill", before.len());
    let mut names = BTreeMap::new();
    for c in creations {
        let (uid, name) = c.await.unwrap();
        names.insert(uid, name);
    }
    assert!(
        before.len() < 20,
        "all 20 tasks ran before the kill: the test saw no interrupted creation"
    );
    // Deleted while nobody serves the node: one whose task runs.
    let victim_uid = started_uid(&before[0]);
    let victim = names[&victim_uid].clone();
    let victim_secret = format!(
        "vk-rs/{}",
        node.task_definition(&before[0]).await.family().unwrap()
    );
    assert!(
        node.clients
            .secrets
            .describe_secret()
            .secret_id(&victim_secret)
            .send()
            .await
            .is_ok(),
        "the victim has a secret (its token volume's files)"
    );
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    node.moto.set_latency("RunTask", 0.0).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    node.restart();
    wait_node_ready(&client, &node.name, std::time::Duration::from_secs(30)).await;

    for name in names.values().filter(|n| **n != victim) {
        wait_running(&client, ns.name(), name, RESTART_WITHIN).await;
    }
    wait_until("the deleted pod gone", RESTART_WITHIN, || {
        let pods = pods.clone();
        let victim = victim.clone();
        async move { pods.get_opt(&victim).await.ok().flatten().is_none() }
    })
    .await;
    // A few polls more, then: exactly one task per pod, the earlier ones adopted.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = node.all_tasks().await;
    let mut per_pod: BTreeMap<String, Vec<&aws_sdk_ecs::types::Task>> = BTreeMap::new();
    for t in &after {
        per_pod.entry(started_uid(t)).or_default().push(t);
    }
    assert_eq!(after.len(), 20, "{per_pod:?}");
    assert_eq!(per_pod.len(), 20);
    for t in &before {
        let now = &per_pod[&started_uid(t)];
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].task_arn(), t.task_arn(), "adopted, not run again");
    }
    for (uid, tasks) in &per_pod {
        let want = if *uid == victim_uid {
            "STOPPED"
        } else {
            "RUNNING"
        };
        assert_eq!(tasks[0].last_status(), Some(want), "{}", names[uid]);
    }
    let stopped = per_pod[&victim_uid][0];
    let definition = node.task_definition(stopped).await;
    assert_eq!(definition.status().map(|s| s.as_str()), Some("INACTIVE"));
    // Its secret (its service-account token's files) went with it.
    let gone = node
        .clients
        .secrets
        .describe_secret()
        .secret_id(&victim_secret)
        .send()
        .await;
    assert!(gone.is_err(), "{victim_secret} is still there: {gone:?}");
}

#[tokio::test]
async fn with_a_fifth_of_aws_calls_failing_50_pods_converge_and_leave_nothing_behind() {
    const PODS: usize = 50;
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(180);
    let (cluster, ns, node) = FargateNode::ready_with("faults", true).await;
    let client = cluster.client();
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"password": "hunter2"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // From here on a fifth of the provider's AWS calls fail, half throttled.
    node.moto.set_faults(0.2, 0.5).unwrap();
    let env = json!({"env": [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]});
    let creations: Vec<_> = (0..PODS)
        .map(|i| {
            let (client, ns, node, env) = (
                client.clone(),
                ns.name().to_string(),
                node.name.clone(),
                env.clone(),
            );
            tokio::spawn(async move {
                create_pod(&client, &ns, pod(&format!("p{i}"), &node, env)).await;
            })
        })
        .collect();
    for c in creations {
        c.await.unwrap();
    }
    for i in 0..PODS {
        wait_running(&client, ns.name(), &format!("p{i}"), WITHIN).await;
    }
    let tasks = node.all_tasks().await;
    let mut uids: Vec<String> = tasks.iter().map(started_uid).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(
        (tasks.len(), uids.len()),
        (PODS, PODS),
        "one task per pod, no duplicate"
    );
    let listed = node.clients.secrets.list_secrets().send().await.unwrap();
    assert_eq!(listed.secret_list().len(), PODS, "one secret per pod");

    for i in 0..PODS {
        pods.delete(&format!("p{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let p = pods.clone();
    wait_until("every pod gone", WITHIN, move || {
        let p = p.clone();
        async move {
            p.list(&Default::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        }
    })
    .await;
    let counts = node.moto.set_faults(0.0, 0.5).unwrap();
    assert!(
        counts["throttled"].as_u64() > Some(0) && counts["failed"].as_u64() > Some(0),
        "faults were injected: {counts}"
    );
    // Nothing left: every task stopped, no active definition, no secret.
    let tasks = node.all_tasks().await;
    assert_eq!(tasks.len(), PODS);
    assert!(
        tasks.iter().all(|t| t.last_status() == Some("STOPPED")),
        "{tasks:?}"
    );
    let active = node
        .clients
        .ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(active.task_definition_arns(), [] as [String; 0]);
    let listed = node.clients.secrets.list_secrets().send().await.unwrap();
    assert_eq!(listed.secret_list().len(), 0, "{listed:?}");
    eprintln!("faults injected: {counts}");
}

#[tokio::test]
async fn pull_secrets_become_repository_credentials_and_the_grace_period_the_stop_timeout() {
    let (cluster, ns, node) = FargateNode::ready("pull").await;
    let client = cluster.client();
    let password = unique_name("pw");
    let config =
        json!({"auths": {"registry.example.com": {"username": "robot", "password": password}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut spec = pod(
        "private",
        &node.name,
        json!({"image": "registry.example.com/team/app:1"}),
    );
    spec["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    spec["spec"]["terminationGracePeriodSeconds"] = 300.into();
    let created = create_pod(&client, ns.name(), spec).await;
    wait_running(&client, ns.name(), "private", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    let definition = node.task_definition(&task).await;
    let shown = format!("{definition:?} {:?}", task.tags());
    assert!(!shown.contains(&password), "the password leaked: {shown}");
    // The pod's container (the volume writer comes first).
    let main = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some("main"))
        .expect("container main");
    // Fargate's longest stop timeout, not the pod's 300 s.
    assert_eq!(main.stop_timeout(), Some(120));
    let secret_arn = main
        .repository_credentials()
        .map(|r| r.credentials_parameter().to_string())
        .expect("repositoryCredentials");
    let stored = node
        .clients
        .secrets
        .get_secret_value()
        .secret_id(&secret_arn)
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(stored.secret_string().unwrap()).unwrap();
    assert_eq!(stored["username"], "robot");
    assert_eq!(stored["password"], password.as_str());

    Api::<Pod>::namespaced(client.clone(), ns.name())
        .delete("private", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("pod private gone", RUNNING_WITHIN, || {
        let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
        async move { pods.get_opt("private").await.ok().flatten().is_none() }
    })
    .await;
    let gone = node
        .clients
        .secrets
        .describe_secret()
        .secret_id(&secret_arn)
        .send()
        .await;
    assert!(gone.is_err(), "the secret is still there: {gone:?}");
}

/// Two `vk-fargate` replicas of one node with `--leader-elect`: the leader
/// is SIGKILLed with pods running; the standby takes the node over, adopts
/// every task without running a second one, and serves a new pod.
#[tokio::test]
async fn a_standby_vk_fargate_takes_over_without_running_a_task_twice() {
    let (cluster, ns) = cluster_and_namespace("fg-standby").await;
    let client = cluster.client();
    let flags = ["--leader-elect", "--leader-elect-namespace", ns.name()];
    let mut node =
        FargateNode::start_full(&cluster, &unique_name("fg-standby"), false, "", &flags).await;
    wait_node_ready(&client, &node.name, std::time::Duration::from_secs(30)).await;
    let lease = format!("vk-rs-{}", node.name);
    let holder = || {
        let leases =
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns.name());
        let lease = lease.clone();
        async move {
            leases
                .get_opt(&lease)
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
        }
    };
    let first =
        vk_test_support::wait_for("a leader", std::time::Duration::from_secs(20), || async {
            Ok(holder().await)
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let standby_log = dir.path().join("standby.log");
    let _standby = node.replica(&standby_log);
    wait_until(
        "the replica standing by",
        std::time::Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&standby_log)
                .unwrap_or_default()
                .contains("standing by")
        },
    )
    .await;

    for i in 0..5 {
        create_pod(
            &client,
            ns.name(),
            pod(&format!("p{i}"), &node.name, json!({})),
        )
        .await;
    }
    for i in 0..5 {
        wait_running(&client, ns.name(), &format!("p{i}"), RUNNING_WITHIN).await;
    }
    let before: Vec<String> = node
        .all_tasks()
        .await
        .iter()
        .filter_map(|t| t.task_arn().map(str::to_string))
        .collect();
    assert_eq!(before.len(), 5, "one task per pod");

    node.kill();
    let second = vk_test_support::wait_for(
        "the standby to lead",
        std::time::Duration::from_secs(30),
        || async { Ok(holder().await.filter(|h| *h != first)) },
    )
    .await
    .unwrap();
    eprintln!("the lease went from {first} to {second}");
    create_pod(&client, ns.name(), pod("after", &node.name, json!({}))).await;
    wait_running(&client, ns.name(), "after", RUNNING_WITHIN).await;
    // A few polls more: the five tasks adopted as they were, one new task.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = node.all_tasks().await;
    let arns: Vec<&str> = after.iter().filter_map(|t| t.task_arn()).collect();
    assert_eq!(after.len(), 6, "no task run twice: {arns:?}");
    for arn in &before {
        let task = after
            .iter()
            .find(|t| t.task_arn() == Some(arn.as_str()))
            .unwrap_or_else(|| panic!("task {arn} is gone"));
        assert_eq!(task.desired_status(), Some("RUNNING"), "{arn} still runs");
    }
    for i in 0..5 {
        let p = Api::<Pod>::namespaced(client.clone(), ns.name())
            .get(&format!("p{i}"))
            .await
            .unwrap();
        assert_eq!(vk_test_support::phase(&p), "Running");
    }
    vk_test_support::delete_node(&client, &node.name).await;
}
