//! The worked example of `docs/writing-a-provider.md`: a whole provider in
//! one file. Its "backend" is a table of timers: each container runs for the
//! seconds in the pod's `example.vk-rs.io/run-seconds` annotation (for ever
//! when absent), writing one log line a second, then exits 0.
//!
//! What it shows: the required methods of [`Provider`], pushing status
//! through a [`StatusNotifier`], the toolkit's container status builders,
//! its log selection over a line source (`kubectl logs --tail/--since/-f`),
//! and the node config file. Run it like any provider binary:
//!
//! ```text
//! cargo run -p vk-core --example timer_provider -- --kubeconfig ~/.kube/config --nodename timers
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vk_core::cli::KubeletArgs;
use vk_core::provider::{ByteStream, LogOptions};
use vk_core::runtime::binary;
use vk_core::toolkit::container_status::{Termination, container_status, running, terminated};
use vk_core::toolkit::log_lines::{LinePage, LineSource, LogLine, log_stream};
use vk_core::toolkit::node_capacity::{CapacityDefaults, node_capacity};
use vk_core::toolkit::node_config::NodeResources;
use vk_core::{
    BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod,
    StatusNotifier,
};

/// The annotation that sets how long the containers run.
const RUN_SECONDS: &str = "example.vk-rs.io/run-seconds";

/// One pod in the backend: when it started and for how long it runs.
struct Timer {
    pod: ResolvedPod,
    started: Timestamp,
    run_for: Option<Duration>,
}

impl Timer {
    /// The seconds the containers have run so far.
    fn elapsed(&self, now: Timestamp) -> u64 {
        let ran = (now - self.started).get_seconds().max(0) as u64;
        self.run_for.map_or(ran, |d| ran.min(d.as_secs()))
    }

    fn done(&self, now: Timestamp) -> bool {
        self.run_for
            .is_some_and(|d| self.elapsed(now) >= d.as_secs())
    }

    /// The pod's status now, the way the kubelet would report it.
    fn status(&self, now: Timestamp) -> PodStatus {
        let started = Time(self.started);
        let containers: Vec<ContainerStatus> = self
            .pod
            .pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| {
                let image = c.image.as_deref().unwrap_or_default();
                let state = if self.done(now) {
                    terminated(Termination {
                        exit_code: 0,
                        started_at: Some(started.clone()),
                        finished_at: Some(Time(now)),
                        ..Default::default()
                    })
                } else {
                    running(Some(started.clone()))
                };
                ContainerStatus {
                    ready: !self.done(now),
                    ..container_status(&c.name, image, state)
                }
            })
            .collect();
        let phase = if self.done(now) {
            "Succeeded"
        } else {
            "Running"
        };
        PodStatus {
            phase: Some(phase.into()),
            pod_ip: Some("192.0.2.10".into()),
            start_time: Some(started),
            container_statuses: Some(containers),
            ..Default::default()
        }
    }
}

/// The provider of one node.
struct TimerProvider {
    capacity: NodeCapacity,
    timers: Arc<Mutex<HashMap<PodKey, Timer>>>,
    notifier: Arc<OnceLock<StatusNotifier>>,
}

impl TimerProvider {
    fn new(resources: &NodeResources) -> TimerProvider {
        let defaults = CapacityDefaults {
            cpu: Some("8".into()),
            memory: Some("32Gi".into()),
            ..Default::default()
        };
        TimerProvider {
            capacity: node_capacity(resources, defaults),
            timers: Arc::default(),
            notifier: Arc::default(),
        }
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Timer>> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(key: &PodKey) -> ProviderError {
        ProviderError::NotFound(key.to_string())
    }
}

#[async_trait]
impl Provider for TimerProvider {
    fn name(&self) -> &str {
        "timer"
    }

    async fn node_capacity(&self) -> NodeCapacity {
        self.capacity.clone()
    }

    async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        let key = pod
            .key()
            .ok_or_else(|| ProviderError::InvalidInput("pod without a UID".into()))?;
        let run_for = match pod
            .pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUN_SECONDS))
        {
            None => None,
            Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
                ProviderError::InvalidInput(format!("{RUN_SECONDS}: {s:?} is not a whole number"))
            })?)),
        };
        let timer = Timer {
            pod: pod.clone(),
            started: Timestamp::now(),
            run_for,
        };
        // Idempotent: a retried create keeps the timer that is running.
        self.timers().entry(key.clone()).or_insert(timer);
        if let Some(run_for) = run_for {
            // The backend "pushes" the end of the run.
            let (timers, notifier) = (self.timers.clone(), self.notifier.clone());
            tokio::spawn(async move {
                tokio::time::sleep(run_for).await;
                let status = {
                    let timers = timers.lock().unwrap_or_else(|p| p.into_inner());
                    timers.get(&key).map(|t| t.status(Timestamp::now()))
                };
                if let (Some(status), Some(n)) = (status, notifier.get()) {
                    n.pod_status(key, status);
                }
            });
        }
        Ok(())
    }

    async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
        let key = pod
            .key()
            .ok_or_else(|| ProviderError::InvalidInput("no UID".into()))?;
        let mut timers = self.timers();
        let timer = timers.get_mut(&key).ok_or_else(|| Self::not_found(&key))?;
        timer.pod = pod.clone();
        Ok(())
    }

    async fn delete_pod(&self, key: &PodKey, _grace: Duration) -> ProviderResult<()> {
        self.timers()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| Self::not_found(key))
    }

    async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
        let timers = self.timers();
        let timer = timers.get(key).ok_or_else(|| Self::not_found(key))?;
        Ok(Arc::new(timer.status(Timestamp::now())))
    }

    async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
        let now = Timestamp::now();
        Ok(self
            .timers()
            .iter()
            .map(|(key, t)| BackendPod {
                key: key.clone(),
                pod: t.pod.pod.clone(),
                status: t.status(now),
            })
            .collect())
    }

    fn notify_status(&self, notifier: StatusNotifier) -> bool {
        let _ = self.notifier.set(notifier);
        true
    }

    async fn container_logs(
        &self,
        key: &PodKey,
        container: &str,
        opts: &LogOptions,
    ) -> ProviderResult<ByteStream> {
        let source = {
            let timers = self.timers();
            let timer = timers.get(key).ok_or_else(|| Self::not_found(key))?;
            TickLog {
                container: container.to_string(),
                started: timer.started,
                run_for: timer.run_for,
                timers: self.timers.clone(),
                key: key.clone(),
            }
        };
        Ok(log_stream(source, opts, Duration::from_millis(500)))
    }
}

/// A container's log: line `n` is written `n` seconds after the start.
struct TickLog {
    container: String,
    started: Timestamp,
    run_for: Option<Duration>,
    timers: Arc<Mutex<HashMap<PodKey, Timer>>>,
    key: PodKey,
}

impl LineSource for TickLog {
    /// The number of lines already read.
    type Cursor = u64;

    async fn lines_since(&mut self, cursor: Option<u64>) -> std::io::Result<LinePage<u64>> {
        let from = cursor.unwrap_or(0);
        let now = Timestamp::now();
        let written = {
            let timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
            timers.get(&self.key).map(|t| t.elapsed(now))
        };
        let (written, gone) = (written.unwrap_or(from), written.is_none());
        let lines = (from..written)
            .map(|n| {
                let at = self.started + Duration::from_secs(n);
                LogLine::new(at, format!("{}: tick {n}", self.container))
            })
            .collect();
        let ended = gone || self.run_for.is_some_and(|d| written >= d.as_secs());
        Ok(LinePage {
            lines,
            next: written,
            ended,
        })
    }
}

/// The binary's flags: the core's, and none of its own.
#[derive(clap::Parser)]
#[command(
    name = "timer-provider",
    about = "A virtual kubelet whose pods are timers"
)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,
}

fn main() -> ExitCode {
    let (cli, config) = match binary::start::<Cli, _>("timer-provider", |c| &c.kubelet) {
        Ok(started) => started,
        Err(code) => return code,
    };
    binary::run("timer-provider", cli.kubelet, "timer", |node| {
        Ok(Arc::new(TimerProvider::new(&config.node(node))) as Arc<dyn Provider>)
    })
}
