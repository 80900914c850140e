//! The mock provider: a stateful in-process backend that exercises the whole core,
//! and the worked example of the provider contract (`vk_core::Provider`).
//!
//! Compatible with upstream virtual-kubelet's mock: the same config file format
//! ([`config`]), pods Running and Ready at once with a pod IP, deleted pods gone.
//! Beyond it: per-pod lifecycle scripts ([`script`]), a state file so the backend
//! survives a restart ([`state`]), and a health switch file to simulate an outage.
//!
//! Reading order for a new provider author: [`provider::MockProvider`]'s `Provider`
//! impl is all a backend has to write; `main.rs` is all its binary has to do.

pub mod config;
pub mod ipam;
pub mod provider;
pub mod script;
pub mod state;
pub mod streams;

pub use provider::{MockOptions, MockProvider};
