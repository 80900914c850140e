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
//! Every provider's integration tests share the rest: waiting
//! ([`wait_for`], [`wait_until`]), pods ([`create_pod`], [`wait_pod`],
//! [`wait_running`], [`wait_pods`], [`events`]), nodes ([`node_ready`],
//! [`wait_node_ready`], [`delete_node`]), the operator's approval of a
//! kubelet's serving certificate ([`CsrApprover`], [`approve_serving_csr`]),
//! the kubelet API as the apiserver calls it ([`kubelet_get`]), kubectl in
//! the forms assertions want ([`kubectl`], [`kubectl_ok`]) and the chart
//! checks ([`chart`]).
//!
//! ```no_run
//! # async fn example(node_name: &str) {
//! use std::time::Duration;
//! use vk_test_support::{approve_serving_csr, cluster_and_namespace, create_pod, wait_node_ready,
//!     wait_running};
//! let (cluster, ns) = cluster_and_namespace("logs").await;
//! let client = cluster.client();
//! wait_node_ready(&client, node_name, Duration::from_secs(20)).await;
//! approve_serving_csr(&cluster, node_name).await; // kubectl logs, exec... now work
//! create_pod(&client, ns.name(), serde_json::json!({
//!     "metadata": { "name": "app" },
//!     "spec": { "nodeName": node_name, "containers": [{ "name": "main", "image": "busybox" }] }
//! }))
//! .await;
//! wait_running(&client, ns.name(), "app", Duration::from_secs(20)).await;
//! # }
//! ```
//!
//! Errors are `anyhow` errors: this crate is only ever used from tests, which
//! report an error and fail, never match on it. The helpers made for test
//! bodies (waiting for a pod, approving a CSR, kubectl as a tuple, the chart
//! checks) fail like assertions instead: they panic with what was expected
//! and what was seen, and say so in their docs.

pub mod api_faults;
mod busybox;
pub mod chart;
mod cluster;
mod command;
mod daemon;
mod debian;
pub mod fake_arm;
mod image;
mod kubeconfig;
mod kubectl;
mod kubelet_api;
mod kubelet_process;
pub mod leader;
mod logs;
mod moto;
mod names;
mod node_identity;
mod nodes;
mod podman;
mod pods;
mod ports;
mod probe;
mod registry;
mod resources;
mod service_proxy;
mod serving_csr;
mod wait;
mod workspace;

pub use api_faults::{Counts as ApiCounts, FaultProxy, Faults};
pub use busybox::{
    BUSYBOX_HTTPD_IMAGE, BUSYBOX_HTTPD_INDEX, BUSYBOX_HTTPD_PORT, BUSYBOX_IMAGE,
    busybox_httpd_image, busybox_image,
};

pub use cluster::{TestCluster, cluster_and_namespace};
pub use command::CommandOutput;
pub use daemon::RIG_DIR;
pub use fake_arm::{ExecRecord, FakeArm, FakeArmOptions, RecordedRequest};
pub use image::{
    LoadedImage, MAX_COMPRESSED_BYTES, PodmanContainer, build_and_load, provider_image,
};
pub use kubeconfig::client_for_kubeconfig;
pub use kubectl::{
    KubectlOutput, kubectl, kubectl_blocking, kubectl_ok, run_with_stdin, spawn_kubectl,
};
pub use kubelet_api::{kubelet_get, kubelet_get_with_token, kubelet_port, serving_certificate};
pub use kubelet_process::KubeletProcess;
pub use logs::{control_plane_logs_tail, log_tail};
pub use moto::{MOTO_REQUIREMENT, MotoServer, moto_python};
pub use names::unique_name;
pub use node_identity::{
    BootstrapToken, CURRENT_CLIENT_CERT, OwnCluster, bootstrap_token, bootstrap_token_in,
    certificate_subject, certificate_validity, node_client, node_client_in,
};
pub use nodes::{delete_node, node_ready, wait_node_not_ready, wait_node_ready};
pub use podman::{
    CONTAINERS_CONF, PODMAN_GLOBAL_FLAGS, PODMAN_SOCKET, PodmanEngine, PodmanOutput, podman,
    prepare_podman,
};
pub use pods::{create_pod, events, is_ready, phase, wait_pod, wait_pods, wait_running};
pub use ports::free_port;
pub use probe::http_get;
pub use registry::{REGISTRIES_DROP_IN, REGISTRY_PASSWORD, REGISTRY_USERNAME, Registry};
pub use resources::{DeleteOnDrop, TestNamespace};
pub use service_proxy::KubernetesService;
pub use serving_csr::{CsrApprover, approve_serving_csr};
pub use wait::{wait_blocking, wait_for, wait_until};
pub use workspace::{XtaskOutput, workspace_root, xtask};
