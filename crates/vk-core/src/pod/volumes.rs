//! Volume materialisation: the files of configMap, secret, downwardAPI and
//! projected volumes (service-account tokens from the TokenRequest API included),
//! computed by the core for every provider.
//!
//! The API lookups go through [`ObjectSource`] so the translation itself is
//! testable without a server.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Service,
    ServiceAccountTokenProjection, Volume,
};

use super::env::{EnvSources, field_value, resource_value};
use crate::provider::VolumeFiles;

/// Where volume contents come from: the API in production, maps in tests.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// A ConfigMap, `Ok(None)` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    /// A Secret, `Ok(None)` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
    /// A bound service-account token for the pod: `(token, expiry)`.
    async fn token(
        &self,
        pod: &Pod,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<(String, SystemTime), String>;
    /// Services whose link variables a pod of `namespace` receives (its
    /// namespace's when `enable_links`, and `default/kubernetes`). None by default.
    fn services_for(&self, _namespace: &str, _enable_links: bool) -> Vec<Service> {
        Vec::new()
    }
    /// Forgets what is kept for a pod that is gone (its tokens).
    fn forget_pod(&self, _uid: &str) {}
}

/// A volume could not be materialised: the pod is not started (and retried).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("volume {volume}: {message}")]
pub struct VolumeError {
    /// The volume's name.
    pub volume: String,
    /// What went wrong.
    pub message: String,
}

/// The materialised volumes of a pod and when they must be refreshed at the latest.
#[derive(Debug, Default, Clone)]
pub struct Materialised {
    /// Files by volume name.
    pub volumes: BTreeMap<String, VolumeFiles>,
    /// The earliest time a token must be renewed (80% of its lifetime).
    pub refresh_at: Option<SystemTime>,
}

/// Computes the files of every volume the core materialises.
pub async fn materialise(
    pod: &Pod,
    env: &EnvSources,
    src: &dyn ObjectSource,
) -> Result<Materialised, VolumeError> {
    let mut out = Materialised::default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    for vol in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let err = |message: String| VolumeError {
            volume: vol.name.clone(),
            message,
        };
        let mut files = VolumeFiles::default();
        if let Some(cm) = &vol.config_map {
            files.default_mode = cm.default_mode;
            match src.config_map(&ns, &cm.name).await.map_err(err)? {
                Some(obj) => add_config_map(
                    &mut files.files,
                    &obj,
                    cm.items.as_deref(),
                    cm.optional == Some(true),
                )
                .map_err(err)?,
                None if cm.optional == Some(true) => {}
                None => return Err(err(format!("configmap {ns}/{} not found", cm.name))),
            }
        } else if let Some(s) = &vol.secret {
            files.default_mode = s.default_mode;
            let name = s.secret_name.clone().unwrap_or_default();
            match src.secret(&ns, &name).await.map_err(err)? {
                Some(obj) => {
                    add_secret(
                        &mut files.files,
                        &obj,
                        s.items.as_deref(),
                        s.optional == Some(true),
                    )
                    .map_err(err)?;
                    files.sensitive = files.files.keys().cloned().collect();
                }
                None if s.optional == Some(true) => {}
                None => return Err(err(format!("secret {ns}/{name} not found"))),
            }
        } else if let Some(d) = &vol.downward_api {
            files.default_mode = d.default_mode;
            add_downward(
                &mut files.files,
                pod,
                d.items.as_deref().unwrap_or_default(),
                env,
            )
            .map_err(err)?;
        } else if let Some(p) = &vol.projected {
            files.default_mode = p.default_mode;
            for source in p.sources.iter().flatten() {
                if let Some(t) = &source.service_account_token {
                    let (token, refresh) = project_token(pod, &sa, t, src).await.map_err(err)?;
                    files.files.insert(t.path.clone(), token.into_bytes());
                    files.sensitive.insert(t.path.clone());
                    out.refresh_at = Some(out.refresh_at.map_or(refresh, |r| r.min(refresh)));
                }
                if let Some(cm) = &source.config_map {
                    let optional = cm.optional == Some(true);
                    match src.config_map(&ns, &cm.name).await.map_err(err)? {
                        Some(obj) => {
                            add_config_map(&mut files.files, &obj, cm.items.as_deref(), optional)
                                .map_err(err)?
                        }
                        None if optional => {}
                        None => return Err(err(format!("configmap {ns}/{} not found", cm.name))),
                    }
                }
                if let Some(s) = &source.secret {
                    let optional = s.optional == Some(true);
                    match src.secret(&ns, &s.name).await.map_err(err)? {
                        Some(obj) => {
                            let before = files.files.clone();
                            add_secret(&mut files.files, &obj, s.items.as_deref(), optional)
                                .map_err(err)?;
                            files.sensitive.extend(added(&before, &files.files));
                        }
                        None if optional => {}
                        None => return Err(err(format!("secret {ns}/{} not found", s.name))),
                    }
                }
                if let Some(d) = &source.downward_api {
                    add_downward(
                        &mut files.files,
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        env,
                    )
                    .map_err(err)?;
                }
            }
        } else {
            continue;
        }
        out.volumes.insert(vol.name.clone(), files);
    }
    Ok(out)
}

/// The paths of `after` that are new or changed since `before`.
fn added(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(path, content)| before.get(*path) != Some(content))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Whether the pod has any volume the core materialises.
pub fn has_materialised_volumes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v: &Volume| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

/// The ConfigMap the apiserver's root-CA publisher puts in every namespace, and
/// that every `kube-api-access-*` volume projects next to its token.
const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// Whether the pod's volume files depend on something that can change without
/// an event on the pod itself, so they must be re-materialised periodically
/// (every `--volume-refresh-period`) to follow it, as the kubelet does:
///
/// - configMap and secret volumes, and configMap/secret sources of projected volumes;
/// - downwardAPI files with a `resourceFieldRef`: an unset limit reads node allocatable.
///
/// Not periodic, because a pod event already re-materialises them (see
/// [`downward_inputs_hash`]): downwardAPI `fieldRef` files (labels, annotations,
/// names). Tokens have their own schedule ([`Materialised::refresh_at`]).
///
/// The `kube-root-ca.crt` source of a projected volume that also holds a
/// service-account token is deliberately left to the token's schedule (80% of
/// its lifetime, about 48 minutes): that is the `kube-api-access-*` volume the
/// apiserver adds to nearly every pod, and a 30 s timer on it would turn every
/// node into a steady stream of syncs (10,000 pods: 333 a second) for a bundle
/// that changes only when the cluster CA rotates, a procedure during which old
/// and new CA are both trusted for far longer than a token lifetime.
pub fn follows_objects(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v: &Volume| {
            if v.config_map.is_some() || v.secret.is_some() {
                return true;
            }
            if let Some(d) = &v.downward_api {
                return d
                    .items
                    .iter()
                    .flatten()
                    .any(|i| i.resource_field_ref.is_some());
            }
            let Some(p) = &v.projected else {
                return false;
            };
            let sources = p.sources.as_deref().unwrap_or_default();
            let has_token = sources.iter().any(|s| s.service_account_token.is_some());
            sources.iter().any(|s| {
                s.secret.is_some()
                    || s.config_map
                        .as_ref()
                        .is_some_and(|cm| !(has_token && cm.name == ROOT_CA_CONFIG_MAP))
                    || s.downward_api.as_ref().is_some_and(|d| {
                        d.items
                            .iter()
                            .flatten()
                            .any(|i| i.resource_field_ref.is_some())
                    })
            })
        })
}

/// A hash of the pod fields its downwardAPI volume files read and that can
/// change on a running pod: labels, annotations and container resources. 0
/// when no such file exists. The controller re-materialises when it changes,
/// so a label change shows in the files with the pod's own update event.
/// (Names, namespace, UID, node and service account never change; the pod IP
/// is fixed once the backend assigned it.)
pub fn downward_inputs_hash(pod: &Pod) -> u64 {
    let items = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|v| {
            let direct = v.downward_api.iter().flat_map(|d| d.items.iter().flatten());
            let projected = v
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .flat_map(|s| s.downward_api.iter().flat_map(|d| d.items.iter().flatten()));
            direct.chain(projected)
        });
    let mut reads_mutable = false;
    for item in items {
        let mutable_field = item.field_ref.as_ref().is_some_and(|f| {
            f.field_path.starts_with("metadata.labels")
                || f.field_path.starts_with("metadata.annotations")
        });
        if mutable_field || item.resource_field_ref.is_some() {
            reads_mutable = true;
            break;
        }
    }
    if !reads_mutable {
        return 0;
    }
    let mut h = DefaultHasher::new();
    pod.metadata.labels.hash(&mut h);
    pod.metadata.annotations.hash(&mut h);
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        c.name.hash(&mut h);
        serde_json::to_string(&c.resources)
            .unwrap_or_default()
            .hash(&mut h);
    }
    // Never 0 when something is read, so "no such file" stays distinguishable.
    h.finish().max(1)
}

async fn project_token(
    pod: &Pod,
    sa: &str,
    t: &ServiceAccountTokenProjection,
    src: &dyn ObjectSource,
) -> Result<(String, SystemTime), String> {
    let expiration = t.expiration_seconds.unwrap_or(3600).max(600);
    let issued = SystemTime::now();
    let (token, expiry) = src
        .token(pod, sa, t.audience.as_deref(), expiration)
        .await?;
    // The kubelet renews at 80% of the lifetime (or after 24 h, whichever comes first).
    let lifetime = expiry
        .duration_since(issued)
        .unwrap_or(Duration::from_secs(expiration as u64));
    let refresh = issued + (lifetime.mul_f64(0.8)).min(Duration::from_secs(24 * 3600));
    Ok((token, refresh))
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return Err(format!("invalid file path {path:?}"));
    }
    Ok(())
}

fn select(
    out: &mut BTreeMap<String, Vec<u8>>,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    what: &str,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                check_path(&item.path)?;
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(item.path.clone(), v.clone());
                    }
                    None if optional => {}
                    None => return Err(format!("key {} not found in {what}", item.key)),
                }
            }
        }
        _ => {
            for (k, v) in data {
                check_path(&k)?;
                out.insert(k, v);
            }
        }
    }
    Ok(())
}

fn add_config_map(
    out: &mut BTreeMap<String, Vec<u8>>,
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<(), String> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    let what = format!("configmap {}", cm.metadata.name.clone().unwrap_or_default());
    select(out, data, items, optional, &what)
}

fn add_secret(
    out: &mut BTreeMap<String, Vec<u8>>,
    s: &Secret,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<(), String> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    let what = format!("secret {}", s.metadata.name.clone().unwrap_or_default());
    select(out, data, items, optional, &what)
}

fn add_downward(
    out: &mut BTreeMap<String, Vec<u8>>,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    env: &EnvSources,
) -> Result<(), String> {
    for item in items {
        check_path(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, env)?
        } else if let Some(r) = &item.resource_field_ref {
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                })
                .ok_or_else(|| {
                    format!(
                        "container {:?} not found for {}",
                        r.container_name, item.path
                    )
                })?;
            resource_value(
                container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                env,
            )?
        } else {
            continue;
        };
        out.insert(item.path.clone(), value.into_bytes());
    }
    Ok(())
}

/// (pod UID, service account, audience, expiration seconds).
type TokenKey = (String, String, Option<String>, i64);
/// (token, expiry, refresh time).
type TokenEntry = (String, SystemTime, SystemTime);

/// A cache of projected tokens, so a resync does not request a new token each time.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenKey, TokenEntry>>,
}

impl TokenCache {
    /// A cached token for (pod UID, service account, audience, expiration) still before its refresh time.
    pub fn get(
        &self,
        uid: &str,
        sa: &str,
        audience: Option<&str>,
        exp: i64,
    ) -> Option<(String, SystemTime)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (token, expiry, refresh) = entries.get(&(
            uid.to_string(),
            sa.to_string(),
            audience.map(str::to_string),
            exp,
        ))?;
        (SystemTime::now() < *refresh).then(|| (token.clone(), *expiry))
    }

    /// Stores a token with its expiry; it is reused until 80% of its lifetime.
    pub fn put(
        &self,
        uid: &str,
        sa: &str,
        audience: Option<&str>,
        exp: i64,
        token: String,
        expiry: SystemTime,
    ) {
        let now = SystemTime::now();
        let refresh = now + expiry.duration_since(now).unwrap_or_default().mul_f64(0.8);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            (
                uid.to_string(),
                sa.to_string(),
                audience.map(str::to_string),
                exp,
            ),
            (token, expiry, refresh),
        );
    }

    /// Drops every token of a pod.
    pub fn forget_pod(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, _| k.0 != uid);
    }
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
