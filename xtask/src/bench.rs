//! `cargo xtask bench`: builds the benchmark driver (`xtask/bench`, binary
//! `vk-bench`) and the mock kubelet in release mode, and runs each benchmark
//! on a fresh control plane in `target/bench-cluster` started with an audit
//! log of the kubelet's requests and limits high enough for 10,000 pods.
//! With `--with-floor` the floor kubelet runs first, on its own fresh
//! cluster, and the kubelet's figures are compared with it.
//!
//! Results: `target/bench/<name>.json` (and `<name>-floor.json`), kubelet logs
//! in `target/bench/logs/`; the JSON of the last run is the last line printed.
//! The measuring itself is `vk-bench run` (see `xtask/bench/src/run.rs`).

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::{cluster, controlplane_build, fargate_bench, workspace};

/// The user the kubelet under test authenticates as (`vk-bench`'s default).
const KUBELET_USER: &str = "vk-bench:kubelet";

pub const USAGE: &str = "\
usage: cargo xtask bench [OPTIONS]

  --pods N                 pods (default 1000)
  --nodes M                nodes, all served by one kubelet process (default 1)
  --mode direct|deployment pods with spec.nodeName, or one Deployment through the scheduler
  --kubelet mock|floor     the kubelet: vk-mock (default) or the floor
  --provider fargate       the kubelet is vk-fargate (release) against moto, started for
                           the run; the result adds the AWS calls by API name, per pod
  --kubelet-cmd 'CMD ...'  any virtual-kubelet-compatible command instead; it receives
                           --nodename, --kubeconfig (and KUBECONFIG), KUBELET_PORT, --nodes M
                           when M > 1; {node} {kubeconfig} {kubelet_port} {metrics_port} are
                           filled in
  --qps Q, --burst B       passed to the kubelet as --kube-api-qps/--kube-api-burst
  --kubelet-args 'ARGS'    more arguments for the kubelet (e.g. '--no-success-events')
  --api-faults SPEC        the kubelet under test reaches the apiserver only through the
                           test support's fault proxy, e.g. 'errors=0.1,watch-cut=20s'
                           (errors, resets, gone: shares; latency, watch-cut, stall:
                           durations; all; none); the result adds what the proxy did
  --mock-bin PATH          this vk-mock (or a wrapper that execs one, e.g. under perf)
                           instead of the release build
  --with-floor             run the floor first (own fresh cluster) and report the ratios
  --name NAME              output name: target/bench/NAME.json (default from the options)
  --steady-secs S          steady-state window (default 60)
  --settle-secs S          pause after start-up and after all Running (default 10)
  --quiet-max-secs S       longest wait for the kubelet to go quiet (its requests over 10 s
                           down to an idle kubelet's, on the audit log) before the steady
                           window and after the deletions (default 300)
  --concurrency C          creates/deletes in flight from the benchmark client (default 64)
  --timeout-secs T         limit per phase (default 300 + 0.1 per pod)
";

/// Options the xtask itself needs; everything else goes to `vk-bench run`.
#[derive(Debug, Default, PartialEq)]
struct Options {
    name: Option<String>,
    with_floor: bool,
    kubelet: Option<String>,
    kubelet_cmd: Option<String>,
    /// Only for the kubelet under test, not for the floor.
    kubelet_args: Option<String>,
    /// Only for the kubelet under test, not for the floor.
    api_faults: Option<String>,
    mock_bin: Option<String>,
    /// `fargate`: vk-fargate against moto.
    provider: Option<String>,
    pods: Option<String>,
    nodes: Option<String>,
    mode: Option<String>,
    forwarded: Vec<String>,
}

/// Flags of `vk-bench run` that take a value (so their value is forwarded with them).
const FORWARDED_WITH_VALUE: &[&str] = &[
    "--qps",
    "--burst",
    "--steady-secs",
    "--settle-secs",
    "--quiet-max-secs",
    "--concurrency",
    "--timeout-secs",
];

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => iter
                    .next()
                    .cloned()
                    .with_context(|| format!("{what} needs a value")),
            }
        };
        match flag {
            "--name" => o.name = Some(value(flag)?),
            "--with-floor" => o.with_floor = true,
            "--kubelet" => o.kubelet = Some(value(flag)?),
            "--kubelet-cmd" => o.kubelet_cmd = Some(value(flag)?),
            "--kubelet-args" => o.kubelet_args = Some(value(flag)?),
            "--api-faults" => o.api_faults = Some(value(flag)?),
            "--mock-bin" => o.mock_bin = Some(value(flag)?),
            "--provider" => o.provider = Some(value(flag)?),
            "--pods" => o.pods = Some(value(flag)?),
            "--nodes" => o.nodes = Some(value(flag)?),
            "--mode" => o.mode = Some(value(flag)?),
            f if FORWARDED_WITH_VALUE.contains(&f) => {
                let v = value(flag)?;
                o.forwarded.extend([f.to_string(), v]);
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if let Some(k) = &o.kubelet
        && k != "mock"
        && k != "floor"
    {
        bail!("--kubelet is mock or floor, not {k:?}");
    }
    if o.mock_bin.is_some() && o.kind() != "mock" {
        bail!("--mock-bin is for the mock kubelet");
    }
    if o.kubelet.is_some() && o.kubelet_cmd.is_some() {
        bail!("give --kubelet or --kubelet-cmd, not both");
    }
    if let Some(p) = &o.provider {
        if p != "fargate" {
            bail!("--provider is fargate (the mock is the default), not {p:?}");
        }
        if o.kubelet.is_some() || o.kubelet_cmd.is_some() || o.mock_bin.is_some() {
            bail!(
                "--provider fargate chooses the kubelet: no --kubelet, --kubelet-cmd or --mock-bin"
            );
        }
    }
    Ok(o)
}

impl Options {
    fn kind(&self) -> &str {
        match (&self.kubelet_cmd, self.kubelet.as_deref()) {
            _ if self.provider.is_some() => "fargate",
            (Some(_), _) => "custom",
            (None, Some("floor")) => "floor",
            _ => "mock",
        }
    }

    fn default_name(&self) -> String {
        format!(
            "{}-{}-{}pods-{}nodes",
            self.kind(),
            self.mode.as_deref().unwrap_or("direct"),
            self.pods.as_deref().unwrap_or("1000"),
            self.nodes.as_deref().unwrap_or("1"),
        )
    }

    /// Arguments of `vk-bench run` shared by the floor and the kubelet runs.
    fn common_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, v) in [
            ("--pods", &self.pods),
            ("--nodes", &self.nodes),
            ("--mode", &self.mode),
        ] {
            if let Some(v) = v {
                out.extend([flag.to_string(), v.clone()]);
            }
        }
        out.extend(self.forwarded.iter().cloned());
        out
    }
}

/// `cargo xtask bench ARGS...`.
pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let opts = parse(args)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("installing the Ctrl-C handler")?;
    }
    let root = workspace::root();
    let name = opts.name.clone().unwrap_or_else(|| opts.default_name());
    let out_dir = root.join("target").join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let needs_mock = opts.kind() == "mock" && opts.mock_bin.is_none();
    let fargate = opts.kind() == "fargate";
    let bins = build(&root, needs_mock, fargate)?;
    let rig = if fargate {
        Some(fargate_bench::build_rig(&root)?)
    } else {
        None
    };
    let vkcp = controlplane_build::ensure_built()?;
    let dir = root.join("target").join("bench-cluster");

    // (name, arguments, whether moto runs beside it)
    let mut runs: Vec<(String, Vec<String>, bool)> = Vec::new();
    let mut floor_json = None;
    if opts.with_floor && opts.kind() != "floor" {
        let floor_name = format!("{name}-floor");
        let out = out_dir.join(format!("{floor_name}.json"));
        let mut a = vec!["--kubelet".to_string(), "floor".to_string()];
        a.extend(run_args(&dir, &floor_name, &out, &opts));
        floor_json = Some(out);
        runs.push((floor_name, a, false));
    }
    let out = out_dir.join(format!("{name}.json"));
    let mut a = run_args(&dir, &name, &out, &opts);
    match (opts.kind(), &opts.kubelet_cmd) {
        ("custom", Some(cmd)) => a.push(format!("--kubelet-cmd={cmd}")),
        // The command line waits for moto's endpoint (see below).
        ("fargate", _) => {}
        ("floor", _) => a.extend(["--kubelet".to_string(), "floor".to_string()]),
        _ => {
            if let Some(mock) = &opts.mock_bin {
                a.extend(["--mock-bin".to_string(), mock.clone()]);
            } else if let Some(mock) = &bins.mock {
                a.extend([
                    "--mock-bin".to_string(),
                    mock.to_string_lossy().into_owned(),
                ]);
            }
        }
    }
    if let Some(f) = &floor_json {
        a.extend([
            "--floor-result".to_string(),
            f.to_string_lossy().into_owned(),
        ]);
    }
    if let Some(extra) = &opts.kubelet_args {
        // One word with `=`: the value itself starts with `--`.
        a.push(format!("--kubelet-args={extra}"));
    }
    if let Some(spec) = &opts.api_faults {
        a.push(format!("--api-faults={spec}"));
    }
    runs.push((name.clone(), a, fargate));

    for (run_name, run_args, with_moto) in &runs {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        eprintln!("=== bench run {run_name} ===");
        let mut run_args = run_args.clone();
        let moto = match (with_moto, &rig, &bins.fargate) {
            (true, Some(rig), Some(vk_fargate)) => {
                let moto = fargate_bench::Moto::start(rig, &root)?;
                let cmd = moto.kubelet_cmd(vk_fargate, &out_dir, run_name)?;
                run_args.push(format!("--kubelet-cmd={cmd}"));
                Some(moto)
            }
            _ => None,
        };
        let result = fresh_cluster(&dir, &vkcp).and_then(|()| {
            let status = Command::new(&bins.bench)
                .arg("run")
                .args(run_args)
                .stdin(Stdio::null())
                // One line on our stdout at the end: the final JSON.
                .stdout(Stdio::from(
                    std::io::stderr()
                        .as_fd()
                        .try_clone_to_owned()
                        .context("duplicating stderr")?,
                ))
                .status()
                .with_context(|| format!("running {}", bins.bench.display()))?;
            if !status.success() {
                bail!("vk-bench run {run_name} failed ({status})");
            }
            Ok(())
        });
        let down = cluster::down(&dir);
        result?;
        down?;
        if let Some(moto) = moto {
            let calls = moto.finish()?;
            fargate_bench::record(&out, &calls)?;
        }
    }
    let json = fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    println!("{}", json.trim());
    Ok(())
}

/// `cargo xtask soak ARGS...`: `vk-bench soak` (see `xtask/bench/src/soak.rs`)
/// with vk-mock in release on a fresh cluster in `target/bench-cluster`;
/// the options (`--minutes`, `--pods`, `--churn-per-min`, `--api-faults`)
/// go to it as given.
pub fn soak(args: &[String]) -> Result<()> {
    let root = workspace::root();
    let out_dir = root.join("target").join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let bins = build(&root, true, false)?;
    let mock = bins.mock.context("cargo built no vk-mock")?;
    let vkcp = controlplane_build::ensure_built()?;
    let dir = root.join("target").join("bench-cluster");
    let out = out_dir.join("soak.json");
    fresh_cluster(&dir, &vkcp)?;
    let status = Command::new(&bins.bench)
        .arg("soak")
        .arg("--cluster-dir")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--mock-bin")
        .arg(&mock)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", bins.bench.display()));
    let down = cluster::down(&dir);
    let status = status?;
    down?;
    if !status.success() {
        bail!(
            "the soak failed ({status}); its figures are in {}",
            out.display()
        );
    }
    eprintln!("soak figures: {}", out.display());
    Ok(())
}

fn run_args(dir: &Path, name: &str, out: &Path, opts: &Options) -> Vec<String> {
    let mut a = vec![
        "--cluster-dir".to_string(),
        dir.to_string_lossy().into_owned(),
        "--name".to_string(),
        name.to_string(),
        "--out".to_string(),
        out.to_string_lossy().into_owned(),
        "--kubelet-user".to_string(),
        KUBELET_USER.to_string(),
    ];
    a.extend(opts.common_args());
    a
}

/// The audit policy of the benchmark cluster: the kubelet's requests at
/// metadata level, nothing else (the rest would only cost the apiserver).
fn audit_policy() -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\n\
         kind: Policy\n\
         omitStages: [\"RequestReceived\"]\n\
         rules:\n\
         - level: Metadata\n  users: [\"{KUBELET_USER}\"]\n\
         - level: None\n"
    )
}

/// `vkcp run` arguments of the benchmark cluster.
fn cluster_args(policy: &Path) -> Vec<String> {
    vec![
        "--audit".into(),
        format!("--apiserver-arg=--audit-policy-file={}", policy.display()),
        // 10,000 pods created, patched and deleted as fast as the machine
        // allows: the default 400/200 in-flight limits would be the bottleneck.
        "--apiserver-arg=--max-requests-inflight=1000".into(),
        "--apiserver-arg=--max-mutating-requests-inflight=500".into(),
        // Deployment mode: the ReplicaSet controller, the garbage collector and
        // the scheduler would otherwise be held to 20-50 requests per second.
        "--controller-manager-arg=--kube-api-qps=1000".into(),
        "--controller-manager-arg=--kube-api-burst=2000".into(),
        "--scheduler-arg=--kube-api-qps=1000".into(),
        "--scheduler-arg=--kube-api-burst=2000".into(),
    ]
}

/// Stops whatever runs in `dir`, wipes it and starts a new cluster there.
fn fresh_cluster(dir: &Path, vkcp: &Path) -> Result<()> {
    cluster::down(dir)?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let policy = dir.join("bench-audit-policy.yaml");
    fs::write(&policy, audit_policy()).with_context(|| format!("writing {}", policy.display()))?;
    cluster::up_with_args(dir, vkcp, &cluster_args(&policy))?;
    Ok(())
}

struct Binaries {
    bench: PathBuf,
    mock: Option<PathBuf>,
    fargate: Option<PathBuf>,
}

/// `cargo build --release` of vk-bench (and vk-mock): a benchmark of a debug
/// build would measure the compiler's lack of optimisation.
fn build(root: &Path, with_mock: bool, with_fargate: bool) -> Result<Binaries> {
    let mut cmd = Command::new(workspace::cargo());
    cmd.current_dir(root).args([
        "build",
        "--release",
        "--package",
        "vk-bench",
        "--bin",
        "vk-bench",
    ]);
    let mut also = Vec::new();
    for (wanted, bin) in [(with_mock, "vk-mock"), (with_fargate, "vk-fargate")] {
        if wanted {
            cmd.args(["--package", bin, "--bin", bin]);
            also.push(format!(" and {bin}"));
        }
    }
    eprintln!("building vk-bench{} (release)", also.concat());
    let out = cmd
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build --release")?;
    if !out.status.success() {
        bail!("cargo build --release failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let find = |bin: &str| {
        stdout
            .lines()
            .filter(|l| l.contains(&format!("\"name\":\"{bin}\"")))
            .find_map(executable)
            .map(PathBuf::from)
    };
    let bench = find("vk-bench").context("cargo did not report a vk-bench executable")?;
    let mock = if with_mock {
        Some(find("vk-mock").context("cargo did not report a vk-mock executable")?)
    } else {
        None
    };
    let fargate = if with_fargate {
        Some(find("vk-fargate").context("cargo did not report a vk-fargate executable")?)
    } else {
        None
    };
    Ok(Binaries {
        bench,
        mock,
        fargate,
    })
}

/// The `"executable":"..."` of one line of cargo's JSON messages.
pub fn executable(line: &str) -> Option<String> {
    let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
    let rest = &line[start..];
    Some(rest[..rest.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_own_options_from_forwarded_ones() {
        let o = parse(&s(&[
            "--pods",
            "10000",
            "--with-floor",
            "--qps=500",
            "--kubelet-cmd",
            "vk --x",
            "--name=big",
        ]))
        .unwrap();
        assert_eq!(o.pods.as_deref(), Some("10000"));
        assert!(o.with_floor);
        assert_eq!(o.kind(), "custom");
        assert_eq!(o.name.as_deref(), Some("big"));
        assert_eq!(o.forwarded, s(&["--qps", "500"]));
        assert_eq!(o.common_args(), s(&["--pods", "10000", "--qps", "500"]));
    }

    #[test]
    fn default_name_and_errors() {
        let o = parse(&s(&["--nodes", "100", "--pods", "10000"])).unwrap();
        assert_eq!(o.default_name(), "mock-direct-10000pods-100nodes");
        assert!(parse(&s(&["--bogus"])).is_err());
        assert!(parse(&s(&["--kubelet", "kind"])).is_err());
        assert!(parse(&s(&["--kubelet", "floor", "--kubelet-cmd", "x"])).is_err());
        assert!(parse(&s(&["--pods"])).is_err());
        assert!(parse(&s(&["--kubelet", "floor", "--mock-bin", "/x"])).is_err());
    }

    #[test]
    fn mock_bin_and_quiet_wait() {
        let o = parse(&s(&[
            "--mock-bin",
            "/tmp/wrap.sh",
            "--quiet-max-secs",
            "60",
        ]))
        .unwrap();
        assert_eq!(o.mock_bin.as_deref(), Some("/tmp/wrap.sh"));
        assert_eq!(o.kind(), "mock");
        assert_eq!(o.forwarded, s(&["--quiet-max-secs", "60"]));
    }

    #[test]
    fn audit_policy_logs_only_the_kubelet() {
        let p = audit_policy();
        assert!(p.contains("users: [\"vk-bench:kubelet\"]"));
        assert!(p.trim_end().ends_with("- level: None"));
    }
}
