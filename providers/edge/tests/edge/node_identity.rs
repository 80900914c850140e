//! vk-edge with an identity of its own: started with only a bootstrap
//! kubeconfig, it gets a client certificate `system:node:<name>`, reaches
//! Ready under the Node authorizer and NodeRestriction, and runs a real
//! container whose env and files come from a Secret and a ConfigMap only
//! its pod references, with logs, exec and port-forward through the
//! apiserver.

use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use vk_test_support::{
    BUSYBOX_HTTPD_IMAGE, CURRENT_CLIENT_CERT, bootstrap_token, certificate_subject, http_get,
};

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_node_bootstrapped_with_a_token_runs_pods_as_itself() {
    if engine().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    let cluster = TestCluster::get().await.expect("the test cluster");
    let token = bootstrap_token(&cluster, dir.path())
        .await
        .expect("bootstrap token");
    let (cluster, ns, node) = rig!(
        "edge-ident",
        &[
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ]
    );
    let pem = std::fs::read_to_string(cert_dir.join(CURRENT_CLIENT_CERT))
        .expect("the node's client certificate");
    let (cn, orgs) = certificate_subject(&pem).unwrap();
    assert_eq!(cn, format!("system:node:{}", node.name));
    assert_eq!(orgs, vec!["system:nodes".to_string()]);

    let client = cluster.client();
    let n = ns.name();
    let secret: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "creds" }, "stringData": { "password": "hunter2" } }),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "site" }, "data": { "index.html": "from the configmap\n" } }),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let web = json!({
        "name": "web", "image": BUSYBOX_HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
        "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } }],
        "command": ["sh", "-c", "echo \"password is $PASSWORD\"; exec httpd -f -p 8080 -h /www"],
        "volumeMounts": [{ "name": "site", "mountPath": "/www" }]
    });
    create_pod(
        &client,
        n,
        pod_with(
            "ident",
            &node.name,
            json!([web]),
            json!({ "volumes": [{ "name": "site", "configMap": { "name": "site" } }] }),
        ),
    )
    .await;
    wait_running(&client, n, "ident", RUN).await;

    // Logs and exec go through the apiserver to the node's kubelet API.
    wait_until(
        "the Secret's value in the logs",
        Duration::from_secs(30),
        || async {
            kubectl(&cluster, &["-n", n, "logs", "ident", "-c", "web"])
                .await
                .1
                .contains("password is hunter2")
        },
    )
    .await;
    let (code, out, err) = kubectl(
        &cluster,
        &[
            "-n",
            n,
            "exec",
            "ident",
            "-c",
            "web",
            "--",
            "cat",
            "/www/index.html",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "from the configmap\n"), "{err}");

    // Port-forward to the container's httpd.
    let local = free_port().unwrap();
    let mut forward = spawn_kubectl(
        &cluster,
        &[
            "-n",
            n,
            "port-forward",
            "pod/ident",
            &format!("{local}:8080"),
        ],
    );
    let url = format!("http://127.0.0.1:{local}/index.html");
    wait_until(
        "the page through port-forward",
        Duration::from_secs(30),
        || async {
            http_get(&url)
                .await
                .is_ok_and(|body| body == "from the configmap\n")
        },
    )
    .await;
    let _ = forward.kill().await;
    let _ = kubectl(&cluster, &["delete", "node", &node.name, "--wait=false"]).await;
}
