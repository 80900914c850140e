//! A hot standby per node (`--leader-elect`, issue 16 items 3 and 4): two
//! `vk-mock` replicas of one node sharing one backend (`--state-dir`), the
//! leader killed or stopped, against the real local control plane.
//!
//! What counts as a write is what the fence let through: every replica logs
//! each write it makes on the `vk_audit` target with its identity and term
//! (the Lease's `leaseTransitions` when it took it), and the tests hold those
//! records against the Lease's history as a watch saw it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use vk_test_support::leader::{
    self, ReadyWatch, Term, Write, audit, creations, is_process, lease_history, mock_state_pods,
    terms,
};

/// Flags of every replica: the election Lease in the test's namespace, JSON logs to parse.
fn replica_flags(ns: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-elect-namespace",
        ns,
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The test's own copy of `vk-mock` in `dir` (see [`MockNode::start_replica`]):
/// of `VK_MOCK_BIN` when set (a target directory shared with other
/// checkouts may hold another build of `vk-mock` by the time the test runs),
/// else of the one cargo built for this test binary.
fn own_binary(dir: &Path) -> std::path::PathBuf {
    let source = std::env::var_os("VK_MOCK_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vk-mock").into());
    vk_test_support::leader::own_copy(&source, dir)
}

/// The replicas of one node: their binary, backend and flags.
struct Replicas {
    dir: tempfile::TempDir,
    binary: std::path::PathBuf,
    node: String,
    flags: Vec<String>,
    /// In [`node_identity_mode`]: the bootstrap token every replica starts
    /// from (each then gets a certificate of its own, in a cert dir of its
    /// own, as each pod of the chart's Deployment does).
    bootstrap: Option<vk_test_support::BootstrapToken>,
    started: std::cell::Cell<usize>,
}

impl Replicas {
    async fn new(cluster: &TestCluster, node: &str, ns: &str) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let binary = own_binary(dir.path());
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let bootstrap = if node_identity_mode() {
            Some(
                vk_test_support::bootstrap_token(cluster, dir.path())
                    .await
                    .expect("bootstrap token"),
            )
        } else {
            None
        };
        Replicas {
            dir,
            binary,
            node: node.to_string(),
            flags: replica_flags(ns),
            bootstrap,
            started: std::cell::Cell::new(0),
        }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn start(&self, cluster: &TestCluster) -> MockNode {
        let mut flags: Vec<String> = self.flags.clone();
        if let Some(token) = &self.bootstrap {
            let n = self.started.get();
            self.started.set(n + 1);
            let cert_dir = self.dir.path().join(format!("pki-{n}"));
            flags.extend([
                "--bootstrap-kubeconfig".to_string(),
                token.kubeconfig.to_string_lossy().into_owned(),
                "--cert-dir".to_string(),
                cert_dir.to_string_lossy().into_owned(),
            ]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        MockNode::start_replica(cluster, &self.binary, &self.node, &self.state(), &flags)
    }
}

/// The holder of node `node`'s leader Lease, if any.
async fn holder(client: &Client, ns: &str, node: &str) -> Option<String> {
    leader::holder(client, ns, &format!("vk-rs-{node}")).await
}

/// Whether `identity` is the identity of the running process `replica`.
fn is(replica: &MockNode, identity: &str) -> bool {
    is_process(identity, replica.pid())
}

/// Every write of `replicas`, checked against the Lease's history.
fn check_writes(replicas: &[&MockNode], history: &BTreeMap<i32, Term>) -> Vec<Write> {
    let logs: Vec<&Path> = replicas.iter().map(|r| r.log.as_path()).collect();
    leader::check_writes(&logs, history)
}

async fn create_and_wait(client: &Client, ns: &str, node: &str, names: &[String]) {
    for name in names {
        create_pod(client, ns, pod(name, node)).await;
    }
    for name in names {
        wait_running(client, ns, name, RUNNING_WITHIN).await;
    }
}

#[tokio::test]
async fn sigkill_of_the_leader_hands_the_node_to_the_standby_without_recreating() {
    let (cluster, ns) = cluster_and_namespace("standby").await;
    let client = cluster.client();
    let node = unique_name("standby");
    let set = Replicas::new(&cluster, &node, ns.name()).await;
    let state = set.state();
    let history = lease_history(&client, ns.name(), &format!("vk-rs-{node}"));

    let mut a = set.start(&cluster);
    wait_node_ready(&client, &node, Duration::from_secs(20)).await;
    let first = wait_for("replica a to lead", Duration::from_secs(20), || async {
        Ok(holder(&client, ns.name(), &node).await)
    })
    .await
    .unwrap();
    assert!(is(&a, &first), "the only replica leads: {first}");
    let mut b = set.start(&cluster);
    wait_until("replica b standing by", Duration::from_secs(20), || async {
        std::fs::read_to_string(&b.log)
            .unwrap_or_default()
            .contains("standing by")
    })
    .await;

    let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    create_and_wait(&client, ns.name(), &node, &names).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the state file catches up
    let before = mock_state_pods(&state, &node);
    assert_eq!(before.len(), 100, "the backend holds the 100 pods");
    assert!(
        audit(&b.log).is_empty(),
        "the standby wrote nothing: {:?}",
        audit(&b.log)
    );

    // SIGKILL of the leader: the standby takes the lease and acts.
    let ready = ReadyWatch::start(&client, &node);
    let killed = Instant::now();
    let killed_at = Timestamp::now();
    a.kill();
    let took = wait_for("replica b to lead", Duration::from_secs(30), || async {
        Ok(holder(&client, ns.name(), &node)
            .await
            .filter(|h| is(&b, h)))
    })
    .await
    .unwrap();
    create_pod(&client, ns.name(), pod("after", &node)).await;
    wait_running(&client, ns.name(), "after", Duration::from_secs(30)).await;
    let running = killed.elapsed();
    // From the Lease's acquireTime and the standby's first write (same host, same clock).
    let acquired = terms(&history)[&1].acquired;
    let first_write = audit(&b.log)
        .iter()
        .map(|w| w.at)
        .min()
        .expect("the new leader wrote");
    let since_kill = |t: Timestamp| Duration::try_from(t.duration_since(killed_at)).unwrap();
    let (took_lease, acting) = (since_kill(acquired), since_kill(first_write));
    eprintln!(
        "takeover after SIGKILL: lease taken {took_lease:?} after the kill, first write {acting:?}, a new pod Running {running:?}"
    );
    // The lease duration after the last renewal the standby saw (before
    // the kill), plus the watch's and the apiserver's latency.
    assert!(
        took_lease <= Duration::from_millis(15_250),
        "the standby took the lease within the lease duration: {took_lease:?}"
    );
    assert!(
        acting <= Duration::from_millis(15_500),
        "the standby acting within the lease duration: {acting:?}"
    );
    assert!(
        running <= Duration::from_secs(17),
        "a new pod Running within 17 s of the kill: {running:?}"
    );

    // No backend pod recreated: same UIDs, IPs and start times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = mock_state_pods(&state, &node);
    for (name, was) in &before {
        assert_eq!(after.get(name), Some(was), "pod {name} kept its workload");
    }
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains("adopted the backend's pods") && log.contains("\"pods\":100"),
        "{}",
        b.log_tail()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let listed = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 101);
    assert!(listed.iter().all(|p| phase(p) == "Running"));

    // SIGTERM of the new leader with a standby ready: it releases the
    // lease, the standby takes it at once, nothing is deleted.
    a.restart();
    wait_until("replica a standing by", Duration::from_secs(20), || async {
        std::fs::read_to_string(&a.log)
            .unwrap_or_default()
            .matches("standing by")
            .count()
            >= 2
    })
    .await;
    let stopping = Instant::now();
    let status = b
        .terminate(Duration::from_secs(20))
        .expect("the leader exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let stopped = stopping.elapsed();
    wait_for(
        "replica a to lead again",
        Duration::from_secs(30),
        || async {
            Ok(holder(&client, ns.name(), &node)
                .await
                .filter(|h| is(&a, h)))
        },
    )
    .await
    .unwrap();
    let handed = stopping.elapsed();
    eprintln!("SIGTERM: leader exited after {stopped:?}, the standby leads after {handed:?}");
    assert!(
        handed < Duration::from_secs(5),
        "a released lease is taken at once: {handed:?}"
    );
    create_pod(&client, ns.name(), pod("after-term", &node)).await;
    wait_running(&client, ns.name(), "after-term", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ready.assert_always_ready();
    let after = mock_state_pods(&state, &node);
    assert_eq!(after.len(), 102, "nothing deleted in the backend");
    for (name, was) in &before {
        assert_eq!(after.get(name), Some(was), "pod {name} kept its workload");
    }

    let history = terms(&history);
    assert!(history.len() >= 3, "three terms: {history:?}");
    assert_eq!(
        history[&1].holder, took,
        "the standby's term follows the first"
    );
    let writes = check_writes(&[&a, &b], &history);
    let created = creations(&writes);
    assert_eq!(created.len(), 102, "each pod created once: {created:?}");
    assert!(created.values().all(|&n| n == 1), "{created:?}");
    delete_node(&client, &node).await;
}

#[tokio::test]
async fn leaders_killed_in_a_row_never_duplicate_a_workload_nor_write_out_of_turn() {
    // Six in CI (about 100 s); `VK_STANDBY_KILLS=20` for the twenty.
    let kills: usize = std::env::var("VK_STANDBY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let (cluster, ns) = cluster_and_namespace("standby-loop").await;
    let client = cluster.client();
    let node = unique_name("standby-loop");
    let set = Replicas::new(&cluster, &node, ns.name()).await;
    let state = set.state();
    let history = lease_history(&client, ns.name(), &format!("vk-rs-{node}"));

    let mut replicas = [set.start(&cluster), set.start(&cluster)];
    wait_node_ready(&client, &node, Duration::from_secs(30)).await;
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    create_and_wait(&client, ns.name(), &node, &names).await;
    let ready = ReadyWatch::start(&client, &node);
    let mut takeovers = Vec::new();
    let mut runs = [1, 1];

    for round in 0..kills {
        let leader = wait_for("a leader", Duration::from_secs(30), || async {
            Ok(holder(&client, ns.name(), &node).await)
        })
        .await
        .unwrap();
        let i = replicas
            .iter()
            .position(|r| is(r, &leader))
            .unwrap_or_else(|| panic!("the leader {leader} is one of the replicas"));
        // Pods still being created when the leader dies: the new leader
        // finishes them, creating each once.
        let new: Vec<String> = (0..3).map(|k| format!("r{round}-{k}")).collect();
        for name in &new {
            create_pod(&client, ns.name(), pod(name, &node)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let killed = Instant::now();
        replicas[i].kill();
        let other = &replicas[1 - i];
        wait_for("the standby to lead", Duration::from_secs(30), || async {
            Ok(holder(&client, ns.name(), &node)
                .await
                .filter(|h| is(other, h)))
        })
        .await
        .unwrap();
        takeovers.push(killed.elapsed());
        for name in &new {
            wait_running(&client, ns.name(), name, Duration::from_secs(30)).await;
        }
        replicas[i].restart();
        runs[i] += 1;
        let (log, runs) = (replicas[i].log.clone(), runs[i]);
        wait_until(
            "the restarted replica standing by",
            Duration::from_secs(30),
            || {
                let log = log.clone();
                async move {
                    std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .matches("standing by")
                        .count()
                        >= runs
                }
            },
        )
        .await;
    }
    eprintln!("takeovers after SIGKILL: {takeovers:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ready.assert_always_ready();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let listed = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 20 + 3 * kills);
    assert!(listed.iter().all(|p| phase(p) == "Running"));
    // The backend holds exactly the API's pods, each by its own UID.
    let held = mock_state_pods(&state, &node);
    assert_eq!(held.len(), listed.len());
    for p in &listed {
        assert_eq!(
            held.get(&p.name_any()).map(|(uid, _, _)| uid.as_str()),
            p.uid().as_deref(),
            "pod {} in the backend",
            p.name_any()
        );
    }
    let history = terms(&history);
    assert!(
        history.len() > kills,
        "a term per kill and the first: {history:?}"
    );
    let writes = check_writes(&[&replicas[0], &replicas[1]], &history);
    let writers: std::collections::HashSet<&str> =
        writes.iter().map(|w| w.identity.as_str()).collect();
    assert!(writers.len() > kills, "every leader wrote: {writers:?}");
    let created = creations(&writes);
    assert_eq!(created.len(), listed.len(), "{created:?}");
    assert!(
        created.values().all(|&n| n == 1),
        "no workload created twice: {created:?}"
    );
    delete_node(&client, &node).await;
}

/// Sends `signal` (`-STOP`, `-CONT`) to `replica` with kill(1).
fn signal(replica: &MockNode, signal: &str) {
    let pid = replica.pid().expect("the replica runs").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_paused_leader_writes_nothing_when_it_resumes_and_exits() {
    let (cluster, ns) = cluster_and_namespace("standby-pause").await;
    let client = cluster.client();
    let node = unique_name("standby-pause");
    let set = Replicas::new(&cluster, &node, ns.name()).await;
    let history = lease_history(&client, ns.name(), &format!("vk-rs-{node}"));
    let mut a = set.start(&cluster);
    wait_node_ready(&client, &node, Duration::from_secs(20)).await;
    wait_until("replica a leads", Duration::from_secs(20), || async {
        holder(&client, ns.name(), &node)
            .await
            .is_some_and(|h| is(&a, &h))
    })
    .await;
    let mut b = set.start(&cluster);
    let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    create_and_wait(&client, ns.name(), &node, &names).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the state file catches up
    let ready = ReadyWatch::start(&client, &node);

    // The leader stops (a long GC pause, a frozen VM, a partition): the
    // standby takes over while it cannot know.
    signal(&a, "-STOP");
    wait_for("replica b to lead", Duration::from_secs(30), || async {
        Ok(holder(&client, ns.name(), &node)
            .await
            .filter(|h| is(&b, h)))
    })
    .await
    .unwrap();
    let new: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
    create_and_wait(&client, ns.name(), &node, &new).await;

    // It resumes: its timers fire, its renewal is stale, its fence refuses
    // every write; it finds the other holder and exits with code 1.
    signal(&a, "-CONT");
    let exited = wait_for("the old leader to exit", Duration::from_secs(30), || {
        let status = a.try_wait();
        async move { Ok(status) }
    })
    .await
    .unwrap();
    assert_eq!(exited.code(), Some(1), "exit status {exited:?}");
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(
        log.contains("lost a node's leader lease"),
        "{}",
        a.log_tail()
    );

    // Meanwhile the new leader kept acting.
    create_and_wait(&client, ns.name(), &node, &["after".to_string()]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ready.assert_always_ready();
    let history = terms(&history);
    let writes = check_writes(&[&a, &b], &history);
    let created = creations(&writes);
    assert_eq!(created.len(), 14, "{created:?}");
    assert!(created.values().all(|&n| n == 1), "{created:?}");
    assert!(
        writes.iter().any(|w| is(&b, &w.identity)),
        "the new leader wrote"
    );
    // The backend holds exactly the API's pods: the resumed replica did not
    // write its older view over the new leader's.
    let listed = Api::<Pod>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let held = mock_state_pods(&set.state(), &node);
    assert_eq!(held.len(), listed.len(), "{held:?}");
    for p in &listed {
        assert_eq!(
            held.get(&p.name_any()).map(|(uid, _, _)| uid.as_str()),
            p.uid().as_deref(),
            "pod {} in the backend",
            p.name_any()
        );
    }
    let _ = b.terminate(Duration::from_secs(15));
    delete_node(&client, &node).await;
}
