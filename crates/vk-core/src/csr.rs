//! Certificates issued by the cluster through a `certificates.k8s.io/v1`
//! CertificateSigningRequest: the kubelet API's serving certificate
//! (`kubernetes.io/kubelet-serving`, see `api/tls.rs`) and the node's client
//! certificate (`kubernetes.io/kube-apiserver-client-kubelet`, see
//! `identity/`). The private key is generated here and never sent anywhere:
//! only the CSR (public key and subject) goes to the apiserver.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How often an unissued CSR is read during its first [`POLL_FAST_FOR`].
const POLL_FAST: Duration = Duration::from_secs(1);
/// How long after the request [`POLL_FAST`] applies.
const POLL_FAST_FOR: Duration = Duration::from_secs(60);
/// How often an unissued CSR is read after that.
const POLL_SLOW: Duration = Duration::from_secs(30);

/// The shortest lifetime a CSR may ask for (`spec.expirationSeconds`).
pub const MIN_LIFETIME: Duration = Duration::from_secs(600);

/// What to ask for.
#[derive(Clone, Debug)]
pub struct CsrSpec {
    /// `spec.signerName`.
    pub signer: &'static str,
    /// `spec.usages`.
    pub usages: &'static [&'static str],
    /// The node the certificate is for: CN `system:node:<node>`, O `system:nodes`.
    pub node: String,
    /// DNS subject alternative names (serving certificates).
    pub dns_names: Vec<String>,
    /// IP subject alternative names (serving certificates).
    pub ips: Vec<IpAddr>,
    /// `spec.expirationSeconds` (at least [`MIN_LIFETIME`]); the signer's
    /// default when `None`.
    pub lifetime: Option<Duration>,
    /// What the log lines call it ("serving certificate").
    pub what: &'static str,
    /// The CSR's `metadata.generateName` (`csr-<node>-` for serving
    /// certificates, `node-csr-<node>-` for client certificates, so that
    /// tools looking for one kind by name never take the other).
    pub name_prefix: String,
}

/// An issued certificate and its key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate chain as the signer returned it.
    pub cert_pem: Vec<u8>,
    /// The private key (PKCS#8), generated in this process.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem_len", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// The key or the CSR could not be built.
    #[error("building the request: {0}")]
    Build(String),
    /// The apiserver refused or failed a call (`what` says which).
    #[error("{what}: {source}")]
    Api {
        /// The call: "creating the CSR", "reading CSR csr-x".
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The CSR was denied or failed by an approver or the signer.
    #[error("CSR {0} was denied or failed")]
    Denied(String),
    /// The CSR was deleted before a certificate was issued.
    #[error("CSR {0} was deleted before it was issued")]
    Deleted(String),
}

impl CsrError {
    /// The HTTP status of an apiserver refusal (401: the credentials are
    /// not accepted at all, e.g. an expired bootstrap token; 403: they are
    /// not allowed to do this).
    pub fn status(&self) -> Option<u16> {
        match self {
            CsrError::Api {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }
}

/// Generates a key, creates the CSR, and waits until it is issued. `None`
/// when `stop` fired first. A CSR nobody approves is read every second for a
/// minute, then every 30 s: it never costs a GET per second for ever.
pub async fn request(
    client: &Client,
    spec: &CsrSpec,
    stop: &CancellationToken,
) -> Result<Option<Issued>, CsrError> {
    let key = rcgen::KeyPair::generate().map_err(|e| CsrError::Build(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(spec.dns_names.clone())
        .map_err(|e| CsrError::Build(e.to_string()))?;
    params
        .subject_alt_names
        .extend(spec.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        format!("system:node:{}", spec.node),
    );
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name = dn;
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| CsrError::Build(e.to_string()))?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(spec.name_prefix.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: spec.signer.into(),
            usages: Some(spec.usages.iter().map(|u| u.to_string()).collect()),
            expiration_seconds: spec
                .lifetime
                .map(|l| i32::try_from(l.max(MIN_LIFETIME).as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|source| CsrError::Api {
            what: format!("creating the {} CSR", spec.what),
            source,
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    info!(node = %spec.node, csr = %name, signer = spec.signer, "requested a {}; waiting for approval and issuance (kubectl certificate approve {name}, if no approver handles this signer)", spec.what);
    let requested = Instant::now();
    loop {
        let poll = if requested.elapsed() < POLL_FAST_FOR {
            POLL_FAST
        } else {
            POLL_SLOW
        };
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => return Ok(None),
        }
        let current = api
            .get_opt(&name)
            .await
            .map_err(|source| CsrError::Api {
                what: format!("reading CSR {name}"),
                source,
            })?
            .ok_or_else(|| CsrError::Deleted(name.clone()))?;
        let status = current.status.unwrap_or_default();
        if status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Denied" || c.type_ == "Failed")
        {
            return Err(CsrError::Denied(name));
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(Some(Issued {
                cert_pem: cert.0,
                key_pem: key.serialize_pem(),
            }));
        }
    }
}
