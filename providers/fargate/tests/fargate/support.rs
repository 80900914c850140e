//! Harness of the Fargate provider's tests: moto with our wrapper, a
//! `vk-fargate` process pointed at it, and the AWS clients a test checks the
//! backend with.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ecs::config::Credentials;
use aws_sdk_ecs::types::{Task, TaskDefinition, TaskField};
use serde_json::json;
use vk_fargate::aws::Clients;

pub use vk_test_support::{
    KubeletProcess, MotoServer, TestCluster, TestNamespace, approve_serving_csr,
    cluster_and_namespace, create_pod, events, free_port, kubectl_ok, phase, unique_name,
    wait_node_ready, wait_pod, wait_running, wait_until,
};

/// How long a pod may take to reach a state: the poll interval is 1 s.
pub const RUNNING_WITHIN: Duration = Duration::from_secs(30);

/// The region of the tests.
pub const REGION: &str = "us-east-1";

/// The ECS cluster the node uses.
pub const CLUSTER: &str = "vk-test";

/// Our wrapper around moto.
pub fn moto_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rig/moto_ecs.py")
}

/// A Ready `vk-fargate` node over its own moto.
pub struct FargateNode {
    pub name: String,
    pub clients: Clients,
    /// Prints its log when the test fails, and kills it on drop.
    process: KubeletProcess,
    pub moto: MotoServer,
    _dir: tempfile::TempDir,
}

impl FargateNode {
    /// A fresh namespace, moto, and a Ready node named `<prefix>-<random>`.
    pub async fn ready(prefix: &str) -> (TestCluster, TestNamespace, FargateNode) {
        let (cluster, ns) = cluster_and_namespace(prefix).await;
        let node = FargateNode::start(&cluster, &unique_name(prefix)).await;
        wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
        (cluster, ns, node)
    }

    /// Starts moto and `vk-fargate` for node `name` (config: moto's
    /// default subnet and security group, a log group, a 1 s poll).
    pub async fn start(cluster: &TestCluster, name: &str) -> FargateNode {
        // Blocking (a first run installs moto): nothing else runs meanwhile.
        let moto = MotoServer::start(&moto_script()).expect("moto starts");
        let (subnet, group) = moto
            .default_network(REGION)
            .expect("moto's default network");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("fargate.toml");
        std::fs::write(
            &config,
            format!(
                r#"Region = "{REGION}"
ClusterName = "{CLUSTER}"
Subnets = ["{subnet}"]
SecurityGroups = ["{group}"]
ExecutionRoleArn = "arn:aws:iam::123456789012:role/vk-exec"
CloudWatchLogGroupName = "vk-test"
PollInterval = "1s"
"#
            ),
        )
        .unwrap();
        // The SDK's standard settings: endpoint and static credentials.
        let mut args: Vec<OsString> = [
            format!("AWS_ENDPOINT_URL={}", moto.endpoint()),
            "AWS_ACCESS_KEY_ID=testing".into(),
            "AWS_SECRET_ACCESS_KEY=testing".into(),
            "AWS_EC2_METADATA_DISABLED=true".into(),
            env!("CARGO_BIN_EXE_vk-fargate").into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let flags: [OsString; 12] = [
            "--kubeconfig".into(),
            cluster.kubeconfig().into(),
            "--nodename".into(),
            name.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{}", free_port().unwrap()).into(),
            "--kubelet-port".into(),
            free_port().unwrap().to_string().into(),
            "--provider-config".into(),
            config.clone().into(),
            "--log-level".into(),
            "info,vk_core=debug,vk_fargate=debug".into(),
        ];
        args.extend(flags);
        // `env` sets the variables and execs the binary (same pid).
        let process =
            KubeletProcess::start("/usr/bin/env", args, dir.path().join("vk-fargate.log"))
                .expect("spawn vk-fargate");
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"));
        let clients = Clients::from_loader(REGION, loader).await;
        FargateNode {
            name: name.to_string(),
            clients,
            process,
            moto,
            _dir: dir,
        }
    }

    /// The pod's task (the latest, by `startedBy` and then any state).
    pub async fn task_of(&self, uid: &str) -> Task {
        let ecs = &self.clients.ecs;
        let mut arns = Vec::new();
        for desired in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = ecs
                .list_tasks()
                .cluster(CLUSTER)
                .desired_status(desired)
                .send()
                .await
                .unwrap();
            arns.extend(out.task_arns().iter().cloned());
        }
        assert!(!arns.is_empty(), "no task in the cluster");
        let tasks = ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .set_tasks(Some(arns))
            .include(TaskField::Tags)
            .send()
            .await
            .unwrap();
        let mine: Vec<Task> = tasks
            .tasks()
            .iter()
            .filter(|t| t.started_by() == Some(format!("vk-rs/{uid}").as_str()))
            .cloned()
            .collect();
        assert_eq!(mine.len(), 1, "exactly one task for pod {uid}: {mine:?}");
        mine.into_iter().next().unwrap()
    }

    /// The task definition of `task`.
    pub async fn task_definition(&self, task: &Task) -> TaskDefinition {
        self.clients
            .ecs
            .describe_task_definition()
            .task_definition(task.task_definition_arn().unwrap())
            .send()
            .await
            .unwrap()
            .task_definition()
            .cloned()
            .unwrap()
    }

    /// The process log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

/// A pod bound to `node` (no scheduler) with one container `main`; `extra`
/// adds fields to the container.
pub fn pod(name: &str, node: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut container = json!({"name": "main", "image": "busybox"});
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
            "containers": [container],
        }
    })
}
