//! `vk-bench soak`: steady churn under API faults, for a long time. A
//! Deployment keeps `--pods` pods on the node while the soak deletes one of
//! them at a set rate (the ReplicaSet replaces it), and the kubelet reaches
//! the apiserver only through the fault proxy. Every minute it prints and
//! records the kubelet's RSS, open file descriptors, threads and API
//! requests a second; at the end it fails when any of them kept growing
//! after the warm-up (see [`growth`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use crate::kubelet::Kubelet;
use crate::{identity, workload};

/// Flags of `vk-bench soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Cluster directory of a running `vkcp`.
    #[arg(long)]
    pub cluster_dir: PathBuf,
    /// Where the JSON goes.
    #[arg(long)]
    pub out: PathBuf,
    /// The vk-mock binary.
    #[arg(long)]
    pub mock_bin: PathBuf,
    /// Length of the soak, minutes.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Pods the Deployment keeps on the node.
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Pods deleted (and replaced) a minute.
    #[arg(long, default_value_t = 60)]
    pub churn_per_min: u32,
    /// The fault proxy's faults (`vk_test_support::Faults`).
    #[arg(long, default_value = "errors=0.05,resets=0.01,watch-cut=60s")]
    pub api_faults: String,
}

/// One minute's reading.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Minute {
    minute: u64,
    rss_mib: f64,
    fds: usize,
    threads: usize,
    api_requests_per_s: f64,
    pods_running: usize,
}

/// Runs the soak; the report is also written to `--out`.
pub async fn run(args: SoakArgs) -> Result<serde_json::Value> {
    let faults: vk_test_support::Faults = args.api_faults.parse().context("--api-faults")?;
    let admin_kubeconfig = args.cluster_dir.join("kubeconfig");
    let admin = crate::client_from(&admin_kubeconfig).await?;
    let kubeconfig = identity::kubelet_kubeconfig(
        &admin,
        &admin_kubeconfig,
        crate::KUBELET_USER,
        &args.cluster_dir.join("kubelet.kubeconfig"),
    )
    .await?;
    let proxy = vk_test_support::FaultProxy::start(&kubeconfig).await?;
    let through = args.cluster_dir.join("kubelet-through-faults.kubeconfig");
    proxy.write_kubeconfig(&through)?;
    workload::prepare_namespace(&admin).await?;

    let out_dir = args.out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let config = out_dir.join("soak.mock-config.json");
    std::fs::write(
        &config,
        json!({ "vk-bench": { "pods": (args.pods * 2).to_string() } }).to_string(),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let [kubelet_port, metrics_port] = crate::run::free_ports()?;
    let argv: Vec<String> = [
        args.mock_bin.to_string_lossy().as_ref(),
        "--nodename",
        "vk-bench",
        "--kubeconfig",
        through.to_string_lossy().as_ref(),
        "--provider-config",
        config.to_string_lossy().as_ref(),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
        "--kubelet-port",
        &kubelet_port.to_string(),
        "--kubelet-listen-address",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = out_dir.join("logs").join("soak.kubelet.log");
    std::fs::create_dir_all(out_dir.join("logs"))?;
    eprintln!("soak: starting {}", argv.join(" "));
    let mut kubelet = Kubelet::spawn(&argv, &[], &log)?;
    let approver = tokio::spawn(identity::approve_serving_csrs(
        admin.clone(),
        crate::KUBELET_USER.to_string(),
    ));
    proxy.set(faults.clone());
    eprintln!("soak: the kubelet's API requests go through a fault proxy ({faults})");
    workload::create_deployment(&admin, args.pods).await?;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), workload::NAMESPACE);
    let selector = format!("{}={}", workload::LABEL.0, workload::LABEL.1);
    let churn_every = Duration::from_secs_f64(60.0 / f64::from(args.churn_per_min.max(1)));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut next_minute = started + Duration::from_secs(60);
    let mut minutes = Vec::new();
    let mut requests_before = proxy.counts().requests;
    let mut deleted = 0u64;
    let mut churn = tokio::time::interval(churn_every);
    while Instant::now() < end {
        churn.tick().await;
        kubelet.check_alive()?;
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let victim = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .nth(usize::try_from(deleted).unwrap_or(0) % list.items.len().max(1))
            .and_then(|p| p.metadata.name.clone());
        if let Some(name) = victim {
            match pods.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e).context("deleting a pod"),
            }
        }
        if Instant::now() >= next_minute {
            next_minute += Duration::from_secs(60);
            let sample = kubelet.sample()?;
            let requests = proxy.counts().requests;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            let m = Minute {
                minute: started.elapsed().as_secs() / 60,
                rss_mib: sample.rss_kib as f64 / 1024.0,
                fds: count_entries(kubelet.pid(), "fd"),
                threads: count_entries(kubelet.pid(), "task"),
                api_requests_per_s: (requests - requests_before) as f64 / 60.0,
                pods_running: running,
            };
            requests_before = requests;
            eprintln!(
                "soak: minute {:>3}: RSS {:.1} MiB, {} fds, {} threads, {:.2} API requests/s, {} pods Running, {} deleted so far",
                m.minute,
                m.rss_mib,
                m.fds,
                m.threads,
                m.api_requests_per_s,
                m.pods_running,
                deleted
            );
            minutes.push(m);
        }
    }
    kubelet.stop().await;
    approver.abort();
    let counts = proxy.counts();
    let verdicts = [
        (
            "rss_mib",
            growth(&minutes.iter().map(|m| m.rss_mib).collect::<Vec<_>>(), 4.0),
        ),
        (
            "fds",
            growth(
                &minutes.iter().map(|m| m.fds as f64).collect::<Vec<_>>(),
                8.0,
            ),
        ),
        (
            "threads",
            growth(
                &minutes.iter().map(|m| m.threads as f64).collect::<Vec<_>>(),
                4.0,
            ),
        ),
    ];
    let report = json!({
        "minutes": args.minutes,
        "pods": args.pods,
        "churn_per_min": args.churn_per_min,
        "pods_deleted": deleted,
        "api_faults": faults.to_string(),
        "proxy": { "requests": counts.requests, "throttled": counts.throttled, "failed": counts.failed, "resets": counts.resets, "cut": counts.cut },
        "samples": minutes,
        "growth": verdicts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let grew: Vec<String> = verdicts
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|g| format!("{k} grew by {g:.1}")))
        .collect();
    if !grew.is_empty() {
        bail!("steady growth after the warm-up: {}", grew.join(", "));
    }
    Ok(report)
}

/// How much `series` (one value a minute) grew after the warm-up, when that
/// is steady growth: the mean of its last third above the mean of its middle
/// third by more than `slack` and by more than 10 %. The first third is the
/// warm-up. `None` when flat (or too short to tell: under 6 minutes).
pub fn growth(series: &[f64], slack: f64) -> Option<f64> {
    if series.len() < 6 {
        return None;
    }
    let third = series.len() / 3;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let middle = mean(&series[third..2 * third]);
    let last = mean(&series[series.len() - third..]);
    let grew = last - middle;
    (grew > slack && grew > middle * 0.1).then_some(grew)
}

/// Entries of `/proc/<pid>/<dir>` (`fd`: open descriptors, `task`: threads).
fn count_entries(pid: u32, dir: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{dir}")).map_or(0, |d| d.count())
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn growth_is_steady_growth_after_the_warm_up() {
        let warm_then_flat = [10.0, 20.0, 30.0, 31.0, 30.5, 31.0, 30.8, 31.2, 30.9];
        assert_eq!(growth(&warm_then_flat, 4.0), None);
        let leaking = [10.0, 20.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0];
        assert!(growth(&leaking, 4.0).is_some_and(|g| g > 10.0));
        assert_eq!(
            growth(&[1.0, 100.0, 1000.0], 4.0),
            None,
            "too short to tell"
        );
    }
}
