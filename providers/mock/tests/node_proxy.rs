#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `kubectl get --raw /api/v1/nodes/<node>/proxy/...` through the real apiserver.
//!
//! The apiserver refuses to proxy to a node whose address is not a global
//! unicast IP ("address not allowed"), so this test gives the node a test host
//! of its own: a network namespace with a veth pair, the node's InternalIP
//! inside it, and a forwarder there that hands each connection over a Unix
//! socket to the kubelet API on loopback. Traffic goes only to loopback and
//! to the namespace the test created.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpStream, UnixListener};

/// A network namespace with one veth pair; removed on drop.
struct TestHost {
    netns: String,
    host_if: String,
    ip: String,
}

impl TestHost {
    fn create(tag: &str) -> Option<TestHost> {
        let n = std::process::id() % 200 + 20;
        let host = TestHost {
            netns: format!("vkt-{tag}-{n}"),
            host_if: format!("vkh{n}"),
            ip: format!("10.231.{n}.2"),
        };
        let ns_if = format!("vkn{n}");
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let ok = run(&["netns", "add", &host.netns])
            && run(&[
                "link",
                "add",
                &host.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ])
            && run(&["link", "set", &ns_if, "netns", &host.netns])
            && run(&[
                "addr",
                "add",
                &format!("10.231.{n}.1/30"),
                "dev",
                &host.host_if,
            ])
            && run(&["link", "set", &host.host_if, "up"])
            && run(&[
                "netns",
                "exec",
                &host.netns,
                "ip",
                "addr",
                "add",
                &format!("{}/30", host.ip),
                "dev",
                &ns_if,
            ])
            && run(&[
                "netns",
                "exec",
                &host.netns,
                "ip",
                "link",
                "set",
                &ns_if,
                "up",
            ])
            && run(&[
                "netns",
                "exec",
                &host.netns,
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ]);
        if !ok {
            drop(host);
            return None;
        }
        Some(host)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

const FORWARDER: &str = r#"
import socket, sys, threading
ip, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port)); srv.listen(64)
print("ready", flush=True)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except Exception: pass
    try: b.shutdown(socket.SHUT_WR)
    except Exception: pass
while True:
    c, _ = srv.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(path)
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"#;

#[tokio::test]
async fn node_proxy_stats_summary_through_the_apiserver() {
    if unsafe_not_root() {
        eprintln!("SKIPPED: creating a network namespace needs root");
        return;
    }
    let host = TestHost::create("proxy").expect("network namespace and veth pair (iproute2, root)");
    let (cluster, ns) = cluster_and_namespace("proxy").await;
    let kubelet_port = free_port();
    let name = unique("proxy");
    let node = MockNode::start(
        &cluster,
        &name,
        &[
            "--node-ip",
            &host.ip,
            "--kubelet-port",
            &kubelet_port.to_string(),
            "--kubelet-listen-address",
            "127.0.0.1",
        ],
    );

    // Unix socket (in the shared filesystem) → the kubelet on loopback.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kubelet.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let bridge = tokio::spawn(async move {
        while let Ok((mut unix, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", kubelet_port)).await {
                    let _ = copy_bidirectional(&mut unix, &mut tcp).await;
                }
            });
        }
    });
    // Inside the namespace: the node's IP and port → the Unix socket.
    let mut forwarder = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.netns,
            "python3",
            "-c",
            FORWARDER,
            &host.ip,
            &kubelet_port.to_string(),
        ])
        .arg(&sock)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(forwarder.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("forwarder ready")
    .unwrap();
    assert_eq!(line.trim(), "ready");

    let client = cluster.client();
    wait_for(Duration::from_secs(20), "node Ready", || {
        let c = client.clone();
        let n = name.clone();
        async move { node_ready(&c, &n).await.is_some_and(|(s, _)| s == "True") }
    })
    .await;
    approve_serving_csr(&cluster, &name).await;
    create_pod(&client, ns.name(), pod("app", &name)).await;
    wait_pod(
        &client,
        ns.name(),
        "app",
        Duration::from_secs(20),
        "Running",
        |p| phase(p) == "Running",
    )
    .await;

    let path = format!("/api/v1/nodes/{name}/proxy/stats/summary");
    let out = cluster
        .kubectl(["get", "--raw", path.as_str()])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["node"]["nodeName"], json!(name));
    assert!(
        summary["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["podRef"]["name"] == "app" && p["podRef"]["namespace"] == json!(ns.name())),
        "{summary}"
    );
    for sub in ["pods", "runningpods/", "metrics/resource"] {
        let path = format!("/api/v1/nodes/{name}/proxy/{sub}");
        let out = cluster
            .kubectl(["get", "--raw", path.as_str()])
            .await
            .unwrap();
        assert!(out.status.success(), "{sub}: {}", out.stderr);
        assert!(out.stdout.contains("app"), "{sub}: {}", out.stdout);
    }
    // logs and exec take the same way (the node's InternalIP) and keep working.
    let out = cluster
        .kubectl(["logs", "-n", ns.name(), "app", "--tail=1"])
        .await
        .unwrap();
    assert!(out.stdout.starts_with("main: "), "{}", out.stderr);

    drop(forwarder);
    bridge.abort();
    drop(node);
    delete_node(&client, &name).await;
}

fn unsafe_not_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
        .unwrap_or(true)
}
