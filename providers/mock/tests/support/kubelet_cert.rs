//! The operator's side of the serving-certificate CSR: a background task that
//! approves the `kubernetes.io/kubelet-serving` CSRs of one node with
//! `kubectl certificate approve`, as `docs/images-and-charts.md` tells
//! operators to. Shared by the image and chart tests (`#[path]` module).

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams};
use vk_test_support::TestCluster;

/// Approves, until dropped, every pending kubelet-serving CSR whose subject is
/// `system:node:<node>` (and, when given, whose requester is `username`).
pub struct CsrApprover {
    task: tokio::task::JoinHandle<()>,
    approved: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CsrApprover {
    pub async fn start(node: &str, username: Option<&str>) -> CsrApprover {
        let cluster = TestCluster::get().await.expect("test cluster");
        let approved = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = approved.clone();
        let subject = format!("system:node:{node}");
        let username = username.map(str::to_string);
        let task = tokio::spawn(async move {
            let api: Api<CertificateSigningRequest> = Api::all(cluster.client());
            let params =
                ListParams::default().fields("spec.signerName=kubernetes.io/kubelet-serving");
            loop {
                for csr in api.list(&params).await.map(|l| l.items).unwrap_or_default() {
                    let pending = csr
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_none_or(|c| c.is_empty());
                    let requester_ok = username
                        .as_deref()
                        .is_none_or(|u| csr.spec.username.as_deref() == Some(u));
                    let name = csr.metadata.name.clone().unwrap_or_default();
                    if pending && requester_ok && names_subject(&csr, &subject) {
                        let out = cluster.kubectl(["certificate", "approve", &name]).await;
                        if out.is_ok_and(|o| o.status.success()) {
                            seen.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        CsrApprover { task, approved }
    }

    /// Names of the CSRs approved so far.
    pub fn approved(&self) -> Vec<String> {
        self.approved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for CsrApprover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the PKCS#10 request carries `subject` (the DER holds the common
/// name verbatim).
fn names_subject(csr: &CertificateSigningRequest, subject: &str) -> bool {
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .is_ok_and(|der| der.windows(subject.len()).any(|w| w == subject.as_bytes()))
}

/// Whether this build of vk-mock serves the kubelet HTTPS API (it then has
/// the serving-certificate flags, and `kubectl logs` reaches it).
pub fn has_kubelet_api() -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_vk-mock"))
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--serving-cert-file"))
}

/// `kubectl logs` of a pod's container through the apiserver (which dials the
/// node's kubelet API), retried while the serving certificate is being issued.
pub async fn logs_via_apiserver(
    cluster: &TestCluster,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..60 {
        match cluster
            .kubectl(["logs", "-n", ns, pod, "-c", container])
            .await
        {
            Ok(out) if out.status.success() => return Ok(out.stdout),
            Ok(out) => last = out.stderr,
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last)
}
