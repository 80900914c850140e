//! The node's own identity, as the kubelet gets it: TLS bootstrap with a
//! bootstrap kubeconfig, a client certificate `system:node:<name>` in group
//! `system:nodes` kept in `--cert-dir`, and its rotation while the process
//! runs.
//!
//! - No usable certificate in the cert dir: a key is generated in the
//!   process, and a CSR with signer
//!   `kubernetes.io/kube-apiserver-client-kubelet` is created with the
//!   bootstrap credentials; the controller-manager's approver approves it
//!   (the bootstrap token's group may have node client certificates), the
//!   signer issues it, and it is written to the cert dir ([`cert_dir`]).
//!   A refusal or a denial is logged with what to do and retried with
//!   back-off; the process does not exit.
//! - A usable certificate there (after a restart): it is used as it is.
//! - At a jittered 70-90 % of its lifetime the node asks for the next one
//!   with its current certificate (a node may renew its own), stores it and
//!   swaps it into the client every controller holds ([`SwappableClient`]):
//!   no restart, no lapse in the lease.
//!
//! This module owns the client's credentials only; what the node does with
//! the client is the controllers' business.

pub mod cert_dir;
mod swap;

use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use kube::config::{AuthInfo, Kubeconfig};
use kube::{Client, Config};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use cert_dir::ClientCert;
pub use swap::SwappableClient;

use crate::csr::{self, CsrError, CsrSpec};
use crate::metrics::Metrics;

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The usages that signer accepts for an ECDSA key.
const USAGES: &[&str] = &["digital signature", "client auth"];

/// The first wait after a failed request; it doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(5);
/// The longest wait between two requests.
const RETRY_MAX: Duration = Duration::from_secs(120);
/// How long a CSR may wait for approval and issuance before a new one is made.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The node's credentials once bootstrapped.
pub struct NodeIdentity {
    /// The client every controller uses: it always carries the current certificate.
    pub client: Client,
    /// The CA of the bootstrap kubeconfig (the cluster's), when it names one.
    pub cluster_ca: Vec<CertificateDer<'static>>,
    /// The certificate in use at start.
    pub certificate: ClientCert,
}

/// Where the node's credentials come from.
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    /// `--bootstrap-kubeconfig`: the apiserver, its CA and a bootstrap token.
    pub kubeconfig: PathBuf,
    /// `--cert-dir`.
    pub cert_dir: PathBuf,
    /// The node whose identity this is.
    pub node: String,
}

/// Gets the node a client certificate (reusing the one in the cert dir when
/// it is usable), and keeps renewing it until `stop`. Waits, retrying, until
/// a certificate is issued; `None` when `stop` fired first. Errors only on
/// what retrying cannot fix (an unreadable bootstrap kubeconfig, a cert dir
/// that cannot be created).
pub async fn start(
    config: &BootstrapConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Option<NodeIdentity>> {
    let path = &config.kubeconfig;
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading bootstrap kubeconfig {}", path.display()))?;
    let base = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using bootstrap kubeconfig {}", path.display()))?;
    cert_dir::ensure_dir(&config.cert_dir).map_err(anyhow::Error::msg)?;
    let cluster_ca = base
        .root_cert
        .iter()
        .flatten()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();

    let Some(cert) = initial_certificate(&base, config, &stop).await? else {
        return Ok(None);
    };
    let inner = client_with(&base, &cert).context("building the node's client")?;
    let swappable = SwappableClient::new(inner);
    metrics
        .client_cert_expiration
        .set(unix_seconds(cert.not_after));
    tokio::spawn(rotate(
        base,
        config.clone(),
        swappable.clone(),
        cert.clone(),
        metrics,
        stop,
    ));
    Ok(Some(NodeIdentity {
        client: swappable.client(),
        cluster_ca,
        certificate: cert,
    }))
}

/// The certificate in the cert dir when usable, or a new one from the bootstrap credentials.
async fn initial_certificate(
    base: &Config,
    config: &BootstrapConfig,
    stop: &CancellationToken,
) -> anyhow::Result<Option<ClientCert>> {
    let node = config.node.as_str();
    match cert_dir::load_current(&config.cert_dir) {
        Ok(Some(cert)) => match cert.unusable_for(node, SystemTime::now()) {
            None => {
                info!(node, cert = %config.cert_dir.join(cert_dir::CURRENT).display(),
                    "using the client certificate in the cert dir");
                return Ok(Some(cert));
            }
            Some(why) => {
                warn!(node, cert_dir = %config.cert_dir.display(), "the client certificate in the cert dir is not usable ({why}); bootstrapping a new one");
            }
        },
        Ok(None) => info!(node, cert_dir = %config.cert_dir.display(),
            "no client certificate yet; bootstrapping one with the bootstrap kubeconfig"),
        Err(e) => {
            warn!(node, error = %e, "cannot read the client certificate; bootstrapping a new one")
        }
    }
    let bootstrap = Client::try_from(base.clone())
        .context("building a client from the bootstrap kubeconfig")?;
    let mut delay = RETRY_INITIAL;
    loop {
        match obtain(&bootstrap, config, stop).await {
            Ok(Some(cert)) => {
                info!(node, cert = %config.cert_dir.join(cert_dir::CURRENT).display(),
                    subject = %cert.common_name, "client certificate bootstrapped");
                return Ok(Some(cert));
            }
            Ok(None) => return Ok(None),
            Err(e) => error!(
                node,
                error = %explain(&e, "bootstrap kubeconfig"),
                retry_in_secs = delay.as_secs(),
                "TLS bootstrap failed; retrying"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return Ok(None),
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Why a certificate request failed, and what would fix it.
#[derive(Debug, thiserror::Error)]
enum ObtainError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(
        "the CSR was not issued within {0:?}: is the controller-manager's csrapproving controller running, with the RBAC that lets node client CSRs be approved?"
    )]
    NotIssued(Duration),
    #[error("{0}")]
    Store(String),
}

/// One CSR, waited for, stored in the cert dir and read back.
async fn obtain(
    client: &Client,
    config: &BootstrapConfig,
    stop: &CancellationToken,
) -> Result<Option<ClientCert>, ObtainError> {
    let spec = CsrSpec {
        signer: SIGNER,
        usages: USAGES,
        node: config.node.clone(),
        dns_names: Vec::new(),
        ips: Vec::new(),
        lifetime: None,
        what: "client certificate",
        name_prefix: format!("node-csr-{}-", config.node),
    };
    let issued = match tokio::time::timeout(ISSUE_TIMEOUT, csr::request(client, &spec, stop)).await
    {
        Ok(Ok(Some(issued))) => issued,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(ObtainError::NotIssued(ISSUE_TIMEOUT)),
    };
    let path = cert_dir::store(&config.cert_dir, &issued.cert_pem, &issued.key_pem)
        .map_err(ObtainError::Store)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ObtainError::Store(format!("{}: {e}", path.display())))?;
    let cert = ClientCert::parse(&text)
        .map_err(|e| ObtainError::Store(format!("{}: {e}", path.display())))?;
    if let Some(why) = cert.unusable_for(&config.node, SystemTime::now()) {
        return Err(ObtainError::Store(format!(
            "the issued certificate {} is not usable: {why}",
            path.display()
        )));
    }
    Ok(Some(cert))
}

/// A failed request in words an operator can act on.
fn explain(e: &ObtainError, credentials: &str) -> String {
    match e {
        ObtainError::Csr(csr) => match csr.status() {
            Some(401) => format!(
                "the apiserver does not accept the credentials of the {credentials} (401: a bootstrap token that expired or was deleted?); create a new bootstrap token: {csr}"
            ),
            Some(403) => format!(
                "the credentials of the {credentials} may not create CSRs (403: bind the ClusterRole system:node-bootstrapper to them): {csr}"
            ),
            _ => match csr {
                CsrError::Denied(_) => format!(
                    "{csr}: the approver refused it (a CSR of these credentials for this node is not allowed)"
                ),
                other => other.to_string(),
            },
        },
        other => other.to_string(),
    }
}

/// `base` (the apiserver and its CA) with `cert` as the only credential.
fn client_with(base: &Config, cert: &ClientCert) -> anyhow::Result<Client> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // AuthInfo's key field is a secret string; building it through serde
    // keeps this crate free of the secret type's crate.
    let auth: AuthInfo = serde_json::from_value(serde_json::json!({
        "client-certificate-data": b64.encode(&cert.cert_pem),
        "client-key-data": b64.encode(&cert.key_pem),
    }))
    .context("client certificate credentials")?;
    let mut config = base.clone();
    config.auth_info = auth;
    Client::try_from(config).context("building a client with the node's certificate")
}

/// When to renew a certificate valid from `not_before` to `not_after`:
/// at `0.7 + 0.2 * jitter` of its lifetime (`jitter` in [0, 1)), as the
/// kubelet does, so nodes that started together do not renew together.
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let total = not_after.duration_since(not_before).unwrap_or_default();
    not_before + total.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// `t` in whole seconds since the Unix epoch (0 before it).
fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Renews the certificate at its rotation deadline, for as long as `stop` allows.
async fn rotate(
    base: Config,
    config: BootstrapConfig,
    swappable: SwappableClient,
    mut cert: ClientCert,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let node = config.node.clone();
    loop {
        let deadline = rotation_deadline(cert.not_before, cert.not_after, jitter());
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        info!(node = %node, renew_in_secs = wait.as_secs(),
            expires_in_secs = cert.not_after.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
            "client certificate in use");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let mut delay = RETRY_INITIAL;
        loop {
            // While the certificate is valid it asks for its successor (a
            // node may renew its own); once expired only the bootstrap
            // credentials can, if they still work.
            let expired = SystemTime::now() >= cert.not_after;
            let (client, credentials) = if expired {
                match Client::try_from(base.clone()) {
                    Ok(c) => (c, "bootstrap kubeconfig"),
                    Err(e) => {
                        error!(node = %node, error = %e, "cannot build the bootstrap client");
                        (swappable.client(), "expired client certificate")
                    }
                }
            } else {
                (swappable.client(), "current client certificate")
            };
            match obtain(&client, &config, &stop).await {
                Ok(Some(next)) => match client_with(&base, &next) {
                    Ok(inner) => {
                        swappable.swap(inner);
                        info!(node = %node, cert = %config.cert_dir.join(cert_dir::CURRENT).display(),
                            "client certificate renewed; new requests use it");
                        metrics
                            .client_cert_expiration
                            .set(unix_seconds(next.not_after));
                        cert = next;
                        break;
                    }
                    Err(e) => {
                        metrics.client_cert_renew_errors.inc();
                        error!(node = %node, error = %format!("{e:#}"), "cannot use the renewed certificate");
                    }
                },
                Ok(None) => return,
                Err(e) => {
                    metrics.client_cert_renew_errors.inc();
                    warn!(
                        node = %node,
                        error = %explain(&e, credentials),
                        retry_in_secs = delay.as_secs(),
                        "renewing the client certificate failed; the current one stays in use"
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// The bootstrap of each node of a process: one identity per node. A
/// process serving one node keeps its certificate in `cert_dir` itself, as
/// the kubelet does; one serving several keeps each node's in
/// `cert_dir/<node>`.
pub fn bootstrap_configs(
    kubeconfig: &Path,
    cert_dir: &Path,
    nodes: &[String],
) -> Vec<BootstrapConfig> {
    let config = |node: &String, cert_dir: PathBuf| BootstrapConfig {
        kubeconfig: kubeconfig.to_path_buf(),
        cert_dir,
        node: node.clone(),
    };
    match nodes {
        [node] => vec![config(node, cert_dir.to_path_buf())],
        _ => nodes
            .iter()
            .map(|node| config(node, cert_dir.join(node)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_between_70_and_90_percent_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(1000);
        assert_eq!(
            rotation_deadline(start, end, 0.0),
            start + Duration::from_secs(700)
        );
        assert_eq!(
            rotation_deadline(start, end, 0.5),
            start + Duration::from_secs(800)
        );
        assert_eq!(
            rotation_deadline(start, end, 1.0),
            start + Duration::from_secs(900)
        );
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
        let spread: std::collections::BTreeSet<u64> =
            (0..20).map(|_| (jitter() * 1e6) as u64).collect();
        assert!(spread.len() > 10, "jitter varies: {spread:?}");
    }

    #[test]
    fn each_node_has_a_cert_dir_of_its_own() {
        let one = bootstrap_configs(Path::new("/b"), Path::new("/c"), &["n0".into()]);
        let dirs = |configs: &[BootstrapConfig]| -> Vec<(String, PathBuf)> {
            configs
                .iter()
                .map(|c| (c.node.clone(), c.cert_dir.clone()))
                .collect()
        };
        assert_eq!(dirs(&one), [("n0".to_string(), PathBuf::from("/c"))]);
        let two = bootstrap_configs(
            Path::new("/b"),
            Path::new("/c"),
            &["n-0".into(), "n-1".into()],
        );
        assert_eq!(
            dirs(&two),
            [
                ("n-0".to_string(), PathBuf::from("/c/n-0")),
                ("n-1".to_string(), PathBuf::from("/c/n-1"))
            ]
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let refused = |code: u16| {
            ObtainError::Csr(CsrError::Api {
                what: "creating the client certificate CSR".into(),
                source: kube::Error::Api(Box::new(kube::core::Status {
                    code,
                    ..Default::default()
                })),
            })
        };
        assert!(
            explain(&refused(401), "bootstrap kubeconfig").contains("create a new bootstrap token")
        );
        assert!(
            explain(&refused(403), "bootstrap kubeconfig").contains("system:node-bootstrapper")
        );
        assert!(
            explain(&ObtainError::Csr(CsrError::Denied("csr-1".into())), "x").contains("refused")
        );
    }
}
