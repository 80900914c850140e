//! Checking `--leader-elect` from outside, for every provider's tests: who
//! holds a node's leader Lease, every term of it a watch sees, the writes
//! each replica's fence let through (the `vk_audit` records of its JSON log),
//! and the node's Ready condition sampled throughout.
//!
//! These helpers are for test bodies and fail like assertions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;

use crate::nodes::node_ready;

/// The workloads in `vk-mock`'s state file for `node` (`--state-dir`), by
/// pod name: (UID, IP, start time). Empty when there is no readable file.
/// Equal before and after a handover: nothing was recreated.
pub fn mock_state_pods(state_dir: &Path, node: &str) -> BTreeMap<String, (String, String, String)> {
    let v: serde_json::Value = std::fs::read(state_dir.join(format!("{node}.json")))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                s(&p["key"]["name"]),
                (
                    s(&p["key"]["uid"]),
                    s(&p["ip"]),
                    s(&p["status"]["startTime"]),
                ),
            )
        })
        .collect()
}

/// A copy of the provider binary `source` in `dir`, for a test that
/// restarts replicas over a long time: a target directory shared with other
/// checkouts may hold another build by then. Checked to be one with
/// `--leader-elect` (`--help` mentions it).
///
/// # Panics
///
/// When the copy fails or the binary has no `--leader-elect`.
pub fn own_copy(source: &Path, dir: &Path) -> std::path::PathBuf {
    let name = source.file_name().unwrap_or_default();
    let copy = dir.join(name);
    std::fs::copy(source, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
    // A process another test forks while the copy's descriptor is open
    // holds it until it execs: "text file busy" for a moment.
    let mut tries = 0;
    let help = loop {
        match std::process::Command::new(&copy).arg("--help").output() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{} --help: {e}", copy.display()),
            Ok(out) => break out,
        }
    };
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--leader-elect"),
        "{} has no --leader-elect (another build?)",
        source.display()
    );
    copy
}

/// The holder of Lease `ns/lease`, if it has one.
pub async fn holder(client: &Client, ns: &str, lease: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(lease)
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Whether `identity` (`<host>_<pid>_<random>`) is that of process `pid`.
pub fn is_process(identity: &str, pid: Option<u32>) -> bool {
    pid.is_some_and(|pid| identity.contains(&format!("_{pid}_")))
}

/// Samples a node's Ready condition every 200 ms until dropped or checked;
/// keeps every sample that was not `True`.
pub struct ReadyWatch {
    stop: Arc<AtomicBool>,
    not_ready: Arc<Mutex<Vec<String>>>,
    samples: Arc<Mutex<usize>>,
}

impl ReadyWatch {
    /// Starts sampling node `node`.
    pub fn start(client: &Client, node: &str) -> ReadyWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let not_ready = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(Mutex::new(0));
        let (client, node) = (client.clone(), node.to_string());
        let (s, n, c) = (stop.clone(), not_ready.clone(), samples.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let ready = node_ready(&client, &node).await;
                *c.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                if ready.as_ref().is_none_or(|(status, _)| status != "True") {
                    n.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                        "{:?} at {}",
                        ready,
                        Timestamp::now()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        ReadyWatch {
            stop,
            not_ready,
            samples,
        }
    }

    /// Stops sampling.
    ///
    /// # Panics
    ///
    /// When the node was ever seen not Ready, or hardly sampled.
    pub fn assert_always_ready(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let samples = *self.samples.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            samples > 20,
            "the node's Ready condition was sampled ({samples} times)"
        );
        let not_ready = self
            .not_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert!(
            not_ready.is_empty(),
            "the node was not Ready: {not_ready:?}"
        );
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One term of a Lease: who took it and when (`acquireTime`).
#[derive(Clone, Debug)]
pub struct Term {
    /// `holderIdentity`.
    pub holder: String,
    /// `acquireTime`.
    pub acquired: Timestamp,
}

/// Every (term, holder) of Lease `ns/lease` a watch sees, from now on.
pub type LeaseHistory = Arc<Mutex<Vec<(i32, Term)>>>;

/// Starts recording the history of Lease `ns/lease` (by `leaseTransitions`).
pub fn lease_history(client: &Client, ns: &str, lease: &str) -> LeaseHistory {
    let history: LeaseHistory = Arc::new(Mutex::new(Vec::new()));
    let api = Api::<Lease>::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={lease}"));
    let h = history.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, cfg));
        while let Some(ev) = events.next().await {
            let lease = match ev {
                Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => l,
                _ => continue,
            };
            let Some(spec) = lease.spec else { continue };
            let (Some(holder), Some(term), Some(at)) = (
                spec.holder_identity.filter(|h| !h.is_empty()),
                spec.lease_transitions,
                spec.acquire_time,
            ) else {
                continue;
            };
            h.lock().unwrap_or_else(|p| p.into_inner()).push((
                term,
                Term {
                    holder,
                    acquired: at.0,
                },
            ));
        }
    });
    history
}

/// The terms seen, by `leaseTransitions`.
///
/// # Panics
///
/// When one term had two holders.
pub fn terms(seen: &LeaseHistory) -> BTreeMap<i32, Term> {
    let mut terms: BTreeMap<i32, Term> = BTreeMap::new();
    for (term, t) in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let first = terms.entry(*term).or_insert_with(|| t.clone());
        assert_eq!(
            first.holder, t.holder,
            "term {term} of the lease was held by two replicas"
        );
    }
    terms
}

/// One write a replica's fence let through (a `vk_audit` record).
#[derive(Debug, Clone)]
pub struct Write {
    /// When the fence allowed it.
    pub at: Timestamp,
    /// The replica's identity.
    pub identity: String,
    /// The term it claimed.
    pub term: i32,
    /// `create`, `delete`, `patch_status`, `event`...
    pub op: String,
    /// The object (`namespace/name (uid)` for backend calls).
    pub object: String,
}

/// The `vk_audit` records of a replica's JSON log (`--log-format json`), every run of it.
pub fn audit(log: &Path) -> Vec<Write> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "vk_audit")
        .filter_map(|v| {
            Some(Write {
                at: v["timestamp"].as_str()?.parse().ok()?,
                identity: v["fields"]["identity"].as_str()?.to_string(),
                term: i32::try_from(v["fields"]["term"].as_i64()?).ok()?,
                op: v["fields"]["op"].as_str()?.to_string(),
                object: v["fields"]["object"].as_str()?.to_string(),
            })
        })
        .collect()
}

/// Every write of the replicas whose logs are `logs`, each checked against
/// the Lease's history: made by the holder of the term it names, before the
/// next term began.
///
/// # Panics
///
/// On the first write that breaks this.
pub fn check_writes(logs: &[&Path], history: &BTreeMap<i32, Term>) -> Vec<Write> {
    let writes: Vec<Write> = logs.iter().flat_map(|l| audit(l)).collect();
    for w in &writes {
        let term = history
            .get(&w.term)
            .unwrap_or_else(|| panic!("write {w:?} in a term the lease never had: {history:?}"));
        assert_eq!(
            term.holder, w.identity,
            "write {w:?} by a replica that did not hold term {}",
            w.term
        );
        if let Some((_, next)) = history.range(w.term + 1..).next() {
            assert!(
                w.at < next.acquired,
                "write {w:?} after the next term began at {}",
                next.acquired
            );
        }
    }
    writes
}

/// Backend creations per object in `writes`.
pub fn creations(writes: &[Write]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for w in writes.iter().filter(|w| w.op == "create") {
        *n.entry(w.object.clone()).or_insert(0) += 1;
    }
    n
}
