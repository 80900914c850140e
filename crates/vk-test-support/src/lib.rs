//! Integration-test harness: every test that needs Kubernetes runs against a
//! real local control plane (`vkcp`: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler of the pinned version), never a
//! fake API server.
//!
//! ```no_run
//! use vk_test_support::TestCluster;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = TestCluster::get().await?; // shared by the whole test run
//! let ns = cluster.namespace("configmaps").await?; // deleted when `ns` drops
//! let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), ns.name());
//! let out = cluster.kubectl(["get", "--raw=/readyz"]).await?;
//! assert_eq!(out.stdout.trim(), "ok");
//! # Ok(()) }
//! ```
//!
//! Which cluster: the one whose kubeconfig `VK_TEST_KUBECONFIG` names
//! (`cargo xtask test` starts a fresh one and sets it), else the one in
//! `target/test-cluster`, started on first use with
//! `cargo xtask cluster up --dir target/test-cluster` and left running for
//! later runs (`cargo xtask cluster down --dir target/test-cluster` stops it).
//!
//! When a test fails (panics) while it holds a [`TestCluster`], the tail of
//! the control-plane logs is printed with the test's output.
//!
//! Errors are `anyhow` errors: this crate is only ever used from tests, which
//! report an error and fail, never match on it.

mod cluster;
mod kubectl;
mod logs;
mod names;
mod resources;
mod wait;
mod workspace;

pub use cluster::{TestCluster, client_for_kubeconfig};
pub use kubectl::{KubectlOutput, kubectl_blocking};
pub use logs::control_plane_logs_tail;
pub use names::unique_name;
pub use resources::{DeleteOnDrop, TestNamespace};
pub use wait::wait_for;
pub use workspace::{XtaskOutput, workspace_root, xtask};
