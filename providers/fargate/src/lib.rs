//! The AWS Fargate provider of vk-rs: each pod an ECS task with launch type
//! FARGATE (or a Fargate capacity provider), its status from `DescribeTasks`,
//! its logs from CloudWatch Logs, its Secret-backed env values in Secrets
//! Manager.
//!
//! - [`config`]: upstream's `fargate.toml`, with our fields;
//! - [`task`]: a pod → its task definition and `RunTask` input (pure), sized
//!   by [`task_size`], its volumes from [`task_volumes`] (the files written
//!   by [`volume_files`]);
//! - [`status`]: a task → the pod's status (pure), and [`restart`]: when
//!   a stopped task is replaced and what the pod's status then says (pure);
//! - [`provider`]: the [`vk_core::Provider`] making the calls ([`aws`] holds
//!   the clients and what their errors mean, [`launch`] makes and unmakes a
//!   pod's task, [`listing`] lists the cluster's tasks, [`logs`] reads
//!   CloudWatch, [`sweep`] finds task definitions and secrets an interrupted
//!   create left without a pod).

pub mod aws;
pub mod config;
pub mod launch;
pub mod listing;
pub mod logs;
pub mod provider;
pub mod restart;
pub mod status;
pub mod sweep;
pub mod task;
pub mod task_size;
pub mod task_volumes;
pub mod volume_files;

pub use config::{CapacityProvider, FargateConfig};
pub use provider::FargateProvider;
