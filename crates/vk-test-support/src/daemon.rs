//! Machine-wide test daemons: the rig directory `/run/vk-rs-test`, the file
//! locks that serialise test processes setting it up, and processes started
//! detached (their own session, logs to a file) so they outlive the test
//! process that started them and serve every later one.
//!
//! This module owns no daemon in particular: [`crate::podman`] and
//! [`crate::registry`] decide what runs and how to tell that it answers.
//!
//! Lock order, to rule out deadlocks between processes: `registry` before
//! `images` before `podman` before `config` before `registry-port`. A
//! function holding one of these may take only those after it.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the machine-wide rig lives: sockets, logs, pid files, locks, the
/// registry's storage. Under `/run`, so a reboot (which stops the daemons)
/// also forgets them.
pub const RIG_DIR: &str = "/run/vk-rs-test";

/// How long a test waits for another test process to finish setting
/// something up (an image build, a daemon start) before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The rig directory, created (root only) when missing.
pub(crate) fn rig_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(RIG_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {RIG_DIR}"))?;
    Ok(dir)
}

/// An exclusive lock on `RIG_DIR/<name>.lock`, held until dropped (closing
/// the file releases it, also when the process dies).
#[derive(Debug)]
pub(crate) struct RigLock {
    _file: File,
}

impl RigLock {
    /// Waits (up to five minutes) for the lock `name`.
    pub(crate) fn acquire(name: &str) -> Result<RigLock> {
        let path = rig_dir()?.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RigLock { _file: file }),
                Err(TryLockError::WouldBlock) if start.elapsed() < LOCK_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => bail!(
                    "another process held {} for {LOCK_TIMEOUT:?}",
                    path.display()
                ),
                Err(TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

/// Starts `program args` detached: in a new session (`setsid`), so neither
/// the test harness's process-group signals nor the test process's exit
/// reach it; stdin from /dev/null, stdout and stderr appended to `log`; cwd
/// `/`. Writes its pid to `pid_file`.
pub(crate) fn spawn_detached<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("duplicating {}", log.display()))?;
    // `setsid` (util-linux) execs the program in place when it is not a
    // process-group leader, which a freshly spawned child is not: the pid we
    // get is the daemon's.
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .current_dir("/")
        // Big temporary files (image pulls) must not land in a test's
        // temporary directory, which is deleted under the daemon.
        .env("TMPDIR", "/var/tmp")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {program} detached (setsid)"))?;
    let pid = child.id();
    // The child is not waited for: it outlives this process and is reaped
    // by init once this process exits.
    drop(child);
    std::fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(pid)
}

/// The pid in `pid_file` if that process is alive and its command line
/// contains `marker` (so a recycled pid is never mistaken for the daemon).
pub(crate) fn running_pid(pid_file: &Path, marker: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(marker).then_some(pid)
}

/// Stops the daemon of `pid_file` (SIGTERM, then SIGKILL after ten seconds)
/// if it runs; see [`running_pid`] for `marker`.
pub(crate) fn stop(pid_file: &Path, marker: &str) -> Result<()> {
    let Some(pid) = running_pid(pid_file, marker) else {
        return Ok(());
    };
    signal(pid, "TERM")?;
    let start = Instant::now();
    while running_pid(pid_file, marker).is_some() {
        if start.elapsed() > Duration::from_secs(10) {
            signal(pid, "KILL")?;
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `kill -SIGNAL pid` (procps' kill(1): this crate has no unsafe code).
pub(crate) fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill(1)")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed ({status})");
    }
    Ok(())
}

/// Writes `contents` to `path` unless it already holds exactly that, via a
/// temporary file and a rename so a concurrent reader never sees half a
/// file. Returns whether it wrote.
pub(crate) fn write_if_changed(path: &Path, contents: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == contents) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("vk-rs-test-{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(true)
}
