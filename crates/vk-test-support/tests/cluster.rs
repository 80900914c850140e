//! The local control plane does what the rest of the project relies on: it
//! serves the pinned version, its controller-manager and scheduler act, Node
//! leases can be written, kubelet-serving CSRs are signed by the cluster CA,
//! and `cargo xtask cluster down` leaves no process behind.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vk_test_support::{
    TestCluster, kubectl_blocking, unique_name, wait_for, workspace_root, xtask,
};

/// Long enough for controllers on a busy 2-core machine; a healthy cluster
/// takes a few seconds.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The Kubernetes version `xtask/controlplane/go.mod` pins.
fn pinned_kubernetes_version() -> Result<String> {
    let path = workspace_root().join("xtask/controlplane/go.mod");
    let go_mod =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    go_mod
        .lines()
        .map(|line| line.trim().trim_start_matches("require").trim())
        .find_map(|line| line.strip_prefix("k8s.io/kubernetes v1."))
        .map(|rest| format!("v1.{}", rest.split_whitespace().next().unwrap_or("")))
        .context("go.mod does not require k8s.io/kubernetes")
}

fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner_uid && r.controller == Some(true))
}

#[tokio::test]
async fn readyz_is_ok() {
    TestCluster::run(async |cluster| {
        let out = cluster.kubectl(["get", "--raw=/readyz"]).await?.ok()?;
        ensure!(out.trim() == "ok", "/readyz answered {out:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn server_reports_the_pinned_version() {
    TestCluster::run(async |cluster| {
        let pinned = pinned_kubernetes_version()?;
        ensure!(pinned != "v0.0.0", "go.mod pins {pinned}");
        let out = cluster.kubectl(["version", "-o", "json"]).await?.ok()?;
        let version: serde_json::Value = serde_json::from_str(&out)?;
        let server = version["serverVersion"]["gitVersion"].as_str();
        ensure!(
            server == Some(pinned.as_str()),
            "server gitVersion {server:?}, expected {pinned}"
        );
        let client = version["clientVersion"]["gitVersion"].as_str();
        ensure!(
            client == Some(pinned.as_str()),
            "kubectl gitVersion {client:?}, expected {pinned}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deployment_creates_a_replicaset_and_three_pods() {
    TestCluster::run(async |cluster| {
        let ns = cluster.namespace("deployment").await?;
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), ns.name());
        let replicasets: Api<ReplicaSet> = Api::namespaced(cluster.client(), ns.name());
        let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());

        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
                }
            }
        }))?;
        let created = deployments
            .create(&PostParams::default(), &deployment)
            .await?;
        let deployment_uid = created.metadata.uid.context("deployment has no uid")?;

        let rs = wait_for(
            "a ReplicaSet controlled by deployment web",
            TIMEOUT,
            || async {
                let list = replicasets.list(&ListParams::default()).await?;
                Ok(list
                    .items
                    .into_iter()
                    .find(|rs| is_controlled_by(&rs.metadata, &deployment_uid)))
            },
        )
        .await?;
        let rs_spec_replicas = rs.spec.as_ref().and_then(|s| s.replicas);
        ensure!(
            rs_spec_replicas == Some(3),
            "ReplicaSet wants {rs_spec_replicas:?} replicas"
        );
        let rs_uid = rs.metadata.uid.clone().context("ReplicaSet has no uid")?;

        let owned = wait_for("3 pods controlled by the ReplicaSet", TIMEOUT, || async {
            let list = pods.list(&ListParams::default()).await?;
            let owned: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| is_controlled_by(&p.metadata, &rs_uid))
                .collect();
            Ok((owned.len() == 3).then_some(owned))
        })
        .await?;
        for pod in &owned {
            // No kubelet runs these pods, so they stay Pending whether or not
            // the scheduler found a node.
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            ensure!(
                phase == Some("Pending"),
                "pod {:?} is {phase:?}",
                pod.metadata.name
            );
        }
        // The controller keeps exactly 3: no more appear.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let count = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| is_controlled_by(&p.metadata, &rs_uid))
            .count();
        ensure!(count == 3, "{count} pods controlled by the ReplicaSet");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn scheduler_binds_a_pending_pod_to_a_registered_node() {
    TestCluster::run(async |cluster| {
        let node_name = unique_name("vk-test-node");
        let nodes: Api<Node> = Api::all(cluster.client());
        let _delete_node = cluster.delete_on_drop("node", None, &node_name);
        // The taint keeps other tests' pods off this node; only ours tolerates it.
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": node_name,
                "labels": {"kubernetes.io/hostname": node_name, "type": "vk-test"}
            },
            "spec": {
                "taints": [{"key": "vk-test/dedicated", "value": node_name, "effect": "NoSchedule"}]
            }
        }))?;
        nodes.create(&PostParams::default(), &node).await?;

        // What a kubelet reports: resources, an address and Ready.
        let resources: std::collections::BTreeMap<String, Quantity> =
            [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect();
        let now = Time(Timestamp::now());
        let status = NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            }]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("test node, no kubelet".into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(now),
            }]),
            ..NodeStatus::default()
        };
        nodes
            .patch_status(
                &node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;

        let ns = cluster.namespace("scheduling").await?;
        let pods: Api<Pod> = Api::namespaced(cluster.client(), ns.name());
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "pinned"},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node_name},
                // Our taint, and not-ready/unreachable, which the node
                // lifecycle controller adds to a node no kubelet renews.
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "nginx", "image": "nginx"}]
            }
        }))?;
        pods.create(&PostParams::default(), &pod).await?;

        let bound_to = wait_for("pod pinned to be bound to a node", TIMEOUT, || async {
            let pod = pods.get("pinned").await?;
            Ok(pod.spec.and_then(|s| s.node_name))
        })
        .await?;
        ensure!(
            bound_to == node_name,
            "pod bound to {bound_to}, not {node_name}"
        );
        let pod = pods.get("pinned").await?;
        let scheduled = pod
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True");
        ensure!(scheduled, "PodScheduled is not True");

        // No kubelet will confirm a graceful deletion: delete at once.
        pods.delete("pinned", &DeleteParams::default().grace_period(0))
            .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_lease_can_be_written_in_kube_node_lease() {
    TestCluster::run(async |cluster| {
        let name = unique_name("vk-test-lease");
        let _delete = cluster.delete_on_drop("lease", Some("kube-node-lease"), &name);
        let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-node-lease");
        let first_renewal = Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(first_renewal)),
                ..LeaseSpec::default()
            }),
        };
        leases.create(&PostParams::default(), &lease).await?;

        let stored = leases.get(&name).await?;
        let spec = stored.spec.clone().context("stored lease has no spec")?;
        ensure!(spec.holder_identity.as_deref() == Some(name.as_str()));
        ensure!(spec.lease_duration_seconds == Some(40));
        let stored_renewal = spec.renew_time.context("stored lease has no renewTime")?.0;
        // MicroTime keeps microseconds.
        let drift = stored_renewal.duration_since(first_renewal).abs();
        ensure!(
            drift < SignedDuration::from_micros(1),
            "renewTime stored as {stored_renewal}, sent {first_renewal}"
        );

        // Renew it the way a kubelet does: replace with a later renewTime.
        let second_renewal = first_renewal + SignedDuration::from_secs(10);
        let mut renewed = stored.clone();
        if let Some(spec) = renewed.spec.as_mut() {
            spec.renew_time = Some(MicroTime(second_renewal));
        }
        leases
            .replace(&name, &PostParams::default(), &renewed)
            .await?;
        let after = leases.get(&name).await?;
        ensure!(
            after.metadata.resource_version != stored.metadata.resource_version,
            "the renewal did not change the resourceVersion"
        );
        let after_renewal = after
            .spec
            .and_then(|s| s.renew_time)
            .context("renewed lease has no renewTime")?
            .0;
        ensure!(
            after_renewal > stored_renewal,
            "renewTime {after_renewal} is not after {stored_renewal}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_approved_kubelet_serving_csr_is_signed_by_the_cluster_ca() {
    TestCluster::run(async |cluster| {
        let node_name = unique_name("vk-test-csr-node");
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![node_name.clone()])?;
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(
            rcgen::DnType::CommonName,
            format!("system:node:{node_name}"),
        );
        subject.push(rcgen::DnType::OrganizationName, "system:nodes");
        params.distinguished_name = subject;
        let request_pem = params.serialize_request(&key)?.pem()?;

        let csr_name = unique_name("vk-test-serving");
        let _delete = cluster.delete_on_drop("csr", None, &csr_name);
        let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client());
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(csr_name.clone()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(request_pem.into_bytes()),
                signer_name: "kubernetes.io/kubelet-serving".into(),
                usages: Some(vec!["digital signature".into(), "server auth".into()]),
                ..CertificateSigningRequestSpec::default()
            },
            status: None,
        };
        csrs.create(&PostParams::default(), &csr).await?;

        // Not signed before the admin approves it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pending = csrs.get(&csr_name).await?;
        ensure!(
            pending.status.and_then(|s| s.certificate).is_none(),
            "certificate issued before approval"
        );

        cluster
            .kubectl(["certificate", "approve", &csr_name])
            .await?
            .ok()?;
        let certificate_pem = wait_for("the CSR's certificate", TIMEOUT, || async {
            let status = csrs.get(&csr_name).await?.status.unwrap_or_default();
            if let Some(failed) = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Failed" && c.status == "True")
            {
                bail!("the signer failed the CSR: {:?}", failed.message);
            }
            Ok(status.certificate.map(|c| c.0))
        })
        .await?;

        let ca_path = cluster.ca_cert_path();
        let ca_pem =
            std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem)
            .map_err(|e| anyhow!("parsing {}: {e}", ca_path.display()))?;
        let ca = ca_pem
            .parse_x509()
            .map_err(|e| anyhow!("parsing the CA certificate: {e}"))?;
        let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(&certificate_pem)
            .map_err(|e| anyhow!("parsing the issued certificate's PEM: {e}"))?;
        let leaf = leaf_pem
            .parse_x509()
            .map_err(|e| anyhow!("parsing the issued certificate: {e}"))?;

        ensure!(
            leaf.issuer() == ca.subject(),
            "issuer {} is not the cluster CA {}",
            leaf.issuer(),
            ca.subject()
        );
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|e| anyhow!("the certificate is not signed by the cluster CA: {e}"))?;
        ensure!(
            leaf.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
            "the certificate is not for the key in the CSR"
        );
        let common_name = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        let expected_cn = format!("system:node:{node_name}");
        ensure!(
            common_name == Some(expected_cn.as_str()),
            "subject CN {common_name:?}"
        );
        let server_auth = leaf
            .extended_key_usage()
            .map_err(|e| anyhow!("reading extended key usage: {e}"))?
            .is_some_and(|eku| eku.value.server_auth);
        ensure!(server_auth, "the certificate is not for server auth");
        Ok(())
    })
    .await;
}

/// Stops a cluster started by a test even when the test fails half-way.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(err) = xtask(["cluster", "down", "--dir", self.0.as_str()]) {
            eprintln!("stopping the test's own cluster: {err:#}");
        }
    }
}

/// What `/proc` says about a PID: `None` if gone or a zombie (exited, holding
/// nothing), else its command line.
fn live_cmdline(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&cmdline).replace('\0', " "))
}

fn read_pid(path: &Path) -> Result<u32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds {text:?}", path.display()))
}

/// Starts a second, private cluster with `cargo xtask cluster up --dir`,
/// stops it with `cargo xtask cluster down --dir`, and checks by PID that the
/// supervisor and every component it started are gone.
#[test]
fn cluster_down_leaves_no_process_behind() {
    if let Err(err) = own_cluster_lifecycle() {
        panic!("{err:#}");
    }
}

fn own_cluster_lifecycle() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("vk-cluster-").tempdir()?;
    let dir = tmp.path().join("cluster");
    let dir_arg = dir.to_string_lossy().into_owned();
    let _stop = StopOnDrop(dir_arg.clone());

    let up = xtask(["cluster", "up", "--dir", dir_arg.as_str()])?;
    let kubeconfig = PathBuf::from(up.last_line().context("cluster up printed nothing")?);
    ensure!(
        kubeconfig == dir.join("kubeconfig"),
        "cluster up's last line is {}, expected {}",
        kubeconfig.display(),
        dir.join("kubeconfig").display()
    );
    let vkcp = match std::env::var_os("VKCP_BIN").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(
            xtask(["controlplane-path"])?
                .last_line()
                .context("controlplane-path printed nothing")?,
        ),
    };
    let readyz = kubectl_blocking(&vkcp, &kubeconfig, ["get", "--raw=/readyz"])?.ok()?;
    ensure!(readyz.trim() == "ok", "own cluster /readyz: {readyz:?}");

    // Every process of the cluster, read before `down` (vkcp removes the files).
    let mut processes = vec![("vkcp".to_string(), read_pid(&dir.join("vkcp.pid"))?)];
    for entry in std::fs::read_dir(dir.join("pids"))? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        processes.push((name, read_pid(&path)?));
    }
    let mut names: Vec<&str> = processes.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    ensure!(
        names
            == [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "vkcp"
            ],
        "pid files: {names:?}"
    );
    for (name, pid) in &processes {
        let cmdline =
            live_cmdline(*pid).with_context(|| format!("{name} (pid {pid}) is not running"))?;
        ensure!(
            cmdline.contains(&dir_arg),
            "{name} (pid {pid}) runs {cmdline:?}, which does not mention {dir_arg}"
        );
    }

    xtask(["cluster", "down", "--dir", dir_arg.as_str()])?;

    for (name, pid) in &processes {
        // A PID the kernel has handed to another process since counts as gone.
        if let Some(cmdline) = live_cmdline(*pid)
            && cmdline.contains(&dir_arg)
        {
            bail!("{name} (pid {pid}) still runs after cluster down: {cmdline}");
        }
    }
    let status = xtask(["cluster", "status", "--dir", dir_arg.as_str()])?;
    ensure!(
        status.stdout.contains("state: not running"),
        "cluster status after down:\n{}",
        status.stdout
    );
    Ok(())
}
