//! `vkcp kubectl`: kubectl of the pinned version, so tests never depend on
//! whatever kubectl a machine happens to have.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};

use anyhow::{Context, Result, bail};

/// What one kubectl call printed, and how it exited.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    fn from_output(command: String, out: Output) -> Self {
        KubectlOutput {
            command,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// True if kubectl exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Stdout if kubectl exited 0, else an error with its stderr.
    pub fn ok(self) -> Result<String> {
        if !self.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.command,
                self.status,
                self.stderr.trim()
            );
        }
        Ok(self.stdout)
    }
}

fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    format!("kubectl {}", words.join(" "))
}

/// Runs `vkcp kubectl --kubeconfig KUBECONFIG ARGS` asynchronously.
pub(crate) async fn kubectl_async<I, S>(
    vkcp: &Path,
    kubeconfig: &Path,
    args: I,
) -> Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let command = describe(&args);
    let out = tokio::process::Command::new(vkcp)
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {command} ({})", vkcp.display()))?;
    Ok(KubectlOutput::from_output(command, out))
}

/// Runs `vkcp kubectl --kubeconfig KUBECONFIG ARGS`, blocking: for `Drop`
/// implementations and synchronous tests.
pub fn kubectl_blocking<I, S>(vkcp: &Path, kubeconfig: &Path, args: I) -> Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let command = describe(&args);
    let out = std::process::Command::new(vkcp)
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command} ({})", vkcp.display()))?;
    Ok(KubectlOutput::from_output(command, out))
}
