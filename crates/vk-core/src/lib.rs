//! The shared core of every vk-rs provider: it registers virtual nodes, runs the
//! pods scheduled onto them through a [`Provider`], and writes their status back.
//!
//! A provider implements [`provider::Provider`] (see the `vk-mock` crate for the
//! worked example) and its binary calls [`runtime::run`] with the common flags of
//! [`cli::KubeletArgs`]. Everything else lives here:
//!
//! - [`node`]: registration, lease, status and health of each node;
//! - [`pod`]: the watch, work queue, env and volume resolution, status;
//! - [`objects`]: cached reads of ConfigMaps, Secrets, Services and token requests;
//! - [`registry`]: image pull credentials from pull secrets, matched to images;
//! - [`api`]: the kubelet HTTPS API (logs, exec, attach, port-forward, stats);
//! - [`health`]: metrics and health endpoints; [`metrics`]: the metrics themselves.
//! - [`toolkit`]: what backends share between a pod and their API: node config
//!   and capacity, container statuses, restart back-off, log selection over
//!   polled lines, backend names and labels, pod resource totals.
//!
//! # A provider in a few lines
//!
//! The required methods are the pod lifecycle and the node's capacity; the
//! kubelet API capabilities (`container_logs`, `exec`, `attach`,
//! `port_forward`, `usage`) are optional and answer 501 until implemented;
//! so are ephemeral containers (`start_ephemeral_containers`, for `kubectl
//! debug`), which the core reports refused until implemented.
//! `vk-mock` (`providers/mock/src/provider.rs`) is the complete worked example.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use k8s_openapi::api::core::v1::PodStatus;
//! use vk_core::{BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod};
//!
//! #[derive(Default)]
//! struct InMemory(Mutex<HashMap<PodKey, ResolvedPod>>);
//!
//! #[async_trait::async_trait]
//! impl Provider for InMemory {
//!     fn name(&self) -> &str { "in-memory" }
//!     async fn node_capacity(&self) -> NodeCapacity { NodeCapacity::default() }
//!     async fn create_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> {
//!         let key = pod.key().ok_or_else(|| ProviderError::InvalidInput("no uid".into()))?;
//!         self.0.lock().unwrap().insert(key, pod.clone());
//!         Ok(())
//!     }
//!     async fn update_pod(&self, pod: &ResolvedPod) -> ProviderResult<()> { self.create_pod(pod).await }
//!     async fn delete_pod(&self, key: &PodKey, _grace: Duration) -> ProviderResult<()> {
//!         self.0.lock().unwrap().remove(key).map(|_| ()).ok_or_else(|| ProviderError::NotFound(key.to_string()))
//!     }
//!     async fn get_pod_status(&self, key: &PodKey) -> ProviderResult<Arc<PodStatus>> {
//!         let running = Arc::new(PodStatus { phase: Some("Running".into()), ..Default::default() });
//!         self.0.lock().unwrap().get(key).map(|_| running).ok_or_else(|| ProviderError::NotFound(key.to_string()))
//!     }
//!     async fn list_pods(&self) -> ProviderResult<Vec<BackendPod>> {
//!         let running = PodStatus { phase: Some("Running".into()), ..Default::default() };
//!         Ok(self.0.lock().unwrap().iter()
//!             .map(|(k, p)| BackendPod { key: k.clone(), pod: p.pod.clone(), status: running.clone() })
//!             .collect())
//!     }
//! }
//!
//! # async fn main_(args: vk_core::cli::KubeletArgs) -> anyhow::Result<()> {
//! vk_core::runtime::run(args, "in-memory", |_node| Ok(Arc::new(InMemory::default()) as Arc<dyn Provider>)).await
//! # }
//! ```

pub mod api;
pub mod cli;
pub mod context;
pub mod csr;
pub mod health;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod pod;
pub mod provider;
pub mod quantity;
pub mod ratelimit;
pub mod registry;
pub mod runtime;
pub mod toolkit;

pub use provider::{
    BackendPod, CallRateLimit, NodeCapacity, PodEvent, PodIpEnv, PodKey, Provider, ProviderError,
    ProviderResult, RegistryCredential, ResolvedPod, StatusNotifier, StreamKind, VolumeFiles,
};
