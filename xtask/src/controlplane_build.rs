//! Builds `vkcp`, the local control plane (`xtask/controlplane`, a Go module),
//! into the cache outside the clone.
//!
//! The binary lives at `<cache>/vkcp/<hash>/vkcp`, where the hash covers
//! `go.mod`, `go.sum`, every `*.go` file and the build flags. A checkout whose
//! control-plane sources are unchanged reuses the binary without calling Go at
//! all; a changed one is rebuilt, which the Go build cache (`~/.cache/go-build`)
//! makes take about a minute instead of the 10-20 of a cold build.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::progress::{self, format_duration};
use crate::workspace;

/// How often a running Go build reports that it is still running.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Returns the path of an up-to-date `vkcp`, building it first if needed.
pub fn ensure_built() -> Result<PathBuf> {
    let src = workspace::controlplane_src();
    let go_mod = fs::read_to_string(src.join("go.mod"))
        .with_context(|| format!("reading {}", src.join("go.mod").display()))?;
    let version = kubernetes_version(&go_mod)?;
    let ldflags = ldflags(&version);
    let hash = source_hash(&src, &ldflags)?;
    let out_dir = workspace::cache_dir()?.join("vkcp").join(&hash);
    let binary = out_dir.join("vkcp");
    if binary.is_file() {
        return Ok(binary);
    }

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // Two builds of the same sources at once would only waste the two cores:
    // the second waits for the first and then finds the binary.
    let lock = File::create(out_dir.join("lock"))
        .with_context(|| format!("creating {}", out_dir.join("lock").display()))?;
    if lock.try_lock().is_err() {
        eprintln!("another process is building the control plane; waiting for it");
        lock.lock()
            .context("waiting for the control-plane build lock")?;
    }
    if binary.is_file() {
        return Ok(binary);
    }
    build(&src, &version, &ldflags, &out_dir, &binary)?;
    Ok(binary)
}

fn build(src: &Path, version: &str, ldflags: &str, out_dir: &Path, binary: &Path) -> Result<()> {
    let go = find_go()?;
    let tmp = out_dir.join("vkcp.partial");
    let log_path = out_dir.join("build.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .context("duplicating the build log handle")?;
    eprintln!(
        "building control plane (k8s {version}) into {}\n  \
         a cold build takes about 5 minutes on 2 cores, a rebuild about a minute; log: {}",
        binary.display(),
        log_path.display()
    );
    let mut child = Command::new(&go)
        .current_dir(src)
        .args(["build", "-trimpath", "-ldflags", ldflags, "-o"])
        .arg(&tmp)
        .arg(".")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("starting {}", go.display()))?;
    let label = format!("building control plane (k8s {version})");
    let started = std::time::Instant::now();
    let status = progress::wait_child(&mut child, &label, BUILD_PROGRESS_EVERY)?;
    if !status.success() {
        let tail = tail_lines(&log_path, 40);
        bail!(
            "go build failed ({status}) after {}; last lines of {}:\n{tail}",
            format_duration(started.elapsed()),
            log_path.display()
        );
    }
    fs::rename(&tmp, binary)
        .with_context(|| format!("moving {} to {}", tmp.display(), binary.display()))?;
    eprintln!(
        "built control plane in {}: {}",
        format_duration(started.elapsed()),
        binary.display()
    );
    Ok(())
}

/// The Kubernetes version `go.mod` pins (`k8s.io/kubernetes vX.Y.Z`).
pub fn kubernetes_version(go_mod: &str) -> Result<String> {
    for line in go_mod.lines() {
        let mut words = line.split_whitespace();
        // Either `require k8s.io/kubernetes v1.35.4` or a line inside `require ( ... )`.
        let first = words.next();
        let module = if first == Some("require") {
            words.next()
        } else {
            first
        };
        if module == Some("k8s.io/kubernetes")
            && let Some(version) = words.next()
            && version.starts_with("v1.")
            && !line.contains("=>")
        {
            return Ok(version.to_string());
        }
    }
    bail!("go.mod does not require k8s.io/kubernetes at a v1.x version")
}

/// The linker flags that stamp the pinned version into every component (without
/// them `/version` reports v0.0.0) and strip debug information.
fn ldflags(version: &str) -> String {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    format!(
        "-s -w \
         -X k8s.io/component-base/version.gitVersion={version} \
         -X k8s.io/component-base/version.gitMajor={major} \
         -X k8s.io/component-base/version.gitMinor={minor} \
         -X k8s.io/component-base/version.gitTreeState=clean \
         -X k8s.io/client-go/pkg/version.gitVersion={version}"
    )
}

/// A content hash of `go.mod`, `go.sum`, the `*.go` files and the flags.
fn source_hash(src: &Path, ldflags: &str) -> Result<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(src)
        .with_context(|| format!("listing {}", src.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "go.mod" || name == "go.sum" || name.ends_with(".go")
        })
        .collect();
    files.sort();
    let mut hasher = Fnv128::new();
    hasher.write(ldflags.as_bytes());
    for path in &files {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or(b"");
        hasher.write(&(name.len() as u64).to_le_bytes());
        hasher.write(name);
        hasher.write(&(bytes.len() as u64).to_le_bytes());
        hasher.write(&bytes);
    }
    Ok(format!("{:032x}", hasher.finish()))
}

/// FNV-1a, 128-bit: plenty to tell source trees apart, and no dependency.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// `go` from `PATH`, else the usual install location.
fn find_go() -> Result<PathBuf> {
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
        "the Go toolchain (go 1.25 or newer) is needed to build the control plane, \
         and `go` is neither on PATH nor at /usr/local/go/bin/go"
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
    fn finds_the_pinned_version_in_a_require_block() {
        let go_mod = "module x\n\nrequire (\n\tk8s.io/api v0.35.4\n\tk8s.io/kubernetes v1.35.4\n)\n\
                      replace k8s.io/kubernetes => k8s.io/kubernetes v1.99.0\n";
        assert_eq!(kubernetes_version(go_mod).ok().as_deref(), Some("v1.35.4"));
    }

    #[test]
    fn finds_the_pinned_version_on_a_require_line() {
        let go_mod = "module x\nrequire k8s.io/kubernetes v1.34.2\n";
        assert_eq!(kubernetes_version(go_mod).ok().as_deref(), Some("v1.34.2"));
    }

    #[test]
    fn a_go_mod_without_kubernetes_is_an_error() {
        assert!(kubernetes_version("module x\nrequire k8s.io/api v0.35.4\n").is_err());
    }

    #[test]
    fn ldflags_stamp_major_and_minor() {
        let flags = ldflags("v1.35.4");
        assert!(flags.contains("version.gitVersion=v1.35.4"));
        assert!(flags.contains("version.gitMajor=1 "));
        assert!(flags.contains("version.gitMinor=35 "));
    }

    #[test]
    fn the_hash_changes_with_content_and_flags() {
        let mut a = Fnv128::new();
        a.write(b"package main");
        let mut b = Fnv128::new();
        b.write(b"package mainx");
        assert_ne!(a.finish(), b.finish());
        // Known FNV-1a-128 value of the empty input is the offset basis.
        assert_eq!(Fnv128::new().finish(), Fnv128::OFFSET);
    }
}
