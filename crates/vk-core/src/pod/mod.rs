//! The pod runtime: watches this node's pods, drives the provider, writes status back.
//!
//! - [`controller`]: the watch, the work queue and the sync of one pod.
//! - [`env`]: environment resolution (pure).
//! - [`lean`]: the pod as the watch parses it (no managed fields).
//! - [`volumes`]: configMap/secret/downwardAPI/projected volume files and tokens.
//! - [`status`]: merging backend status into the API status (pure).
//! - [`queue`]: the work queue with per-key serialisation and backoff.
//! - [`writes`]: the API writes whose answer is not read (status, delete, events).

pub mod controller;
pub mod env;
pub mod lean;
pub mod queue;
pub mod status;
pub mod volumes;
pub mod writes;

pub use controller::PodController;
