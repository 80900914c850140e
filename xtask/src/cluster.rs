//! `cargo xtask cluster up|down|status`: a control plane (`vkcp run`) running
//! detached in a cluster directory.
//!
//! The directory layout is `vkcp`'s (see `xtask/controlplane/run.go`):
//! `kubeconfig`, `ready` (written once `/readyz` is ok and the `default`
//! ServiceAccount exists), `vkcp.pid`, `pids/<component>.pid`, `logs/`, `pki/`,
//! `etcd/`, `ports.json`. This module adds `logs/vkcp.log` (the supervisor's
//! own output) and `xtask.lock`, which serialises `up` and `down` on one
//! directory so that concurrent test binaries share one cluster.

use std::fs::{self, File, OpenOptions};
use std::io::Seek;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::controlplane_build::tail_lines;
use crate::process::{self, ProcState};
use crate::progress::{POLL, Ticker, format_duration};

/// `vkcp` itself gives up after 5 minutes; this is a little longer.
const READY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// `vkcp` gives its children 15 s to stop, then kills them; this is longer.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// After SIGKILL a process is gone in milliseconds; this is a safety margin.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// The components whose logs are worth showing when something goes wrong.
const COMPONENT_LOGS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The files of one cluster directory.
pub struct ClusterDir {
    dir: PathBuf,
}

impl ClusterDir {
    pub fn new(dir: &Path) -> Self {
        ClusterDir {
            dir: dir.to_path_buf(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn ready_marker(&self) -> PathBuf {
        self.dir.join("ready")
    }

    fn vkcp_pid_file(&self) -> PathBuf {
        self.dir.join("vkcp.pid")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    fn vkcp_log(&self) -> PathBuf {
        self.logs_dir().join("vkcp.log")
    }

    /// True once `vkcp` reported the cluster ready and it still runs.
    pub fn is_ready(&self) -> bool {
        self.running_vkcp().is_some() && self.ready_marker().is_file()
    }

    /// The PID of the `vkcp run` supervising this directory, if it runs.
    pub fn running_vkcp(&self) -> Option<u32> {
        let pid = process::read_pid(&self.vkcp_pid_file())?;
        let args = process::cmdline(pid);
        let is_vkcp_run = args.get(1).is_some_and(|a| a == "run");
        (process::is_running(pid) && is_vkcp_run).then_some(pid)
    }

    /// `(component, pid)` from `pids/*.pid`, whether running or not.
    pub fn component_pids(&self) -> Vec<(String, u32)> {
        let Ok(entries) = fs::read_dir(self.dir.join("pids")) else {
            return Vec::new();
        };
        let mut pids: Vec<(String, u32)> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_stem()?.to_str()?.to_string();
                Some((name, process::read_pid(&path)?))
            })
            .collect();
        pids.sort();
        pids
    }

    /// Component processes that still run and belong to this directory.
    fn running_components(&self) -> Vec<(String, u32)> {
        let needle = self.dir.to_string_lossy().into_owned();
        self.component_pids()
            .into_iter()
            .filter(|(_, pid)| process::runs_with_arg_containing(*pid, &needle))
            .collect()
    }

    /// Takes the directory's lock, waiting (and saying so) if another
    /// `cargo xtask cluster` command holds it.
    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join("xtask.lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!(
                "another `cargo xtask cluster` command is working on {}; waiting for it",
                self.dir.display()
            );
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(file)
    }

    /// Tails of the supervisor's log (from `from` on) and of each component's.
    fn diagnostics(&self, from: u64) -> String {
        let mut out = String::new();
        let vkcp_log = fs::read(self.vkcp_log())
            .map(|b| {
                let start = usize::try_from(from).unwrap_or(0).min(b.len());
                String::from_utf8_lossy(&b[start..]).into_owned()
            })
            .unwrap_or_default();
        let lines: Vec<&str> = vkcp_log.lines().collect();
        out.push_str(&format!(
            "--- {} (this run, last 40 lines) ---\n{}\n",
            self.vkcp_log().display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        ));
        for name in COMPONENT_LOGS {
            let path = self.logs_dir().join(format!("{name}.log"));
            if path.is_file() {
                out.push_str(&format!(
                    "--- {} (last 15 lines) ---\n{}\n",
                    path.display(),
                    tail_lines(&path, 15)
                ));
            }
        }
        out
    }
}

/// What `up` waits on: its own child, or a `vkcp` another command started.
enum Supervisor<'a> {
    Ours(&'a mut Child),
    Foreign(u32),
}

/// Starts a cluster in `dir` unless one runs there, waits until it is ready
/// and returns its kubeconfig path.
pub fn up(dir: &Path, vkcp: &Path) -> Result<PathBuf> {
    up_with_args(dir, vkcp, &[])
}

/// Like [`up`], passing `extra` to `vkcp run` (e.g. `--audit`,
/// `--apiserver-arg=...`) when it starts a new cluster. A cluster already
/// running in `dir` is reused as it is.
pub fn up_with_args(dir: &Path, vkcp: &Path, extra: &[String]) -> Result<PathBuf> {
    let cluster = ClusterDir::new(dir);
    let _lock = cluster.lock()?;
    let started = Instant::now();
    if let Some(pid) = cluster.running_vkcp() {
        if cluster.is_ready() {
            eprintln!(
                "a cluster is already running in {} (vkcp pid {pid}); logs in {}",
                dir.display(),
                cluster.logs_dir().display()
            );
            return Ok(cluster.kubeconfig());
        }
        eprintln!(
            "a cluster is starting in {} (vkcp pid {pid}); waiting for it",
            dir.display()
        );
        let from = fs::metadata(cluster.vkcp_log()).map_or(0, |m| m.len());
        wait_ready(&cluster, Supervisor::Foreign(pid), from)?;
        return Ok(cluster.kubeconfig());
    }

    fs::create_dir_all(cluster.logs_dir())
        .with_context(|| format!("creating {}", cluster.logs_dir().display()))?;
    // vkcp removes the marker too, but only once it runs: remove it first so a
    // marker left by an earlier run is never mistaken for this one's.
    remove_if_present(&cluster.ready_marker())?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster.vkcp_log())
        .with_context(|| format!("opening {}", cluster.vkcp_log().display()))?;
    let from = log.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let log_err = log.try_clone().context("duplicating the log handle")?;
    let mut child = Command::new(vkcp)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C meant for whoever ran `cluster up`
        // (a test, the demo) does not reach the cluster; `cluster down` stops it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} run --dir {}", vkcp.display(), dir.display()))?;
    eprintln!(
        "starting the control plane in {} (vkcp pid {}); logs in {}",
        dir.display(),
        child.id(),
        cluster.logs_dir().display()
    );
    wait_ready(&cluster, Supervisor::Ours(&mut child), from)?;
    eprintln!(
        "control plane ready in {}; stop it with `cargo xtask cluster down --dir {}`",
        format_duration(started.elapsed()),
        dir.display()
    );
    Ok(cluster.kubeconfig())
}

fn wait_ready(cluster: &ClusterDir, mut supervisor: Supervisor<'_>, log_from: u64) -> Result<()> {
    let mut ticker = Ticker::new(
        "waiting for the control plane to become ready",
        Duration::from_secs(10),
    );
    loop {
        let exit = match &mut supervisor {
            Supervisor::Ours(child) => child
                .try_wait()
                .context("checking on vkcp")?
                .map(|status| status.to_string()),
            Supervisor::Foreign(pid) => {
                (!process::is_running(*pid)).then(|| format!("pid {pid} is gone"))
            }
        };
        if let Some(exit) = exit {
            bail!(
                "the control plane exited before it was ready ({exit})\n{}",
                cluster.diagnostics(log_from)
            );
        }
        if cluster.ready_marker().is_file() {
            return Ok(());
        }
        if ticker.elapsed() > READY_TIMEOUT {
            if let Supervisor::Ours(child) = &supervisor {
                let _ = process::signal(child.id(), "TERM");
            }
            bail!(
                "the control plane was not ready after {}\n{}",
                format_duration(ticker.elapsed()),
                cluster.diagnostics(log_from)
            );
        }
        ticker.tick();
        std::thread::sleep(POLL);
    }
}

/// Stops the cluster in `dir`: SIGTERM to `vkcp` (which stops its children),
/// then waits until `vkcp` and every PID in `pids/` is gone, with SIGKILL for
/// whatever is still there after [`STOP_TIMEOUT`].
pub fn down(dir: &Path) -> Result<()> {
    let cluster = ClusterDir::new(dir);
    if !dir.is_dir() {
        eprintln!("no cluster directory at {}", dir.display());
        return Ok(());
    }
    let _lock = cluster.lock()?;
    let started = Instant::now();
    let vkcp = cluster.running_vkcp();
    // Read before signalling: vkcp removes its pid files as it stops.
    let components = cluster.running_components();
    let mut pids: Vec<u32> = vkcp.into_iter().collect();
    pids.extend(components.iter().map(|(_, pid)| *pid));
    if pids.is_empty() {
        eprintln!("no cluster is running in {}", dir.display());
        remove_if_present(&cluster.ready_marker())?;
        return Ok(());
    }
    match vkcp {
        Some(pid) => process::signal(pid, "TERM")?,
        // The supervisor is gone but children remain (it was SIGKILLed before
        // the kernel's parent-death signal reached them): stop them directly.
        None => {
            for &pid in &pids {
                process::signal(pid, "TERM")?;
            }
        }
    }
    let mut remaining = wait_gone(&pids, STOP_TIMEOUT, "stopping the cluster");
    if !remaining.is_empty() {
        eprintln!("still running after {STOP_TIMEOUT:?}: {remaining:?}; sending SIGKILL");
        for &pid in &remaining {
            process::signal(pid, "KILL")?;
        }
        remaining = wait_gone(&remaining, KILL_TIMEOUT, "waiting for killed processes");
    }
    if !remaining.is_empty() {
        bail!("processes still running after SIGKILL: {remaining:?}");
    }
    remove_if_present(&cluster.ready_marker())?;
    remove_if_present(&cluster.vkcp_pid_file())?;
    eprintln!(
        "stopped the cluster in {} in {} (pids {pids:?})",
        dir.display(),
        format_duration(started.elapsed())
    );
    Ok(())
}

/// Waits until none of `pids` runs; returns those still running at the timeout.
fn wait_gone(pids: &[u32], timeout: Duration, label: &str) -> Vec<u32> {
    let mut ticker = Ticker::new(label, Duration::from_secs(5));
    loop {
        let running: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| process::state(pid) == ProcState::Running)
            .collect();
        if running.is_empty() || ticker.elapsed() > timeout {
            return running;
        }
        ticker.tick();
        std::thread::sleep(POLL);
    }
}

/// Prints whether a cluster runs in `dir`, its PIDs, kubeconfig and logs.
pub fn status(dir: &Path) -> Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let cluster = ClusterDir::new(dir);
    let mut out = String::new();
    let _ = writeln!(out, "cluster directory: {}", dir.display());
    let state = match cluster.running_vkcp() {
        Some(pid) if cluster.is_ready() => format!("running and ready (vkcp pid {pid})"),
        Some(pid) => format!("starting, not ready yet (vkcp pid {pid})"),
        None => "not running".to_string(),
    };
    let _ = writeln!(out, "state: {state}");
    let needle = dir.to_string_lossy().into_owned();
    for (name, pid) in cluster.component_pids() {
        let state = if process::runs_with_arg_containing(pid, &needle) {
            "running"
        } else {
            "not running"
        };
        let _ = writeln!(out, "  {name}: pid {pid} ({state})");
    }
    if let Ok(ports) = fs::read_to_string(dir.join("ports.json")) {
        let compact: String = ports.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "ports: {compact}");
    }
    if cluster.kubeconfig().is_file() {
        let _ = writeln!(out, "kubeconfig: {}", cluster.kubeconfig().display());
    }
    let _ = writeln!(out, "logs: {}", cluster.logs_dir().display());
    if let Ok(entries) = fs::read_dir(cluster.logs_dir()) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let _ = writeln!(out, "  {name}");
        }
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {}", path.display())),
    }
}
