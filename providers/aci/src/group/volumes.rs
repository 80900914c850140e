//! The pod's volumes → the group's, and its pull secrets → registry
//! credentials. emptyDir stays emptyDir; secret, configMap, downwardAPI and
//! projected volumes (the service-account token included) become ACI
//! `secret` volumes holding the files the core resolved, base64.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Volume as KubeVolume;
use vk_core::{ProviderResult, ResolvedPod};

use super::invalid;
use crate::models::{ImageRegistryCredential, Volume};

pub(super) fn volume(pod: &ResolvedPod, v: &KubeVolume) -> ProviderResult<Volume> {
    let mut out = Volume {
        name: v.name.clone(),
        ..Default::default()
    };
    if v.empty_dir.is_some() {
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
            "volume {:?} is a {kind} volume: ACI takes emptyDir, secret, configMap, downwardAPI and projected volumes",
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
