#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Pods and the objects they reference, against the real local control plane:
//! image pull secrets reach the backend as registry credentials without
//! blocking the pod when one is missing.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn image_pull_secrets_reach_the_backend_and_a_missing_one_does_not_block() {
    let (cluster, ns, node) = ready_node("pullsecret", &[]).await;
    let client = cluster.client();
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:pw");
    let config = json!({ "auths": {
        "127.0.0.1:35000": { "auth": auth },
        "https://index.docker.io/v1/": { "username": "hub", "password": "x" }
    } })
    .to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "regcred" },
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": { ".dockerconfigjson": config }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let mut p = pod("pulls", &node.name);
    p["spec"]["imagePullSecrets"] = json!([{ "name": "regcred" }, { "name": "absent" }]);
    p["spec"]["containers"] = json!([
        { "name": "main", "image": "127.0.0.1:35000/x/y:1" },
        { "name": "hub", "image": "busybox" },
        { "name": "other", "image": "quay.io/app/app:2" }
    ]);
    create_pod(&client, ns.name(), p).await;
    wait_pod(
        &client,
        ns.name(),
        "pulls",
        Duration::from_secs(20),
        "Running although one pull secret is missing",
        |p| phase(p) == "Running",
    )
    .await;
    let events = events(&client, ns.name()).await;
    assert!(
        events
            .iter()
            .any(|(r, o)| r == "FailedToRetrieveImagePullSecret" && o == "pulls"),
        "{events:?}"
    );
    let start = Instant::now();
    let pulls = loop {
        let state = node.state(&node.name);
        let pulls = state
            .as_array()
            .and_then(|a| a.iter().find(|e| e["key"]["name"] == "pulls"))
            .map(|e| e["pulls"].clone());
        if let Some(p) = pulls {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pod in the state file"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        pulls,
        json!({ "main": "127.0.0.1:35000", "hub": "https://index.docker.io/v1/" }),
        "each image gets its registry's credential, quay.io none"
    );
    delete_node(&client, &node.name).await;
}
