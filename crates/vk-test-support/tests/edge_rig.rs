#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The edge tests' container rig works: the shared podman service answers
//! the Docker Engine API on its socket, the busybox images run (a shell, an
//! HTTP server on the bridge), and the test registry wants its credentials
//! for `/v2/` and for pulls.
//!
//! The rig is rootful: run as another user, these tests say so loudly and
//! skip. As root, a rig that cannot start fails them.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vk_test_support::{
    BUSYBOX_HTTPD_INDEX, BUSYBOX_HTTPD_PORT, PodmanEngine, Registry, busybox_httpd_image,
    busybox_image, podman, unique_name, wait_blocking,
};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The engine, or `None` (after a loud note) when not root.
fn engine() -> Option<PodmanEngine> {
    if !is_root() {
        eprintln!("\n**** SKIPPED: the edge test rig needs root (rootful podman)\n");
        return None;
    }
    Some(PodmanEngine::get().unwrap_or_else(|e| panic!("the podman service: {e:#}")))
}

fn registry() -> Option<Registry> {
    engine()?;
    Some(Registry::get().unwrap_or_else(|e| panic!("the test registry: {e:#}")))
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl")
}

/// The HTTP status `curl` saw for `url` with extra arguments.
fn status_of(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container removed when dropped (its logs printed if the test failed).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(logs) = podman(["logs", "--tail", "40", &self.0])
        {
            eprintln!(
                "---- container {} ----\n{}{}",
                self.0, logs.stdout, logs.stderr
            );
        }
        let _ = podman(["rm", "-f", "-t", "0", &self.0]);
    }
}

#[tokio::test]
async fn the_engine_answers_the_docker_api_on_its_socket() {
    let Some(engine) = engine() else {
        return;
    };
    assert_eq!(engine.endpoint(), "unix:///run/vk-rs-test/podman.sock");
    assert_eq!(
        engine.endpoint(),
        format!("unix://{}", engine.socket().display())
    );

    let mut stream = tokio::net::UnixStream::connect(engine.socket())
        .await
        .expect("connect to the engine socket");
    stream
        .write_all(b"GET /v1.41/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let version: Value = serde_json::from_str(body.trim()).expect("a JSON version document");
    assert!(
        version["ApiVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{version}"
    );
    assert!(
        version["Components"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["Name"] == "Podman Engine")),
        "{version}"
    );

    // It runs detached (its own session), so it outlives this test process.
    let pid = std::fs::read_to_string("/run/vk-rs-test/podman.pid").expect("pid file");
    let session = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
        // Fields after the parenthesised command: state ppid pgrp session.
        stat.rsplit_once(") ")?
            .1
            .split_whitespace()
            .nth(3)
            .map(str::to_string)
    };
    let theirs = session(&pid).expect("the service's pid is alive");
    assert_ne!(Some(theirs.clone()), session("self"));
    assert_eq!(theirs, pid.trim(), "the service leads its own session");
}

#[test]
fn a_busybox_container_runs_a_shell_with_users_and_a_writable_tmp() {
    if engine().is_none() {
        return;
    }
    let image = busybox_image().expect("the busybox image");
    assert_eq!(image, "localhost/vk-test/busybox:1");
    // Built once: asking again does not rebuild.
    let id = |r: &str| {
        podman(["image", "inspect", "--format", "{{.Id}}", r])
            .unwrap()
            .ok()
            .unwrap()
    };
    let before = id(&image);
    busybox_image().unwrap();
    assert_eq!(id(&image), before);

    let name = unique_name("rig-sh");
    let _container = Container(name.clone());
    let out = podman([
        "run",
        "--rm",
        "--pull=never",
        "--name",
        &name,
        "--hostname",
        &name,
        &image,
        "sh",
        "-c",
        "echo hi; hostname; id -un; echo written > /tmp/f && cat /tmp/f; id -u nobody",
    ])
    .unwrap();
    assert!(out.success(), "{}: {}", out.command, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["hi", name.as_str(), "root", "written", "65534"]);
}

#[test]
fn the_httpd_image_serves_on_the_bridge_address() {
    let Some(engine) = engine() else {
        return;
    };
    let image = busybox_httpd_image().expect("the busybox httpd image");
    let name = unique_name("rig-httpd");
    let _container = Container(name.clone());
    podman(["run", "-d", "--pull=never", "--name", &name, &image])
        .unwrap()
        .ok()
        .unwrap();
    let ip = engine.container_ip(&name).unwrap();
    assert!(ip.to_string().starts_with("10.88."), "{ip}");
    let url = format!("http://{ip}:{BUSYBOX_HTTPD_PORT}/");
    let mut body = String::new();
    wait_blocking(std::time::Duration::from_secs(5), || {
        let out = curl(&[&url]);
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert_eq!(body, BUSYBOX_HTTPD_INDEX);
}

#[test]
fn the_registry_wants_its_credentials() {
    let Some(registry) = registry() else {
        return;
    };
    let url = format!("http://{}/v2/", registry.host());
    let creds = format!("{}:{}", registry.username(), registry.password());
    assert_eq!(status_of(&url, &[]), "401");
    assert_eq!(status_of(&url, &["-u", &creds]), "200");
    assert_eq!(
        status_of(&url, &["-u", &format!("{}:wrong", registry.username())]),
        "401"
    );
    // The private image is there, behind the credentials.
    let image = registry.private_image();
    let (repository, tag) = image
        .strip_prefix(&format!("{}/", registry.host()))
        .and_then(|p| p.rsplit_once(':'))
        .expect("host/repository:tag");
    let manifest = format!("http://{}/v2/{repository}/manifests/{tag}", registry.host());
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    assert_eq!(status_of(&manifest, &["-H", accept]), "401");
    assert_eq!(status_of(&manifest, &["-H", accept, "-u", &creds]), "200");
    // And not in podman's storage, so a pull goes to the registry.
    let exists = podman(["image", "exists", &image]).unwrap();
    assert!(!exists.success(), "{image} is in the local storage");
}

#[test]
fn a_private_image_pulls_with_the_credentials_only() {
    let Some(registry) = registry() else {
        return;
    };
    // A copy of our own, so parallel tests pulling the shared private image
    // do not race this one's removal.
    let image = registry
        .push_private_copy(&unique_name("rig-pull"))
        .expect("push a private copy");
    assert!(image.starts_with(&format!("{}/vk-test/rig-pull-", registry.host())));
    let dir = tempfile::tempdir().unwrap();
    // No stored credentials from anywhere else.
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let authfile = authfile.to_string_lossy().into_owned();
    let exists = || podman(["image", "exists", &image]).unwrap().success();
    assert!(!exists(), "push_private_copy left a local copy");

    let anonymous = podman(["pull", "--authfile", &authfile, &image]).unwrap();
    assert!(!anonymous.success(), "pulled without credentials");
    assert!(
        anonymous.stderr.contains("unauthorized") || anonymous.stderr.contains("authentication"),
        "{}",
        anonymous.stderr
    );
    assert!(!exists());

    let wrong = podman([
        "pull",
        "--authfile",
        &authfile,
        "--creds",
        &format!("{}:wrong", registry.username()),
        &image,
    ])
    .unwrap();
    assert!(!wrong.success(), "pulled with a wrong password");

    let creds = format!("{}:{}", registry.username(), registry.password());
    let pulled = podman(["pull", "--authfile", &authfile, "--creds", &creds, &image]).unwrap();
    assert!(pulled.success(), "{}: {}", pulled.command, pulled.stderr);
    assert!(exists());
    // The same image as the local busybox build.
    let id = |r: &str| {
        podman(["image", "inspect", "--format", "{{.Id}}", r])
            .unwrap()
            .ok()
            .unwrap()
    };
    assert_eq!(id(&image), id(&busybox_image().unwrap()));
    podman(["rmi", &image]).unwrap().ok().unwrap();
}
