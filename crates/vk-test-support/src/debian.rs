//! The programs the container rig needs, installed from Debian packages when
//! a test runs as root on a machine that lacks them (`cargo xtask test`
//! installs the same packages up front: `xtask/src/debian_packages.rs`).

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

/// Whether this process runs as root (real UID 0).
pub(crate) fn is_root() -> bool {
    // The real UID is the first number after `Uid:` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether `program` is a file on `PATH` or in an sbin directory (runc is
/// in /usr/sbin, which a non-login `PATH` may lack).
pub(crate) fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|d| d.join(program).is_file())
}

/// Makes every `(program, Debian package)` available: installs the packages
/// of the missing programs with apt-get (root only; otherwise an error that
/// names them).
pub(crate) fn ensure_programs(needed: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "not installed (and not root to install them): Debian packages {}",
            missing.join(" ")
        );
    }
    eprintln!("installing Debian packages {}", missing.join(" "));
    let install = |update: bool| {
        if update {
            let _ = Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status();
        }
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(install(false) || install(true)) {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    let still: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(program, _)| *program)
        .collect();
    if !still.is_empty() {
        bail!("still not on PATH after apt-get: {}", still.join(" "));
    }
    Ok(())
}
