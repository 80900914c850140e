//! Read access to the objects pods reference: ConfigMaps and Secrets through a
//! short-lived cache, Services from a cluster-wide watch (as the kubelet does),
//! and projected service-account tokens through the TokenRequest API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::metrics::Metrics;
use crate::pod::volumes::{ObjectSource, TokenCache};
use crate::ratelimit::RateLimiter;

/// How long a fetched ConfigMap or Secret is reused. Short, so an object created
/// after a pod referenced it is seen on the next retry.
const OBJECT_TTL: Duration = Duration::from_secs(5);

type Cached<T> = Mutex<HashMap<(String, String), (Instant, Option<T>)>>;

/// The process-wide object reader, shared by every node.
pub struct ApiObjects {
    client: Client,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    config_maps: Cached<ConfigMap>,
    secrets: Cached<Secret>,
    services: Store<Service>,
    tokens: TokenCache,
}

impl ApiObjects {
    /// A reader over `client`; `services` is the store of a cluster-wide Service watch.
    pub fn new(
        client: Client,
        limiter: Arc<RateLimiter>,
        metrics: Arc<Metrics>,
        services: Store<Service>,
    ) -> Self {
        ApiObjects {
            client,
            limiter,
            metrics,
            config_maps: Mutex::default(),
            secrets: Mutex::default(),
            services,
            tokens: TokenCache::default(),
        }
    }

    /// Services whose link variables a pod receives: its namespace's (when
    /// `enable_links`) and `default/kubernetes` always.
    pub fn services_for(&self, namespace: &str, enable_links: bool) -> Vec<Service> {
        let mut out: Vec<Service> = if enable_links {
            self.services
                .state()
                .into_iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
                .map(|s| (*s).clone())
                .collect()
        } else {
            Vec::new()
        };
        let master = ObjectRef::new("kubernetes").within("default");
        if (namespace != "default" || !enable_links)
            && let Some(svc) = self.services.get(&master)
        {
            out.push((*svc).clone());
        }
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// Forgets the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.tokens.forget_pod(uid);
    }

    async fn cached<T>(
        &self,
        cache: &Cached<T>,
        resource: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, String>
    where
        T: Clone
            + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let key = (namespace.to_string(), name.to_string());
        {
            let c = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, v)) = c.get(&key)
                && at.elapsed() < OBJECT_TTL
            {
                return Ok(v.clone());
            }
        }
        self.limiter.acquire().await;
        let res = Api::<T>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await;
        self.metrics.api("get", resource, res.is_ok());
        let v = res.map_err(|e| format!("reading {resource} {namespace}/{name}: {e}"))?;
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() > 10_000 {
            c.retain(|_, (at, _)| at.elapsed() < OBJECT_TTL);
        }
        c.insert(key, (Instant::now(), v.clone()));
        Ok(v)
    }
}

#[async_trait]
impl ObjectSource for ApiObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        self.cached(&self.config_maps, "configmaps", namespace, name)
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        self.cached(&self.secrets, "secrets", namespace, name).await
    }

    fn services_for(&self, namespace: &str, enable_links: bool) -> Vec<Service> {
        ApiObjects::services_for(self, namespace, enable_links)
    }

    fn forget_pod(&self, uid: &str) {
        ApiObjects::forget_pod(self, uid);
    }

    async fn token(
        &self,
        pod: &Pod,
        sa: &str,
        audience: Option<&str>,
        exp: i64,
    ) -> Result<(String, SystemTime), String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(hit) = self.tokens.get(&uid, sa, audience, exp) {
            return Ok(hit);
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(exp),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };

        self.limiter.acquire().await;
        let res: Result<TokenRequest, _> =
            Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
                .create_subresource("token", sa, &PostParams::default(), &req)
                .await;
        self.metrics
            .api("create", "serviceaccounts/token", res.is_ok());
        let tr =
            res.map_err(|e| format!("requesting a token for serviceaccount {ns}/{sa}: {e}"))?;
        let status = tr.status.ok_or("TokenRequest answered without a status")?;
        let expiry = SystemTime::UNIX_EPOCH
            + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        self.tokens
            .put(&uid, sa, audience, exp, status.token.clone(), expiry);
        Ok((status.token, expiry))
    }
}
