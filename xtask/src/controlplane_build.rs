//! Builds `vkcp`, the local control plane (`xtask/controlplane`, a Go module),
//! into the cache outside the clone.
//!
//! The binary lives at `<cache>/vkcp/<hash>/vkcp`, where the hash covers
//! `go.mod`, `go.sum`, every `*.go` file and the build flags. A checkout whose
//! control-plane sources are unchanged reuses the binary without calling Go at
//! all; a changed one is rebuilt, which the Go build cache (`~/.cache/go-build`)
//! makes take about a minute instead of the 10-20 of a cold build.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::go_build::{self, GoBinary};
use crate::workspace;

/// Returns the path of an up-to-date `vkcp`, building it first if needed.
pub fn ensure_built() -> Result<PathBuf> {
    let src = workspace::controlplane_src();
    let go_mod = fs::read_to_string(src.join("go.mod"))
        .with_context(|| format!("reading {}", src.join("go.mod").display()))?;
    let version = kubernetes_version(&go_mod)?;
    let ldflags = ldflags(&version);
    let hash = source_hash(&src, &ldflags)?;
    let label = format!("control plane (k8s {version})");
    go_build::ensure_built(&GoBinary {
        name: "vkcp",
        label: &label,
        src: &src,
        package: ".",
        ldflags: &ldflags,
        hash: &hash,
        env: &[],
        hint: "a cold build takes about 5 minutes on 2 cores, a rebuild about a minute",
    })
}

/// The Kubernetes version `go.mod` pins (`k8s.io/kubernetes vX.Y.Z`).
pub fn kubernetes_version(go_mod: &str) -> Result<String> {
    match go_build::module_version(go_mod, "k8s.io/kubernetes") {
        Some(v) if v.starts_with("v1.") => Ok(v),
        _ => bail!("go.mod does not require k8s.io/kubernetes at a v1.x version"),
    }
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

/// The last `n` lines of a text file (empty if it cannot be read).
pub use crate::go_build::tail_lines;

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
