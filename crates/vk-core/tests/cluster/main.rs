//! The core against the real local control plane: one test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod example_provider;
mod status_patch;
