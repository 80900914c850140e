//! The log tails a failing test prints: any log file's (a kubelet's, a
//! daemon's) and the control plane's.

use std::path::Path;

/// The components whose logs explain most failures, in the order shown.
const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The last `lines` lines of a log file, joined by newlines (empty if it
/// cannot be read: a tail is for a failure message, which must not fail).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    last_lines(&text, lines).join("\n")
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

/// The last `lines` lines of each component's log in `cluster_dir/logs`,
/// each under a header naming the file. Missing logs are said to be missing.
pub fn control_plane_logs_tail(cluster_dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for name in COMPONENTS {
        let path = cluster_dir.join("logs").join(format!("{name}.log"));
        out.push_str(&format!(
            "----- last {lines} lines of {} -----\n",
            path.display()
        ));
        match std::fs::read(&path) {
            Ok(bytes) => {
                for line in last_lines(&String::from_utf8_lossy(&bytes), lines) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Err(err) => out.push_str(&format!("(cannot read it: {err})\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_last_lines_of_each_log_and_names_missing_ones() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("logs"))?;
        let body: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("logs/kube-apiserver.log"), body)?;
        let tail = control_plane_logs_tail(dir.path(), 3);
        assert!(tail.contains("line 48\nline 49\nline 50\n"), "{tail}");
        assert!(!tail.contains("line 47\n"), "{tail}");
        assert!(
            tail.contains("kube-scheduler.log -----\n(cannot read it"),
            "{tail}"
        );
        Ok(())
    }

    #[test]
    fn a_log_tail_is_the_last_lines_or_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("p.log");
        std::fs::write(&log, "a\nb\nc\n")?;
        assert_eq!(log_tail(&log, 2), "b\nc");
        assert_eq!(log_tail(&log, 9), "a\nb\nc");
        assert_eq!(log_tail(&dir.path().join("missing.log"), 2), "");
        Ok(())
    }
}
