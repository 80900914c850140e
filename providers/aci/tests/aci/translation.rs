//! What a group carries of its pod, end to end: azureFile volumes with the
//! storage key from a Secret, and sidecars as containers of the group.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::rig::{Rig, group_of};

#[tokio::test]
async fn an_azure_file_volume_takes_its_key_from_the_secret_and_never_shows_it() {
    let rig = Rig::start("aci-azfile").await;
    let key = "c3RvcmFnZS1rZXktNDI0Mg==";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "storage"},
        "stringData": {"azurestorageaccountname": "vkacct", "azurestorageaccountkey": key}
    }))
    .unwrap();
    Api::<Secret>::namespaced(rig.client.clone(), rig.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let share = |secret: &str| {
        json!({"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
            "volumeMounts": [{"name": "share", "mountPath": "/data", "readOnly": true}]}],
            "volumes": [{"name": "share", "azureFile":
                {"secretName": secret, "shareName": "data", "readOnly": true}}]})
    };
    let created = rig.pod("files", share("storage")).await;
    rig.wait_running("files").await;
    let body = rig.arm.group_request(&group_of(&created)).unwrap();
    // (After it, the service-account token's volume.)
    assert_eq!(
        body["properties"]["volumes"][0],
        json!({"name": "share", "azureFile": {"shareName": "data",
            "storageAccountName": "vkacct", "storageAccountKey": key, "readOnly": true}})
    );
    assert_eq!(
        body["properties"]["containers"][0]["properties"]["volumeMounts"][0],
        json!({"name": "share", "mountPath": "/data", "readOnly": true})
    );

    // A Secret that is not there: the pod fails saying which.
    rig.pod("nosecret", share("missing")).await;
    let status = rig.wait_failed("nosecret").await.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ProviderFailed"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("azureFile volume \"share\"")
            && message.contains("Secret \"missing\" not found"),
        "{message}"
    );

    // ARM never returned the key, and vk-aci never logged it.
    for r in rig.arm.requests() {
        if let Some(response) = &r.response {
            assert!(
                !response.to_string().contains(key),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
    let log = std::fs::read_to_string(rig.node.process.log_path()).unwrap();
    assert!(log.contains("container group put"), "debug logs were on");
    assert!(!log.contains(key), "the key is in vk-aci's log");
    assert_eq!(rig.puts(), 1, "the pod without its Secret made no group");
    rig.finish().await;
}

#[tokio::test]
async fn a_sidecar_runs_as_a_container_of_the_group_and_is_reported_as_an_init_container() {
    let rig = Rig::start("aci-sidecar").await;
    let created = rig
        .pod(
            "meshed",
            json!({
                "initContainers": [{"name": "proxy", "image": "envoy:1.31", "restartPolicy": "Always",
                    "command": ["envoy"]}],
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]
            }),
        )
        .await;
    let pod = rig.wait_running("meshed").await;
    let body = rig.arm.group_request(&group_of(&created)).unwrap();
    let containers: Vec<_> = body["properties"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(containers, ["main", "proxy"]);
    assert!(body["properties"].get("initContainers").is_none());
    assert_eq!(body["tags"]["io.vk-rs.sidecars"], "proxy");
    rig.wait_event("SidecarRunsAsContainer", "meshed").await;
    let status = pod.status.unwrap();
    let apps: Vec<_> = status
        .container_statuses
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(apps, ["main"]);
    // The API server took the sidecar's status among the init containers'.
    let pod = rig
        .wait_pod_where("meshed", "the sidecar's status reported", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .is_some_and(|i| {
                    i.iter().any(|c| {
                        c.name == "proxy" && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        })
        .await;
    assert_eq!(
        pod.status.unwrap().init_container_statuses.unwrap().len(),
        1
    );
    rig.finish().await;
}
