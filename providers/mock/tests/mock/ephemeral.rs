//! Ephemeral containers (`kubectl debug`) on the mock, with the real
//! kubectl through the real apiserver: the simulated container shows in
//! `ephemeralContainerStatuses`, has logs, exec and attach of its own, is
//! kept across a restart of the mock (state file), and a pod whose provider
//! refuses them makes `kubectl debug` fail at once with the refusal.

use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The status of ephemeral container `c` of pod `name`, once it has one.
async fn ephemeral_status(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    c: &str,
    within: Duration,
    done: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    wait_for(
        &format!("status of ephemeral container {c}"),
        within,
        || {
            let pods = pods.clone();
            let done = &done;
            async move {
                let p = pods.get(name).await?;
                Ok(p.status
                    .and_then(|s| s.ephemeral_container_statuses)
                    .into_iter()
                    .flatten()
                    .find(|s| s.name == c && done(s)))
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn kubectl_debug_runs_a_simulated_ephemeral_container_with_its_own_streams() {
    let (cluster, ns, mut node) = running_app("eph", &[]).await;
    let n = ns.name();

    // Not attached: kubectl only adds the container.
    let (code, out, err) = kubectl(
        &cluster,
        &[
            "debug",
            "-n",
            n,
            "app",
            "--image=busybox",
            "-c",
            "dbg",
            "--profile=general",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out} {err}");
    let st = ephemeral_status(&cluster, n, "app", "dbg", Duration::from_secs(20), |s| {
        s.state.as_ref().is_some_and(|s| s.running.is_some())
    })
    .await;
    assert_eq!(st.image, "busybox");
    assert!(!st.ready, "an ephemeral container is never ready");
    assert_eq!(st.restart_count, 0);
    assert_eq!(st.container_id.as_deref(), Some("mock://dbg"));
    let started = st
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone();
    assert!(started.is_some());

    // Its own logs, exec and attach.
    let logs = logs_via_apiserver(&cluster, n, "app", "dbg").await.unwrap();
    assert!(logs.starts_with("dbg: started (image busybox)\n"), "{logs}");
    let (code, out, err) = kubectl(
        &cluster,
        &["exec", "-n", n, "app", "-c", "dbg", "--", "hostname"],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "app\n"), "{err}");
    let mut child = spawn_kubectl(&cluster, &["attach", "-n", n, "app", "-c", "dbg"]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("attach output")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("dbg: tick "), "{line}");
    drop(child);

    // `kubectl debug -i`: kubectl waits for Running, then attaches; what it
    // sends reaches the container (the mock echoes it).
    let mut child = spawn_kubectl(
        &cluster,
        &[
            "debug",
            "-i",
            "-n",
            n,
            "app",
            "--image=busybox",
            "-c",
            "dbg2",
            "--profile=general",
            "--",
            "sh",
        ],
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let started_at = Instant::now();
    let echoed = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            stdin.write_all(b"hello-debug\n").await.unwrap();
            stdin.flush().await.unwrap();
            if let Ok(Ok(Some(l))) =
                tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await
                && l == "hello-debug"
            {
                return l;
            }
        }
    })
    .await
    .expect("no echo through kubectl debug -i");
    assert_eq!(echoed, "hello-debug");
    assert!(started_at.elapsed() < Duration::from_secs(40));
    drop(child);

    // Kept across a restart of the mock, and not started again.
    node.restart();
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
    // The restarted process asks for a serving certificate again.
    let _approver = CsrApprover::start(&cluster, &node.name, None);
    let exec_args = [
        "exec",
        "-n",
        n,
        "app",
        "-c",
        "dbg",
        "--",
        "echo",
        "still-here",
    ];
    let exec = || kubectl(&cluster, &exec_args);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut code, mut out, mut err) = exec().await;
    while code != 0 && err.contains("tls") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (code, out, err) = exec().await;
    }
    let after =
        ephemeral_status(&cluster, n, "app", "dbg", Duration::from_secs(20), |_| true).await;
    assert_eq!(
        after
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone()),
        started,
        "the ephemeral container was started again: {after:?}"
    );
    assert_eq!((code, out.as_str()), (0, "still-here\n"), "{err}");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), n);
    let names: Vec<String> = pods
        .get("app")
        .await
        .unwrap()
        .status
        .and_then(|s| s.ephemeral_container_statuses)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["dbg", "dbg2"]);
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn kubectl_debug_fails_fast_with_the_message_when_the_provider_refuses() {
    let (cluster, ns, node) = ready_node("eph-refused", &[]).await;
    approve_serving_csr(&cluster, &node.name).await;
    let n = ns.name();
    let client = cluster.client();
    let mut p = pod("app", &node.name);
    p["metadata"]["annotations"] =
        json!({"mock.vk-rs.io/script": "{\"refuseEphemeralContainers\": true}"});
    create_pod(&client, n, p).await;
    wait_running(&client, n, "app", RUNNING_WITHIN).await;

    let started = Instant::now();
    let (code, out, err) = tokio::time::timeout(
        Duration::from_secs(60),
        kubectl(
            &cluster,
            &[
                "debug",
                "-i",
                "-n",
                n,
                "app",
                "--image=busybox",
                "-c",
                "dbg",
                "--profile=general",
                "--",
                "sh",
            ],
        ),
    )
    .await
    .expect("kubectl debug hung on a provider that refuses ephemeral containers");
    let took = started.elapsed();
    eprintln!("kubectl debug: code {code} in {took:?}\nstdout: {out}\nstderr: {err}");
    assert_ne!(code, 0, "kubectl debug succeeded: {out} {err}");
    assert!(
        err.contains("provider \"mock\" cannot run ephemeral containers"),
        "kubectl does not show the refusal: {err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");

    let st = ephemeral_status(&cluster, n, "app", "dbg", Duration::from_secs(5), |_| true).await;
    let t = st
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(t.reason.as_deref(), Some("ProviderFailed"));
    assert!(
        t.message
            .unwrap_or_default()
            .contains("cannot run ephemeral containers")
    );

    let events: Api<Event> = Api::namespaced(client.clone(), n);
    let warning = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("EphemeralContainersNotSupported"))
        .expect("a Warning event for the refusal");
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.message.unwrap_or_default();
    assert!(
        note.contains("\"dbg\"") && note.contains("provider \"mock\""),
        "{note}"
    );
    // The pod itself runs on.
    let p = wait_running(&client, n, "app", RUNNING_WITHIN).await;
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    delete_node(&client, &node.name).await;
}
