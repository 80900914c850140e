//! The status write (`pod::writes::patch_pod_status`) as the real apiserver
//! takes it: a pod whose IP changed (a cloud backend that replaced a stopped
//! task) gets the new IP, not both (which the apiserver refuses); and the
//! merge-patch fallback for a status refused as invalid.

use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vk_core::pod::writes::{merge_pod_status, patch_pod_status};
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
        patch_pod_status(&client, ns.name(), "p", &uid, &mut running_at(ip))
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

#[tokio::test]
async fn the_merge_fallback_writes_what_a_strategic_merge_made_invalid() {
    let (cluster, ns) = cluster_and_namespace("status-merge").await;
    let client = cluster.client();
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "p" },
        "spec": { "nodeName": "no-such-node", "containers": [{ "name": "c", "image": "x" }] }
    });
    let pod = create_pod(&client, ns.name(), manifest).await;
    let uid = pod.metadata.uid.unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let strategic = |ip: &str| json!({ "status": running_at(ip) });
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(strategic("10.0.0.1")),
    )
    .await
    .unwrap();
    // A plain strategic merge adds the new IP beside the old one: refused.
    let refused = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(strategic("10.0.0.2")),
        )
        .await;
    match refused {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{s:?}"),
        other => panic!("expected a 422, got {other:?}"),
    }
    // The fallback replaces the lists.
    merge_pod_status(&client, ns.name(), "p", &uid, &running_at("10.0.0.2"))
        .await
        .unwrap();
    let status = pods.get("p").await.unwrap().status.unwrap();
    let ips: Vec<String> = status.pod_ips.unwrap().into_iter().map(|p| p.ip).collect();
    assert_eq!(ips, vec!["10.0.0.2".to_string()]);
    // Its UID precondition holds: another incarnation is never written.
    let other = merge_pod_status(
        &client,
        ns.name(),
        "p",
        "not-the-uid",
        &running_at("10.0.0.3"),
    )
    .await;
    assert!(matches!(other, Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422));
}
