//! The mock provider: a stateful in-process backend that exercises the whole core,
//! and the worked example of the provider contract (`vk_core::Provider`).
//!
//! Compatible with upstream virtual-kubelet's mock: the same config file format
//! (`vk_core::toolkit::node_config`), pods Running and Ready at once with a pod
//! IP, deleted pods gone.
//! Beyond it: per-pod lifecycle scripts ([`script`]), a state file so the backend
//! survives a restart ([`state`]), and a health switch file to simulate an outage.
//!
//! Reading order for a new provider author: [`provider::MockProvider`]'s `Provider`
//! impl is all a backend has to write; `main.rs` is all its binary has to do.
//! What backends share (node config and capacity, container statuses, the
//! restart back-off, log selection) comes from `vk_core::toolkit`.

pub mod ipam;
pub mod provider;
pub mod script;
pub mod state;
pub mod streams;

pub use provider::{MockOptions, MockProvider};
