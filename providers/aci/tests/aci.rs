#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `vk-aci` end to end: the real local control plane, a `vk-aci` process,
//! and the contract-checked fake ARM server (`vk_test_support::FakeArm`)
//! standing in for Azure. Every test asserts that no request or response
//! broke the contract.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use vk_aci::group::group_name;
use vk_test_support::{
    FakeArm, FakeArmOptions, KubeletProcess, TestCluster, approve_serving_csr,
    cluster_and_namespace, create_pod, delete_node, events, free_port, kubectl, spawn_kubectl,
    unique_name, wait_for, wait_pod, wait_running,
};

/// A pod on the fake runs within: a create (two operation polls), one
/// second Pending, and a status poll every second.
const RUNNING_WITHIN: Duration = Duration::from_secs(45);

/// A `vk-aci` process for one node, talking to `arm`.
struct AciNode {
    name: String,
    process: KubeletProcess,
    _dir: tempfile::TempDir,
}

impl AciNode {
    fn start(cluster: &TestCluster, arm: &FakeArm, name: &str) -> AciNode {
        AciNode::start_with_secret(cluster, arm, name, "s3cret")
    }

    fn start_with_secret(
        cluster: &TestCluster,
        arm: &FakeArm,
        name: &str,
        client_secret: &str,
    ) -> AciNode {
        let dir = tempfile::tempdir().unwrap();
        let o = arm.options();
        let log: PathBuf = dir.path().join("vk-aci.log");
        let flags: Vec<OsString> = [
            "--kubeconfig",
            cluster.kubeconfig().to_str().unwrap(),
            "--nodename",
            name,
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port().unwrap()),
            "--kubelet-port",
            &free_port().unwrap().to_string(),
            "--node-ip",
            "127.0.0.1",
            "--log-level",
            "info,vk_core=debug,vk_aci=debug",
            "--subscription-id",
            &o.subscription,
            "--resource-group",
            &o.resource_group,
            "--region",
            "westeurope",
            "--tenant-id",
            &o.tenant,
            "--client-id",
            "vk-aci-test",
            "--client-secret",
            client_secret,
            "--arm-endpoint",
            &arm.endpoint(),
            "--authority-host",
            &arm.endpoint(),
            "--extra-ca-file",
            arm.ca_file().to_str().unwrap(),
            "--status-poll-seconds",
            "1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let process =
            KubeletProcess::start(env!("CARGO_BIN_EXE_vk-aci"), flags, &log).expect("spawn vk-aci");
        AciNode {
            name: name.to_string(),
            process,
            _dir: dir,
        }
    }
}

async fn fake_arm() -> FakeArm {
    FakeArm::start(FakeArmOptions {
        client_secret: Some("s3cret".into()),
        ..Default::default()
    })
    .await
    .expect("fake ARM")
}

fn group_of(pod: &Pod) -> String {
    let m = &pod.metadata;
    group_name(
        m.namespace.as_deref().unwrap(),
        m.name.as_deref().unwrap(),
        m.uid.as_deref().unwrap(),
    )
}

fn assert_contract_kept(arm: &FakeArm) {
    let violations = arm.violations();
    assert!(
        violations.is_empty(),
        "contract violations: {violations:#?}"
    );
}

#[tokio::test]
async fn a_pod_runs_as_a_container_group_with_its_ip_and_is_deleted_with_it() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-run").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let created = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "web"},
            "spec": {"nodeName": node.name, "restartPolicy": "Never", "containers": [{
                "name": "main", "image": "nginx:1.27",
                "command": ["sh", "-c", "echo a b"],
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"tcpSocket": {"port": 80}},
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1"}}
            }]}
        }),
    )
    .await;
    let group = group_of(&created);
    let pod = wait_running(&client, ns.name(), "web", RUNNING_WITHIN).await;
    let ip = arm.group_ip(&group).expect("the group exists");
    assert_eq!(
        pod.status.as_ref().unwrap().pod_ip.as_deref(),
        Some(ip.as_str())
    );

    let body = arm.group_request(&group).unwrap();
    assert_eq!(body["tags"]["io.vk-rs.node"], json!(node.name));
    assert_eq!(
        body["tags"]["io.vk-rs.pod-uid"],
        json!(created.metadata.uid.clone().unwrap())
    );
    let props = &body["properties"]["containers"][0]["properties"];
    assert_eq!(props["command"], json!(["sh", "-c", "echo a b"]));
    // Limit 1 core above a 0.25 request: the group is sized to hold it.
    assert_eq!(
        props["resources"]["requests"],
        json!({"cpu": 1.0, "memoryInGB": 0.6})
    );
    assert_eq!(props["resources"]["limits"], json!({"cpu": 1.0}));

    // ACI has no tcpSocket probes: said in an event, not dropped silently.
    wait_for(
        "a ProbeNotSupported event",
        Duration::from_secs(20),
        || async {
            let events = events(&client, ns.name()).await;
            if events
                .iter()
                .any(|(reason, pod)| reason == "ProbeNotSupported" && pod == "web")
            {
                Ok(Some(()))
            } else {
                anyhow::bail!("events: {events:?}")
            }
        },
    )
    .await
    .unwrap();

    // ACI's container events become the pod's, each once however many
    // polls see them.
    wait_for("the Started event", Duration::from_secs(20), || async {
        let events = events(&client, ns.name()).await;
        if events
            .iter()
            .any(|(reason, pod)| reason == "Started" && pod == "web")
        {
            Ok(Some(()))
        } else {
            anyhow::bail!("events: {events:?}")
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = events(&client, ns.name()).await;
    for reason in ["Pulling", "Pulled", "Started"] {
        let n = events
            .iter()
            .filter(|(r, pod)| r == reason && pod == "web")
            .count();
        assert_eq!(n, 1, "{reason} recorded once: {events:?}");
    }

    let requests = arm.requests();
    let puts = requests.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 1, "one PUT per pod");
    let per_pod_gets = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/containerGroups/{group}")))
        .count();
    assert!(
        per_pod_gets <= 2,
        "status comes from the list, not a GET per pod: {per_pod_gets} GETs"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/containerGroups"))
    );

    Api::<Pod>::namespaced(client.clone(), ns.name())
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the group is deleted", Duration::from_secs(30), || async {
        if arm.group_names().contains(&group) {
            anyhow::bail!("still there: {:?}", arm.group_names())
        }
        Ok(Some(()))
    })
    .await
    .unwrap();
    assert!(
        arm.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.status == 202)
    );
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn env_from_a_secret_goes_as_secure_value_and_never_comes_back() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-secret").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let secret_value = "tops3cret-value-42";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"password": secret_value}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let created = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "app"},
            "spec": {"nodeName": node.name, "containers": [{
                "name": "main", "image": "busybox", "command": ["sleep", "3600"],
                "env": [
                    {"name": "PLAIN", "value": "visible"},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                ],
                "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "FROM_"}]
            }]}
        }),
    )
    .await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;
    let body = arm.group_request(&group_of(&created)).unwrap();
    let env = body["properties"]["containers"][0]["properties"]["environmentVariables"]
        .as_array()
        .unwrap()
        .clone();
    let find = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap();
    assert_eq!(find("PLAIN"), json!({"name": "PLAIN", "value": "visible"}));
    for name in ["PASSWORD", "FROM_password"] {
        assert_eq!(
            find(name),
            json!({"name": name, "secureValue": secret_value}),
            "{name}"
        );
    }
    for r in arm.requests() {
        if let Some(response) = &r.response {
            assert!(
                !response.to_string().contains(secret_value),
                "{} {} returned the secret",
                r.method,
                r.path
            );
        }
    }
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_container_exiting_3_fails_the_pod_with_exit_code_3() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-exit").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let created = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "job"},
            "spec": {"nodeName": node.name, "restartPolicy": "Never", "containers": [{
                "name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"]
            }]}
        }),
    )
    .await;
    wait_running(&client, ns.name(), "job", RUNNING_WITHIN).await;
    arm.set_exit(&group_of(&created), "main", 3).unwrap();
    let pod = wait_pod(&client, ns.name(), "job", RUNNING_WITHIN, "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let status = &pod.status.unwrap().container_statuses.unwrap()[0];
    let terminated = status.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-429").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    wait_for(
        "the node's first ARM call",
        Duration::from_secs(20),
        || async {
            if arm
                .requests()
                .iter()
                .any(|r| r.path.contains("/resourceGroups/"))
            {
                Ok(Some(()))
            } else {
                anyhow::bail!("no ARM call yet")
            }
        },
    )
    .await
    .unwrap();
    arm.throttle(1, 429, 2);
    create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "app"},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;
    let requests = arm.requests();
    let (i, throttled) = requests
        .iter()
        .enumerate()
        .find(|(_, r)| r.status == 429)
        .expect("a throttled call");
    let retry = requests[i + 1..]
        .iter()
        .find(|r| {
            r.method == throttled.method && r.path == throttled.path && r.query == throttled.query
        })
        .expect("the throttled call is retried");
    let waited = retry.at - throttled.at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After: 2"
    );
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_pod_aci_cannot_run_fails_with_provider_failed() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-invalid").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "host"},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox",
                "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
                "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}
        }),
    )
    .await;
    let pod = wait_pod(&client, ns.name(), "host", RUNNING_WITHIN, "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    assert!(
        status.message.as_deref().unwrap_or("").contains("hostPath"),
        "{:?}",
        status.message
    );
    assert!(
        arm.requests().iter().all(|r| r.method != "PUT"),
        "nothing was created"
    );
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[test]
fn missing_settings_are_one_line_and_exit_2() {
    let cases: [(&[&str], &str); 3] = [
        (
            &[],
            "--subscription-id (or AZURE_SUBSCRIPTION_ID) is required",
        ),
        (
            &[
                "--subscription-id",
                "s",
                "--resource-group",
                "rg",
                "--region",
                "westeurope",
                "--arm-endpoint",
                "http://arm",
            ],
            "must be an https URL",
        ),
        (
            &[
                "--subscription-id",
                "s",
                "--resource-group",
                "rg",
                "--region",
                "westeurope",
                "--vnet-name",
                "v",
            ],
            "needs --subnet-name",
        ),
    ];
    for (args, want) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vk-aci"))
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("vk-aci: ") && stderr.contains(want),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn restart_always_counts_restarts_and_keeps_the_last_exit() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-restart").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let created = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "svc"},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    wait_running(&client, ns.name(), "svc", RUNNING_WITHIN).await;
    arm.set_exit(&group_of(&created), "main", 3).unwrap();
    let pod = wait_pod(
        &client,
        ns.name(),
        "svc",
        RUNNING_WITHIN,
        "restarted once",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count == 1)
        },
    )
    .await;
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let c = &status.container_statuses.unwrap()[0];
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 3);
    assert!(c.state.as_ref().unwrap().running.is_some());
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_restarted_vk_aci_adopts_its_groups_and_removes_orphans() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-adopt").await;
    let client = cluster.client();
    let mut node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let mut groups = Vec::new();
    for name in ["a", "b"] {
        let created = create_pod(
            &client,
            ns.name(),
            json!({
                "metadata": {"name": name},
                "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
            }),
        )
        .await;
        groups.push(group_of(&created));
    }
    for name in ["a", "b"] {
        wait_running(&client, ns.name(), name, RUNNING_WITHIN).await;
    }
    node.process.kill();
    // Force-deleted while the kubelet is away: its group is an orphan.
    Api::<Pod>::namespaced(client.clone(), ns.name())
        .delete(
            "b",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let puts_before = arm.requests().iter().filter(|r| r.method == "PUT").count();
    node.process.restart().unwrap();
    wait_for(
        "the orphan group is deleted",
        Duration::from_secs(40),
        || async {
            if arm.group_names().contains(&groups[1]) {
                anyhow::bail!("still there: {:?}", arm.group_names())
            }
            Ok(Some(()))
        },
    )
    .await
    .unwrap();
    wait_running(&client, ns.name(), "a", RUNNING_WITHIN).await;
    assert!(arm.group_names().contains(&groups[0]));
    let puts_after = arm.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts_after, puts_before, "no group recreated");
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_wrong_client_secret_makes_the_node_not_ready_with_the_token_error() {
    let arm = fake_arm().await;
    let (cluster, _ns) = cluster_and_namespace("aci-auth").await;
    let client = cluster.client();
    let node = AciNode::start_with_secret(&cluster, &arm, &unique_name("aci"), "wrong");
    let nodes: Api<Node> = Api::all(client.clone());
    let message = wait_for(
        "the node NotReady with the token error",
        Duration::from_secs(40),
        || async {
            let n = nodes.get_opt(&node.name).await?;
            let ready = n.and_then(|n| {
                n.status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Ready")
            });
            match ready {
                Some(c) if c.status == "False" => Ok(Some(c.message.unwrap_or_default())),
                other => anyhow::bail!("Ready: {other:?}"),
            }
        },
    )
    .await
    .unwrap();
    assert!(message.contains("AADSTS7000215"), "{message}");
    assert!(
        arm.requests()
            .iter()
            .all(|r| !r.path.contains("/containerGroups")),
        "no ARM call without a token"
    );
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn a_group_arm_cannot_provision_fails_the_pod_with_its_reason() {
    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-pull").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "bad"},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "example.com/unpullable:1"}]}
        }),
    )
    .await;
    let pod = wait_pod(&client, ns.name(), "bad", RUNNING_WITHIN, "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("Failed to pull image"), "{message}");
    let puts = arm.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 1, "a failed provisioning is not retried");
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn kubectl_logs_tail_timestamps_and_follow() {
    use tokio::io::AsyncBufReadExt;

    let arm = fake_arm().await;
    let (cluster, ns) = cluster_and_namespace("aci-logs").await;
    let client = cluster.client();
    let node = AciNode::start(&cluster, &arm, &unique_name("aci"));
    let created = create_pod(
        &client,
        ns.name(),
        json!({
            "metadata": {"name": "logger"},
            "spec": {"nodeName": node.name, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    wait_running(&client, ns.name(), "logger", RUNNING_WITHIN).await;
    approve_serving_csr(&cluster, &node.name).await;
    let ns = ns.name();
    let (code, all, err) = kubectl(&cluster, &["logs", "-n", ns, "logger"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(all, "main line 1\nmain line 2\nmain line 3\n");
    let (_, tail, _) = kubectl(&cluster, &["logs", "-n", ns, "logger", "--tail=1"]).await;
    assert_eq!(tail, "main line 3\n");
    let (_, stamped, _) = kubectl(
        &cluster,
        &["logs", "-n", ns, "logger", "--tail=1", "--timestamps"],
    )
    .await;
    let (time, text) = stamped.trim_end().split_once(' ').unwrap();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{stamped}");
    assert_eq!(text, "main line 3");

    let mut follow = spawn_kubectl(&cluster, &["logs", "-n", ns, "logger", "-f"]);
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .ok()
            .and_then(|l| l.ok().flatten())
    };
    for i in 1..=3 {
        assert_eq!(
            next().await.as_deref(),
            Some(format!("main line {i}").as_str())
        );
    }
    arm.append_log(&group_of(&created), "main", "a new line")
        .unwrap();
    assert_eq!(next().await.as_deref(), Some("a new line"));
    // Two more polls of the log: nothing is repeated.
    let again = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    assert!(again.is_err(), "no line repeated: {again:?}");
    let _ = follow.kill().await;
    assert_contract_kept(&arm);
    let name = node.name.clone();
    drop(node);
    delete_node(&client, &name).await;
}
