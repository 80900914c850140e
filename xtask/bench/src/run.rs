//! `vk-bench run`: one benchmark run against a running cluster.
//!
//! Phases: the kubelet's identity and the namespace; the kubelet started and
//! its nodes Ready; create (pods or a Deployment) until every pod is seen
//! Running; a pause, then the steady-state window; delete until every pod
//! object is gone; the kubelet stopped; the audit log read. CPU and memory
//! are read from `/proc` at each phase boundary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;

use crate::audit::{self, Follower, Window};
use crate::kubelet::Kubelet;
use crate::observe::Observer;
use crate::report::{
    ApiFigures, FloorComparison, Machine, ProcessFigures, Report, Steady, check_targets, load_1m,
};
use crate::stats::{round3, summarize};
use crate::workload::{self, Mode};
use crate::{cmdline, floor, identity};

const NODES_READY_TIMEOUT: Duration = Duration::from_secs(180);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Which kubelet to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeletKind {
    /// This workspace's mock provider (`vk-mock`).
    Mock,
    /// The floor: `vk-bench floor`.
    Floor,
}

/// Flags of `vk-bench run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Cluster directory of a running `vkcp` started with the benchmark's audit policy.
    #[arg(long)]
    pub cluster_dir: PathBuf,
    /// Where the JSON goes.
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the run (reports and log files).
    #[arg(long)]
    pub name: String,
    /// Pods.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Nodes, all served by the one kubelet process (`--nodes` of the kubelet).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// How pods are created.
    #[arg(long, value_enum, default_value_t = Mode::Direct)]
    pub mode: Mode,
    /// The kubelet: vk-mock or the floor.
    #[arg(long, value_enum, default_value_t = KubeletKind::Mock, conflicts_with = "kubelet_cmd")]
    pub kubelet: KubeletKind,
    /// Any virtual-kubelet-compatible command line instead. It gets `--nodename`,
    /// `--kubeconfig` (also KUBECONFIG), `--nodes M` when M > 1, KUBELET_PORT, and
    /// `--kube-api-qps/--kube-api-burst` when --qps/--burst are given; `{node}`,
    /// `{kubeconfig}`, `{kubelet_port}` and `{metrics_port}` in it are filled in.
    #[arg(long, allow_hyphen_values = true)]
    pub kubelet_cmd: Option<String>,
    /// Extra arguments for the kubelet, e.g. `--kubelet-args '--no-success-events'`
    /// (split like a shell would; added after the ones the harness gives).
    #[arg(long, allow_hyphen_values = true)]
    pub kubelet_args: Option<String>,
    /// The vk-mock binary (default: `vk-mock` next to this program).
    #[arg(long)]
    pub mock_bin: Option<PathBuf>,
    /// Client QPS passed to the kubelet (`--kube-api-qps`).
    #[arg(long)]
    pub qps: Option<f64>,
    /// Client burst passed to the kubelet (`--kube-api-burst`).
    #[arg(long)]
    pub burst: Option<u32>,
    /// Length of the steady-state window, seconds.
    #[arg(long, default_value_t = 60)]
    pub steady_secs: u64,
    /// Pause after start-up and after all pods are Running, seconds.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
    /// Longest wait for the kubelet to go quiet before the steady window and
    /// after the deletions, seconds.
    #[arg(long, default_value_t = 300)]
    pub quiet_max_secs: u64,
    /// Creates and deletes the benchmark sends at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Limit for each of the create and delete phases, seconds (default 300 + 0.1 per pod).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// JSON of a floor run to compare with.
    #[arg(long)]
    pub floor_result: Option<PathBuf>,
    /// The kubelet reaches the apiserver only through the test support's
    /// fault proxy, with these faults (`vk_test_support::Faults`, e.g.
    /// `errors=0.1,watch-cut=20s`); its counts go into the result.
    #[arg(long)]
    pub api_faults: Option<String>,
    /// The kubelet's user name (the audit policy must log it).
    #[arg(long, default_value = crate::KUBELET_USER)]
    pub kubelet_user: String,
}

/// Runs the benchmark and returns its report (also written to `--out`).
pub async fn run(args: RunArgs) -> Result<Report> {
    let started_at = Timestamp::now();
    let mut machine = Machine::read();
    let admin_kubeconfig = args.cluster_dir.join("kubeconfig");
    let admin = crate::client_from(&admin_kubeconfig).await?;
    let out_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let log_dir = out_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

    eprintln!(
        "bench: issuing the kubelet's identity ({})",
        args.kubelet_user
    );
    let kubeconfig = identity::kubelet_kubeconfig(
        &admin,
        &admin_kubeconfig,
        &args.kubelet_user,
        &args.cluster_dir.join("kubelet.kubeconfig"),
    )
    .await?;
    // The proxy forwards with the kubelet's own credentials: the audit log
    // still tells its requests.
    let faults: Option<vk_test_support::Faults> = args
        .api_faults
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--api-faults")?;
    let proxy = match &faults {
        Some(faults) => {
            let proxy = vk_test_support::FaultProxy::start(&kubeconfig).await?;
            proxy.set(faults.clone());
            eprintln!("bench: the kubelet's API requests go through a fault proxy ({faults})");
            Some(proxy)
        }
        None => None,
    };
    let kubeconfig = match &proxy {
        Some(proxy) => {
            let through = args.cluster_dir.join("kubelet-through-faults.kubeconfig");
            proxy.write_kubeconfig(&through)?;
            through
        }
        None => kubeconfig,
    };
    workload::prepare_namespace(&admin).await?;
    let selector = format!("{}={}", workload::LABEL.0, workload::LABEL.1);
    let observer = Observer::start(admin.clone(), workload::NAMESPACE, &selector).await?;

    let node_prefix = "vk-bench";
    let nodes = floor::node_names(node_prefix, args.nodes);
    let (kind, argv, env) = kubelet_command(&args, node_prefix, &kubeconfig, &out_dir)?;
    let log = log_dir.join(format!("{}.kubelet.log", args.name));
    eprintln!("bench: starting the kubelet: {}", argv.join(" "));
    let spawned_at = Timestamp::now();
    let mut kubelet = Kubelet::spawn(&argv, &env, &log)?;
    let approver = tokio::spawn(identity::approve_serving_csrs(
        admin.clone(),
        args.kubelet_user.clone(),
    ));
    let audit_log = args.cluster_dir.join("logs").join("audit.log");
    let result = measure(&args, &admin, &observer, &mut kubelet, &nodes, &audit_log).await;
    kubelet.stop().await;
    approver.abort();
    let phases = result?;

    // The audit backend writes in batches: wait until the log stops growing.
    wait_stable(&audit_log).await;
    let windows = [
        Window {
            from: phases.create_wall,
            to: phases.steady_wall.0,
        },
        Window {
            from: phases.delete_wall,
            to: phases.quiet_after_delete_wall,
        },
        Window {
            from: phases.steady_wall.0,
            to: phases.steady_wall.1,
        },
        Window {
            from: spawned_at,
            to: phases.create_wall,
        },
    ];
    let file = std::fs::File::open(&audit_log)
        .with_context(|| format!("opening the audit log {}", audit_log.display()))?;
    let tallies = audit::tally(std::io::BufReader::new(file), &args.kubelet_user, &windows)?;
    let [create, delete, steady, startup] = <[audit::Tally; 4]>::try_from(tallies)
        .map_err(|_| anyhow::anyhow!("audit tally returned the wrong number of windows"))?;
    let mut lifecycle = create.clone();
    for (k, v) in delete.by_request {
        *lifecycle.by_request.entry(k).or_default() += v;
    }
    if lifecycle.total() == 0 {
        bail!(
            "the audit log {} holds no request of {}: was the cluster started with the benchmark's audit policy?",
            audit_log.display(),
            args.kubelet_user
        );
    }
    let n = args.pods as f64;
    let steady_secs = phases.steady_secs;
    machine.load_1m_end = load_1m();
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let mut report = Report {
        name: args.name.clone(),
        kubelet: kind,
        command: argv,
        mode: args.mode.as_str().into(),
        pods: args.pods,
        nodes: nodes.len(),
        started_at: started_at.to_string(),
        machine,
        time_to_running_s: round3(phases.time_to_running.as_secs_f64()),
        time_to_deleted_s: round3(phases.time_to_deleted.as_secs_f64()),
        create_to_running: summarize(&observer.latencies_ms()),
        kubelet_process: ProcessFigures {
            cpu_seconds_total: round3(phases.cpu_total),
            cpu_seconds_startup: round3(phases.cpu_startup),
            cpu_ms_per_pod_lifecycle: round3(phases.cpu_lifecycle * 1000.0 / n),
            peak_rss_mib: mib(phases.peak_rss_kib),
            startup_rss_mib: mib(phases.startup_rss_kib),
            steady_rss_mib: mib(phases.steady.rss_kib),
            steady_rss_anon_mib: mib(phases.steady.anon_kib),
            steady_rss_file_mib: mib(phases.steady.file_kib),
        },
        api: ApiFigures {
            per_pod_lifecycle: lifecycle.per(n),
            writes_per_pod_lifecycle: round3(lifecycle.writes() as f64 / n),
            pod_writes_per_pod_lifecycle: round3(lifecycle.pod_writes() as f64 / n),
            requests_per_pod_lifecycle: round3(lifecycle.total() as f64 / n),
            startup: startup.by_request,
        },
        steady: Steady {
            seconds: round3(steady_secs),
            kubelet_cpu_percent_of_a_core: round3(phases.cpu_steady / steady_secs * 100.0),
            api_requests_per_s: round3(steady.total() as f64 / steady_secs),
            api_writes_per_s: round3(steady.writes() as f64 / steady_secs),
            requests: steady.by_request,
            quiet_after_running_s: round3(phases.quiet_after_running.waited.as_secs_f64()),
            quiet_after_deleted_s: round3(phases.quiet_after_deleted.waited.as_secs_f64()),
            quiet: phases.quiet_after_running.reached && phases.quiet_after_deleted.reached,
        },
        floor: None,
        targets: Vec::new(),
        api_faults: proxy.as_ref().zip(faults.as_ref()).map(|(proxy, faults)| {
            let counts = proxy.counts();
            serde_json::json!({
                "spec": faults.to_string(),
                "requests": counts.requests,
                "forwarded": counts.forwarded,
                "throttled": counts.throttled,
                "failed": counts.failed,
                "resets": counts.resets,
                "gone": counts.gone,
                "cut": counts.cut,
            })
        }),
    };
    if let Some(path) = &args.floor_result {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the floor result {}", path.display()))?;
        let floor: Report = serde_json::from_str(&text)
            .with_context(|| format!("parsing the floor result {}", path.display()))?;
        report.floor = Some(FloorComparison::new(&report, &floor));
    }
    if report.kubelet != "floor" {
        report.targets = check_targets(&report);
    }
    let json = serde_json::to_string(&report).context("serialising the report")?;
    std::fs::write(&args.out, format!("{json}\n"))
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(report)
}

/// What the phases measured.
struct Phases {
    create_wall: Timestamp,
    steady_wall: (Timestamp, Timestamp),
    delete_wall: Timestamp,
    quiet_after_delete_wall: Timestamp,
    quiet_after_running: Quiet,
    quiet_after_deleted: Quiet,
    time_to_running: Duration,
    time_to_deleted: Duration,
    steady_secs: f64,
    cpu_total: f64,
    cpu_startup: f64,
    cpu_lifecycle: f64,
    cpu_steady: f64,
    peak_rss_kib: u64,
    startup_rss_kib: u64,
    steady: crate::procfs::Sample,
}

async fn measure(
    args: &RunArgs,
    admin: &Client,
    observer: &Observer,
    kubelet: &mut Kubelet,
    nodes: &[String],
    audit_log: &Path,
) -> Result<Phases> {
    wait_nodes_ready(admin, nodes, kubelet).await?;
    eprintln!(
        "bench: {} node(s) Ready; settling for {} s",
        nodes.len(),
        args.settle_secs
    );
    pause(kubelet, Duration::from_secs(args.settle_secs)).await?;
    let startup = kubelet.sample()?;
    let timeout = Duration::from_secs(args.timeout_secs.unwrap_or(300 + (args.pods as u64) / 10));

    // Create.
    eprintln!(
        "bench: creating {} pods ({} mode)",
        args.pods,
        args.mode.as_str()
    );
    let create_wall = Timestamp::now();
    let t0 = Instant::now();
    let cpu0 = startup.cpu_seconds;
    let creating = async {
        match args.mode {
            Mode::Direct => {
                workload::create_pods(admin, args.pods, nodes, args.concurrency, observer).await
            }
            Mode::Deployment => workload::create_deployment(admin, args.pods).await,
        }
    };
    let waiting = wait_for(
        kubelet,
        timeout,
        "pods Running",
        |c| {
            (
                c.running >= args.pods,
                format!("{}/{} Running", c.running, args.pods),
            )
        },
        observer,
    );
    let (created, waited) = tokio::join!(creating, waiting);
    created?;
    waited?;
    let time_to_running = observer
        .last_running()
        .map_or(t0.elapsed(), |at| at.saturating_duration_since(t0));
    eprintln!(
        "bench: all {} pods Running after {:.2} s; settling for {} s",
        args.pods,
        time_to_running.as_secs_f64(),
        args.settle_secs
    );
    let mut follower = Follower::open(audit_log, &args.kubelet_user)?;
    pause(kubelet, Duration::from_secs(args.settle_secs)).await?;
    let quiet_after_running = wait_quiet(kubelet, &mut follower, nodes.len(), args).await?;

    // Steady state.
    let s0 = kubelet.sample()?;
    let steady_from = Timestamp::now();
    let steady_t0 = Instant::now();
    eprintln!("bench: steady state for {} s", args.steady_secs);
    pause(kubelet, Duration::from_secs(args.steady_secs)).await?;
    let s1 = kubelet.sample()?;
    let steady_secs = steady_t0.elapsed().as_secs_f64();
    let steady_to = Timestamp::now();

    // Delete.
    eprintln!("bench: deleting {} pods", args.pods);
    let delete_wall = Timestamp::now();
    let d0 = Instant::now();
    let mut follower = Follower::open(audit_log, &args.kubelet_user)?;
    let deleting = workload::delete_all(admin, args.mode, args.pods, args.concurrency);
    let waiting = wait_for(
        kubelet,
        timeout,
        "pods deleted",
        |c| (c.present == 0, format!("{} left", c.present)),
        observer,
    );
    let (deleted, waited) = tokio::join!(deleting, waiting);
    deleted?;
    waited?;
    let time_to_deleted = d0.elapsed();
    eprintln!(
        "bench: all pods gone after {:.2} s",
        time_to_deleted.as_secs_f64()
    );
    // Late work of the kubelet (events, forgetting pods) belongs to the lifecycle.
    let quiet_after_deleted = wait_quiet(kubelet, &mut follower, nodes.len(), args).await?;
    let end = kubelet.sample()?;
    let quiet_after_delete_wall = Timestamp::now();

    Ok(Phases {
        create_wall,
        steady_wall: (steady_from, steady_to),
        delete_wall,
        quiet_after_delete_wall,
        quiet_after_running,
        quiet_after_deleted,
        time_to_running,
        time_to_deleted,
        steady_secs,
        cpu_total: end.cpu_seconds,
        cpu_startup: startup.cpu_seconds,
        cpu_lifecycle: (s0.cpu_seconds - cpu0) + (end.cpu_seconds - s1.cpu_seconds),
        cpu_steady: s1.cpu_seconds - s0.cpu_seconds,
        peak_rss_kib: kubelet.peak_rss_kib().max(end.hwm_kib),
        startup_rss_kib: startup.rss_kib,
        steady: s1,
    })
}

/// How long the quiet wait took, and whether quiet was reached.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    waited: Duration,
    reached: bool,
}

/// The window over which the kubelet's request rate is judged.
const QUIET_WINDOW: Duration = Duration::from_secs(10);
/// How far behind the audit log may be (it is written in batches).
const AUDIT_LAG: Duration = Duration::from_secs(2);

/// Most requests an idle kubelet of `nodes` nodes makes in [`QUIET_WINDOW`]:
/// twice what lease renewals (one per node per 10 s) and node status
/// refreshes (one per node per minute) need, plus 0.5 per second.
fn quiet_limit(nodes: usize) -> usize {
    let per_s = 2.0 * nodes as f64 * (0.1 + 1.0 / 60.0) + 0.5;
    (per_s * QUIET_WINDOW.as_secs_f64()).ceil() as usize
}

/// Waits until the kubelet's requests over the last [`QUIET_WINDOW`] (on the
/// apiserver's audit log) are down to what an idle kubelet makes, at most
/// `--quiet-max-secs`. A window opened earlier would measure events still
/// draining or deletions still being cleaned up as "steady state".
async fn wait_quiet(
    kubelet: &mut Kubelet,
    follower: &mut Follower,
    nodes: usize,
    args: &RunArgs,
) -> Result<Quiet> {
    let started = Instant::now();
    let max = Duration::from_secs(args.quiet_max_secs);
    let limit = quiet_limit(nodes);
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        kubelet.check_alive()?;
        follower.poll()?;
        let to = Timestamp::now() - AUDIT_LAG;
        let from = to - QUIET_WINDOW;
        let recent = follower.count(from, to);
        if recent <= limit {
            return Ok(Quiet {
                waited: started.elapsed(),
                reached: true,
            });
        }
        if started.elapsed() >= max {
            eprintln!(
                "bench: the kubelet is not quiet after {max:?} ({recent} requests in {QUIET_WINDOW:?}, idle is at most {limit}); measuring anyway"
            );
            return Ok(Quiet {
                waited: started.elapsed(),
                reached: false,
            });
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "bench: waiting for the kubelet to go quiet: {recent} requests in the last {QUIET_WINDOW:?} (idle: at most {limit}) ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sleeps, failing early if the kubelet exits.
async fn pause(kubelet: &mut Kubelet, d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        kubelet.check_alive()?;
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(500))).await;
    }
    Ok(())
}

/// Polls the observer until `done` says so, printing progress; fails on timeout
/// or when the kubelet exits.
async fn wait_for(
    kubelet: &mut Kubelet,
    timeout: Duration,
    what: &str,
    done: impl Fn(crate::observe::Counts) -> (bool, String),
    observer: &Observer,
) -> Result<()> {
    let started = Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        let (finished, progress) = done(observer.counts());
        if finished {
            return Ok(());
        }
        kubelet.check_alive()?;
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {progress}");
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "bench: {progress} ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_nodes_ready(admin: &Client, names: &[String], kubelet: &mut Kubelet) -> Result<()> {
    let api: Api<Node> = Api::all(admin.clone());
    let started = Instant::now();
    loop {
        let list = api.list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| n.metadata.name.as_ref().is_some_and(|x| names.contains(x)))
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready == names.len() {
            return Ok(());
        }
        kubelet.check_alive()?;
        if started.elapsed() > NODES_READY_TIMEOUT {
            bail!(
                "only {ready} of {} nodes Ready after {NODES_READY_TIMEOUT:?}",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `path` has not grown for 2 s (at most 30 s).
async fn wait_stable(path: &Path) {
    let started = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    while started.elapsed() < Duration::from_secs(30) {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size != last.0 {
            last = (size, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(2) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The kubelet's kind (for reports), argv and extra environment.
type KubeletCommand = (String, Vec<String>, Vec<(String, String)>);

/// Builds the kubelet's command line for `args`.
fn kubelet_command(
    args: &RunArgs,
    node_prefix: &str,
    kubeconfig: &Path,
    out_dir: &Path,
) -> Result<KubeletCommand> {
    let [free_kubelet_port, metrics_port] = free_ports()?;
    // Each node of a multi-node kubelet has a port of its own, the ones
    // after the first: with many nodes the OS picks them (0).
    let kubelet_port = if args.nodes > 1 { 0 } else { free_kubelet_port };
    let kubeconfig_s = kubeconfig.to_string_lossy().into_owned();
    let mut identity_flags = vec!["--nodename".to_string(), node_prefix.to_string()];
    if args.nodes > 1 {
        identity_flags.extend(["--nodes".to_string(), args.nodes.to_string()]);
    }
    identity_flags.extend(["--kubeconfig".to_string(), kubeconfig_s.clone()]);
    let mut rate_flags = Vec::new();
    if let Some(q) = args.qps {
        rate_flags.extend(["--kube-api-qps".to_string(), q.to_string()]);
    }
    if let Some(b) = args.burst {
        rate_flags.extend(["--kube-api-burst".to_string(), b.to_string()]);
    }
    let (kind, mut argv) = match (&args.kubelet_cmd, args.kubelet) {
        (Some(cmd), _) => {
            let words = cmdline::split(cmd)?;
            let filled = cmdline::fill(
                &words,
                &[
                    ("node", node_prefix.to_string()),
                    ("kubeconfig", kubeconfig_s.clone()),
                    ("kubelet_port", kubelet_port.to_string()),
                    ("metrics_port", metrics_port.to_string()),
                ],
            );
            ("custom".to_string(), filled)
        }
        (None, KubeletKind::Floor) => {
            let me = std::env::current_exe().context("locating vk-bench itself")?;
            (
                "floor".to_string(),
                vec![me.to_string_lossy().into_owned(), "floor".to_string()],
            )
        }
        (None, KubeletKind::Mock) => {
            let bin = match &args.mock_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .context("locating vk-bench itself")?
                    .with_file_name("vk-mock"),
            };
            if !bin.is_file() {
                bail!("no vk-mock binary at {} (give --mock-bin)", bin.display());
            }
            // Room for every pod on one node: the scheduler honours `pods` capacity.
            let config: serde_json::Map<String, serde_json::Value> =
                floor::node_names(node_prefix, args.nodes)
                    .into_iter()
                    .map(|n| (n, serde_json::json!({ "pods": "1000000" })))
                    .collect();
            let config_path = out_dir.join(format!("{}.mock-config.json", args.name));
            std::fs::write(&config_path, serde_json::Value::Object(config).to_string())
                .with_context(|| format!("writing {}", config_path.display()))?;
            (
                "vk-mock".to_string(),
                vec![
                    bin.to_string_lossy().into_owned(),
                    "--metrics-addr".into(),
                    format!("127.0.0.1:{metrics_port}"),
                    "--kubelet-listen-address".into(),
                    "127.0.0.1".into(),
                    "--provider-config".into(),
                    config_path.to_string_lossy().into_owned(),
                ],
            )
        }
    };
    argv.extend(identity_flags);
    argv.extend(rate_flags);
    if let Some(extra) = &args.kubelet_args {
        argv.extend(cmdline::split(extra)?);
    }
    let env = vec![
        ("KUBECONFIG".to_string(), kubeconfig_s),
        ("KUBELET_PORT".to_string(), kubelet_port.to_string()),
    ];
    Ok((kind, argv, env))
}

/// Two distinct free loopback ports.
pub fn free_ports() -> Result<[u16; 2]> {
    let a = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}
