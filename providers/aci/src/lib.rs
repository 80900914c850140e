//! The Azure Container Instances provider of vk-rs: each pod runs as one ACI
//! container group, created, read and deleted through Azure Resource Manager.
//!
//! - [`models`]: the ARM shapes, written from the contract (api-version
//!   2026-05-01);
//! - [`config`]: the settings (upstream azure-aci's environment names) and
//!   the node's capacity;
//! - [`group`]: a pod → its container group (pure);
//! - [`secrets`]: the Secrets azureFile volumes name, read from the API;
//! - [`status`]: a container group → the pod's status (pure);
//! - [`client`]: the ARM client (azure_core pipeline, azure_identity
//!   credentials, long-running operations);
//! - [`logs`]: container logs as a line source for the core's log toolkit;
//! - [`exec`]: exec and attach sessions over ACI's WebSockets;
//! - [`transport`]: the HTTP transport, WebSocket TLS and credentials;
//! - [`token_cache`]: short-lived tokens renewed once per half-life, not
//!   once per ARM call;
//! - [`provider`]: the `vk_core::Provider` over them.

pub mod client;
pub mod config;
pub mod exec;
pub mod group;
pub mod logs;
pub mod models;
pub mod provider;
pub mod secrets;
pub mod status;
pub mod token_cache;
pub mod transport;

pub use provider::AciProvider;
