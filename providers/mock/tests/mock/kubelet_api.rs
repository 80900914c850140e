//! The kubelet HTTPS API through the real apiserver, which verifies the node's
//! serving certificate (issued by CSR) and presents its own client certificate.

use std::time::{Duration, Instant};

use crate::support::*;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn kubectl_logs_with_tail_since_timestamps_limit_and_follow() {
    let (cluster, ns, node) = running_app("logs", &[]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ns = ns.name();

    let (code, out, err) = kubectl(&cluster, &["logs", "-n", ns, "app"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("main: started (image busybox)\nmain: tick 1\n"),
        "{out}"
    );

    let (_, tail, _) = kubectl(&cluster, &["logs", "-n", ns, "app", "--tail=2"]).await;
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(lines.iter().all(|l| l.starts_with("main: tick ")), "{tail}");

    let (_, since, _) = kubectl(&cluster, &["logs", "-n", ns, "app", "--since=2s"]).await;
    let n = since.lines().count();
    assert!(
        (1..=3).contains(&n),
        "--since=2s gives the last ~2 lines: {since}"
    );
    assert!(!since.contains("started"), "{since}");

    let (_, ts, _) = kubectl(
        &cluster,
        &["logs", "-n", ns, "app", "--timestamps", "--tail=1"],
    )
    .await;
    let (stamp, rest) = ts.trim().split_once(' ').unwrap();
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    assert!(rest.starts_with("main: tick"), "{ts}");

    let (_, limited, _) = kubectl(&cluster, &["logs", "-n", ns, "app", "--limit-bytes=10"]).await;
    assert_eq!(limited, "main: star");

    let (code, _, err) = kubectl(&cluster, &["logs", "-n", ns, "app", "-c", "nope"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");

    // -f: lines written after kubectl started arrive.
    let mut child = spawn_kubectl(&cluster, &["logs", "-f", "--tail=1", "-n", ns, "app"]);
    let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), reader.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first_n: u64 = first.trim_start_matches("main: tick ").parse().unwrap();
    let started = Instant::now();
    let mut last = first_n;
    while last < first_n + 3 {
        let line = tokio::time::timeout(Duration::from_secs(5), reader.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        last = line.trim_start_matches("main: tick ").parse().unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "new lines arrive as they are written"
    );
    drop(child);
    delete_node(&cluster.client(), &node.name).await;
}

// The apiserver refuses `nodes/<n>/proxy` to loopback addresses ("address not
// allowed"), and this rig's nodes live on 127.0.0.1; so these endpoints are
// called directly, with the same TLS verification and client certificate the
// apiserver (and metrics-server) use.
#[tokio::test]
async fn stats_summary_resource_metrics_pods_and_runningpods() {
    let (cluster, ns, node) = running_app("stats", &[]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let (code, out) = kubelet_get(&cluster, port, "/stats/summary").await;
    assert_eq!(code, "200", "{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["node"]["nodeName"], json!(node.name));
    let pods = summary["pods"].as_array().unwrap();
    let app = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "app" && p["podRef"]["namespace"] == json!(ns.name()))
        .expect("pod in summary");
    assert!(
        app["containers"][0]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(app["cpu"]["usageNanoCores"].as_u64().unwrap() > 0);

    let (code, out) = kubelet_get(&cluster, port, "/metrics/resource").await;
    assert_eq!(code, "200", "{out}");
    assert!(
        out.contains(&format!(
            "container_cpu_usage_seconds_total{{container=\"main\",namespace=\"{}\",pod=\"app\"}}",
            ns.name()
        )),
        "{out}"
    );
    assert!(out.contains("node_memory_working_set_bytes"));

    for path in ["/pods", "/runningpods/"] {
        let (code, out) = kubelet_get(&cluster, port, path).await;
        assert_eq!(code, "200", "{path}: {out}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["metadata"]["name"] == "app"),
            "{path}: {out}"
        );
    }
    let (code, out) = kubelet_get(&cluster, port, "/healthz").await;
    assert_eq!((code.as_str(), out.as_str()), ("200", "ok"));
    let (code, out) = kubelet_get(&cluster, port, "/containerLogs/nope/nope/main").await;
    assert_eq!(code, "404", "{out}");
    // Plain text, as a kubelet answers /containerLogs (kubectl shows it as the message).
    assert_eq!(out, "pod nope/nope not found on this node");
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn unauthenticated_and_unauthorized_callers_are_refused() {
    let (cluster, ns, node) = running_app("authz", &[]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    // Straight to the kubelet, no credentials: 401 with a Status body.
    let url = format!("https://127.0.0.1:{port}/pods");
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", &url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("401"), "{text}");
    assert!(
        text.contains("\"kind\":\"Status\"") && text.contains("Unauthorized"),
        "{text}"
    );

    // A service account without rights on nodes/proxy: 403.
    let sa = "nobody";
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(cluster.client(), ns.name());
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": sa } })).unwrap(),
    )
    .await
    .unwrap();
    let tr: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }))
            .unwrap();
    let token: k8s_openapi::api::authentication::v1::TokenRequest = sas
        .create_subresource("token", sa, &PostParams::default(), &tr)
        .await
        .unwrap();
    let token = token.status.unwrap().token;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &url,
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("403"), "{text}");
    assert!(
        text.contains("Forbidden") && text.contains("subresource=proxy"),
        "{text}"
    );

    // Granted nodes/proxy: 200.
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let role_name = format!("{}-proxy", ns.name());
    let roles: Api<ClusterRole> = Api::all(cluster.client());
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": role_name },
                "rules": [{ "apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"] }]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client());
    bindings
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": { "name": role_name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name },
            "subjects": [{ "kind": "ServiceAccount", "name": "proxy-reader", "namespace": ns.name() }]
        })).unwrap())
        .await
        .unwrap();
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "proxy-reader" } })).unwrap(),
    )
    .await
    .unwrap();
    let granted: k8s_openapi::api::authentication::v1::TokenRequest = sas
        .create_subresource("token", "proxy-reader", &PostParams::default(), &tr)
        .await
        .unwrap();
    let granted = granted.status.unwrap().token;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {granted}"),
            &url,
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("200"), "{text}");
    assert!(text.contains("\"PodList\""), "{text}");
    let _ = bindings.delete(&role_name, &Default::default()).await;
    let _ = roles.delete(&role_name, &Default::default()).await;

    // An invalid token: 401.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-H",
            "Authorization: Bearer not-a-token",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("401"));

    // The serving certificate is issued by the cluster CA for the node's IP.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(cluster.ca_cert_path())
        .args(["-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "401",
        "TLS verified against the cluster CA"
    );
    delete_node(&cluster.client(), &node.name).await;
}

async fn kubectl_with(
    cluster: &TestCluster,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, String, String) {
    let mut cmd = cluster.kubectl_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let out = tokio::time::timeout(Duration::from_secs(60), run_with_stdin(cmd, input))
        .await
        .expect("kubectl finished");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_exec_over_websocket_and_spdy() {
    let (cluster, ns, node) = running_app("exec", &[]).await;
    let ns = ns.name();
    // kubectl's default (WebSocket to the apiserver, translated to SPDY) and plain SPDY.
    for env in [vec![], vec![("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")]] {
        let (code, out, err) = kubectl_with(
            &cluster,
            &env,
            &["exec", "-n", ns, "app", "--", "echo", "hi"],
            None,
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "hi\n"), "{env:?}: {err}");
        let (code, _, err) = kubectl_with(
            &cluster,
            &env,
            &["exec", "-n", ns, "app", "--", "sh", "-c", "exit 3"],
            None,
        )
        .await;
        assert_eq!(code, 3, "{env:?}: exit code passes through: {err}");
        let (code, out, err) = kubectl_with(
            &cluster,
            &env,
            &["exec", "-i", "-n", ns, "app", "--", "cat"],
            Some(b"line one\nline two\n"),
        )
        .await;
        assert_eq!(
            (code, out.as_str()),
            (0, "line one\nline two\n"),
            "{env:?}: stdin echoed: {err}"
        );
        let (code, out, _) = kubectl_with(
            &cluster,
            &env,
            &["exec", "-n", ns, "app", "--", "hostname"],
            None,
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "app\n"));
        let (code, _, err) = kubectl_with(
            &cluster,
            &env,
            &["exec", "-n", ns, "app", "--", "no-such-command"],
            None,
        )
        .await;
        assert_eq!(code, 127, "{err}");
    }
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn kubectl_attach_receives_output() {
    let (cluster, ns, node) = running_app("attach", &[]).await;
    let mut child = spawn_kubectl(&cluster, &["attach", "-n", ns.name(), "app", "-c", "main"]);
    let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ticks = 0;
    let start = Instant::now();
    while ticks < 2 {
        let line = tokio::time::timeout(Duration::from_secs(10), reader.next_line())
            .await
            .expect("attach output")
            .unwrap();
        match line {
            Some(l) if l.starts_with("main: tick") => ticks += 1,
            Some(_) => {}
            None => panic!("attach ended early"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(child);
    delete_node(&cluster.client(), &node.name).await;
}

#[tokio::test]
async fn kubectl_port_forward_carries_10_mb_each_way_on_two_connections() {
    use sha2_like::digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cluster, ns, node) = running_app("pf", &[]).await;
    let local = free_port().expect("free port");
    let mut child = spawn_kubectl(
        &cluster,
        &[
            "port-forward",
            "-n",
            ns.name(),
            "pod/app",
            &format!("{local}:8080"),
        ],
    );
    let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), reader.next_line())
        .await
        .expect("port-forward ready")
        .unwrap();
    assert!(ready.is_some_and(|l| l.contains("Forwarding from")));

    const SIZE: usize = 10 * 1024 * 1024;
    let mut tasks = Vec::new();
    for seed in 0..2u8 {
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..SIZE)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect();
            let want = digest(&data);
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", local))
                .await
                .unwrap();
            let (mut r, mut w) = stream.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::with_capacity(SIZE);
            tokio::time::timeout(Duration::from_secs(120), async {
                while back.len() < SIZE {
                    let mut buf = vec![0u8; 65536];
                    let n = r.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&buf[..n]);
                }
            })
            .await
            .expect("echo within 120 s");
            writer.await.unwrap();
            assert_eq!(back.len(), SIZE);
            assert_eq!(digest(&back), want, "bytes unchanged");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(child);
    delete_node(&cluster.client(), &node.name).await;
}

/// A small content digest (FNV-1a, 64 bit) for comparing large buffers.
mod sha2_like {
    pub fn digest(data: &[u8]) -> u64 {
        data.iter().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
    }
}

/// Hostile SPDY input over a raw TLS connection (as the apiserver would carry it):
/// garbage frames, an oversized header block, a half-closed stream, a vanished
/// client. The process stays up and keeps serving.
#[tokio::test]
async fn malformed_spdy_never_crashes_the_kubelet() {
    let (cluster, ns, mut node) = running_app("spdyfuzz", &[]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let pki = cluster.dir().join("pki");
    let script = r#"
import socket, ssl, struct, sys, os
port, ns, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def session(payload, read_reply=True):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    req = ("POST /exec/%s/app/main?command=cat&input=1&output=1 HTTP/1.1\r\nHost: x\r\n"
           "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n" % ns)
    s.sendall(req.encode())
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        s.sendall(payload)
        if read_reply:
            s.settimeout(3)
            try:
                while s.recv(65536):
                    pass
            except Exception:
                pass
    except Exception:
        pass
    s.close()
cases = [
    os.urandom(4096),                                            # garbage
    b"\x80\x03\x00\x01\x00\xff\xff\xff" + b"\x00" * 64,           # SYN_STREAM claiming a 16 MiB body
    b"\x80\x03\x00\x01\x00\x00\x00\x20" + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x78\x9c" + os.urandom(20),  # bad zlib
    b"\x80\x03\x00\x08\x00\x00\x00\x04\x00\x00\x00\x00",        # truncated HEADERS
    b"\x00\x00\x00\x07\x01\x00\x00\x05hello",                     # data on a stream never opened, with FIN
    b"\x80\x63\x00\x01\x00\x00\x00\x00",                           # unknown version
]
for c in cases:
    session(c)
session(b"", read_reply=False)                                   # client vanishes at once
print("ok")
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(ns.name())
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(cluster.ca_cert_path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node.try_wait().is_none(), "vk-mock is still running");
    // Still serving: a real exec works afterwards.
    let (code, out, err) = kubectl_with(
        &cluster,
        &[],
        &["exec", "-n", ns.name(), "app", "--", "echo", "alive"],
        None,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "alive\n"), "{err}");
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{}", node.log_tail());
    delete_node(&cluster.client(), &node.name).await;
}

/// The serving certificate the kubelet presents now (DER, hex).
async fn served_cert(port: u16) -> String {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg("import ssl,socket,sys\nc=ssl.create_default_context()\nc.check_hostname=False\nc.verify_mode=ssl.CERT_NONE\ns=c.wrap_socket(socket.create_connection(('127.0.0.1',int(sys.argv[1]))),server_hostname='127.0.0.1')\nprint(s.getpeercert(True).hex())")
        .arg(port.to_string())
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn serving_certificate_is_renewed_before_expiry_without_dropping_streams() {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    // A 10-minute certificate renewed when 595 s are left: the first renewal comes ~5 s after issue.
    let (cluster, ns, node) = running_app(
        "renew",
        &[
            "--serving-cert-lifetime",
            "10m",
            "--serving-cert-renew-before",
            "595s",
        ],
    )
    .await;
    let port = kubelet_port(&cluster, &node.name).await;
    let first = served_cert(port).await;
    assert!(!first.is_empty());

    let mut follow = spawn_kubectl(
        &cluster,
        &["logs", "-f", "--tail=1", "-n", ns.name(), "app"],
    );
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();

    // Approve the renewal CSR like an operator would, and wait for a new certificate to be served.
    let approver = CsrApprover::start(&cluster, &node.name, None);
    let second = wait_for(
        "a renewed certificate served",
        Duration::from_secs(60),
        || async {
            let now = served_cert(port).await;
            Ok((!now.is_empty() && now != first).then_some(now))
        },
    )
    .await
    .expect("no renewed certificate within 60 s");
    drop(approver);
    assert_ne!(first, second);
    let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client());
    let prefix = format!("csr-{}-", node.name);
    let issued = csrs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some()
        })
        .count();
    assert!(issued >= 2, "a second CSR was issued");

    // The stream opened with the old certificate keeps flowing...
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("follow still streams")
            .unwrap();
        assert!(line.is_some_and(|l| l.starts_with("main: tick")));
    }
    // ...and new connections, verified by the apiserver against the cluster CA, use the new one.
    let (code, out, err) = kubectl_with(
        &cluster,
        &[],
        &["exec", "-n", ns.name(), "app", "--", "echo", "renewed"],
        None,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "renewed\n"), "{err}");
    drop(follow);
    delete_node(&cluster.client(), &node.name).await;
}

/// Issues a serving certificate for 127.0.0.1 from the cluster CA with openssl,
/// as an operator would, into `dir/{name}.crt` and `dir/{name}.key`.
fn issue_serving_cert(cluster: &TestCluster, dir: &std::path::Path, name: &str) {
    let pki = cluster.dir().join("pki");
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let crt = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ok = |c: &mut std::process::Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
        ])
        .arg(format!("/O=system:nodes/CN=system:node:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .stderr(std::process::Stdio::null()));
    ok(std::process::Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(pki.join("ca.crt"))
        .arg("-CAkey")
        .arg(pki.join("ca.key"))
        .arg("-set_serial")
        .arg(format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_007
        ))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null()));
}

#[tokio::test]
async fn serving_certificate_from_files_is_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, ns) = cluster_and_namespace("files").await;
    issue_serving_cert(&cluster, dir.path(), "first");
    let cert = dir.path().join("serving.crt");
    let key = dir.path().join("serving.key");
    std::fs::copy(dir.path().join("first.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("first.key"), &key).unwrap();
    let node = MockNode::start(
        &cluster,
        &unique_name("files"),
        &[
            "--serving-cert-file",
            cert.to_str().unwrap(),
            "--serving-key-file",
            key.to_str().unwrap(),
        ],
    );
    let client = cluster.client();
    wait_node_ready(&client, &node.name, Duration::from_secs(20)).await;
    create_pod(&client, ns.name(), pod("app", &node.name)).await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let first = served_cert(port).await;
    // The apiserver trusts the operator's certificate: logs work without any CSR.
    let (code, _, err) = kubectl(&cluster, &["logs", "-n", ns.name(), "app", "--tail=1"]).await;
    assert_eq!(code, 0, "{err}");

    // Rotate the files in place: the new certificate is served without a restart.
    issue_serving_cert(&cluster, dir.path(), "second");
    std::fs::copy(dir.path().join("second.key"), &key).unwrap();
    std::fs::copy(dir.path().join("second.crt"), &cert).unwrap();
    wait_until(
        "the rotated certificate served",
        Duration::from_secs(20),
        || async {
            let now = served_cert(port).await;
            !now.is_empty() && now != first
        },
    )
    .await;
    let (code, out, err) = kubectl_with(
        &cluster,
        &[],
        &["exec", "-n", ns.name(), "app", "--", "echo", "rotated"],
        None,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "rotated\n"), "{err}");
    delete_node(&client, &node.name).await;
}
