//! The engine is the record: a SIGKILLed `vk-edge` adopts what runs without
//! recreating anything, containers keep running and restarting while the
//! control plane is away, and an unreachable engine turns the node NotReady.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use vk_test_support::{PodmanEngine, RIG_DIR, TestCluster, client_for_kubeconfig, podman};

async fn uids(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.name.unwrap(), p.metadata.uid.unwrap()))
        .collect()
}

fn running_in_engine(id: &str) -> bool {
    podman(["inspect", "--format", "{{.State.Running}}", id])
        .map(|o| o.stdout.trim() == "true")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_vk_edge_adopts_its_containers_without_recreating_them() {
    let Some((cluster, ns, mut node)) = edge_node("edge-adopt", &[]).await else {
        return;
    };
    let client = cluster.client();
    let n = ns.name();
    for i in 0..10 {
        create_pod(
            &client,
            n,
            pod_with(
                &format!("p{i}"),
                &node.name,
                json!([sh("main", "sleep 3600")]),
                json!({}),
            ),
        )
        .await;
    }
    for i in 0..10 {
        wait_pod(&client, n, &format!("p{i}"), RUN, "Ready", is_ready).await;
    }
    let before: BTreeMap<String, BTreeMap<String, String>> = uids(&client, n)
        .await
        .into_iter()
        .map(|(name, uid)| (name, engine_ids(&uid)))
        .collect();
    for (name, ids) in &before {
        assert_eq!(ids.len(), 2, "{name}: infra + main expected, got {ids:?}");
    }

    node.kill();
    // Deleted while nobody serves the node: must be stopped once vk-edge is back.
    Api::<Pod>::namespaced(client.clone(), n)
        .delete("p9", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.restart();
    wait_node_ready(&client, &node.name, Duration::from_secs(30)).await;

    let p9_ids: Vec<String> = before["p9"].values().cloned().collect();
    wait_until(
        "p9's containers removed and p9 gone",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let p9_ids = p9_ids.clone();
            async move {
                let gone = Api::<Pod>::namespaced(client, n)
                    .get_opt("p9")
                    .await
                    .ok()
                    .flatten()
                    .is_none();
                gone && p9_ids.iter().all(|id| !running_in_engine(id))
            }
        },
    )
    .await;
    // Give the adopted pods a few status rounds, then compare.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = uids(&client, n).await;
    for i in 0..9 {
        let name = format!("p{i}");
        let ids = engine_ids(&after[&name]);
        assert_eq!(ids, before[&name], "{name}: containers were recreated");
        let p = get_pod(&cluster, n, &name).await;
        assert!(
            is_ready(&p),
            "{name} is not Ready after the restart: {:?}",
            p.status
        );
        assert_eq!(container(&p, "main").unwrap().restart_count, 0);
        assert!(ids.values().all(|id| running_in_engine(id)));
    }
    assert!(!node.log_tail().contains("panicked"), "{}", node.log_tail());
}

/// A control plane of this test's own (the shared one must not go away),
/// stopped when dropped.
struct PrivateCluster {
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Starts (or restarts, on the same data directory) the control plane.
    async fn up(&self) -> std::path::PathBuf {
        let dir = self.dir.path().to_string_lossy().to_string();
        let out = tokio::task::spawn_blocking(move || {
            vk_test_support::xtask(["cluster", "up", "--dir", &dir])
        })
        .await
        .unwrap()
        .expect("cargo xtask cluster up");
        std::path::PathBuf::from(out.last_line().expect("kubeconfig path"))
    }

    async fn down(&self) {
        let dir = self.dir.path().to_string_lossy().to_string();
        tokio::task::spawn_blocking(move || {
            vk_test_support::xtask(["cluster", "down", "--dir", &dir])
        })
        .await
        .unwrap()
        .expect("cargo xtask cluster down");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = vk_test_support::xtask([
            "cluster",
            "down",
            "--dir",
            &self.dir.path().to_string_lossy(),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_keep_running_while_the_control_plane_is_down() {
    let Some(engine) = engine().await else { return };
    // The shared cluster provides vkcp; this test runs its own next to it.
    let shared = TestCluster::get().await.unwrap();
    let private = PrivateCluster {
        dir: tempfile::tempdir().unwrap(),
    };
    let kubeconfig = private.up().await;
    let client = client_for_kubeconfig(&kubeconfig).await.unwrap();
    let name = unique_name("edge-outage");
    let mut node = EdgeNode::start_with(shared.vkcp(), &kubeconfig, &engine.endpoint(), &name, &[]);
    wait_node_ready(&client, &name, Duration::from_secs(30)).await;
    let ns = "default";
    create_pod(
        &client,
        ns,
        pod_with(
            "steady",
            &name,
            json!([sh("main", "sleep 3600")]),
            json!({}),
        ),
    )
    .await;
    create_pod(
        &client,
        ns,
        pod_with(
            "flaky",
            &name,
            json!([sh("main", "sleep 2; exit 1")]),
            json!({}),
        ),
    )
    .await;
    wait_pod(&client, ns, "steady", RUN, "Ready", is_ready).await;
    let flaky = wait_running(&client, ns, "flaky", RUN).await;
    let steady_uid = get_uid(&client, ns, "steady").await;
    let flaky_uid = flaky.metadata.uid.clone().unwrap();
    let steady_ids = engine_ids(&steady_uid);

    private.down().await;
    let attempts_at_outage = engine_ids(&flaky_uid).len();
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(60) {
        assert!(
            steady_ids.values().all(|id| running_in_engine(id)),
            "a container stopped while the control plane was down"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // The flaky container was restarted meanwhile, per its policy (the engine
    // keeps the current and the previous attempt; their names carry the number).
    let highest_attempt = |uid: &str| {
        engine_ids(uid)
            .keys()
            .filter(|n| n.starts_with("k8s_main_"))
            .filter_map(|n| n.rsplit('_').next()?.parse::<i32>().ok())
            .max()
            .unwrap_or(0)
    };
    let attempt_during = highest_attempt(&flaky_uid);
    assert!(
        attempt_during >= 2,
        "no restarts while the control plane was down ({attempts_at_outage} containers before)"
    );

    private.up().await;
    let client = client_for_kubeconfig(&kubeconfig).await.unwrap();
    wait_node_ready(&client, &name, Duration::from_secs(90)).await;
    let p = wait_pod(&client, ns, "flaky", RUN, "restartCount caught up", |p| {
        container(p, "main").is_some_and(|c| c.restart_count >= attempt_during)
    })
    .await;
    assert_eq!(phase(&p), "Running");
    let s = Api::<Pod>::namespaced(client.clone(), ns)
        .get("steady")
        .await
        .unwrap();
    assert!(is_ready(&s), "steady is not Ready: {:?}", s.status);
    assert_eq!(
        engine_ids(&steady_uid),
        steady_ids,
        "the steady pod's containers were recreated"
    );
    node.kill();
    private.down().await;
}

async fn get_uid(client: &kube::Client, ns: &str, name: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_engine_turns_the_node_not_ready_and_back() {
    let Some(_shared_engine) = engine().await else {
        return;
    };
    let (cluster, _ns) = cluster_and_namespace("edge-engine").await;
    // An engine of this test's own: a second podman service on its own socket.
    let socket = std::path::PathBuf::from(RIG_DIR).join(format!("{}.sock", unique_name("own")));
    let endpoint = format!("unix://{}", socket.display());
    let start = || {
        let mut args: Vec<String> = vk_test_support::PODMAN_GLOBAL_FLAGS
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "system".into(),
            "service".into(),
            "--time=0".into(),
            endpoint.clone(),
        ]);
        std::process::Command::new("podman")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("podman system service")
    };
    let mut service = start();
    let name = unique_name("edge-engine");
    let node = EdgeNode::start(&cluster, &endpoint, &name, &[]);
    let client = cluster.client();
    wait_node_ready(&client, &name, Duration::from_secs(30)).await;
    service.kill().unwrap();
    let _ = service.wait();
    let _ = std::fs::remove_file(&socket);
    wait_node_not_ready(&client, &name, Duration::from_secs(40)).await;
    let mut service = start();
    wait_node_ready(&client, &name, Duration::from_secs(40)).await;
    service.kill().unwrap();
    let _ = service.wait();
    let _ = std::fs::remove_file(&socket);
    drop(node);
    let _ = PodmanEngine::get();
}
