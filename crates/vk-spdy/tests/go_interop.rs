//! Interoperability with the real client: the Go program in
//! `tests/spdystream-client` talks to our server through
//! `github.com/moby/spdystream`, the library the apiserver uses, over TCP on
//! loopback. It checks SYN_REPLY handling, header compression in both
//! directions, pings, FIN, resets, 10 MB through an exec-like session and
//! the server's GOAWAY.
//!
//! Ignored by default because it needs the Go toolchain and spdystream
//! v0.5.1 in the Go module cache (the build runs with `GOPROXY=off`):
//! `cargo test -p vk-spdy --test go_interop -- --ignored`.

// Helpers shared by the tests panic on failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::time::timeout;
use vk_spdy::{Config, Connection, Stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Go toolchain and github.com/moby/spdystream v0.5.1 in the module cache"]
async fn spdystream_client_interoperates() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spdystream-client");
    let binary = std::env::temp_dir().join(format!("vk-spdy-client-{}", std::process::id()));
    let build = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("running go build");
    assert!(
        build.status.success(),
        "go build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::process::Command::new(&binary)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the Go client");

    let (socket, _) = timeout(Duration::from_secs(30), listener.accept())
        .await
        .expect("the client did not connect")
        .unwrap();
    let (handle, mut streams) = Connection::serve(
        socket,
        Config {
            // Our own pings must not disturb the client either.
            ping_interval: Some(Duration::from_millis(100)),
            ..Config::default()
        },
    );

    let server_handle = handle.clone();
    let server = tokio::spawn(async move {
        let (mut error, mut stdin, mut stdout) = (None, None, None);
        while let Some(mut stream) = streams.recv().await {
            match stream.stream_type() {
                Some("data") => {
                    assert_eq!(stream.headers().get("port"), Some("8080"));
                    assert_eq!(stream.headers().get("requestid"), Some("0"));
                    tokio::spawn(echo(stream));
                }
                Some("reset-me") => {
                    tokio::spawn(async move { stream.reset().await.unwrap() });
                }
                Some("error") => error = Some(stream),
                Some("stdin") => stdin = Some(stream),
                Some("stdout") => stdout = Some(stream),
                other => panic!("unexpected stream type {other:?}"),
            }
            if error.is_some() && stdin.is_some() && stdout.is_some() {
                let (mut error, stdin, mut stdout) = (
                    error.take().unwrap(),
                    stdin.take().unwrap(),
                    stdout.take().unwrap(),
                );
                let handle = server_handle.clone();
                tokio::spawn(async move {
                    let (mut input, _) = stdin.into_split();
                    while let Some(chunk) = input.recv().await {
                        stdout.send(chunk).await.unwrap();
                    }
                    stdout.close().await.unwrap();
                    error
                        .send(Bytes::from_static(br#"{"status":"Success"}"#))
                        .await
                        .unwrap();
                    error.close().await.unwrap();
                    // Like the kubelet: the session ends with the command.
                    handle.close().await;
                });
            }
        }
    });

    let output = timeout(Duration::from_secs(150), client.wait_with_output())
        .await
        .expect("the Go client hung")
        .unwrap();
    let _ = std::fs::remove_file(&binary);
    assert!(
        output.status.success(),
        "Go client failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
    timeout(Duration::from_secs(30), handle.closed())
        .await
        .expect("the connection did not end");
    timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
}

async fn echo(stream: Stream) {
    let (mut input, mut output) = stream.into_split();
    while let Some(chunk) = input.recv().await {
        output.send(chunk).await.unwrap();
    }
    output.close().await.unwrap();
}
