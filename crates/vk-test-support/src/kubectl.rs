//! `vkcp kubectl`: kubectl of the pinned version, so tests never depend on
//! whatever kubectl a machine happens to have; and the assertion-style
//! forms test bodies use ([`kubectl`], [`kubectl_ok`], [`spawn_kubectl`],
//! [`run_with_stdin`]), which panic when kubectl cannot be run at all.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;

use crate::cluster::TestCluster;
use crate::command::{CommandOutput, command_line};

/// What one kubectl call printed, and how it exited.
pub type KubectlOutput = CommandOutput;

/// `vkcp kubectl --kubeconfig KUBECONFIG ARGS`, stdin from /dev/null.
pub(crate) fn kubectl_command<S: AsRef<OsStr>>(
    vkcp: &Path,
    kubeconfig: &Path,
    args: &[S],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(vkcp);
    cmd.arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null());
    cmd
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
    let command = command_line("kubectl", &args);
    let out = tokio::process::Command::from(kubectl_command(vkcp, kubeconfig, &args))
        .output()
        .await
        .with_context(|| format!("running {command} ({})", vkcp.display()))?;
    Ok(CommandOutput::new(command, out))
}

/// Runs `vkcp kubectl --kubeconfig KUBECONFIG ARGS`, blocking: for `Drop`
/// implementations and synchronous tests.
pub fn kubectl_blocking<I, S>(vkcp: &Path, kubeconfig: &Path, args: I) -> Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let command = command_line("kubectl", &args);
    let out = kubectl_command(vkcp, kubeconfig, &args)
        .output()
        .with_context(|| format!("running {command} ({})", vkcp.display()))?;
    Ok(CommandOutput::new(command, out))
}

/// kubectl with the cluster's admin kubeconfig, as (exit code, stdout,
/// stderr): the form assertions on kubectl's behaviour want. The exit code
/// is -1 when kubectl was killed by a signal.
///
/// # Panics
///
/// When kubectl cannot be run at all.
pub async fn kubectl(cluster: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let out = cluster
        .kubectl(args.iter().copied())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// [`kubectl`] that must succeed; returns its stdout.
///
/// # Panics
///
/// When kubectl fails, with its stderr.
pub async fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let (code, out, err) = kubectl(cluster, args).await;
    assert_eq!(code, 0, "kubectl {args:?} failed: {err}");
    out
}

/// Starts kubectl with the cluster's admin kubeconfig and `args`, its
/// stdin, stdout and stderr piped, killed when the child drops: for kubectl
/// that streams (`logs -f`, `attach`, `port-forward`).
///
/// # Panics
///
/// When kubectl cannot be started.
pub fn spawn_kubectl(cluster: &TestCluster, args: &[&str]) -> tokio::process::Child {
    cluster
        .kubectl_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting kubectl {args:?}: {e}"))
}

/// Runs `cmd` (such as [`TestCluster::kubectl_command`] with arguments) with
/// `input` on its stdin, then closed; returns its exit status and output.
///
/// # Panics
///
/// When the command cannot be started or waited for.
pub async fn run_with_stdin(
    mut cmd: tokio::process::Command,
    input: Vec<u8>,
) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let writer = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            // A command that exits without reading its input is not an error here.
            let _ = stdin.write_all(&input).await;
        })
    });
    let out = child
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    out
}
