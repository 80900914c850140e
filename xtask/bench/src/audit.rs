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
        self.by_request
            .iter()
            .filter(|(k, _)| {
                let verb = k.split(' ').next().unwrap_or("");
                matches!(
                    verb,
                    "create" | "update" | "patch" | "delete" | "deletecollection"
                )
            })
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
}
