//! Builds `helm` from its Go module (`helm.sh/helm/v3`, pinned in
//! `xtask/helm/go.mod` with its `go.sum`) into the cache outside the clone,
//! the way [`crate::controlplane_build`] builds the control plane.
//!
//! The binary lives at `<cache>/helm/<hash>/helm`, where the hash covers
//! `go.mod`, `go.sum` and the build flags: an unchanged pin reuses the binary
//! without calling Go at all.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::controlplane_build::tail_lines;
use crate::oci::sha256;
use crate::progress::{self, format_duration};
use crate::workspace;

/// The helm command's package inside the module.
const HELM_PACKAGE: &str = "helm.sh/helm/v3/cmd/helm";
/// How often a running Go build reports that it is still running.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(30);

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
    let out_dir = workspace::cache_dir()?.join("helm").join(hash);
    let binary = out_dir.join("helm");
    if binary.is_file() {
        return Ok(binary);
    }

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let lock = File::create(out_dir.join("lock"))
        .with_context(|| format!("creating {}", out_dir.join("lock").display()))?;
    if lock.try_lock().is_err() {
        eprintln!("another process is building helm; waiting for it");
        lock.lock().context("waiting for the helm build lock")?;
    }
    if binary.is_file() {
        return Ok(binary);
    }
    build(&src, &helm_version, &ldflags, &out_dir, &binary)?;
    Ok(binary)
}

fn build(src: &Path, version: &str, ldflags: &str, out_dir: &Path, binary: &Path) -> Result<()> {
    let go = find_go()?;
    let tmp = out_dir.join("helm.partial");
    let log_path = out_dir.join("build.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .context("duplicating the build log handle")?;
    eprintln!(
        "building helm {version} into {}\n  \
         a cold build takes a few minutes on 2 cores; log: {}",
        binary.display(),
        log_path.display()
    );
    let started = Instant::now();
    let mut child = Command::new(&go)
        .current_dir(src)
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags", ldflags, "-o"])
        .arg(&tmp)
        .arg(HELM_PACKAGE)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("starting {}", go.display()))?;
    let status = progress::wait_child(
        &mut child,
        &format!("building helm {version}"),
        BUILD_PROGRESS_EVERY,
    )?;
    if !status.success() {
        bail!(
            "go build of helm failed ({status}) after {}; last lines of {}:\n{}",
            format_duration(started.elapsed()),
            log_path.display(),
            tail_lines(&log_path, 40)
        );
    }
    fs::rename(&tmp, binary)
        .with_context(|| format!("moving {} to {}", tmp.display(), binary.display()))?;
    eprintln!(
        "built helm {version} in {}: {}",
        format_duration(started.elapsed()),
        binary.display()
    );
    Ok(())
}

/// The version `go.mod` requires of `module` (`require m v1` or inside a block).
fn module_version(go_mod: &str, module: &str) -> Option<String> {
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
        "the Go toolchain (go 1.25 or newer) is needed to build helm, \
         and `go` is neither on PATH nor at /usr/local/go/bin/go"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_module_versions() {
        let go_mod = "module vk/helm\n\ntool helm.sh/helm/v3/cmd/helm\n\n\
                      require helm.sh/helm/v3 v3.20.2\n\nrequire (\n\tk8s.io/client-go v0.35.1 // indirect\n)\n";
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
