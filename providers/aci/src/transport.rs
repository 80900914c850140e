//! How `vk-aci` reaches Azure: the HTTP transport (reqwest over rustls on
//! ring, the system's roots plus `--extra-ca-file`), the TLS of the exec
//! and attach WebSockets (the same roots), azure_core's client options
//! (retries, the cloud's authority) and the azure_identity credential
//! (workload identity, client secret or managed identity).

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::config::{AciConfig, Credential};

/// The `--extra-ca-file` certificates, if any.
fn extra_roots(
    config: &AciConfig,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let Some(path) = &config.extra_ca_file else {
        return Ok(Vec::new());
    };
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--extra-ca-file {}: {e}", path.display()))
}

/// TLS of the WebSockets: the platform's roots plus the extra CAs, as the
/// HTTP transport.
pub(crate) fn websocket_tls(config: &AciConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots(config)?,
        provider.clone(),
    )
    .map_err(|e| anyhow::anyhow!("cannot load the TLS roots: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// The HTTP transport: reqwest over rustls (ring), system roots plus extra CAs.
pub(crate) fn transport(config: &AciConfig) -> anyhow::Result<Transport> {
    // reqwest (rustls without a provider) uses the process default: ring,
    // as the rest of the workspace. Another part of the process may have
    // installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra = Vec::new();
    if let Some(path) = &config.extra_ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--extra-ca-file {}: {e}", path.display()))?;
        extra = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("--extra-ca-file {}: {e}", path.display()))?;
    }
    let client = reqwest::Client::builder()
        .tls_certs_merge(extra)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
    Ok(Transport::new(Arc::new(client)))
}

pub(crate) fn client_options(transport: &Transport, config: &AciConfig) -> ClientOptions {
    let mut cloud = azure_core::cloud::CustomConfiguration::default();
    cloud.authority_host = config
        .authority_host
        .as_str()
        .trim_end_matches('/')
        .to_string();
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 8,
            max_total_elapsed: azure_core::time::Duration::seconds(60),
            max_delay: azure_core::time::Duration::seconds(30),
        }),
        cloud: Some(Arc::new(azure_core::cloud::CloudConfiguration::Custom(
            cloud,
        ))),
        ..Default::default()
    }
}

/// The credential of the settings, with its token requests on `transport`.
pub(crate) fn credential(
    config: &AciConfig,
    transport: &Transport,
) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let options = client_options(transport, config);
    let credential: Arc<dyn TokenCredential> = match &config.credential {
        Credential::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id: Some(client_id.clone()),
            tenant_id: Some(tenant_id.clone()),
            token_file_path: Some(token_file.clone()),
        }))?,
        Credential::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::from(secret.clone()),
            Some(ClientSecretCredentialOptions {
                client_options: options,
            }),
        )?,
        Credential::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))?
        }
    };
    Ok(credential)
}
