//! `vk-fargate`: a virtual kubelet whose pods run as AWS Fargate tasks.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vk_core::cli::KubeletArgs;
use vk_core::runtime::binary;
use vk_fargate::{FargateConfig, FargateProvider};

// Every provider binary brings its allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A virtual kubelet that runs each pod as an AWS Fargate task.
#[derive(Parser, Debug)]
#[command(name = "vk-fargate", version, about)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,
}

fn main() -> ExitCode {
    let cli: Cli = match binary::parse("vk-fargate") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    vk_core::runtime::init_logging(&cli.kubelet);
    // Upstream's fargate.toml: one file for every node of the process.
    let Some(path) = cli.kubelet.provider_config.as_deref() else {
        return binary::usage_error(
            "vk-fargate",
            "--provider-config is required: upstream's fargate.toml (Region, Subnets...)",
        );
    };
    let config = match FargateConfig::load(path) {
        Ok(c) => c,
        Err(e) => return binary::usage_error("vk-fargate", e),
    };
    binary::run("vk-fargate", cli.kubelet.clone(), "fargate", |node| {
        Ok(Arc::new(FargateProvider::new(node, config.clone())) as Arc<dyn vk_core::Provider>)
    })
}
