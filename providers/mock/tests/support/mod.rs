//! Harness for the mock's integration tests: a `vk-mock` process per test against
//! the shared local control plane, plus small API helpers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

pub use vk_test_support::{TestCluster, TestNamespace};

pub mod test_host;

/// Waits until `check` is true; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let res = vk_test_support::wait_for(what, timeout, || {
        let fut = check();
        async move { Ok(fut.await.then_some(())) }
    })
    .await;
    if let Err(e) = res {
        panic!("{e:#}");
    }
}

/// The cluster and a fresh namespace.
pub async fn cluster_and_namespace(prefix: &str) -> (TestCluster, TestNamespace) {
    let cluster = TestCluster::get().await.expect("test cluster");
    let ns = cluster.namespace(prefix).await.expect("namespace");
    (cluster, ns)
}

/// Events in a namespace as (reason, name of the object they regard).
pub async fn events(client: &Client, ns: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
            )
        })
        .collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `vk-mock` process serving one or more nodes.
pub struct MockNode {
    pub name: String,
    pub metrics_port: u16,
    pub state_dir: PathBuf,
    pub unhealthy_file: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    kubeconfig: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl MockNode {
    /// Starts `vk-mock` for node `name` with extra arguments.
    pub fn start(cluster: &TestCluster, name: &str, extra: &[&str]) -> MockNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = MockNode {
            name: name.to_string(),
            metrics_port: free_port(),
            state_dir: dir.path().join("state"),
            unhealthy_file: dir.path().join("unhealthy"),
            log: dir.path().join("vk-mock.log"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            child: None,
            _dir: dir,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vk-mock"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--nodename", &self.name])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(if self.args.iter().any(|a| a == "--kubelet-port") {
                vec![]
            } else {
                vec!["--kubelet-port".to_string(), free_port().to_string()]
            })
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--unhealthy-file")
            .arg(&self.unhealthy_file)
            .args(["--log-level", "info,vk_core=debug"])
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn vk-mock");
        self.child = Some(child);
    }

    /// Kills the process with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again with the same settings and state directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The backend's pods, from the `/runningpods/` endpoint.
    pub async fn running_pods(&self) -> Vec<Pod> {
        let url = format!("http://127.0.0.1:{}/runningpods/", self.metrics_port);
        let body = match http_get(&url).await {
            Some(b) => b,
            None => return Vec::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        serde_json::from_value(v["items"].clone()).unwrap_or_default()
    }

    /// The backend's pod with this name, if it runs.
    pub async fn backend_pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.running_pods().await.into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
        })
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
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Exit status if the process ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- vk-mock log ({}) ----\n{}", self.name, self.log_tail());
        }
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET over loopback (the side port is plain HTTP).
pub async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(dechunk(body));
    }
    Some(body.to_string())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
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

/// Creates a pod from JSON.
pub async fn create_pod(client: &Client, ns: &str, pod: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod).expect("pod json");
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// Waits until the pod satisfies `pred`; returns it.
pub async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Ok(Some(p)) = api.get_opt(name).await {
            if pred(&p) {
                return p;
            }
            last = Some(p);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "pod {ns}/{name}: {what} not reached in {timeout:?}; last: {:#?}",
        last.map(|p| p.status)
    );
}

/// Phase of a pod.
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready condition of a node.
pub async fn node_ready(client: &Client, name: &str) -> Option<(String, Option<String>)> {
    let node = Api::<Node>::all(client.clone())
        .get_opt(name)
        .await
        .ok()??;
    let c = node
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason))
}

/// Deletes a node object (test cleanup).
pub async fn delete_node(client: &Client, name: &str) {
    let _ = Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Unique-ish suffix for node names.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}", n % 0xfffff)
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

/// Approves this node's kubelet-serving CSRs until one is issued (what an operator
/// or an approver controller does), and waits until the kubelet API answers TLS.
pub async fn approve_serving_csr(cluster: &TestCluster, node: &str) {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let api: Api<CertificateSigningRequest> = Api::all(cluster.client());
    let prefix = format!("csr-{node}-");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no serving certificate issued for {node}"
        );
        let list = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mine: Vec<_> = list
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        if mine.iter().any(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some()
        }) {
            break;
        }
        for c in mine {
            let approved = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|x| x.type_ == "Approved"));
            if !approved && let Some(name) = &c.metadata.name {
                let _ = cluster
                    .kubectl(["certificate", "approve", name.as_str()])
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The kubelet polls its CSR every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

impl MockNode {
    /// Runs `kubectl` with the cluster's admin kubeconfig; returns (exit code, stdout, stderr).
    pub async fn kubectl(cluster: &TestCluster, args: &[&str]) -> (i32, String, String) {
        let out = cluster
            .kubectl(args.iter().copied())
            .await
            .expect("kubectl runs");
        (
            out.status.code().unwrap_or(-1),
            out.stdout.clone(),
            out.stderr.clone(),
        )
    }
}

/// Waits until the node's Ready condition is True.
pub async fn wait_node_ready(cluster: &TestCluster, name: &str, timeout: Duration) {
    let client = cluster.client();
    wait_for(timeout, "node Ready", || {
        let client = client.clone();
        let name = name.to_string();
        async move {
            node_ready(&client, &name)
                .await
                .is_some_and(|(s, _)| s == "True")
        }
    })
    .await;
}

/// A fresh namespace and a Ready `vk-mock` node named `<prefix>-<random>`.
pub async fn ready_node(prefix: &str, extra: &[&str]) -> (TestCluster, TestNamespace, MockNode) {
    let (cluster, ns) = cluster_and_namespace(prefix).await;
    let node = MockNode::start(&cluster, &unique(prefix), extra);
    wait_node_ready(&cluster, &node.name, Duration::from_secs(20)).await;
    (cluster, ns, node)
}

/// [`ready_node`] with its serving certificate approved and a Running pod `app`.
pub async fn running_app(prefix: &str, extra: &[&str]) -> (TestCluster, TestNamespace, MockNode) {
    let (cluster, ns, node) = ready_node(prefix, extra).await;
    approve_serving_csr(&cluster, &node.name).await;
    let client = cluster.client();
    create_pod(&client, ns.name(), pod("app", &node.name)).await;
    wait_pod(
        &client,
        ns.name(),
        "app",
        Duration::from_secs(20),
        "Running",
        |p| phase(p) == "Running",
    )
    .await;
    (cluster, ns, node)
}
