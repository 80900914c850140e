//! Builds a Go command into the cache outside the clone, once per content hash:
//! the shared machinery of [`crate::controlplane_build`] and [`crate::helm_build`].
//!
//! The binary lives at `<cache>/<name>/<hash>/<name>`. A lock file serialises
//! concurrent builds of the same hash (two at once would only fight over the
//! two cores); a running build reports its elapsed time every 30 s.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::progress::{self, format_duration};
use crate::workspace;

/// How often a running Go build reports that it is still running.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// One Go command to build.
pub struct GoBinary<'a> {
    /// File name of the binary and of its cache folder (`vkcp`, `helm`).
    pub name: &'a str,
    /// What the progress lines call it (`control plane (k8s v1.35.4)`).
    pub label: &'a str,
    /// The Go module directory (`go build` runs there).
    pub src: &'a Path,
    /// The package to build, `.` for the module's main package.
    pub package: &'a str,
    /// `-ldflags`.
    pub ldflags: &'a str,
    /// Content hash of everything the binary depends on (sources and flags).
    pub hash: &'a str,
    /// Extra environment (`CGO_ENABLED=0`...).
    pub env: &'a [(&'a str, &'a str)],
    /// A hint printed when a build starts ("a cold build takes about 5 minutes").
    pub hint: &'a str,
}

/// Returns the path of an up-to-date binary, building it first if needed.
pub fn ensure_built(b: &GoBinary<'_>) -> Result<PathBuf> {
    let out_dir = workspace::cache_dir()?.join(b.name).join(b.hash);
    let binary = out_dir.join(b.name);
    if binary.is_file() {
        return Ok(binary);
    }
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let lock_path = out_dir.join("lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("another process is building {}; waiting for it", b.label);
        lock.lock()
            .with_context(|| format!("waiting for the {} build lock", b.label))?;
    }
    if binary.is_file() {
        return Ok(binary);
    }
    build(b, &out_dir, &binary)?;
    Ok(binary)
}

fn build(b: &GoBinary<'_>, out_dir: &Path, binary: &Path) -> Result<()> {
    let go = find_go()?;
    let tmp = out_dir.join(format!("{}.partial", b.name));
    let log_path = out_dir.join("build.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .context("duplicating the build log handle")?;
    eprintln!(
        "building {} into {}\n  {}; log: {}",
        b.label,
        binary.display(),
        b.hint,
        log_path.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new(&go);
    cmd.current_dir(b.src)
        .args(["build", "-trimpath", "-ldflags", b.ldflags, "-o"])
        .arg(&tmp)
        .arg(b.package)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    for (k, v) in b.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", go.display()))?;
    let status = progress::wait_child(
        &mut child,
        &format!("building {}", b.label),
        BUILD_PROGRESS_EVERY,
    )?;
    if !status.success() {
        bail!(
            "go build of {} failed ({status}) after {}; last lines of {}:\n{}",
            b.label,
            format_duration(started.elapsed()),
            log_path.display(),
            tail_lines(&log_path, 40)
        );
    }
    fs::rename(&tmp, binary)
        .with_context(|| format!("moving {} to {}", tmp.display(), binary.display()))?;
    eprintln!(
        "built {} in {}: {}",
        b.label,
        format_duration(started.elapsed()),
        binary.display()
    );
    Ok(())
}

/// The version `go.mod` requires of `module` (`require m v1` or inside a block;
/// `replace` lines do not count).
pub fn module_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let name = if first == "require" {
            words.next()?
        } else {
            first
        };
        let version = words.next()?;
        (name == module && version.starts_with('v') && !line.contains("=>"))
            .then(|| version.to_string())
    })
}

/// `go` from `PATH`, else the usual install location.
pub fn find_go() -> Result<PathBuf> {
    let on_path = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return Ok(PathBuf::from("go"));
    }
    let usual = PathBuf::from("/usr/local/go/bin/go");
    if usual.is_file() {
        return Ok(usual);
    }
    bail!(
        "the Go toolchain (go 1.25 or newer) is needed, and `go` is neither on PATH nor at /usr/local/go/bin/go"
    )
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_module_versions_and_ignores_replaces() {
        let go_mod = "module x\n\nrequire helm.sh/helm/v3 v3.20.2\n\nrequire (\n\tk8s.io/client-go v0.35.1 // indirect\n)\n\
                      replace k8s.io/api => k8s.io/api v0.35.4\n";
        assert_eq!(
            module_version(go_mod, "helm.sh/helm/v3").as_deref(),
            Some("v3.20.2")
        );
        assert_eq!(
            module_version(go_mod, "k8s.io/client-go").as_deref(),
            Some("v0.35.1")
        );
        assert_eq!(module_version(go_mod, "k8s.io/api"), None);
    }
}
