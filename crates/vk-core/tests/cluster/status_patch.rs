//! The status write (`pod::writes::patch_pod_status`) as the real apiserver
//! takes it: a pod whose IP changed (a cloud backend that replaced a stopped
//! task) gets the new IP, not both (which the apiserver refuses).

use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
use kube::Api;
use serde_json::json;
use vk_core::pod::writes::patch_pod_status;
use vk_test_support::{cluster_and_namespace, create_pod};

fn running_at(ip: &str) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        pod_ips: Some(vec![PodIP { ip: ip.into() }]),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_pod_ip_replaces_the_old_one() {
    let (cluster, ns) = cluster_and_namespace("status-ip").await;
    let client = cluster.client();
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "p" },
        "spec": { "nodeName": "no-such-node", "containers": [{ "name": "c", "image": "x" }] }
    });
    let pod = create_pod(&client, ns.name(), manifest).await;
    let uid = pod.metadata.uid.unwrap();
    for ip in ["10.0.0.1", "10.0.0.2"] {
        patch_pod_status(&client, ns.name(), "p", &uid, running_at(ip))
            .await
            .unwrap_or_else(|e| panic!("status with IP {ip}: {e}"));
    }
    let status = Api::<Pod>::namespaced(client, ns.name())
        .get("p")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.2"));
    let ips: Vec<String> = status.pod_ips.unwrap().into_iter().map(|p| p.ip).collect();
    assert_eq!(ips, vec!["10.0.0.2".to_string()]);
}
