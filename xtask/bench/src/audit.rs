//! API requests counted from the apiserver's side: its JSON audit log (one
//! `audit.k8s.io/v1` Event per line), filtered by the kubelet's user and
//! tallied by verb and resource within time windows.
//!
//! A long-running request (a watch) is logged twice, at `ResponseStarted` and
//! at `ResponseComplete`; it counts once, when it starts.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::Deserialize;

/// The fields of an audit event the benchmark reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    verb: String,
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    request_received_timestamp: Timestamp,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
}

/// A half-open time window `[from, to)` on the apiserver's clock.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start (inclusive).
    pub from: Timestamp,
    /// End (exclusive).
    pub to: Timestamp,
}

impl Window {
    fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

/// Whether a `"<verb> <resource>"` key is a write.
fn is_write(key: &str) -> bool {
    let verb = key.split(' ').next().unwrap_or("");
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// Requests counted by `"<verb> <resource>[/<subresource>]"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Count per verb and resource.
    pub by_request: BTreeMap<String, u64>,
}

impl Tally {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_request.values().sum()
    }

    /// Requests that change state: create, update, patch, delete, deletecollection.
    pub fn writes(&self) -> u64 {
        self.sum(is_write)
    }

    /// Writes to anything but the node's own upkeep (its Lease and Node
    /// object): what the pods themselves cost.
    pub fn pod_writes(&self) -> u64 {
        self.sum(|k| {
            let resource = k.split(' ').nth(1).unwrap_or("");
            is_write(k) && !matches!(resource, "leases" | "nodes" | "nodes/status")
        })
    }

    fn sum(&self, counted: impl Fn(&str) -> bool) -> u64 {
        self.by_request
            .iter()
            .filter(|(k, _)| counted(k))
            .map(|(_, v)| v)
            .sum()
    }

    /// Each count divided by `n` (e.g. per pod lifecycle), rounded to three decimals.
    pub fn per(&self, n: f64) -> BTreeMap<String, f64> {
        self.by_request
            .iter()
            .map(|(k, v)| (k.clone(), crate::stats::round3(*v as f64 / n)))
            .collect()
    }
}

/// Reads an audit log and tallies the requests of `username` per window: the
/// result has one [`Tally`] per entry of `windows`, in the same order. Lines
/// that are not audit events (a torn last line while the log is written) are
/// skipped.
pub fn tally<R: BufRead>(log: R, username: &str, windows: &[Window]) -> Result<Vec<Tally>> {
    let mut out = vec![Tally::default(); windows.len()];
    let mut started: HashSet<String> = HashSet::new();
    for line in log.lines() {
        let line = line.context("reading the audit log")?;
        // Cheap pre-filter: most lines of a busy log are someone else's.
        if !line.contains(username) {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        if event.user.username != username {
            continue;
        }
        match event.stage.as_str() {
            "ResponseStarted" => {
                started.insert(event.audit_id.clone());
            }
            "ResponseComplete" | "Panic" => {
                if started.remove(&event.audit_id) {
                    continue;
                }
            }
            _ => continue,
        }
        let key = request_key(&event);
        for (window, tally) in windows.iter().zip(out.iter_mut()) {
            if window.contains(event.request_received_timestamp) {
                *tally.by_request.entry(key.clone()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// Follows a growing audit log and remembers when `username`'s requests were
/// received, so the benchmark can tell when the kubelet has gone quiet
/// (events still draining, deletions still being cleaned up) before it
/// opens a measuring window.
pub struct Follower {
    reader: std::io::BufReader<std::fs::File>,
    username: String,
    partial: String,
    started: HashSet<String>,
    received: Vec<Timestamp>,
}

impl Follower {
    /// Starts at the current end of `path`: only requests logged from now on count.
    pub fn open(path: &std::path::Path, username: &str) -> Result<Self> {
        use std::io::Seek;
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        file.seek(std::io::SeekFrom::End(0))
            .context("seeking to the end of the audit log")?;
        Ok(Follower {
            reader: std::io::BufReader::new(file),
            username: username.to_string(),
            partial: String::new(),
            started: HashSet::new(),
            received: Vec::new(),
        })
    }

    /// Reads what was appended since the last call.
    pub fn poll(&mut self) -> Result<()> {
        loop {
            let n = self
                .reader
                .read_line(&mut self.partial)
                .context("reading the audit log")?;
            if n == 0 || !self.partial.ends_with('\n') {
                // End of what is written so far; a torn line is completed next time.
                return Ok(());
            }
            let line = std::mem::take(&mut self.partial);
            if !line.contains(&self.username) {
                continue;
            }
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            if event.user.username != self.username {
                continue;
            }
            match event.stage.as_str() {
                "ResponseStarted" => {
                    self.started.insert(event.audit_id);
                }
                "ResponseComplete" | "Panic" => {
                    if self.started.remove(&event.audit_id) {
                        continue;
                    }
                }
                _ => continue,
            }
            self.received.push(event.request_received_timestamp);
        }
    }

    /// Requests received in `[from, to)`; forgets those before `from`.
    pub fn count(&mut self, from: Timestamp, to: Timestamp) -> usize {
        // Batches are written in completion order: not strictly sorted.
        self.received.retain(|t| *t >= from);
        self.received.iter().filter(|t| **t < to).count()
    }
}

fn request_key(event: &Event) -> String {
    let resource = event
        .object_ref
        .as_ref()
        .and_then(|o| o.resource.clone())
        .unwrap_or_else(|| "(non-resource)".into());
    match event
        .object_ref
        .as_ref()
        .and_then(|o| o.subresource.as_deref())
    {
        Some(sub) if !sub.is_empty() => format!("{} {resource}/{sub}", event.verb),
        _ => format!("{} {resource}", event.verb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        id: &str,
        stage: &str,
        verb: &str,
        user: &str,
        res: &str,
        sub: &str,
        at: &str,
    ) -> String {
        let sub = if sub.is_empty() {
            String::new()
        } else {
            format!(r#","subresource":"{sub}""#)
        };
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"/x","verb":"{verb}","user":{{"username":"{user}","groups":["system:nodes"]}},"sourceIPs":["127.0.0.1"],"userAgent":"vk-mock","objectRef":{{"resource":"{res}","namespace":"bench","name":"p"{sub},"apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{at}","stageTimestamp":"{at}"}}"#
        )
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn pod_writes_leave_out_the_nodes_upkeep() {
        let t = Tally {
            by_request: [
                ("patch pods/status", 10),
                ("delete pods", 10),
                ("create events", 10),
                ("update leases", 2),
                ("patch nodes/status", 1),
                ("watch pods", 1),
                ("get pods", 3),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        };
        assert_eq!(t.writes(), 33);
        assert_eq!(t.pod_writes(), 30);
        assert_eq!(t.total(), 37);
    }

    #[test]
    fn counts_by_verb_and_resource_for_one_user_within_windows() {
        let u = "vk-bench:kubelet";
        let log = [
            line(
                "1",
                "ResponseComplete",
                "patch",
                u,
                "pods",
                "status",
                "2025-01-01T00:00:01.000001Z",
            ),
            line(
                "2",
                "ResponseComplete",
                "delete",
                u,
                "pods",
                "",
                "2025-01-01T00:00:02Z",
            ),
            line(
                "3",
                "ResponseComplete",
                "patch",
                "kubernetes-admin",
                "pods",
                "status",
                "2025-01-01T00:00:02Z",
            ),
            // A watch: two stages, one request.
            line(
                "4",
                "ResponseStarted",
                "watch",
                u,
                "pods",
                "",
                "2025-01-01T00:00:03Z",
            ),
            line(
                "5",
                "ResponseComplete",
                "update",
                u,
                "leases",
                "",
                "2025-01-01T00:00:10Z",
            ),
            line(
                "4",
                "ResponseComplete",
                "watch",
                u,
                "pods",
                "",
                "2025-01-01T00:00:03Z",
            ),
            "{not json".to_string(),
            line(
                "6",
                "ResponseComplete",
                "create",
                u,
                "events",
                "",
                "2025-01-01T00:00:20Z",
            ),
        ]
        .join("\n");
        let windows = [
            Window {
                from: ts("2025-01-01T00:00:00Z"),
                to: ts("2025-01-01T00:00:10Z"),
            },
            Window {
                from: ts("2025-01-01T00:00:10Z"),
                to: ts("2025-01-01T00:01:00Z"),
            },
        ];
        let t = tally(log.as_bytes(), u, &windows).unwrap();
        let first: Vec<(&str, u64)> = t[0]
            .by_request
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            first,
            vec![
                ("delete pods", 1),
                ("patch pods/status", 1),
                ("watch pods", 1)
            ]
        );
        assert_eq!(t[0].writes(), 2);
        assert_eq!(t[0].total(), 3);
        let second: Vec<(&str, u64)> = t[1]
            .by_request
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(second, vec![("create events", 1), ("update leases", 1)]);
        assert_eq!(t[1].per(2.0).get("update leases"), Some(&0.5));
    }

    #[test]
    fn the_follower_counts_new_requests_of_the_user_and_waits_for_torn_lines() {
        use std::io::Write;
        let u = "vk-bench:kubelet";
        let path = std::env::temp_dir().join(format!("vk-bench-follow-{}.log", std::process::id()));
        let before = line(
            "0",
            "ResponseComplete",
            "patch",
            u,
            "pods",
            "status",
            "2025-01-01T00:00:01Z",
        );
        std::fs::write(&path, format!("{before}\n")).unwrap();
        let mut f = Follower::open(&path, u).unwrap();
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let watch_start = line(
            "1",
            "ResponseStarted",
            "watch",
            u,
            "pods",
            "",
            "2025-01-01T00:00:02Z",
        );
        let watch_end = line(
            "1",
            "ResponseComplete",
            "watch",
            u,
            "pods",
            "",
            "2025-01-01T00:00:02Z",
        );
        let other = line(
            "2",
            "ResponseComplete",
            "create",
            "someone",
            "pods",
            "",
            "2025-01-01T00:00:03Z",
        );
        let event = line(
            "3",
            "ResponseComplete",
            "create",
            u,
            "events",
            "",
            "2025-01-01T00:00:04Z",
        );
        write!(log, "{watch_start}\n{watch_end}\n{other}\n{}", &event[..40]).unwrap();
        log.flush().unwrap();
        f.poll().unwrap();
        let all = (ts("2025-01-01T00:00:00Z"), ts("2025-01-01T00:01:00Z"));
        // The line before the follower opened is not counted; the watch once.
        assert_eq!(f.count(all.0, all.1), 1);
        writeln!(log, "{}", &event[40..]).unwrap();
        log.flush().unwrap();
        f.poll().unwrap();
        assert_eq!(f.count(all.0, all.1), 2);
        // Requests before `from` are forgotten.
        assert_eq!(f.count(ts("2025-01-01T00:00:03Z"), all.1), 1);
        assert_eq!(f.count(all.0, all.1), 1);
        std::fs::remove_file(&path).unwrap();
    }
}
