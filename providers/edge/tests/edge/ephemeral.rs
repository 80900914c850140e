//! Ephemeral containers (`kubectl debug`) on the edge provider, with the
//! real kubectl through the real apiserver and real containers on the rig's
//! podman: the debug container joins the pod's network namespace (it reaches
//! the pod's `localhost` ports) and, with `--target`, the target container's
//! processes; it runs once, is reported in `ephemeralContainerStatuses`,
//! has logs, survives a restart of `vk-edge` without running again, and
//! leaves nothing behind in the engine when the pod is deleted.

use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, DeleteParams};
use serde_json::json;
use vk_test_support::{BUSYBOX_HTTPD_IMAGE, BUSYBOX_HTTPD_INDEX, BUSYBOX_IMAGE};

/// The status of ephemeral container `c` of `p`.
fn ephemeral(p: &Pod, c: &str) -> Option<ContainerStatus> {
    p.status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == c)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_debug_gives_a_shell_in_the_pods_network_namespace() {
    let (cluster, ns, mut node) = rig!("edge-debug");
    let client = cluster.client();
    let n = ns.name();
    create_pod(
        &client,
        n,
        pod_with(
            "web",
            &node.name,
            json!([{
                "name": "web",
                "image": BUSYBOX_HTTPD_IMAGE,
                "imagePullPolicy": "IfNotPresent",
            }]),
            json!({}),
        ),
    )
    .await;
    let p = wait_running(&client, n, "web", RUN).await;
    let uid = p.metadata.uid.clone().unwrap();

    // A shell fed by kubectl's stdin: the pod's port on localhost, and the
    // target container's processes.
    let mut cmd = cluster.kubectl_command();
    cmd.args([
        "debug",
        "-i",
        "-n",
        n,
        "web",
        &format!("--image={BUSYBOX_IMAGE}"),
        "-c",
        "dbg",
        "--target=web",
        "--profile=general",
        "--",
        "sh",
    ]);
    let script = "wget -qO- http://localhost:8080/\nps -o args\necho debug-done\nexit 3\n";
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        run_with_stdin(cmd, script.as_bytes().to_vec()),
    )
    .await
    .expect("kubectl debug -i did not end");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "kubectl debug: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(BUSYBOX_HTTPD_INDEX.trim()),
        "the debug shell did not reach the pod's localhost:8080: {stdout} {stderr}"
    );
    assert!(
        stdout.contains("httpd -f -p 8080"),
        "the debug shell does not see the target's processes: {stdout}"
    );
    assert!(stdout.contains("debug-done"), "{stdout}");
    // The exit code came back through the attach stream (kubectl then
    // also prints the container's logs, as it does on any kubelet).
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // Reported once it ended: exit code 3, never restarted.
    let st = wait_for(
        "the debug container's termination",
        Duration::from_secs(30),
        || async {
            let p = get_pod(&cluster, n, "web").await;
            Ok(ephemeral(&p, "dbg")
                .filter(|s| s.state.as_ref().is_some_and(|s| s.terminated.is_some())))
        },
    )
    .await
    .unwrap();
    let t = st.state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(t.exit_code, 3, "{st:?}");
    assert!(!st.ready);
    assert_eq!(st.restart_count, 0);
    assert_eq!(st.image, BUSYBOX_IMAGE);
    assert!(
        st.container_id
            .as_deref()
            .is_some_and(|c| c.starts_with("docker://")),
        "{st:?}"
    );
    assert!(!st.image_id.is_empty(), "{st:?}");

    // Its logs.
    let logs = kubectl_ok(&cluster, &["logs", "-n", n, "web", "-c", "dbg"]).await;
    assert!(logs.contains("debug-done"), "{logs}");

    // A second one, left running, while the pod's own container is untouched.
    kubectl_ok(
        &cluster,
        &[
            "debug",
            "-n",
            n,
            "web",
            &format!("--image={BUSYBOX_IMAGE}"),
            "-c",
            "dbg2",
            "--profile=general",
            "--",
            "sleep",
            "3600",
        ],
    )
    .await;
    wait_for(
        "the second debug container running",
        Duration::from_secs(60),
        || async {
            let p = get_pod(&cluster, n, "web").await;
            Ok(ephemeral(&p, "dbg2")
                .filter(|s| s.state.as_ref().is_some_and(|s| s.running.is_some())))
        },
    )
    .await
    .unwrap();
    let p = get_pod(&cluster, n, "web").await;
    assert_eq!(container(&p, "web").unwrap().restart_count, 0);
    let out = kubectl_ok(
        &cluster,
        &[
            "exec",
            "-n",
            n,
            "web",
            "-c",
            "dbg2",
            "--",
            "wget",
            "-qO-",
            "http://localhost:8080/",
        ],
    )
    .await;
    assert_eq!(out, BUSYBOX_HTTPD_INDEX);

    // A restarted vk-edge adopts them from the engine: nothing runs again.
    let before = engine_ids(&uid);
    node.restart();
    wait_node_ready(&client, &node.name, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = engine_ids(&uid);
    assert_eq!(before, after, "engine containers changed across a restart");
    let dbg: Vec<&String> = after.keys().filter(|k| k.starts_with("k8s_dbg_")).collect();
    assert_eq!(
        dbg.len(),
        1,
        "the ended debug container ran again: {after:?}"
    );
    let p = get_pod(&cluster, n, "web").await;
    assert_eq!(
        ephemeral(&p, "dbg")
            .and_then(|s| s.state?.terminated)
            .map(|t| t.exit_code),
        Some(3)
    );

    // Deleting the pod leaves nothing in the engine.
    Api::<Pod>::namespaced(client.clone(), n)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the pod's engine containers gone",
        Duration::from_secs(60),
        || async { Ok(engine_ids(&uid).is_empty().then_some(())) },
    )
    .await
    .unwrap();
    drop(node);
}
