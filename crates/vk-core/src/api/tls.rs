//! The kubelet API's serving certificate: from files (reloaded when they change)
//! or requested from the cluster with a `kubernetes.io/kubelet-serving` CSR and
//! renewed before it expires. Also the client CA that verifies callers' certificates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Holds the current serving certificate; rustls asks it on every handshake.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    /// Replaces the certificate from PEM text. Returns its expiry.
    pub fn set_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<SystemTime, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate PEM: {e}"))?;
        let first = certs.first().ok_or("no certificate in PEM")?;
        let expiry = not_after(first)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key PEM: {e}"))?;
        let signing = any_supported_type(&key).map_err(|e| format!("private key: {e}"))?;
        let ck = CertifiedKey::new(certs, signing);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ck));
        Ok(expiry)
    }

    /// Whether a certificate is loaded.
    pub fn ready(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("certificate: {e}"))?;
    let secs = parsed.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// Loads cert and key files and reloads them whenever their modification time changes.
pub async fn serve_from_files(
    store: Arc<CertStore>,
    cert: PathBuf,
    key: PathBuf,
    stop: CancellationToken,
) -> Result<(), String> {
    fn load(store: &CertStore, cert: &Path, key: &Path) -> Result<(), String> {
        let c = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let k = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        store.set_pem(&c, &k).map(|_| ())
    }
    load(&store, &cert, &key)?;
    info!(cert = %cert.display(), "serving certificate loaded from files");
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = (stamp(&cert), stamp(&key));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.cancelled() => return,
            }
            let now = (stamp(&cert), stamp(&key));
            if now != last {
                match load(&store, &cert, &key) {
                    Ok(()) => info!(cert = %cert.display(), "serving certificate reloaded"),
                    Err(e) => {
                        warn!(error = %e, "reloading the serving certificate failed; keeping the old one")
                    }
                }
                last = now;
            }
        }
    });
    Ok(())
}

/// Requests a serving certificate with a CSR (signer `kubernetes.io/kubelet-serving`)
/// for `node` and `ips`, waits for it to be approved and issued, and renews it at
/// 80% of its lifetime. Runs until `stop`.
pub async fn serve_from_csr(
    client: Client,
    store: Arc<CertStore>,
    node: String,
    ips: Vec<std::net::IpAddr>,
    renewal: CsrRenewal,
    stop: CancellationToken,
) {
    loop {
        let expiry = match request_certificate(
            &client,
            &store,
            &node,
            &ips,
            renewal.lifetime,
            &stop,
        )
        .await
        {
            Ok(Some(expiry)) => expiry,
            Ok(None) => return,
            Err(e) => {
                warn!(node = %node, error = %e, "serving certificate request failed; retrying in 10s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let lifetime = expiry.duration_since(SystemTime::now()).unwrap_or_default();
        let renew_in = renewal.renew_in(lifetime);
        info!(node = %node, renew_in_secs = renew_in.as_secs(), "serving certificate issued");
        tokio::select! {
            _ = tokio::time::sleep(renew_in) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// When a CSR-issued serving certificate is renewed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsrRenewal {
    /// Lifetime asked for in the CSR (`spec.expirationSeconds`, at least 10
    /// minutes); the signer's default (a year) when `None`.
    pub lifetime: Option<Duration>,
    /// Renew when this much lifetime is left; 20% of the lifetime when `None`.
    pub renew_before: Option<Duration>,
}

impl CsrRenewal {
    /// How long to wait before renewing a certificate that has `lifetime` left.
    pub fn renew_in(&self, lifetime: Duration) -> Duration {
        let before = self.renew_before.unwrap_or(lifetime.mul_f64(0.2));
        lifetime.saturating_sub(before).max(Duration::from_secs(5))
    }
}

async fn request_certificate(
    client: &Client,
    store: &CertStore,
    node: &str,
    ips: &[std::net::IpAddr],
    lifetime: Option<Duration>,
    stop: &CancellationToken,
) -> Result<Option<SystemTime>, String> {
    let spec = crate::csr::CsrSpec {
        signer: "kubernetes.io/kubelet-serving",
        usages: &["digital signature", "server auth"],
        node: node.to_string(),
        dns_names: vec![node.to_string()],
        ips: ips.to_vec(),
        lifetime,
        what: "serving certificate",
        name_prefix: format!("csr-{node}-"),
    };
    match crate::csr::request(client, &spec, stop).await {
        Ok(Some(issued)) => store
            .set_pem(&issued.cert_pem, issued.key_pem.as_bytes())
            .map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The CA that signs API clients' certificates: a file, or the cluster's
/// `kube-system/extension-apiserver-authentication` ConfigMap.
pub async fn client_ca(
    client: &Client,
    file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = match file {
        Some(f) => std::fs::read(f).map_err(|e| format!("client CA {}: {e}", f.display()))?,
        None => {
            let cm = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
                .get("extension-apiserver-authentication")
                .await
                .map_err(|e| {
                    format!("reading kube-system/extension-apiserver-authentication: {e}")
                })?;
            cm.data
                .and_then(|d| d.get("client-ca-file").cloned())
                .ok_or("extension-apiserver-authentication has no client-ca-file")?
                .into_bytes()
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client CA PEM: {e}"))?;
    if certs.is_empty() {
        return Err("client CA holds no certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod renewal_tests {
    use super::*;

    #[test]
    fn renews_at_80_percent_by_default_or_before_a_margin() {
        let d = CsrRenewal::default();
        assert_eq!(
            d.renew_in(Duration::from_secs(1000)),
            Duration::from_secs(800)
        );
        let margin = CsrRenewal {
            lifetime: None,
            renew_before: Some(Duration::from_secs(590)),
        };
        assert_eq!(
            margin.renew_in(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            margin.renew_in(Duration::from_secs(100)),
            Duration::from_secs(5),
            "never a busy loop"
        );
    }
}
