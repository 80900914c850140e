//! The `vk-mock` image: built by `cargo xtask build-images --provider mock`
//! (no container engine involved), loaded into rootful podman from its
//! `docker-archive` tarball, run for `--version`, and run with host
//! networking against the local control plane, where it registers a Ready node
//! and runs the demo's workload.
//!
//! Podman on these machines needs `--runtime runc --cgroup-manager=cgroupfs`
//! and `default_ulimits = []` under `[containers]` in
//! `/etc/containers/containers.conf`: `vk_test_support::prepare_podman`
//! (run as root, it installs the Debian packages `podman` and `runc` when
//! missing and writes that setting when absent) and `vk_test_support::podman`
//! (the CLI with those flags). When podman cannot run at all the tests say
//! so loudly and skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use vk_test_support::{PodmanOutput, prepare_podman};

use crate::support::*;

/// The mock image must stay below this (compressed).
const MAX_COMPRESSED_BYTES: u64 = 20_000_000;

/// The image, built and loaded once per test binary.
#[derive(Debug, Clone)]
struct LoadedImage {
    tarball: PathBuf,
    /// The reference podman load reported (`docker.io/vk-rs/vk-mock:0.1.0`).
    reference: String,
}

/// `Err` carries why podman cannot be used (the tests then skip).
static IMAGE: OnceCell<Result<LoadedImage, String>> = OnceCell::const_new();

async fn loaded_image() -> Option<LoadedImage> {
    let result = IMAGE
        .get_or_init(|| async {
            tokio::task::spawn_blocking(build_and_load)
                .await
                .unwrap_or_else(|e| Err(format!("build task failed: {e}")))
        })
        .await;
    match result {
        Ok(image) => Some(image.clone()),
        Err(why) => {
            eprintln!(
                "\n**** SKIPPED: podman cannot run on this machine: {why}\n\
                 **** the image was built, but loading and running it was not checked\n"
            );
            None
        }
    }
}

/// Builds the image with the xtask (that part must always work), then makes
/// podman usable and loads the tarball. Only podman's absence is an `Err`;
/// a build or load failure panics.
fn build_and_load() -> Result<LoadedImage, String> {
    let out = vk_test_support::xtask(["build-images", "--provider", "mock"])
        .expect("cargo xtask build-images --provider mock");
    let tarball = PathBuf::from(out.last_line().expect("build-images printed no path"));
    assert!(tarball.is_file(), "{} does not exist", tarball.display());
    assert!(
        tarball.starts_with(vk_test_support::workspace_root().join("target/images/mock")),
        "tarball outside target/images/mock: {}",
        tarball.display()
    );
    let size = std::fs::metadata(&tarball).expect("tarball size").len();
    assert!(
        size < MAX_COMPRESSED_BYTES,
        "image tarball is {size} bytes, above the {MAX_COMPRESSED_BYTES} target"
    );
    // The OCI layout beside it.
    let layout = tarball.parent().expect("layout dir");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    assert_eq!(index["schemaVersion"], 2);
    assert!(layout.join("oci-layout").is_file());

    prepare_podman().map_err(|e| format!("{e:#}"))?;
    let loaded = podman(&["load", "-i", &tarball.to_string_lossy()]);
    assert!(
        loaded.status.success(),
        "podman load -i {} failed: {}",
        tarball.display(),
        text(&loaded.stderr)
    );
    let stdout = text(&loaded.stdout);
    let reference = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Loaded image: ")
                .or_else(|| l.strip_prefix("Loaded image(s): "))
        })
        .map(|r| r.split(',').next().unwrap_or(r).trim().to_string())
        .unwrap_or_else(|| panic!("podman load did not name the image: {stdout}"));
    assert!(
        reference.ends_with("vk-rs/vk-mock:0.1.0") || reference.contains("vk-rs/vk-mock:"),
        "loaded {reference}"
    );
    Ok(LoadedImage { tarball, reference })
}

/// `podman` with the flags these machines need; a failure to start it panics.
fn podman(args: &[&str]) -> PodmanOutput {
    vk_test_support::podman(args).expect("running podman")
}

fn text(output: &str) -> String {
    output.trim().to_string()
}

/// A detached container, removed when dropped (its logs printed if the test failed).
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = podman(&["logs", "--tail", "60", &self.name]);
            eprintln!(
                "---- container {} logs ----\n{}\n{}",
                self.name,
                text(&logs.stdout),
                text(&logs.stderr)
            );
        }
        let _ = podman(&["rm", "-f", "-t", "2", &self.name]);
    }
}

#[tokio::test]
async fn the_image_loads_and_prints_its_version() {
    let Some(image) = loaded_image().await else {
        return;
    };
    let run = podman(&["run", "--rm", "--pull=never", &image.reference, "--version"]);
    assert!(
        run.status.success(),
        "podman run --version failed: {}",
        text(&run.stderr)
    );
    assert_eq!(text(&run.stdout), "vk-mock 0.1.0");

    // What the image declares: non-root user, entrypoint, labels.
    let inspect = podman(&["image", "inspect", &image.reference]);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let info: Value = serde_json::from_str(&inspect.stdout).expect("inspect JSON");
    let config = &info[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], json!(["/vk-mock"]));
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "vk-mock");
    assert_eq!(labels["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for key in ["description", "source", "created"] {
        let value = labels[format!("org.opencontainers.image.{key}")]
            .as_str()
            .unwrap_or("");
        assert!(!value.is_empty(), "label {key} missing: {labels}");
    }
    // The revision is a commit of this checkout (HEAD when the image was
    // built; absent outside a git checkout).
    let root = vk_test_support::workspace_root();
    let in_git = Command::new("git")
        .current_dir(&root)
        .args(["rev-parse", "--git-dir"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        let revision = labels["org.opencontainers.image.revision"]
            .as_str()
            .unwrap_or("");
        assert!(
            revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "revision label {revision:?}"
        );
        let known = Command::new("git")
            .current_dir(&root)
            .args(["cat-file", "-e", &format!("{revision}^{{commit}}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            known,
            "revision {revision} is not a commit of this checkout"
        );
    }
    // One layer, under the size target (podman reports the uncompressed size).
    assert_eq!(
        info[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(image.tarball.is_file());
}

#[tokio::test]
async fn the_image_with_host_networking_registers_a_ready_node_and_runs_pods() {
    let Some(image) = loaded_image().await else {
        return;
    };
    let (cluster, ns) = cluster_and_namespace("vk-image").await;
    let client = cluster.client();
    let node = unique_name("vk-image");
    let _node_cleanup = cluster.delete_on_drop("node", None, &node);
    let _lease_cleanup = cluster.delete_on_drop("lease", Some("kube-node-lease"), &node);
    let approver = CsrApprover::start(&cluster, &node, None);

    // The container runs as uid 65532: give it a readable copy of the kubeconfig.
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig).expect("copy kubeconfig");
    set_mode(&kubeconfig, 0o644);
    let metrics_port = free_port().expect("free port");
    let container = Container {
        name: format!("vk-mock-test-{node}"),
    };
    let started = podman(&[
        "run",
        "-d",
        "--pull=never",
        "--name",
        &container.name,
        "--network",
        "host",
        "-v",
        &format!("{}:/kubeconfig:ro", kubeconfig.display()),
        &image.reference,
        "--kubeconfig",
        "/kubeconfig",
        "--nodename",
        &node,
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
        "--kubelet-port",
        &free_port().expect("free port").to_string(),
    ]);
    assert!(
        started.status.success(),
        "podman run failed: {}",
        text(&started.stderr)
    );

    wait_node_ready(&client, &node, Duration::from_secs(60)).await;
    // The health endpoint of the process inside the container, over the host network.
    let healthz = http_get(&format!("http://127.0.0.1:{metrics_port}/healthz")).await;
    assert!(healthz.is_ok(), "/healthz did not answer 200: {healthz:?}");

    // The demo's workload, pinned to this node.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &demo_deployment(&node))
        .await
        .expect("create the demo deployment");
    let params = ListParams::default().labels("app=demo");
    let list = wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "3 demo pods Running and Ready",
        |list| {
            list.len() == 3
                && list.iter().all(|p| {
                    phase(p) == "Running"
                        && is_ready(p)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            == Some(node.as_str())
                })
        },
    )
    .await;

    // Logs through the apiserver, served by the kubelet API inside the
    // container with its CSR-issued certificate.
    if has_kubelet_api() {
        let pod_name = list[0].metadata.name.clone().unwrap_or_default();
        let logs = logs_via_apiserver(&cluster, ns.name(), &pod_name, "nginx")
            .await
            .unwrap_or_else(|e| panic!("kubectl logs {pod_name}: {e}"));
        assert!(
            logs.contains("nginx: started (image nginx)"),
            "logs: {logs}"
        );
        assert!(
            !approver.approved().is_empty(),
            "no serving CSR was approved"
        );
    }

    deployments
        .delete("demo", &DeleteParams::default())
        .await
        .expect("delete the deployment");
    wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "the demo pods gone",
        <[Pod]>::is_empty,
    )
    .await;
    drop(container);
}

/// `examples/demo-deployment.yaml`, with a node selector for this test's node.
fn demo_deployment(node: &str) -> Deployment {
    let path = vk_test_support::workspace_root().join("examples/demo-deployment.yaml");
    let text = std::fs::read_to_string(&path).expect("demo deployment");
    let mut value: Value = serde_saphyr::from_str(&text).expect("demo deployment YAML");
    value["spec"]["template"]["spec"]["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    serde_json::from_value(value).expect("a Deployment")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
