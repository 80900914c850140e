//! Project tooling, run as `cargo xtask <command>`: builds and runs the local
//! Kubernetes control plane (`vkcp`, the Go program in `xtask/controlplane`),
//! runs the whole test pipeline and the demo.
//!
//! It depends on `std`, `anyhow` and `signal-hook`, plus `serde_json`, `sha2`,
//! `tar` and `flate2` for writing images, so it compiles in seconds on a fresh
//! machine. Everything slow it does (the Go build, cluster
//! start-up, the tests) prints what it is doing and how long it has taken.

mod bench;
mod bootstrap_token;
mod charts;
mod cluster;
mod controlplane_build;
mod debian_packages;
mod demo;
mod fargate_bench;
mod go_build;
mod helm_build;
mod images;
mod kubectl;
mod metrics_server_build;
mod oci;
mod options;
mod process;
mod progress;
mod test;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  cluster up [--dir DIR] [--audit] [--apiserver-arg=ARG]... [--controller-manager-arg=ARG]...
             [--scheduler-arg=ARG]...
                              build the control plane if needed, start it detached and wait
                              until it is ready; prints the kubeconfig path as the last line
                              (default DIR: target/cluster in the workspace); --audit: the
                              apiserver writes a JSON audit log to DIR/logs/audit.log;
                              --*-arg: extra component arguments for a new cluster (one
                              already running in DIR is reused as it is)
  cluster down [--dir DIR]    stop the cluster in DIR and every process it started
  cluster status [--dir DIR]  say whether a cluster runs in DIR, its pids and where its logs are
  cluster bootstrap-token [--dir DIR]
                              create a bootstrap token (kube-system Secret, 24 h) in the cluster
                              in DIR and write a bootstrap kubeconfig for a new virtual node
                              (--bootstrap-kubeconfig); prints its path
  controlplane-path           print the path of the vkcp binary (building it if needed)
  kubectl ARGS...             kubectl of the pinned Kubernetes version; uses
                              --kubeconfig target/cluster/kubeconfig unless ARGS name one
  test                        install missing Debian packages (as root), cargo fmt --check,
                              clippy -D warnings, then all tests against a fresh test cluster
  demo                        cluster + the mock virtual kubelet + a 3-replica Deployment;
                              Ctrl-C stops everything
  build-images [--provider NAME]... [--arch amd64|arm64|all]...
                              static release build of each provider (all by default) and its
                              FROM-scratch image in target/images/NAME/ (OCI layout and
                              docker-archive tarball; arm64: target/images/NAME-arm64/);
                              prints the tarball paths
  charts [--chart NAME]... [--kubeconfig PATH]
                              helm lint, helm template and a server-side dry run of every chart
                              in charts/, or of the named ones (default cluster: target/cluster,
                              started if needed)
  helm-path                   print the path of the pinned helm binary (building it if needed)
  metrics-server-path         print the path of the pinned metrics-server binary (building it
                              if needed)
  bench [OPTIONS]             benchmark a kubelet on a fresh cluster (target/bench-cluster);
                              figures in target/bench/NAME.json; `cargo xtask bench --help`
  soak [--minutes N] [--pods P] [--churn-per-min C] [--api-faults SPEC]
                              vk-mock (release) under steady churn and API faults on a fresh
                              cluster; RSS, descriptors, threads and API requests a second every
                              minute; fails on steady growth (target/bench/soak.json)
  help                        this text

environment:
  VK_CACHE_DIR                where built binaries are kept (default ~/.cache/vk-rs)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "cluster" => {
            let Some((action, rest)) = rest.split_first() else {
                bail!("`cluster` needs one of: up, down, status, bootstrap-token\n\n{USAGE}");
            };
            let audit = action == "up" && rest.iter().any(|a| a == "--audit");
            // `up` passes component arguments through to `vkcp run` (e.g.
            // --controller-manager-arg=--cluster-signing-duration=3m).
            let is_component_arg = |a: &str| {
                [
                    "--apiserver-arg=",
                    "--controller-manager-arg=",
                    "--scheduler-arg=",
                ]
                .iter()
                .any(|p| a.starts_with(p))
            };
            let component_args: Vec<String> = if action == "up" {
                rest.iter()
                    .filter(|a| is_component_arg(a))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let rest: Vec<String> = rest
                .iter()
                .filter(|a| *a != "--audit" || !audit)
                .filter(|a| action != "up" || !is_component_arg(a))
                .cloned()
                .collect();
            let dir = parse_dir(&rest)?;
            match action.as_str() {
                "up" => {
                    let vkcp = controlplane_build::ensure_built()?;
                    let mut extra: Vec<String> = Vec::new();
                    if audit {
                        extra.push("--audit".to_string());
                    }
                    extra.extend(component_args);
                    let kubeconfig = cluster::up_with_args(&dir, &vkcp, &extra)?;
                    // The last line is the kubeconfig path, for scripts and tests.
                    println!("{}", kubeconfig.display());
                }
                "down" => cluster::down(&dir)?,
                "status" => cluster::status(&dir)?,
                "bootstrap-token" => {
                    let vkcp = controlplane_build::ensure_built()?;
                    let path = bootstrap_token::create(&dir, &vkcp)?;
                    // The only line on stdout: the kubeconfig's path, for scripts.
                    println!("{}", path.display());
                }
                other => bail!("unknown `cluster` action {other:?}\n\n{USAGE}"),
            }
        }
        "controlplane-path" => {
            let vkcp = controlplane_build::ensure_built()?;
            println!("{}", vkcp.display());
        }
        "kubectl" => return kubectl::passthrough(rest),
        "build-images" => images::run(rest)?,
        "charts" => charts::run(rest)?,
        "helm-path" => println!("{}", helm_build::ensure_built()?.display()),
        "metrics-server-path" => {
            println!("{}", metrics_server_build::ensure_built()?.display())
        }
        "test" => return test::run(),
        "demo" => demo::run()?,
        "bench" => bench::run(rest)?,
        "soak" => bench::soak(rest)?,
        "help" | "-h" | "--help" => print!("{USAGE}"),
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses the only option the `cluster` actions take, `--dir DIR` (or `--dir=DIR`).
fn parse_dir(args: &[String]) -> Result<PathBuf> {
    let mut dir = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--dir" {
            let value = iter.next().context("--dir needs a value")?;
            dir = Some(PathBuf::from(value));
        } else if let Some(value) = arg.strip_prefix("--dir=") {
            dir = Some(PathBuf::from(value));
        } else {
            bail!("unexpected argument {arg:?}\n\n{USAGE}");
        }
    }
    match dir {
        Some(dir) => std::path::absolute(&dir)
            .with_context(|| format!("resolving cluster directory {}", dir.display())),
        None => Ok(workspace::default_cluster_dir()),
    }
}
