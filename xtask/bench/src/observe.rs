//! The benchmark's own view of the pods, from one watch: when each pod was
//! first seen, when it was first seen Running, and which pods still exist.
//! Creation times ("create accepted") are recorded by the code that creates
//! the pods, through [`Observer::accepted`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

#[derive(Debug, Default, Clone, Copy)]
struct Times {
    accepted: Option<Instant>,
    seen: Option<Instant>,
    running: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    times: HashMap<String, Times>,
    present: HashSet<String>,
    running: usize,
    last_running: Option<Instant>,
    synced: bool,
    // Names listed since the last `Init`: a relist replaces `present`.
    relist: Option<HashSet<String>>,
}

/// Counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Pods ever seen Running.
    pub running: usize,
    /// Pods that exist now.
    pub present: usize,
}

/// A watch on the benchmark's pods.
pub struct Observer {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Starts watching pods labelled `selector` in `namespace` and waits until
    /// the initial list is in.
    pub async fn start(client: Client, namespace: &str, selector: &str) -> Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let cfg = watcher::Config::default().labels(selector);
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
                while let Some(event) = stream.next().await {
                    let now = Instant::now();
                    match event {
                        Ok(watcher::Event::Init) => lock(&state).relist = Some(HashSet::new()),
                        Ok(watcher::Event::InitApply(p)) => {
                            let mut s = lock(&state);
                            if let Some(r) = s.relist.as_mut() {
                                r.insert(p.name_any());
                            }
                            apply(&mut s, &p, now);
                        }
                        Ok(watcher::Event::InitDone) => {
                            let mut s = lock(&state);
                            if let Some(listed) = s.relist.take() {
                                s.present = listed;
                            }
                            s.synced = true;
                        }
                        Ok(watcher::Event::Apply(p)) => apply(&mut lock(&state), &p, now),
                        Ok(watcher::Event::Delete(p)) => {
                            lock(&state).present.remove(&p.name_any());
                        }
                        Err(e) => eprintln!("bench: pod watch: {e}"),
                    }
                }
            })
        };
        let observer = Observer { state, task };
        let started = Instant::now();
        while !lock(&observer.state).synced {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the benchmark's pod watch did not sync within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(observer)
    }

    /// Records that the create of `name` was accepted now.
    pub fn accepted(&self, name: &str) {
        let now = Instant::now();
        let mut s = lock(&self.state);
        let t = s.times.entry(name.to_string()).or_default();
        t.accepted.get_or_insert(now);
    }

    /// Current counts.
    pub fn counts(&self) -> Counts {
        let s = lock(&self.state);
        Counts {
            running: s.running,
            present: s.present.len(),
        }
    }

    /// When the last pod was first seen Running.
    pub fn last_running(&self) -> Option<Instant> {
        lock(&self.state).last_running
    }

    /// Per pod, milliseconds from create accepted (or, for pods the benchmark
    /// did not create itself, first seen) to first seen Running.
    pub fn latencies_ms(&self) -> Vec<f64> {
        let s = lock(&self.state);
        s.times
            .values()
            .filter_map(|t| {
                let from = t.accepted.or(t.seen)?;
                let to = t.running?;
                Some(to.saturating_duration_since(from).as_secs_f64() * 1000.0)
            })
            .collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn apply(s: &mut State, pod: &Pod, now: Instant) {
    let name = pod.name_any();
    s.present.insert(name.clone());
    let running = pod.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Running");
    let t = s.times.entry(name).or_default();
    t.seen.get_or_insert(now);
    if running && t.running.is_none() {
        t.running = Some(now);
        s.running += 1;
        s.last_running = Some(now);
    }
}
