//! The Secrets an azureFile volume names, read from the API when the pod's
//! group is put. The core resolves env, configMap, secret and projected
//! volumes, not azureFile (a storage account is a cloud thing): this is the
//! one read the provider makes itself. Keys and account names are never
//! logged; a failed read is retried, a Secret that does not exist refuses
//! the pod (see [`crate::group::container_group_with`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::OnceCell;
use vk_core::cli::KubeletArgs;
use vk_core::{ProviderError, ProviderResult, ResolvedPod};

use crate::group::{AzureFileSecrets, azure_file_secret_names};

/// Where Secrets are read from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The data of Secret `name` in `namespace`; `None` when it does not exist.
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> ProviderResult<Option<BTreeMap<String, Vec<u8>>>>;
}

/// Secrets from the API server, through a client made on first use from the
/// kubelet's own flags (`--kubeconfig`, `KUBECONFIG` or in-cluster).
pub struct ApiSecrets {
    args: KubeletArgs,
    client: OnceCell<kube::Client>,
}

impl ApiSecrets {
    /// A reader with the kubelet's flags.
    pub fn new(args: KubeletArgs) -> ApiSecrets {
        ApiSecrets {
            args,
            client: OnceCell::new(),
        }
    }
}

#[async_trait]
impl SecretSource for ApiSecrets {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> ProviderResult<Option<BTreeMap<String, Vec<u8>>>> {
        let client = self
            .client
            .get_or_try_init(|| vk_core::runtime::client(&self.args))
            .await
            .map_err(|e| ProviderError::unavailable(format!("Kubernetes client: {e:#}")))?;
        let secret = kube::Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| {
                ProviderError::unavailable(format!("reading Secret {namespace}/{name}: {e}"))
            })?;
        Ok(secret.map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // `stringData` is write-only and folded into `data` by the API
            // server; take it too in case a test double returns it.
            for (k, v) in s.string_data.unwrap_or_default() {
                data.entry(k).or_insert_with(|| v.into_bytes());
            }
            data
        }))
    }
}

/// The Secrets of the pod's azureFile volumes, read from `source`.
pub async fn azure_file_secrets(
    source: &dyn SecretSource,
    pod: &ResolvedPod,
) -> ProviderResult<AzureFileSecrets> {
    let names = azure_file_secret_names(pod);
    let mut secrets = AzureFileSecrets::new();
    if names.is_empty() {
        return Ok(secrets);
    }
    let namespace = pod
        .pod
        .metadata
        .namespace
        .as_deref()
        .ok_or_else(|| ProviderError::InvalidInput("the pod has no namespace".into()))?;
    for name in names {
        let data = source.secret_data(namespace, &name).await?;
        secrets.insert(name, data);
    }
    Ok(secrets)
}
