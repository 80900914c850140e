//! The edge provider against real containers: rootful podman (the test rig's
//! shared service), the real local control plane and real kubectl. Each test
//! runs its own `vk-edge` node and namespace.

use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use vk_test_support::{BUSYBOX_HTTPD_IMAGE, BUSYBOX_IMAGE, Registry};

async fn exec_out(cluster: &TestCluster, ns: &str, pod: &str, c: &str, path: &str) -> String {
    kubectl(
        cluster,
        &["-n", ns, "exec", pod, "-c", c, "--", "cat", path],
    )
    .await
    .1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_runs_a_real_process_with_logs_and_exec() {
    let (cluster, ns, node) = rig!("edge-proc");
    let client = cluster.client();
    create_pod(
        &client,
        ns.name(),
        pod_with(
            "proc",
            &node.name,
            json!([sh("main", "echo started on $(hostname); sleep 3600")]),
            json!({}),
        ),
    )
    .await;
    let p = wait_running(&client, ns.name(), "proc", RUN).await;
    let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert!(
        ip.starts_with("10.88."),
        "pod IP {ip} is not on podman's bridge"
    );
    let n = ns.name();
    wait_until(
        "kubectl logs shows the output",
        Duration::from_secs(20),
        || async { kubectl(&cluster, &["-n", n, "logs", "proc"]).await.1 == "started on proc\n" },
    )
    .await;
    let host = kubectl_ok(&cluster, &["-n", n, "exec", "proc", "--", "hostname"]).await;
    assert_eq!(host.trim(), "proc");
    let (code, _, _) = kubectl(
        &cluster,
        &["-n", n, "exec", "proc", "--", "sh", "-c", "exit 4"],
    )
    .await;
    assert_eq!(code, 4, "kubectl exec did not carry the exit code");
    // stdin: kubectl exec -i with input on its stdin.
    let mut cmd = cluster.kubectl_command();
    cmd.args([
        "-n",
        n,
        "exec",
        "-i",
        "proc",
        "--",
        "sh",
        "-c",
        "tr a-z A-Z",
    ]);
    let out = run_with_stdin(cmd, b"hello stdin\n".to_vec()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_share_localhost_and_port_forward_carries_10_mb() {
    let (cluster, ns, node) = rig!("edge-net");
    let client = cluster.client();
    create_pod(
        &client,
        ns.name(),
        pod_with(
            "net",
            &node.name,
            json!([
                {"name": "web", "image": BUSYBOX_HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 8080}]},
                sh("client", "sleep 3600"),
            ]),
            json!({}),
        ),
    )
    .await;
    wait_running(&client, ns.name(), "net", RUN).await;
    let n = ns.name();
    // The client container reaches the web container over localhost.
    wait_until(
        "localhost:8080 answers from the other container",
        Duration::from_secs(20),
        || async {
            kubectl(
                &cluster,
                &[
                    "-n",
                    n,
                    "exec",
                    "net",
                    "-c",
                    "client",
                    "--",
                    "wget",
                    "-qO-",
                    "http://localhost:8080/",
                ],
            )
            .await
            .1 == "vk-test busybox\n"
        },
    )
    .await;
    let sum = kubectl_ok(
        &cluster,
        &[
            "-n",
            n,
            "exec",
            "net",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "head -c 10485760 /dev/urandom > /var/www/big.bin && md5sum /var/www/big.bin",
        ],
    )
    .await;
    let want = sum.split_whitespace().next().unwrap().to_string();
    let port = free_port().expect("free port");
    let mut pf = spawn_kubectl(
        &cluster,
        &["-n", n, "port-forward", "pod/net", &format!("{port}:8080")],
    );
    let url = format!("http://127.0.0.1:{port}/big.bin");
    let body = wait_for(
        "port-forward serves the file",
        Duration::from_secs(30),
        || async {
            let out = tokio::process::Command::new("curl")
                .args(["-sf", "--max-time", "30", &url])
                .output()
                .await?;
            Ok((out.status.success() && !out.stdout.is_empty()).then_some(out.stdout))
        },
    )
    .await;
    let _ = pf.kill().await;
    let body = body.expect("port-forward never served the file");
    assert_eq!(body.len(), 10 * 1024 * 1024);
    let got = run_with_stdin(tokio::process::Command::new("md5sum"), body).await;
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .split_whitespace()
            .next(),
        Some(want.as_str())
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policies_and_exit_codes() {
    let (cluster, ns, node) = rig!("edge-restart");
    let client = cluster.client();
    let n = ns.name();
    create_pod(
        &client,
        n,
        pod_with(
            "never",
            &node.name,
            json!([sh("main", "exit 2")]),
            json!({"restartPolicy": "Never"}),
        ),
    )
    .await;
    create_pod(
        &client,
        n,
        pod_with(
            "onfail",
            &node.name,
            json!([sh("main", "sleep 1; exit 3")]),
            json!({"restartPolicy": "OnFailure"}),
        ),
    )
    .await;
    let failed = wait_pod(&client, n, "never", RUN, "Failed", |p| phase(p) == "Failed").await;
    let t = container(&failed, "main")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("terminated state");
    assert_eq!(t.exit_code, 2);
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert_eq!(container(&failed, "main").unwrap().restart_count, 0);

    let p = wait_pod(
        &client,
        n,
        "onfail",
        Duration::from_secs(90),
        "restartCount >= 2",
        |p| container(p, "main").is_some_and(|c| c.restart_count >= 2),
    )
    .await;
    assert_eq!(phase(&p), "Running");
    let looping = wait_pod(&client, n, "onfail", RUN, "CrashLoopBackOff", |p| {
        waiting_reason(p, "main").as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let last = container(&looping, "main")
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);

    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_containers_run_in_order_before_the_app() {
    let (cluster, ns, node) = rig!("edge-init");
    let client = cluster.client();
    let n = ns.name();
    let mount = json!([{"name": "work", "mountPath": "/work"}]);
    let mut first = sh("first", "sleep 1; echo first >> /work/order");
    first["volumeMounts"] = mount.clone();
    let mut second = sh("second", "echo second >> /work/order");
    second["volumeMounts"] = mount.clone();
    let mut main = sh(
        "main",
        "echo main >> /work/order; cat /work/order; sleep 3600",
    );
    main["volumeMounts"] = mount;
    create_pod(
        &client,
        n,
        pod_with(
            "init",
            &node.name,
            json!([main]),
            json!({"initContainers": [first, second], "volumes": [{"name": "work", "emptyDir": {}}]}),
        ),
    )
    .await;
    let p = wait_running(&client, n, "init", RUN).await;
    let inits = p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert_eq!(
        inits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    for s in &inits {
        let t = s
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("init terminated");
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (0, Some("Completed")),
            "{}",
            s.name
        );
    }
    wait_until(
        "the app saw the init containers' output in order",
        Duration::from_secs(20),
        || async {
            kubectl(&cluster, &["-n", n, "logs", "init"]).await.1 == "first\nsecond\nmain\n"
        },
    )
    .await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_restart_and_gate_readiness() {
    let (cluster, ns, node) = rig!("edge-probe");
    let client = cluster.client();
    let n = ns.name();
    let mut live = sh("main", "sleep 3600");
    live["livenessProbe"] = json!({"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1, "failureThreshold": 2});
    create_pod(
        &client,
        n,
        pod_with("live", &node.name, json!([live]), json!({})),
    )
    .await;
    let mut ready = {
        let mut c = json!({"name": "web", "image": BUSYBOX_HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
                           "ports": [{"name": "http", "containerPort": 8080}]});
        c["readinessProbe"] =
            json!({"httpGet": {"path": "/ready.txt", "port": "http"}, "periodSeconds": 1});
        c
    };
    ready["livenessProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 2});
    create_pod(
        &client,
        n,
        pod_with("ready", &node.name, json!([ready]), json!({})),
    )
    .await;

    wait_pod(&client, n, "live", RUN, "a liveness restart", |p| {
        container(p, "main").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    let p = wait_running(&client, n, "ready", RUN).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let p2 = get_pod(&cluster, n, "ready").await;
    assert!(
        !is_ready(&p2),
        "Ready without a passing readiness probe: {:?}",
        p.status
    );
    assert_eq!(
        container(&p2, "web").unwrap().restart_count,
        0,
        "the tcp liveness probe must pass"
    );
    kubectl_ok(
        &cluster,
        &[
            "-n",
            n,
            "exec",
            "ready",
            "--",
            "sh",
            "-c",
            "echo ok > /var/www/ready.txt",
        ],
    )
    .await;
    wait_pod(
        &client,
        n,
        "ready",
        Duration::from_secs(30),
        "Ready",
        is_ready,
    )
    .await;
    let evs = events(&client, n).await;
    assert!(
        evs.iter()
            .any(|(r, name)| r == "Unhealthy" && name == "live"),
        "no Unhealthy event: {evs:?}"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_from_a_private_registry_need_the_pull_secret() {
    let (cluster, ns, node) = rig!("edge-pull");
    let registry = match tokio::task::spawn_blocking(Registry::get).await.unwrap() {
        Ok(r) => r,
        Err(e) => panic!("the local registry did not start: {e:#}"),
    };
    let image = tokio::task::spawn_blocking({
        let r = registry.clone();
        let name = unique_name("private");
        move || r.push_private_copy(&name)
    })
    .await
    .unwrap()
    .expect("push a private copy");
    let client = cluster.client();
    let n = ns.name();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &registry.pull_secret("regcred"))
        .await
        .unwrap();
    let c = json!({"name": "main", "image": image, "imagePullPolicy": "Always", "command": ["sleep", "3600"]});
    create_pod(
        &client,
        n,
        pod_with("denied", &node.name, json!([c.clone()]), json!({})),
    )
    .await;
    create_pod(
        &client,
        n,
        pod_with(
            "allowed",
            &node.name,
            json!([c]),
            json!({"imagePullSecrets": [{"name": "regcred"}]}),
        ),
    )
    .await;
    wait_running(&client, n, "allowed", RUN).await;
    let denied = wait_pod(
        &client,
        n,
        "denied",
        RUN,
        "ErrImagePull or ImagePullBackOff",
        |p| {
            matches!(
                waiting_reason(p, "main").as_deref(),
                Some("ErrImagePull") | Some("ImagePullBackOff")
            )
        },
    )
    .await;
    assert_eq!(phase(&denied), "Pending");
    wait_pod(&client, n, "denied", RUN, "ImagePullBackOff", |p| {
        waiting_reason(p, "main").as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let evs = events(&client, n).await;
    assert!(
        evs.iter()
            .any(|(r, name)| r == "Failed" && name == "denied"),
        "no Failed event: {evs:?}"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_configmap_updates_emptydir_sharing_and_service_account_token() {
    let (cluster, ns, node) = rig!("edge-vol");
    let client = cluster.client();
    let n = ns.name();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), n);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let mut writer = sh("writer", "echo shared > /scratch/note; sleep 3600");
    writer["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}, {"name": "cfg", "mountPath": "/etc/cfg"}]);
    let mut reader = sh("reader", "sleep 3600");
    reader["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    create_pod(
        &client,
        n,
        pod_with(
            "vol",
            &node.name,
            json!([writer, reader]),
            json!({"volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]}),
        ),
    )
    .await;
    wait_running(&client, n, "vol", RUN).await;
    let cat = |c: &'static str, path: &'static str| exec_out(&cluster, n, "vol", c, path);
    wait_until("the ConfigMap file", Duration::from_secs(20), || async {
        cat("writer", "/etc/cfg/greeting").await == "hello"
    })
    .await;
    wait_until(
        "the emptyDir file from the other container",
        Duration::from_secs(20),
        || async { cat("reader", "/scratch/note").await == "shared\n" },
    )
    .await;
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"greeting": "updated"}})),
    )
    .await
    .unwrap();
    wait_until(
        "the ConfigMap file to follow the update",
        Duration::from_secs(90),
        || async { cat("writer", "/etc/cfg/greeting").await == "updated" },
    )
    .await;
    // The projected service-account token inside the container is one the
    // apiserver accepts, for this pod's service account.
    let token = cat(
        "writer",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    )
    .await;
    assert!(token.split('.').count() == 3, "not a JWT: {token:?}");
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let server = kc.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("token-only");
    std::fs::write(
        &bare,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: {server}, certificate-authority: {}}}}}]\n\
             users: [{{name: u, user: {{token: {}}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
            cluster.ca_cert_path().display(),
            token.trim()
        ),
    )
    .unwrap();
    let bare = bare.to_string_lossy().to_string();
    let (code, who, err) = kubectl(
        &cluster,
        &[
            "--kubeconfig",
            &bare,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await;
    assert_eq!(code, 0, "the token was refused: {err}");
    assert_eq!(who, format!("system:serviceaccount:{n}:default"));
    drop(node);
}

/// Env from `status.podIP` holds the pod's IP, as on a kubelet (the
/// sandbox first): the infra container's, also inside a `$(VAR)` expansion
/// and in the command.
#[tokio::test(flavor = "multi_thread")]
async fn env_from_status_pod_ip_is_the_pods_ip() {
    let (cluster, ns, node) = rig!("edge-podip");
    let client = cluster.client();
    let n = ns.name();
    let mut app = sh("app", "echo \"$(ADDR) $POD_IP\" > /tmp/seen; sleep 3600");
    app["env"] = json!([
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "ADDR", "value": "$(POD_IP):8080"},
    ]);
    create_pod(
        &client,
        n,
        pod_with("ip", &node.name, json!([app]), json!({})),
    )
    .await;
    let p = wait_running(&client, n, "ip", RUN).await;
    let ip = p.status.and_then(|s| s.pod_ip).expect("the pod's IP");
    assert!(!ip.is_empty());
    wait_until(
        "the container's record of its env",
        Duration::from_secs(20),
        || async {
            !exec_out(&cluster, n, "ip", "app", "/tmp/seen")
                .await
                .is_empty()
        },
    )
    .await;
    let seen = exec_out(&cluster, n, "ip", "app", "/tmp/seen").await;
    assert_eq!(seen.trim(), format!("{ip}:8080 {ip}"));

    // An ephemeral container later: the app container, whose env holds the
    // IP, is not taken for changed and restarted.
    let id = |p: &Pod| {
        container(p, "app")
            .and_then(|c| c.container_id.clone())
            .unwrap_or_default()
    };
    let before = id(&get_pod(&cluster, n, "ip").await);
    let image = format!("--image={BUSYBOX_IMAGE}");
    kubectl_ok(
        &cluster,
        &["debug", "-n", n, "ip", &image, "-c", "dbg", "--", "true"],
    )
    .await;
    wait_until(
        "the debug container's end",
        Duration::from_secs(30),
        || async {
            get_pod(&cluster, n, "ip")
                .await
                .status
                .and_then(|s| s.ephemeral_container_statuses)
                .is_some_and(|s| {
                    s.iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
                })
        },
    )
    .await;
    let after = get_pod(&cluster, n, "ip").await;
    assert_eq!(id(&after), before, "the app container was not recreated");
    assert_eq!(container(&after, "app").map(|c| c.restart_count), Some(0));
    drop(node);
}

/// The kubelet's `fsGroup`: a non-root container reads a Secret mounted with
/// `defaultMode: 0400` and writes to an emptyDir, and what it writes there
/// belongs to the group (as the charts' own pods need: they run as 65532).
#[tokio::test(flavor = "multi_thread")]
async fn fs_group_lets_a_non_root_container_read_its_secret_and_write_its_empty_dir() {
    let (cluster, ns, node) = rig!("edge-fsgroup");
    let client = cluster.client();
    let n = ns.name();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), n);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "key"}, "stringData": {"key": "s3cret"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut app = sh(
        "app",
        "cat /secret/key > /scratch/copy; id -G > /scratch/groups; sleep 3600",
    );
    app["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}, {"name": "key", "mountPath": "/secret", "readOnly": true}]);
    app["securityContext"] =
        json!({"runAsUser": 1000, "runAsGroup": 3000, "allowPrivilegeEscalation": false});
    create_pod(
        &client,
        n,
        pod_with(
            "fsg",
            &node.name,
            json!([app]),
            json!({
                "securityContext": {"fsGroup": 2000, "runAsNonRoot": true},
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "key", "secret": {"secretName": "key", "defaultMode": 0o400}},
                ],
            }),
        ),
    )
    .await;
    wait_running(&client, n, "fsg", RUN).await;
    wait_until(
        "the copy of the Secret",
        Duration::from_secs(20),
        || async { exec_out(&cluster, n, "fsg", "app", "/scratch/copy").await == "s3cret" },
    )
    .await;
    let groups = exec_out(&cluster, n, "fsg", "app", "/scratch/groups").await;
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert_eq!(groups.first(), Some(&"3000"), "{groups:?}");
    assert!(
        groups.contains(&"2000"),
        "fsGroup is a supplemental group: {groups:?}"
    );
    let (code, stat, err) = kubectl(
        &cluster,
        &[
            "-n",
            n,
            "exec",
            "fsg",
            "-c",
            "app",
            "--",
            "stat",
            "-L",
            "-c",
            "%n %a %u %g",
            "/secret/key",
            "/scratch",
            "/scratch/copy",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let stat: Vec<&str> = stat.lines().collect();
    assert_eq!(
        stat,
        vec![
            "/secret/key 440 0 2000",
            "/scratch 2777 0 2000",
            "/scratch/copy 644 1000 2000",
        ]
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_ends_with_a_reason_and_an_event_never_a_panic() {
    let (cluster, ns, node) = rig!("edge-bad");
    let client = cluster.client();
    let n = ns.name();
    let missing = json!({"name": "main", "image": "127.0.0.1:1/nope/missing:1", "imagePullPolicy": "IfNotPresent"});
    create_pod(
        &client,
        n,
        pod_with("noimage", &node.name, json!([missing]), json!({})),
    )
    .await;
    let mut badport = sh("main", "sleep 3600");
    badport["livenessProbe"] = json!({"httpGet": {"port": "nonexistent"}});
    create_pod(
        &client,
        n,
        pod_with("badport", &node.name, json!([badport]), json!({})),
    )
    .await;
    let mut hostpath = sh("main", "sleep 3600");
    hostpath["volumeMounts"] = json!([{"name": "etc", "mountPath": "/host-etc"}]);
    create_pod(
        &client,
        n,
        pod_with(
            "hostpath",
            &node.name,
            json!([hostpath]),
            json!({"volumes": [{"name": "etc", "hostPath": {"path": "/etc"}}]}),
        ),
    )
    .await;
    wait_pod(&client, n, "noimage", RUN, "ErrImagePull", |p| {
        matches!(
            waiting_reason(p, "main").as_deref(),
            Some("ErrImagePull") | Some("ImagePullBackOff")
        )
    })
    .await;
    for (name, words) in [
        ("badport", "not a named port"),
        ("hostpath", "not allowed on this node"),
    ] {
        let p = wait_pod(&client, n, name, RUN, "Failed", |p| phase(p) == "Failed").await;
        let msg = p
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        assert!(
            msg.contains(words),
            "{name}: message {msg:?} does not say {words:?}"
        );
        assert_eq!(
            p.status.as_ref().and_then(|s| s.reason.as_deref()),
            Some("ProviderFailed")
        );
    }
    let evs = events(&client, n).await;
    for (reason, name) in [
        ("Failed", "noimage"),
        ("ProviderCreateFailed", "badport"),
        ("ProviderCreateFailed", "hostpath"),
    ] {
        assert!(
            evs.iter().any(|(r, o)| r == reason && o == name),
            "no {reason} event for {name}: {evs:?}"
        );
    }
    let mut node = node;
    assert!(
        node.log_tail().find("panicked").is_none(),
        "vk-edge panicked:\n{}",
        node.log_tail()
    );
    node.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_policy_never_with_a_missing_image() {
    let (cluster, ns, node) = rig!("edge-never");
    let client = cluster.client();
    let n = ns.name();
    let c = json!({"name": "main", "image": "localhost/vk-test/not-here:1", "imagePullPolicy": "Never"});
    create_pod(
        &client,
        n,
        pod_with("never", &node.name, json!([c]), json!({})),
    )
    .await;
    wait_pod(&client, n, "never", RUN, "ErrImageNeverPull", |p| {
        waiting_reason(p, "main").as_deref() == Some("ErrImageNeverPull")
    })
    .await;
    let _ = BUSYBOX_IMAGE;
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_init_container_runs_beside_the_app() {
    let (cluster, ns, node) = rig!("edge-sidecar");
    let client = cluster.client();
    let n = ns.name();
    let sidecar = json!({"name": "web", "image": BUSYBOX_HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
                         "restartPolicy": "Always"});
    create_pod(
        &client,
        n,
        pod_with(
            "sidecar",
            &node.name,
            json!([sh(
                "main",
                "until wget -qO- http://localhost:8080/; do sleep 1; done; sleep 3600"
            )]),
            json!({"initContainers": [sidecar]}),
        ),
    )
    .await;
    wait_running(&client, n, "sidecar", RUN).await;
    wait_until(
        "the app reached the sidecar over localhost",
        Duration::from_secs(30),
        || async {
            kubectl(&cluster, &["-n", n, "logs", "sidecar", "-c", "main"])
                .await
                .1
                == "vk-test busybox\n"
        },
    )
    .await;
    let p = get_pod(&cluster, n, "sidecar").await;
    let web = &p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(
        web.state.as_ref().unwrap().running.is_some(),
        "the sidecar is not running: {web:?}"
    );
    drop(node);
}
