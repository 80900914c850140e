//! `vk-fargate`: a virtual kubelet whose pods run as AWS Fargate tasks;
//! `vk-fargate write-volumes` is what the first container of a pod's task
//! runs to write its volume files (see `vk_fargate::volume_files`).

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
#[command(
    name = "vk-fargate",
    version,
    about,
    after_help = "`vk-fargate write-volumes [--root DIR]` is what the first container of a pod's task runs: it writes the pod's volume files (JSON in $VK_VOLUMES) under DIR (/vk-volumes)."
)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,
}

fn main() -> ExitCode {
    // `vk-fargate write-volumes`: what the first container of a pod's task
    // runs (the volume files), not the kubelet.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(vk_fargate::volume_files::SUBCOMMAND) {
        return vk_fargate::volume_files::run(&args[1..]);
    }
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
