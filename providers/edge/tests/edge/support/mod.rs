//! Harness for the edge provider's integration tests: a `vk-edge` process per
//! test against the shared local control plane and the shared rootful podman
//! service of the test rig (`vk_test_support::PodmanEngine`), plus the
//! helpers every provider's tests share (re-exported from `vk_test_support`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;
use vk_test_support::{KubeletProcess, PodmanEngine, busybox_httpd_image, busybox_image, podman};

// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use vk_test_support::{
    TestCluster, TestNamespace, approve_serving_csr, cluster_and_namespace, create_pod, events,
    free_port, is_ready, kubectl, kubectl_ok, kubelet_get, node_ready, phase, run_with_stdin,
    spawn_kubectl, unique_name, wait_for, wait_node_not_ready, wait_node_ready, wait_pod,
    wait_running, wait_until,
};

/// How long an edge pod may take to run: real containers on the rig's podman.
pub const RUN: Duration = Duration::from_secs(60);

/// `rig!(prefix[, extra flags])` in a test returning `()`: the cluster, a
/// namespace and a Ready edge node ([`edge_node`]), or a return from the test
/// (skipped loudly) when the rig cannot run here.
#[allow(unused_macros)]
macro_rules! rig {
    ($prefix:expr) => {
        rig!($prefix, &[])
    };
    ($prefix:expr, $extra:expr) => {
        match edge_node($prefix, $extra).await {
            Some(x) => x,
            None => return,
        }
    };
}

/// The engine, or `None` (with a loud message) when podman cannot run here.
pub async fn engine() -> Option<PodmanEngine> {
    match tokio::task::spawn_blocking(|| {
        let engine = PodmanEngine::get()?;
        busybox_image()?;
        busybox_httpd_image()?;
        anyhow::Ok(engine)
    })
    .await
    .expect("rig task")
    {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("\n**** SKIPPED: the edge test rig cannot run here: {e:#}\n");
            None
        }
    }
}

/// A running `vk-edge` serving one node.
pub struct EdgeNode {
    pub name: String,
    pub metrics_port: u16,
    pub kubelet_port: u16,
    pub log: PathBuf,
    kubeconfig: PathBuf,
    vkcp: PathBuf,
    process: KubeletProcess,
    _dir: tempfile::TempDir,
}

impl EdgeNode {
    /// Starts `vk-edge` for node `name` on `endpoint` with extra arguments.
    pub fn start(cluster: &TestCluster, endpoint: &str, name: &str, extra: &[&str]) -> EdgeNode {
        Self::start_with(cluster.vkcp(), cluster.kubeconfig(), endpoint, name, extra)
    }

    /// [`EdgeNode::start`] against any cluster's kubeconfig (`vkcp` runs kubectl for clean-up).
    pub fn start_with(
        vkcp: &std::path::Path,
        kubeconfig: &std::path::Path,
        endpoint: &str,
        name: &str,
        extra: &[&str],
    ) -> EdgeNode {
        // `VK_EDGE_BIN` when set: a target directory shared with other
        // checkouts may hold another build of `vk-edge` by then.
        let binary = std::env::var_os("VK_EDGE_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_vk-edge").into());
        Self::spawn(&binary, vkcp, kubeconfig, endpoint, name, extra)
    }

    /// One more replica of node `name` (`--leader-elect` tests), run from
    /// `binary` (a copy the test owns, so that restarts run the binary it
    /// started with).
    pub fn start_replica(
        cluster: &TestCluster,
        binary: &std::path::Path,
        endpoint: &str,
        name: &str,
        extra: &[&str],
    ) -> EdgeNode {
        Self::spawn(
            binary,
            cluster.vkcp(),
            cluster.kubeconfig(),
            endpoint,
            name,
            extra,
        )
    }

    fn spawn(
        binary: &std::path::Path,
        vkcp: &std::path::Path,
        kubeconfig: &std::path::Path,
        endpoint: &str,
        name: &str,
        extra: &[&str],
    ) -> EdgeNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics_port = free_port().expect("free port");
        let kubelet_port = free_port().expect("free port");
        let log = dir.path().join("vk-edge.log");
        let mut flags: Vec<OsString> = vec![
            "--kubeconfig".into(),
            kubeconfig.into(),
            "--nodename".into(),
            name.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}").into(),
            "--kubelet-port".into(),
            kubelet_port.to_string().into(),
            "--engine-endpoint".into(),
            endpoint.into(),
            "--log-level".into(),
            "info,vk_edge=debug".into(),
        ];
        flags.extend(extra.iter().map(OsString::from));
        let process = KubeletProcess::start(binary, flags, &log).expect("spawn vk-edge");
        EdgeNode {
            name: name.to_string(),
            metrics_port,
            kubelet_port,
            log,
            kubeconfig: kubeconfig.to_path_buf(),
            vkcp: vkcp.to_path_buf(),
            process,
            _dir: dir,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The same process again (same flags and ports).
    pub fn restart(&mut self) {
        self.process.restart().expect("restart vk-edge");
    }

    /// The end of the log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(60)
    }
}

/// The cluster, a namespace, and a Ready edge node with an approved serving
/// certificate (for logs, exec and port-forward through the apiserver).
/// `None` when the rig cannot run here.
pub async fn edge_node(
    prefix: &str,
    extra: &[&str],
) -> Option<(TestCluster, TestNamespace, EdgeNode)> {
    let engine = engine().await?;
    let (cluster, ns) = cluster_and_namespace(prefix).await;
    let node = EdgeNode::start(&cluster, &engine.endpoint(), &unique_name(prefix), extra);
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
    approve_serving_csr(&cluster, &node.name).await;
    Some((cluster, ns, node))
}

/// A pod on `node` with the given containers (JSON) and extra spec fields.
pub fn pod_with(
    name: &str,
    node: &str,
    containers: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = json!({
        "nodeName": node,
        "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
        "terminationGracePeriodSeconds": 2,
        "containers": containers,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": spec,
    })
}

/// A busybox container running `script` with `sh -c`.
pub fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({
        "name": name,
        "image": vk_test_support::BUSYBOX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    })
}

/// The status of container `c` of a pod.
pub fn container<'a>(
    p: &'a Pod,
    c: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == c)
}

/// Waiting reason of container `c`.
pub fn waiting_reason(p: &Pod, c: &str) -> Option<String> {
    container(p, c)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// Engine container ids of a pod (name → id), from podman itself.
pub fn engine_ids(uid: &str) -> std::collections::BTreeMap<String, String> {
    let out = podman([
        "ps",
        "-a",
        "--filter",
        &format!("label=io.vk-rs.pod-uid={uid}"),
        "--format",
        "{{.Names}} {{.ID}}",
    ])
    .expect("podman ps")
    .ok()
    .expect("podman ps ok");
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, id)| (n.to_string(), id.to_string()))
        .collect()
}

/// A pod by name.
pub async fn get_pod(cluster: &TestCluster, ns: &str, name: &str) -> Pod {
    Api::<Pod>::namespaced(cluster.client(), ns)
        .get(name)
        .await
        .expect("get pod")
}

impl Drop for EdgeNode {
    /// Removes what the node ran from the shared engine: its pods' API
    /// objects outlive the test's namespace only until the namespace
    /// controller gives up, but containers would run on forever.
    fn drop(&mut self) {
        self.process.kill();
        let selector = format!("spec.nodeName={}", self.name);
        let _ = vk_test_support::kubectl_blocking(
            &self.vkcp,
            &self.kubeconfig,
            [
                "delete",
                "pods",
                "-A",
                "--field-selector",
                &selector,
                "--force",
                "--grace-period=0",
                "--wait=false",
            ],
        );
        let label = format!("label=io.vk-rs.node={}", self.name);
        if let Ok(out) = podman(["ps", "-aq", "--filter", &label]) {
            let ids: Vec<String> = out.stdout.split_whitespace().map(str::to_string).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm".to_string(), "-f".into(), "-t".into(), "0".into()];
                args.extend(ids);
                let _ = podman(args);
            }
        }
        if let Ok(out) = podman(["volume", "ls", "-q", "--filter", &label]) {
            let names: Vec<String> = out.stdout.split_whitespace().map(str::to_string).collect();
            if !names.is_empty() {
                let mut args = vec!["volume".to_string(), "rm".into(), "-f".into()];
                args.extend(names);
                let _ = podman(args);
            }
        }
    }
}
