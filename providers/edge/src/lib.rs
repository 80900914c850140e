//! The edge provider: pods as real containers on a device's Docker or Podman
//! engine, spoken to over the Docker Engine API.
//!
//! A pod is an infra container holding its network namespace (the built-in
//! [`pause`] image, loaded into the engine by the provider itself) and one
//! engine container per container attempt joined to it ([`spec`]). A
//! supervisor task per pod ([`pod`]) runs init containers, restarts, pulls and
//! probes; the engine's event stream wakes it. Every engine object carries
//! labels with the pod's UID, so the engine is the only record: a restarted
//! `vk-edge` adopts what runs ([`provider`]), and containers keep running
//! while `vk-edge` or the apiserver is away.

pub mod engine;
pub mod pause;
pub mod pod;
pub mod probe;
pub mod provider;
pub mod spec;
pub mod streams;
pub mod volumes;

pub use provider::EdgeProvider;
