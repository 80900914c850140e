//! The pod runtime: watches this node's pods, drives the provider, writes status back.
//!
//! - [`controller`]: the watch, the work queue, its workers and the tasks
//!   that keep the backend view current; it wires the pieces below.
//! - [`sync`]: the sync of one pod key, carrying out [`decide`]'s plan.
//! - [`decide`]: what one sync must do (pure).
//! - [`ephemeral`]: ephemeral containers (`kubectl debug`): which are new,
//!   refusals, and their statuses (pure).
//! - [`admit`]: kubelet admission, decided once per pod (resources, volume types).
//! - [`backend`]: the table of the backend's workloads (adoption, intake, reconcile).
//! - [`resolve`]: a pod → what the provider receives (returns its events).
//! - [`calls`]: every provider call, with a timeout, metrics and a budget.
//! - [`report`]: the status, delete and event writes back to the API.
//! - [`env`]: environment resolution (pure).
//! - [`downward`]: `fieldRef` and `resourceFieldRef` values (pure).
//! - [`lean`]: the pod as the watch parses it (no managed fields).
//! - [`volumes`]: configMap/secret/downwardAPI/projected volume files and tokens.
//! - [`status`]: merging backend status into the API status (pure).
//! - [`queue`]: the work queue with per-key serialisation and backoff.
//! - [`writes`]: the API writes whose answer is not read (status, delete, events).

pub mod admit;
pub mod backend;
pub mod calls;
pub mod controller;
pub mod decide;
pub mod downward;
pub mod env;
pub mod ephemeral;
pub mod lean;
pub mod queue;
pub mod report;
pub mod resolve;
pub mod status;
pub mod sync;
pub mod volumes;
pub mod writes;

pub use controller::PodController;
