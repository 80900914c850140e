//! The mock's integration tests, against the real local control plane: one
//! test binary (one link of the workspace's dependencies, not one per file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api_faults;
mod chart;
mod ephemeral;
mod hostile;
mod image;
mod kubelet_api;
mod kubelet_rules;
mod node_identity;
mod node_proxy;
mod referenced_objects;
mod runtime;
mod standby;
mod top;
mod websocket;
