//! The core runtime's behaviour with the mock backend, against the real local
//! control plane (issue: core node and pod runtime). Every test runs its own
//! `vk-mock` process with its own node name.

use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn node_registers_with_lease_taint_labels_capacity_addresses() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    let name = unique_name("reg");
    std::fs::write(
        cfg.path(),
        json!({ name.clone(): { "cpu": "7", "memory": "30Gi", "pods": "250", "others": { "example.com/gpu": "2" } } }).to_string(),
    )
    .unwrap();
    let cluster = TestCluster::get().await.expect("test cluster");
    let client = cluster.client();
    let started = Instant::now();
    let node = MockNode::start(
        &cluster,
        &name,
        &[
            "--provider-config",
            cfg.path().to_str().unwrap(),
            "--node-ip",
            "127.0.0.1",
        ],
    );
    wait_node_ready(&client, &name, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));

    let n: Node = Api::all(client.clone()).get(&name).await.unwrap();
    let labels = n.labels();
    assert_eq!(
        labels.get("type").map(String::as_str),
        Some("virtual-kubelet")
    );
    assert_eq!(
        labels.get("kubernetes.io/role").map(String::as_str),
        Some("agent")
    );
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&name));
    assert_eq!(
        labels
            .get("node.kubernetes.io/exclude-from-external-load-balancers")
            .map(String::as_str),
        Some("true")
    );
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == "virtual-kubelet.io/provider"
            && t.value.as_deref() == Some("mock")
            && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    let status = n.status.unwrap();
    let cap = status.capacity.unwrap();
    assert_eq!(cap["cpu"].0, "7");
    assert_eq!(cap["memory"].0, "30Gi");
    assert_eq!(cap["pods"].0, "250");
    assert_eq!(cap["example.com/gpu"].0, "2");
    let addrs = status.addresses.unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1")
    );
    assert!(status.node_info.unwrap().kubelet_version.contains("vk-rs"));
    assert!(
        status
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port
            > 0
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = leases.get(&name).await.unwrap().spec.unwrap();
    assert_eq!(first.lease_duration_seconds, Some(40));
    let t0 = first.renew_time.unwrap();
    wait_until("lease renewTime advances", Duration::from_secs(25), || {
        let leases = leases.clone();
        let name = name.clone();
        let t0 = t0.clone();
        async move {
            leases
                .get(&name)
                .await
                .ok()
                .and_then(|l| l.spec?.renew_time)
                .is_some_and(|t| t.0 > t0.0)
        }
    })
    .await;
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn disable_taint_and_custom_taint() {
    let cluster = TestCluster::get().await.expect("test cluster");
    let client = cluster.client();
    let name = unique_name("taint");
    let node = MockNode::start(
        &cluster,
        &name,
        &["--disable-taint", "--node-label", "zone=edge-1"],
    );
    wait_until("node registered", Duration::from_secs(15), || {
        let c = client.clone();
        let n = name.clone();
        async move { node_ready(&c, &n).await.is_some() }
    })
    .await;
    let n: Node = Api::all(client.clone()).get(&name).await.unwrap();
    let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        !taints
            .iter()
            .any(|t| t.key == "virtual-kubelet.io/provider"),
        "{taints:?}"
    );
    assert_eq!(
        n.metadata.labels.unwrap().get("zone").map(String::as_str),
        Some("edge-1")
    );
    drop(node);
    delete_node(&client, &name).await;
}

#[tokio::test]
async fn deployment_of_ten_runs_with_distinct_ips_and_scales_to_zero() {
    let (cluster, ns, node) = ready_node("deploy", &[]).await;
    let client = cluster.client();
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 10,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node.name },
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
                    "containers": [{ "name": "web", "image": "nginx" }]
                }
            }
        }
    });
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns.name());
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(deploy).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let list = wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(60),
        "10 pods Running and Ready",
        |list| list.len() == 10 && list.iter().all(|p| phase(p) == "Running" && is_ready(p)),
    )
    .await;
    let mut ips: Vec<String> = list
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 10, "distinct pod IPs: {ips:?}");
    assert!(
        list.iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node.name.as_str()))
    );
    assert_eq!(
        node.running_pods()
            .await
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.name()))
            .count(),
        10
    );

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
        )
        .await
        .unwrap();
    wait_until(
        "every pod gone from the API and the backend",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            let node = &node;
            let ns = ns.name().to_string();
            async move {
                let api_empty = pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.is_empty())
                    .unwrap_or(false);
                let backend_empty = !node
                    .running_pods()
                    .await
                    .iter()
                    .any(|p| p.namespace().as_deref() == Some(ns.as_str()));
                api_empty && backend_empty
            }
        },
    )
    .await;
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn missing_mandatory_config_map_blocks_until_created_optional_does_not() {
    let (cluster, ns, node) = ready_node("cmref", &[]).await;
    let client = cluster.client();
    let mut p = pod("needs-cm", &node.name);
    p["spec"]["containers"][0]["env"] = json!([{ "name": "LEVEL", "valueFrom": { "configMapKeyRef": { "name": "app-config", "key": "level" } } }]);
    create_pod(&client, ns.name(), p).await;
    let mut o = pod("optional-cm", &node.name);
    o["spec"]["containers"][0]["envFrom"] =
        json!([{ "configMapRef": { "name": "absent", "optional": true } }]);
    create_pod(&client, ns.name(), o).await;

    wait_running(&client, ns.name(), "optional-cm", RUNNING_WITHIN).await;
    let events = events(&client, ns.name()).await;
    assert!(
        events
            .iter()
            .any(|(reason, obj)| reason == "MandatoryConfigMapNotFound" && obj == "needs-cm"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(reason, obj)| reason == "OptionalConfigMapNotFound" && obj == "optional-cm"),
        "{events:?}"
    );
    assert!(
        node.backend_pod(ns.name(), "needs-cm").await.is_none(),
        "nothing created in the backend"
    );
    let pending = Api::<Pod>::namespaced(client.clone(), ns.name())
        .get("needs-cm")
        .await
        .unwrap();
    assert_ne!(phase(&pending), "Running");

    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "app-config" }, "data": { "level": "debug" } }),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    wait_pod(
        &client,
        ns.name(),
        "needs-cm",
        Duration::from_secs(60),
        "Running after the ConfigMap exists",
        |p| phase(p) == "Running",
    )
    .await;
    let backend = node
        .backend_pod(ns.name(), "needs-cm")
        .await
        .expect("in the backend");
    assert!(env_of(&backend).contains(&("LEVEL".into(), "debug".into())));
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn env_is_resolved_before_the_backend_sees_it() {
    let (cluster, ns, node) = ready_node("env", &[]).await;
    let client = cluster.client();
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "cfg" }, "data": { "A": "1", "B": "2" } }),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let mut p = pod("env", &node.name);
    p["metadata"]["labels"]["tier"] = json!("backend");
    p["spec"]["containers"][0]["resources"] =
        json!({ "limits": { "memory": "64Mi", "cpu": "500m" } });
    p["spec"]["containers"][0]["envFrom"] =
        json!([{ "prefix": "CFG_", "configMapRef": { "name": "cfg" } }]);
    p["spec"]["containers"][0]["env"] = json!([
        { "name": "MY_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "MY_NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
        { "name": "TIER", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['tier']" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        { "name": "HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
        { "name": "MEM_MI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
        { "name": "CPU_M", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "divisor": "1m" } } },
        { "name": "GREETING", "value": "hello $(MY_NAME) in $(MY_NS) with $(CFG_A)" }
    ]);
    create_pod(&client, ns.name(), p).await;
    let api_pod = wait_running(&client, ns.name(), "env", RUNNING_WITHIN).await;
    let backend = node
        .backend_pod(ns.name(), "env")
        .await
        .expect("in the backend");
    let env = env_of(&backend);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let pod_ip = api_pod.status.unwrap().pod_ip.unwrap();
    assert_eq!(get("MY_NAME").as_deref(), Some("env"));
    assert_eq!(get("MY_NS").as_deref(), Some(ns.name()));
    assert_eq!(get("TIER").as_deref(), Some("backend"));
    assert_eq!(
        get("POD_IP"),
        Some(pod_ip),
        "status.podIP is the pod's real IP"
    );
    assert_eq!(get("HOST_IP").as_deref(), Some("127.0.0.1"));
    assert_eq!(get("MEM_MI").as_deref(), Some("64"));
    assert_eq!(get("CPU_M").as_deref(), Some("500"));
    assert_eq!(get("CFG_A").as_deref(), Some("1"));
    assert_eq!(get("CFG_B").as_deref(), Some("2"));
    assert_eq!(
        get("GREETING").as_deref(),
        Some(format!("hello env in {} with 1", ns.name()).as_str())
    );
    assert!(
        get("KUBERNETES_SERVICE_HOST").is_some(),
        "service links: {env:?}"
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn graceful_forced_and_same_name_deletion() {
    let (cluster, ns, node) = ready_node("delete", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());

    // Graceful: the backend takes 3 s to stop; the object stays until it confirms.
    let mut slow = pod("slow", &node.name);
    slow["metadata"]["annotations"] =
        json!({ "mock.vk-rs.io/script": "{\"terminationSeconds\": 3}" });
    create_pod(&client, ns.name(), slow).await;
    wait_running(&client, ns.name(), "slow", RUNNING_WITHIN).await;
    let asked = Instant::now();
    pods.delete(
        "slow",
        &DeleteParams {
            grace_period_seconds: Some(30),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = pods.get_opt("slow").await.unwrap();
    assert!(
        during.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        "object kept while the backend stops"
    );
    wait_until("graceful delete completes", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move { pods.get_opt("slow").await.ok().flatten().is_none() }
    })
    .await;
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "object gone only after the backend confirmed"
    );
    assert!(node.backend_pod(ns.name(), "slow").await.is_none());

    // Forced: gone from the backend within 2 s.
    create_pod(&client, ns.name(), pod("forced", &node.name)).await;
    wait_running(&client, ns.name(), "forced", RUNNING_WITHIN).await;
    pods.delete(
        "forced",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let t = Instant::now();
    wait_until(
        "force-deleted pod gone from the backend",
        Duration::from_secs(2),
        || {
            let node = &node;
            let ns = ns.name().to_string();
            async move { node.backend_pod(&ns, "forced").await.is_none() }
        },
    )
    .await;
    assert!(t.elapsed() <= Duration::from_secs(2));

    // Delete and recreate with the same name: the new pod keeps running.
    create_pod(&client, ns.name(), pod("same", &node.name)).await;
    let old = wait_running(&client, ns.name(), "same", RUNNING_WITHIN).await;
    pods.delete(
        "same",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_until("old object gone", Duration::from_secs(10), || {
        let pods = pods.clone();
        async move { pods.get_opt("same").await.ok().flatten().is_none() }
    })
    .await;
    create_pod(&client, ns.name(), pod("same", &node.name)).await;
    let new = wait_running(&client, ns.name(), "same", RUNNING_WITHIN).await;
    assert_ne!(old.uid(), new.uid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = pods.get("same").await.unwrap();
    assert_eq!(still.uid(), new.uid());
    assert_eq!(phase(&still), "Running");
    assert!(still.metadata.deletion_timestamp.is_none());
    let backend = node
        .backend_pod(ns.name(), "same")
        .await
        .expect("new pod in the backend");
    assert_eq!(backend.uid(), new.uid(), "backend holds the new pod's UID");
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn sigkill_restart_adopts_without_recreating() {
    let (cluster, ns, mut node) = ready_node("adopt", &[]).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for i in 0..20 {
        create_pod(&client, ns.name(), pod(&format!("p{i}"), &node.name)).await;
    }
    wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(60),
        "20 pods Running",
        |l| l.len() == 20 && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the state file catch up
    let before = pods.list(&ListParams::default()).await.unwrap().items;
    node.kill();
    // While it is down: delete one pod (it stays Terminating, nobody confirms).
    pods.delete("p0", &DeleteParams::default()).await.unwrap();
    node.restart();
    wait_until(
        "deleted-while-down pod removed everywhere",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            let node = &node;
            let ns = ns.name().to_string();
            async move {
                pods.get_opt("p0").await.ok().flatten().is_none()
                    && node.backend_pod(&ns, "p0").await.is_none()
            }
        },
    )
    .await;
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(
        log.contains("adopted the backend's pods") && log.contains("pods=20"),
        "{}",
        node.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(after.len(), 19);
    for p in &after {
        let old = before
            .iter()
            .find(|b| b.name_any() == p.name_any())
            .unwrap();
        assert_eq!(phase(p), "Running");
        assert_eq!(
            p.status.as_ref().unwrap().pod_ip,
            old.status.as_ref().unwrap().pod_ip,
            "same workload, same IP"
        );
        assert_eq!(
            p.status.as_ref().unwrap().start_time,
            old.status.as_ref().unwrap().start_time
        );
    }
    let events = events(&client, ns.name()).await;
    let creates = events
        .iter()
        .filter(|(r, _)| r == "ProviderCreateSuccess")
        .count();
    assert_eq!(creates, 20, "no pod created twice: {events:?}");
    delete_node(&client, &node.name).await;
}

/// Pod `a` is created and deleted, then pod `b` created; returns the
/// namespace's events once `b`'s `ProviderCreateSuccess` is there (success
/// events are sent in order, so `a`'s would have been sent before it).
async fn events_of_a_deleted_and_a_live_pod(prefix: &str, extra: &[&str]) -> Vec<(String, String)> {
    let (cluster, ns, node) = ready_node(prefix, extra).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for name in ["a", "b"] {
        create_pod(&client, ns.name(), pod(name, &node.name)).await;
        wait_running(&client, ns.name(), name, RUNNING_WITHIN).await;
        if name == "a" {
            // Graceful: the kubelet confirms it (the path with the event).
            pods.delete("a", &DeleteParams::default()).await.unwrap();
            wait_until("pod a gone", Duration::from_secs(20), || {
                let pods = pods.clone();
                async move { pods.get_opt("a").await.ok().flatten().is_none() }
            })
            .await;
        }
    }
    let created = |evs: &[(String, String)], name: &str| {
        evs.iter()
            .any(|(r, n)| r == "ProviderCreateSuccess" && n == name)
    };
    wait_until("b's ProviderCreateSuccess", Duration::from_secs(40), || {
        let client = client.clone();
        let ns = ns.name().to_string();
        async move { created(&events(&client, &ns).await, "b") }
    })
    .await;
    // The events in flight beside b's (several are sent at once).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let evs = events(&client, ns.name()).await;
    assert!(created(&evs, "a"), "{evs:?}");
    delete_node(&client, &node.name).await;
    evs
}

#[tokio::test]
async fn by_default_no_success_event_names_a_deleted_pod() {
    let evs = events_of_a_deleted_and_a_live_pod("evlive", &[]).await;
    assert!(
        !evs.iter().any(|(r, _)| r == "ProviderDeleteSuccess"),
        "{evs:?}"
    );
}

#[tokio::test]
async fn success_events_all_records_the_delete_as_upstream_does() {
    let evs = events_of_a_deleted_and_a_live_pod("evall", &["--success-events", "all"]).await;
    assert!(
        evs.iter()
            .any(|(r, n)| r == "ProviderDeleteSuccess" && n == "a"),
        "{evs:?}"
    );
}

#[tokio::test]
async fn backend_outage_turns_the_node_not_ready_and_back() {
    let (cluster, _ns, node) = ready_node("outage", &[]).await;
    let client = cluster.client();
    std::fs::write(&node.unhealthy_file, b"down").unwrap();
    wait_until("node NotReady", Duration::from_secs(50), || {
        let c = client.clone();
        let n = node.name.clone();
        async move {
            node_ready(&c, &n)
                .await
                .is_some_and(|(s, r)| s == "False" && r.as_deref() == Some("ProviderUnhealthy"))
        }
    })
    .await;
    std::fs::remove_file(&node.unhealthy_file).unwrap();
    wait_node_ready(&client, &node.name, Duration::from_secs(50)).await;
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn node_deleted_externally_is_registered_again() {
    let (cluster, _ns, node) = ready_node("rereg", &[]).await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let old_uid = nodes.get(&node.name).await.unwrap().uid();
    nodes
        .delete(&node.name, &DeleteParams::default())
        .await
        .unwrap();
    wait_until("node registered again", Duration::from_secs(10), || {
        let nodes = nodes.clone();
        let name = node.name.clone();
        let old_uid = old_uid.clone();
        async move {
            nodes
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| n.uid() != old_uid)
        }
    })
    .await;
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn scripted_exit_codes_follow_the_restart_policy() {
    let (cluster, ns, node) = ready_node("exit", &[]).await;
    let client = cluster.client();
    let script = json!({ "mock.vk-rs.io/script": "{\"exitAfterSeconds\": 1, \"exitCode\": 1}" });
    let mut never = pod("never", &node.name);
    never["metadata"]["annotations"] = script.clone();
    never["spec"]["restartPolicy"] = json!("Never");
    create_pod(&client, ns.name(), never).await;
    let mut onfail = pod("onfailure", &node.name);
    onfail["metadata"]["annotations"] = script;
    onfail["spec"]["restartPolicy"] = json!("OnFailure");
    create_pod(&client, ns.name(), onfail).await;

    let failed = wait_pod(
        &client,
        ns.name(),
        "never",
        Duration::from_secs(20),
        "Failed",
        |p| phase(p) == "Failed",
    )
    .await;
    let cs = &failed.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );

    wait_pod(
        &client,
        ns.name(),
        "onfailure",
        Duration::from_secs(30),
        "restartCount >= 2",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count >= 2)
        },
    )
    .await;
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn a_backend_that_does_not_push_is_polled_for_every_change() {
    // --poll-status: the mock pushes nothing; the core lists it every second.
    let (cluster, ns, node) = ready_node("poll", &["--poll-status", "1s"]).await;
    let client = cluster.client();
    let mut p = pod("polled", &node.name);
    p["metadata"]["annotations"] = json!({
        "mock.vk-rs.io/script": "{\"startDelaySeconds\": 2, \"exitAfterSeconds\": 2, \"exitCode\": 3}"
    });
    p["spec"]["restartPolicy"] = json!("Never");
    create_pod(&client, ns.name(), p).await;
    wait_running(&client, ns.name(), "polled", RUNNING_WITHIN).await;
    let failed = wait_pod(
        &client,
        ns.name(),
        "polled",
        Duration::from_secs(20),
        "Failed",
        |p| phase(p) == "Failed",
    )
    .await;
    let cs = &failed.status.unwrap().container_statuses.unwrap()[0];
    let exit = cs
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .exit_code;
    assert_eq!(exit, 3);
    let url = format!("http://127.0.0.1:{}/metrics", node.metrics_port);
    let metrics = http_get(&url).await.unwrap();
    let lists: f64 = metrics
        .lines()
        .find(|l| l.starts_with("vk_backend_calls_total{operation=\"list\",result=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(lists >= 3.0, "the status came from polls: {lists} lists");
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn projected_token_authenticates_as_the_pods_service_account() {
    let (cluster, ns, node) = ready_node("token", &[]).await;
    let client = cluster.client();
    create_pod(&client, ns.name(), pod("tok", &node.name)).await;
    let p = wait_running(&client, ns.name(), "tok", RUNNING_WITHIN).await;
    let vol = p
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name.starts_with("kube-api-access-")))
        .map(|v| v.name.clone())
        .expect("kube-api-access volume injected by the apiserver");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = node.state(&node.name);
    let stored = state
        .as_array()
        .and_then(|a| a.iter().find(|e| e["key"]["name"] == "tok"))
        .expect("pod in the state file")
        .clone();
    use base64::Engine as _;
    let b64 = |s: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    let token = String::from_utf8(b64(&stored["volumes"][&vol]["token"])).unwrap();
    let ca = String::from_utf8(b64(&stored["volumes"][&vol]["ca.crt"])).unwrap();
    let namespace = String::from_utf8(b64(&stored["volumes"][&vol]["namespace"])).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert_eq!(namespace, ns.name());

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: None,
        },
        ..Default::default()
    };
    let res = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    let status = res.status.unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:default", ns.name()).as_str())
    );
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["tok".to_string()]),
        "bound to the pod"
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn twenty_nodes_in_one_process() {
    let (cluster, ns) = cluster_and_namespace("many").await;
    let client = cluster.client();
    let prefix = unique_name("many");
    let node = MockNode::start(&cluster, &prefix, &["--nodes", "20"]);
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i}")).collect();
    wait_until("20 nodes Ready", Duration::from_secs(60), || {
        let c = client.clone();
        let names = names.clone();
        async move {
            for n in &names {
                if node_ready(&c, n).await.is_none_or(|(s, _)| s != "True") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "spread" },
        "spec": {
            "replicas": 40,
            "selector": { "matchLabels": { "app": "spread" } },
            "template": {
                "metadata": { "labels": { "app": "spread" } },
                "spec": {
                    "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                        { "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": names }] }
                    ] } } },
                    "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": { "matchLabels": { "app": "spread" } } }],
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
                    "containers": [{ "name": "c", "image": "nginx" }]
                }
            }
        }
    });
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns.name())
        .create(
            &PostParams::default(),
            &serde_json::from_value(deploy).unwrap(),
        )
        .await
        .unwrap();
    let l = wait_pods(
        &client,
        ns.name(),
        &ListParams::default(),
        Duration::from_secs(90),
        "40 pods Running over 20 nodes",
        |l| l.len() == 40 && l.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    let mut used: Vec<String> = l
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 20, "spread over every node: {used:?}");
    drop(node);
    for n in &names {
        delete_node(&client, n).await;
    }
}

#[tokio::test]
async fn bad_config_and_bad_flags_exit_2_with_one_line() {
    let bin = vk_mock_bin();
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), r#"{"n": {"cpu": "lots"}}"#).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["--provider-config".into(), cfg.path().display().to_string()],
        vec![
            "--provider-config".into(),
            "/nonexistent/config.json".into(),
        ],
        vec!["--no-such-flag".into()],
        vec!["--nodes".into(), "zero".into()],
        vec!["--full-resync-period".into(), "soon".into()],
        vec!["--pod-cidr".into(), "10.0.0.0/99".into()],
        vec!["--success-events".into(), "some".into()],
    ];
    for args in cases {
        let out = std::process::Command::new(&bin)
            .args(&args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("vk-mock: "), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn malformed_and_rejected_pods_never_crash_the_kubelet() {
    let (cluster, ns, mut node) = ready_node("bad", &[]).await;
    let client = cluster.client();
    // Rejected by the backend as invalid: Failed with ProviderFailed.
    let mut invalid = pod("invalid", &node.name);
    invalid["metadata"]["annotations"] =
        json!({ "mock.vk-rs.io/script": "{\"failCreate\": \"invalid\"}" });
    create_pod(&client, ns.name(), invalid).await;
    // Malformed script annotations, absurd values, unknown fields.
    let bodies = [
        "{",
        "[]",
        "{\"exitCode\": \"x\"}",
        "{\"startDelaySeconds\": -5}",
        "{\"startDelaySeconds\": 1e300}",
        "null",
    ];
    for (i, b) in bodies.iter().enumerate() {
        let mut p = pod(&format!("malformed-{i}"), &node.name);
        p["metadata"]["annotations"] = json!({ "mock.vk-rs.io/script": b });
        create_pod(&client, ns.name(), p).await;
    }
    // Retryable failure: stays Pending with an event, is retried.
    let mut unavailable = pod("unavailable", &node.name);
    unavailable["metadata"]["annotations"] =
        json!({ "mock.vk-rs.io/script": "{\"failCreate\": \"unavailable\"}" });
    create_pod(&client, ns.name(), unavailable).await;
    // Env pointing at a container that does not exist.
    let mut badref = pod("badref", &node.name);
    badref["spec"]["containers"][0]["env"] = json!([{ "name": "X", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "containerName": "main" } } }]);
    create_pod(&client, ns.name(), badref).await;

    let failed = wait_pod(
        &client,
        ns.name(),
        "invalid",
        Duration::from_secs(20),
        "Failed",
        |p| phase(p) == "Failed",
    )
    .await;
    assert_eq!(
        failed.status.as_ref().unwrap().reason.as_deref(),
        Some("ProviderFailed")
    );
    for i in 0..bodies.len() {
        let name = format!("malformed-{i}");
        let p = wait_pod(
            &client,
            ns.name(),
            &name,
            Duration::from_secs(20),
            "Failed",
            |p| phase(p) == "Failed",
        )
        .await;
        assert_eq!(
            p.status.unwrap().reason.as_deref(),
            Some("ProviderFailed"),
            "{name}"
        );
    }
    wait_running(&client, ns.name(), "badref", RUNNING_WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let un = Api::<Pod>::namespaced(client.clone(), ns.name())
        .get("unavailable")
        .await
        .unwrap();
    assert_eq!(phase(&un), "Pending");
    let events = events(&client, ns.name()).await;
    assert!(
        events
            .iter()
            .filter(|(r, o)| r == "ProviderCreateFailed" && o == "unavailable")
            .count()
            >= 1,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, o)| r == "ProviderCreateFailed" && o == "invalid")
    );
    assert!(node.try_wait().is_none(), "vk-mock is still running");
    assert!(
        !std::fs::read_to_string(&node.log)
            .unwrap_or_default()
            .contains("panicked")
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_leaves_backend_pods_alone() {
    let (cluster, ns, mut node) = ready_node("sigterm", &[]).await;
    let client = cluster.client();
    create_pod(&client, ns.name(), pod("keep", &node.name)).await;
    wait_running(&client, ns.name(), "keep", RUNNING_WITHIN).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = node
        .terminate(Duration::from_secs(15))
        .expect("vk-mock exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let state = node.state(&node.name);
    assert!(
        state
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["key"]["name"] == "keep")),
        "the backend still holds the pod: {state}"
    );
    let p = Api::<Pod>::namespaced(client.clone(), ns.name())
        .get("keep")
        .await
        .unwrap();
    assert!(
        p.metadata.deletion_timestamp.is_none(),
        "the API pod is untouched"
    );
    delete_node(&client, &node.name).await;
}
