//! What a command the harness runs (kubectl, podman) printed and how it
//! exited, and how a command line is shown in messages.

use std::ffi::OsStr;
use std::process::{ExitStatus, Output};

use anyhow::{Result, bail};

/// What one command printed, and how it exited. Running it failed only if
/// it could not be started; a failing command is an output whose
/// [`CommandOutput::success`] is false.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command line, for messages.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// The output of `command` (its command line, for messages).
    pub(crate) fn new(command: String, out: Output) -> Self {
        CommandOutput {
            command,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// True if the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Stdout if the command exited 0, else an error with its stderr.
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

/// `program ARGS` as one line, for messages.
pub(crate) fn command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut line = program.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.as_ref().to_string_lossy());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_carries_stderr_on_failure() {
        let failed = CommandOutput {
            command: "podman nope".into(),
            status: std::process::Command::new("false")
                .status()
                .unwrap_or_else(|e| panic!("false(1): {e}")),
            stdout: String::new(),
            stderr: "Error: unrecognized command\n".into(),
        };
        let err = failed.ok().err().map(|e| format!("{e:#}"));
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("podman nope") && e.contains("unrecognized")),
            "{err:?}"
        );
    }

    #[test]
    fn a_command_line_joins_program_and_arguments() {
        assert_eq!(
            command_line("kubectl", &["get", "pods"]),
            "kubectl get pods"
        );
        assert_eq!(command_line::<&str>("kubectl", &[]), "kubectl");
    }
}
