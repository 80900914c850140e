//! Command-line flags and environment variables shared by every provider binary,
//! compatible with upstream virtual-kubelet where the names overlap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Flags of the core runtime. Provider binaries flatten this into their own parser.
#[derive(Args, Debug, Clone)]
pub struct KubeletArgs {
    /// Name of the node (with --nodes N > 1, the prefix of `<name>-0..N-1`).
    #[arg(
        long = "nodename",
        env = "DEFAULT_NODE_NAME",
        default_value = "virtual-kubelet"
    )]
    pub node_name: String,

    /// Number of nodes this process serves, each with its own lease, pods and provider instance.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nodes: u32,

    /// Provider configuration file.
    #[arg(long = "provider-config", env = "VK_PROVIDER_CONFIG")]
    pub provider_config: Option<PathBuf>,

    /// Kubeconfig file; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Bootstrap kubeconfig (the apiserver, its CA and a bootstrap token):
    /// the node gets a client certificate of its own (`system:node:<name>`,
    /// group `system:nodes`) with a CSR and works with it, under the Node
    /// authorizer, instead of the credentials of --kubeconfig. The
    /// certificate is kept in --cert-dir, reused after a restart and renewed
    /// before it expires. With --nodes N, each node gets its own.
    #[arg(long = "bootstrap-kubeconfig")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Directory of the node's client certificate (`kubelet-client-current.pem`,
    /// a symlink to the newest `kubelet-client-<timestamp>.pem`, certificate and
    /// key in one file); used with --bootstrap-kubeconfig. Created mode 0700.
    /// With --nodes N, each node's is in `<cert-dir>/<node name>`.
    #[arg(long = "cert-dir", default_value = "/var/lib/kubelet/pki")]
    pub cert_dir: PathBuf,

    /// Pods synced concurrently per node.
    #[arg(long = "pod-sync-workers", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pod_sync_workers: u32,

    /// How often every pod is reconciled without an event (e.g. 60s, 5m).
    #[arg(long = "full-resync-period", default_value = "1m", value_parser = parse_duration)]
    pub full_resync_period: Duration,

    /// How often the files of a pod's configMap, secret, projected and
    /// downwardAPI volumes are re-read to follow changes to their ConfigMaps
    /// and Secrets (e.g. 30s, 1m). Only pods with such volumes are touched, and
    /// the backend only when a file changed.
    #[arg(long = "volume-refresh-period", default_value = "30s", value_parser = parse_duration)]
    pub volume_refresh_period: Duration,

    /// How long one provider call (create, update, delete, status, list) may
    /// take before it counts as failed and is retried; a deletion gets the
    /// pod's grace period on top. A hung cloud API call then never holds a
    /// sync worker for good.
    #[arg(long = "provider-call-timeout", default_value = "2m", value_parser = parse_duration)]
    pub provider_call_timeout: Duration,

    /// Give up when the node is not registered within this time (0: wait forever).
    #[arg(long = "startup-timeout", default_value = "0s", value_parser = parse_duration)]
    pub startup_timeout: Duration,

    /// Do not taint the node (pods need no toleration; DaemonSet pods may land on it).
    #[arg(long = "disable-taint")]
    pub disable_taint: bool,

    /// Key of the node taint (default virtual-kubelet.io/provider).
    #[arg(
        long = "taint-key",
        env = "VKUBELET_TAINT_KEY",
        default_value = "virtual-kubelet.io/provider"
    )]
    pub taint_key: String,

    /// Value of the node taint (default: the provider name).
    #[arg(long = "taint-value", env = "VKUBELET_TAINT_VALUE")]
    pub taint_value: Option<String>,

    /// Effect of the node taint.
    #[arg(long = "taint-effect", env = "VKUBELET_TAINT_EFFECT", default_value = "NoSchedule", value_parser = ["NoSchedule", "PreferNoSchedule", "NoExecute"])]
    pub taint_effect: String,

    /// Operating system of the node's pods.
    #[arg(long, default_value = "Linux", value_parser = ["Linux", "linux", "Windows", "windows"])]
    pub os: String,

    /// Cluster DNS domain.
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Extra node label `key=value` (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,

    /// The node's InternalIP: the address the apiserver dials for logs and exec.
    #[arg(long = "node-ip", env = "VKUBELET_POD_IP", default_value = "127.0.0.1")]
    pub node_ip: std::net::IpAddr,

    /// Port of the kubelet HTTPS API. With --nodes N each node has its own
    /// server: node i listens on this port + i; 0 lets the OS pick each
    /// node's port. Each Node object advertises its own.
    #[arg(long = "kubelet-port", env = "KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,

    /// Address the kubelet HTTPS API listens on (port from --kubelet-port).
    #[arg(long = "kubelet-listen-address", default_value = "0.0.0.0")]
    pub kubelet_listen_address: std::net::IpAddr,

    /// Serving certificate of the kubelet API (PEM); requested with a CSR when unset.
    #[arg(
        long = "serving-cert-file",
        env = "APISERVER_CERT_LOCATION",
        requires = "serving_key_file"
    )]
    pub serving_cert_file: Option<PathBuf>,

    /// Private key of the serving certificate (PEM).
    #[arg(
        long = "serving-key-file",
        env = "APISERVER_KEY_LOCATION",
        requires = "serving_cert_file"
    )]
    pub serving_key_file: Option<PathBuf>,

    /// CA that signs kubelet API clients' certificates; the cluster's published
    /// client CA (kube-system/extension-apiserver-authentication) when unset.
    #[arg(long = "client-ca-file", env = "APISERVER_CA_CERT_LOCATION")]
    pub client_ca_file: Option<PathBuf>,

    /// Lifetime to ask for in the serving certificate's CSR (at least 10m); the signer's default when unset.
    #[arg(long = "serving-cert-lifetime", value_parser = parse_duration)]
    pub serving_cert_lifetime: Option<Duration>,

    /// Renew a CSR-issued serving certificate when this much of its lifetime is left (default: 20%).
    #[arg(long = "serving-cert-renew-before", value_parser = parse_duration)]
    pub serving_cert_renew_before: Option<Duration>,

    /// Accept unauthenticated kubelet API requests as system:anonymous (off by default).
    #[arg(long = "anonymous-auth")]
    pub anonymous_auth: bool,

    /// How kubelet API callers are authorized.
    #[arg(long = "authorization-mode", value_enum, default_value_t = crate::api::AuthorizationMode::Webhook)]
    pub authorization_mode: crate::api::AuthorizationMode,

    /// Address of the plain-HTTP metrics and health endpoints (/metrics,
    /// /healthz, /readyz; nothing about pods). Loopback by default: probes
    /// from the node's kubelet need 0.0.0.0:<port> (the charts set it).
    #[arg(long = "metrics-addr", default_value = "127.0.0.1:10255")]
    pub metrics_addr: std::net::SocketAddr,

    // The kubelet API's defences against hostile clients (docs/security.md).
    /// Deadline for a new kubelet API connection's TLS handshake and first
    /// request headers together, counted from accept.
    #[arg(long = "api-header-timeout", default_value = "10s", value_parser = parse_duration)]
    pub api_header_timeout: Duration,

    /// A kept-alive kubelet API connection is closed when its next request's
    /// headers have not arrived this long after the previous response
    /// (streams being served are not idle).
    #[arg(long = "api-idle-timeout", default_value = "90s", value_parser = parse_duration)]
    pub api_idle_timeout: Duration,

    /// Most kubelet API connections open at once; further connections are
    /// closed at accept. Default 1024, or the file-descriptor limit less 256
    /// when that is smaller, so the process keeps descriptors for its own
    /// work and its metrics port.
    #[arg(long = "api-max-connections", value_parser = clap::value_parser!(u32).range(1..))]
    pub api_max_connections: Option<u32>,

    /// Most kubelet API connections open at once from one client IP.
    #[arg(long = "api-max-connections-per-ip", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_max_connections_per_ip: u32,

    /// Kubernetes API requests per second, shared by every node of the process.
    /// One node may carry thousands of pods, a write or two each: the
    /// default lets 10,000 pods start in about 20 s; the apiserver's own
    /// priority and fairness is what protects the server.
    #[arg(long = "kube-api-qps", default_value_t = 500.0)]
    pub kube_api_qps: f64,

    /// Burst above the QPS.
    #[arg(long = "kube-api-burst", default_value_t = 1000)]
    pub kube_api_burst: u32,

    /// Events per second the process records, a budget of their own beside
    /// --kube-api-qps (the kubelet's --event-qps): a burst of pod events
    /// never delays a status write.
    #[arg(long = "event-qps", default_value_t = 250.0)]
    pub event_qps: f64,

    /// Burst above the event QPS.
    #[arg(long = "event-burst", default_value_t = 500)]
    pub event_burst: u32,

    /// Which `Provider*Success` events to record: `all` (upstream's set),
    /// `live` (create and update: the events `kubectl describe` of a live pod
    /// shows; a delete event names a pod gone a moment later) or `none`.
    #[arg(long = "success-events", value_enum, default_value_t = SuccessEvents::Live)]
    pub success_events: SuccessEvents,

    /// Shorthand for `--success-events none`.
    #[arg(long = "no-success-events", conflicts_with = "success_events")]
    pub no_success_events: bool,

    /// Run as one of several replicas serving the same nodes (a hot
    /// standby): per node, the replica that holds a `coordination.k8s.io/v1`
    /// Lease of its own acts; the others watch and write nothing until the
    /// Lease is free or expires. Off by default (one replica). With
    /// --bootstrap-kubeconfig the Lease is held with the credentials of
    /// --kubeconfig (or the pod's ServiceAccount), which then need only that
    /// Lease: a node's own may write no Lease but its heartbeat.
    #[arg(long = "leader-elect")]
    pub leader_elect: bool,

    /// Name of each node's leader Lease; `{node}` stands for the node's name
    /// (needed with --nodes N > 1). Not the node's heartbeat Lease in kube-node-lease.
    #[arg(long = "leader-elect-lease-name", default_value = "vk-rs-{node}")]
    pub leader_elect_lease_name: String,

    /// Namespace of the leader Leases; default: the process's own (its
    /// service account's in a pod, else the kubeconfig context's, else `default`).
    #[arg(long = "leader-elect-namespace", env = "VK_LEADER_ELECT_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,

    /// How long a standby waits after the last renewal it saw before it takes the Lease.
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it stops acting (and exits).
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,

    /// How often the leader renews and a standby tries to take the Lease.
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,

    /// On SIGTERM, how long in-flight backend calls and API writes may take
    /// to finish before the process releases its leader Leases and exits.
    /// Backend workloads are never deleted because the process stops.
    #[arg(long = "shutdown-timeout", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long = "log-level", env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Which success events a node records (`--success-events`).
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum SuccessEvents {
    /// `ProviderCreateSuccess`, `ProviderUpdateSuccess` and `ProviderDeleteSuccess`.
    All,
    /// `ProviderCreateSuccess` and `ProviderUpdateSuccess`.
    Live,
    /// None; failures are always recorded.
    None,
}

impl SuccessEvents {
    /// The setting after `--no-success-events`.
    pub fn effective(self, no_success_events: bool) -> SuccessEvents {
        if no_success_events {
            SuccessEvents::None
        } else {
            self
        }
    }

    /// Whether create and update successes are recorded.
    pub fn live(self) -> bool {
        self != SuccessEvents::None
    }

    /// Whether delete successes are recorded.
    pub fn delete(self) -> bool {
        self == SuccessEvents::All
    }
}

/// Log output format.
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl KubeletArgs {
    /// The node names this process serves.
    pub fn node_names(&self) -> Vec<String> {
        if self.nodes <= 1 {
            vec![self.node_name.clone()]
        } else {
            (0..self.nodes)
                .map(|i| format!("{}-{i}", self.node_name))
                .collect()
        }
    }
}

impl KubeletArgs {
    /// The leader Lease of node `node` (`--leader-elect-lease-name`).
    pub fn leader_lease_name(&self, node: &str) -> String {
        self.leader_elect_lease_name.replace("{node}", node)
    }

    /// The election timings, checked as client-go checks them.
    pub fn leader_timings(&self) -> Result<crate::leader::Timings, String> {
        let t = crate::leader::Timings {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        if t.retry_period.is_zero() || t.lease_duration < Duration::from_secs(1) {
            return Err("--leader-elect-retry-period must be above 0 and --leader-elect-lease-duration at least 1s".into());
        }
        if t.renew_deadline <= t.retry_period {
            return Err(
                "--leader-elect-renew-deadline must be longer than --leader-elect-retry-period"
                    .into(),
            );
        }
        if t.renew_deadline + crate::leader::SAFETY_MARGIN > t.lease_duration {
            return Err(format!(
                "--leader-elect-lease-duration must be at least --leader-elect-renew-deadline plus {}s",
                crate::leader::SAFETY_MARGIN.as_secs()
            ));
        }
        if self.nodes > 1 && !self.leader_elect_lease_name.contains("{node}") {
            return Err(
                "--leader-elect-lease-name must contain {node} with --nodes above 1".into(),
            );
        }
        Ok(t)
    }
}

/// Parses Go-style durations: `90s`, `5m`, `1h30m`, `250ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unit must be ms, s, m or h"
                ));
            }
        };
        total += Duration::from_secs_f64(secs);
        rest = tail;
    }
    Ok(total)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} must be key=value"))?;
    if k.is_empty() {
        return Err(format!("label {text:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kubelet: KubeletArgs,
    }

    fn args(flags: &[&str]) -> KubeletArgs {
        use clap::Parser;
        let mut argv = vec!["vk"];
        argv.extend(flags);
        Cli::try_parse_from(argv).expect("flags parse").kubelet
    }

    #[test]
    fn leader_election_flags() {
        let a = args(&["--leader-elect", "--nodename", "n1"]);
        assert!(a.leader_elect);
        assert_eq!(a.leader_lease_name("n1"), "vk-rs-n1");
        let t = a.leader_timings().expect("defaults are valid");
        assert_eq!(t.lease_duration, Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
        // The renew deadline must leave the fence's margin before the lease runs out.
        assert!(
            args(&["--leader-elect-renew-deadline", "14s"])
                .leader_timings()
                .is_err()
        );
        assert!(
            args(&["--leader-elect-retry-period", "10s"])
                .leader_timings()
                .is_err()
        );
        // Many nodes need a lease name per node.
        assert!(
            args(&["--nodes", "3", "--leader-elect-lease-name", "one"])
                .leader_timings()
                .is_err()
        );
        let many = args(&["--nodes", "3", "--leader-elect-lease-name", "vk-{node}-x"]);
        assert!(many.leader_timings().is_ok());
        assert_eq!(
            many.leader_lease_name("virtual-kubelet-2"),
            "vk-virtual-kubelet-2-x"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_label("nope").is_err());
    }
}
