//! Kubeconfig files: a client for one, the apiserver's port in one, and one
//! written for a bearer token (how a test acts as a ServiceAccount).

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{
    AuthInfo, Context as KubeContext, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::{Client, Config};

/// A [`kube::Client`] for a kubeconfig file (its current context).
pub async fn client_for_kubeconfig(kubeconfig: &Path) -> Result<Client> {
    let file = read(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", kubeconfig.display()))?;
    Client::try_from(config).context("building a Kubernetes client")
}

/// The port of the first cluster's server in `kubeconfig`.
pub(crate) fn apiserver_port(kubeconfig: &Path) -> Result<u16> {
    let server = read(kubeconfig)?
        .clusters
        .into_iter()
        .next()
        .and_then(|c| c.cluster)
        .and_then(|c| c.server)
        .with_context(|| format!("no server in {}", kubeconfig.display()))?;
    server
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("no port in the apiserver address {server}"))
}

/// Writes to `out` a kubeconfig with `admin`'s first cluster (server and
/// CA) and a user that authenticates with the bearer token `token`.
pub(crate) fn write_token_kubeconfig(admin: &Path, token: &str, out: &Path) -> Result<()> {
    let cluster = read(admin)?
        .clusters
        .into_iter()
        .next()
        .and_then(|c| c.cluster)
        .with_context(|| format!("no cluster in {}", admin.display()))?;
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "local".to_string(),
            cluster: Some(cluster),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "token".to_string(),
            auth_info: Some(AuthInfo {
                token: Some(token.to_string().into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "token".to_string(),
            context: Some(KubeContext {
                cluster: "local".to_string(),
                user: Some("token".to_string()),
                ..KubeContext::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("token".to_string()),
        api_version: Some("v1".to_string()),
        kind: Some("Config".to_string()),
        ..Kubeconfig::default()
    };
    // JSON is YAML: kubectl and kube read it as it is.
    let text = serde_json::to_string(&config).context("serialising a kubeconfig")?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}

fn read(kubeconfig: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = r#"{
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "vkcp", "cluster": {
            "server": "https://127.0.0.1:36443", "certificate-authority-data": "Q0E="
        } }],
        "users": [{ "name": "admin", "user": { "client-certificate-data": "Q0VSVA==" } }],
        "contexts": [{ "name": "vkcp", "context": { "cluster": "vkcp", "user": "admin" } }],
        "current-context": "vkcp"
    }"#;

    #[test]
    fn the_apiserver_port_is_read_from_the_server_address() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let admin = dir.path().join("kubeconfig");
        std::fs::write(&admin, ADMIN)?;
        assert_eq!(apiserver_port(&admin)?, 36443);
        std::fs::write(&admin, ADMIN.replace(":36443", ""))?;
        assert!(apiserver_port(&admin).is_err());
        Ok(())
    }

    #[test]
    fn a_token_kubeconfig_keeps_the_cluster_and_only_the_token() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let admin = dir.path().join("kubeconfig");
        let out = dir.path().join("token.kubeconfig");
        std::fs::write(&admin, ADMIN)?;
        write_token_kubeconfig(&admin, "s3cret", &out)?;
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
        assert_eq!(
            written["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:36443"
        );
        assert_eq!(
            written["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(written["users"][0]["user"]["token"], "s3cret");
        assert!(written["users"][0]["user"]["client-certificate-data"].is_null());
        assert_eq!(written["current-context"], "token");
        assert_eq!(read(&out)?.contexts[0].name, "token");
        Ok(())
    }
}
