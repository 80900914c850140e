//! The kubelet API against hostile clients (issue 15, item 8) and the side
//! doors a Secret could leave through (item 7): connections that never finish
//! their headers, the process out of file descriptors, connection caps, an
//! HTTP/2 preface, `/runningpods/` without credentials, a Secret's value in
//! responses, logs and files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// TLS toward the node's kubelet API, verified against the cluster CA, with
/// no client certificate (an anonymous caller).
fn anonymous_tls(cluster: &TestCluster, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(cluster.ca_cert_path()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// TLS toward the node's kubelet API with the apiserver's kubelet client
/// certificate (authenticated and authorized, as the apiserver is).
fn apiserver_tls(cluster: &TestCluster) -> tokio_rustls::TlsConnector {
    let pki = cluster.dir().join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(cluster.ca_cert_path()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join("apiserver-kubelet-client.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("apiserver-kubelet-client.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TCP connection to `port` from local address `from`.
async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

/// How long until the server closes `stream` (EOF or reset), if it does
/// within `within`. Whatever the server sends first is read and dropped.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux (sysconf(_SC_CLK_TCK)).
    ticks as f64 / 100.0
}

fn log_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed_within_the_deadline() {
    let deadline = Duration::from_secs(3);
    let (cluster, _ns, node) = ready_node("slowloris", &["--api-header-timeout", "3s"]).await;
    approve_serving_csr(&cluster, &node.name).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let tls = anonymous_tls(&cluster, &[b"http/1.1"]);

    // 100 connections that never start TLS, 100 that finish TLS and then
    // send half a request head.
    let started = Instant::now();
    let mut raw = Vec::new();
    for _ in 0..100 {
        raw.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let mut half = Vec::new();
    for _ in 0..100 {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut s = tls
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        s.write_all(b"GET /pods HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        s.flush().await.unwrap();
        half.push(s);
    }
    let opened_in = started.elapsed();
    assert!(opened_in < deadline, "opening took {opened_in:?}");

    let waits = raw
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                closed_within(&mut s, Duration::from_secs(15))
                    .await
                    .then(Instant::now)
            })
        })
        .chain(half.into_iter().map(|mut s| {
            tokio::spawn(async move {
                closed_within(&mut s, Duration::from_secs(15))
                    .await
                    .then(Instant::now)
            })
        }))
        .collect::<Vec<_>>();
    let mut closed_at = Vec::new();
    for w in waits {
        closed_at.push(w.await.unwrap().expect("closed by the server"));
    }
    let first = closed_at.iter().min().unwrap().duration_since(started);
    let last = closed_at.iter().max().unwrap().duration_since(started);
    println!(
        "200 stalled connections closed between {first:?} and {last:?} after the first connect"
    );
    assert!(
        first >= deadline - opened_in - Duration::from_millis(200),
        "closed by the deadline, not before: {first:?}"
    );
    assert!(
        last <= deadline + Duration::from_secs(2),
        "all closed within the deadline: {last:?}"
    );

    // The server still serves a complete request.
    let (code, out) = kubelet_get(&cluster, port, "/healthz").await;
    assert_eq!((code.as_str(), out.as_str()), ("200", "ok"));
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn kept_alive_connections_idle_past_the_timeout_are_closed_but_streams_are_not() {
    let idle = Duration::from_secs(2);
    let (cluster, ns, node) = running_app("idle", &["--api-idle-timeout", "2s"]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let tls = apiserver_tls(&cluster);
    let connect = || async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tls.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    };

    // One request, answered, then nothing: closed after the idle timeout.
    let mut s = connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(closed_within(&mut s, idle + Duration::from_secs(2)).await);
    let closed_after = answered.elapsed();
    println!("idle kept-alive connection closed {closed_after:?} after its response");
    assert!(
        closed_after >= idle - Duration::from_millis(100),
        "{closed_after:?}"
    );

    // A log stream with gaps between lines is served past the idle timeout.
    let mut s = connect().await;
    let request = format!(
        "GET /containerLogs/{}/app/main?follow=true&tailLines=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        ns.name()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut text = String::new();
    let mut last_read = started;
    while started.elapsed() < idle * 3 {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                last_read = Instant::now();
            }
            other => panic!(
                "the stream ended: {other:?} after {:?}: {text}",
                started.elapsed()
            ),
        }
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(last_read.duration_since(started) > idle * 2, "{text}");
    assert!(text.matches("main: tick").count() >= 3, "{text}");
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn an_http2_preface_on_the_kubelet_port_is_refused() {
    let (cluster, _ns, node) = ready_node("h2", &[]).await;
    approve_serving_csr(&cluster, &node.name).await;
    let port = kubelet_port(&cluster, &node.name).await;

    // ALPN offers HTTP/1.1 only.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = anonymous_tls(&cluster, &[b"h2", b"http/1.1"]);
    let s = tls
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(s);

    // Prior knowledge: the preface and an empty SETTINGS frame, without ALPN.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut s = anonymous_tls(&cluster, &[])
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed");
    // An HTTP/2 server answers with a SETTINGS frame: 3 bytes of length, type 4.
    assert!(
        !(answer.len() >= 9 && answer[3] == 4),
        "no HTTP/2 SETTINGS frame: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "an HTTP/1.1 error or nothing: {text:?}"
    );
    println!("answer to an HTTP/2 preface: {:?}", text.lines().next());
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn connection_caps_in_all_and_per_ip_leave_health_answering() {
    let (cluster, _ns, node) = ready_node(
        "caps",
        &[
            "--api-max-connections",
            "15",
            "--api-max-connections-per-ip",
            "10",
            "--api-header-timeout",
            "120s",
        ],
    )
    .await;
    let port = kubelet_port(&cluster, &node.name).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from([127, 0, 0, 1], port).await);
    }
    // Give the server time to accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut over_ip = connect_from([127, 0, 0, 1], port).await;
    assert!(
        closed_within(&mut over_ip, Duration::from_secs(3)).await,
        "an 11th connection from one IP is closed"
    );
    for _ in 0..5 {
        held.push(connect_from([127, 0, 0, 2], port).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut over_total = connect_from([127, 0, 0, 3], port).await;
    assert!(
        closed_within(&mut over_total, Duration::from_secs(3)).await,
        "a 16th connection is closed"
    );
    // Held connections stay open (their header deadline is 2 minutes).
    for s in held.iter_mut().take(2) {
        assert!(!closed_within(s, Duration::from_millis(300)).await);
    }

    // Health keeps answering at the cap.
    let started = Instant::now();
    let health = http_get(&format!("http://127.0.0.1:{}/healthz", node.metrics_port)).await;
    assert_eq!(health.unwrap(), "ok");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A place given back is taken again.
    held.truncate(14);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = connect_from([127, 0, 0, 3], port).await;
    assert!(
        !closed_within(&mut again, Duration::from_secs(1)).await,
        "accepted once a connection closed"
    );
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("too many connections"), "{}", node.log_tail());
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn out_of_file_descriptors_accept_backs_off_quietly_and_health_returns() {
    let (cluster, _ns) = cluster_and_namespace("nofile").await;
    let node = MockNode::start_with_fd_limit(
        &cluster,
        &unique_name("nofile"),
        &[
            "--api-max-connections",
            "100000",
            "--api-max-connections-per-ip",
            "100000",
            "--api-header-timeout",
            "300s",
        ],
        256,
    );
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let pid = node.pid().expect("running");

    // More connections than the process has descriptors: the kernel
    // completes them, accept fails with EMFILE for those left in the backlog.
    // Once the backlog is full too, a connect hangs: that is enough.
    let mut held = Vec::new();
    for _ in 0..600 {
        let connect = TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    assert!(held.len() > 256, "{} connections", held.len());
    println!(
        "{} connections opened against a limit of 256 descriptors",
        held.len()
    );
    wait_until(
        "accept fails for want of descriptors",
        Duration::from_secs(20),
        || {
            let log = node.log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("accept failed")
            }
        },
    )
    .await;

    let window = Duration::from_secs(30);
    let (cpu0, lines0, t0) = (cpu_seconds(pid), log_lines(&node.log), Instant::now());
    tokio::time::sleep(window).await;
    let (cpu1, lines1, elapsed) = (cpu_seconds(pid), log_lines(&node.log), t0.elapsed());
    let cpu_share = (cpu1 - cpu0) / elapsed.as_secs_f64();
    let lines_per_minute = (lines1 - lines0) as f64 * 60.0 / elapsed.as_secs_f64();
    println!(
        "descriptors exhausted for {elapsed:?}: {:.2} % of a core, {lines_per_minute:.0} log lines a minute",
        cpu_share * 100.0
    );
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(
        cpu_share < 0.10,
        "CPU {:.1} % of a core; log tail:\n{}",
        cpu_share * 100.0,
        node.log_tail()
    );
    assert!(
        lines_per_minute < 100.0,
        "{lines_per_minute} lines a minute:\n{}",
        node.log_tail()
    );
    assert!(
        log.contains("errors_not_logged"),
        "the warning says how many were left out"
    );

    // Descriptors free up: health answers again.
    drop(held);
    wait_until("/healthz answers", Duration::from_secs(20), || {
        let url = format!("http://127.0.0.1:{}/healthz", node.metrics_port);
        async move { http_get(&url).await.is_ok_and(|b| b == "ok") }
    })
    .await;
    delete_node(&cluster.client(), &node.name).await;
}

/// Every file under `dir` that contains `needle`, with its mode.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<(std::path::PathBuf, u32)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push((path, meta.permissions().mode() & 0o777));
            }
        }
    }
    found
}

async fn curl_anonymous(cluster: &TestCluster, port: u16, path: &str) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(cluster.ca_cert_path())
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[tokio::test]
async fn runningpods_reveals_nothing_without_credentials_and_a_secret_leaks_nowhere() {
    let (cluster, ns, node) = ready_node("noleak", &["--log-level", "trace"]).await;
    approve_serving_csr(&cluster, &node.name).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let client = cluster.client();
    let value = format!("v4lue-{}", unique_name("s"));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds" },
        "stringData": { "password": value, "file": value }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut p = pod("leaky", &node.name);
    p["spec"]["containers"][0]["env"] = json!([
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } }
    ]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "creds", "mountPath": "/etc/creds" }]);
    p["spec"]["volumes"] = json!([{ "name": "creds", "secret": { "secretName": "creds" } }]);
    create_pod(&client, ns.name(), p).await;
    wait_running(&client, ns.name(), "leaky", RUNNING_WITHIN).await;
    // The backend did get the value (so the checks below can fail).
    let backend = wait_for(
        "the pod in the backend",
        Duration::from_secs(10),
        || async { Ok(node.backend_pod(ns.name(), "leaky").await) },
    )
    .await
    .unwrap();
    assert!(env_of(&backend).contains(&("PASSWORD".into(), value.clone())));

    // The metrics port serves nothing about pods.
    for path in ["/runningpods/", "/runningpods", "/pods"] {
        let res = http_get(&format!("http://127.0.0.1:{}{path}", node.metrics_port)).await;
        let err = res.expect_err(path).to_string();
        assert!(err.contains("status 404"), "{path}: {err}");
    }
    // Without credentials the kubelet API says 401 and nothing else.
    for path in ["/runningpods/", "/pods"] {
        let (code, body) = curl_anonymous(&cluster, port, path).await;
        assert_eq!(code, "401", "{path}: {body}");
        assert!(!body.contains("leaky"), "{path}: {body}");
    }
    // With them, pods as the API has them: the reference, not the value.
    for path in ["/runningpods/", "/pods"] {
        let (code, body) = kubelet_get(&cluster, port, path).await;
        assert_eq!(code, "200", "{path}: {body}");
        assert!(body.contains("leaky"), "{path}: {body}");
        assert!(body.contains("secretKeyRef"), "{path}: {body}");
        assert!(!body.contains(&value), "{path} shows the Secret's value");
    }

    // No log line, at trace level, holds the value (nor its base64).
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("TRACE"), "the log is at trace level");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&value)
    };
    for needle in [&value, &b64] {
        let leaks: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(needle.as_str()))
            .collect();
        assert!(leaks.is_empty(), "log lines with the Secret: {leaks:#?}");
    }

    // The state holds it (the mock's backend), readable by its user only.
    let dir_mode = std::fs::metadata(&node.state_dir)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let holders = files_containing(&node.state_dir, value.as_bytes());
    assert!(!holders.is_empty(), "the state file holds the value");
    for (path, mode) in holders {
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
    }
    delete_node(&client, &node.name).await;
}
