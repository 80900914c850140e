//! Where things live: the workspace root, the cache outside the clone, the
//! default cluster directories and the `cargo` to call back into.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// The workspace root (the directory holding the root `Cargo.toml`).
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the process it runs; the path
/// compiled in is the fallback, for the binary started by hand.
pub fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("src/main.rs").is_file() && dir.ends_with("xtask"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The cache kept outside the clone: `$VK_CACHE_DIR`, else `~/.cache/vk-rs`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VK_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("vk-rs")),
        None => bail!("neither VK_CACHE_DIR nor HOME is set: cannot choose a cache directory"),
    }
}

/// The Go program's source directory.
pub fn controlplane_src() -> PathBuf {
    root().join("xtask").join("controlplane")
}

/// `target/cluster`: the cluster `cargo xtask cluster up` and the demo use.
pub fn default_cluster_dir() -> PathBuf {
    root().join("target").join("cluster")
}

/// `target/test-cluster`: the cluster `cargo xtask test` starts fresh for a run.
pub fn test_cluster_dir() -> PathBuf {
    root().join("target").join("test-cluster")
}

/// The `cargo` that started us (cargo sets `CARGO`), else the one on `PATH`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}
