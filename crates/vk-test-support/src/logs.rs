//! The control-plane logs a failing test prints.

use std::path::Path;

/// The components whose logs explain most failures, in the order shown.
const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

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
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                for line in &all[all.len().saturating_sub(lines)..] {
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
}
