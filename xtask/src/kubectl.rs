//! kubectl of the pinned version (`vkcp kubectl`), so nothing depends on
//! whatever kubectl a machine happens to have.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, ExitCode, Output, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cluster::ClusterDir, controlplane_build, workspace};

/// `cargo xtask kubectl ARGS...`: runs `vkcp kubectl`, adding
/// `--kubeconfig target/cluster/kubeconfig` unless ARGS name a kubeconfig.
pub fn passthrough(args: &[String]) -> Result<ExitCode> {
    let vkcp = controlplane_build::ensure_built()?;
    let mut cmd = Command::new(&vkcp);
    cmd.arg("kubectl");
    let names_kubeconfig = args
        .iter()
        .any(|a| a == "--kubeconfig" || a.starts_with("--kubeconfig="));
    if !names_kubeconfig {
        let kubeconfig = ClusterDir::new(&workspace::default_cluster_dir()).kubeconfig();
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("running {} kubectl", vkcp.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Runs `vkcp kubectl --kubeconfig K ARGS` and captures its output.
pub fn output<I, S>(vkcp: &Path, kubeconfig: &Path, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    Command::new(vkcp)
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running kubectl {}", shown.join(" ")))
}

/// Like [`output`], but an unsuccessful kubectl is an error carrying its stderr;
/// returns stdout.
pub fn run<I, S>(vkcp: &Path, kubeconfig: &Path, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = output(vkcp, kubeconfig, &args)?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
