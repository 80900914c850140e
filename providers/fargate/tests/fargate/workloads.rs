//! Workloads as users run them: a Deployment placed by the real scheduler,
//! a task sized up from the pod's requests, and what is not offered (exec
//! through ECS Exec, stats) answered as such.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use vk_test_support::{kubectl, kubelet_get, kubelet_port, wait_pods};

use crate::support::*;

#[tokio::test]
async fn a_deployment_of_3_replicas_runs_3_tasks_with_their_eni_ips() {
    let (cluster, ns, node) = FargateNode::ready("deploy").await;
    let client = cluster.client();
    // Placed by the scheduler: only this node, tolerating its taint.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node.name},
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "containers": [{"name": "main", "image": "nginx:1.27"}],
                },
            },
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods = wait_pods(
        &client,
        ns.name(),
        &ListParams::default().labels("app=web"),
        RUNNING_WITHIN * 2,
        "3 pods Running",
        |pods| pods.len() == 3 && pods.iter().all(|p| phase(p) == "Running"),
    )
    .await;
    let mut ips = BTreeSet::new();
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
        let task = node.task_of(p.metadata.uid.as_deref().unwrap()).await;
        assert_eq!(task.last_status(), Some("RUNNING"));
        let eni_ip = vk_fargate::status::pod_ip(&task).expect("the task's ENI address");
        let pod_ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        assert_eq!(
            pod_ip.as_deref(),
            Some(eni_ip.as_str()),
            "{:?}",
            p.metadata.name
        );
        ips.insert(eni_ip);
    }
    assert_eq!(ips.len(), 3, "one ENI each: {ips:?}");
    let running: Vec<_> = node
        .all_tasks()
        .await
        .into_iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .collect();
    assert_eq!(running.len(), 3, "{running:?}");
}

#[tokio::test]
async fn a_pod_asking_300m_and_700mi_gets_half_a_vcpu_and_1_gb_and_an_event_says_so() {
    let (cluster, ns, node) = FargateNode::ready("size").await;
    let client = cluster.client();
    let resources = json!({"resources": {"requests": {"cpu": "300m", "memory": "700Mi"}}});
    let created = create_pod(&client, ns.name(), pod("sized", &node.name, resources)).await;
    wait_running(&client, ns.name(), "sized", RUNNING_WITHIN).await;
    let task = node.task_of(created.metadata.uid.as_deref().unwrap()).await;
    let definition = node.task_definition(&task).await;
    assert_eq!(
        (definition.cpu(), definition.memory()),
        (Some("512"), Some("1024"))
    );
    let events = Api::<Event>::namespaced(client.clone(), ns.name());
    let note = wait_for_note(&events, "sized", "TaskSized").await;
    assert!(
        note.contains("0.5 vCPU and 1024 MiB") && note.contains("smallest valid size"),
        "{note}"
    );
}

/// The note of the first event `reason` about pod `name`, waiting for it.
async fn wait_for_note(events: &Api<Event>, name: &str, reason: &str) -> String {
    let deadline = std::time::Instant::now() + RUNNING_WITHIN;
    loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            });
        if let Some(e) = found {
            return e.note.unwrap_or_default();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {reason} event for {name}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn exec_attach_and_stats_say_they_are_not_offered_and_why() {
    let (cluster, ns, node) = FargateNode::ready("noexec").await;
    approve_serving_csr(&cluster, &node.name).await;
    let client = cluster.client();
    create_pod(&client, ns.name(), pod("app", &node.name, json!({}))).await;
    wait_running(&client, ns.name(), "app", RUNNING_WITHIN).await;

    let (code, _, stderr) = kubectl(&cluster, &["exec", "-n", ns.name(), "app", "--", "ls"]).await;
    eprintln!("kubectl exec: {stderr}");
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("ECS Exec") && stderr.contains("ExecuteCommand"),
        "{stderr}"
    );
    let (code, _, stderr) = kubectl(&cluster, &["attach", "-n", ns.name(), "app"]).await;
    eprintln!("kubectl attach: {stderr}");
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("ECS Exec"), "{stderr}");

    let port = kubelet_port(&cluster, &node.name).await;
    // The kubelet API refuses before any upgrade: a 501 naming ECS Exec.
    let exec_path = format!("/exec/{}/app/main?command=ls&output=1", ns.name());
    let (code, body) = kubelet_get(&cluster, port, &exec_path).await;
    assert_eq!(code, "501", "{body}");
    assert!(body.contains("ECS Exec"), "{body}");
    let (code, body) = kubelet_get(&cluster, port, "/stats/summary").await;
    assert_eq!(code, "501", "{body}");
    assert!(body.contains("CloudWatch Container Insights"), "{body}");
}
