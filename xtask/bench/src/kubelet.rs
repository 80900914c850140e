//! The kubelet under test as a child process: started with its output in a log
//! file, watched for an early exit, sampled from `/proc` every second (so the
//! peak RSS of its whole process tree is seen), and stopped with SIGTERM.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::procfs::{self, Sample};

const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running kubelet.
pub struct Kubelet {
    child: Child,
    pid: u32,
    log: PathBuf,
    ticks: f64,
    peak_rss_kib: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Starts `argv` with `env` added, stdout and stderr to `log`.
    pub fn spawn(argv: &[String], env: &[(String, String)], log: &Path) -> Result<Self> {
        let (program, args) = argv.split_first().context("empty kubelet command")?;
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log handle")?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Whatever happens to the benchmark, the kubelet does not outlive it.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the kubelet {}", argv.join(" ")))?;
        let pid = child.id().context("the kubelet exited at once")?;
        let ticks = procfs::clock_ticks_per_second();
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = peak_rss_kib.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(s) = tokio::task::spawn_blocking(move || procfs::sample(pid, ticks))
                        .await
                        .ok()
                        .flatten()
                    else {
                        return;
                    };
                    peak.fetch_max(s.rss_kib.max(s.hwm_kib), Ordering::Relaxed);
                }
            })
        };
        Ok(Kubelet {
            child,
            pid,
            log: log.to_path_buf(),
            ticks,
            peak_rss_kib,
            sampler,
        })
    }

    /// Reads `/proc` now. Fails when the kubelet has exited.
    pub fn sample(&mut self) -> Result<Sample> {
        self.check_alive()?;
        let s =
            procfs::sample(self.pid, self.ticks).context("the kubelet's /proc entry is gone")?;
        self.peak_rss_kib
            .fetch_max(s.rss_kib.max(s.hwm_kib), Ordering::Relaxed);
        Ok(s)
    }

    /// The kubelet's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Highest RSS of the tree seen so far (VmHWM and the 1 s samples), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.peak_rss_kib.load(Ordering::Relaxed)
    }

    /// Fails, with the end of the kubelet's log, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("checking on the kubelet")? {
            bail!(
                "the kubelet exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(mut self) {
        self.sampler.abort();
        let _ = std::process::Command::new("kill")
            .args(["-s", "TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("the kubelet did not stop within {STOP_TIMEOUT:?}; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
