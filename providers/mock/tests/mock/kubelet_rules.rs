//! The kubelet's own rules, as an operator meets them (issue 16, item 6):
//! the node lifecycle controller's `Unknown` answered at once, pod IPs that
//! change after a restart, `activeDeadlineSeconds`, and kubelet admission
//! (resources, volume types). Against the real local control plane.

use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

/// The pod's status reason and message, once it is Failed.
async fn wait_failed(pods: &Api<Pod>, name: &str, within: Duration) -> (String, String) {
    wait_for(&format!("pod {name} Failed"), within, || async {
        let p = pods.get(name).await?;
        let s = p.status.unwrap_or_default();
        Ok((s.phase.as_deref() == Some("Failed"))
            .then(|| (s.reason.unwrap_or_default(), s.message.unwrap_or_default())))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn ready_unknown_from_the_lifecycle_controller_is_answered_at_once() {
    let (cluster, _ns, node) = ready_node("unknown", &[]).await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    // Let the first writes settle: the answer below must come from the watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What the node lifecycle controller writes when the lease went stale.
    let unknown = json!({
        "status": { "conditions": [{
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]}
    });
    for round in 0..3 {
        let before = k8s_openapi::jiff::Timestamp::now();
        let patched = nodes
            .patch_status(
                &node.name,
                &PatchParams::default(),
                &Patch::Strategic(&unknown),
            )
            .await
            .unwrap();
        let set = Instant::now();
        // The kubelet may answer before a read could see it: the patch's own answer.
        let written = patched.status.unwrap().conditions.unwrap();
        let written = written.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            written.status, "Unknown",
            "round {round}: the condition was set"
        );
        wait_node_ready(&client, &node.name, Duration::from_secs(5)).await;
        let took = set.elapsed();
        assert!(took < Duration::from_secs(5), "round {round}: {took:?}");
        eprintln!("round {round}: Ready again after {took:?}");
        // Unknown → True is a transition: its time is new (whole seconds).
        let ready = nodes
            .get(&node.name)
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions
            .unwrap();
        let ready = ready.iter().find(|c| c.type_ == "Ready").unwrap();
        let moved = ready.last_transition_time.as_ref().unwrap().0;
        assert!(
            moved.as_second() >= before.as_second(),
            "round {round}: transition at {moved}, Unknown set at {before}"
        );
    }
    // The unreachable taint the controller adds is lifted by the controller
    // once the node is Ready: add it as the controller would.
    let mut n = nodes.get(&node.name).await.unwrap();
    let spec = n.spec.get_or_insert_with(Default::default);
    let mut taints = spec.taints.clone().unwrap_or_default();
    taints.push(k8s_openapi::api::core::v1::Taint {
        key: "node.kubernetes.io/unreachable".into(),
        effect: "NoExecute".into(),
        ..Default::default()
    });
    nodes
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": taints } })),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            &node.name,
            &PatchParams::default(),
            &Patch::Strategic(&unknown),
        )
        .await
        .unwrap();
    wait_until(
        "the unreachable taint lifted",
        Duration::from_secs(30),
        || {
            let nodes = nodes.clone();
            let name = node.name.clone();
            async move {
                nodes.get(&name).await.is_ok_and(|n| {
                    !n.spec
                        .and_then(|s| s.taints)
                        .unwrap_or_default()
                        .iter()
                        .any(|t| t.key == "node.kubernetes.io/unreachable")
                })
            }
        },
    )
    .await;
    assert_eq!(
        node_ready(&client, &node.name)
            .await
            .map(|(s, _)| s)
            .as_deref(),
        Some("True")
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_fails_and_its_workload_stops() {
    let (cluster, ns, node) = ready_node("deadline", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut manifest = pod("job", &node.name);
    manifest["spec"]["activeDeadlineSeconds"] = json!(5);
    let created = Instant::now();
    create_pod(&client, ns.name(), manifest).await;
    wait_running(&client, ns.name(), "job", RUNNING_WITHIN).await;
    assert!(node.backend_pod(ns.name(), "job").await.is_some());
    let (reason, message) = wait_failed(&pods, "job", Duration::from_secs(15)).await;
    let took = created.elapsed();
    eprintln!("Failed after {took:?}");
    // `status.startTime` has whole seconds (as the kubelet's): the deadline
    // counts from up to a second before the pod started.
    assert!(
        took >= Duration::from_secs(4),
        "not before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(reason, "DeadlineExceeded");
    assert_eq!(
        message,
        "Pod was active on the node longer than the specified deadline"
    );
    assert!(
        node.backend_pod(ns.name(), "job").await.is_none(),
        "the backend workload was stopped"
    );
    // It stays Failed and is not started again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods.get("job").await.unwrap();
    assert_eq!(phase(&p), "Failed");
    assert!(node.backend_pod(ns.name(), "job").await.is_none());
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn a_pod_bound_past_the_nodes_resources_is_rejected_out_of_cpu() {
    let (cluster, ns, node) = ready_node("admit", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut manifest = pod("huge", &node.name);
    manifest["spec"]["containers"][0]["resources"] = json!({ "requests": { "cpu": "1000" } });
    let created = Instant::now();
    create_pod(&client, ns.name(), manifest).await;
    let (reason, message) = wait_failed(&pods, "huge", Duration::from_secs(5)).await;
    eprintln!("Failed after {:?}", created.elapsed());
    assert_eq!(reason, "OutOfcpu");
    assert_eq!(
        message,
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: 0, capacity: 20000"
    );
    assert!(node.backend_pod(ns.name(), "huge").await.is_none());
    // What fits still runs, and counts: 15 CPUs, then 6 more do not fit.
    let mut fits = pod("fits", &node.name);
    fits["spec"]["containers"][0]["resources"] = json!({ "requests": { "cpu": "15" } });
    create_pod(&client, ns.name(), fits).await;
    wait_running(&client, ns.name(), "fits", RUNNING_WITHIN).await;
    let mut more = pod("more", &node.name);
    more["spec"]["containers"][0]["resources"] = json!({ "requests": { "cpu": "6" } });
    create_pod(&client, ns.name(), more).await;
    let (reason, message) = wait_failed(&pods, "more", Duration::from_secs(5)).await;
    assert_eq!(reason, "OutOfcpu");
    assert!(message.contains("used: 15000"), "{message}");
    let evs = events(&client, ns.name()).await;
    assert!(
        evs.iter().any(|(r, n)| r == "OutOfcpu" && n == "huge"),
        "{evs:?}"
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn a_volume_the_mock_cannot_honour_is_refused() {
    let (cluster, ns, node) = ready_node("hostpath", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for (name, volume) in [
        (
            "host",
            json!({ "name": "etc", "hostPath": { "path": "/etc" } }),
        ),
        (
            "share",
            json!({ "name": "share", "nfs": { "server": "127.0.0.1", "path": "/x" } }),
        ),
        (
            "driver",
            json!({ "name": "d", "csi": { "driver": "example.csi.k8s.io" } }),
        ),
    ] {
        let mut manifest = pod(name, &node.name);
        manifest["spec"]["volumes"] = json!([volume]);
        create_pod(&client, ns.name(), manifest).await;
    }
    for (name, kind) in [("host", "hostPath"), ("share", "nfs"), ("driver", "csi")] {
        let (reason, message) = wait_failed(&pods, name, Duration::from_secs(10)).await;
        assert_eq!(reason, "UnsupportedVolume", "{name}");
        assert!(
            message.contains(&format!(
                "is of type {kind}, which the mock provider does not support"
            )),
            "{message}"
        );
        assert!(node.backend_pod(ns.name(), name).await.is_none(), "{name}");
    }
    let evs = events(&client, ns.name()).await;
    assert_eq!(
        evs.iter().filter(|(r, _)| r == "UnsupportedVolume").count(),
        3,
        "{evs:?}"
    );
    // The volumes it does honour still run (the apiserver adds a projected token).
    let mut ok = pod("scratch", &node.name);
    ok["spec"]["volumes"] = json!([{ "name": "tmp", "emptyDir": {} }]);
    create_pod(&client, ns.name(), ok).await;
    wait_running(&client, ns.name(), "scratch", RUNNING_WITHIN).await;
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn a_restart_without_state_gives_new_ips_and_the_status_follows() {
    let (cluster, ns, mut node) = ready_node("newip", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for i in 0..8 {
        create_pod(&client, ns.name(), pod(&format!("p{i}"), &node.name)).await;
    }
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(60),
        "8 pods Running",
        |l| l.len() == 8 && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    // The four with the lowest addresses go (the workers create pods in
    // any order), so that the four left hold none of the addresses a fresh
    // backend hands out first: after the restart every IP changes.
    let mut by_ip: Vec<(std::net::Ipv4Addr, String)> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            let ip = p.status.as_ref().unwrap().pod_ip.as_ref().unwrap();
            (ip.parse().unwrap(), p.name_any())
        })
        .collect();
    by_ip.sort();
    for (_, name) in &by_ip[..4] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(30),
        "4 pods left",
        |l| l.len() == 4,
    )
    .await;
    let before: Vec<(String, String)> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.name_any(), p.status.clone().unwrap().pod_ip.unwrap()))
        .collect();
    node.kill();
    // No state: the restarted mock's backend is empty and hands out IPs afresh.
    std::fs::remove_dir_all(&node.state_dir).unwrap();
    node.restart();
    let restarted = Instant::now();
    let ns_name = ns.name().to_string();
    wait_until(
        "every pod's podIP and podIPs equal its backend IP",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            let node = &node;
            let ns = ns_name.clone();
            async move {
                let listed = pods.list(&ListParams::default()).await.unwrap().items;
                let backend = node.running_pods().await;
                listed.len() == 4
                    && listed.iter().all(|p| {
                        let s = p.status.clone().unwrap_or_default();
                        let Some(b) = backend.iter().find(|b| {
                            b.metadata.namespace.as_deref() == Some(ns.as_str())
                                && b.name_any() == p.name_any()
                        }) else {
                            return false;
                        };
                        let ip = b.status.as_ref().and_then(|s| s.pod_ip.clone());
                        ip.is_some()
                            && s.pod_ip == ip
                            && s.pod_ips
                                .unwrap_or_default()
                                .iter()
                                .map(|i| Some(i.ip.clone()))
                                .collect::<Vec<_>>()
                                == vec![ip.clone()]
                    })
            }
        },
    )
    .await;
    eprintln!(
        "statuses current {:?} after the restart",
        restarted.elapsed()
    );
    let after = pods.list(&ListParams::default()).await.unwrap().items;
    for p in &after {
        let old = &before.iter().find(|(n, _)| *n == p.name_any()).unwrap().1;
        let new = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        assert_ne!(&new, old, "{}: the IP changed", p.name_any());
        assert_eq!(phase(p), "Running");
    }
    let refused = node
        .metric("vk_api_calls_total{verb=\"patch\",resource=\"pods/status\",result=\"error\"}")
        .await;
    assert_eq!(refused, 0.0, "no status patch was refused");
    let written = node
        .metric("vk_api_calls_total{verb=\"patch\",resource=\"pods/status\",result=\"ok\"}")
        .await;
    assert!(written >= 4.0, "the new IPs were written: {written}");
    delete_node(&client, &node.name).await;
}

/// The apiserver stopped (SIGSTOP) for a minute, then resumed: the node is
/// Ready again within 15 s of the resume (the node lifecycle controller,
/// which sees a stale Lease first, may set `Unknown` for a moment; the
/// kubelet answers it at once). One run in CI; `VK_SIGSTOP_RUNS=5` repeats
/// it. In a cluster of its own: stopping the shared apiserver would stop
/// every other test.
#[tokio::test]
async fn after_a_minute_of_a_stopped_apiserver_the_node_is_ready_within_15_s() {
    let runs: u32 = std::env::var("VK_SIGSTOP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // Without leader election the controller-manager and the scheduler ride
    // out the stop (with it they exit once they cannot renew, and nothing
    // here restarts them as a kubelet or systemd would).
    let own = tokio::task::spawn_blocking(|| {
        vk_test_support::OwnCluster::up(
            "sigstop-cluster",
            &[
                "--controller-manager-arg=--leader-elect=false",
                "--scheduler-arg=--leader-elect=false",
            ],
        )
    })
    .await
    .unwrap()
    .expect("a cluster of the test's own");
    let own = tokio::task::spawn_blocking(move || {
        own.wait_controllers_started(Duration::from_secs(90))
            .map(|()| own)
    })
    .await
    .unwrap()
    .expect("the controller-manager's controllers started");
    let client = own.client().await.unwrap();
    let node = MockNode::start_with_kubeconfig(own.kubeconfig(), &unique_name("paused"), &[]);
    wait_node_ready(&client, &node.name, Duration::from_secs(30)).await;
    let apiserver = own.apiserver_pid().unwrap().to_string();
    for run in 1..=runs {
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", apiserver.as_str()])
            .status()
            .unwrap();
        assert!(stopped.success());
        tokio::time::sleep(Duration::from_secs(60)).await;
        let resumed = std::process::Command::new("kill")
            .args(["-CONT", apiserver.as_str()])
            .status()
            .unwrap();
        assert!(resumed.success());
        let since = std::time::Instant::now();
        // 30 s of samples: whatever is not Ready must be within the first 15 s.
        let mut last_not_ready = None;
        while since.elapsed() < Duration::from_secs(30) {
            match node_ready(&client, &node.name).await {
                Some((status, _)) if status == "True" => {}
                other => last_not_ready = Some((since.elapsed(), other)),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("run {run}: last sample not Ready after the resume: {last_not_ready:?}");
        if let Some((at, seen)) = last_not_ready {
            assert!(
                at <= Duration::from_secs(15),
                "run {run}: still {seen:?} {:.1} s after the resume",
                at.as_secs_f64()
            );
        }
    }
}
