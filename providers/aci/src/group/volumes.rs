//! The pod's volumes → the group's, and its pull secrets → registry
//! credentials. emptyDir stays emptyDir; secret, configMap, downwardAPI and
//! projected volumes (the service-account token included) become ACI
//! `secret` volumes holding the files the core resolved, base64; azureFile
//! becomes ACI's `azureFile` with the storage account's name and key from
//! the Secret it names, as Kubernetes' own azureFile volume reads them.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{AzureFileVolumeSource, Volume as KubeVolume};
use vk_core::{ProviderResult, ResolvedPod};

use super::invalid;
use crate::models::{AzureFileVolume, ImageRegistryCredential, Volume};

/// The key of an azureFile Secret holding the storage account's name.
pub const AZURE_STORAGE_ACCOUNT_NAME: &str = "azurestorageaccountname";
/// The key of an azureFile Secret holding the storage account's key.
pub const AZURE_STORAGE_ACCOUNT_KEY: &str = "azurestorageaccountkey";

/// The Secrets the pod's azureFile volumes name (in the pod's namespace),
/// as read from the API: their data by Secret name, `None` for a Secret
/// that does not exist.
pub type AzureFileSecrets = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

/// The names of the Secrets the pod's azureFile volumes need.
pub fn azure_file_secret_names(pod: &ResolvedPod) -> Vec<String> {
    let mut names: Vec<String> = pod
        .pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| Some(v.azure_file.as_ref()?.secret_name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One key of an azureFile Secret, as text without surrounding blanks (a
/// Secret made from a file often ends in a newline).
fn secret_text(
    volume: &str,
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
    key: &str,
) -> ProviderResult<String> {
    let value = data.get(key).ok_or_else(|| {
        invalid(format!(
            "azureFile volume {volume:?}: Secret {secret:?} has no key {key:?} (it needs {AZURE_STORAGE_ACCOUNT_NAME} and {AZURE_STORAGE_ACCOUNT_KEY})"
        ))
    })?;
    let text = std::str::from_utf8(value)
        .map_err(|_| {
            invalid(format!(
                "azureFile volume {volume:?}: key {key:?} of Secret {secret:?} is not UTF-8 text"
            ))
        })?
        .trim();
    if text.is_empty() {
        return Err(invalid(format!(
            "azureFile volume {volume:?}: key {key:?} of Secret {secret:?} is empty"
        )));
    }
    Ok(text.to_string())
}

/// An azureFile volume with its account and key from `secrets`.
fn azure_file(
    volume: &str,
    source: &AzureFileVolumeSource,
    secrets: &AzureFileSecrets,
) -> ProviderResult<AzureFileVolume> {
    if source.share_name.is_empty() {
        return Err(invalid(format!(
            "azureFile volume {volume:?} names no share"
        )));
    }
    let secret = &source.secret_name;
    let data = secrets
        .get(secret)
        .and_then(Option::as_ref)
        .ok_or_else(|| {
            invalid(format!(
                "azureFile volume {volume:?}: Secret {secret:?} not found in the pod's namespace"
            ))
        })?;
    Ok(AzureFileVolume {
        share_name: source.share_name.clone(),
        storage_account_name: secret_text(volume, secret, data, AZURE_STORAGE_ACCOUNT_NAME)?,
        storage_account_key: Some(secret_text(
            volume,
            secret,
            data,
            AZURE_STORAGE_ACCOUNT_KEY,
        )?),
        read_only: source.read_only.filter(|r| *r),
    })
}

pub(super) fn volume(
    pod: &ResolvedPod,
    v: &KubeVolume,
    azure_files: &AzureFileSecrets,
) -> ProviderResult<Volume> {
    let mut out = Volume {
        name: v.name.clone(),
        ..Default::default()
    };
    if let Some(source) = &v.azure_file {
        out.azure_file = Some(azure_file(&v.name, source, azure_files)?);
    } else if v.empty_dir.is_some() {
        out.empty_dir = Some(serde_json::json!({}));
    } else if v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
    {
        let files = pod.volumes.get(&v.name).map(|f| &f.files);
        let mut secret = BTreeMap::new();
        for (path, content) in files.into_iter().flatten() {
            if path.contains('/') {
                return Err(invalid(format!(
                    "volume {:?}: file {path:?} is in a subdirectory, which ACI secret volumes cannot hold",
                    v.name
                )));
            }
            secret.insert(
                path.clone(),
                base64::engine::general_purpose::STANDARD.encode(content),
            );
        }
        out.secret = Some(secret);
    } else {
        let kind = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object()?
                    .keys()
                    .find(|k| k.as_str() != "name")
                    .cloned()
            })
            .unwrap_or_else(|| "unknown".into());
        return Err(invalid(format!(
            "volume {:?} is a {kind} volume: ACI takes emptyDir, secret, configMap, downwardAPI, projected and azureFile volumes",
            v.name
        )));
    }
    Ok(out)
}

/// Registry host of a credential's key: no scheme, no path.
fn registry_host(registry: &str) -> String {
    let rest = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    rest.split('/').next().unwrap_or(rest).to_string()
}

pub(super) fn registry_credentials(pod: &ResolvedPod) -> Vec<ImageRegistryCredential> {
    let mut seen = std::collections::BTreeSet::new();
    pod.pull_credentials
        .iter()
        .filter_map(|c| {
            let server = registry_host(&c.registry);
            if server.is_empty() || !seen.insert(server.clone()) {
                return None;
            }
            let password = if c.password.is_empty() {
                c.identity_token.clone()
            } else {
                Some(c.password.clone())
            };
            Some(ImageRegistryCredential {
                server,
                username: Some(c.username.clone()),
                password,
            })
        })
        .collect()
}
