//! A node's own identity in tests: a bootstrap token and its kubeconfig (what
//! `cargo xtask cluster bootstrap-token` makes, here through the API), and a
//! client that authenticates with a node's client certificate from its
//! `--cert-dir`, to check what the Node authorizer lets a node do.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{AuthInfo, Kubeconfig};
use kube::{Client, Config};

use crate::cluster::TestCluster;
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
    _secret: DeleteOnDrop,
}

impl BootstrapToken {
    /// The username the apiserver gives the token's holder.
    pub fn username(&self) -> String {
        format!("system:bootstrap:{}", self.id)
    }
}

/// Creates a bootstrap token valid for an hour and writes its kubeconfig to
/// `dir/bootstrap.kubeconfig`.
pub async fn bootstrap_token(cluster: &TestCluster, dir: &Path) -> Result<BootstrapToken> {
    // Token ids are [a-z0-9]{6} and secrets [a-z0-9]{16}.
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
    let expiration = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .context("token expiry")?;
    let name = format!("bootstrap-token-{id}");
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(
            [
                ("token-id", id.clone()),
                ("token-secret", secret.clone()),
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
    Api::<Secret>::namespaced(cluster.client(), "kube-system")
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating kube-system/{name}"))?;
    let guard = cluster.delete_on_drop("secret", Some("kube-system"), &name);
    let kubeconfig = dir.join("bootstrap.kubeconfig");
    cluster.write_token_kubeconfig(&format!("{id}.{secret}"), &kubeconfig)?;
    Ok(BootstrapToken {
        id,
        kubeconfig,
        _secret: guard,
    })
}

/// A client for `cluster` that authenticates with the certificate and key
/// of a kubelet's `cert_dir/kubelet-client-current.pem`.
pub async fn node_client(cluster: &TestCluster, cert_dir: &Path) -> Result<Client> {
    let path = cert_dir.join(CURRENT_CLIENT_CERT);
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (cert, key) = split_pem(&pem);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut kubeconfig = Kubeconfig::read_from(cluster.kubeconfig())?;
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

/// The subject common name and organizations of the first certificate in
/// a PEM file.
pub fn certificate_subject(pem: &str) -> Result<(String, Vec<String>)> {
    let (cert, _) = split_pem(pem);
    let body: String = cert
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("certificate base64")?;
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
