//! The edge provider's integration tests, against the real local control
//! plane and a real container engine: one test binary (one link of the
//! workspace's dependencies, not one per file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod chart;
mod durability;
mod ephemeral;
mod image;
mod node_identity;
mod pods;
mod standby;
mod streams;
