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
//! The container rig of the edge tests is machine-wide too, shared by every
//! test process (cargo-nextest runs each test in its own): one rootful
//! podman API service ([`PodmanEngine`], at `/run/vk-rs-test/podman.sock`),
//! busybox images built `FROM scratch` without any pull ([`busybox_image`],
//! [`busybox_httpd_image`]) and a local registry with basic auth for
//! pull-secret tests ([`Registry`]). They start detached on first use, under
//! file locks in `/run/vk-rs-test`, and keep running for later runs. A
//! provider binary under test runs as a [`KubeletProcess`].
//!
//! ```no_run
//! # fn example() -> anyhow::Result<()> {
//! use vk_test_support::{PodmanEngine, Registry, busybox_image, podman};
//! let engine = PodmanEngine::get()?; // Err says why (not root, no podman): skip loudly
//! let image = busybox_image()?; // localhost/vk-test/busybox:1
//! let out = podman(["run", "--rm", image.as_str(), "sh", "-c", "echo hi"])?.ok()?;
//! let registry = Registry::get()?;
//! let secret = registry.pull_secret("regcred"); // for registry.private_image()
//! # Ok(()) }
//! ```
//!
//! Errors are `anyhow` errors: this crate is only ever used from tests, which
//! report an error and fail, never match on it.

mod busybox;
mod cluster;
mod daemon;
mod debian;
mod kubectl;
mod kubelet_process;
mod logs;
mod names;
mod podman;
mod ports;
mod probe;
mod registry;
mod resources;
mod wait;
mod workspace;

pub use busybox::{
    BUSYBOX_HTTPD_IMAGE, BUSYBOX_HTTPD_INDEX, BUSYBOX_HTTPD_PORT, BUSYBOX_IMAGE,
    busybox_httpd_image, busybox_image,
};

pub use cluster::{TestCluster, client_for_kubeconfig};
pub use daemon::RIG_DIR;
pub use kubectl::{KubectlOutput, kubectl_blocking};
pub use kubelet_process::KubeletProcess;
pub use logs::control_plane_logs_tail;
pub use names::unique_name;
pub use podman::{
    CONTAINERS_CONF, PODMAN_GLOBAL_FLAGS, PODMAN_SOCKET, PodmanEngine, PodmanOutput, podman,
    prepare_podman,
};
pub use ports::free_port;
pub use registry::{REGISTRIES_DROP_IN, REGISTRY_PASSWORD, REGISTRY_USERNAME, Registry};
pub use resources::{DeleteOnDrop, TestNamespace};
pub use wait::wait_for;
pub use workspace::{XtaskOutput, workspace_root, xtask};
