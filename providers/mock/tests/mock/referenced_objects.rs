//! Pods follow the objects they reference, against the real local control
//! plane: volume files follow their ConfigMap (and the pod's labels) without
//! touching the backend when nothing changed, and image pull secrets reach the
//! backend as registry credentials without blocking the pod when one is missing.

use std::time::{Duration, Instant};

use crate::support::*;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The sum of a Prometheus counter over the series whose labels include `labels`.
fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

async fn metrics(node: &MockNode) -> String {
    http_get(&format!("http://127.0.0.1:{}/metrics", node.metrics_port))
        .await
        .expect("metrics endpoint answers")
}

/// Backend update calls, and the API writes that concern pods (status, deletes, events).
async fn updates_and_pod_writes(node: &MockNode) -> (f64, f64) {
    let m = metrics(node).await;
    // Calls that change a running workload: a new spec or new volume files.
    let updates = counter(&m, "vk_backend_calls_total", &[("operation", "update")])
        + counter(&m, "vk_backend_calls_total", &[("operation", "refresh")]);
    let writes: f64 = ["pods", "pods/status", "events"]
        .iter()
        .flat_map(|r| {
            ["create", "patch", "update", "delete"]
                .map(|v| counter(&m, "vk_api_calls_total", &[("verb", v), ("resource", r)]))
        })
        .sum();
    (updates, writes)
}

/// A file of one volume of pod `name` as the mock backend holds it (state file).
fn backend_file(node: &MockNode, name: &str, volume: &str, path: &str) -> Option<String> {
    let state = node.state(&node.name);
    let stored = state
        .as_array()?
        .iter()
        .find(|e| e["key"]["name"] == name)?
        .clone();
    let b64 = stored["volumes"][volume][path].as_str()?.to_string();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

async fn wait_backend_file(node: &MockNode, name: &str, volume: &str, path: &str, want: &str) {
    let waited = wait_for(
        &format!("{volume}/{path} of pod {name} in the backend to be {want:?}"),
        Duration::from_secs(60),
        || async {
            Ok((backend_file(node, name, volume, path).as_deref() == Some(want)).then_some(()))
        },
    )
    .await;
    if let Err(err) = waited {
        panic!(
            "{err:#}; it is {:?}",
            backend_file(node, name, volume, path)
        );
    }
}

#[tokio::test]
async fn volume_files_follow_their_config_map_and_the_pods_labels() {
    let (cluster, ns, node) = ready_node("volrefresh", &["--volume-refresh-period", "2s"]).await;
    let client = cluster.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "cfg" }, "data": { "app.conf": "v=1" } }),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    // No volume the core materialises: never refreshed.
    let mut plain = pod("plain", &node.name);
    plain["spec"]["automountServiceAccountToken"] = json!(false);
    create_pod(&client, ns.name(), plain).await;
    // A configMap volume and a downwardAPI file of the labels, next to the
    // kube-api-access volume the apiserver adds.
    let mut mounted = pod("mounted", &node.name);
    mounted["spec"]["volumes"] = json!([
        { "name": "conf", "configMap": { "name": "cfg" } },
        { "name": "meta", "downwardAPI": { "items": [
            { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }
        ] } }
    ]);
    create_pod(&client, ns.name(), mounted).await;
    for name in ["plain", "mounted"] {
        wait_running(&client, ns.name(), name, RUNNING_WITHIN).await;
    }
    wait_backend_file(&node, "mounted", "conf", "app.conf", "v=1").await;
    wait_backend_file(&node, "mounted", "meta", "labels", "app=\"mounted\"").await;

    // Several refresh periods with nothing changed: the files are re-read
    // (ConfigMap reads go on) but neither the backend nor the API is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (updates_before, writes_before) = updates_and_pod_writes(&node).await;
    let cm_reads_before = counter(
        &metrics(&node).await,
        "vk_api_calls_total",
        &[("verb", "get"), ("resource", "configmaps")],
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (updates_after, writes_after) = updates_and_pod_writes(&node).await;
    let cm_reads_after = counter(
        &metrics(&node).await,
        "vk_api_calls_total",
        &[("verb", "get"), ("resource", "configmaps")],
    );
    assert_eq!(
        updates_before, 0.0,
        "no update_pod or refresh_volumes for pods whose inputs never changed"
    );
    assert_eq!(
        updates_after,
        updates_before,
        "a refresh that finds the same files calls no backend\n{}",
        node.log_tail()
    );
    assert_eq!(
        writes_after, writes_before,
        "a refresh that finds the same files writes nothing to the API"
    );
    assert!(
        cm_reads_after > cm_reads_before,
        "the ConfigMap is re-read while nothing changes ({cm_reads_before} → {cm_reads_after})"
    );

    // The ConfigMap changes: the backend's file follows within the minute.
    let changed = Instant::now();
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "app.conf": "v=2" } })),
    )
    .await
    .unwrap();
    wait_backend_file(&node, "mounted", "conf", "app.conf", "v=2").await;
    eprintln!(
        "ConfigMap change reached the backend in {:?}",
        changed.elapsed()
    );
    let (updates, _) = updates_and_pod_writes(&node).await;
    assert!(updates >= 1.0, "the new file went through refresh_volumes");

    // A label change shows in the downwardAPI file with the pod's own event.
    Api::<Pod>::namespaced(client.clone(), ns.name())
        .patch(
            "mounted",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "tier": "web" } } })),
        )
        .await
        .unwrap();
    wait_backend_file(
        &node,
        "mounted",
        "meta",
        "labels",
        "app=\"mounted\"\ntier=\"web\"",
    )
    .await;

    // As for token renewals, refreshed files are not a spec update: no
    // ProviderUpdateSuccess (upstream records it for spec changes only).
    let events = events(&client, ns.name()).await;
    assert!(
        !events.iter().any(|(r, _)| r == "ProviderUpdateSuccess"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .filter(|(r, _)| r == "ProviderCreateSuccess")
            .count()
            == 2,
        "{events:?}"
    );
    delete_node(&client, &node.name).await;
}

#[tokio::test]
async fn image_pull_secrets_reach_the_backend_and_a_missing_one_does_not_block() {
    let (cluster, ns, node) = ready_node("pullsecret", &[]).await;
    let client = cluster.client();
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:pw");
    let config = json!({ "auths": {
        "127.0.0.1:35000": { "auth": auth },
        "https://index.docker.io/v1/": { "username": "hub", "password": "x" }
    } })
    .to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "regcred" },
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": { ".dockerconfigjson": config }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let mut p = pod("pulls", &node.name);
    p["spec"]["imagePullSecrets"] = json!([{ "name": "regcred" }, { "name": "absent" }]);
    p["spec"]["containers"] = json!([
        { "name": "main", "image": "127.0.0.1:35000/x/y:1" },
        { "name": "hub", "image": "busybox" },
        { "name": "other", "image": "quay.io/app/app:2" }
    ]);
    create_pod(&client, ns.name(), p).await;
    wait_pod(
        &client,
        ns.name(),
        "pulls",
        Duration::from_secs(20),
        "Running although one pull secret is missing",
        |p| phase(p) == "Running",
    )
    .await;
    let events = events(&client, ns.name()).await;
    assert!(
        events
            .iter()
            .any(|(r, o)| r == "FailedToRetrieveImagePullSecret" && o == "pulls"),
        "{events:?}"
    );
    let pulls = wait_for("pod in the state file", Duration::from_secs(10), || async {
        let state = node.state(&node.name);
        Ok(state
            .as_array()
            .and_then(|a| a.iter().find(|e| e["key"]["name"] == "pulls"))
            .map(|e| e["pulls"].clone()))
    })
    .await
    .expect("pod in the state file");
    assert_eq!(
        pulls,
        json!({ "main": "127.0.0.1:35000", "hub": "https://index.docker.io/v1/" }),
        "each image gets its registry's credential, quay.io none"
    );
    delete_node(&client, &node.name).await;
}

/// `vk_backend_pods` of a process serving two nodes.
async fn backend_pods(node: &MockNode) -> f64 {
    counter(&metrics(node).await, "vk_backend_pods", &[])
}

#[tokio::test]
async fn the_backend_pods_gauge_counts_the_pods_of_every_node_of_the_process() {
    let (cluster, ns) = cluster_and_namespace("gauge").await;
    let node = MockNode::start(&cluster, &unique_name("gauge"), &["--nodes", "2"]);
    let names = [format!("{}-0", node.name), format!("{}-1", node.name)];
    for n in &names {
        wait_node_ready(&cluster.client(), n, Duration::from_secs(20)).await;
    }
    let client = cluster.client();
    for (pod_name, node_name) in [("a", &names[0]), ("b", &names[1]), ("c", &names[1])] {
        create_pod(&client, ns.name(), pod(pod_name, node_name)).await;
        wait_running(&client, ns.name(), pod_name, RUNNING_WITHIN).await;
    }
    let node = &node;
    wait_until(
        "3 backend pods on the gauge",
        Duration::from_secs(10),
        move || async move { backend_pods(node).await == 3.0 },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    pods.delete("a", &Default::default()).await.unwrap();
    let pods = &pods;
    wait_until(
        "pod a gone and 2 on the gauge",
        Duration::from_secs(30),
        move || async move {
            pods.get_opt("a").await.unwrap().is_none() && backend_pods(node).await == 2.0
        },
    )
    .await;
    for n in &names {
        delete_node(&client, n).await;
    }
}
