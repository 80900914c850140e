//! The providers' images as their tests use them: built by
//! `cargo xtask build-images` (every provider in one cargo invocation, so the
//! first test process to ask builds all four and the others find cargo's
//! work done), loaded into rootful podman from the `docker-archive` tarball,
//! and checked for what every image must declare.
//!
//! The build must always work; only podman's absence on a machine is
//! reported as an `Err` (the tests then say so loudly and skip). A build or
//! load failure panics, as an assertion would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::{PodmanOutput, podman, prepare_podman, workspace_root, xtask};

/// Every image must stay below this (compressed).
pub const MAX_COMPRESSED_BYTES: u64 = 20_000_000;

/// A provider's image, built and loaded into podman.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// `vk-mock` for provider `mock`.
    pub binary: String,
    pub tarball: PathBuf,
    /// The reference podman load reported (`docker.io/vk-rs/vk-mock:0.1.0`).
    pub reference: String,
}

/// Built and loaded once per test process and provider.
static LOADED: Mutex<BTreeMap<String, Result<LoadedImage, String>>> = Mutex::new(BTreeMap::new());

/// The image of `provider` (`mock`, `edge`, `fargate`, `aci`), or `None`
/// after printing why podman cannot run here. Blocks for the build: call it
/// from `spawn_blocking` or [`provider_image`].
pub fn build_and_load(provider: &str) -> Option<LoadedImage> {
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = loaded
        .entry(provider.to_string())
        .or_insert_with(|| build_then_load(provider));
    match result {
        Ok(image) => Some(image.clone()),
        Err(why) => {
            eprintln!(
                "\n**** SKIPPED: podman cannot run on this machine: {why}\n\
                 **** the vk-{provider} image was built, but loading and running it was not checked\n"
            );
            None
        }
    }
}

/// [`build_and_load`] off the async runtime.
pub async fn provider_image(provider: &str) -> Option<LoadedImage> {
    let provider = provider.to_string();
    tokio::task::spawn_blocking(move || build_and_load(&provider))
        .await
        .unwrap_or_else(|e| panic!("image build task failed: {e}"))
}

fn build_then_load(provider: &str) -> Result<LoadedImage, String> {
    // All providers, so that every test process runs the same cargo build.
    let out = xtask(["build-images"]).unwrap_or_else(|e| panic!("cargo xtask build-images: {e:#}"));
    let dir = workspace_root().join("target/images").join(provider);
    let tarball = out
        .stdout
        .lines()
        .map(PathBuf::from)
        .find(|path| path.starts_with(&dir))
        .unwrap_or_else(|| {
            panic!(
                "build-images printed no tarball under {}: {}",
                dir.display(),
                out.stdout
            )
        });
    assert!(tarball.is_file(), "{} does not exist", tarball.display());
    let size = std::fs::metadata(&tarball)
        .unwrap_or_else(|e| panic!("tarball size: {e:#}"))
        .len();
    assert!(
        size < MAX_COMPRESSED_BYTES,
        "{} is {size} bytes, above the {MAX_COMPRESSED_BYTES} target",
        tarball.display()
    );
    // The OCI layout beside it.
    let index: Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json")).unwrap_or_else(|e| panic!("index.json: {e:#}")),
    )
    .unwrap_or_else(|e| panic!("index.json is JSON: {e:#}"));
    assert_eq!(index["schemaVersion"], 2);
    assert!(dir.join("oci-layout").is_file());

    prepare_podman().map_err(|e| format!("{e:#}"))?;
    let loaded = run_podman(&["load", "-i", &tarball.to_string_lossy()]);
    assert!(
        loaded.status.success(),
        "podman load -i {} failed: {}",
        tarball.display(),
        loaded.stderr.trim()
    );
    let binary = format!("vk-{provider}");
    let reference = loaded
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Loaded image: ")
                .or_else(|| l.strip_prefix("Loaded image(s): "))
        })
        .map(|r| r.split(',').next().unwrap_or(r).trim().to_string())
        .unwrap_or_else(|| panic!("podman load did not name the image: {}", loaded.stdout));
    assert!(
        reference.contains(&format!("vk-rs/{binary}:")),
        "loaded {reference}"
    );
    Ok(LoadedImage {
        binary,
        tarball,
        reference,
    })
}

fn run_podman(args: &[&str]) -> PodmanOutput {
    podman(args).unwrap_or_else(|e| panic!("running podman: {e:#}"))
}

impl LoadedImage {
    /// Asserts that `--version` in a container prints `vk-<name> <version>`
    /// and that the image declares what every image must: the non-root
    /// user, its binary as the entrypoint, the OCI labels (the revision a
    /// commit of this checkout) and a single layer.
    pub fn assert_runs_and_declares(&self) {
        let run = run_podman(&["run", "--rm", "--pull=never", &self.reference, "--version"]);
        assert!(
            run.status.success(),
            "podman run {} --version failed: {}",
            self.reference,
            run.stderr.trim()
        );
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(run.stdout.trim(), format!("{} {version}", self.binary));

        let inspect = run_podman(&["image", "inspect", &self.reference]);
        assert!(inspect.status.success(), "{}", inspect.stderr.trim());
        let info: Value =
            serde_json::from_str(&inspect.stdout).unwrap_or_else(|e| panic!("inspect JSON: {e:#}"));
        let config = &info[0]["Config"];
        assert_eq!(config["User"], "65532:65532");
        assert_eq!(config["Entrypoint"], json!([format!("/{}", self.binary)]));
        let labels = &config["Labels"];
        assert_eq!(
            labels["org.opencontainers.image.title"],
            self.binary.as_str()
        );
        assert_eq!(labels["org.opencontainers.image.version"], version);
        assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
        for key in ["description", "source", "created"] {
            let value = labels[format!("org.opencontainers.image.{key}")]
                .as_str()
                .unwrap_or("");
            assert!(!value.is_empty(), "label {key} missing: {labels}");
        }
        // The revision is a commit of this checkout (HEAD when the image was
        // built; absent outside a git checkout).
        let root = workspace_root();
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
        assert_eq!(
            info[0]["RootFS"]["Layers"].as_array().map(Vec::len),
            Some(1),
            "one layer"
        );
    }
}

/// A detached container, removed when dropped (its logs printed first when
/// the test is failing).
#[derive(Debug)]
pub struct PodmanContainer {
    pub name: String,
}

impl PodmanContainer {
    /// `podman run -d --pull=never --name <name> <args...>`; panics when
    /// podman refuses.
    pub fn run(name: &str, args: &[&str]) -> PodmanContainer {
        let mut all = vec!["run", "-d", "--pull=never", "--name", name];
        all.extend_from_slice(args);
        let started = run_podman(&all);
        assert!(
            started.status.success(),
            "podman run {name} failed: {}",
            started.stderr.trim()
        );
        PodmanContainer {
            name: name.to_string(),
        }
    }

    /// The container's output so far.
    pub fn logs(&self) -> String {
        let logs = run_podman(&["logs", &self.name]);
        format!("{}\n{}", logs.stdout.trim(), logs.stderr.trim())
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = run_podman(&["logs", "--tail", "60", &self.name]);
            eprintln!(
                "---- container {} logs ----\n{}\n{}",
                self.name,
                logs.stdout.trim(),
                logs.stderr.trim()
            );
        }
        let _ = podman(["rm", "-f", "-t", "2", &self.name]);
    }
}
