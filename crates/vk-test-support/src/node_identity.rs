//! A node's own identity in tests: a bootstrap token and its kubeconfig (what
//! `cargo xtask cluster bootstrap-token` makes, here through the API), and a
//! client that authenticates with a node's client certificate from its
//! `--cert-dir`, to check what the Node authorizer lets a node do.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{AuthInfo, Kubeconfig};
use kube::{Client, Config};

use crate::cluster::TestCluster;
use crate::kubeconfig::write_token_kubeconfig;
use crate::names::unique_name;
use crate::resources::DeleteOnDrop;

/// The symlink a kubelet keeps to its current client certificate and key.
pub const CURRENT_CLIENT_CERT: &str = "kubelet-client-current.pem";

/// A bootstrap token Secret in `kube-system` (deleted on drop) and a
/// kubeconfig that authenticates with it.
#[derive(Debug)]
pub struct BootstrapToken {
    /// The token id: the apiserver calls its holder `system:bootstrap:<id>`.
    pub id: String,
    /// The bootstrap kubeconfig (server and CA of the admin kubeconfig).
    pub kubeconfig: PathBuf,
    secret: String,
    guard: Option<DeleteOnDrop>,
}

impl BootstrapToken {
    /// The username the apiserver gives the token's holder.
    pub fn username(&self) -> String {
        format!("system:bootstrap:{}", self.id)
    }

    /// A token and its kubeconfig in `dir`, without its Secret: the
    /// apiserver refuses it (401) until [`BootstrapToken::register`].
    pub fn unregistered(cluster: &TestCluster, dir: &Path) -> Result<BootstrapToken> {
        let (id, secret) = new_token();
        let kubeconfig = dir.join("bootstrap.kubeconfig");
        write_token_kubeconfig(cluster.kubeconfig(), &format!("{id}.{secret}"), &kubeconfig)?;
        Ok(BootstrapToken {
            id,
            kubeconfig,
            secret,
            guard: None,
        })
    }

    /// Creates the token's Secret in `kube-system` (deleted on drop).
    pub async fn register(&mut self, cluster: &TestCluster) -> Result<()> {
        self.register_in(&cluster.client(), cluster.kubeconfig(), cluster.vkcp())
            .await
    }

    async fn register_in(
        &mut self,
        admin: &Client,
        admin_kubeconfig: &Path,
        vkcp: &Path,
    ) -> Result<()> {
        let expiration = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .context("token expiry")?;
        let name = format!("bootstrap-token-{}", self.id);
        let object = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("kube-system".into()),
                ..ObjectMeta::default()
            },
            type_: Some("bootstrap.kubernetes.io/token".into()),
            string_data: Some(
                [
                    ("token-id", self.id.clone()),
                    ("token-secret", self.secret.clone()),
                    ("expiration", expiration.to_string()),
                    ("usage-bootstrap-authentication", "true".into()),
                    ("description", "vk-rs test".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(admin.clone(), "kube-system")
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating kube-system/{name}"))?;
        self.guard = Some(DeleteOnDrop::new(
            vkcp.to_path_buf(),
            admin_kubeconfig.to_path_buf(),
            "secret",
            Some("kube-system"),
            &name,
        ));
        Ok(())
    }
}

/// A token id ([a-z0-9]{6}) and secret ([a-z0-9]{16}).
fn new_token() -> (String, String) {
    let id: String = unique_name("t")
        .trim_start_matches("t-")
        .chars()
        .take(6)
        .collect();
    let secret: String = [unique_name("s"), unique_name("s")]
        .iter()
        .map(|n| n.trim_start_matches("s-").to_string())
        .collect::<String>()
        .chars()
        .take(16)
        .collect();
    (id, secret)
}

/// Creates a bootstrap token valid for an hour and writes its kubeconfig to
/// `dir/bootstrap.kubeconfig`.
pub async fn bootstrap_token(cluster: &TestCluster, dir: &Path) -> Result<BootstrapToken> {
    bootstrap_token_in(&cluster.client(), cluster.kubeconfig(), cluster.vkcp(), dir).await
}

/// [`bootstrap_token`] in the cluster of admin client `admin` and admin
/// kubeconfig `admin_kubeconfig` (a cluster of a test's own).
pub async fn bootstrap_token_in(
    admin: &Client,
    admin_kubeconfig: &Path,
    vkcp: &Path,
    dir: &Path,
) -> Result<BootstrapToken> {
    let (id, secret) = new_token();
    let kubeconfig = dir.join("bootstrap.kubeconfig");
    write_token_kubeconfig(admin_kubeconfig, &format!("{id}.{secret}"), &kubeconfig)?;
    let mut token = BootstrapToken {
        id,
        kubeconfig,
        secret,
        guard: None,
    };
    token.register_in(admin, admin_kubeconfig, vkcp).await?;
    Ok(token)
}

/// A client for `cluster` that authenticates with the certificate and key
/// of a kubelet's `cert_dir/kubelet-client-current.pem`.
pub async fn node_client(cluster: &TestCluster, cert_dir: &Path) -> Result<Client> {
    node_client_in(cluster.kubeconfig(), cert_dir).await
}

/// [`node_client`] for the cluster of admin kubeconfig `admin_kubeconfig`.
pub async fn node_client_in(admin_kubeconfig: &Path, cert_dir: &Path) -> Result<Client> {
    let path = cert_dir.join(CURRENT_CLIENT_CERT);
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (cert, key) = split_pem(&pem);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut kubeconfig = Kubeconfig::read_from(admin_kubeconfig)?;
    let auth: AuthInfo = serde_json::from_value(serde_json::json!({
        "client-certificate-data": b64.encode(cert),
        "client-key-data": b64.encode(key),
    }))?;
    for user in &mut kubeconfig.auth_infos {
        user.auth_info = Some(auth.clone());
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Client::try_from(config).context("building the node's client")
}

/// The `CERTIFICATE` blocks and the private key block of a PEM file.
fn split_pem(pem: &str) -> (String, String) {
    let (mut cert, mut key) = (String::new(), String::new());
    let mut into_key = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN ") {
            into_key = line.contains("PRIVATE KEY");
        }
        let out = if into_key { &mut key } else { &mut cert };
        out.push_str(line);
        out.push('\n');
    }
    (cert, key)
}

/// The validity (not before, not after) of the first certificate in a PEM file.
pub fn certificate_validity(pem: &str) -> Result<(SystemTime, SystemTime)> {
    let der = first_certificate(pem)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Ok((
        at(parsed.validity().not_before.timestamp()),
        at(parsed.validity().not_after.timestamp()),
    ))
}

fn first_certificate(pem: &str) -> Result<Vec<u8>> {
    let (cert, _) = split_pem(pem);
    let body: String = cert
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("certificate base64")
}

/// The subject common name and organizations of the first certificate in
/// a PEM file.
pub fn certificate_subject(pem: &str) -> Result<(String, Vec<String>)> {
    let der = first_certificate(pem)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let orgs = parsed
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok((cn, orgs))
}

/// A control plane of a test's own in `<workspace>/target/<name>`, started
/// with extra component arguments (`cargo xtask cluster up --dir ...
/// --controller-manager-arg=...`) and stopped when dropped: for a test that
/// needs the cluster configured differently from the shared one (short-lived
/// certificates). A cluster left running there by an interrupted run is
/// stopped first, so the arguments always apply.
pub struct OwnCluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    vkcp: PathBuf,
}

impl OwnCluster {
    /// Starts the cluster (blocking: call it from `spawn_blocking` or before
    /// the runtime matters).
    pub fn up(name: &str, component_args: &[&str]) -> Result<OwnCluster> {
        let dir = crate::workspace::workspace_root().join("target").join(name);
        let dir_arg = dir.to_string_lossy().into_owned();
        crate::workspace::xtask(["cluster", "down", "--dir", dir_arg.as_str()])?;
        let mut args = vec!["cluster", "up", "--dir", dir_arg.as_str()];
        args.extend(component_args);
        let kubeconfig = PathBuf::from(
            crate::workspace::xtask(args)?
                .last_line()
                .context("`cargo xtask cluster up` printed no kubeconfig path")?,
        );
        let vkcp = PathBuf::from(
            crate::workspace::xtask(["controlplane-path"])?
                .last_line()
                .context("`cargo xtask controlplane-path` printed no path")?,
        );
        Ok(OwnCluster {
            dir,
            kubeconfig,
            vkcp,
        })
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Waits (blocking) until the controller-manager has started its
    /// controllers: its log's "Controller starting..." lines stopped growing
    /// for 3 s (at most `timeout`). A controller-manager whose apiserver
    /// stops while it still builds its controllers exits.
    pub fn wait_controllers_started(&self, timeout: std::time::Duration) -> Result<()> {
        let log = self.dir.join("logs").join("kube-controller-manager.log");
        let started = std::time::Instant::now();
        let mut last = (0, std::time::Instant::now());
        loop {
            let count = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("\"Controller starting...\"")
                .count();
            if count != last.0 {
                last = (count, std::time::Instant::now());
            } else if count > 0 && last.1.elapsed() >= std::time::Duration::from_secs(3) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                anyhow::bail!(
                    "the controller-manager started {count} controllers and went on within {timeout:?}"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// The `vkcp` binary.
    pub fn vkcp(&self) -> &Path {
        &self.vkcp
    }

    /// An admin client.
    pub async fn client(&self) -> Result<Client> {
        crate::kubeconfig::client_for_kubeconfig(&self.kubeconfig).await
    }

    /// The PID of the cluster's kube-apiserver process (a child of `vkcp`),
    /// for tests that stop it (SIGSTOP) and resume it.
    pub fn apiserver_pid(&self) -> Result<u32> {
        let vkcp: u32 = std::fs::read_to_string(self.dir.join("vkcp.pid"))
            .context("reading vkcp.pid")?
            .trim()
            .parse()
            .context("vkcp.pid")?;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let is_apiserver = cmdline
                .split(|b| *b == 0)
                .nth(1)
                .is_some_and(|arg| arg == b"kube-apiserver");
            if parent == Some(vkcp) && is_apiserver {
                return Ok(pid);
            }
        }
        anyhow::bail!("no kube-apiserver child of vkcp {vkcp}")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== control-plane logs of {} =====\n{}",
                self.dir.display(),
                crate::logs::control_plane_logs_tail(&self.dir, 30)
            );
        }
        let dir = self.dir.to_string_lossy().into_owned();
        if let Err(err) = crate::workspace::xtask(["cluster", "down", "--dir", dir.as_str()]) {
            eprintln!("stopping the cluster in {dir}: {err:#}");
        }
    }
}
