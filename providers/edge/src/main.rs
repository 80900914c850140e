//! `vk-edge`: a virtual kubelet whose backend is a Docker or Podman engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vk_core::cli::KubeletArgs;
use vk_core::runtime::binary;
use vk_core::toolkit::node_config::NodeConfig;
use vk_edge::EdgeProvider;
use vk_edge::engine::{Engine, EngineOptions};
use vk_edge::spec::Policy;

// Every provider binary brings its allocator: the static (musl) images
// would otherwise run on musl's malloc, and glibc's cost the mock a sixth
// of its CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A virtual kubelet that runs pods as containers on a Docker or Podman engine.
#[derive(Parser, Debug)]
#[command(name = "vk-edge", version, about)]
struct Cli {
    #[command(flatten)]
    kubelet: KubeletArgs,

    /// The engine's API: unix:///path/to.sock, tcp://host:port, or
    /// tcp://host:port / https://host:port with the TLS options.
    #[arg(
        long = "engine-endpoint",
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    engine_endpoint: String,

    /// CA certificate of the engine's TLS endpoint.
    #[arg(long = "engine-tls-ca")]
    engine_tls_ca: Option<PathBuf>,

    /// Client certificate for the engine's TLS endpoint.
    #[arg(long = "engine-tls-cert")]
    engine_tls_cert: Option<PathBuf>,

    /// Client key for the engine's TLS endpoint.
    #[arg(long = "engine-tls-key")]
    engine_tls_key: Option<PathBuf>,

    /// The engine network pods' infra containers join.
    #[arg(long = "engine-network", default_value = "bridge")]
    engine_network: String,

    /// Allow containers with `securityContext.privileged: true`.
    #[arg(long = "allow-privileged")]
    allow_privileged: bool,

    /// Allow hostPath volumes under this directory (repeatable).
    #[arg(long = "allow-host-path", value_name = "PREFIX")]
    allow_host_path: Vec<String>,
}

fn main() -> ExitCode {
    let (cli, config): (Cli, NodeConfig) = match binary::start("vk-edge", |c: &Cli| &c.kubelet) {
        Ok(started) => started,
        Err(code) => return code,
    };
    for prefix in &cli.allow_host_path {
        if !prefix.starts_with('/') {
            return binary::usage_error(
                "vk-edge",
                format!("--allow-host-path {prefix:?}: must be an absolute path"),
            );
        }
    }
    let engine = match Engine::connect(&EngineOptions {
        endpoint: cli.engine_endpoint.clone(),
        tls_ca: cli.engine_tls_ca.clone(),
        tls_cert: cli.engine_tls_cert.clone(),
        tls_key: cli.engine_tls_key.clone(),
    }) {
        Ok(e) => e,
        Err(e) => {
            return binary::usage_error("vk-edge", e);
        }
    };
    let policy = Policy {
        allow_privileged: cli.allow_privileged,
        allowed_host_paths: cli.allow_host_path.clone(),
        network: cli.engine_network.clone(),
    };
    binary::run("vk-edge", cli.kubelet.clone(), "edge", |node| {
        let provider = EdgeProvider::new(
            node,
            engine.clone(),
            policy.clone(),
            config.node(node),
            cli.kubelet.node_ip.to_string(),
        );
        Ok(Arc::new(provider) as Arc<dyn vk_core::Provider>)
    })
}
