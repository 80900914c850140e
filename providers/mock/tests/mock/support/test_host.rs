//! A test host of the test's own: a network namespace with a veth pair and a
//! global-unicast address, for what the apiserver refuses to reach on
//! loopback (node proxying, aggregated-API endpoints).
//!
//! [`TestHost::forward`] starts a forwarder inside the namespace that hands
//! each connection over a Unix socket to a port on the host's loopback, so a
//! process on loopback (the kubelet API, the apiserver) can be reached at an
//! address inside the namespace. Traffic goes only to loopback and to the
//! namespace the test created.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, copy_bidirectional};
use tokio::net::{TcpStream, UnixListener};

use super::{MockNode, TestCluster, free_port, wait_node_ready};

/// Whether the test runs without root (then it cannot create a namespace).
pub fn not_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
        .unwrap_or(true)
}

/// A network namespace with one veth pair; removed on drop.
pub struct TestHost {
    /// The namespace's name (for `ip netns exec`).
    pub netns: String,
    host_if: String,
    /// The address inside the namespace (reachable from the host).
    pub ip: String,
}

/// Hosts created by this process so far (keeps names apart within one process).
static CREATED: AtomicU32 = AtomicU32::new(0);

impl TestHost {
    /// Creates the namespace `vkt-<tag>-<n>` with `10.231.<n>.2/30` inside
    /// and `10.231.<n>.1/30` on the host side (veth `vkh<n>`); `None` if `ip`
    /// fails. A number another test (or a killed run) holds is skipped.
    pub fn create(tag: &str) -> Option<TestHost> {
        let base = std::process::id() + CREATED.fetch_add(1, Ordering::Relaxed) * 37;
        (0..20).find_map(
            |i| match TestHost::try_create(tag, (base + i * 11) % 200 + 20) {
                Ok(host) => Some(Some(host)),
                Err(Taken::Yes) => None,
                Err(Taken::No) => Some(None),
            },
        )?
    }

    fn try_create(tag: &str, n: u32) -> Result<TestHost, Taken> {
        let run = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let netns = format!("vkt-{tag}-{n}");
        let host_if = format!("vkh{n}");
        let ns_if = format!("vkn{n}");
        // Both fail if the name exists: then the number is someone else's.
        if !run(&["netns", "add", &netns]) {
            return Err(Taken::Yes);
        }
        if !run(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]) {
            run(&["netns", "del", &netns]);
            return Err(Taken::Yes);
        }
        // From here on both are ours, and drop removes them.
        let host = TestHost {
            netns,
            host_if,
            ip: format!("10.231.{n}.2"),
        };
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", host.netns.as_str(), "ip"];
            all.extend_from_slice(args);
            run(&all)
        };
        let ok = run(&["link", "set", &ns_if, "netns", &host.netns])
            && run(&[
                "addr",
                "add",
                &format!("10.231.{n}.1/30"),
                "dev",
                &host.host_if,
            ])
            && run(&["link", "set", &host.host_if, "up"])
            && in_ns(&["addr", "add", &format!("{}/30", host.ip), "dev", &ns_if])
            && in_ns(&["link", "set", &ns_if, "up"])
            && in_ns(&["link", "set", "lo", "up"]);
        if ok { Ok(host) } else { Err(Taken::No) }
    }

    /// Starts a `vk-mock` node `name` (with `extra` flags) whose InternalIP
    /// is this host's address: its kubelet API listens on loopback, on a free
    /// port, and is forwarded to from that address inside the namespace.
    /// Returns once the node is Ready.
    pub async fn start_node(
        &self,
        cluster: &TestCluster,
        name: &str,
        extra: &[&str],
    ) -> (MockNode, Forward) {
        let kubelet_port = free_port().expect("free port");
        let port = kubelet_port.to_string();
        let mut args = vec![
            "--node-ip",
            self.ip.as_str(),
            "--kubelet-port",
            port.as_str(),
            "--kubelet-listen-address",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let node = MockNode::start(cluster, name, &args);
        let forward = self.forward(&self.ip, kubelet_port, kubelet_port).await;
        wait_node_ready(&cluster.client(), name, Duration::from_secs(20)).await;
        (node, forward)
    }

    /// Inside the namespace, `listen_ip:listen_port` forwards to
    /// `127.0.0.1:target_port` on the host. Stops when the result drops.
    pub async fn forward(&self, listen_ip: &str, listen_port: u16, target_port: u16) -> Forward {
        let dir = tempfile::tempdir().expect("tempdir for the forwarder socket");
        let sock = dir.path().join("forward.sock");
        let bridge = bridge_to_loopback(&sock, target_port);
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.netns, "python3", "-c", FORWARDER])
            .arg(listen_ip)
            .arg(listen_port.to_string())
            .arg(&sock)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the forwarder (python3)");
        let mut out = BufReader::new(child.stdout.take().expect("forwarder stdout"));
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line))
            .await
            .expect("forwarder ready in 10 s")
            .expect("forwarder output");
        assert_eq!(
            line.trim(),
            "ready",
            "forwarder on {listen_ip}:{listen_port}"
        );
        Forward {
            child,
            bridge,
            _dir: dir,
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Why [`TestHost::try_create`] failed: the number is taken (try another),
/// or `ip` does not work here.
enum Taken {
    Yes,
    No,
}

/// A running forwarder (the process in the namespace and the bridge task).
pub struct Forward {
    child: tokio::process::Child,
    bridge: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.bridge.abort();
    }
}

/// Accepts on a Unix socket (in the shared filesystem) and connects each
/// connection to `127.0.0.1:port`.
fn bridge_to_loopback(sock: &Path, port: u16) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(sock).expect("bind the forwarder's Unix socket");
    tokio::spawn(async move {
        while let Ok((mut unix, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = copy_bidirectional(&mut unix, &mut tcp).await;
                }
            });
        }
    })
}

/// Listens on `argv[1]:argv[2]` and pumps each connection to the Unix socket `argv[3]`.
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
    u = socket.socket(socket.AF_UNIX)
    try: u.connect(path)
    except Exception:
        c.close(); continue
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"#;
