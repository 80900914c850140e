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
//! - [`health`]: metrics and health endpoints; [`metrics`]: the metrics themselves.

pub mod api;
pub mod cli;
pub mod context;
pub mod health;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod pod;
pub mod provider;
pub mod quantity;
pub mod ratelimit;
pub mod runtime;

pub use provider::{
    BackendPod, NodeCapacity, PodKey, Provider, ProviderError, ProviderResult, ResolvedPod,
    StatusNotifier, VolumeFiles,
};
