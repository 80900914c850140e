//! [`TestCluster`]: the shared control plane, seen from one test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::OnceCell;

use crate::kubeconfig::{apiserver_port, client_for_kubeconfig, write_token_kubeconfig};
use crate::kubectl::{KubectlOutput, kubectl_async, kubectl_command};
use crate::logs::control_plane_logs_tail;
use crate::names::unique_name;
use crate::resources::{DeleteOnDrop, TestNamespace};
use crate::wait::wait_for;
use crate::workspace::{workspace_root, xtask};

/// Lines of each component log printed when a test fails.
const FAILURE_LOG_LINES: usize = 40;

/// What every test of a process shares: where the cluster and `vkcp` are.
#[derive(Debug)]
struct Shared {
    kubeconfig: PathBuf,
    vkcp: PathBuf,
    dir: PathBuf,
}

static SHARED: OnceCell<Shared> = OnceCell::const_new();

/// One test's handle on the shared local cluster.
///
/// The cluster is found or started once per test process (see the crate
/// docs); each `get` builds a fresh [`kube::Client`], because every
/// `#[tokio::test]` has its own runtime and a client's connections belong to
/// the runtime that opened them.
///
/// Dropped while the test panics, it prints the last 40 lines of the
/// kube-apiserver, kube-controller-manager and kube-scheduler logs, which the
/// test harness shows with the failure.
pub struct TestCluster {
    shared: &'static Shared,
    client: Client,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kubeconfig", &self.shared.kubeconfig)
            .field("vkcp", &self.shared.vkcp)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// The test run's cluster, starting it if this is the first use and
    /// `VK_TEST_KUBECONFIG` is not set.
    pub async fn get() -> Result<Self> {
        let shared = SHARED
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(locate)
                    .await
                    .context("locating the test cluster")?
            })
            .await?;
        let client = client_for_kubeconfig(&shared.kubeconfig).await?;
        Ok(TestCluster { shared, client })
    }

    /// Runs one test body against the cluster: the usual way to write a test.
    ///
    /// An `Err` from the body fails the test exactly like a panic does, with
    /// the control-plane logs printed, so a test can use `?` and
    /// `anyhow::ensure!` freely.
    ///
    /// ```no_run
    /// # async fn example() {
    /// vk_test_support::TestCluster::run(async |cluster| {
    ///     let out = cluster.kubectl(["get", "--raw=/readyz"]).await?.ok()?;
    ///     anyhow::ensure!(out.trim() == "ok", "/readyz said {out:?}");
    ///     Ok(())
    /// })
    /// .await;
    /// # }
    /// ```
    pub async fn run(body: impl AsyncFnOnce(&TestCluster) -> Result<()>) {
        let cluster = match TestCluster::get().await {
            Ok(cluster) => cluster,
            Err(err) => panic!("no test cluster: {err:#}"),
        };
        if let Err(err) = body(&cluster).await {
            // `cluster` is still alive: its Drop prints the logs while unwinding.
            panic!("{err:#}");
        }
    }

    /// A client authenticated as the cluster admin (`system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.shared.kubeconfig
    }

    /// The `vkcp` binary (control plane and kubectl of the pinned version).
    pub fn vkcp(&self) -> &Path {
        &self.shared.vkcp
    }

    /// The cluster directory: `kubeconfig`, `logs/`, `pki/`, `ports.json`.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The cluster CA certificate (PEM): it signs the apiserver's serving
    /// certificate, client certificates and approved CSRs.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.shared.dir.join("pki").join("ca.crt")
    }

    /// Runs `vkcp kubectl --kubeconfig <admin kubeconfig> ARGS`.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<KubectlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        kubectl_async(&self.shared.vkcp, &self.shared.kubeconfig, args).await
    }

    /// `vkcp kubectl --kubeconfig <admin kubeconfig>` as a command to add
    /// arguments to and spawn: for kubectl that streams (`logs -f`,
    /// `attach`, `port-forward`) or reads stdin.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let no_args: &[&str] = &[];
        let mut cmd = kubectl_command(&self.shared.vkcp, &self.shared.kubeconfig, no_args);
        // Whoever spawns it decides where its stdin comes from.
        cmd.stdin(std::process::Stdio::inherit());
        tokio::process::Command::from(cmd)
    }

    /// The apiserver's port on loopback, from the admin kubeconfig.
    pub fn apiserver_port(&self) -> Result<u16> {
        apiserver_port(&self.shared.kubeconfig)
    }

    /// Writes to `out` a kubeconfig for this cluster (the admin kubeconfig's
    /// server and CA) that authenticates with the bearer token `token`: how
    /// a test acts as a ServiceAccount.
    pub fn write_token_kubeconfig(&self, token: &str, out: &Path) -> Result<()> {
        write_token_kubeconfig(&self.shared.kubeconfig, token, out)
    }

    /// Creates a namespace `prefix-<random>` for one test and waits until its
    /// `default` ServiceAccount exists (until then the ServiceAccount
    /// admission plugin rejects pods). It is deleted when the returned guard
    /// drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let name = unique_name(prefix);
        let namespaces: Api<Namespace> = Api::all(self.client());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("vk-test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let guard = TestNamespace::new(name.clone(), self.delete_on_drop("namespace", None, &name));
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), &name);
        wait_for(
            &format!("the default ServiceAccount in namespace {name}"),
            Duration::from_secs(60),
            || async { Ok(accounts.get_opt("default").await?.map(|_| ())) },
        )
        .await?;
        Ok(guard)
    }

    /// A guard that deletes `kind/name` (in `namespace`, if given) when it
    /// drops: for cluster-scoped objects a test creates (Nodes, CSRs) and
    /// objects outside the test's namespace (Leases in `kube-node-lease`).
    pub fn delete_on_drop(&self, kind: &str, namespace: Option<&str>, name: &str) -> DeleteOnDrop {
        DeleteOnDrop::new(
            self.shared.vkcp.clone(),
            self.shared.kubeconfig.clone(),
            kind,
            namespace,
            name,
        )
    }

    /// The last `lines` lines of each control-plane component's log.
    pub fn logs_tail(&self, lines: usize) -> String {
        control_plane_logs_tail(&self.shared.dir, lines)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== the test failed; control-plane logs ({}) =====\n{}",
                self.shared.dir.join("logs").display(),
                self.logs_tail(FAILURE_LOG_LINES)
            );
        }
    }
}

/// The test run's cluster and a fresh namespace `prefix-<random>` in it:
/// how most test bodies begin.
///
/// # Panics
///
/// When there is no cluster or the namespace cannot be made.
pub async fn cluster_and_namespace(prefix: &str) -> (TestCluster, TestNamespace) {
    let cluster = TestCluster::get()
        .await
        .unwrap_or_else(|e| panic!("no test cluster: {e:#}"));
    let ns = cluster
        .namespace(prefix)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (cluster, ns)
}

/// Finds the cluster and `vkcp`, starting the cluster if needed (blocking).
fn locate() -> Result<Shared> {
    let kubeconfig = match std::env::var_os("VK_TEST_KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => {
            let dir = workspace_root().join("target").join("test-cluster");
            eprintln!(
                "VK_TEST_KUBECONFIG is not set: using the cluster in {} (starting it if needed; \
                 it keeps running, stop it with `cargo xtask cluster down --dir {}`)",
                dir.display(),
                dir.display()
            );
            let dir_arg = dir.to_string_lossy().into_owned();
            let out = xtask(["cluster", "up", "--dir", dir_arg.as_str()])?;
            PathBuf::from(
                out.last_line()
                    .context("`cargo xtask cluster up` printed no kubeconfig path")?,
            )
        }
    };
    if !kubeconfig.is_file() {
        bail!("kubeconfig {} does not exist", kubeconfig.display());
    }
    let vkcp = match std::env::var_os("VKCP_BIN").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(
            xtask(["controlplane-path"])?
                .last_line()
                .context("`cargo xtask controlplane-path` printed no path")?,
        ),
    };
    if !vkcp.is_file() {
        bail!("vkcp binary {} does not exist", vkcp.display());
    }
    let dir = kubeconfig
        .parent()
        .map(Path::to_path_buf)
        .context("the kubeconfig path has no parent directory")?;
    Ok(Shared {
        kubeconfig,
        vkcp,
        dir,
    })
}
