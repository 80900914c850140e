//! Harness for the mock's integration tests: a `vk-mock` process per test
//! against the shared local control plane, the mock's backend as its side
//! port shows it, and the helpers every provider's tests share (re-exported
//! from `vk_test_support`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use vk_test_support::{
    CsrApprover, KubeletProcess, TestCluster, TestNamespace, approve_serving_csr,
    cluster_and_namespace, create_pod, delete_node, events, free_port, http_get, is_ready, kubectl,
    kubelet_get, kubelet_port, node_ready, phase, run_with_stdin, spawn_kubectl, unique_name,
    wait_for, wait_node_not_ready, wait_node_ready, wait_pod, wait_pods, wait_running, wait_until,
};

pub mod test_host;

/// The `vk-mock` binary the tests run: `VK_MOCK_BIN` when set (a copy of
/// one's own build, where several checkouts share a target directory and
/// overwrite each other's `target/debug/vk-mock`), else Cargo's.
pub fn vk_mock_bin() -> String {
    std::env::var("VK_MOCK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vk-mock").to_string())
}

/// How long a mock pod may take to run: the mock backend starts it at once.
pub const RUNNING_WITHIN: Duration = Duration::from_secs(20);

/// A running `vk-mock` process serving one or more nodes.
pub struct MockNode {
    pub name: String,
    pub metrics_port: u16,
    pub state_dir: PathBuf,
    pub unhealthy_file: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// Prints its log when the test fails, and kills it on drop.
    process: KubeletProcess,
    _dir: tempfile::TempDir,
    /// The bootstrap token and cert dir of a node with its own identity
    /// ([`node_identity_mode`]), kept while it runs.
    _identity: Option<(vk_test_support::BootstrapToken, tempfile::TempDir)>,
}

/// Whether [`ready_node`] starts nodes with an identity of their own
/// (`VK_TEST_NODE_IDENTITY=1`: a bootstrap token and a cert dir, under the
/// Node authorizer and NodeRestriction) instead of the admin kubeconfig.
/// `cargo xtask test` runs the core's and the kubelet API's suites both ways.
pub fn node_identity_mode() -> bool {
    std::env::var("VK_TEST_NODE_IDENTITY").is_ok_and(|v| v == "1")
}

impl MockNode {
    /// Starts `vk-mock` for node `name` with extra arguments (a free
    /// `--kubelet-port` unless they name one; 0 with `--nodes`).
    pub fn start(cluster: &TestCluster, name: &str, extra: &[&str]) -> MockNode {
        MockNode::start_with_kubeconfig(cluster.kubeconfig(), name, extra)
    }

    /// [`MockNode::start`] against the cluster of `kubeconfig` (a test's own cluster).
    pub fn start_with_kubeconfig(kubeconfig: &Path, name: &str, extra: &[&str]) -> MockNode {
        let own = vk_mock_bin();
        MockNode::spawn(kubeconfig, Path::new(&own), name, None, extra, &[])
    }

    /// [`MockNode::start`] with at most `nofile` file descriptors
    /// (`RLIMIT_NOFILE`, set by `prlimit`, which then runs `vk-mock` itself).
    pub fn start_with_fd_limit(
        cluster: &TestCluster,
        name: &str,
        extra: &[&str],
        nofile: u32,
    ) -> MockNode {
        let limit = format!("--nofile={nofile}:{nofile}");
        let bin = vk_mock_bin();
        let wrapper = ["prlimit", limit.as_str(), bin.as_str()];
        MockNode::spawn(
            cluster.kubeconfig(),
            Path::new(&bin),
            name,
            None,
            extra,
            &wrapper,
        )
    }

    /// One more replica of node `name` whose backend is the state directory
    /// `state_dir` (shared with the other replicas: `--leader-elect` tests),
    /// run from `binary` (a copy of `vk-mock` the test owns: restarts in a
    /// long test then run the binary it started with).
    pub fn start_replica(
        cluster: &TestCluster,
        binary: &Path,
        name: &str,
        state_dir: &Path,
        extra: &[&str],
    ) -> MockNode {
        MockNode::spawn(
            cluster.kubeconfig(),
            binary,
            name,
            Some(state_dir),
            extra,
            &[],
        )
    }

    /// Starts `binary`, or `wrapper[0]` with the rest of `wrapper` before
    /// vk-mock's own arguments.
    fn spawn(
        kubeconfig: &Path,
        binary: &Path,
        name: &str,
        state_dir: Option<&Path>,
        extra: &[&str],
        wrapper: &[&str],
    ) -> MockNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics_port = free_port().expect("free port");
        let state_dir = state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("state"));
        let unhealthy_file = dir.path().join("unhealthy");
        let log = dir.path().join("vk-mock.log");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut flags: Vec<OsString> = wrapper.iter().skip(1).map(OsString::from).collect();
        flags.extend::<[OsString; 6]>([
            "--kubeconfig".into(),
            kubeconfig.into(),
            "--nodename".into(),
            name.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}").into(),
        ]);
        if !args.iter().any(|a| a == "--kubelet-port") {
            // Several nodes have a port each: the OS picks them.
            let kubelet_port = if args.iter().any(|a| a == "--nodes") {
                0
            } else {
                free_port().expect("free port")
            };
            flags.extend(["--kubelet-port".into(), kubelet_port.to_string().into()]);
        }
        flags.extend([
            "--state-dir".into(),
            state_dir.clone().into(),
            "--unhealthy-file".into(),
            unhealthy_file.clone().into(),
        ]);
        if !args.iter().any(|a| a == "--log-level") {
            flags.extend(["--log-level".into(), "info,vk_core=debug".into()]);
        }
        flags.extend(args.iter().map(OsString::from));
        let process = match wrapper.first() {
            Some(program) => KubeletProcess::start(program, flags, &log),
            None => KubeletProcess::start(binary, flags, &log),
        }
        .expect("spawn vk-mock");
        MockNode {
            name: name.to_string(),
            metrics_port,
            state_dir,
            unhealthy_file,
            log,
            args,
            process,
            _dir: dir,
            _identity: None,
        }
    }

    /// The process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the process with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the process again with the same settings (ports included) and
    /// state directory.
    pub fn restart(&mut self) {
        self.process.restart().expect("restart vk-mock");
    }

    /// The backend's pods as the mock holds them (resolved: env values and
    /// volume files), from its state files. The process serves them nowhere:
    /// the kubelet API's `/runningpods/` shows the API's copy, and the metrics
    /// port nothing about pods. The mock writes its state 100 ms after a
    /// change; this waits 300 ms before reading it.
    pub async fn running_pods(&self) -> Vec<Pod> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(dir) = std::fs::read_dir(&self.state_dir) else {
            return Vec::new();
        };
        let mut pods = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let stored: Vec<serde_json::Value> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            pods.extend(stored.into_iter().filter_map(|sp| {
                let mut pod: Pod = serde_json::from_value(sp["pod"].clone()).ok()?;
                pod.status = serde_json::from_value(sp["status"].clone()).ok();
                Some(pod)
            }));
        }
        pods
    }

    /// The backend's pod with this name, if it runs.
    pub async fn backend_pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.running_pods().await.into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
        })
    }

    /// The value of one Prometheus sample line of the process's `/metrics`
    /// (0 when it has none).
    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let metrics = http_get(&url).await.unwrap_or_default();
        metrics
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The node's state file (volumes included).
    pub fn state(&self, node: &str) -> serde_json::Value {
        let path = self.state_dir.join(format!("{node}.json"));
        std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(json!([]))
    }

    /// The process log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Exit status if the process ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait()
    }
}

/// A pod bound to `node` directly (no scheduler), running `image`.
pub fn pod(name: &str, node: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "nodeName": node,
            "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
            "containers": [{ "name": "main", "image": "busybox" }]
        }
    })
}

/// Env of the first container of a backend pod as (name, value) pairs.
pub fn env_of(p: &Pod) -> Vec<(String, String)> {
    p.spec
        .as_ref()
        .map(|s| &s.containers[0])
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// Path of a file beside the test (fixtures).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// A fresh namespace and a Ready `vk-mock` node named `<prefix>-<random>`
/// (with its own identity in [`node_identity_mode`]).
pub async fn ready_node(prefix: &str, extra: &[&str]) -> (TestCluster, TestNamespace, MockNode) {
    let (cluster, ns) = cluster_and_namespace(prefix).await;
    let name = unique_name(prefix);
    let node = if node_identity_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = vk_test_support::bootstrap_token(&cluster, dir.path())
            .await
            .expect("bootstrap token");
        let cert_dir = dir.path().join("pki");
        let mut args = vec![
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().expect("a UTF-8 path"),
            "--cert-dir",
            cert_dir.to_str().expect("a UTF-8 path"),
        ];
        args.extend_from_slice(extra);
        let mut node = MockNode::start(&cluster, &name, &args);
        node._identity = Some((token, dir));
        node
    } else {
        MockNode::start(&cluster, &name, extra)
    };
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(60)).await;
    if let Some((_, dir)) = &node._identity {
        let cert = dir
            .path()
            .join("pki")
            .join(vk_test_support::CURRENT_CLIENT_CERT);
        let pem = std::fs::read_to_string(&cert).expect("the node's client certificate");
        let (cn, _) = vk_test_support::certificate_subject(&pem).expect("its subject");
        assert_eq!(cn, format!("system:node:{}", node.name), "works as itself");
    }
    (cluster, ns, node)
}

/// [`ready_node`] with its serving certificate approved and a Running pod `app`.
pub async fn running_app(prefix: &str, extra: &[&str]) -> (TestCluster, TestNamespace, MockNode) {
    let (cluster, ns, node) = ready_node(prefix, extra).await;
    run_app(&cluster, ns.name(), &node.name).await;
    (cluster, ns, node)
}

/// Approves the serving certificate of Ready node `node` (so that logs,
/// exec and the like reach its kubelet API) and runs pod `app` on it.
pub async fn run_app(cluster: &TestCluster, ns: &str, node: &str) {
    approve_serving_csr(cluster, node).await;
    let client = cluster.client();
    create_pod(&client, ns, pod("app", node)).await;
    wait_running(&client, ns, "app", RUNNING_WITHIN).await;
}

/// Whether this build of vk-mock serves the kubelet HTTPS API (it then has
/// the serving-certificate flags, and `kubectl logs` reaches it).
pub fn has_kubelet_api() -> bool {
    std::process::Command::new(vk_mock_bin())
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--serving-cert-file"))
}

/// `kubectl logs` of a pod's container through the apiserver (which dials the
/// node's kubelet API), retried for a minute while the serving certificate is
/// being issued; the error is kubectl's last.
pub async fn logs_via_apiserver(
    cluster: &TestCluster,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, String> {
    wait_for(
        &format!("kubectl logs of {ns}/{pod} -c {container}"),
        Duration::from_secs(60),
        || async {
            let out = cluster
                .kubectl(["logs", "-n", ns, pod, "-c", container])
                .await?;
            if out.success() {
                Ok(Some(out.stdout))
            } else {
                Err(anyhow::anyhow!("{}", out.stderr))
            }
        },
    )
    .await
    .map_err(|e| format!("{e:#}"))
}
