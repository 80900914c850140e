//! `vk-bench`: the benchmark driver behind `cargo xtask bench`, and the floor
//! kubelet every kubelet is compared with.
//!
//! `vk-bench run` measures one kubelet on a running local control plane (the
//! xtask starts a fresh one per run, with the audit policy this program
//! relies on) and writes the figures as one JSON object. `vk-bench floor` is
//! the least a kubelet can do (see [`floor`]); the harness runs it like any
//! other kubelet binary.

mod audit;
mod cmdline;
mod floor;
mod identity;
mod kubelet;
mod observe;
mod procfs;
mod report;
mod run;
mod soak;
mod stats;
mod workload;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// The user the kubelet under test authenticates as; the audit policy of the
/// benchmark cluster logs this user's requests only.
pub const KUBELET_USER: &str = "vk-bench:kubelet";

/// Benchmark driver and floor kubelet.
#[derive(Parser, Debug)]
#[command(name = "vk-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one benchmark against a running cluster; prints the JSON as the last line.
    Run(Box<run::RunArgs>),
    /// The floor kubelet: Running at once, deleted at once, nothing else.
    Floor(floor::FloorArgs),
    /// Steady churn under API faults for minutes; fails on steady growth.
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vk-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                // Ctrl-C stops the run; dropping it stops the kubelet.
                tokio::select! {
                    report = run::run(*args) => {
                        let report = report?;
                        let json = serde_json::to_string(&report).context("serialising the report")?;
                        println!("{json}");
                        Ok(())
                    }
                    _ = floor::shutdown_signal() => anyhow::bail!("interrupted"),
                }
            }
            Command::Floor(args) => floor::run(args).await,
            Command::Soak(args) => {
                let report = soak::run(args).await?;
                println!("{report}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vk-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An API client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("using kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}
