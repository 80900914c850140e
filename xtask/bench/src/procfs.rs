//! CPU time and memory of a process tree, read from `/proc`: the kubelet under
//! test and whatever it started (a wrapper script, helpers) count together.

use std::collections::HashMap;
use std::fs;

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User plus system CPU seconds of every live process in the tree.
    pub cpu_seconds: f64,
    /// Resident set size now (VmRSS), summed over the tree, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), summed over the tree, KiB.
    pub hwm_kib: u64,
    /// Of `rss_kib`, anonymous memory (RssAnon: heap, stacks), KiB.
    pub anon_kib: u64,
    /// Of `rss_kib`, pages of mapped files (RssFile: mostly the binary's code), KiB.
    pub file_kib: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The fields of `/proc/<pid>/stat` the benchmark needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent PID.
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may contain spaces and parentheses itself, so fields are counted from
/// the last `)`: state is field 3, ppid 4, utime 14, stime 15.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// A `kB` value of `/proc/<pid>/status`, e.g. `VmHWM:     1234 kB`.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Clock ticks per second (`getconf CLK_TCK`); 100, the Linux value on every
/// common architecture, when `getconf` is missing.
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// `root` and its live descendants, from one scan of `/proc`.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                parent_of.insert(pid, stat.ppid);
            }
        }
    }
    descendants(root, &parent_of)
}

/// `root` plus every pid whose chain of parents reaches `root`.
pub fn descendants(root: u32, parent_of: &HashMap<u32, u32>) -> Vec<u32> {
    let mut out = vec![root];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&child, &parent) in parent_of {
            if parent == p && child != root && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Reads the tree rooted at `root`; `None` when `root` itself is gone.
pub fn sample(root: u32, ticks_per_second: f64) -> Option<Sample> {
    let mut s = Sample::default();
    let mut root_seen = false;
    for pid in tree(root) {
        let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        root_seen |= pid == root;
        s.cpu_seconds += stat.cpu_ticks as f64 / ticks_per_second;
        s.processes += 1;
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            s.rss_kib += parse_status_kib(&status, "VmRSS").unwrap_or(0);
            s.hwm_kib += parse_status_kib(&status, "VmHWM").unwrap_or(0);
            s.anon_kib += parse_status_kib(&status, "RssAnon").unwrap_or(0);
            s.file_kib += parse_status_kib(&status, "RssFile").unwrap_or(0);
        }
    }
    root_seen.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        // Fields after the name: state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime ...
        let text = "4242 (vk mock) (x)) S 17 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 456 789";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                ppid: 17,
                cpu_ticks: 325
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[test]
    fn status_values_in_kib() {
        let text = "Name:\tvk-mock\nVmPeak:\t  900000 kB\nVmHWM:\t   35120 kB\nVmRSS:\t   30000 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(35120));
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(30000));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
        // A key that is a prefix of another must not match it.
        assert_eq!(parse_status_kib(text, "Vm"), None);
    }

    #[test]
    fn descendants_follow_the_parent_chain() {
        let parents: HashMap<u32, u32> = [(10, 1), (11, 10), (12, 11), (13, 1), (14, 10)]
            .into_iter()
            .collect();
        let mut d = descendants(10, &parents);
        d.sort();
        assert_eq!(d, vec![10, 11, 12, 14]);
        assert_eq!(descendants(13, &parents), vec![13]);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id(), clock_ticks_per_second()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.processes >= 1);
    }
}
