//! The core under API faults: `vk-mock` reaches the apiserver only through
//! the fault proxy of the test support (`vk_test_support::api_faults`), which
//! fails a share of requests (429 with Retry-After, 500, 503, resets) and
//! breaks off watches, or fails everything for a minute.

use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vk_test_support::leader::ReadyWatch;
use vk_test_support::{FaultProxy, Faults};

/// A `vk-mock` whose only way to the apiserver is a fault proxy.
struct FaultyNode {
    proxy: FaultProxy,
    node: MockNode,
    _dir: tempfile::TempDir,
}

impl FaultyNode {
    /// Starts the proxy (no fault yet) and `vk-mock` behind it, with room
    /// for 1,000 pods; returns once the node is Ready.
    async fn ready(cluster: &TestCluster, prefix: &str, extra: &[&str]) -> FaultyNode {
        FaultyNode::ready_in(cluster.kubeconfig(), &cluster.client(), prefix, extra).await
    }

    /// [`FaultyNode::ready`] in the cluster of `admin` (a test's own).
    async fn ready_in(
        admin: &std::path::Path,
        client: &Client,
        prefix: &str,
        extra: &[&str],
    ) -> FaultyNode {
        let proxy = FaultProxy::start(admin).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("through-the-proxy.kubeconfig");
        proxy.write_kubeconfig(&kubeconfig).unwrap();
        let name = unique_name(prefix);
        let config = dir.path().join("nodes.json");
        std::fs::write(
            &config,
            json!({ name.as_str(): { "pods": "1000" } }).to_string(),
        )
        .unwrap();
        let mut args = vec!["--provider-config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let node = MockNode::start_with_kubeconfig(&kubeconfig, &name, &args);
        wait_node_ready(client, &name, Duration::from_secs(30)).await;
        FaultyNode {
            proxy,
            node,
            _dir: dir,
        }
    }
}

fn deployment(name: &str, node: &str, replicas: u32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name, "load": "faults" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node },
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
                    "containers": [{ "name": "c", "image": "nginx" }]
                }
            }
        }
    }))
    .unwrap()
}

/// A pod that runs `after` seconds and exits with `code`, never restarted.
fn exiting_pod(name: &str, node: &str, after: u32, code: i32) -> serde_json::Value {
    let mut p = pod(name, node);
    p["metadata"]["annotations"] = json!({
        "mock.vk-rs.io/script": json!({ "exitAfterSeconds": after, "exitCode": code }).to_string()
    });
    p["spec"]["restartPolicy"] = json!("Never");
    p
}

/// The pod's phase and its first container's exit code, once terminated.
fn exit_of(p: &Pod) -> (String, Option<i32>) {
    let code = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref()?.terminated.as_ref())
        .map(|t| t.exit_code);
    (phase(p).to_string(), code)
}

#[tokio::test]
async fn with_a_tenth_of_api_requests_failing_and_watches_cut_500_pods_run_and_go() {
    const DEPLOYMENTS: u32 = 5;
    const REPLICAS: u32 = 100;
    const EXITING: usize = 20;
    let cluster = TestCluster::get().await.unwrap();
    let ns = cluster.namespace("faults").await.unwrap();
    let client = cluster.client();
    let faulty = FaultyNode::ready(&cluster, "faults", &[]).await;
    let node = &faulty.node.name;
    let watch = ReadyWatch::start(&client, node);
    let faults: Faults = "errors=0.07,resets=0.03,watch-cut=20s,gone=0.3"
        .parse()
        .unwrap();
    faulty.proxy.set(faults.clone());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    for d in 0..DEPLOYMENTS {
        deployments
            .create(
                &PostParams::default(),
                &deployment(&format!("load-{d}"), node, REPLICAS),
            )
            .await
            .unwrap();
    }
    let total = (DEPLOYMENTS * REPLICAS) as usize;
    let load = ListParams::default().labels("load=faults");
    let running = wait_pods(
        &client,
        ns.name(),
        &load,
        Duration::from_secs(240),
        "500 pods Running under faults",
        |l| l.len() == total && l.iter().all(|p| phase(p) == "Running" && is_ready(p)),
    )
    .await;
    let mut ips: Vec<String> = running
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), total, "one distinct IP per pod");

    // Pods that exit while the faults go on; their status is current
    // within 30 s of the faults stopping.
    for i in 0..EXITING {
        create_pod(
            &client,
            ns.name(),
            exiting_pod(&format!("exit-{i}"), node, 3, 3),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    faulty.proxy.set(Faults::default());
    let stopped = Instant::now();
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(30),
        "every status current: 500 Running, 20 Failed with exit code 3",
        |l| {
            let exited = l
                .iter()
                .filter(|p| p.name_any().starts_with("exit-"))
                .filter(|p| exit_of(p) == ("Failed".into(), Some(3)))
                .count();
            let up = l
                .iter()
                .filter(|p| !p.name_any().starts_with("exit-"))
                .filter(|p| phase(p) == "Running" && is_ready(p))
                .count();
            exited == EXITING && up == total
        },
    )
    .await;
    eprintln!(
        "statuses current {:.1} s after the faults stopped",
        stopped.elapsed().as_secs_f64()
    );

    // Deleted under faults again: nothing left behind.
    faulty.proxy.set(faults);
    for d in 0..DEPLOYMENTS {
        deployments
            .delete(&format!("load-{d}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for i in 0..EXITING {
        pods.delete(&format!("exit-{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(240),
        "every pod deleted under faults",
        |l| l.is_empty(),
    )
    .await;
    let counts = faulty.proxy.counts();
    faulty.proxy.set(Faults::default());
    let backend = &faulty.node;
    wait_until("the backend empty", Duration::from_secs(30), || async {
        backend.metric("vk_backend_pods ").await == 0.0
    })
    .await;
    let created = backend
        .metric("vk_backend_calls_total{operation=\"create\",result=\"ok\"}")
        .await;
    assert_eq!(
        created,
        (total + EXITING) as f64,
        "each pod created in the backend once"
    );
    assert!(
        counts.throttled > 0 && counts.failed > 0 && counts.resets > 0 && counts.cut > 0,
        "faults were injected: {counts:?}"
    );
    watch.assert_always_ready();
    eprintln!(
        "proxy: {} requests, {} throttled, {} failed, {} reset, {} watches cut, {} answered 410",
        counts.requests, counts.throttled, counts.failed, counts.resets, counts.cut, counts.gone
    );
    delete_node(&client, node).await;
}

/// The request rate a kubelet may keep up while every request fails, over
/// any 10 s: the work queue retries at most 10 pod syncs a second once its
/// burst is spent (each a status patch and an event at most), plus the
/// node's lease and status.
const OUTAGE_RATE_BOUND: f64 = 20.0;

#[tokio::test]
async fn while_every_request_fails_for_a_minute_the_rate_stays_bounded_and_an_exit_is_not_lost() {
    let cluster = TestCluster::get().await.unwrap();
    let ns = cluster.namespace("outage").await.unwrap();
    let client = cluster.client();
    let faulty = FaultyNode::ready(&cluster, "outage", &[]).await;
    let node = faulty.node.name.clone();
    for i in 0..10 {
        create_pod(&client, ns.name(), pod(&format!("up-{i}"), &node)).await;
    }
    create_pod(&client, ns.name(), exiting_pod("exits", &node, 25, 3)).await;
    wait_running(&client, ns.name(), "exits", RUNNING_WITHIN).await;

    // A minute of every request failing; the pod exits 3 in the middle.
    let from = faulty.proxy.elapsed_secs();
    faulty.proxy.set(Faults::all_failing());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let to = faulty.proxy.elapsed_secs();
    faulty.proxy.set(Faults::default());
    let counts = faulty.proxy.counts();
    let during: u64 = counts.per_second[from..to.min(counts.per_second.len())]
        .iter()
        .sum();
    let mean = during as f64 / (to - from) as f64;
    let peak = counts.peak_rate(from, to, 10);
    eprintln!(
        "outage: {during} requests in {} s, {mean:.2}/s on average, peak {peak:.2}/s over 10 s; per second {:?}; by request {:?}",
        to - from,
        &counts.per_second[from..to.min(counts.per_second.len())],
        counts.requests_between(to - 10, to)
    );
    assert!(
        peak <= OUTAGE_RATE_BOUND,
        "requests per second while every request failed, peak over 10 s: {peak} (bound {OUTAGE_RATE_BOUND}); per second: {:?}",
        &counts.per_second[from..to.min(counts.per_second.len())]
    );

    // Afterwards everything converges, the exit code included.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let exited = wait_for(
        "the exit to be reported",
        Duration::from_secs(30),
        || async {
            let p = pods.get("exits").await?;
            Ok((phase(&p) == "Failed").then_some(p))
        },
    )
    .await
    .unwrap();
    assert_eq!(exit_of(&exited), ("Failed".into(), Some(3)));
    wait_node_ready(&client, &node, Duration::from_secs(15)).await;
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(30),
        "the other pods Running",
        |l| {
            l.iter()
                .filter(|p| p.name_any().starts_with("up-"))
                .filter(|p| phase(p) == "Running")
                .count()
                == 10
        },
    )
    .await;
    delete_node(&client, &node).await;
}

/// The names of the backend's pods, sorted.
async fn backend_names(node: &MockNode) -> Vec<String> {
    let mut names: Vec<String> = node
        .running_pods()
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

/// Tolerations of the node's `unreachable` and `not-ready` NoExecute taints
/// for `seconds`, beside the provider's taint.
fn tolerating_for(mut p: serde_json::Value, seconds: u32) -> serde_json::Value {
    p["spec"]["tolerations"] = json!([
        { "key": "virtual-kubelet.io/provider", "operator": "Exists" },
        { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds },
        { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds },
    ]);
    p
}

/// The eviction cascade of docs/reliability.md: the kubelet is away (killed)
/// longer than one pod's `tolerationSeconds` (5 s here) and shorter than the
/// other's (the default 300 s). The node lifecycle controller evicts the
/// first: its object is deleted gracefully and waits, Terminating, for a
/// kubelet. When the kubelet comes back, through an apiserver that first
/// answers nothing, it deletes no workload until it has the complete list;
/// then it deletes the evicted pod's workload and object, and keeps the
/// other workload as it was (adopted, not recreated).
///
/// In a cluster of its own (a 20 s node monitor grace period instead of
/// 40 s), with a second, healthy node: the node lifecycle controller evicts
/// nothing when every node of a zone is NotReady (the shared cluster
/// collects the dead nodes of other tests).
#[tokio::test]
async fn a_kubelet_away_past_a_toleration_stops_only_the_evicted_pods_workload() {
    let own = tokio::task::spawn_blocking(|| {
        vk_test_support::OwnCluster::up(
            "eviction-cluster",
            &["--controller-manager-arg=--node-monitor-grace-period=20s"],
        )
    })
    .await
    .unwrap()
    .expect("a cluster of the test's own");
    let client = own.client().await.unwrap();
    let ns = "default";
    let _healthy = MockNode::start_with_kubeconfig(own.kubeconfig(), &unique_name("healthy"), &[]);
    let mut faulty = FaultyNode::ready_in(own.kubeconfig(), &client, "away", &[]).await;
    let node = faulty.node.name.clone();
    create_pod(&client, ns, tolerating_for(pod("brief", &node), 5)).await;
    create_pod(&client, ns, pod("patient", &node)).await;
    let patient = wait_running(&client, ns, "patient", RUNNING_WITHIN).await;
    wait_running(&client, ns, "brief", RUNNING_WITHIN).await;
    let patient_ip = patient.status.and_then(|s| s.pod_ip).unwrap();

    // Away: the node goes Unknown once its Lease is stale, gets the
    // unreachable taint, and the pod tolerating it for 5 s is evicted.
    faulty.node.kill();
    let away = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until("brief evicted", Duration::from_secs(120), || async {
        pods.get_opt("brief")
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    eprintln!(
        "evicted {:.0} s after the kubelet went away",
        away.elapsed().as_secs_f64()
    );
    let kept = pods.get("patient").await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "the 300 s toleration holds"
    );
    assert_eq!(
        backend_names(&faulty.node).await,
        ["brief", "patient"],
        "nothing deleted in the backend while away"
    );

    // Back, while the apiserver answers nothing: no workload is deleted
    // before the kubelet has listed the node's pods.
    faulty.proxy.set(Faults::all_failing());
    faulty.node.restart();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        backend_names(&faulty.node).await,
        ["brief", "patient"],
        "nothing deleted without the list"
    );

    // The apiserver answers: the evicted pod's workload and object go, the
    // other workload stays as it was.
    faulty.proxy.set(Faults::default());
    wait_until("brief's object gone", Duration::from_secs(60), || async {
        pods.get_opt("brief").await.is_ok_and(|p| p.is_none())
    })
    .await;
    assert_eq!(backend_names(&faulty.node).await, ["patient"]);
    wait_node_ready(&client, &node, Duration::from_secs(30)).await;
    let patient = wait_running(&client, ns, "patient", RUNNING_WITHIN).await;
    assert_eq!(
        patient.status.and_then(|s| s.pod_ip),
        Some(patient_ip),
        "the same workload"
    );
    assert_eq!(
        faulty
            .node
            .metric("vk_backend_calls_total{operation=\"create\",result=\"ok\"}")
            .await,
        0.0,
        "the restarted kubelet created nothing: the workload was adopted"
    );
    delete_node(&client, &node).await;
}
