//! `vk-mock`: a virtual kubelet whose backend is the in-process mock.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vk_core::cli::KubeletArgs;
use vk_core::runtime::binary;
use vk_core::toolkit::node_config::NodeConfig;
use vk_mock::ipam::IpAllocator;
use vk_mock::{MockOptions, MockProvider};

// Every provider binary brings its allocator: the static (musl) images
// would otherwise run on musl's malloc, and glibc's cost the mock a sixth
// of its CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A virtual kubelet backed by an in-process mock: pods run instantly, nothing is pulled.
#[derive(Parser, Debug)]
#[command(name = "vk-mock", version, about)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,

    /// CIDR the mock assigns pod IPs from (unique across the nodes of this process).
    #[arg(long = "pod-cidr", default_value = "10.244.0.0/16")]
    pod_cidr: String,

    /// Keep the backend's pods in DIR/<node>.json so they survive a restart.
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,

    /// While this file exists the backend reports itself down (node NotReady, creates fail).
    #[arg(long = "unhealthy-file")]
    unhealthy_file: Option<PathBuf>,

    /// Do not push status changes: the core lists the backend every
    /// DURATION instead (e.g. 2s), as it does for a provider that cannot push.
    #[arg(long = "poll-status", value_parser = vk_core::cli::parse_duration)]
    poll_status: Option<std::time::Duration>,
}

fn main() -> ExitCode {
    let (cli, config): (Cli, NodeConfig) = match binary::start("vk-mock", |c: &Cli| &c.kubelet) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let ips = match IpAllocator::new(&cli.pod_cidr) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            return binary::usage_error("vk-mock", format!("--pod-cidr: {e}"));
        }
    };
    let opts = MockOptions {
        ips,
        state_dir: cli.state_dir.clone(),
        unhealthy_file: cli.unhealthy_file.clone(),
        poll: cli.poll_status,
    };
    binary::run("vk-mock", cli.kubelet.clone(), "mock", |node| {
        let provider =
            MockProvider::new(node, config.node(node), &opts).map_err(anyhow::Error::msg)?;
        Ok(Arc::new(provider) as Arc<dyn vk_core::Provider>)
    })
}
