#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `vk-aci` end to end: the real local control plane, a `vk-aci` process,
//! and the contract-checked fake ARM server (`vk_test_support::FakeArm`)
//! standing in for Azure. Every test asserts that no request or response
//! broke the contract.

#[path = "aci/chart.rs"]
mod chart;
#[path = "aci/fake.rs"]
mod fake;
#[path = "aci/fleet.rs"]
mod fleet;
#[path = "aci/image.rs"]
mod image;
#[path = "aci/rig.rs"]
mod rig;
#[path = "aci/translation.rs"]
mod translation;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use vk_test_support::{approve_serving_csr, events, kubectl, spawn_kubectl, wait_for, wait_pod};

use self::rig::{CLUSTER_DNS, RUNNING_WITHIN, Rig, group_of};

#[tokio::test]
async fn a_pod_runs_as_a_container_group_with_its_ip_and_is_deleted_with_it() {
    let rig = Rig::start("aci-run").await;
    let created = rig
        .pod(
            "web",
            json!({"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "nginx:1.27",
                "command": ["sh", "-c", "echo a b"],
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "livenessProbe": {"tcpSocket": {"port": 80}},
                "workingDir": "/srv",
                "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1"}}
            }]}),
        )
        .await;
    let group = group_of(&created);
    let pod = rig.wait_running("web").await;
    let ip = rig.arm.group_ip(&group).expect("the group exists");
    assert_eq!(
        pod.status.as_ref().unwrap().pod_ip.as_deref(),
        Some(ip.as_str())
    );

    let body = rig.arm.group_request(&group).unwrap();
    assert_eq!(body["tags"]["io.vk-rs.node"], json!(rig.node.name));
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
    // The security context maps (and passed the contract's check).
    assert_eq!(
        props["securityContext"],
        json!({"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(props["ports"], json!([{"port": 80, "protocol": "TCP"}]));
    // ClusterFirst: the cluster DNS, and the namespace's search domains.
    let ns = rig.ns();
    assert_eq!(
        body["properties"]["dnsConfig"],
        json!({"nameServers": [CLUSTER_DNS], "options": "ndots:5",
            "searchDomains": format!("{ns}.svc.cluster.local svc.cluster.local cluster.local")})
    );

    // What ACI cannot do is said in an event, not dropped silently.
    rig.wait_event("ProbeNotSupported", "web").await;
    rig.wait_event("WorkingDirNotSupported", "web").await;

    // ACI's container events become the pod's, each once however many
    // polls see them.
    rig.wait_event("Started", "web").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = events(&rig.client, rig.ns()).await;
    for reason in ["Pulling", "Pulled", "Started"] {
        let n = events
            .iter()
            .filter(|(r, pod)| r == reason && pod == "web")
            .count();
        assert_eq!(n, 1, "{reason} recorded once: {events:?}");
    }

    let requests = rig.arm.requests();
    assert_eq!(rig.puts(), 1, "one PUT per pod");
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

    Api::<Pod>::namespaced(rig.client.clone(), rig.ns())
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    rig.wait_group_gone(&group, Duration::from_secs(30)).await;
    assert!(
        rig.arm
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.status == 202)
    );
    rig.finish().await;
}

#[tokio::test]
async fn env_from_a_secret_goes_as_secure_value_and_never_comes_back() {
    let rig = Rig::start("aci-secret").await;
    let secret_value = "tops3cret-value-42";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"password": secret_value}
    }))
    .unwrap();
    Api::<Secret>::namespaced(rig.client.clone(), rig.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let created = rig
        .pod(
            "app",
            json!({"containers": [{
                "name": "main", "image": "busybox", "command": ["sleep", "3600"],
                "env": [
                    {"name": "PLAIN", "value": "visible"},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                ],
                "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "FROM_"}]
            }]}),
        )
        .await;
    rig.wait_running("app").await;
    let body = rig.arm.group_request(&group_of(&created)).unwrap();
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
    for r in rig.arm.requests() {
        if let Some(response) = &r.response {
            assert!(
                !response.to_string().contains(secret_value),
                "{} {} returned the secret",
                r.method,
                r.path
            );
        }
    }
    rig.finish().await;
}

#[tokio::test]
async fn a_container_exiting_3_fails_the_pod_with_exit_code_3() {
    let rig = Rig::start("aci-exit").await;
    let created = rig
        .pod(
            "job",
            json!({"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"]
            }]}),
        )
        .await;
    rig.wait_running("job").await;
    rig.arm.set_exit(&group_of(&created), "main", 3).unwrap();
    let pod = rig.wait_failed("job").await;
    let status = &pod.status.unwrap().container_statuses.unwrap()[0];
    let terminated = status.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    rig.finish().await;
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after() {
    let rig = Rig::start("aci-429").await;
    wait_for(
        "the node's first ARM call",
        Duration::from_secs(20),
        || async {
            if rig
                .arm
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
    rig.arm.throttle(1, 429, 2);
    rig.sleeper("app").await;
    rig.wait_running("app").await;
    let requests = rig.arm.requests();
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
    rig.finish().await;
}

#[tokio::test]
async fn a_pod_aci_cannot_run_fails_with_provider_failed() {
    let rig = Rig::start("aci-invalid").await;
    // A hostPath volume and the host's network: ACI has no host to give.
    for (name, spec, want) in [
        (
            "host",
            json!({"containers": [{"name": "main", "image": "busybox",
                "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
                "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}),
            "hostPath",
        ),
        (
            "hostnet",
            json!({"hostNetwork": true, "containers": [{"name": "main", "image": "busybox",
                "command": ["sleep", "1"]}]}),
            "hostNetwork",
        ),
    ] {
        rig.pod(name, spec).await;
        let status = rig.wait_failed(name).await.status.unwrap();
        assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
        assert!(
            status.message.as_deref().unwrap_or("").contains(want),
            "{name}: {:?}",
            status.message
        );
    }
    assert_eq!(rig.puts(), 0, "nothing was created");
    rig.finish().await;
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
    let rig = Rig::start("aci-restart").await;
    let created = rig.sleeper("svc").await;
    rig.wait_running("svc").await;
    rig.arm.set_exit(&group_of(&created), "main", 3).unwrap();
    let pod = wait_pod(
        &rig.client,
        rig.ns(),
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
    rig.finish().await;
}

#[tokio::test]
async fn a_wrong_client_secret_makes_the_node_not_ready_with_the_token_error() {
    let rig = Rig::start_with_secret("aci-auth", "wrong").await;
    let nodes: Api<Node> = Api::all(rig.client.clone());
    let message = wait_for(
        "the node NotReady with the token error",
        Duration::from_secs(40),
        || async {
            let n = nodes.get_opt(&rig.node.name).await?;
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
        rig.arm
            .requests()
            .iter()
            .all(|r| !r.path.contains("/containerGroups")),
        "no ARM call without a token"
    );
    rig.finish().await;
}

#[tokio::test]
async fn a_group_arm_cannot_provision_fails_the_pod_with_its_reason() {
    let rig = Rig::start("aci-pull").await;
    rig.pod(
        "bad",
        json!({"containers": [{"name": "main", "image": "example.com/unpullable:1"}]}),
    )
    .await;
    let status = rig.wait_failed("bad").await.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("Failed to pull image"), "{message}");
    assert_eq!(rig.puts(), 1, "a failed provisioning is not retried");
    rig.finish().await;
}

#[tokio::test]
async fn kubectl_logs_tail_timestamps_and_follow() {
    use tokio::io::AsyncBufReadExt;

    let rig = Rig::start("aci-logs").await;
    let created = rig.sleeper("logger").await;
    rig.wait_running("logger").await;
    approve_serving_csr(&rig.cluster, &rig.node.name).await;
    let (cluster, ns) = (&rig.cluster, rig.ns());
    let (code, all, err) = kubectl(cluster, &["logs", "-n", ns, "logger"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(all, "main line 1\nmain line 2\nmain line 3\n");
    let (_, tail, _) = kubectl(cluster, &["logs", "-n", ns, "logger", "--tail=1"]).await;
    assert_eq!(tail, "main line 3\n");
    let (_, stamped, _) = kubectl(
        cluster,
        &["logs", "-n", ns, "logger", "--tail=1", "--timestamps"],
    )
    .await;
    let (time, text) = stamped.trim_end().split_once(' ').unwrap();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{stamped}");
    assert_eq!(text, "main line 3");

    let mut follow = spawn_kubectl(cluster, &["logs", "-n", ns, "logger", "-f"]);
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
    rig.arm
        .append_log(&group_of(&created), "main", "a new line")
        .unwrap();
    assert_eq!(next().await.as_deref(), Some("a new line"));
    // Two more polls of the log: nothing is repeated.
    let again = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    assert!(again.is_err(), "no line repeated: {again:?}");
    let _ = follow.kill().await;
    rig.finish().await;
}

#[tokio::test]
async fn kubectl_exec_keeps_the_argv_carries_stdin_and_attach_shows_output() {
    use tokio::io::AsyncWriteExt;

    let rig = Rig::start("aci-exec").await;
    rig.sleeper("box").await;
    rig.wait_running("box").await;
    approve_serving_csr(&rig.cluster, &rig.node.name).await;
    let (cluster, ns) = (&rig.cluster, rig.ns());
    let exec = async |argv: &[&str]| {
        let mut args = vec!["exec", "-n", ns, "box", "--"];
        args.extend(argv);
        let (code, out, err) = kubectl(cluster, &args).await;
        assert_eq!(code, 0, "kubectl {args:?}: {err}");
        out
    };
    // `ls /bin` lists /bin: two arguments, not one.
    assert_eq!(exec(&["ls", "/bin"]).await, "argv\ncat\necho\nls\nsh\n");
    // `sh -c 'echo a b'` stays three arguments (joined, `echo a b` would
    // be two more words and `sh -c echo` would print an empty line).
    assert_eq!(exec(&["sh", "-c", "echo a b"]).await, "a b\n");
    // Quotes, blanks, `$` and empty arguments arrive as they were.
    assert_eq!(
        exec(&["argv", "it's", "$HOME *", ""]).await,
        "[it's]\n[$HOME *]\n[]\n"
    );
    let sessions = rig.arm.exec_sessions();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert_eq!(sessions[0].command.as_deref(), Some("ls /bin"));
    assert_eq!(sessions[0].argv, ["ls", "/bin"]);
    assert_eq!(sessions[1].argv, ["sh", "-c", "echo a b"]);
    assert!(sessions.iter().all(|s| s.connected && !s.attach));
    // No TTY: the default size.
    assert_eq!(sessions[0].terminal_size, Some((24, 80)));

    // stdin: `cat` echoes it and ends when the client's input ends.
    let mut child = spawn_kubectl(cluster, &["exec", "-i", "-n", ns, "box", "--", "cat"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl exec -i ends with its input")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\n");

    // attach: the container's output, password in the Authorization header.
    let (code, out, err) = kubectl(cluster, &["attach", "-n", ns, "box", "-c", "main"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "main line 1\nmain line 2\nmain line 3\n");
    let sessions = rig.arm.exec_sessions();
    assert!(sessions[4].attach && sessions[4].connected, "{sessions:?}");
    rig.finish().await;
}

/// `kubectl exec -it` needs a terminal: `script` gives it one (a pty).
#[tokio::test]
async fn kubectl_exec_it_runs_on_a_terminal_sized_by_the_first_resize() {
    let rig = Rig::start("aci-tty").await;
    rig.sleeper("box").await;
    rig.wait_running("box").await;
    approve_serving_csr(&rig.cluster, &rig.node.name).await;
    let kubectl = rig.cluster.kubectl_command();
    let kubectl = kubectl.as_std();
    let mut line: Vec<String> = std::iter::once(kubectl.get_program())
        .chain(kubectl.get_args())
        .map(|a| vk_aci::exec::shell_quote(&a.to_string_lossy()))
        .collect();
    line.extend(
        ["exec", "-it", "-n", rig.ns(), "box", "--", "sh"]
            .iter()
            .map(|a| a.to_string()),
    );
    let script = format!("stty rows 40 cols 100; {}", line.join(" "));
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &script, "/dev/null"]);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        vk_test_support::run_with_stdin(cmd, b"echo on a tty\nexit\n".to_vec()),
    )
    .await
    .expect("kubectl exec -it ends with exit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The fake's shell prompted, ran the line and ended on `exit`.
    assert!(stdout.contains("$ on a tty"), "{stdout:?}");
    let sessions = rig.arm.exec_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].argv, ["sh"]);
    // The terminal's size, from kubectl's first resize.
    assert_eq!(sessions[0].terminal_size, Some((40, 100)));
    rig.finish().await;
}

/// The contract has no usage endpoint: stats answer 501, saying why.
#[tokio::test]
async fn stats_answer_501_saying_aci_reports_no_usage() {
    let rig = Rig::start("aci-stats").await;
    approve_serving_csr(&rig.cluster, &rig.node.name).await;
    let port = vk_test_support::kubelet_port(&rig.cluster, &rig.node.name).await;
    for path in ["/stats/summary", "/metrics/resource"] {
        let (code, body) = vk_test_support::kubelet_get(&rig.cluster, port, path).await;
        assert_eq!(code, "501", "{path}: {body}");
        assert!(
            body.contains("reports no CPU or memory usage") && body.contains("Azure Monitor"),
            "{path}: {body}"
        );
    }
    rig.finish().await;
}

/// Two `vk-aci` replicas of one node with `--leader-elect`: the leader is
/// SIGKILLed with pods running; the standby takes the node over, adopts
/// every container group without a PUT, and serves a new pod.
#[tokio::test]
async fn a_standby_vk_aci_takes_over_without_creating_a_group_twice() {
    let flags = |ns: &str| -> Vec<String> {
        ["--leader-elect", "--leader-elect-namespace", ns]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut rig = rig::Rig::start_full(
        "aci-standby",
        vk_test_support::FakeArmOptions::default(),
        "s3cret",
        flags,
    )
    .await;
    vk_test_support::wait_node_ready(&rig.client, &rig.node.name, Duration::from_secs(30)).await;
    let lease = format!("vk-rs-{}", rig.node.name);
    let (client, ns) = (rig.client.clone(), rig.ns().to_string());
    let holder = || vk_test_support::leader::holder(&client, &ns, &lease);
    let first = wait_for("a leader", Duration::from_secs(20), || async {
        Ok(holder().await)
    })
    .await
    .unwrap();
    let standby_flags = flags(rig.ns());
    let standby_flags: Vec<&str> = standby_flags.iter().map(String::as_str).collect();
    let standby = rig::AciNode::start_with_flags(
        &rig.cluster,
        &rig.arm,
        &rig.node.name,
        "s3cret",
        &standby_flags,
    );
    vk_test_support::wait_until(
        "the replica standing by",
        Duration::from_secs(30),
        || async { standby.process.log_tail(200).contains("standing by") },
    )
    .await;

    for i in 0..3 {
        rig.sleeper(&format!("p{i}")).await;
    }
    for i in 0..3 {
        rig.wait_running(&format!("p{i}")).await;
    }
    let puts = rig.puts();
    assert_eq!(puts, 3, "one PUT per pod");

    rig.node.process.kill();
    let second =
        vk_test_support::wait_for("the standby to lead", Duration::from_secs(30), || async {
            Ok(holder().await.filter(|h| *h != first))
        })
        .await
        .unwrap();
    eprintln!("the lease went from {first} to {second}");
    rig.sleeper("after").await;
    rig.wait_running("after").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.puts(), 4, "no group created twice");
    for i in 0..3 {
        let p = rig.wait_running(&format!("p{i}")).await;
        assert!(rig.arm.group_names().contains(&rig::group_of(&p)));
    }
    drop(standby);
    rig.finish().await;
}
