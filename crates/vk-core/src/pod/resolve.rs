//! Resolution: a pod as the API shows it → the [`ResolvedPod`] a provider
//! receives (env values, volume files, pull credentials, which values are
//! secret), and when its files are due for a refresh.
//!
//! It reads objects through [`ObjectSource`] and calls nothing else: the
//! events it finds are returned as [`Note`]s, for the sync to record, and the
//! pod's IP (which only the provider or the backend status knows) is given
//! by the caller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

use super::env::{self, EnvSources};
use super::volumes::{self, ObjectSource};
use crate::provider::{RegistryCredential, ResolvedPod};

/// Why a pod is resolved, which decides what the resolution may report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Before `create_pod`.
    Create,
    /// The spec of a running pod changed.
    Update,
    /// Volume files re-materialised (their objects, a token or the pod's
    /// labels may have changed). Only failures are reported: a refresh that
    /// finds nothing new must write nothing to the API.
    Refresh,
}

/// An event to record on the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// The kubelet's or upstream's reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl Note {
    fn warning(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// A pod ready for its provider.
#[derive(Debug)]
pub struct Resolved {
    /// What the provider receives.
    pub pod: ResolvedPod,
    /// When its volume files must be re-materialised, if ever.
    pub refresh_at: Option<SystemTime>,
    /// Events to record (none for a [`Purpose::Refresh`]).
    pub notes: Vec<Note>,
}

/// Resolves the pods of one node.
pub struct Resolver {
    objects: Arc<dyn ObjectSource>,
    node_ip: String,
    volume_refresh_period: Duration,
    node_allocatable: Mutex<BTreeMap<String, String>>,
}

impl Resolver {
    /// A resolver reading through `objects`, for a node at `node_ip` whose
    /// object-backed files follow their objects every `volume_refresh_period`.
    pub fn new(
        objects: Arc<dyn ObjectSource>,
        node_ip: String,
        volume_refresh_period: Duration,
    ) -> Resolver {
        Resolver {
            objects,
            node_ip,
            volume_refresh_period,
            node_allocatable: Mutex::default(),
        }
    }

    /// Sets node allocatable, used for `resourceFieldRef` limits left unset.
    pub fn set_node_allocatable(&self, alloc: BTreeMap<String, String>) {
        *self
            .node_allocatable
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = alloc;
    }

    /// Node allocatable as last set.
    pub fn node_allocatable(&self) -> BTreeMap<String, String> {
        self.node_allocatable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The object source (for forgetting a pod's tokens).
    pub fn objects(&self) -> &Arc<dyn ObjectSource> {
        &self.objects
    }

    /// Resolves `pod`. `pod_ip` is what `status.podIP` resolves to. `Err`
    /// carries the event that says why the pod cannot be handed over (a
    /// missing mandatory reference, a volume that cannot be made): the sync
    /// retries with backoff.
    pub async fn resolve(
        &self,
        pod: &Pod,
        purpose: Purpose,
        pod_ip: Option<String>,
    ) -> Result<Resolved, Note> {
        let report = purpose != Purpose::Refresh;
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut src = self.env_sources(pod, &namespace).await?;
        src.pod_ip = pod_ip;
        let mut notes = Vec::new();
        let mut resolved = pod.clone();
        let pod_ip_env = if src.pod_ip.is_none() && env::needs_pod_ip(pod) {
            crate::provider::PodIpEnv::pending(pod, &src)
        } else {
            crate::provider::PodIpEnv::default()
        };
        let env = env::resolve_pod_env(&mut resolved, &src)
            .map_err(|e| Note::warning(e.reason, e.message))?;
        if report {
            notes.extend(env.events.into_iter().map(|ev| Note {
                warning: ev.warning,
                reason: ev.reason,
                message: ev.message,
            }));
        }
        let materialised = volumes::materialise(pod, &src, &*self.objects)
            .await
            .map_err(|e| Note::warning("FailedMount", e.to_string()))?;
        let mut refresh_at = materialised.refresh_at;
        if volumes::follows_objects(pod) {
            // Reads go through the object cache; the timer runs only for pods
            // with such volumes, so a node of pods without them pays nothing.
            let next = SystemTime::now() + self.volume_refresh_period;
            refresh_at = Some(refresh_at.map_or(next, |t| t.min(next)));
        }
        let (pull_credentials, failed) = self.pull_credentials(pod, &namespace).await;
        if report && let Some(note) = failed {
            notes.push(note);
        }
        Ok(Resolved {
            pod: ResolvedPod {
                pod: resolved,
                volumes: materialised.volumes,
                pull_credentials,
                secret_env: env.secret_env,
                pod_ip_env,
            },
            refresh_at,
            notes,
        })
    }

    /// When object-backed files are next due after a failed refresh.
    pub fn next_refresh(&self) -> SystemTime {
        SystemTime::now() + self.volume_refresh_period
    }

    /// The objects the pod's env refers to, the services whose links it
    /// gets, the node's IP and allocatable.
    async fn env_sources(&self, pod: &Pod, namespace: &str) -> Result<EnvSources, Note> {
        let (cm_names, secret_names) = env::referenced_objects(pod);
        let mut src = EnvSources {
            host_ip: self.node_ip.clone(),
            node_allocatable: self
                .node_allocatable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Default::default()
        };
        for name in cm_names {
            let cm = self
                .objects
                .config_map(namespace, &name)
                .await
                .map_err(|e| Note::warning("FailedToReadMandatoryConfigMap", e))?;
            src.config_maps.insert(name, cm);
        }
        for name in secret_names {
            let secret = self
                .objects
                .secret(namespace, &name)
                .await
                .map_err(|e| Note::warning("FailedToReadMandatorySecret", e))?;
            src.secrets.insert(name, secret);
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        src.services = self.objects.services_for(namespace, links);
        Ok(src)
    }

    /// The credentials of the pod's `imagePullSecrets`. A Secret that is
    /// missing, unreadable or not a docker config is skipped, with a
    /// `FailedToRetrieveImagePullSecret` warning: like the kubelet, the pod
    /// still runs, and the pull may work without it.
    async fn pull_credentials(
        &self,
        pod: &Pod,
        namespace: &str,
    ) -> (Vec<RegistryCredential>, Option<Note>) {
        let names = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty());
        let mut creds = Vec::new();
        let mut failed = Vec::new();
        for name in names {
            let problem = match self.objects.secret(namespace, name).await {
                Ok(Some(secret)) => match RegistryCredential::from_secret(&secret) {
                    Ok(c) => {
                        creds.extend(c);
                        continue;
                    }
                    Err(e) => e,
                },
                Ok(None) => format!("secret {namespace}/{name} not found"),
                Err(e) => e,
            };
            failed.push((name, problem));
        }
        if failed.is_empty() {
            return (creds, None);
        }
        let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
        let problems: Vec<&str> = failed.iter().map(|(_, p)| p.as_str()).collect();
        let note = Note::warning(
            "FailedToRetrieveImagePullSecret",
            format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed: {}",
                names.join(", "),
                problems.join("; ")
            ),
        );
        (creds, Some(note))
    }
}
