//! Builds `helm` from its Go module (`helm.sh/helm/v3`, pinned in
//! `xtask/helm/go.mod` with its `go.sum`) into the cache outside the clone,
//! the way [`crate::controlplane_build`] builds the control plane.
//!
//! The binary lives at `<cache>/helm/<hash>/helm`, where the hash covers
//! `go.mod`, `go.sum` and the build flags: an unchanged pin reuses the binary
//! without calling Go at all.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::go_build::{self, GoBinary, module_version};
use crate::oci::sha256;
use crate::workspace;

/// The helm command's package inside the module.
const HELM_PACKAGE: &str = "helm.sh/helm/v3/cmd/helm";

/// The Go module that pins helm.
pub fn helm_src() -> PathBuf {
    workspace::root().join("xtask").join("helm")
}

/// Returns the path of the pinned `helm`, building it first if needed.
pub fn ensure_built() -> Result<PathBuf> {
    let src = helm_src();
    let go_mod = fs::read_to_string(src.join("go.mod"))
        .with_context(|| format!("reading {}", src.join("go.mod").display()))?;
    let go_sum = fs::read_to_string(src.join("go.sum"))
        .with_context(|| format!("reading {}", src.join("go.sum").display()))?;
    let helm_version = module_version(&go_mod, "helm.sh/helm/v3")
        .context("xtask/helm/go.mod does not require helm.sh/helm/v3")?;
    let client_go = module_version(&go_mod, "k8s.io/client-go")
        .context("xtask/helm/go.mod does not require k8s.io/client-go")?;
    let ldflags = ldflags(&helm_version, &client_go);
    let hash = sha256(format!("{ldflags}\n{go_mod}\n{go_sum}").as_bytes());
    let hash = &hash.trim_start_matches("sha256:")[..32];
    let label = format!("helm {helm_version}");
    go_build::ensure_built(&GoBinary {
        name: "helm",
        label: &label,
        src: &src,
        package: HELM_PACKAGE,
        ldflags: &ldflags,
        hash,
        env: &[("CGO_ENABLED", "0")],
        hint: "a cold build takes a few minutes on 2 cores",
    })
}

/// What helm's own Makefile stamps in: its version, and the Kubernetes
/// version `helm lint` and `helm template` assume (from the client-go minor).
fn ldflags(helm_version: &str, client_go: &str) -> String {
    let minor = client_go
        .trim_start_matches("v0.")
        .split('.')
        .next()
        .unwrap_or("0");
    format!(
        "-s -w \
         -X helm.sh/helm/v3/internal/version.version={helm_version} \
         -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor} \
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldflags_stamp_helm_and_kubernetes_versions() {
        let flags = ldflags("v3.20.2", "v0.35.1");
        assert!(flags.contains("internal/version.version=v3.20.2 "));
        assert!(flags.contains("chartutil.k8sVersionMinor=35"));
        assert!(flags.contains("rules.k8sVersionMinor=35 "));
    }

    #[test]
    fn the_pinned_module_names_helm() -> Result<()> {
        let go_mod = fs::read_to_string(helm_src().join("go.mod"))?;
        assert!(module_version(&go_mod, "helm.sh/helm/v3").is_some());
        assert!(go_mod.contains(&format!("tool {HELM_PACKAGE}")));
        Ok(())
    }
}
