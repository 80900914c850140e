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
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeSource,
        ObjectFieldSelector, PodSpec, ProjectedVolumeSource, ResourceFieldSelector,
        SecretProjection, SecretVolumeSource, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    struct Fake;

    #[async_trait]
    impl ObjectSource for Fake {
        async fn config_map(&self, _ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
            Ok(
                (name == "kube-root-ca.crt" || name == "cfg").then(|| ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    data: Some(
                        [
                            ("ca.crt".to_string(), "CA".to_string()),
                            ("app.conf".to_string(), "x=1".to_string()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
            )
        }
        async fn secret(&self, _ns: &str, _name: &str) -> Result<Option<Secret>, String> {
            Ok(None)
        }
        async fn token(
            &self,
            pod: &Pod,
            sa: &str,
            aud: Option<&str>,
            exp: i64,
        ) -> Result<(String, SystemTime), String> {
            Ok((
                format!(
                    "token-for-{}-{sa}-{}",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    aud.unwrap_or("api")
                ),
                SystemTime::now() + Duration::from_secs(exp as u64),
            ))
        }
    }

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn kube_api_access_volume() {
        let vol = Volume {
            name: "kube-api-access-x".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o644),
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            expiration_seconds: Some(3607),
                            audience: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: "kube-root-ca.crt".into(),
                            items: Some(vec![KeyToPath {
                                key: "ca.crt".into(),
                                path: "ca.crt".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "namespace".into(),
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.namespace".into(),
                                    api_version: None,
                                }),
                                ..Default::default()
                            }]),
                        }),
                        ..Default::default()
                    },
                ]),
            }),
            ..Default::default()
        };
        let m = materialise(&pod(vec![vol]), &EnvSources::default(), &Fake)
            .await
            .unwrap();
        let files = &m.volumes["kube-api-access-x"].files;
        assert_eq!(files["token"], b"token-for-p-default-api");
        assert_eq!(files["ca.crt"], b"CA");
        assert_eq!(files["namespace"], b"ns");
        let refresh = m
            .refresh_at
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            refresh > Duration::from_secs(2800) && refresh < Duration::from_secs(2900),
            "{refresh:?}"
        );
    }

    #[tokio::test]
    async fn missing_mandatory_config_map_fails_optional_passes() {
        let cm = |name: &str, optional| Volume {
            name: "v".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.into(),
                optional,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            materialise(&pod(vec![cm("nope", None)]), &EnvSources::default(), &Fake)
                .await
                .is_err()
        );
        let ok = materialise(
            &pod(vec![cm("nope", Some(true))]),
            &EnvSources::default(),
            &Fake,
        )
        .await
        .unwrap();
        assert!(ok.volumes["v"].files.is_empty());
        let full = materialise(&pod(vec![cm("cfg", None)]), &EnvSources::default(), &Fake)
            .await
            .unwrap();
        assert_eq!(full.volumes["v"].files["app.conf"], b"x=1");
    }

    fn kube_api_access() -> Volume {
        Volume {
            name: "kube-api-access-x".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: ROOT_CA_CONFIG_MAP.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    downward_projection("namespace", "metadata.namespace"),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn downward_projection(path: &str, field: &str) -> VolumeProjection {
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: path.into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: field.into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        }
    }

    fn projected(sources: Vec<VolumeProjection>) -> Volume {
        Volume {
            name: "p".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn downward(item: DownwardAPIVolumeFile) -> Volume {
        Volume {
            name: "d".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![item]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn label_file() -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: "labels".into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.labels".into(),
                api_version: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn which_volumes_follow_their_objects() {
        let token = VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: "token".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cm = |name: &str| VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let secret = VolumeProjection {
            secret: Some(SecretProjection {
                name: "s".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cpu_file = DownwardAPIVolumeFile {
            path: "cpu".into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some("main".into()),
                resource: "limits.cpu".into(),
                divisor: None,
            }),
            ..Default::default()
        };
        let cases: Vec<(&str, Vec<Volume>, bool)> = vec![
            ("no volumes", vec![], false),
            (
                "emptyDir",
                vec![Volume {
                    name: "e".into(),
                    empty_dir: Some(Default::default()),
                    ..Default::default()
                }],
                false,
            ),
            (
                "configMap",
                vec![Volume {
                    name: "c".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "cfg".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                true,
            ),
            (
                "secret",
                vec![Volume {
                    name: "s".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("s".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                true,
            ),
            ("kube-api-access only", vec![kube_api_access()], false),
            (
                "token with a user configMap",
                vec![projected(vec![token.clone(), cm("app")])],
                true,
            ),
            (
                "kube-root-ca.crt without a token",
                vec![projected(vec![cm(ROOT_CA_CONFIG_MAP)])],
                true,
            ),
            ("projected secret", vec![projected(vec![secret])], true),
            ("downwardAPI labels", vec![downward(label_file())], false),
            ("downwardAPI resources", vec![downward(cpu_file)], true),
            (
                "kube-api-access and a configMap",
                vec![
                    kube_api_access(),
                    projected(vec![cm("app"), downward_projection("n", "metadata.name")]),
                ],
                true,
            ),
        ];
        for (case, volumes, want) in cases {
            assert_eq!(follows_objects(&pod(volumes)), want, "{case}");
        }
    }

    #[test]
    fn downward_inputs_follow_labels_only_when_read() {
        let mut p = pod(vec![downward(label_file())]);
        let before = downward_inputs_hash(&p);
        assert_ne!(before, 0);
        p.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        assert_ne!(downward_inputs_hash(&p), before, "a label change shows");

        let mut api_access = pod(vec![kube_api_access()]);
        assert_eq!(
            downward_inputs_hash(&api_access),
            0,
            "namespace never changes"
        );
        api_access.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        assert_eq!(downward_inputs_hash(&api_access), 0);

        let annotated = pod(vec![projected(vec![downward_projection(
            "a",
            "metadata.annotations['x']",
        )])]);
        assert_ne!(downward_inputs_hash(&annotated), 0, "projected items count");
    }

    #[tokio::test]
    async fn downward_label_file_shows_new_labels() {
        let mut p = pod(vec![downward(label_file())]);
        p.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
        let m = materialise(&p, &EnvSources::default(), &Fake)
            .await
            .unwrap();
        assert_eq!(m.volumes["d"].files["labels"], b"tier=\"web\"");
        p.metadata.labels = Some([("tier".to_string(), "db".to_string())].into());
        let m = materialise(&p, &EnvSources::default(), &Fake)
            .await
            .unwrap();
        assert_eq!(m.volumes["d"].files["labels"], b"tier=\"db\"");
    }

    #[test]
    fn rejects_escaping_paths() {
        for p in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(check_path(p).is_err(), "{p}");
        }
        assert!(check_path("a/b.txt").is_ok());
    }
}
