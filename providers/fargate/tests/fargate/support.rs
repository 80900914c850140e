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

/// How long a stopped task may take to be replaced: the first back-off is 10 s.
pub const RESTART_WITHIN: Duration = Duration::from_secs(45);

/// The status of container `main`.
pub fn main_status(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "main")
}

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
    /// `env` and its arguments up to the binary: what every replica runs.
    command: Vec<OsString>,
    /// The flags every replica shares (node, config, log level, extra flags).
    shared_flags: Vec<OsString>,
    _dir: tempfile::TempDir,
}

impl FargateNode {
    /// A fresh namespace, moto, and a Ready node named `<prefix>-<random>`.
    pub async fn ready(prefix: &str) -> (TestCluster, TestNamespace, FargateNode) {
        FargateNode::ready_with(prefix, false).await
    }

    /// As [`FargateNode::ready`]; `through_faults`: the provider talks to
    /// moto through the fault-injecting proxy (no faults until the test
    /// sets them).
    pub async fn ready_with(
        prefix: &str,
        through_faults: bool,
    ) -> (TestCluster, TestNamespace, FargateNode) {
        let (cluster, ns) = cluster_and_namespace(prefix).await;
        let node = FargateNode::start_with(&cluster, &unique_name(prefix), through_faults).await;
        wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
        (cluster, ns, node)
    }

    /// Starts moto and `vk-fargate` for node `name` (config: moto's
    /// default subnet and security group, a log group, a 1 s poll).
    pub async fn start(cluster: &TestCluster, name: &str) -> FargateNode {
        FargateNode::start_with(cluster, name, false).await
    }

    /// As [`FargateNode::start`], the provider's endpoint the fault proxy
    /// when `through_faults` (the test's own clients always talk to moto).
    pub async fn start_with(
        cluster: &TestCluster,
        name: &str,
        through_faults: bool,
    ) -> FargateNode {
        FargateNode::start_configured(cluster, name, through_faults, "").await
    }

    /// As [`FargateNode::ready_with`], `extra_config` appended to the
    /// provider config (TOML lines).
    pub async fn ready_configured(
        prefix: &str,
        extra_config: &str,
    ) -> (TestCluster, TestNamespace, FargateNode) {
        let (cluster, ns) = cluster_and_namespace(prefix).await;
        let node =
            FargateNode::start_configured(&cluster, &unique_name(prefix), false, extra_config)
                .await;
        wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(30)).await;
        (cluster, ns, node)
    }

    /// As [`FargateNode::start_with`], `extra_config` appended to the config.
    pub async fn start_configured(
        cluster: &TestCluster,
        name: &str,
        through_faults: bool,
        extra_config: &str,
    ) -> FargateNode {
        FargateNode::start_full(cluster, name, through_faults, extra_config, &[]).await
    }

    /// As [`FargateNode::start_configured`], with extra flags for this
    /// process and every [`FargateNode::replica`].
    pub async fn start_full(
        cluster: &TestCluster,
        name: &str,
        through_faults: bool,
        extra_config: &str,
        extra_flags: &[&str],
    ) -> FargateNode {
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
# Room for the 50-pod tests: the core's admission refuses pods beyond the
# node's capacity (upstream's default is 20), as the kubelet does.
Pods = "100"
{extra_config}
"#
            ),
        )
        .unwrap();
        // The SDK's standard settings: endpoint and static credentials.
        let mut args: Vec<OsString> = [
            format!(
                "AWS_ENDPOINT_URL={}",
                if through_faults {
                    moto.faulty_endpoint()
                } else {
                    moto.endpoint()
                }
            ),
            "AWS_ACCESS_KEY_ID=testing".into(),
            "AWS_SECRET_ACCESS_KEY=testing".into(),
            "AWS_EC2_METADATA_DISABLED=true".into(),
            env!("CARGO_BIN_EXE_vk-fargate").into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let mut shared_flags: Vec<OsString> = vec![
            "--kubeconfig".into(),
            cluster.kubeconfig().into(),
            "--nodename".into(),
            name.into(),
            "--provider-config".into(),
            config.clone().into(),
            "--log-level".into(),
            "info,vk_core=debug,vk_fargate=debug".into(),
        ];
        shared_flags.extend(extra_flags.iter().map(OsString::from));
        let command = args.clone();
        args.extend(shared_flags.iter().cloned());
        args.extend(own_ports());
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
            command,
            shared_flags,
            _dir: dir,
        }
    }

    /// One more `vk-fargate` for the same node, config and moto (a
    /// `--leader-elect` standby when the node was started with it), logging
    /// to `log`.
    pub fn replica(&self, log: &std::path::Path) -> KubeletProcess {
        let mut args = self.command.clone();
        args.extend(self.shared_flags.iter().cloned());
        args.extend(own_ports());
        KubeletProcess::start("/usr/bin/env", args, log).expect("spawn a vk-fargate replica")
    }

    /// The pod's task: exactly one, by `startedBy`, in any state.
    pub async fn task_of(&self, uid: &str) -> Task {
        let mine = self.tasks_of(uid).await;
        assert_eq!(mine.len(), 1, "exactly one task for pod {uid}: {mine:?}");
        mine.into_iter().next().unwrap()
    }

    /// Every task of the cluster, in any state, with its tags (none before
    /// the cluster exists).
    pub async fn all_tasks(&self) -> Vec<Task> {
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
                .await;
            let out = match out {
                Ok(out) => out,
                // Before the provider's first call: no cluster, no task.
                Err(e) if format!("{e:?}").contains("ClusterNotFoundException") => {
                    return Vec::new();
                }
                Err(e) => panic!("ListTasks: {e:?}"),
            };
            arns.extend(out.task_arns().iter().cloned());
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = ecs
                .describe_tasks()
                .cluster(CLUSTER)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .unwrap();
            tasks.extend(out.tasks().iter().cloned());
        }
        tasks
    }

    /// The pod's tasks (by `startedBy`), in any state.
    pub async fn tasks_of(&self, uid: &str) -> Vec<Task> {
        let started_by = format!("vk-rs/{uid}");
        self.all_tasks()
            .await
            .into_iter()
            .filter(|t| t.started_by() == Some(started_by.as_str()))
            .collect()
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

    /// SIGKILLs `vk-fargate` (moto keeps running).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts `vk-fargate` again, same flags and config.
    pub fn restart(&mut self) {
        self.process.restart().expect("vk-fargate starts again");
    }

    /// The process log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

/// A process's own metrics and kubelet API ports.
fn own_ports() -> [OsString; 4] {
    [
        "--metrics-addr".into(),
        format!("127.0.0.1:{}", free_port().unwrap()).into(),
        "--kubelet-port".into(),
        free_port().unwrap().to_string().into(),
    ]
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

/// Writes `lines` (timestamped now) to the awslogs stream of `container` of
/// `task`, as the awslogs driver would; returns the time of the last line
/// (ms). The group and stream are created when missing.
pub async fn write_log(node: &FargateNode, task: &Task, container: &str, lines: &[&str]) -> i64 {
    let definition = node.task_definition(task).await;
    let options = definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.log_configuration())
        .and_then(|l| l.options())
        .cloned()
        .expect("the container's awslogs options");
    let group = &options["awslogs-group"];
    let task_id = task.task_arn().unwrap().rsplit('/').next().unwrap();
    let stream = format!("{}/{container}/{task_id}", options["awslogs-stream-prefix"]);
    let logs = &node.clients.logs;
    let _ = logs.create_log_group().log_group_name(group).send().await;
    let _ = logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(&stream)
        .send()
        .await;
    let now = jiff::Timestamp::now().as_millisecond();
    let n = lines.len() as i64;
    let events: Vec<aws_sdk_cloudwatchlogs::types::InputLogEvent> = lines
        .iter()
        .zip(0..)
        .map(|(line, i)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now - (n - 1 - i) * 1000)
                .message(*line)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(&stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
    now
}

/// Stops `task`'s container `container` with `exit_code`, then the task, as
/// ECS shows an essential container's exit.
pub fn exit_task(node: &FargateNode, task: &Task, container: &str, exit_code: i32) {
    let arn = task.task_arn().unwrap();
    node.moto
        .set_container(
            arn,
            container,
            json!({"lastStatus": "STOPPED", "exitCode": exit_code}),
        )
        .unwrap();
    node.moto
        .set_task(
            arn,
            json!({"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
                   "stoppedReason": "Essential container in task exited"}),
        )
        .unwrap();
}
