//! The integration tests' rig: a fake ARM server, the cluster, a namespace
//! and a `vk-aci` process talking to the fake, with the waits and checks
//! every test repeats.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use vk_aci::group::group_name;
use vk_test_support::{
    FakeArm, FakeArmOptions, KubeletProcess, TestCluster, TestNamespace, cluster_and_namespace,
    create_pod, delete_node, events, free_port, unique_name, wait_for, wait_pod, wait_running,
};

/// A pod on the fake runs within: a create (two operation polls), one
/// second Pending, and a status poll every second.
pub const RUNNING_WITHIN: Duration = Duration::from_secs(45);

/// The cluster DNS the nodes are given.
pub const CLUSTER_DNS: &str = "10.96.0.10";

/// A `vk-aci` process for one node, talking to `arm`.
pub struct AciNode {
    pub name: String,
    pub process: KubeletProcess,
    _dir: tempfile::TempDir,
}

/// The flags of a `vk-aci` for node `name` talking to `arm` (all but the
/// client secret), with the kubeconfig and the fake's CA at the paths the
/// process sees.
pub fn node_flags(arm: &FakeArm, kubeconfig: &str, ca_file: &str, name: &str) -> Vec<String> {
    let o = arm.options();
    [
        "--kubeconfig",
        kubeconfig,
        "--nodename",
        name,
        "--metrics-addr",
        &format!("127.0.0.1:{}", free_port().unwrap()),
        "--kubelet-port",
        &free_port().unwrap().to_string(),
        "--node-ip",
        "127.0.0.1",
        "--log-level",
        "info,vk_core=debug,vk_aci=debug",
        "--subscription-id",
        &o.subscription,
        "--resource-group",
        &o.resource_group,
        "--region",
        "westeurope",
        "--tenant-id",
        &o.tenant,
        "--client-id",
        "vk-aci-test",
        "--arm-endpoint",
        &arm.endpoint(),
        "--authority-host",
        &arm.endpoint(),
        "--extra-ca-file",
        ca_file,
        "--status-poll-seconds",
        "1",
        "--cluster-dns",
        CLUSTER_DNS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl AciNode {
    /// `vk-aci` for node `name` talking to `arm` with `client_secret`, and `extra` flags.
    pub fn start_with_flags(
        cluster: &TestCluster,
        arm: &FakeArm,
        name: &str,
        client_secret: &str,
        extra: &[&str],
    ) -> AciNode {
        let dir = tempfile::tempdir().unwrap();
        let log: PathBuf = dir.path().join("vk-aci.log");
        let mut flags: Vec<OsString> = node_flags(
            arm,
            cluster.kubeconfig().to_str().unwrap(),
            arm.ca_file().to_str().unwrap(),
            name,
        )
        .into_iter()
        .map(OsString::from)
        .collect();
        flags.extend(["--client-secret".into(), client_secret.into()]);
        flags.extend(extra.iter().map(OsString::from));
        let process =
            KubeletProcess::start(env!("CARGO_BIN_EXE_vk-aci"), flags, &log).expect("spawn vk-aci");
        AciNode {
            name: name.to_string(),
            process,
            _dir: dir,
        }
    }
}

/// One test's world: the fake ARM, the cluster, a namespace and a `vk-aci`
/// node talking to the fake.
pub struct Rig {
    pub arm: FakeArm,
    pub cluster: TestCluster,
    pub ns: TestNamespace,
    pub client: kube::Client,
    pub node: AciNode,
}

impl Rig {
    pub async fn start(prefix: &str) -> Rig {
        Rig::start_with_secret(prefix, "s3cret").await
    }

    /// With `client_secret` as vk-aci's (the fake accepts only `s3cret`).
    pub async fn start_with_secret(prefix: &str, client_secret: &str) -> Rig {
        Rig::start_with(prefix, FakeArmOptions::default(), client_secret).await
    }

    /// With the fake's `options` (its accepted secret is always `s3cret`)
    /// and `client_secret` as vk-aci's.
    pub async fn start_with(prefix: &str, options: FakeArmOptions, client_secret: &str) -> Rig {
        Rig::start_full(prefix, options, client_secret, |_| Vec::new()).await
    }

    /// As [`Rig::start_with`], the node's extra flags made from the test's
    /// namespace.
    pub async fn start_full(
        prefix: &str,
        options: FakeArmOptions,
        client_secret: &str,
        extra: impl FnOnce(&str) -> Vec<String>,
    ) -> Rig {
        let arm = FakeArm::start(FakeArmOptions {
            client_secret: Some("s3cret".into()),
            ..options
        })
        .await
        .expect("fake ARM");
        let (cluster, ns) = cluster_and_namespace(prefix).await;
        let client = cluster.client();
        let extra = extra(ns.name());
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let node =
            AciNode::start_with_flags(&cluster, &arm, &unique_name("aci"), client_secret, &extra);
        Rig {
            arm,
            cluster,
            ns,
            client,
            node,
        }
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Creates pod `name` on the node with `spec` (its `nodeName` added).
    pub async fn pod(&self, name: &str, mut spec: Value) -> Pod {
        spec["nodeName"] = json!(self.node.name);
        create_pod(
            &self.client,
            self.ns(),
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    /// A pod of one busybox container sleeping for an hour.
    pub async fn sleeper(&self, name: &str) -> Pod {
        self.pod(
            name,
            json!({"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}),
        )
        .await
    }

    pub async fn wait_running(&self, name: &str) -> Pod {
        wait_running(&self.client, self.ns(), name, RUNNING_WITHIN).await
    }

    pub async fn wait_failed(&self, name: &str) -> Pod {
        wait_pod(
            &self.client,
            self.ns(),
            name,
            RUNNING_WITHIN,
            "Failed",
            |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"),
        )
        .await
    }

    /// Waits until pod `name` satisfies `pred`.
    pub async fn wait_pod_where(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        wait_pod(&self.client, self.ns(), name, RUNNING_WITHIN, what, pred).await
    }

    /// Waits for an event `reason` on pod `pod`.
    pub async fn wait_event(&self, reason: &str, pod: &str) {
        wait_for(reason, Duration::from_secs(20), || async {
            let events = events(&self.client, self.ns()).await;
            if events.iter().any(|(r, p)| r == reason && p == pod) {
                Ok(Some(()))
            } else {
                anyhow::bail!("events: {events:?}")
            }
        })
        .await
        .unwrap();
    }

    /// Waits until the fake has no group `group`.
    pub async fn wait_group_gone(&self, group: &str, within: Duration) {
        wait_for("the group is deleted", within, || async {
            if self.arm.group_names().iter().any(|g| g == group) {
                anyhow::bail!("still there: {:?}", self.arm.group_names())
            }
            Ok(Some(()))
        })
        .await
        .unwrap();
    }

    pub fn puts(&self) -> usize {
        self.arm
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count()
    }

    /// Asserts that no request or response broke the contract, then stops
    /// the node and removes it.
    pub async fn finish(self) {
        assert_contract_kept(&self.arm);
        let Rig { client, node, .. } = self;
        let name = node.name.clone();
        drop(node);
        delete_node(&client, &name).await;
    }
}

pub fn group_of(pod: &Pod) -> String {
    let m = &pod.metadata;
    group_name(
        m.namespace.as_deref().unwrap(),
        m.name.as_deref().unwrap(),
        m.uid.as_deref().unwrap(),
    )
}

pub fn assert_contract_kept(arm: &FakeArm) {
    let violations = arm.violations();
    assert!(
        violations.is_empty(),
        "contract violations: {violations:#?}"
    );
}
