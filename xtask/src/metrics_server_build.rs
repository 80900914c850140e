//! Builds `metrics-server` from its Go module (`sigs.k8s.io/metrics-server`,
//! pinned in `xtask/metrics-server/go.mod` with its `go.sum`) into the cache
//! outside the clone, the way [`crate::helm_build`] builds helm. The mock's
//! `top` test runs it against a virtual node.
//!
//! The binary lives at `<cache>/metrics-server/<hash>/metrics-server`, where
//! the hash covers `go.mod`, `go.sum` and the build flags: an unchanged pin
//! reuses the binary without calling Go at all.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::go_build::{self, GoBinary, module_version};
use crate::oci::sha256;
use crate::workspace;

/// The module that pins metrics-server.
const MODULE: &str = "sigs.k8s.io/metrics-server";

/// The metrics-server command's package inside the module.
const PACKAGE: &str = "sigs.k8s.io/metrics-server/cmd/metrics-server";

/// The Go module that pins metrics-server.
pub fn metrics_server_src() -> PathBuf {
    workspace::root().join("xtask").join("metrics-server")
}

/// Returns the path of the pinned `metrics-server`, building it first if needed.
pub fn ensure_built() -> Result<PathBuf> {
    let src = metrics_server_src();
    let go_mod = fs::read_to_string(src.join("go.mod"))
        .with_context(|| format!("reading {}", src.join("go.mod").display()))?;
    let go_sum = fs::read_to_string(src.join("go.sum"))
        .with_context(|| format!("reading {}", src.join("go.sum").display()))?;
    let version = module_version(&go_mod, MODULE)
        .with_context(|| format!("xtask/metrics-server/go.mod does not require {MODULE}"))?;
    let ldflags = ldflags(&version);
    let hash = sha256(format!("{ldflags}\n{go_mod}\n{go_sum}").as_bytes());
    let hash = &hash.trim_start_matches("sha256:")[..32];
    let label = format!("metrics-server {version}");
    go_build::ensure_built(&GoBinary {
        name: "metrics-server",
        label: &label,
        src: &src,
        package: PACKAGE,
        ldflags: &ldflags,
        hash,
        env: &[("CGO_ENABLED", "0")],
        hint: "a cold build takes a few minutes on 2 cores",
    })
}

/// What metrics-server's own Makefile stamps in: its version, where
/// `metrics-server --version` and the apiserver's `/version` read it.
fn ldflags(version: &str) -> String {
    format!(
        "-s -w \
         -X k8s.io/client-go/pkg/version.gitVersion={version} \
         -X k8s.io/client-go/pkg/version.gitTreeState=clean"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldflags_stamp_the_version() {
        let flags = ldflags("v0.8.0");
        assert!(flags.contains("client-go/pkg/version.gitVersion=v0.8.0 "));
    }

    #[test]
    fn the_pinned_module_names_metrics_server() -> Result<()> {
        let go_mod = fs::read_to_string(metrics_server_src().join("go.mod"))?;
        assert!(module_version(&go_mod, MODULE).is_some());
        assert!(go_mod.contains(&format!("tool {PACKAGE}")));
        Ok(())
    }
}
