//! `vk-aci`: a virtual kubelet whose pods run as Azure Container Instances
//! container groups.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vk_aci::AciProvider;
use vk_aci::client::ArmClient;
use vk_aci::config::{AciArgs, AciConfig, aci_node_capacity};
use vk_aci::group::GroupSettings;
use vk_aci::secrets::{ApiSecrets, SecretSource};
use vk_core::cli::KubeletArgs;
use vk_core::runtime::binary;
use vk_core::toolkit::node_config::NodeConfig;

// Every provider binary brings its allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A virtual kubelet whose pods run as Azure Container Instances.
#[derive(Parser, Debug)]
#[command(name = "vk-aci", version, about)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,

    #[command(flatten)]
    aci: AciArgs,

    /// Seconds between two lists of the node's container groups (status).
    #[arg(long = "status-poll-seconds", default_value_t = 10)]
    status_poll_seconds: u64,
}

fn main() -> ExitCode {
    let (cli, config): (Cli, NodeConfig) = match binary::start("vk-aci", |c: &Cli| &c.kubelet) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let aci = match AciConfig::from_args(&cli.aci) {
        Ok(c) => c,
        Err(e) => return binary::usage_error("vk-aci", e),
    };
    if cli.status_poll_seconds == 0 {
        return binary::usage_error("vk-aci", "--status-poll-seconds must be at least 1");
    }
    let client = match ArmClient::new(&aci) {
        Ok(c) => c,
        Err(e) => return binary::usage_error("vk-aci", e),
    };
    let poll = Duration::from_secs(cli.status_poll_seconds);
    let cluster_domain = cli.kubelet.cluster_domain.clone();
    let secrets: Arc<dyn SecretSource> = Arc::new(ApiSecrets::new(cli.kubelet.clone()));
    binary::run("vk-aci", cli.kubelet.clone(), "azure-aci", |node| {
        let settings = GroupSettings {
            node: node.to_string(),
            region: aci.region.clone(),
            subnet_id: aci.subnet_id.clone(),
            cluster_dns: aci.cluster_dns.clone(),
            cluster_domain: cluster_domain.clone(),
        };
        let capacity = aci_node_capacity(node, &config.node(node));
        Ok(Arc::new(
            AciProvider::new(client.clone(), settings, capacity, poll)
                .with_secrets(secrets.clone()),
        ) as Arc<dyn vk_core::Provider>)
    })
}
