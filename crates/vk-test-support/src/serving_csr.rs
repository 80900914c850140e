//! The operator's side of a kubelet's serving certificate: a kubelet under
//! test asks for it with a `kubernetes.io/kubelet-serving` CSR, which no
//! controller approves (the cluster's CSR approver handles client
//! certificates only), so the test approves it with `kubectl certificate
//! approve`, as `docs/images-and-charts.md` tells operators to.
//!
//! [`CsrApprover`] is the one approver of the test code: a background task
//! that approves one node's serving CSRs until dropped, which covers the
//! first certificate and its renewals. [`approve_serving_csr`] is its
//! one-shot form for a test that needs the kubelet API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams};

use crate::cluster::TestCluster;
use crate::kubectl::kubectl_async;
use crate::wait::wait_for;

/// The signer of kubelet serving certificates.
const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// How often the approver looks for new CSRs.
const INTERVAL: Duration = Duration::from_millis(300);

/// How long [`approve_serving_csr`] waits for the certificate.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Approves, until dropped, every pending kubelet-serving CSR for one node
/// (subject `system:node:<node>`), and, when a requester is given, only
/// those that requester made. Must be started inside a Tokio runtime.
#[derive(Debug)]
pub struct CsrApprover {
    node: String,
    csrs: Api<CertificateSigningRequest>,
    task: tokio::task::JoinHandle<()>,
    approved: Arc<Mutex<Vec<String>>>,
}

impl CsrApprover {
    /// Starts approving node `node`'s serving CSRs; with `requester`
    /// (a username such as `system:serviceaccount:<ns>:<name>`), only the
    /// ones it requested.
    pub fn start(cluster: &TestCluster, node: &str, requester: Option<&str>) -> CsrApprover {
        let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client());
        let approved = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(approve_loop(
            csrs.clone(),
            cluster.vkcp().to_path_buf(),
            cluster.kubeconfig().to_path_buf(),
            node.to_string(),
            requester.map(str::to_string),
            approved.clone(),
        ));
        CsrApprover {
            node: node.to_string(),
            csrs,
            task,
            approved,
        }
    }

    /// The names of the CSRs approved so far.
    pub fn approved(&self) -> Vec<String> {
        self.approved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the cluster has issued a certificate for one of the
    /// node's serving CSRs (approved by this approver or before it ran).
    pub async fn wait_issued(&self, timeout: Duration) -> Result<()> {
        let node = self.node.as_str();
        wait_for(
            &format!("a serving certificate issued for node {node}"),
            timeout,
            || async {
                let issued = serving_csrs(&self.csrs).await?.iter().any(|csr| {
                    for_node(csr, node)
                        && csr.status.as_ref().is_some_and(|s| s.certificate.is_some())
                });
                Ok(issued.then_some(()))
            },
        )
        .await
    }
}

impl Drop for CsrApprover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Approves node `node`'s serving CSR until a certificate is issued, then
/// gives the kubelet time to fetch it (it polls its CSR every second): what
/// a test calls before it uses the kubelet API through the apiserver (logs,
/// exec, port-forward).
///
/// # Panics
///
/// When no certificate is issued within 30 s.
pub async fn approve_serving_csr(cluster: &TestCluster, node: &str) {
    let approver = CsrApprover::start(cluster, node, None);
    if let Err(err) = approver.wait_issued(ISSUE_TIMEOUT).await {
        panic!("{err:#}");
    }
    drop(approver);
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// The body of [`CsrApprover`]'s task.
async fn approve_loop(
    csrs: Api<CertificateSigningRequest>,
    vkcp: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    node: String,
    requester: Option<String>,
    approved: Arc<Mutex<Vec<String>>>,
) {
    loop {
        // A failed list or approval is retried on the next round.
        for csr in serving_csrs(&csrs).await.unwrap_or_default() {
            let pending = csr
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(|c| c.is_empty());
            let requested = requester
                .as_deref()
                .is_none_or(|u| csr.spec.username.as_deref() == Some(u));
            let Some(name) = csr.metadata.name.clone() else {
                continue;
            };
            if pending && requested && for_node(&csr, &node) {
                let out =
                    kubectl_async(&vkcp, &kubeconfig, ["certificate", "approve", &name]).await;
                if out.is_ok_and(|o| o.success()) {
                    approved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(name);
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Every kubelet-serving CSR of the cluster.
async fn serving_csrs(
    csrs: &Api<CertificateSigningRequest>,
) -> Result<Vec<CertificateSigningRequest>> {
    let params = ListParams::default().fields(&format!("spec.signerName={KUBELET_SERVING}"));
    Ok(csrs.list(&params).await?.items)
}

/// Whether a CSR asks for node `node`'s certificate: its PKCS#10 request
/// has the subject common name `system:node:<node>`.
fn for_node(csr: &CertificateSigningRequest, node: &str) -> bool {
    let pem = String::from_utf8_lossy(&csr.spec.request.0);
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .is_ok_and(|der| names_common_name(&der, &format!("system:node:{node}")))
}

/// Whether DER `der` holds `name` as a whole string value (UTF8String or
/// PrintableString with exactly its length), so that `system:node:a` is not
/// found inside `system:node:ab`.
fn names_common_name(der: &[u8], name: &str) -> bool {
    let mut length = Vec::new();
    match u8::try_from(name.len()) {
        Ok(n) if n < 0x80 => length.push(n),
        Ok(n) => length.extend([0x81, n]),
        Err(_) => return false,
    }
    [0x0c_u8, 0x13].iter().any(|tag| {
        let mut needle = vec![*tag];
        needle.extend(&length);
        needle.extend(name.as_bytes());
        der.windows(needle.len()).any(|w| w == needle.as_slice())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_common_name_matches_only_as_a_whole_string() {
        let name = "system:node:a";
        let mut der = vec![0x30, 0x20, 0x0c, 13];
        der.extend(name.as_bytes());
        assert!(names_common_name(&der, name));
        assert!(!names_common_name(&der, "system:node:"));
        let mut longer = vec![0x0c, 14];
        longer.extend(b"system:node:ab");
        assert!(!names_common_name(&longer, name));
        let mut printable = vec![0x13, 13];
        printable.extend(name.as_bytes());
        assert!(names_common_name(&printable, name));
    }

    #[test]
    fn the_request_of_a_csr_is_read_for_the_node_name() -> Result<()> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:edge-1");
        let key = rcgen::KeyPair::generate()?;
        let pem = params.serialize_request(&key)?.pem()?;
        let csr = CertificateSigningRequest {
            spec: k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(pem.into_bytes()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(for_node(&csr, "edge-1"));
        assert!(!for_node(&csr, "edge-"));
        assert!(!for_node(&csr, "edge-10"));
        Ok(())
    }
}
