//! The kubelet's own identity, so that the apiserver's audit log tells its
//! requests apart from the benchmark's: a client certificate for the user
//! [`crate::KUBELET_USER`] in group `system:nodes`, issued through the CSR API
//! (signer `kubernetes.io/kube-apiserver-client`) and bound to `cluster-admin`.
//!
//! The group puts the kubelet in the same API Priority and Fairness class as a
//! real kubelet (FlowSchemas `system-node-high`/`system-nodes`). The user name
//! does not start with `system:node:`, so neither the Node authorizer nor the
//! NodeRestriction admission plugin treat it as a node: one identity can serve
//! many nodes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

const CSR_NAME: &str = "vk-bench-kubelet";
const BINDING_NAME: &str = "vk-bench-kubelet";
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Issues the kubelet's certificate, binds it to `cluster-admin` and writes a
/// kubeconfig using it next to `admin_kubeconfig`. Returns that path.
pub async fn kubelet_kubeconfig(
    admin: &Client,
    admin_kubeconfig: &Path,
    user: &str,
    out: &Path,
) -> Result<PathBuf> {
    let key = rcgen::KeyPair::generate().context("generating the kubelet's key")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .context("certificate request parameters")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, user);
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name = dn;
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("serialising the certificate request")?;

    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    // A fresh cluster has none; a reused one may hold an earlier run's.
    let _ = api.delete(CSR_NAME, &DeleteParams::default()).await;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(CSR_NAME.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            expiration_seconds: Some(7 * 24 * 3600),
            ..Default::default()
        },
        status: None,
    };
    api.create(&PostParams::default(), &csr)
        .await
        .context("creating the kubelet's CertificateSigningRequest")?;
    let approval = serde_json::json!({
        "status": { "conditions": [CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("Benchmark".into()),
            message: Some("approved by vk-bench for the kubelet under test".into()),
            ..Default::default()
        }]}
    });
    api.patch_approval(CSR_NAME, &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .context("approving the kubelet's CertificateSigningRequest")?;
    let started = Instant::now();
    let cert = loop {
        let current = api
            .get(CSR_NAME)
            .await
            .context("reading the kubelet's CSR")?;
        if let Some(cert) = current
            .status
            .and_then(|s| s.certificate)
            .filter(|c| !c.0.is_empty())
        {
            break cert.0;
        }
        if started.elapsed() > ISSUE_TIMEOUT {
            bail!(
                "the controller-manager did not issue the kubelet's certificate within {ISSUE_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(BINDING_NAME.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    };
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let _ = bindings
        .delete(BINDING_NAME, &DeleteParams::default())
        .await;
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .context("binding the kubelet's user to cluster-admin")?;

    let text = std::fs::read_to_string(admin_kubeconfig)
        .with_context(|| format!("reading {}", admin_kubeconfig.display()))?;
    let kubeconfig = with_client_cert(&text, &cert, key.serialize_pem().as_bytes())?;
    std::fs::write(out, kubeconfig).with_context(|| format!("writing {}", out.display()))?;
    Ok(out.to_path_buf())
}

/// Approves the kubelet's serving-certificate requests (signer
/// `kubernetes.io/kubelet-serving`, requested by `user`), as an operator
/// would: a kubelet with its certificate stops polling for it, so the
/// steady-state figures do not depend on when the run started. Returns after
/// the first approval, or after 3 minutes.
pub async fn approve_serving_csrs(admin: Client, user: String) {
    let api: Api<CertificateSigningRequest> = Api::all(admin);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        let pending = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                c.spec.signer_name == "kubernetes.io/kubelet-serving"
                    && c.spec.username.as_deref() == Some(user.as_str())
                    && c.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_none_or(|cs| cs.is_empty())
            });
        let mut approved = false;
        for csr in pending {
            let Some(name) = csr.metadata.name.clone() else {
                continue;
            };
            let approval = serde_json::json!({
                "status": { "conditions": [CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("Benchmark".into()),
                    message: Some("approved by vk-bench, as an operator would".into()),
                    ..Default::default()
                }]}
            });
            match api
                .patch_approval(&name, &PatchParams::default(), &Patch::Merge(&approval))
                .await
            {
                Ok(_) => {
                    eprintln!("bench: approved the kubelet's serving certificate request {name}");
                    approved = true;
                }
                Err(e) => eprintln!("bench: approving {name}: {e}"),
            }
        }
        if approved {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The admin kubeconfig (JSON, as `vkcp` writes it) with its user replaced by
/// one authenticating with `cert_pem`/`key_pem`.
pub fn with_client_cert(admin_kubeconfig: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<String> {
    let mut config: serde_json::Value = serde_json::from_str(admin_kubeconfig)
        .context("the admin kubeconfig is not the JSON vkcp writes")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let user = serde_json::json!({
        "client-certificate-data": b64.encode(cert_pem),
        "client-key-data": b64.encode(key_pem),
    });
    config["users"] = serde_json::json!([{ "name": "kubelet", "user": user }]);
    let Some(contexts) = config["contexts"].as_array_mut() else {
        bail!("the admin kubeconfig has no contexts");
    };
    for ctx in contexts {
        ctx["context"]["user"] = serde_json::json!("kubelet");
    }
    serde_json::to_string_pretty(&config).context("serialising the kubelet's kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_user_and_keeps_the_cluster() {
        let admin = r#"{"apiVersion":"v1","kind":"Config",
            "clusters":[{"name":"vk-local","cluster":{"server":"https://127.0.0.1:1","certificate-authority-data":"Q0E="}}],
            "users":[{"name":"admin","user":{"client-certificate-data":"QQ==","client-key-data":"Qg=="}}],
            "contexts":[{"name":"vk-local","context":{"cluster":"vk-local","user":"admin"}}],
            "current-context":"vk-local"}"#;
        let out: serde_json::Value =
            serde_json::from_str(&with_client_cert(admin, b"CERT", b"KEY").unwrap()).unwrap();
        assert_eq!(
            out["users"][0]["user"]["client-certificate-data"],
            "Q0VSVA=="
        );
        assert_eq!(out["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(out["contexts"][0]["context"]["user"], "kubelet");
        assert_eq!(
            out["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:1"
        );
    }
}
