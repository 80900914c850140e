//! `cargo xtask demo`: the local cluster, the mock virtual kubelet registered
//! as node `vk-mock-0`, and a 3-replica Deployment running on it.
//!
//! While the mock provider cannot be built (it is being written), the demo
//! starts only the cluster, says so, and leaves it running. Otherwise it waits
//! for Ctrl-C and then removes the Deployment, stops `vk-mock` and the cluster.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::controlplane_build::tail_lines;
use crate::progress::{POLL, Ticker, format_duration};
use crate::{cluster, controlplane_build, kubectl, process, workspace};

const NODE_NAME: &str = "vk-mock-0";
const DEPLOYMENT: &str = "demo";
const REPLICAS: usize = 3;
const RUNNING_TIMEOUT: Duration = Duration::from_secs(180);

pub fn run() -> Result<()> {
    let root = workspace::root();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("installing the Ctrl-C handler")?;
    }

    let vkcp = controlplane_build::ensure_built()?;
    let dir = workspace::default_cluster_dir();
    let kubeconfig = cluster::up(&dir, &vkcp)?;
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("interrupted; stopping the cluster");
        return cluster::down(&dir);
    }

    let vk_mock = match build_vk_mock(&root) {
        Ok(path) => path,
        Err(err) => {
            eprintln!(
                "\nthe mock virtual kubelet (package vk-mock) is not available yet:\n  {err:#}\n\n\
                 The demo started ONLY the control plane; no virtual node and no Deployment.\n\
                 Try it:   cargo xtask kubectl get --raw=/readyz\n\
                 Stop it:  cargo xtask cluster down\n\
                 kubeconfig:"
            );
            println!("{}", kubeconfig.display());
            return Ok(());
        }
    };

    let mut demo = Demo {
        vkcp,
        kubeconfig,
        dir,
        vk_mock: None,
        interrupted,
    };
    let result = demo.show(&root, &vk_mock);
    if let Err(err) = &result {
        eprintln!("xtask: demo failed: {err:#}");
    }
    demo.clean_up();
    result
}

struct Demo {
    vkcp: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
    vk_mock: Option<Child>,
    interrupted: Arc<AtomicBool>,
}

impl Demo {
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        kubectl::run(&self.vkcp, &self.kubeconfig, args)
    }

    fn check_interrupted(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn check_vk_mock(&mut self) -> Result<()> {
        if let Some(child) = &mut self.vk_mock
            && let Some(status) = child.try_wait().context("checking on vk-mock")?
        {
            let log = self.dir.join("logs").join("vk-mock.log");
            bail!(
                "vk-mock exited ({status}); last lines of {}:\n{}",
                log.display(),
                tail_lines(&log, 30)
            );
        }
        Ok(())
    }

    fn show(&mut self, root: &Path, vk_mock: &Path) -> Result<()> {
        let log_path = self.dir.join("logs").join("vk-mock.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log handle")?;
        let [kubelet_port, metrics_port] = free_loopback_ports()?;
        let child = Command::new(vk_mock)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--nodename", NODE_NAME, "--provider-config"])
            .arg(root.join("examples").join("mock-config.json"))
            // Loopback only, and no clash with another kubelet's default port.
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("KUBELET_PORT", kubelet_port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Not in our process group: Ctrl-C reaches only us, and we stop
            // vk-mock after the Deployment is gone.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", vk_mock.display()))?;
        eprintln!(
            "started vk-mock (pid {}, kubelet port {kubelet_port}); log {}",
            child.id(),
            log_path.display()
        );
        self.vk_mock = Some(child);

        self.wait("node vk-mock-0 to be Ready", |demo| {
            let ready = demo.kubectl(&[
                "get",
                "node",
                NODE_NAME,
                "--ignore-not-found",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok(ready.trim() == "True")
        })?;

        // The node asks for its kubelet serving certificate with a CSR; as the
        // cluster admin the demo approves it (operators run
        // `kubectl certificate approve`), so `kubectl logs/exec` work.
        self.wait("the node's serving certificate to be issued", |demo| {
            let csrs = demo.kubectl(&[
                "get",
                "csr",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.certificate}{\"\\n\"}{end}",
            ])?;
            let prefix = format!("csr-{NODE_NAME}-");
            let mut issued = false;
            for line in csrs.lines() {
                let mut parts = line.split_whitespace();
                let Some(name) = parts.next().filter(|n| n.starts_with(&prefix)) else {
                    continue;
                };
                if parts.next().is_some() {
                    issued = true;
                } else {
                    demo.kubectl(&["certificate", "approve", name])?;
                }
            }
            Ok(issued)
        })?;

        let manifest = root.join("examples").join("demo-deployment.yaml");
        let manifest = manifest.to_string_lossy().into_owned();
        self.kubectl(&["apply", "-f", &manifest])?;
        self.wait("the demo pods to be Running", |demo| {
            let phases = demo.kubectl(&[
                "get",
                "pods",
                "-l",
                "app=demo",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])?;
            let phases: Vec<&str> = phases.split_whitespace().collect();
            Ok(phases.len() == REPLICAS && phases.iter().all(|p| *p == "Running"))
        })?;

        println!("{}", self.kubectl(&["get", "nodes,pods", "-o", "wide"])?);
        println!(
            "The Deployment `{DEPLOYMENT}` runs {REPLICAS} pods on the virtual node {NODE_NAME}.\n\
             Try: cargo xtask kubectl get pods -o wide\n\
                  cargo xtask kubectl logs deploy/{DEPLOYMENT} -f\n\
                  cargo xtask kubectl exec deploy/{DEPLOYMENT} -- echo hello\n\
             Press Ctrl-C to stop the demo (deletes the Deployment, stops vk-mock and the cluster).\n\
             kubeconfig:"
        );
        println!("{}", self.kubeconfig.display());
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                eprintln!("\nstopping the demo");
                return Ok(());
            }
            self.check_vk_mock()?;
            std::thread::sleep(POLL);
        }
    }

    /// Polls `ready` until it returns true, with progress, a timeout, and an
    /// early exit on Ctrl-C or when vk-mock dies.
    fn wait(&mut self, what: &str, mut ready: impl FnMut(&Self) -> Result<bool>) -> Result<()> {
        let mut ticker = Ticker::new(format!("waiting for {what}"), Duration::from_secs(10));
        let mut last_err = None;
        loop {
            self.check_interrupted()?;
            self.check_vk_mock()?;
            match ready(self) {
                Ok(true) => {
                    eprintln!("{what}: done in {}", format_duration(ticker.elapsed()));
                    return Ok(());
                }
                Ok(false) => {}
                Err(err) => last_err = Some(err),
            }
            if ticker.elapsed() > RUNNING_TIMEOUT {
                let detail = last_err.map(|e| format!(": {e:#}")).unwrap_or_default();
                bail!(
                    "timed out after {} waiting for {what}{detail}",
                    format_duration(ticker.elapsed())
                );
            }
            ticker.tick();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Best effort, step by step: a failing step does not stop the next.
    fn clean_up(&mut self) {
        eprintln!("deleting deployment/{DEPLOYMENT}");
        if let Err(err) = self.kubectl(&[
            "delete",
            "deployment",
            DEPLOYMENT,
            "--ignore-not-found",
            "--timeout=60s",
        ]) {
            eprintln!("xtask: {err:#}");
        }
        if let Some(mut child) = self.vk_mock.take() {
            eprintln!("stopping vk-mock (pid {})", child.id());
            let _ = process::signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if let Err(err) = cluster::down(&self.dir) {
            eprintln!("xtask: {err:#}");
        }
    }
}

/// Builds the `vk-mock` binary and returns its path, or says why it cannot.
fn build_vk_mock(root: &Path) -> Result<PathBuf> {
    if !root
        .join("providers")
        .join("mock")
        .join("Cargo.toml")
        .is_file()
    {
        bail!("providers/mock/Cargo.toml does not exist");
    }
    eprintln!("building vk-mock");
    let out = Command::new(workspace::cargo())
        .current_dir(root)
        .args([
            "build",
            "--package",
            "vk-mock",
            "--bin",
            "vk-mock",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build --package vk-mock")?;
    if !out.status.success() {
        bail!(
            "cargo build --package vk-mock --bin vk-mock failed ({})",
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|line| line.contains("\"name\":\"vk-mock\""))
        .find_map(json_executable)
        .map(PathBuf::from)
        .context("cargo did not report a vk-mock executable")
}

/// The `"executable":"..."` string of one line of cargo's JSON messages.
/// (Paths with escaped characters are not expected under a target directory.)
fn json_executable(line: &str) -> Option<String> {
    let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
    let rest = &line[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// `N` distinct free loopback ports (all listeners are held until every port
/// is known, so no two are the same).
fn free_loopback_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding a loopback port to find a free one")?;
        *port = listener
            .local_addr()
            .context("reading the bound port")?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_executable_from_a_cargo_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"vk-mock"},"executable":"/t/debug/vk-mock","fresh":true}"#;
        assert_eq!(json_executable(line).as_deref(), Some("/t/debug/vk-mock"));
        let no_exe = r#"{"reason":"compiler-artifact","executable":null}"#;
        assert_eq!(json_executable(no_exe), None);
    }
}
