//! Processes by PID, read from `/proc`: pid files, whether a process still
//! runs, and signals (through `kill(1)`, so this crate needs no `unsafe`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// What `/proc` says about a PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// No such process.
    Gone,
    /// Exited, not yet reaped by its parent: it holds no resources any more.
    Zombie,
    /// Anything else.
    Running,
}

/// Reads `/proc/<pid>/stat`. The state letter follows the command name, which
/// is in parentheses and may itself contain spaces or parentheses.
pub fn state(pid: u32) -> ProcState {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ProcState::Gone;
    };
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    match after_name.split_whitespace().next() {
        Some("Z") | Some("X") => ProcState::Zombie,
        Some(_) => ProcState::Running,
        None => ProcState::Gone,
    }
}

/// True while `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    state(pid) == ProcState::Running
}

/// The arguments `pid` was started with (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// True if `pid` runs and its command line mentions `needle`: guards against
/// acting on a PID that the kernel has since given to an unrelated process.
pub fn runs_with_arg_containing(pid: u32, needle: &str) -> bool {
    is_running(pid) && cmdline(pid).iter().any(|arg| arg.contains(needle))
}

/// Reads a pid file; `None` if it is missing or does not hold a number.
pub fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sends `signal` (`TERM`, `KILL`, `INT`) to `pid` with `kill(1)`.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill(1); it comes with the Debian package procps")?;
    if !status.success() && is_running(pid) {
        bail!("kill -s {signal} {pid} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_running_and_mentions_its_binary() {
        let me = std::process::id();
        assert_eq!(state(me), ProcState::Running);
        assert!(!cmdline(me).is_empty());
    }

    #[test]
    fn a_reaped_child_is_gone_and_an_unreaped_one_a_zombie() -> Result<()> {
        let mut child = Command::new("true").spawn()?;
        let pid = child.id();
        // Until it is waited for, an exited child stays a zombie.
        for _ in 0..100 {
            if state(pid) == ProcState::Zombie {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(state(pid), ProcState::Zombie);
        child.wait()?;
        assert_eq!(state(pid), ProcState::Gone);
        Ok(())
    }
}
