//! A node with its own identity, against the real local control plane
//! (Node,RBAC authorization, NodeRestriction, bootstrap tokens and the
//! controller-manager's CSR approver): `vk-mock` started with only a
//! bootstrap kubeconfig gets a client certificate `system:node:<name>`,
//! reaches Ready, runs pods that read Secrets and ConfigMaps, serves logs,
//! reuses its certificate after a restart, and its credentials are refused
//! what a node may not do.

use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vk_test_support::{
    CURRENT_CLIENT_CERT, bootstrap_token, certificate_subject, kubelet_get_with_token, node_client,
    serving_certificate,
};

/// The signer of kubelet client certificates.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The node's client CSRs (whoever made them), by the name prefix the core gives them.
async fn client_csrs(cluster: &TestCluster, node: &str) -> Vec<CertificateSigningRequest> {
    Api::<CertificateSigningRequest>::all(cluster.client())
        .list(&ListParams::default())
        .await
        .expect("list CSRs")
        .items
        .into_iter()
        .filter(|c| c.spec.signer_name == CLIENT_SIGNER)
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("node-csr-{node}-")))
        })
        .collect()
}

/// A Secret and a ConfigMap, and a pod on `node` whose env reads both.
async fn pod_with_references(cluster: &TestCluster, ns: &str, node: &str, name: &str) {
    let client = cluster.client();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": format!("{name}-secret") },
        "stringData": { "password": "hunter2" }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": format!("{name}-config") },
        "data": { "mode": "fast" }
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    let mut manifest = pod(name, node);
    manifest["spec"]["containers"][0]["env"] = json!([
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": format!("{name}-secret"), "key": "password" } } },
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": format!("{name}-config"), "key": "mode" } } }
    ]);
    create_pod(&client, ns, manifest).await;
}

/// Starts `vk-mock` for a new node with only a bootstrap kubeconfig (its
/// `--kubeconfig` is ignored then) and a cert dir of its own.
async fn bootstrapped_node(
    cluster: &TestCluster,
    prefix: &str,
    dir: &std::path::Path,
) -> (MockNode, vk_test_support::BootstrapToken) {
    let token = bootstrap_token(cluster, dir)
        .await
        .expect("bootstrap token");
    let cert_dir = dir.join("pki");
    let node = MockNode::start(
        cluster,
        &unique_name(prefix),
        &[
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ],
    );
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(60)).await;
    (node, token)
}

#[tokio::test]
async fn a_node_bootstrapped_with_a_token_works_as_itself_and_reuses_its_certificate() {
    let (cluster, ns) = cluster_and_namespace("node-identity").await;
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    let (mut node, token) = bootstrapped_node(&cluster, "vk-ident", dir.path()).await;
    let _node_guard = cluster.delete_on_drop("node", None, &node.name);

    // The certificate in the cert dir, in the kubelet's layout, names the node.
    let current = cert_dir.join(CURRENT_CLIENT_CERT);
    let target = std::fs::read_link(&current).expect("kubelet-client-current.pem is a symlink");
    let file_name = target.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file_name.starts_with("kubelet-client-") && file_name.ends_with(".pem"),
        "{file_name}"
    );
    let pem = std::fs::read_to_string(&current).unwrap();
    assert!(
        pem.contains("PRIVATE KEY"),
        "certificate and key in one file"
    );
    let (cn, orgs) = certificate_subject(&pem).unwrap();
    assert_eq!(cn, format!("system:node:{}", node.name));
    assert_eq!(orgs, vec!["system:nodes".to_string()]);
    // Its expiry is on /metrics.
    let (_, not_after) = vk_test_support::certificate_validity(&pem).unwrap();
    let expected = not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", node.metrics_port))
        .await
        .expect("metrics endpoint answers");
    let exported = metrics
        .lines()
        .find(|l| l.starts_with("vk_client_certificate_expiration_timestamp_seconds "))
        .and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(exported, Some(expected.as_str()), "{metrics}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&current).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is readable by its owner only");

    // One CSR, made with the bootstrap token and approved by the
    // controller-manager (no test approves client CSRs).
    let csrs = client_csrs(&cluster, &node.name).await;
    assert_eq!(csrs.len(), 1, "{csrs:#?}");
    assert_eq!(
        csrs[0].spec.username.as_deref(),
        Some(token.username().as_str())
    );
    let approved = csrs[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Approved"))
        .expect("the CSR is approved");
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));

    // The node's identity does a node's work: a pod whose env reads a
    // Secret and a ConfigMap runs, and its logs come through its kubelet API.
    pod_with_references(&cluster, ns.name(), &node.name, "refs").await;
    wait_running(&cluster.client(), ns.name(), "refs", RUNNING_WITHIN).await;
    let backend = node
        .backend_pod(ns.name(), "refs")
        .await
        .expect("in the backend");
    let env = env_of(&backend);
    assert!(
        env.contains(&("PASSWORD".into(), "hunter2".into())),
        "{env:?}"
    );
    assert!(env.contains(&("MODE".into(), "fast".into())), "{env:?}");
    approve_serving_csr(&cluster, &node.name).await;
    let logs = logs_via_apiserver(&cluster, ns.name(), "refs", "main")
        .await
        .unwrap_or_else(|e| panic!("kubectl logs through the node's kubelet API: {e}"));
    assert!(logs.contains("main: started"), "logs: {logs}");

    // A restart reuses the certificate: no new CSR, the same file, and the
    // node still works (a pod created after the restart runs).
    node.kill();
    node.restart();
    wait_until(
        "the restarted node to use the certificate in its cert dir",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&node.log)
                .unwrap_or_default()
                .matches("using the client certificate in the cert dir")
                .count()
                == 1
        },
    )
    .await;
    create_pod(
        &cluster.client(),
        ns.name(),
        pod("after-restart", &node.name),
    )
    .await;
    wait_running(
        &cluster.client(),
        ns.name(),
        "after-restart",
        RUNNING_WITHIN,
    )
    .await;
    assert_eq!(
        client_csrs(&cluster, &node.name).await.len(),
        1,
        "no new CSR"
    );
    assert_eq!(std::fs::read_link(&current).unwrap(), target);
    assert_eq!(
        node_ready(&cluster.client(), &node.name)
            .await
            .map(|r| r.0)
            .as_deref(),
        Some("True")
    );

    // Nothing the core did as this node was refused, except reading the
    // published client CA, which a node may not (it then trusts the
    // bootstrap kubeconfig's CA, and says so).
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden") || l.contains("code: 403"))
        .filter(|l| !l.contains("extension-apiserver-authentication"))
        .collect();
    assert!(refused.is_empty(), "refused calls:\n{}", refused.join("\n"));
    assert!(log.contains("verified against the cluster CA of the bootstrap kubeconfig"));
}

#[tokio::test]
async fn a_node_identity_is_refused_what_a_node_may_not_do() {
    let (cluster, ns) = cluster_and_namespace("node-refused").await;
    let dir = tempfile::tempdir().unwrap();
    let (node, _token) = bootstrapped_node(&cluster, "vk-refused", dir.path()).await;
    let _node_guard = cluster.delete_on_drop("node", None, &node.name);
    let admin = cluster.client();
    let ns = ns.name();

    // Another node (an object only: no kubelet) with a pod bound to it.
    let other = unique_name("vk-other");
    let other_node: Node =
        serde_json::from_value(json!({ "metadata": { "name": other } })).unwrap();
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &other_node)
        .await
        .expect("create the other node");
    let _other_guard = cluster.delete_on_drop("node", None, &other);
    create_pod(&admin, ns, pod("elsewhere", &other)).await;
    // A Secret no pod references, and one this node's pod references.
    let lonely: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "lonely" }, "stringData": { "k": "v" } }),
    )
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &lonely)
        .await
        .expect("create secret");
    pod_with_references(&cluster, ns, &node.name, "mine").await;
    wait_running(&admin, ns, "mine", RUNNING_WITHIN).await;

    let as_node = node_client(&cluster, &dir.path().join("pki"))
        .await
        .unwrap();
    let status_of = |r: Result<_, kube::Error>| match r {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("not an API answer: {e}"),
    };
    let secrets = Api::<Secret>::namespaced(as_node.clone(), ns);

    // What it may: the Secret its own pod references (the Node authorizer's
    // graph learns of the pod asynchronously: wait for it), its own node.
    wait_until(
        "the node may read its pod's Secret",
        Duration::from_secs(20),
        || async { secrets.get("mine-secret").await.is_ok() },
    )
    .await;
    let nodes = Api::<Node>::all(as_node.clone());
    assert_eq!(status_of(nodes.get(&node.name).await.map(|_| ())), 200);

    // What it may not (403 each).
    assert_eq!(
        status_of(secrets.get("lonely").await.map(|_| ())),
        403,
        "a Secret none of its pods references"
    );
    assert_eq!(
        status_of(
            Api::<Secret>::all(as_node.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ())
        ),
        403,
        "all Secrets"
    );
    assert_eq!(
        status_of(secrets.list(&ListParams::default()).await.map(|_| ())),
        403,
        "the Secrets of a namespace"
    );
    let patch = json!({ "status": { "conditions": [{ "type": "Ready", "status": "False", "reason": "Hijacked" }] } });
    assert_eq!(
        status_of(
            nodes
                .patch_status(&other, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map(|_| ())
        ),
        403,
        "another node's status"
    );
    assert_eq!(
        status_of(
            Api::<Pod>::namespaced(as_node.clone(), ns)
                .delete("elsewhere", &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        403,
        "a pod bound to another node"
    );
    // The refusals changed nothing.
    let still = Api::<Pod>::namespaced(admin.clone(), ns)
        .get_opt("elsewhere")
        .await
        .unwrap();
    assert!(still.is_some_and(|p| p.metadata.deletion_timestamp.is_none()));
    assert_eq!(
        node_ready(&admin, &other).await,
        None,
        "no Ready condition written"
    );
}

/// A token for a new ServiceAccount of `ns` that may call the kubelet API
/// (`nodes/proxy` and `nodes/stats`) of node `allowed` only.
async fn caller_for_one_node(cluster: &TestCluster, ns: &str, allowed: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let admin = cluster.client();
    let name = format!("{ns}-one-node");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": { "name": name },
        "rules": [{ "apiGroups": [""], "resources": ["nodes/proxy", "nodes/stats"],
                    "resourceNames": [allowed], "verbs": ["get"] }]
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("create the ClusterRole");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": [{ "kind": "ServiceAccount", "name": "one-node", "namespace": ns }]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the ClusterRoleBinding");
    let sas: Api<ServiceAccount> = Api::namespaced(admin, ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "one-node" } })).unwrap();
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create the ServiceAccount");
    let request: TokenRequest =
        serde_json::from_value(json!({ "spec": { "expirationSeconds": 600 } })).unwrap();
    let issued: TokenRequest = sas
        .create_subresource("token", "one-node", &PostParams::default(), &request)
        .await
        .expect("a token");
    issued.status.expect("the token request's status").token
}

#[tokio::test]
async fn each_node_of_a_process_has_its_own_identity_certificate_and_kubelet_api() {
    let (cluster, ns) = cluster_and_namespace("node-pair").await;
    let ns = ns.name();
    let dir = tempfile::tempdir().unwrap();
    let token = bootstrap_token(&cluster, dir.path())
        .await
        .expect("bootstrap token");
    let cert_dir = dir.path().join("pki");
    let prefix = unique_name("vk-pair");
    let _node = MockNode::start(
        &cluster,
        &prefix,
        &[
            "--nodes",
            "2",
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ],
    );
    let names = [format!("{prefix}-0"), format!("{prefix}-1")];
    let _guards: Vec<_> = names
        .iter()
        .map(|n| cluster.delete_on_drop("node", None, n))
        .collect();
    let admin = cluster.client();
    for name in &names {
        wait_node_ready(&admin, name, Duration::from_secs(60)).await;
        // Each node's client certificate, in a cert dir of its own, names it.
        let pem = std::fs::read_to_string(cert_dir.join(name).join(CURRENT_CLIENT_CERT))
            .expect("the node's client certificate");
        let (cn, orgs) = certificate_subject(&pem).unwrap();
        assert_eq!(cn, format!("system:node:{name}"));
        assert_eq!(orgs, vec!["system:nodes".to_string()]);
        approve_serving_csr(&cluster, name).await;
    }

    // A pod on each node reading a Secret and a ConfigMap of its own: under
    // the Node authorizer only that pod's node may read them, so each runs
    // only if its node works with its own identity.
    let pods = ["pod-zero", "pod-one"];
    for (name, node) in pods.iter().zip(&names) {
        pod_with_references(&cluster, ns, node, name).await;
    }
    for name in pods {
        wait_running(&admin, ns, name, RUNNING_WITHIN).await;
    }

    // Each node has its own port and a serving certificate for its own name.
    let ports = [
        kubelet_port(&cluster, &names[0]).await,
        kubelet_port(&cluster, &names[1]).await,
    ];
    assert_ne!(ports[0], ports[1]);
    for (node, port) in names.iter().zip(ports) {
        let (subject, sans) = serving_certificate(port).await;
        assert!(
            subject
                .replace(' ', "")
                .ends_with(&format!("CN=system:node:{node}")),
            "{subject}"
        );
        assert!(sans.contains(&format!("DNS:{node}")), "{sans}");
    }

    // A caller allowed on node 0 only sees node 0's pods there and nothing
    // on node 1; even the apiserver's credentials see only node 0's pods on
    // node 0's port.
    let caller = caller_for_one_node(&cluster, ns, &names[0]).await;
    for path in ["/pods", "/runningpods/", "/stats/summary"] {
        let (code, body) = kubelet_get_with_token(&cluster, ports[0], path, &caller).await;
        assert_eq!(code, "200", "{path} on node 0: {body}");
        assert!(body.contains("pod-zero"), "{path} on node 0: {body}");
        assert!(!body.contains("pod-one"), "{path} on node 0: {body}");
        let (code, body) = kubelet_get_with_token(&cluster, ports[1], path, &caller).await;
        assert_eq!(code, "403", "{path} on node 1: {body}");
        assert!(!body.contains("pod-one"), "{path} on node 1: {body}");
        let (code, body) = kubelet_get(&cluster, ports[1], path).await;
        assert_eq!(code, "200", "{path} on node 1 as the apiserver: {body}");
        assert!(
            body.contains("pod-one") && !body.contains("pod-zero"),
            "{path} on node 1 as the apiserver: {body}"
        );
    }
    let name = format!("{ns}-one-node");
    let _ = kubectl(
        &cluster,
        &["delete", "clusterrolebinding,clusterrole", &name],
    )
    .await;
}

/// The kubelet-client-<timestamp>.pem files of a cert dir.
fn issued_files(cert_dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cert_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kubelet-client-") && n != CURRENT_CLIENT_CERT)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How long ago node `node`'s Lease was renewed (`None` without a lease).
async fn lease_age(client: &kube::Client, node: &str) -> Option<Duration> {
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        "kube-node-lease",
    )
    .get_opt(node)
    .await
    .ok()??;
    let renewed = lease.spec?.renew_time?.0;
    let age = jiff::Timestamp::now().duration_since(renewed);
    Some(Duration::from_secs_f64(age.as_secs_f64().max(0.0)))
}

/// Client certificates issued for 3 minutes (a cluster of the test's own,
/// whose controller-manager signs with `--cluster-signing-duration=3m`: a
/// CSR cannot ask for less than 10 minutes) are renewed twice while the
/// node stays Ready, keeps its lease fresh past the first certificate's
/// expiry, and keeps running pods.
#[tokio::test]
async fn a_node_renews_its_short_lived_client_certificate_without_going_not_ready() {
    let own = tokio::task::spawn_blocking(|| {
        vk_test_support::OwnCluster::up(
            "short-certs-cluster",
            &["--controller-manager-arg=--cluster-signing-duration=3m"],
        )
    })
    .await
    .unwrap()
    .expect("a cluster with 3-minute certificates");
    let admin = own.client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    let token =
        vk_test_support::bootstrap_token_in(&admin, own.kubeconfig(), own.vkcp(), dir.path())
            .await
            .unwrap();
    let node = MockNode::start_with_kubeconfig(
        own.kubeconfig(),
        &unique_name("vk-renew"),
        &[
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ],
    );
    wait_node_ready(&admin, &node.name, Duration::from_secs(60)).await;
    let first = std::fs::read_to_string(cert_dir.join(CURRENT_CLIENT_CERT)).unwrap();
    let (_, first_expiry) = vk_test_support::certificate_validity(&first).unwrap();
    let left = first_expiry
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        left <= Duration::from_secs(185),
        "the certificate lives 3 minutes, {left:?} left"
    );
    create_pod(&admin, "default", pod(&node.name, &node.name)).await;
    let _pod_guard = vk_test_support::DeleteOnDrop::from_kubeconfig(
        own.vkcp(),
        own.kubeconfig(),
        "pod",
        Some("default"),
        &node.name,
    );
    wait_running(&admin, "default", &node.name, RUNNING_WITHIN).await;

    // Until two renewals and 20 s past the first certificate's expiry: the
    // node is Ready and its lease at most 25 s old at every look.
    let started = std::time::Instant::now();
    let mut looks = 0;
    loop {
        let renewed = issued_files(&cert_dir).len() >= 3;
        let past_expiry = std::time::SystemTime::now() > first_expiry + Duration::from_secs(20);
        if renewed && past_expiry {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8 * 60),
            "two renewals within 8 minutes; files: {:?}\n{}",
            issued_files(&cert_dir),
            node.log_tail()
        );
        let ready = node_ready(&admin, &node.name).await.map(|r| r.0);
        assert_eq!(
            ready.as_deref(),
            Some("True"),
            "Ready at {:?}",
            started.elapsed()
        );
        let age = lease_age(&admin, &node.name).await;
        assert!(
            age.is_some_and(|a| a < Duration::from_secs(25)),
            "lease renewed {age:?} ago at {:?}\n{}",
            started.elapsed(),
            node.log_tail()
        );
        looks += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(looks > 30, "watched for a while ({looks} looks)");

    // The current certificate is the newest file, and for the same node.
    let files = issued_files(&cert_dir);
    let current = std::fs::read_link(cert_dir.join(CURRENT_CLIENT_CERT)).unwrap();
    assert_eq!(
        current.to_string_lossy(),
        files.last().unwrap().as_str(),
        "{files:?}"
    );
    let pem = std::fs::read_to_string(cert_dir.join(CURRENT_CLIENT_CERT)).unwrap();
    let (cn, _) = certificate_subject(&pem).unwrap();
    assert_eq!(cn, format!("system:node:{}", node.name));

    // The renewals were asked for by the node itself and auto-approved.
    let csrs: Vec<CertificateSigningRequest> = Api::<CertificateSigningRequest>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("node-csr-{}-", node.name)))
        })
        .collect();
    let by_node = csrs
        .iter()
        .filter(|c| {
            c.spec.username.as_deref() == Some(format!("system:node:{}", node.name).as_str())
        })
        .count();
    assert!(by_node >= 2, "renewal CSRs made by the node: {csrs:#?}");
    assert!(csrs.iter().all(|c| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Approved"))
    }));

    // Pods still sync: the first one runs, a new one starts.
    let still = Api::<Pod>::namespaced(admin.clone(), "default")
        .get(&node.name)
        .await
        .unwrap();
    assert_eq!(phase(&still), "Running");
    let late = format!("{}-late", node.name);
    create_pod(&admin, "default", pod(&late, &node.name)).await;
    let _late_guard = vk_test_support::DeleteOnDrop::from_kubeconfig(
        own.vkcp(),
        own.kubeconfig(),
        "pod",
        Some("default"),
        &late,
    );
    wait_running(&admin, "default", &late, RUNNING_WITHIN).await;
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(
        log.matches("client certificate renewed").count() >= 2,
        "{}",
        node.log_tail()
    );
    assert!(
        !log.contains("renewing the client certificate failed"),
        "{}",
        node.log_tail()
    );
}

/// A bootstrap token the apiserver does not know (expired, deleted or
/// mistyped): the node says so and retries with growing waits, without
/// exiting; once the token exists, it bootstraps and becomes Ready.
#[tokio::test]
async fn a_refused_bootstrap_is_a_clear_error_retried_until_the_token_works() {
    let (cluster, _ns) = cluster_and_namespace("node-refused-token").await;
    let dir = tempfile::tempdir().unwrap();
    let mut token = vk_test_support::BootstrapToken::unregistered(&cluster, dir.path()).unwrap();
    let cert_dir = dir.path().join("pki");
    let mut node = MockNode::start(
        &cluster,
        &unique_name("vk-badtoken"),
        &[
            "--bootstrap-kubeconfig",
            token.kubeconfig.to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ],
    );
    let _node_guard = cluster.delete_on_drop("node", None, &node.name);
    let failures = |log: &str| {
        log.lines()
            .filter(|l| l.contains("TLS bootstrap failed"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_until(
        "two refused bootstrap attempts",
        Duration::from_secs(30),
        || async { failures(&std::fs::read_to_string(&node.log).unwrap_or_default()).len() >= 2 },
    )
    .await;
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    let seen = failures(&log);
    assert!(
        seen[0].contains("create a new bootstrap token"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("retry_in_secs=5"), "{}", seen[0]);
    assert!(
        seen[1].contains("retry_in_secs=10"),
        "back-off grows: {}",
        seen[1]
    );
    assert_eq!(node.try_wait(), None, "the process keeps running");
    assert!(!cert_dir.join(CURRENT_CLIENT_CERT).exists());
    assert_eq!(node_ready(&cluster.client(), &node.name).await, None);

    // The token becomes valid: the next attempt bootstraps the node.
    token.register(&cluster).await.unwrap();
    wait_node_ready(&cluster.client(), &node.name, Duration::from_secs(60)).await;
    let pem = std::fs::read_to_string(cert_dir.join(CURRENT_CLIENT_CERT)).unwrap();
    assert_eq!(
        certificate_subject(&pem).unwrap().0,
        format!("system:node:{}", node.name)
    );
}
