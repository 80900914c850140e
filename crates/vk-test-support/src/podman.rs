//! Rootful podman for the tests: the settings these machines need, the
//! `podman` CLI with the global flags they need, and [`PodmanEngine`], one
//! machine-wide podman API service (Docker Engine API compatible) that every
//! test process shares.
//!
//! Facts checked on the Debian 12 test machines: podman runs containers only
//! with `--runtime runc --cgroup-manager=cgroupfs` (crun fails on the hybrid
//! cgroup layout) and with `default_ulimits = []` under `[containers]` in
//! `/etc/containers/containers.conf` (setting RLIMIT_NOFILE is not
//! permitted). The API service reads its configuration (containers.conf, the
//! registries drop-ins) once, at start: when those files change it must be
//! restarted, which [`PodmanEngine::get`] does.
//!
//! The service keeps running after the tests (a reboot ends it; so does
//! `kill $(cat /run/vk-rs-test/podman.pid)`).

use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::command::{CommandOutput, command_line};
use crate::daemon::{self, RigLock, rig_dir};
use crate::debian::{ensure_programs, is_root};
use crate::logs::log_tail;
use crate::probe;
use crate::wait::wait_blocking;

/// Global flags every podman command needs on these machines.
pub const PODMAN_GLOBAL_FLAGS: &[&str] = &["--runtime", "runc", "--cgroup-manager=cgroupfs"];

/// The podman configuration file that must hold `default_ulimits = []`.
pub const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";

/// The shared API service's socket.
pub const PODMAN_SOCKET: &str = "/run/vk-rs-test/podman.sock";

/// How long a freshly started service may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What one podman command printed, and how it exited.
pub type PodmanOutput = CommandOutput;

/// Runs `podman --runtime runc --cgroup-manager=cgroupfs ARGS`, blocking,
/// stdin from /dev/null. An `Err` only when podman could not be started;
/// a failing command is an `Ok` whose [`PodmanOutput::success`] is false.
pub fn podman<I, S>(args: I) -> Result<PodmanOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let command = command_line("podman", &args);
    let out = Command::new("podman")
        .args(PODMAN_GLOBAL_FLAGS)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command}"))?;
    Ok(CommandOutput::new(command, out))
}

/// Makes the podman CLI usable: installs the Debian packages `podman` and
/// `runc` when missing (root only), writes `default_ulimits = []` under
/// `[containers]` in [`CONTAINERS_CONF`] when absent (root only), and checks
/// that `podman info` answers. Once it succeeded in a process, later calls
/// return at once.
///
/// The `Err` says why podman cannot run here; tests that need it then skip
/// loudly.
pub fn prepare_podman() -> Result<()> {
    static PREPARED: AtomicBool = AtomicBool::new(false);
    if PREPARED.load(Ordering::Acquire) {
        return Ok(());
    }
    let root = is_root();
    {
        let _lock = if root {
            Some(RigLock::acquire("config")?)
        } else {
            None
        };
        ensure_programs(&[("podman", "podman"), ("runc", "runc")])?;
        let current = std::fs::read_to_string(CONTAINERS_CONF).unwrap_or_default();
        if let Some(updated) = with_default_ulimits_cleared(&current) {
            if !root {
                bail!(
                    "{CONTAINERS_CONF} lacks `default_ulimits = []` under [containers] (and we are not root to write it)"
                );
            }
            daemon::write_if_changed(Path::new(CONTAINERS_CONF), &updated)?;
            eprintln!("wrote default_ulimits = [] under [containers] in {CONTAINERS_CONF}");
        }
    }
    let info = podman(["info", "--format", "{{.Host.OCIRuntime.Name}}"])?;
    if !info.success() {
        bail!("podman info failed: {}", info.stderr.trim());
    }
    PREPARED.store(true, Ordering::Release);
    Ok(())
}

/// The containers.conf text with `default_ulimits = []` under `[containers]`,
/// or `None` when it already says so. Another `default_ulimits` line there is
/// commented out.
pub(crate) fn with_default_ulimits_cleared(conf: &str) -> Option<String> {
    let mut section = String::new();
    let mut out = Vec::new();
    let mut done = false;
    let mut has_section = false;
    for line in conf.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if section == "[containers]" && !done {
                out.push("default_ulimits = []".to_string());
                done = true;
            }
            section = trimmed.to_string();
            has_section |= section == "[containers]";
            out.push(line.to_string());
            continue;
        }
        if section == "[containers]"
            && trimmed.split('=').next().map(str::trim) == Some("default_ulimits")
        {
            if trimmed.replace(' ', "") == "default_ulimits=[]" {
                return None;
            }
            if !done {
                out.push("default_ulimits = []".to_string());
                done = true;
            }
            out.push(format!("# {line}"));
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        if !has_section {
            out.push("[containers]".to_string());
        }
        out.push("default_ulimits = []".to_string());
    }
    Some(out.join("\n") + "\n")
}

/// The machine-wide rootful podman API service, at [`PODMAN_SOCKET`].
///
/// ```no_run
/// # fn example() -> anyhow::Result<()> {
/// let engine = vk_test_support::PodmanEngine::get()?;
/// assert_eq!(engine.endpoint(), "unix:///run/vk-rs-test/podman.sock");
/// // e.g. `vk-edge --engine-endpoint <endpoint> ...`
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PodmanEngine {
    socket: PathBuf,
}

impl PodmanEngine {
    /// The shared service, started (detached, in its own session, logging
    /// to `/run/vk-rs-test/podman.log`) when it does not answer
    /// `GET /v1.41/version`, and restarted when the configuration it reads
    /// at start changed since. Blocking; parallel test processes serialise
    /// on a file lock, so exactly one of them starts it.
    ///
    /// Needs root (rootful podman: containers on its bridge get 10.88.x.x
    /// addresses the host reaches). The `Err` says why it cannot run; tests
    /// that need it then skip loudly.
    pub fn get() -> Result<PodmanEngine> {
        if !is_root() {
            bail!(
                "the edge test rig needs rootful podman and this process is not root \
                 (run the tests as root, e.g. in the CI container)"
            );
        }
        let engine = PodmanEngine {
            socket: PathBuf::from(PODMAN_SOCKET),
        };
        let _lock = RigLock::acquire("podman")?;
        prepare_podman()?;
        crate::registry::configure_engine()?;
        let fingerprint = config_fingerprint();
        let fingerprint_file = engine.file("config-fingerprint")?;
        let started_with = std::fs::read_to_string(&fingerprint_file).unwrap_or_default();
        let answers = engine.answers();
        if answers && started_with.trim() == fingerprint {
            return Ok(engine);
        }
        let pid_file = engine.file("pid")?;
        let marker = engine.endpoint();
        if answers {
            eprintln!("the podman configuration changed: restarting the shared podman service");
        }
        daemon::stop(&pid_file, &marker)?;
        if engine.socket.exists() {
            std::fs::remove_file(&engine.socket)
                .with_context(|| format!("removing the stale {}", engine.socket.display()))?;
        }
        let mut args: Vec<&str> = PODMAN_GLOBAL_FLAGS.to_vec();
        args.extend(["system", "service", "--time=0", &marker]);
        let log = engine.log_path();
        let pid = daemon::spawn_detached("podman", &args, &log, &pid_file)?;
        if !wait_blocking(START_TIMEOUT, || engine.answers()) {
            bail!(
                "the podman service (pid {pid}) did not answer on {} within {START_TIMEOUT:?}; \
                 the end of {}:\n{}",
                engine.socket.display(),
                log.display(),
                log_tail(&log, 30)
            );
        }
        std::fs::write(&fingerprint_file, format!("{fingerprint}\n"))
            .with_context(|| format!("writing {}", fingerprint_file.display()))?;
        eprintln!(
            "started the shared podman service (pid {pid}) on {}",
            engine.socket.display()
        );
        Ok(engine)
    }

    /// The unix socket the service listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///run/vk-rs-test/podman.sock`: what `--engine-endpoint` takes
    /// (and `DOCKER_HOST`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The service's log file.
    pub fn log_path(&self) -> PathBuf {
        self.socket.with_extension("log")
    }

    /// The last `lines` lines of the service's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// The address of a running container on podman's default bridge
    /// (10.88.x.x), reachable from the host.
    pub fn container_ip(&self, container: &str) -> Result<IpAddr> {
        let out = podman([
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            container,
        ])?
        .ok()?;
        let text = out.trim();
        text.parse()
            .with_context(|| format!("container {container} has no IP address ({text:?})"))
    }

    /// Whether `GET /v1.41/version` on the socket answers 200 with a
    /// version document.
    fn answers(&self) -> bool {
        probe::get_unix(&self.socket, "/v1.41/version")
            .is_ok_and(|a| a.status == 200 && a.body.contains("ApiVersion"))
    }

    /// `podman.<suffix>` beside the socket.
    fn file(&self, suffix: &str) -> Result<PathBuf> {
        Ok(rig_dir()?.join(format!("podman.{suffix}")))
    }
}

/// A digest of the configuration the service reads at start: when it
/// differs from what the running service started with, it restarts.
fn config_fingerprint() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in [CONTAINERS_CONF, crate::registry::REGISTRIES_DROP_IN] {
        path.hash(&mut hasher);
        std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_conf_gets_default_ulimits_cleared_once() {
        assert_eq!(
            with_default_ulimits_cleared("").as_deref(),
            Some("[containers]\ndefault_ulimits = []\n")
        );
        assert_eq!(
            with_default_ulimits_cleared("[containers]\ndefault_ulimits = []\n"),
            None
        );
        assert_eq!(
            with_default_ulimits_cleared("[containers]\nfoo = 1\n[engine]\nbar = 2\n").as_deref(),
            Some("[containers]\nfoo = 1\ndefault_ulimits = []\n[engine]\nbar = 2\n")
        );
        assert_eq!(
            with_default_ulimits_cleared("[containers]\ndefault_ulimits = [\"nofile=1:1\"]\n")
                .as_deref(),
            Some("[containers]\ndefault_ulimits = []\n# default_ulimits = [\"nofile=1:1\"]\n")
        );
        assert_eq!(
            with_default_ulimits_cleared("[engine]\nx = 1\n").as_deref(),
            Some("[engine]\nx = 1\n[containers]\ndefault_ulimits = []\n")
        );
    }
}
