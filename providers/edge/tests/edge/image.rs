//! The `vk-edge` image: built by `cargo xtask build-images` (every provider
//! in one cargo invocation), loaded into rootful podman and run.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use vk_test_support::leader::{ReadyWatch, holder, mock_state_pods};
use vk_test_support::{CsrApprover, KubernetesService, provider_image, wait_pods};

use crate::support::*;

#[tokio::test]
async fn the_image_loads_runs_and_declares_its_user_entrypoint_and_labels() {
    let Some(image) = provider_image("edge").await else {
        return;
    };
    image.assert_runs_and_declares();
}

/// `kubectl rollout status`; on failure, the chart's pods and their logs.
async fn rollout_status(cluster: &TestCluster, ns: &str, deployment: &str, release: &str) {
    let (code, _, err) = kubectl(
        cluster,
        &["-n", ns, "rollout", "status", deployment, "--timeout=180s"],
    )
    .await;
    if code == 0 {
        return;
    }
    let selector = format!("app.kubernetes.io/instance={release}");
    let (_, pods, _) = kubectl(
        cluster,
        &["-n", ns, "get", "pods", "-o", "wide", "-l", &selector],
    )
    .await;
    let (_, logs, _) = kubectl(
        cluster,
        &["-n", ns, "logs", "-l", &selector, "--tail=30", "--prefix"],
    )
    .await;
    let (_, previous, _) = kubectl(
        cluster,
        &[
            "-n",
            ns,
            "logs",
            "-l",
            &selector,
            "--tail=30",
            "--prefix",
            "--previous",
        ],
    )
    .await;
    panic!("rollout of {deployment}: {err}\n{pods}\nlogs:\n{logs}\nprevious:\n{previous}");
}

/// The `vk-mock` chart as an operator installs it (node identity, two
/// replicas with leader election, the mock's state on a volume the replicas
/// share), its pods run by this vk-edge node in podman: `kubectl rollout
/// restart` of its Deployment with 50 pods on the virtual node hands the
/// node from replica to replica with no NotReady and no pod recreated.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_the_mock_charts_deployment_recreates_no_pod() {
    let Some(image) = provider_image("mock").await else {
        return;
    };
    // The mock's state, shared by the replicas (a hostPath here, a
    // ReadWriteMany claim in a real cluster), owned by the image's user.
    let state = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(state.path(), Some(65532), Some(65532)).expect("chown");
    let state_dir = state.path().to_string_lossy().to_string();
    let (cluster, ns, edge) = rig!("edge-roll", &["--allow-host-path", &state_dir]);
    let client = cluster.client();
    let n = ns.name();
    let service = match KubernetesService::start(&cluster).await {
        Ok(s) => s,
        Err(e) => panic!("the kubernetes Service for the chart's pods: {e:#}"),
    };

    let node = unique_name("vk-roll");
    let release = node.clone();
    let fullname = format!("{release}-vk-mock");
    let (repository, tag) = image
        .reference
        .rsplit_once(':')
        .expect("the image reference has a tag");
    let values = json!({
        "nodeName": node,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "identity": {"mode": "node", "apiServer": service.url()},
        "nodeSelector": {"kubernetes.io/hostname": edge.name},
        "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        "extraArgs": ["--state-dir=/state"],
        "extraVolumes": [{"name": "state", "hostPath": {"path": state_dir, "type": "Directory"}}],
        "extraVolumeMounts": [{"name": "state", "mountPath": "/state"}],
        "logFormat": "text",
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).expect("write values");
    let manifest = vk_test_support::chart::template(
        "vk-mock",
        &release,
        n,
        &["-f", &values_file.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("helm template: {e}"));
    // Cluster-scoped objects and those outside the namespace go with the test.
    let rendered = vk_test_support::chart::objects(&manifest);
    let _cleanup: Vec<_> = rendered
        .iter()
        .filter(|o| o["metadata"]["namespace"].as_str() != Some(n))
        .map(|o| {
            cluster.delete_on_drop(
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .chain([
            cluster.delete_on_drop("node", None, &node),
            cluster.delete_on_drop("lease", Some("kube-node-lease"), &node),
        ])
        .collect();
    let _approver = CsrApprover::start(&cluster, &node, None);
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, &manifest).expect("write manifest");
    kubectl_ok(&cluster, &["apply", "-f", &manifest_file.to_string_lossy()]).await;
    let deployment = format!("deployment/{fullname}");
    rollout_status(&cluster, n, &deployment, &release).await;
    wait_node_ready(&client, &node, Duration::from_secs(60)).await;

    // 50 pods on the virtual node.
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);
    let workload: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "work"},
        "spec": {
            "replicas": 50,
            "selector": {"matchLabels": {"app": "work"}},
            "template": {
                "metadata": {"labels": {"app": "work"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "app", "image": vk_test_support::BUSYBOX_IMAGE}],
                },
            },
        },
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &workload)
        .await
        .expect("create the workload");
    let on_node = ListParams::default().labels("app=work");
    let running = |pods: &[Pod]| pods.len() == 50 && pods.iter().all(|p| phase(p) == "Running");
    let before = wait_pods(
        &client,
        n,
        &on_node,
        Duration::from_secs(120),
        "50 Running",
        running,
    )
    .await;
    let uids = |pods: &[Pod]| -> BTreeMap<String, String> {
        pods.iter()
            .map(|p| {
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    p.metadata.uid.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let before = uids(&before);
    let backend_before = wait_for(
        "the 50 pods in the mock's state",
        Duration::from_secs(10),
        || async {
            let b = mock_state_pods(state.path(), &node);
            Ok((b.len() == 50).then_some(b))
        },
    )
    .await
    .expect("the mock's state file");
    let chart_pods = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let old: Vec<String> = pods
        .list(&chart_pods)
        .await
        .expect("list")
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(old.len(), 2, "two replicas: {old:?}");

    // The rolling restart.
    let watch = ReadyWatch::start(&client, &node);
    let started = std::time::Instant::now();
    kubectl_ok(&cluster, &["-n", n, "rollout", "restart", &deployment]).await;
    rollout_status(&cluster, n, &deployment, &release).await;
    eprintln!("rollout restart done in {:?}", started.elapsed());
    let new = wait_pods(
        &client,
        n,
        &chart_pods,
        Duration::from_secs(60),
        "only the new replicas",
        |p| {
            p.len() == 2
                && p.iter().all(|p| {
                    !old.contains(&p.metadata.name.clone().unwrap_or_default()) && is_ready(p)
                })
        },
    )
    .await;
    let new: Vec<String> = new.iter().filter_map(|p| p.metadata.name.clone()).collect();
    // The node changed hands: a new replica leads (its identity starts
    // with its hostname, the pod's name).
    let lease = format!("vk-rs-{node}");
    let leader = wait_for("a new replica leading", Duration::from_secs(30), || async {
        Ok(holder(&client, n, &lease)
            .await
            .filter(|h| new.iter().any(|p| h.starts_with(p.as_str()))))
    })
    .await
    .expect("the leader lease");
    // A few more seconds under the new leader.
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.assert_always_ready();

    let after = wait_pods(
        &client,
        n,
        &on_node,
        Duration::from_secs(30),
        "50 Running",
        running,
    )
    .await;
    assert_eq!(uids(&after), before, "the same 50 pod objects");
    assert_eq!(
        mock_state_pods(state.path(), &node),
        backend_before,
        "the same 50 backend pods (UIDs, IPs, start times)"
    );
    let leader_pod = new
        .iter()
        .find(|p| leader.starts_with(p.as_str()))
        .expect("leader pod");
    let log = kubectl_ok(&cluster, &["-n", n, "logs", leader_pod]).await;
    assert!(log.contains("adopted the backend's pods"), "{log}");
    drop(service);
    drop(edge);
}
