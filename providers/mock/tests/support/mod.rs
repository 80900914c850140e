//! Harness for the mock's integration tests: a `vk-mock` process per test against
//! the shared local control plane, plus small API helpers.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use vk_test_support::KubeletProcess;
pub use vk_test_support::{TestCluster, TestNamespace};

pub mod test_host;

#[path = "../../../test-support/kube.rs"]
mod kube_helpers;
pub use kube_helpers::*;

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
}

impl MockNode {
    /// Starts `vk-mock` for node `name` with extra arguments (a free
    /// `--kubelet-port` unless they name one).
    pub fn start(cluster: &TestCluster, name: &str, extra: &[&str]) -> MockNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics_port = free_port();
        let state_dir = dir.path().join("state");
        let unhealthy_file = dir.path().join("unhealthy");
        let log = dir.path().join("vk-mock.log");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut flags: Vec<OsString> = vec![
            "--kubeconfig".into(),
            cluster.kubeconfig().into(),
            "--nodename".into(),
            name.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}").into(),
        ];
        if !args.iter().any(|a| a == "--kubelet-port") {
            flags.extend(["--kubelet-port".into(), free_port().to_string().into()]);
        }
        flags.extend([
            "--state-dir".into(),
            state_dir.clone().into(),
            "--unhealthy-file".into(),
            unhealthy_file.clone().into(),
            "--log-level".into(),
            "info,vk_core=debug".into(),
        ]);
        flags.extend(args.iter().map(OsString::from));
        let process = KubeletProcess::start(env!("CARGO_BIN_EXE_vk-mock"), flags, &log)
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
        }
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
