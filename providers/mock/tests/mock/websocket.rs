//! The kubelet API's WebSocket channel protocols against a real `vk-mock` node:
//! exec and port-forward called directly with the apiserver's kubelet client
//! certificate (as the apiserver does from 1.36 on), and through the apiserver
//! for legacy `v4` clients, which it passes to the kubelet untranslated.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(30);

/// TLS verified against the cluster CA, with a client certificate from the
/// cluster's PKI (`apiserver-kubelet-client` toward a kubelet, `admin` toward
/// the apiserver).
fn tls_config(cluster: &TestCluster, client_cert: &str) -> rustls::ClientConfig {
    let pki = cluster.dir().join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(cluster.ca_cert_path()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join(format!("{client_cert}.crt")))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join(format!("{client_cert}.key"))).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// Opens a WebSocket offering `protocols`; the protocol the server chose, or
/// the HTTP status when it refused the upgrade.
async fn connect(
    cluster: &TestCluster,
    client_cert: &str,
    port: u16,
    path: &str,
    protocols: &[&str],
) -> Result<(Ws, Option<String>), (u16, String)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config(cluster, client_cert)))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("handshake in time")
    {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            Ok((ws, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            Err((resp.status().as_u16(), body.into_owned()))
        }
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// Decodes a server message of a channel protocol: (channel, payload).
fn decode(msg: Message) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) => Some((b[0], b[1..].to_vec())),
        Message::Text(t) => {
            let s = t.as_str();
            Some((s.as_bytes()[0] - b'0', BASE64.decode(&s[1..]).unwrap()))
        }
        _ => None,
    }
}

/// Every channel message until the server has closed the WebSocket.
async fn read_to_close(ws: &mut Ws) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server ends the session in time");
        match msg {
            Some(Ok(m)) => msgs.extend(decode(m)),
            Some(Err(e)) => panic!("WebSocket read failed: {e}"),
            None => return msgs,
        }
    }
}

fn channel(msgs: &[(u8, Vec<u8>)], ch: u8) -> Vec<u8> {
    msgs.iter()
        .filter(|(c, _)| *c == ch)
        .flat_map(|(_, p)| p.clone())
        .collect()
}

fn status(msgs: &[(u8, Vec<u8>)]) -> Value {
    let raw = channel(msgs, 3);
    serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("status JSON ({e}): {}", String::from_utf8_lossy(&raw)))
}

fn binary(channel: u8, payload: &[u8]) -> Message {
    let mut m = vec![channel];
    m.extend_from_slice(payload);
    Message::Binary(Bytes::from(m))
}

#[tokio::test]
async fn exec_over_websocket_channel_protocols() {
    let (cluster, ns, node) = running_app("wsexec", &[]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let exec = |query: &str| format!("/exec/{}/app/main?{query}", ns.name());
    let echo = exec("command=echo&command=hi&output=1&error=1");
    let exit3 = exec("command=sh&command=-c&command=exit%203&output=1&error=1");
    let kubelet = "apiserver-kubelet-client";

    for proto in [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v4.base64.channel.k8s.io",
    ] {
        let (mut ws, chosen) = connect(&cluster, kubelet, port, &echo, &[proto])
            .await
            .unwrap();
        assert_eq!(chosen.as_deref(), Some(proto));
        let msgs = read_to_close(&mut ws).await;
        assert_eq!(
            msgs.first(),
            Some(&(1, vec![])),
            "{proto}: an empty stdout message opens the session"
        );
        assert_eq!(channel(&msgs, 1), b"hi\n", "{proto}: {msgs:?}");
        assert_eq!(status(&msgs)["status"], "Success", "{proto}");

        let (mut ws, _) = connect(&cluster, kubelet, port, &exit3, &[proto])
            .await
            .unwrap();
        let s = status(&read_to_close(&mut ws).await);
        assert_eq!(s["status"], "Failure", "{proto}: {s}");
        assert_eq!(s["reason"], "NonZeroExitCode", "{proto}: {s}");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode", "{s}");
        assert_eq!(s["details"]["causes"][0]["message"], "3", "{s}");
    }

    // The client's preference decides; unknown protocols are refused.
    let (_, chosen) = connect(
        &cluster,
        kubelet,
        port,
        &echo,
        &["v4.base64.channel.k8s.io", "v5.channel.k8s.io"],
    )
    .await
    .unwrap();
    assert_eq!(chosen.as_deref(), Some("v4.base64.channel.k8s.io"));
    let refused = connect(&cluster, kubelet, port, &echo, &["nope.k8s.io"]).await;
    assert_eq!(refused.err().map(|(code, _)| code), Some(403));

    // Before v4 the error channel carries only a failure, as text.
    let (mut ws, _) = connect(&cluster, kubelet, port, &echo, &["channel.k8s.io"])
        .await
        .unwrap();
    let msgs = read_to_close(&mut ws).await;
    assert_eq!(channel(&msgs, 1), b"hi\n");
    assert!(channel(&msgs, 3).is_empty(), "{msgs:?}");
    let (mut ws, _) = connect(&cluster, kubelet, port, &exit3, &["channel.k8s.io"])
        .await
        .unwrap();
    let text = String::from_utf8(channel(&read_to_close(&mut ws).await, 3)).unwrap();
    assert!(
        text.starts_with("command terminated with non-zero exit code"),
        "{text}"
    );

    // v5: stdin, then the close signal ends `cat`.
    let cat = exec("command=cat&input=1&output=1&error=1");
    let (mut ws, _) = connect(&cluster, kubelet, port, &cat, &["v5.channel.k8s.io"])
        .await
        .unwrap();
    ws.send(binary(0, b"hello\n")).await.unwrap();
    ws.send(binary(0, b"world\n")).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let msgs = read_to_close(&mut ws).await;
    assert_eq!(channel(&msgs, 1), b"hello\nworld\n", "{msgs:?}");
    assert_eq!(status(&msgs)["status"], "Success");

    // A terminal: the size arrives on the resize channel.
    let tty = exec("command=tty-size&tty=1&input=1&output=1");
    let (mut ws, _) = connect(&cluster, kubelet, port, &tty, &["v5.channel.k8s.io"])
        .await
        .unwrap();
    ws.send(binary(4, br#"{"Width":100,"Height":40}"#))
        .await
        .unwrap();
    let msgs = read_to_close(&mut ws).await;
    assert_eq!(channel(&msgs, 1), b"40 100\r\n", "{msgs:?}");

    // attach: the container's output as it comes.
    let attach = format!("/attach/{}/app/main?output=1", ns.name());
    let (mut ws, chosen) = connect(&cluster, kubelet, port, &attach, &["v5.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("v5.channel.k8s.io"));
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("main: tick") {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("attach output in time")
            .expect("session open")
            .unwrap();
        if let Some((1, payload)) = decode(msg) {
            seen.extend_from_slice(&payload);
        }
    }
    ws.close(None).await.unwrap();

    // A client that goes away mid-command cancels it.
    let sleep = exec("command=sleep&command=600&output=1");
    let (mut ws, _) = connect(&cluster, kubelet, port, &sleep, &["v5.channel.k8s.io"])
        .await
        .unwrap();
    let up = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert_eq!(up.and_then(|m| decode(m.unwrap())), Some((1, vec![])));
    drop(ws);
    let log = node.log.clone();
    wait_until("the command cancelled", Duration::from_secs(10), || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("client went away; command cancelled")
        }
    })
    .await;
    let (mut ws, _) = connect(&cluster, kubelet, port, &echo, &["v5.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(channel(&read_to_close(&mut ws).await, 1), b"hi\n");

    // A plain request is still not an upgrade.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(cluster.ca_cert_path())
        .arg("--cert")
        .arg(cluster.dir().join("pki/apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(cluster.dir().join("pki/apiserver-kubelet-client.key"))
        .arg(format!("https://127.0.0.1:{port}{echo}"))
        .output()
        .await
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code, "400");
    delete_node(&cluster.client(), &node.name).await;
}

/// Echoes `data` through port 8080 on a v4 binary port-forward connection.
async fn echo_through(ws: Ws, data: Vec<u8>) -> Vec<u8> {
    let (mut tx, mut rx) = ws.split();
    let size = data.len();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(32 * 1024) {
            tx.send(binary(0, chunk)).await.unwrap();
        }
        tx
    });
    let mut back = Vec::with_capacity(size);
    while back.len() < size {
        let msg = tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("echo in time")
            .expect("connection open")
            .unwrap();
        if let Some((ch, payload)) = decode(msg) {
            assert_eq!(ch, 0, "data channel");
            back.extend_from_slice(&payload);
        }
    }
    let mut tx = writer.await.unwrap();
    tx.send(Message::Close(None)).await.unwrap();
    back
}

#[tokio::test]
async fn port_forward_over_websocket() {
    let (cluster, ns, node) = running_app("wspf", &[]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let kubelet = "apiserver-kubelet-client";
    let path = format!("/portForward/{}/app?port=8080", ns.name());

    // v4 binary: the port opens both channels, then 1 MB goes through the echo unchanged.
    let (mut ws, chosen) = connect(&cluster, kubelet, port, &path, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    for want in [0u8, 1] {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(decode(msg), Some((want, vec![0x90, 0x1f])), "port 8080, LE");
    }
    let data: Vec<u8> = (0..1024 * 1024)
        .map(|i: usize| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect();
    let back = echo_through(ws, data.clone()).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "bytes unchanged");

    // Two ports on one connection (`ports`, the pod subresource's name): channels 0..3.
    let two = format!("/portForward/{}/app?ports=8080,9090", ns.name());
    let (mut ws, _) = connect(&cluster, kubelet, port, &two, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    let mut headers = Vec::new();
    for _ in 0..4 {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        headers.extend(decode(msg));
    }
    let p9090 = 9090u16.to_le_bytes().to_vec();
    assert_eq!(
        headers,
        [
            (0, vec![0x90, 0x1f]),
            (1, vec![0x90, 0x1f]),
            (2, p9090.clone()),
            (3, p9090)
        ]
    );
    ws.send(binary(2, b"second port")).await.unwrap();
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(decode(msg), Some((2, b"second port".to_vec())));
    ws.close(None).await.unwrap();

    // v4 base64: text messages, the channel as a digit.
    let (mut ws, _) = connect(
        &cluster,
        kubelet,
        port,
        &path,
        &["v4.base64.channel.k8s.io"],
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::Text("0kB8=".into()));
    let _error_channel = ws.next().await;
    ws.send(Message::Text(format!("0{}", BASE64.encode("hello")).into()))
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(decode(msg), Some((0, b"hello".to_vec())));
    ws.close(None).await.unwrap();

    // Without ports there is nothing to forward.
    let none = format!("/portForward/{}/app", ns.name());
    let refused = connect(&cluster, kubelet, port, &none, &["v4.channel.k8s.io"]).await;
    assert_eq!(refused.err().map(|(code, _)| code), Some(400));

    spdy_tunnel_echo(&cluster, port, ns.name()).await;
    delete_node(&cluster.client(), &node.name).await;
}

/// kubectl's WebSocket port-forward: SPDY frames inside binary messages.
async fn spdy_tunnel_echo(cluster: &TestCluster, port: u16, ns: &str) {
    use vk_spdy::{Frame, FrameDecoder, HeaderCompressor};
    let path = format!("/portForward/{ns}/app");
    let proto = "SPDY/3.1+portforward.k8s.io";
    let (ws, chosen) = connect(cluster, "apiserver-kubelet-client", port, &path, &[proto])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some(proto));
    let (mut tx, mut rx) = ws.split();
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut compressor = HeaderCompressor::new();
    let mut out = BytesMut::new();
    for (stream_id, kind) in [(1, "error"), (3, "data")] {
        Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: [("streamtype", kind), ("port", "8080"), ("requestid", "0")]
                .into_iter()
                .collect(),
        }
        .encode(&mut compressor, &mut out)
        .unwrap();
    }
    Frame::Data {
        stream_id: 3,
        fin: true,
        data: Bytes::from(payload.clone()),
    }
    .encode(&mut compressor, &mut out)
    .unwrap();
    tx.send(Message::Binary(out.freeze())).await.unwrap();

    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut echoed = Vec::new();
    let mut replies = 0;
    let mut fin = false;
    while !fin {
        let msg = tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("SPDY frames in time")
            .expect("tunnel open")
            .unwrap();
        let Message::Binary(b) = msg else { continue };
        buf.extend_from_slice(&b);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            match frame {
                Frame::SynReply { .. } => replies += 1,
                Frame::Data {
                    stream_id: 3,
                    data,
                    fin: f,
                } => {
                    echoed.extend_from_slice(&data);
                    fin |= f;
                }
                _ => {}
            }
        }
    }
    assert_eq!(replies, 2, "both streams accepted");
    assert!(echoed == payload, "echoed through the tunnel");
    tx.send(Message::Close(None)).await.unwrap();
}

/// A legacy client offering only `v4.channel.k8s.io` to the apiserver: the
/// apiserver proxies the WebSocket to the kubelet as it is (and turns the
/// pod subresource's `ports` into the kubelet's `port`).
#[tokio::test]
async fn legacy_websocket_clients_through_the_apiserver() {
    let (cluster, ns, node) = running_app("wsapi", &[]).await;
    let api = cluster.apiserver_port().unwrap();
    let exec = format!(
        "/api/v1/namespaces/{}/pods/app/exec?container=main&command=echo&command=hi&stdout=true&stderr=true",
        ns.name()
    );
    for proto in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let (mut ws, chosen) = connect(&cluster, "admin", api, &exec, &[proto])
            .await
            .unwrap_or_else(|(code, body)| panic!("{proto}: {code} {body}"));
        assert_eq!(chosen.as_deref(), Some(proto));
        let msgs = read_to_close(&mut ws).await;
        assert_eq!(channel(&msgs, 1), b"hi\n", "{proto}: {msgs:?}");
        assert_eq!(status(&msgs)["status"], "Success", "{proto}");
    }

    let pf = format!(
        "/api/v1/namespaces/{}/pods/app/portforward?ports=8080",
        ns.name()
    );
    let (mut ws, _) = connect(&cluster, "admin", api, &pf, &["v4.channel.k8s.io"])
        .await
        .unwrap_or_else(|(code, body)| panic!("port-forward: {code} {body}"));
    for want in [0u8, 1] {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(decode(msg), Some((want, vec![0x90, 0x1f])));
    }
    let data = b"through the apiserver".to_vec();
    assert_eq!(echo_through(ws, data.clone()).await, data);
    delete_node(&cluster.client(), &node.name).await;
}

/// An exec, attach or port-forward stream keeps its connection's place under
/// the caps after the upgrade: its descriptor is still open.
#[tokio::test]
async fn an_upgraded_stream_holds_its_connections_place_under_the_cap() {
    let (cluster, ns, node) = running_app("wscap", &["--api-max-connections-per-ip", "1"]).await;
    let port = kubelet_port(&cluster, &node.name).await;
    let path = format!("/portForward/{}/app?port=8080", ns.name());
    let (mut ws, _) = connect(
        &cluster,
        "apiserver-kubelet-client",
        port,
        &path,
        &["v4.channel.k8s.io"],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let closed = |mut s: TcpStream, within: Duration| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    };
    let second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(
        closed(second, Duration::from_secs(3)).await,
        "the stream holds the only place of its IP"
    );
    drop(ws);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(
        !closed(third, Duration::from_secs(1)).await,
        "the place is free once the stream ends"
    );
    delete_node(&cluster.client(), &node.name).await;
}
