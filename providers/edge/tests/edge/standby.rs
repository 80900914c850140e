//! A hot standby per node with `vk-edge` (issue 16, item 3): two replicas
//! with `--leader-elect` against one engine, the leader killed. The engine
//! is the record: the new leader adopts the containers without recreating
//! any, and the writes of both replicas are held against the Lease's terms.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use vk_test_support::leader::{
    ReadyWatch, check_writes, creations, holder, is_process, lease_history, terms,
};

/// The test's own copy of `vk-edge` (`VK_EDGE_BIN` when set: a target
/// directory shared with other checkouts may hold another build by then).
fn own_binary(dir: &Path) -> std::path::PathBuf {
    let source = std::env::var_os("VK_EDGE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vk-edge").into());
    vk_test_support::leader::own_copy(&source, dir)
}

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

#[tokio::test(flavor = "multi_thread")]
async fn two_vk_edge_replicas_hand_over_without_recreating_a_container() {
    let Some(engine) = engine().await else {
        return;
    };
    let (cluster, ns) = cluster_and_namespace("edge-standby").await;
    let client = cluster.client();
    let n = ns.name();
    let node = unique_name("edge-standby");
    let lease = format!("vk-rs-{node}");
    let dir = tempfile::tempdir().unwrap();
    let binary = own_binary(dir.path());
    let flags = [
        "--leader-elect",
        "--leader-elect-namespace",
        n,
        "--log-format",
        "json",
    ];
    let history = lease_history(&client, n, &lease);
    let mut replicas = [
        EdgeNode::start_replica(&cluster, &binary, &engine.endpoint(), &node, &flags),
        EdgeNode::start_replica(&cluster, &binary, &engine.endpoint(), &node, &flags),
    ];
    wait_node_ready(&client, &node, Duration::from_secs(30)).await;
    for i in 0..6 {
        create_pod(
            &client,
            n,
            pod_with(
                &format!("p{i}"),
                &node,
                json!([sh("main", "sleep 3600")]),
                json!({}),
            ),
        )
        .await;
    }
    for i in 0..6 {
        wait_pod(&client, n, &format!("p{i}"), RUN, "Ready", is_ready).await;
    }
    let before: BTreeMap<String, BTreeMap<String, String>> = uids(&client, n)
        .await
        .into_iter()
        .map(|(name, uid)| (name, engine_ids(&uid)))
        .collect();
    let ready = ReadyWatch::start(&client, &node);

    // Two kills in a row of whichever replica leads.
    let mut takeovers = Vec::new();
    for round in 0..2 {
        let leader = wait_for("a leader", Duration::from_secs(30), || async {
            Ok(holder(&client, n, &lease).await)
        })
        .await
        .unwrap();
        let i = replicas
            .iter()
            .position(|r| is_process(&leader, r.pid()))
            .expect("the leader is one of the replicas");
        let killed = Instant::now();
        replicas[i].kill();
        let other_pid = replicas[1 - i].pid();
        wait_for("the standby to lead", Duration::from_secs(30), || async {
            Ok(holder(&client, n, &lease)
                .await
                .filter(|h| is_process(h, other_pid)))
        })
        .await
        .unwrap();
        takeovers.push(killed.elapsed());
        let name = format!("r{round}");
        create_pod(
            &client,
            n,
            pod_with(&name, &node, json!([sh("main", "sleep 3600")]), json!({})),
        )
        .await;
        wait_pod(&client, n, &name, RUN, "Ready", is_ready).await;
        replicas[i].restart();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    eprintln!("vk-edge takeovers after SIGKILL: {takeovers:?}");
    for t in &takeovers {
        assert!(*t <= Duration::from_millis(15_500), "takeover {t:?}");
    }

    // The containers the first leader started are the ones that run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = uids(&client, n).await;
    for (name, ids) in &before {
        assert_eq!(
            &engine_ids(&after[name]),
            ids,
            "{name}: containers were recreated"
        );
        assert!(is_ready(&get_pod(&cluster, n, name).await), "{name} Ready");
    }
    ready.assert_always_ready();
    let history = terms(&history);
    assert!(history.len() >= 3, "three terms: {history:?}");
    let logs: Vec<&Path> = replicas.iter().map(|r| r.log.as_path()).collect();
    let writes = check_writes(&logs, &history);
    let created = creations(&writes);
    assert_eq!(created.len(), 8, "{created:?}");
    assert!(
        created.values().all(|&c| c == 1),
        "no workload created twice: {created:?}"
    );
}
