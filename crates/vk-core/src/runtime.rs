//! The process: one rate limiter, one metrics registry and one Service watch,
//! shared by every node the process serves; per node a provider instance, a
//! node controller, a pod controller and a kubelet API server on a port of
//! its own. The nodes share one API client, or, with a bootstrap
//! kubeconfig, each works with its own identity (`system:node:<name>`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, Taint};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{KubeletArgs, LogFormat};
use crate::context::{NodeConfig, NodeContext};
use crate::health::{self, HealthState};
use crate::metrics::Metrics;
use crate::node::NodeController;
use crate::objects::ApiObjects;
use crate::pod::PodController;
use crate::provider::Provider;
use crate::ratelimit::RateLimiter;

/// Sets up logging from the flags. Call once, first thing in `main`.
pub fn init_logging(args: &KubeletArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Builds the API client from `--kubeconfig`, `KUBECONFIG` or the in-cluster environment.
pub async fn client(args: &KubeletArgs) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig given and not running in a cluster")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// Runs the nodes of this process until SIGINT or SIGTERM. `provider_for` builds
/// one provider instance per node name. Backend pods are left running on exit.
pub async fn run<F>(args: KubeletArgs, provider_name: &str, provider_for: F) -> anyhow::Result<()>
where
    F: Fn(&str) -> anyhow::Result<Arc<dyn Provider>>,
{
    let stop = CancellationToken::new();
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let names = args.node_names();
    // One client per node: with --bootstrap-kubeconfig each node has its
    // own identity (system:node:<name>), otherwise all share one.
    let (clients, cluster_ca) = match &args.bootstrap_kubeconfig {
        Some(path) => {
            // As the kubelet: a label the node may not set itself is a
            // configuration error, not a registration refused for ever.
            let refused: Vec<&str> = args
                .node_labels
                .iter()
                .map(|(key, _)| key.as_str())
                .filter(|key| !crate::node::restriction::node_may_set_label(key))
                .collect();
            if !refused.is_empty() {
                anyhow::bail!(
                    "--node-label {}: a node may not set these labels on itself under NodeRestriction (kubernetes.io and k8s.io labels other than the kubelet's); an admin sets them",
                    refused.join(", ")
                );
            }
            if let Some(kubeconfig) = &args.kubeconfig {
                info!(kubeconfig = %kubeconfig.display(), "--bootstrap-kubeconfig is set: each node works with its own certificate, not with the credentials of this kubeconfig");
            }
            let configs = crate::identity::bootstrap_configs(path, &args.cert_dir, &names);
            // Bootstrap waits (retrying) for certificates: a signal must still end it.
            let bootstraps = futures::future::try_join_all(
                configs
                    .iter()
                    .map(|c| crate::identity::start(c, metrics.clone(), stop.clone())),
            );
            let identities = tokio::select! {
                identities = bootstraps => identities?,
                _ = shutdown_signal() => Vec::new(),
            };
            let identities: Option<Vec<_>> = identities.into_iter().collect();
            match identities {
                Some(identities) if identities.len() == names.len() => {
                    let cluster_ca = identities.first().map(|i| i.cluster_ca.clone());
                    (
                        identities.into_iter().map(|i| i.client).collect::<Vec<_>>(),
                        cluster_ca,
                    )
                }
                _ => {
                    stop.cancel();
                    return Ok(());
                }
            }
        }
        None => {
            let client = client(&args).await?;
            (vec![client; names.len()], None)
        }
    };
    let Some(client) = clients.first().cloned() else {
        anyhow::bail!("no node to serve (--nodes 0)");
    };
    let limiter = Arc::new(RateLimiter::new(args.kube_api_qps, args.kube_api_burst));
    let event_limiter = Arc::new(RateLimiter::new(args.event_qps, args.event_burst));

    // One Service watch for every node: service link variables need them.
    let (services, writer) = reflector::store::<Service>();
    let svc_stream = reflector::reflector(
        writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|ev| async move {
        if let Err(e) = ev {
            warn!(error = %e, "service watch failed; retrying");
        }
    });
    tokio::spawn(svc_stream);
    // The objects pods reference are read with the node's own client: under
    // the Node authorizer a node reads only what its own pods reference.
    let shared_objects = Arc::new(ApiObjects::new(
        client.clone(),
        limiter.clone(),
        metrics.clone(),
        services.clone(),
    ));

    let taint = (!args.disable_taint).then(|| Taint {
        key: args.taint_key.clone(),
        value: Some(
            args.taint_value
                .clone()
                .unwrap_or_else(|| provider_name.to_string()),
        ),
        effect: args.taint_effect.clone(),
        time_added: None,
    });

    // One election per node (`--leader-elect`); without it every fence is open.
    let timings = if args.leader_elect {
        Some(args.leader_timings().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let identity = crate::leader::replica_identity();
    // The leader Lease is not the node's to write (NodeRestriction lets a
    // node write only its heartbeat Lease): with a node identity, the
    // replicas elect with the credentials of --kubeconfig or the pod's
    // ServiceAccount, which need nothing but that Lease.
    let election_client = match (&timings, &args.bootstrap_kubeconfig) {
        (Some(_), Some(_)) => self::client(&args)
            .await
            .context("--leader-elect with --bootstrap-kubeconfig: the leader Lease is held with the credentials of --kubeconfig or the pod's ServiceAccount")?,
        _ => client.clone(),
    };
    let lease_namespace = args
        .leader_elect_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| election_client.default_namespace().to_string());
    let mut electors = Vec::new();
    let lost = CancellationToken::new();

    let health_state = Arc::new(HealthState::new(names.len()));
    let mut tasks = Vec::new();
    let mut api_nodes = Vec::new();
    // Each node's kubelet API port, bound before the node advertises it.
    let mut listeners = Vec::new();
    for (name, port) in names
        .iter()
        .zip(crate::api::node_ports(args.kubelet_port, names.len())?)
    {
        let addr = std::net::SocketAddr::new(args.kubelet_listen_address, port);
        listeners.push(crate::api::bind(addr, name).await?);
    }
    for ((name, node_client), listener) in names.iter().zip(&clients).zip(&listeners) {
        let client = node_client.clone();
        let kubelet_port = listener
            .local_addr()
            .context("the kubelet API's bound address")?
            .port();
        let objects = if args.bootstrap_kubeconfig.is_some() {
            Arc::new(ApiObjects::new(
                client.clone(),
                limiter.clone(),
                metrics.clone(),
                services.clone(),
            ))
        } else {
            shared_objects.clone()
        };
        let provider = provider_for(name)
            .with_context(|| format!("setting up the provider for node {name}"))?;
        let elector = timings.clone().map(|timings| {
            crate::leader::Elector::new(
                election_client.clone(),
                crate::leader::ElectionConfig {
                    namespace: lease_namespace.clone(),
                    name: args.leader_lease_name(name),
                    identity: identity.clone(),
                    timings,
                },
            )
        });
        let fence = elector
            .as_ref()
            .map(|e| e.fence())
            .unwrap_or_else(crate::leader::Fence::open);
        let config = NodeConfig {
            name: name.clone(),
            node_ip: args.node_ip.to_string(),
            kubelet_port,
            taint: taint.clone(),
            os: args.os.to_lowercase(),
            labels: args.node_labels.clone(),
            pod_sync_workers: args.pod_sync_workers as usize,
            full_resync_period: args.full_resync_period.max(Duration::from_secs(1)),
            volume_refresh_period: args.volume_refresh_period.max(Duration::from_secs(1)),
            cluster_domain: args.cluster_domain.clone(),
            success_events: args.success_events.effective(args.no_success_events),
            provider_call_timeout: args.provider_call_timeout.max(Duration::from_secs(1)),
            node_restricted: args.bootstrap_kubeconfig.is_some(),
            fence: fence.clone(),
        };
        let ctx = Arc::new(NodeContext::new(
            client.clone(),
            config,
            limiter.clone(),
            event_limiter.clone(),
            metrics.clone(),
        ));
        let pods = PodController::new(ctx.clone(), provider.clone(), objects.clone());
        api_nodes.push((
            client.clone(),
            crate::api::NodeHandle {
                name: name.clone(),
                provider: provider.clone(),
                pods: pods.clone(),
            },
        ));
        let registered = Arc::new(Notify::new());
        let node = NodeController::new(ctx.clone(), provider.clone(), pods.clone());
        let node_stop = stop.clone();
        let node_fence = fence.clone();
        let pods_registered = registered.clone();
        tasks.push(tokio::spawn(async move {
            // A standby registers nothing and renews nothing: the node is the leader's.
            tokio::select! {
                _ = node_fence.acquired() => node.run(node_stop, registered).await,
                _ = node_stop.cancelled() => {}
            }
        }));
        if let Some(elector) = elector {
            let (stop, lost) = (stop.clone(), lost.clone());
            let runner = elector.clone();
            tasks.push(tokio::spawn(async move {
                if runner.run(stop).await == crate::leader::Ended::Lost {
                    lost.cancel();
                }
            }));
            electors.push(elector);
        }
        let pods_stop = stop.clone();
        let pods_client = client.clone();
        let hs = health_state.clone();
        let elected = fence.elected();
        tasks.push(tokio::spawn(async move {
            // Pods only after the node exists: the scheduler and the pods
            // need it. A standby watches its pods at once (its cache is warm
            // when it takes over) and counts as ready: it is ready to lead.
            if !elected {
                pods_registered.notified().await;
            }
            hs.node_registered();
            if let Err(e) = pods.run(pods_client, pods_stop).await {
                error!(error = %e, "pod controller stopped");
            }
        }));
    }
    info!(
        nodes = names.len(),
        provider = provider_name,
        "virtual kubelet started"
    );

    let api_config = crate::api::ApiConfig {
        node_ips: vec![args.node_ip],
        cert_files: args
            .serving_cert_file
            .clone()
            .zip(args.serving_key_file.clone()),
        client_ca_file: args.client_ca_file.clone(),
        cluster_ca,
        anonymous: args.anonymous_auth,
        authorization: args.authorization_mode,
        csr_renewal: crate::api::tls::CsrRenewal {
            lifetime: args.serving_cert_lifetime,
            renew_before: args.serving_cert_renew_before,
        },
        header_timeout: args.api_header_timeout,
        idle_timeout: args.api_idle_timeout,
        limits: crate::api::listener::ConnectionLimits::new(
            args.api_max_connections,
            1024,
            args.api_max_connections_per_ip,
        ),
    };
    if names.len() > 1 && api_config.cert_files.is_some() {
        warn!(
            nodes = names.len(),
            "every node serves the certificate of --serving-cert-file: it must name every node (leave it unset for a certificate per node, requested with a CSR)"
        );
    }
    for ((api_client, node), listener) in api_nodes.into_iter().zip(listeners) {
        let api_stop = stop.clone();
        let api_config = api_config.clone();
        tasks.push(tokio::spawn(async move {
            let name = node.name.clone();
            if let Err(e) =
                crate::api::serve(api_client, api_config, listener, node, api_stop).await
            {
                error!(node = %name, error = %e, "kubelet API stopped");
            }
        }));
    }
    let server = tokio::spawn(health::serve(
        args.metrics_addr,
        Arc::new(registry),
        health_state.clone(),
        stop.clone(),
    ));

    if !args.startup_timeout.is_zero() {
        let hs = health_state.clone();
        let timeout = args.startup_timeout;
        tokio::select! {
            ok = async move { tokio::time::timeout(timeout, hs.wait_registered()).await.is_ok() } => {
                if !ok {
                    stop.cancel();
                    anyhow::bail!("nodes not registered within --startup-timeout {timeout:?}");
                }
            }
            _ = shutdown_signal() => { stop.cancel(); return Ok(()); }
        }
    }

    let lost_lease = tokio::select! {
        _ = shutdown_signal() => false,
        _ = lost.cancelled() => true,
    };
    if lost_lease {
        // The fence closed when the lease was lost: nothing is written any
        // more. Exit, so that the process comes back as a standby.
        stop.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        server.abort();
        anyhow::bail!(
            "lost a node's leader lease (another replica holds it, or it was not renewed within the renew deadline); exiting, nothing was written after the loss"
        );
    }
    info!(timeout = ?args.shutdown_timeout, "shutting down; backend pods are left running");
    stop.cancel();
    // In-flight backend calls and writes finish within one bound for all
    // (the fence stays open while the lease is fresh), then the leases are
    // released so that the standbys take over at once.
    let deadline = tokio::time::Instant::now() + args.shutdown_timeout;
    for t in tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    for elector in &electors {
        elector.release().await;
    }
    server.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What a provider binary's `main` does before and after its own set-up:
/// parses its command line (`--help`/`--version` print and exit 0; a bad
/// flag is one line on stderr and exit code 2), or runs the kubelet.
pub mod binary {
    use std::process::ExitCode;
    use std::sync::Arc;

    use serde::de::DeserializeOwned;

    use crate::cli::KubeletArgs;
    use crate::provider::Provider;
    use crate::toolkit::node_config::NodeConfig;

    /// Parses the binary's command line; `Err` is the exit code to return.
    pub fn parse<C: clap::Parser>(binary: &str) -> Result<C, ExitCode> {
        match C::try_parse() {
            Ok(cli) => Ok(cli),
            Err(e) if !e.use_stderr() => {
                let _ = e.print();
                Err(ExitCode::SUCCESS)
            }
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                eprintln!("{binary}: {}", first.trim_start_matches("error: "));
                Err(ExitCode::from(2))
            }
        }
    }

    /// What every provider binary does first: parses its command line,
    /// starts logging, and reads the node config file of `--provider-config`
    /// (a bad one is a usage error). `kubelet` picks the common flags out of
    /// the binary's own. `Err` is the exit code to return.
    pub fn start<C, X>(
        binary: &str,
        kubelet: impl Fn(&C) -> &KubeletArgs,
    ) -> Result<(C, NodeConfig<X>), ExitCode>
    where
        C: clap::Parser,
        X: DeserializeOwned + Default + Clone,
    {
        let cli: C = parse(binary)?;
        let args = kubelet(&cli);
        super::init_logging(args);
        let config = NodeConfig::load_optional(args.provider_config.as_deref())
            .map_err(|e| usage_error(binary, e))?;
        Ok((cli, config))
    }

    /// A configuration error: one line on stderr, exit code 2.
    pub fn usage_error(binary: &str, message: impl std::fmt::Display) -> ExitCode {
        eprintln!("{binary}: {message}");
        ExitCode::from(2)
    }

    /// Runs the nodes of this process on a new Tokio runtime until SIGINT or
    /// SIGTERM (see [`super::run`]); the exit code says how it ended.
    pub fn run<F>(binary: &str, args: KubeletArgs, provider_name: &str, provider_for: F) -> ExitCode
    where
        F: Fn(&str) -> anyhow::Result<Arc<dyn Provider>>,
    {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{binary}: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(super::run(args, provider_name, provider_for)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{binary}: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}
