//! The workspace the tests run in, and `cargo xtask` invoked from a test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

use crate::command::command_line;

/// The workspace root: the nearest directory at or above the running crate's
/// `CARGO_MANIFEST_DIR` whose `Cargo.toml` has a `[workspace]` table (cargo
/// sets that variable for test processes), else this crate's `../..`.
pub fn workspace_root() -> PathBuf {
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| compiled_in.to_path_buf());
    for dir in start.ancestors() {
        let is_workspace = std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[workspace]"));
        if is_workspace {
            return dir.to_path_buf();
        }
    }
    compiled_in
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| compiled_in.to_path_buf())
}

/// What a `cargo xtask` command printed on stdout, and how it exited.
#[derive(Debug)]
pub struct XtaskOutput {
    pub status: ExitStatus,
    pub stdout: String,
}

impl XtaskOutput {
    /// The last non-empty line of stdout: by convention the result (a
    /// kubeconfig path, a binary path).
    pub fn last_line(&self) -> Option<&str> {
        self.stdout.lines().rev().find(|l| !l.trim().is_empty())
    }
}

/// Runs `cargo xtask ARGS` in the workspace, blocking. Its stderr (progress,
/// such as a control-plane build) goes to the test's stderr; stdout is
/// returned. An unsuccessful exit is an error.
pub fn xtask<I, S>(args: I) -> Result<XtaskOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown = command_line("cargo xtask", &args);
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(workspace_root())
        .arg("xtask")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {shown}"))?;
    let output = XtaskOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    if !output.status.success() {
        bail!(
            "{shown} failed ({}); stdout:\n{}",
            output.status,
            output.stdout
        );
    }
    Ok(output)
}
