//! `cargo xtask test`: the whole check, the same on a laptop and in CI.
//!
//! Steps: Debian packages (installed when root), `cargo fmt --check`, clippy
//! with `-D warnings`, the control-plane build, a fresh test cluster in
//! `target/test-cluster`, every test binary built, the providers' release
//! images built in the background while every unit and integration test runs
//! (cargo-nextest when installed, else `cargo test`) with `VK_TEST_KUBECONFIG`
//! and `VKCP_BIN` set, then the core's suites again with node identities. The cluster is always stopped at the end. Any failing step makes the
//! command fail; a summary with each step's time closes the output.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::progress::format_duration;
use crate::{cluster, controlplane_build, debian_packages, workspace};

/// The tests of the providers' images (each provider's `image` module):
/// they need the release build of every provider.
const IMAGE_TESTS: &str = "image::";

/// Tests run at once in each test binary, unless RUST_TEST_THREADS says.
const TEST_THREADS: &str = "4";

struct StepResult {
    name: &'static str,
    took: Duration,
    outcome: Outcome,
}

enum Outcome {
    Passed(String),
    Failed(String),
    Skipped(&'static str),
}

#[derive(Default)]
struct Pipeline {
    steps: Vec<StepResult>,
}

impl Pipeline {
    /// Runs one step, printing a header, and records its time and outcome.
    fn step<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Option<T>
    where
        T: Describe,
    {
        eprintln!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        let (outcome, value) = match result {
            Ok(value) => (Outcome::Passed(value.describe()), Some(value)),
            Err(err) => {
                eprintln!("xtask: {name} failed: {err:#}");
                (Outcome::Failed(first_line(&format!("{err:#}"))), None)
            }
        };
        self.steps.push(StepResult {
            name,
            took,
            outcome,
        });
        value
    }

    fn skip(&mut self, name: &'static str, why: &'static str) {
        self.steps.push(StepResult {
            name,
            took: Duration::ZERO,
            outcome: Outcome::Skipped(why),
        });
    }

    fn failed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    fn print_summary(&self, total: Duration) {
        eprintln!("\n==> summary");
        for step in &self.steps {
            let (mark, detail) = match &step.outcome {
                Outcome::Passed(d) => ("ok  ", d.as_str()),
                Outcome::Failed(d) => ("FAIL", d.as_str()),
                Outcome::Skipped(d) => ("skip", *d),
            };
            eprintln!(
                "  {mark}  {:<26} {:>8}  {detail}",
                step.name,
                format_duration(step.took)
            );
        }
        let verdict = if self.failed() { "FAILED" } else { "passed" };
        eprintln!("cargo xtask test {verdict} in {}", format_duration(total));
    }
}

/// A step's value, as shown in the summary.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for () {
    fn describe(&self) -> String {
        String::new()
    }
}

impl Describe for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl Describe for PathBuf {
    fn describe(&self) -> String {
        self.display().to_string()
    }
}

pub fn run() -> Result<ExitCode> {
    let started = Instant::now();
    let root = workspace::root();
    let mut pipeline = Pipeline::default();

    if pipeline
        .step("debian packages", debian_packages::ensure)
        .is_none()
    {
        pipeline.print_summary(started.elapsed());
        return Ok(ExitCode::FAILURE);
    }
    pipeline.step("cargo fmt --check", || {
        cargo(&root, ["fmt", "--all", "--", "--check"])
    });
    pipeline.step("cargo clippy -D warnings", || {
        cargo(
            &root,
            [
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )
    });
    let vkcp = pipeline.step("build control plane", controlplane_build::ensure_built);
    let cluster_dir = workspace::test_cluster_dir();
    let kubeconfig = match &vkcp {
        Some(vkcp) => pipeline.step("start test cluster", || {
            // A fresh cluster each run: stop a leftover one, then remove its data.
            cluster::down(&cluster_dir)?;
            if cluster_dir.exists() {
                std::fs::remove_dir_all(&cluster_dir)
                    .with_context(|| format!("removing {}", cluster_dir.display()))?;
            }
            cluster::up(&cluster_dir, vkcp)
        }),
        None => {
            pipeline.skip("start test cluster", "no control-plane binary");
            None
        }
    };
    match (&vkcp, &kubeconfig) {
        (Some(vkcp), Some(kubeconfig)) => {
            // The integration tests mostly wait (on the apiserver, on a
            // backend, on a minute of stopped apiserver, on the image
            // build one of them runs): four at a time per test binary on 2
            // cores keeps the waits overlapping (docs/ci.md). An explicit
            // RUST_TEST_THREADS wins.
            let threads =
                std::env::var_os("RUST_TEST_THREADS").unwrap_or_else(|| TEST_THREADS.into());
            let env = [
                ("VK_TEST_KUBECONFIG", kubeconfig.as_os_str()),
                ("VKCP_BIN", vkcp.as_os_str()),
                ("RUST_TEST_THREADS", threads.as_os_str()),
            ];
            // Every test binary first. Then, with cargo test, the providers'
            // static release binaries (the image tests' 9-minute build) are
            // built beside the tests at the lowest priority, and the image
            // tests run last, once the build is done, instead of holding
            // their test binary (and every binary after it) while the cores
            // wait (docs/ci.md). cargo-nextest runs everything at once.
            pipeline.step("cargo test --no-run (every test binary)", || {
                cargo_env(&root, ["test", "--workspace", "--no-run"], &env)
            });
            let mut images = None;
            if nextest_available(&root) {
                pipeline.step("cargo nextest run", || {
                    cargo_env(
                        &root,
                        ["nextest", "run", "--workspace", "--no-fail-fast"],
                        &env,
                    )
                });
                // nextest does not run doctests.
                pipeline.step("cargo test --doc", || {
                    cargo_env(&root, ["test", "--workspace", "--doc"], &env)
                });
            } else {
                images = ImagesInBackground::start(&root);
                let skip: &[&str] = if images.is_some() {
                    &["--skip", IMAGE_TESTS]
                } else {
                    &[]
                };
                let args = [&["test", "--workspace", "--no-fail-fast", "--"], skip].concat();
                pipeline.step("cargo test", || cargo_env(&root, args, &env));
            }
            // The core's and the kubelet API's suites once more, each node
            // with its own identity under the Node authorizer (a bootstrap
            // token and a cert dir instead of the admin kubeconfig), and a
            // standby's takeover with node identities.
            let node_env = [
                env.as_slice(),
                &[("VK_TEST_NODE_IDENTITY", OsStr::new("1"))],
            ]
            .concat();
            pipeline.step(
                "cargo test: core and kubelet API suites as a node identity",
                || {
                    cargo_env(
                        &root,
                        [
                            // The workspace's features, as in the first
                            // pass: nothing is built again.
                            "test",
                            "--workspace",
                            "--test",
                            "mock",
                            "--",
                            "runtime::",
                            "kubelet_api::",
                            "referenced_objects::",
                            "websocket::",
                            "ephemeral::",
                            "standby::sigkill_of_the_leader",
                        ],
                        &node_env,
                    )
                },
            );
            if let Some(images) = images {
                pipeline.step("images built beside the tests", || images.wait());
                pipeline.step("cargo test: the image tests", || {
                    cargo_env(
                        &root,
                        ["test", "--workspace", "--no-fail-fast", "--", IMAGE_TESTS],
                        &env,
                    )
                });
            }
        }
        _ => pipeline.skip("tests", "no test cluster"),
    }
    if kubeconfig.is_some() || cluster_dir.exists() {
        pipeline.step("stop test cluster", || cluster::down(&cluster_dir));
    }

    pipeline.print_summary(started.elapsed());
    Ok(if pipeline.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn cargo<I, S>(root: &std::path::Path, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cargo_env(root, args, &[])
}

/// Runs cargo in the workspace with its output going straight to ours.
fn cargo_env<I, S>(root: &std::path::Path, args: I, env: &[(&str, &OsStr)]) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let mut cmd = Command::new(workspace::cargo());
    cmd.current_dir(root).args(&args).stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo {}", shown.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", shown.join(" "));
    }
    Ok(())
}

/// `cargo xtask build-images` running beside the tests (`nice -n 19` when
/// `nice` is there), its output in `target/images-build.log`. The image
/// tests ask for the same build and wait for this one through cargo's lock.
struct ImagesInBackground {
    child: std::process::Child,
    log: PathBuf,
    started: Instant,
}

impl ImagesInBackground {
    /// Starts the build; `None` (with a line saying why) when it cannot be
    /// started: the image tests then build the images themselves.
    fn start(root: &std::path::Path) -> Option<ImagesInBackground> {
        let log = root.join("target").join("images-build.log");
        let file = match std::fs::create_dir_all(root.join("target"))
            .and_then(|()| std::fs::File::create(&log))
        {
            Ok(f) => f,
            Err(e) => {
                println!(
                    "images: cannot write {}: {e}; the image tests build them",
                    log.display()
                );
                return None;
            }
        };
        let err = file.try_clone().ok()?;
        let cargo = workspace::cargo();
        let niced = Command::new("nice")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mut cmd = if niced {
            let mut c = Command::new("nice");
            c.args(["-n", "19"]).arg(&cargo);
            c
        } else {
            Command::new(&cargo)
        };
        cmd.current_dir(root)
            .args(["xtask", "build-images"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        match cmd.spawn() {
            Ok(child) => {
                println!(
                    "images: building the providers' release binaries beside the tests (log: {})",
                    log.display()
                );
                Some(ImagesInBackground {
                    child,
                    log,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                println!(
                    "images: cannot start cargo xtask build-images: {e}; the image tests build them"
                );
                None
            }
        }
    }

    /// Waits for the build; an error names its log.
    fn wait(mut self) -> Result<String> {
        let status = self
            .child
            .wait()
            .context("waiting for cargo xtask build-images")?;
        if !status.success() {
            bail!(
                "cargo xtask build-images failed ({status}); see {}",
                self.log.display()
            );
        }
        Ok(format!(
            "done {} after the tests began",
            format_duration(self.started.elapsed())
        ))
    }
}

fn nextest_available(root: &std::path::Path) -> bool {
    Command::new(workspace::cargo())
        .current_dir(root)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}
