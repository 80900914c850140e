//! [`KubeletProcess`]: a provider binary (`vk-mock`, `vk-edge`) run by a
//! test as a real process, with its output in a log file, that the test can
//! kill, restart and terminate. What flags it gets is the caller's business
//! (the binary path too: `env!("CARGO_BIN_EXE_vk-edge")` exists only inside
//! the provider's own tests).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::daemon;
use crate::logs::log_tail;

/// Lines of the log printed when a test fails while holding the process.
const FAILURE_LOG_LINES: usize = 60;

/// A running kubelet binary. Dropped, it is killed (SIGKILL); dropped while
/// the test panics, it first prints the last 60 lines of its log.
///
/// ```no_run
/// # fn example(kubeconfig: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<()> {
/// use std::ffi::OsString;
/// use vk_test_support::{KubeletProcess, PodmanEngine, free_port};
/// let engine = PodmanEngine::get()?;
/// let flags: Vec<OsString> = vec![
///     "--nodename".into(),
///     "edge-1".into(),
///     "--kubeconfig".into(),
///     kubeconfig.into(),
///     "--metrics-addr".into(),
///     format!("127.0.0.1:{}", free_port()?).into(),
///     "--kubelet-port".into(),
///     free_port()?.to_string().into(),
///     "--engine-endpoint".into(),
///     engine.endpoint().into(),
/// ];
/// // env!("CARGO_BIN_EXE_vk-edge") in the edge provider's tests.
/// let mut kubelet = KubeletProcess::start("/path/to/vk-edge", flags, dir.join("vk-edge.log"))?;
/// kubelet.restart()?; // same flags, same log (appended)
/// let status = kubelet.terminate(std::time::Duration::from_secs(10)); // SIGTERM
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KubeletProcess {
    binary: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl KubeletProcess {
    /// Starts `binary ARGS`, stdin from /dev/null, stdout and stderr
    /// appended to `log` (created if missing).
    pub fn start<I, S>(binary: impl AsRef<Path>, args: I, log: impl AsRef<Path>) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut process = KubeletProcess {
            binary: binary.as_ref().to_path_buf(),
            args: args.into_iter().map(Into::into).collect(),
            log: log.as_ref().to_path_buf(),
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<()> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The arguments it was started with.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no clean shutdown: what a crash or
    /// a power cut looks like) and reaps it. Nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (if it runs) and starts it again with the same
    /// binary, arguments and log file.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status (`None`
    /// when it did not exit in time, or was not running; it is then still
    /// running and [`KubeletProcess::kill`] or drop ends it).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        let _ = daemon::signal(child.id(), "TERM");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The exit status if the process has ended (asking again gives the
    /// same status), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for KubeletProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                self.log.display(),
                self.log_tail(FAILURE_LOG_LINES)
            );
        }
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::wait_blocking;

    #[test]
    fn logs_restarts_and_terminates_a_process() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("vk-kubelet-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("p.log");
        let _ = std::fs::remove_file(&log);
        // A shell that logs, then waits for SIGTERM (exit 143 by default;
        // the trap makes it exit 7 so the status is ours).
        let script = "echo started $$; trap 'echo bye; exit 7' TERM; while :; do sleep 0.05; done";
        let mut p = KubeletProcess::start("/bin/sh", ["-c", script], &log)?;
        let first = p.pid();
        assert!(first.is_some());
        assert!(
            wait_blocking(Duration::from_secs(5), || p
                .log_tail(10)
                .contains("started")),
            "log: {}",
            p.log_tail(10)
        );
        assert_eq!(p.try_wait(), None);
        p.restart()?;
        assert_ne!(p.pid(), first);
        assert!(wait_blocking(Duration::from_secs(5), || {
            p.log_tail(10).matches("started").count() == 2
        }));
        let status = p.terminate(Duration::from_secs(5));
        assert_eq!(status.and_then(|s| s.code()), Some(7));
        assert!(p.log_tail(10).ends_with("bye"), "log: {}", p.log_tail(10));
        assert_eq!(p.pid(), None);
        // Terminating or killing a stopped process is harmless.
        assert_eq!(p.terminate(Duration::from_millis(10)), None);
        p.kill();
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_missing_binary_is_an_error_naming_it() {
        let err = KubeletProcess::start("/nonexistent/vk-nothing", ["x"], "/dev/null")
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("/nonexistent/vk-nothing")),
            "{err:?}"
        );
    }
}
