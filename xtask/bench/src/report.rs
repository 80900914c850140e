//! The figures of one run, as the JSON object `cargo xtask bench` prints and
//! writes to `target/bench/<name>.json`, the comparison with a floor run, and
//! the targets checked against them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Summary, round3};

/// One run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `--name`.
    pub name: String,
    /// `vk-mock`, `floor`, or `custom` (`--kubelet-cmd`).
    pub kubelet: String,
    /// The kubelet's command line, as started.
    pub command: Vec<String>,
    /// `direct` or `deployment`.
    pub mode: String,
    /// Pods.
    pub pods: usize,
    /// Nodes served by the one kubelet process.
    pub nodes: usize,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The machine and how busy it was.
    pub machine: Machine,
    /// First create sent → last pod seen Running, seconds.
    pub time_to_running_s: f64,
    /// First delete sent → last pod object gone, seconds.
    pub time_to_deleted_s: f64,
    /// Per pod: create accepted (`direct`) or first seen (`deployment`) → first
    /// seen Running on the benchmark's watch.
    pub create_to_running: Option<Summary>,
    /// The kubelet process tree, from `/proc`.
    pub kubelet_process: ProcessFigures,
    /// The kubelet's API requests, from the apiserver's audit log.
    pub api: ApiFigures,
    /// All pods Running, nothing changing.
    pub steady: Steady,
    /// The floor run of the same invocation, and the ratios to it.
    #[serde(default)]
    pub floor: Option<FloorComparison>,
    /// The targets, checked.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// `--api-faults`: the faults and what the proxy did (requests it
    /// received, answered 429 or 5xx itself, reset, answered 410, cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_faults: Option<serde_json::Value>,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `/proc/loadavg` 1-minute value when the run started and when it ended:
    /// the machine is shared, and this says how much.
    pub load_1m_start: f64,
    /// See `load_1m_start`.
    pub load_1m_end: f64,
}

impl Machine {
    /// Reads `/proc`; `load_1m_end` is filled in later.
    pub fn read() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| crate::procfs::parse_status_kib(&m, "MemTotal"))
            .unwrap_or(0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: round3(memory_kib as f64 / 1024.0 / 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_1m_start: load_1m(),
            load_1m_end: 0.0,
        }
    }
}

/// The 1-minute load average.
pub fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPU and memory of the kubelet process tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessFigures {
    /// CPU seconds from start to stop.
    pub cpu_seconds_total: f64,
    /// CPU seconds spent on start-up (until the nodes were Ready and settled).
    pub cpu_seconds_startup: f64,
    /// CPU seconds of the create and delete phases, per pod, in milliseconds.
    pub cpu_ms_per_pod_lifecycle: f64,
    /// Peak RSS over the run (VmHWM and 1 s samples), MiB.
    pub peak_rss_mib: f64,
    /// RSS when every node was Ready, before any pod, MiB.
    pub startup_rss_mib: f64,
    /// RSS at the end of the steady-state window, MiB.
    pub steady_rss_mib: f64,
    /// Of the steady RSS, anonymous memory (heap and stacks), MiB.
    #[serde(default)]
    pub steady_rss_anon_mib: f64,
    /// Of the steady RSS, mapped file pages (the binary's code), MiB.
    #[serde(default)]
    pub steady_rss_file_mib: f64,
}

/// API requests of the kubelet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiFigures {
    /// `"<verb> <resource>"` → requests per pod lifecycle (create and delete phases).
    pub per_pod_lifecycle: BTreeMap<String, f64>,
    /// Create/update/patch/delete requests per pod lifecycle.
    pub writes_per_pod_lifecycle: f64,
    /// The same without the node's upkeep (Lease renewals, node status)
    /// that fell in the create and delete phases: the pods' own writes.
    #[serde(default)]
    pub pod_writes_per_pod_lifecycle: f64,
    /// All requests per pod lifecycle.
    pub requests_per_pod_lifecycle: f64,
    /// Requests during start-up (registration, first lists and watches).
    pub startup: BTreeMap<String, u64>,
}

/// The steady-state window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Steady {
    /// Length of the window, seconds.
    pub seconds: f64,
    /// Kubelet CPU in the window, percent of one core.
    pub kubelet_cpu_percent_of_a_core: f64,
    /// Kubelet API requests per second.
    pub api_requests_per_s: f64,
    /// Kubelet API writes per second.
    pub api_writes_per_s: f64,
    /// `"<verb> <resource>"` → requests in the window.
    pub requests: BTreeMap<String, u64>,
    /// How long the kubelet took to go quiet after the settle pause that
    /// follows all pods Running (the window opens only then), seconds.
    #[serde(default)]
    pub quiet_after_running_s: f64,
    /// The same after all pods are gone (the lifecycle's count ends then).
    #[serde(default)]
    pub quiet_after_deleted_s: f64,
    /// False when the kubelet did not go quiet within `--quiet-max-secs` and
    /// the window was opened anyway.
    #[serde(default = "yes")]
    pub quiet: bool,
}

fn yes() -> bool {
    true
}

/// This run next to the floor run of the same invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorComparison {
    /// The floor run's name (its JSON is `target/bench/<name>.json`).
    pub name: String,
    /// The floor's time to all Running, seconds.
    pub time_to_running_s: f64,
    /// The floor's deletion time, seconds.
    pub time_to_deleted_s: f64,
    /// The floor's create→Running latency.
    pub create_to_running: Option<Summary>,
    /// The floor's API requests per pod lifecycle.
    pub requests_per_pod_lifecycle: f64,
    /// time_to_running_s / floor's.
    pub ratio_time_to_running: f64,
    /// time_to_deleted_s / floor's.
    pub ratio_time_to_deleted: f64,
    /// p50 / floor's p50.
    pub ratio_p50: Option<f64>,
    /// p99 / floor's p99.
    pub ratio_p99: Option<f64>,
    /// p99 minus the floor's p99, milliseconds.
    pub p99_above_floor_ms: Option<f64>,
}

impl FloorComparison {
    /// Compares `run` with `floor`.
    pub fn new(run: &Report, floor: &Report) -> Self {
        let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { f64::NAN };
        let (p50, p99, p99_delta) = match (&run.create_to_running, &floor.create_to_running) {
            (Some(r), Some(f)) => (
                Some(ratio(r.p50_ms, f.p50_ms)),
                Some(ratio(r.p99_ms, f.p99_ms)),
                Some(round3(r.p99_ms - f.p99_ms)),
            ),
            _ => (None, None, None),
        };
        FloorComparison {
            name: floor.name.clone(),
            time_to_running_s: floor.time_to_running_s,
            time_to_deleted_s: floor.time_to_deleted_s,
            create_to_running: floor.create_to_running,
            requests_per_pod_lifecycle: floor.api.requests_per_pod_lifecycle,
            ratio_time_to_running: ratio(run.time_to_running_s, floor.time_to_running_s),
            ratio_time_to_deleted: ratio(run.time_to_deleted_s, floor.time_to_deleted_s),
            ratio_p50: p50,
            ratio_p99: p99,
            p99_above_floor_ms: p99_delta,
        }
    }
}

/// One target of the issue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// What is measured.
    pub what: String,
    /// The limit, in words.
    pub limit: String,
    /// The measured value.
    pub value: f64,
    /// Whether the value is within the limit.
    pub met: bool,
}

fn target(what: &str, limit: &str, value: f64, max: f64) -> Target {
    Target {
        what: what.into(),
        limit: limit.into(),
        value: round3(value),
        met: value <= max,
    }
}

/// The targets that apply to `r` (with its floor comparison, if any).
pub fn check_targets(r: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(f) = &r.floor {
        if r.nodes == 1 && r.mode == "direct" {
            out.push(target(
                "time to all Running / floor",
                "<= 1.2",
                f.ratio_time_to_running,
                1.2,
            ));
        }
        if let Some(delta) = f.p99_above_floor_ms {
            out.push(target(
                "create->Running p99 above the floor's, ms",
                "<= 1000",
                delta,
                1000.0,
            ));
        }
    }
    if r.nodes == 1 {
        let (limit, max) = if r.pods <= 1000 {
            ("<= 40 MiB at 1,000 pods", 40.0)
        } else {
            ("<= 150 MiB at 10,000 pods", 150.0)
        };
        out.push(target(
            "kubelet peak RSS, MiB",
            limit,
            r.kubelet_process.peak_rss_mib,
            max,
        ));
    }
    out.push(target(
        "kubelet CPU per pod lifecycle, ms",
        "<= 1",
        r.kubelet_process.cpu_ms_per_pod_lifecycle,
        1.0,
    ));
    out.push(target(
        "kubelet API writes per pod lifecycle (pods, their status and events)",
        "<= 3",
        r.api.pod_writes_per_pod_lifecycle,
        3.0,
    ));
    // Lease renewals only: one write per node per 10 s.
    let non_lease_writes: u64 = r
        .steady
        .requests
        .iter()
        .filter(|(k, _)| {
            let verb = k.split(' ').next().unwrap_or("");
            matches!(verb, "create" | "update" | "patch" | "delete")
                && k.as_str() != "update leases"
        })
        .map(|(_, v)| v)
        .sum();
    let lease_rate = r.nodes as f64 / 10.0;
    out.push(target(
        "steady-state API writes per second (lease renewals alone: nodes/10)",
        &format!("<= {}", round3(lease_rate * 1.05)),
        r.steady.api_writes_per_s,
        lease_rate * 1.05,
    ));
    out.push(target(
        "steady-state writes other than lease renewals",
        "0",
        non_lease_writes as f64,
        0.0,
    ));
    if r.nodes == 1 && r.pods >= 10_000 {
        out.push(target(
            "steady-state kubelet CPU, % of a core, 10,000 idle pods",
            "< 1",
            r.steady.kubelet_cpu_percent_of_a_core,
            1.0,
        ));
    }
    if r.nodes >= 100 {
        out.push(target(
            "steady-state kubelet CPU, % of a core, 100 idle nodes",
            "< 2",
            r.steady.kubelet_cpu_percent_of_a_core,
            2.0,
        ));
    }
    out
}
