//! The `vk-mock` Helm chart (`charts/vk-mock`), rendered with the pinned helm
//! (`cargo xtask helm-path`):
//!
//! - its RBAC grants exactly what the core runtime calls: no wildcard, no
//!   cluster-admin, no write verb on what it only reads, node and lease rights
//!   limited to its own node (static check of the rendered rules);
//! - that RBAC is sufficient: `vk-mock`, started with the chart's own
//!   arguments, environment and provider config and authenticated as the
//!   chart's ServiceAccount (a TokenRequest token), runs the main scenario
//!   (node Ready, a 3-replica Deployment Running, deletion) without a single
//!   "forbidden";
//! - its values schema and templates reject bad values;
//! - `cargo xtask charts`: `helm lint --strict` is clean and the apiserver
//!   accepts every rendering in a server-side dry run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::support::*;
use vk_test_support::chart::{self, RbacExpectation, objects, of_kind, strings};

/// The chart under test.
const CHART: &str = "vk-mock";

/// Renders `charts/vk-mock`.
fn template(release: &str, namespace: &str, args: &[&str]) -> Result<String, String> {
    chart::template(CHART, release, namespace, args)
}

/// The mock's provider adds no RBAC rules: its backend lives in the process.
fn check_rbac(objects: &[Value], node: &str, namespace: &str, service_account: &str, csr: bool) {
    chart::check_rbac(
        objects,
        &RbacExpectation {
            node,
            namespace,
            service_account,
            csr,
            provider_allowed: &[],
        },
    );
}

#[test]
fn rendered_rbac_grants_exactly_what_the_code_uses() {
    let ci = chart::chart_dir(CHART).join("ci");
    let secret_values = ci.join("secret-tls-values.yaml");
    let sa_values = ci.join("existing-serviceaccount-values.yaml");
    let cases: [(&[&str], &str, &str, bool); 3] = [
        (&[], "vk-mock-0", "rel-vk-mock", true),
        (
            &["--values", secret_values.to_str().unwrap_or("")],
            "vk-mock-0",
            "rel-vk-mock",
            false,
        ),
        (
            &["--values", sa_values.to_str().unwrap_or("")],
            "vk-mock-edge-1",
            "default",
            true,
        ),
    ];
    for (args, node, sa, csr) in cases {
        let manifest = template("rel", "vk-system", args)
            .unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
        check_rbac(&objects(&manifest), node, "vk-system", sa, csr);
    }
}

#[test]
fn the_deployment_runs_the_node_as_the_values_say() {
    let manifest =
        template("rel", "vk-system", &["--set", "nodeName=vk-mock-7"]).expect("helm template");
    let rendered = objects(&manifest);
    let deployment = of_kind(&rendered, "Deployment")[0];
    // A hot standby by default: two replicas with --leader-elect, a rolling
    // update that starts a standby before it stops one, on different hosts
    // when it can, and never both taken by a drain.
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } })
    );
    let anti = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        anti["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let pdb = of_kind(&rendered, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    assert_eq!(pdb[0]["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb[0]["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "rel-vk-mock");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    for arg in [
        "--nodename=vk-mock-7",
        "--provider-config=/etc/vk/config.json",
        "--metrics-addr=0.0.0.0:10255",
        "--leader-elect",
        "--leader-elect-lease-name=vk-rs-vk-mock-7",
        "--leader-elect-namespace=vk-system",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} missing from {args:?}");
    }

    // One replica without leader election: Recreate, no PDB, no leader Role.
    let single = objects(
        &template(
            "rel",
            "vk-system",
            &[
                "--set",
                "replicas=1",
                "--set",
                "leaderElection.enabled=false",
            ],
        )
        .expect("helm template"),
    );
    let deployment = of_kind(&single, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());
    assert_eq!(
        of_kind(&single, "Role").len(),
        1,
        "the heartbeat Lease's only"
    );
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        !args.iter().any(|a| a.starts_with("--leader-elect")),
        "{args:?}"
    );
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let pod_ip = env
        .iter()
        .find(|e| e["name"] == "VKUBELET_POD_IP")
        .expect("VKUBELET_POD_IP");
    assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    assert!(
        !env.iter().any(|e| e["name"] == "APISERVER_CERT_LOCATION"),
        "csr mode mounts no cert"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(container["resources"]["requests"].is_object());

    // The provider config is keyed by the node name.
    let config = of_kind(&rendered, "ConfigMap")[0]["data"]["config.json"]
        .as_str()
        .map(|s| serde_json::from_str::<Value>(s).expect("config.json is JSON"))
        .expect("config.json");
    assert_eq!(config["vk-mock-7"]["cpu"], "20");
    assert_eq!(config["vk-mock-7"]["memory"], "100Gi");

    // Secret mode: the Secret is mounted and named in the upstream variables.
    let manifest = template(
        "rel",
        "vk-system",
        &[
            "--set",
            "tls.mode=secret",
            "--set",
            "tls.existingSecret=my-cert",
        ],
    )
    .expect("helm template");
    let secret_mode = objects(&manifest);
    let pod = &of_kind(&secret_mode, "Deployment")[0]["spec"]["template"]["spec"];
    let env = pod["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let value_of = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        value_of("APISERVER_CERT_LOCATION").as_deref(),
        Some("/etc/vk-tls/tls.crt")
    );
    assert_eq!(
        value_of("APISERVER_KEY_LOCATION").as_deref(),
        Some("/etc/vk-tls/tls.key")
    );
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "my-cert"),
        "{volumes:?}"
    );
}

#[test]
fn bad_values_are_rejected() {
    let rejected = |args: &[&str], why: &str| chart::assert_rejected(CHART, args, why);
    // helm names the offending value by its JSON pointer.
    rejected(&["--set", "tls.mode=secret"], "/tls/existingSecret");
    rejected(&["--set", "tls.mode=selfsigned"], "/tls/mode");
    rejected(&["--set", "nodeName=Not_A_Name"], "/nodeName");
    rejected(&["--set", "providerConfig.cpu=lots"], "/providerConfig/cpu");
    rejected(&["--set", "kubeletPort=70000"], "/kubeletPort");
    rejected(&["--set", "unknownKey=1"], "unknownKey");
    rejected(&["--set", "replicas=0"], "/replicas");
    rejected(
        &["--set", "leaderElection.leaseName=Not_A_Name"],
        "/leaderElection/leaseName",
    );
    // The templates check what the schema cannot see.
    rejected(
        &["--set", "serviceAccount.create=false"],
        "serviceAccount.name is required",
    );
    rejected(
        &["--set", "leaderElection.enabled=false"],
        "replicas above 1 need leaderElection.enabled",
    );
}

#[test]
fn lint_is_clean_and_the_apiserver_accepts_every_rendering() {
    chart::lint_and_dry_run(
        CHART,
        &[
            "vk-mock.yaml",
            "vk-mock-secret-tls.yaml",
            "vk-mock-existing-serviceaccount.yaml",
            "vk-mock-node-identity.yaml",
        ],
    );
}

/// `identity.mode=node`: the process is the node, bootstrapped from the
/// Secret's kubeconfig; the ServiceAccount keeps only the leader Lease, so
/// nothing of the ServiceAccount mode's cluster-wide reach (Secrets,
/// ConfigMaps, tokens, every pod) is rendered. Without a bootstrap Secret
/// the chart makes a token of its own; `auto` without a cluster to look at
/// is the ServiceAccount mode.
#[test]
fn the_node_identity_renders_no_rule_for_the_service_account() {
    let node_values = chart::ci_values(CHART, "node-identity");
    let node_mode =
        objects(&template("rel", "vk-system", &["--values", &node_values]).expect("helm template"));
    let sa_mode = objects(&template("rel", "vk-system", &[]).expect("helm template"));
    let kinds = |objects: &[Value]| -> Vec<String> {
        let mut k: Vec<String> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or("").to_string())
            .collect();
        k.sort();
        k
    };
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(
            of_kind(&node_mode, kind).is_empty(),
            "no {kind} in node mode: {:?}",
            kinds(&node_mode)
        );
    }
    // The one Role left is the leader Lease's, in the release namespace.
    let node_rules: Vec<(String, String, String, Vec<String>)> = of_kind(&node_mode, "Role")
        .iter()
        .flat_map(|r| chart::grants(&r["rules"]))
        .collect();
    assert!(
        !node_rules.is_empty()
            && node_rules
                .iter()
                .all(|(group, resource, _, _)| group == "coordination.k8s.io"
                    && resource == "leases"),
        "node mode: the leader Lease only: {node_rules:?}"
    );
    let rules: Vec<(String, String, String, Vec<String>)> = of_kind(&sa_mode, "ClusterRole")
        .iter()
        .flat_map(|r| chart::grants(&r["rules"]))
        .collect();
    let reads: Vec<&String> = rules
        .iter()
        .filter(|(_, resource, _, _)| resource == "secrets" || resource == "configmaps")
        .map(|(_, resource, _, _)| resource)
        .collect();
    assert_eq!(
        reads.len(),
        2,
        "ServiceAccount mode reads Secrets and ConfigMaps: {rules:?}"
    );
    eprintln!(
        "ServiceAccount mode grants {} cluster-wide rules (Secrets and ConfigMaps by name, every pod, tokens of every ServiceAccount); node mode grants {} (the leader Lease): the Node authorizer decides the rest",
        rules.len(),
        node_rules.len()
    );
    // A hot standby as in the ServiceAccount mode: each replica bootstraps
    // its own certificate; they elect with the ServiceAccount.
    let deployment = of_kind(&node_mode, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], json!(2));
    assert_eq!(of_kind(&node_mode, "PodDisruptionBudget").len(), 1);
    let spec = &deployment["spec"]["template"]["spec"];
    let args = strings(&spec["containers"][0]["args"]);
    assert!(
        args.contains(&"--bootstrap-kubeconfig=/etc/vk-bootstrap/kubeconfig".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--cert-dir=/var/lib/vk-pki".to_string()),
        "{args:?}"
    );
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == json!("vk-bootstrap"))
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == json!("node-certificates") && v["emptyDir"].is_object())
    );

    // No bootstrap Secret given: the chart's own token, kubeconfig and bindings.
    let own = objects(
        &template("rel", "vk-system", &["--set", "identity.mode=node"]).expect("helm template"),
    );
    let secrets = of_kind(&own, "Secret");
    let token = secrets
        .iter()
        .find(|s| s["type"] == json!("bootstrap.kubernetes.io/token"))
        .expect("a bootstrap token Secret");
    assert_eq!(token["metadata"]["namespace"], json!("kube-system"));
    let id = token["stringData"]["token-id"].as_str().expect("token-id");
    assert_eq!(
        token["metadata"]["name"],
        json!(format!("bootstrap-token-{id}"))
    );
    assert_eq!(
        token["stringData"]["auth-extra-groups"],
        json!("system:bootstrappers:vk-rs")
    );
    let kubeconfig = secrets
        .iter()
        .find(|s| s["metadata"]["name"] == json!("rel-vk-mock-bootstrap"))
        .expect("the bootstrap kubeconfig Secret");
    assert!(
        kubeconfig["stringData"]["kubeconfig"]
            .as_str()
            .is_some_and(|k| k.contains(&format!("token: {id}."))),
        "{kubeconfig}"
    );
    let mut bound: Vec<String> = of_kind(&own, "ClusterRoleBinding")
        .iter()
        .filter(|b| b["subjects"][0]["name"] == json!("system:bootstrappers:vk-rs"))
        .map(|b| b["roleRef"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    bound.sort();
    assert_eq!(
        bound,
        [
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:node-bootstrapper"
        ]
    );
    assert!(
        of_kind(&own, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == json!("rel-vk-mock-bootstrap"))
    );
    // `auto` with no cluster to ask (helm template): the ServiceAccount mode.
    assert_eq!(of_kind(&sa_mode, "ClusterRole").len(), 1);
}

/// `kubectl apply` of rendered `objects` (a List written to `dir`).
async fn apply(cluster: &TestCluster, dir: &std::path::Path, objects: Vec<Value>) {
    let file = dir.join("objects.json");
    std::fs::write(
        &file,
        json!({ "apiVersion": "v1", "kind": "List", "items": objects }).to_string(),
    )
    .expect("write objects");
    let out = cluster
        .kubectl(["apply", "-f", file.to_str().unwrap_or("")])
        .await
        .expect("kubectl apply");
    assert!(out.status.success(), "applying the chart: {}", out.stderr);
}

/// A kubeconfig in `dir` with a token (TokenRequest, 2 h) of ServiceAccount
/// `ns/name`.
async fn service_account_kubeconfig(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    dir: &std::path::Path,
) -> PathBuf {
    let token = cluster
        .kubectl(["create", "token", name, "-n", ns, "--duration=2h"])
        .await
        .expect("kubectl create token");
    assert!(token.status.success(), "TokenRequest: {}", token.stderr);
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .write_token_kubeconfig(token.stdout.trim(), &kubeconfig)
        .expect("a kubeconfig with the token");
    kubeconfig
}

/// A `vk-mock` process started the way the chart's Deployment starts it.
struct ChartKubelet {
    child: Child,
    log: PathBuf,
}

impl ChartKubelet {
    /// Starts `vk-mock` the way the chart's Deployment in `rendered` starts
    /// it: its arguments, environment and provider config (written to
    /// `dir`), authenticated with `kubeconfig`. `rewrite` may replace an
    /// argument that names a path inside the pod.
    fn spawn(
        rendered: &[Value],
        dir: &std::path::Path,
        kubeconfig: &std::path::Path,
        rewrite: impl Fn(&str) -> Option<String>,
    ) -> ChartKubelet {
        let config_json = of_kind(rendered, "ConfigMap")[0]["data"]["config.json"]
            .as_str()
            .expect("config.json")
            .to_string();
        let config_file = dir.join("config.json");
        std::fs::write(&config_file, config_json).expect("write config");
        let container =
            &of_kind(rendered, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        let metrics_port = free_port().expect("free port");
        let args: Vec<String> = strings(&container["args"])
            .into_iter()
            .map(|a| {
                if let Some(replaced) = rewrite(&a) {
                    replaced
                } else if a.starts_with("--provider-config=") {
                    format!("--provider-config={}", config_file.display())
                } else if a.starts_with("--metrics-addr=") {
                    format!("--metrics-addr=127.0.0.1:{metrics_port}")
                } else {
                    a
                }
            })
            .collect();
        let log = dir.join("vk-mock.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(vk_mock_bin());
        cmd.args(&args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::from(log_file.try_clone().expect("log")))
            .stderr(Stdio::from(log_file));
        for env in container["env"].as_array().into_iter().flatten() {
            let name = env["name"].as_str().unwrap_or("");
            let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("status.podIP") => "127.0.0.1".to_string(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None if name == "KUBELET_PORT" => free_port().expect("free port").to_string(),
                None => env["value"].as_str().unwrap_or("").to_string(),
            };
            cmd.env(name, value);
        }
        ChartKubelet {
            child: cmd.spawn().expect("spawn vk-mock"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChartKubelet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- vk-mock log ----\n{}",
                vk_test_support::log_tail(&self.log, 60)
            );
        }
    }
}

#[tokio::test]
async fn the_charts_service_account_can_run_the_main_scenario() {
    let (cluster, ns) = cluster_and_namespace("vk-rbac").await;
    let client = cluster.client();
    let node = unique_name("vk-rbac");
    let release = node.clone();
    let fullname = format!("{release}-vk-mock");
    let dir = tempfile::tempdir().expect("tempdir");

    // The chart rendered for this namespace and node.
    let manifest = template(&release, ns.name(), &["--set", &format!("nodeName={node}")])
        .expect("helm template");
    let rendered = objects(&manifest);
    check_rbac(&rendered, &node, ns.name(), &fullname, true);

    // Its ServiceAccount and RBAC, applied for real.
    let rbac: Vec<Value> = rendered
        .iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
            ]
            .contains(&o["kind"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    assert_eq!(
        rbac.len(),
        11,
        "ServiceAccount, ClusterRole(Binding), Role(Binding) for each Lease, 2 ValidatingAdmissionPolicies and their bindings"
    );
    let _cleanup = [
        cluster.delete_on_drop("clusterrole", None, &fullname),
        cluster.delete_on_drop("clusterrolebinding", None, &fullname),
        cluster.delete_on_drop(
            "role",
            Some("kube-node-lease"),
            &format!("{fullname}-lease"),
        ),
        cluster.delete_on_drop(
            "rolebinding",
            Some("kube-node-lease"),
            &format!("{fullname}-lease"),
        ),
        cluster.delete_on_drop("node", None, &node),
        cluster.delete_on_drop("lease", Some("kube-node-lease"), &node),
        cluster.delete_on_drop(
            "validatingadmissionpolicy",
            None,
            &format!("{fullname}-tokens"),
        ),
        cluster.delete_on_drop(
            "validatingadmissionpolicybinding",
            None,
            &format!("{fullname}-tokens"),
        ),
        cluster.delete_on_drop(
            "validatingadmissionpolicy",
            None,
            &format!("{fullname}-own-pods"),
        ),
        cluster.delete_on_drop(
            "validatingadmissionpolicybinding",
            None,
            &format!("{fullname}-own-pods"),
        ),
    ];
    apply(&cluster, dir.path(), rbac).await;

    // A token of that ServiceAccount (TokenRequest) in a kubeconfig of its own.
    let kubeconfig = service_account_kubeconfig(&cluster, ns.name(), &fullname, dir.path()).await;

    // What the ServiceAccount mode reaches and the node mode does not
    // (node_identity.rs: 403 for the node): a Secret no pod references,
    // read by name.
    let unreferenced: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "unreferenced" }, "stringData": { "k": "v" } }),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &unreferenced)
        .await
        .expect("create secret");
    let as_service_account = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("the token's kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("its config"),
    )
    .expect("a client with the ServiceAccount's token");
    let read = Api::<Secret>::namespaced(as_service_account, ns.name())
        .get("unreferenced")
        .await;
    assert!(
        read.is_ok(),
        "the ServiceAccount mode reads any Secret by name: {read:?}"
    );

    let approver = CsrApprover::start(
        &cluster,
        &node,
        Some(&format!("system:serviceaccount:{}:{fullname}", ns.name())),
    );
    let kubelet = ChartKubelet::spawn(&rendered, dir.path(), &kubeconfig, |_| None);

    // Node Ready, and its lease renewed by the ServiceAccount.
    wait_node_ready(&client, &node, Duration::from_secs(60)).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    // The Lease follows the node's first status write: wait for it.
    let lease = wait_for("the node's lease", Duration::from_secs(30), || async {
        Ok(leases.get_opt(&node).await?)
    })
    .await
    .expect("the node's lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(node.as_str())
    );
    // The leader Lease (--leader-elect) in the release namespace, taken by the process.
    let leader = Api::<Lease>::namespaced(client.clone(), ns.name())
        .get(&format!("vk-rs-{node}"))
        .await
        .expect("the leader lease");
    assert!(
        leader
            .spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| !h.is_empty()),
        "the leader lease has a holder"
    );

    // A 3-replica Deployment whose pods read a ConfigMap and a Secret.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "settings" }, "data": { "mode": "rbac" }
            }))
            .expect("configmap"),
        )
        .await
        .expect("create configmap");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "credentials" }, "stringData": { "password": "s3cret" }
            }))
            .expect("secret"),
        )
        .await
        .expect("create secret");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &scenario_deployment(&node))
        .await
        .expect("create deployment");
    let params = ListParams::default().labels("app=rbac");
    let running = wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "3 pods Running and Ready",
        |list| list.len() == 3 && list.iter().all(|p| phase(p) == "Running" && is_ready(p)),
    )
    .await;

    // Events were recorded with the ServiceAccount's rights.
    wait_until(
        "ProviderCreateSuccess events",
        Duration::from_secs(30),
        || async {
            events(&client, ns.name())
                .await
                .iter()
                .any(|(reason, _)| reason == "ProviderCreateSuccess")
        },
    )
    .await;

    // Logs through the apiserver, once the kubelet API and its CSR-issued
    // certificate are in place (binaries without a kubelet API skip this).
    if has_kubelet_api() {
        let pod_name = running[0].metadata.name.clone().unwrap_or_default();
        let logs = logs_via_apiserver(&cluster, ns.name(), &pod_name, "app")
            .await
            .unwrap_or_else(|e| panic!("kubectl logs {pod_name}: {e}"));
        assert!(logs.contains("app: started (image nginx)"), "logs: {logs}");
        assert!(
            !approver.approved().is_empty(),
            "no serving CSR was approved"
        );
    } else {
        eprintln!("this vk-mock has no kubelet API yet: logs not checked");
    }

    // Deletion: the pods go away.
    deployments
        .delete("rbac", &DeleteParams::default())
        .await
        .expect("delete deployment");
    wait_pods(
        &client,
        ns.name(),
        &params,
        Duration::from_secs(90),
        "the pods gone",
        <[Pod]>::is_empty,
    )
    .await;

    // Not one call was refused.
    let log = kubelet.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("forbidden") || l.contains("cannot ") && l.contains("at the cluster scope")
        })
        .collect();
    assert!(
        refused.is_empty(),
        "calls refused by RBAC or the admission policies:\n{}",
        refused.join("\n")
    );
    drop(kubelet);

    // The escalation of docs/security.md fails at its first step: with the
    // ServiceAccount's token, a token for another ServiceAccount that is not
    // bound to a pod is refused, and so is deleting a pod of another node;
    // the same deletion on its own node is allowed.
    let attacker = vk_test_support::client_for_kubeconfig(&kubeconfig)
        .await
        .expect("the ServiceAccount's client");
    let refused = |e: kube::Error| match e {
        kube::Error::Api(s) => s.message,
        other => panic!("not an API refusal: {other}"),
    };
    let tokens: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(attacker.clone(), "kube-system");
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({ "spec": { "audiences": [] } })).expect("token request");
    let message = tokens
        .create_subresource::<_, k8s_openapi::api::authentication::v1::TokenRequest>(
            "token",
            "clusterrole-aggregation-controller",
            &PostParams::default(),
            &request,
        )
        .await
        .map(|_| ())
        .map_err(refused)
        .expect_err("an unbound token for another ServiceAccount");
    assert!(
        message.contains("only tokens bound to a pod"),
        "refused by the policy: {message}"
    );
    let other_node = unique_name("elsewhere");
    let victims: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for (name, on) in [("victim", other_node.as_str()), ("own", node.as_str())] {
        let mut p = pod(name, on);
        p["spec"]["tolerations"] = json!([{ "operator": "Exists" }]);
        victims
            .create(
                &PostParams::default(),
                &serde_json::from_value(p).expect("pod"),
            )
            .await
            .expect("create pod");
    }
    let as_attacker: Api<Pod> = Api::namespaced(attacker, ns.name());
    let message = as_attacker
        .delete("victim", &DeleteParams::default())
        .await
        .map(|_| ())
        .map_err(refused)
        .expect_err("deleting a pod of another node");
    assert!(
        message.contains(&format!("only the pods of node {node}")),
        "refused by the policy: {message}"
    );
    as_attacker
        .delete("own", &DeleteParams::default())
        .await
        .expect("deleting a pod of its own node");
}

/// Three replicas on `node`, with env from a ConfigMap and a Secret.
fn scenario_deployment(node: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": "rbac" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "rbac" } },
            "template": {
                "metadata": { "labels": { "app": "rbac" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node },
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }],
                    "containers": [{
                        "name": "app",
                        "image": "nginx",
                        "env": [
                            { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "mode" } } },
                            { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "credentials", "key": "password" } } }
                        ]
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

/// `identity.mode=node` with the chart's own bootstrap token, applied for
/// real: `vk-mock`, started as the chart's Deployment starts it, bootstraps
/// with the chart's kubeconfig (its token's group bound as the chart binds
/// it, the controller-manager's approver issuing the certificate), is Ready
/// as `system:node:<node>`, holds the leader Lease with the ServiceAccount,
/// and runs a pod that reads a Secret, with no call refused.
#[tokio::test]
async fn the_charts_own_bootstrap_token_makes_the_node_itself() {
    let (cluster, ns) = cluster_and_namespace("vk-own-token").await;
    let client = cluster.client();
    let node = unique_name("vk-own-token");
    let release = node.clone();
    let fullname = format!("{release}-vk-mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = template(
        &release,
        ns.name(),
        &[
            "--set",
            &format!("nodeName={node}"),
            "--set",
            "identity.mode=node",
        ],
    )
    .expect("helm template");
    let rendered = objects(&manifest);
    let applied: Vec<Value> = rendered
        .iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "Secret",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&o["kind"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    let token_secret = applied
        .iter()
        .find(|o| o["type"] == json!("bootstrap.kubernetes.io/token"))
        .and_then(|o| o["metadata"]["name"].as_str())
        .expect("the chart's bootstrap token")
        .to_string();
    let _cleanup = [
        cluster.delete_on_drop("secret", Some("kube-system"), &token_secret),
        cluster.delete_on_drop("clusterrolebinding", None, &format!("{fullname}-bootstrap")),
        cluster.delete_on_drop(
            "clusterrolebinding",
            None,
            &format!("{fullname}-node-client"),
        ),
        cluster.delete_on_drop("node", None, &node),
        cluster.delete_on_drop("lease", Some("kube-node-lease"), &node),
    ];
    apply(&cluster, dir.path(), applied).await;

    // The chart's bootstrap kubeconfig, with the apiserver and CA as this
    // process (outside the cluster) reaches them.
    let admin = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).expect("kubeconfig");
    let server = admin.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("the apiserver's address");
    let bootstrap = of_kind(&rendered, "Secret")
        .iter()
        .find_map(|s| s["stringData"]["kubeconfig"].as_str())
        .expect("the bootstrap kubeconfig")
        .replace("https://kubernetes.default.svc", &server)
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            &cluster.ca_cert_path().to_string_lossy(),
        );
    let bootstrap_file = dir.path().join("bootstrap.kubeconfig");
    std::fs::write(&bootstrap_file, bootstrap).expect("write the bootstrap kubeconfig");
    let cert_dir = dir.path().join("pki");
    // The ServiceAccount's token (for the leader Lease only).
    let kubeconfig = service_account_kubeconfig(&cluster, ns.name(), &fullname, dir.path()).await;
    let kubelet = ChartKubelet::spawn(&rendered, dir.path(), &kubeconfig, |arg| {
        if arg.starts_with("--bootstrap-kubeconfig=") {
            Some(format!(
                "--bootstrap-kubeconfig={}",
                bootstrap_file.display()
            ))
        } else if arg.starts_with("--cert-dir=") {
            Some(format!("--cert-dir={}", cert_dir.display()))
        } else {
            None
        }
    });

    wait_node_ready(&client, &node, Duration::from_secs(60)).await;
    let pem = std::fs::read_to_string(cert_dir.join(vk_test_support::CURRENT_CLIENT_CERT))
        .expect("the node's client certificate");
    let (cn, _) = vk_test_support::certificate_subject(&pem).expect("its subject");
    assert_eq!(cn, format!("system:node:{node}"));
    let leader = wait_for("the leader lease", Duration::from_secs(30), || async {
        Ok(Api::<Lease>::namespaced(client.clone(), ns.name())
            .get_opt(&format!("vk-rs-{node}"))
            .await?)
    })
    .await
    .expect("the leader lease");
    assert!(
        leader
            .spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| !h.is_empty()),
        "the leader lease has a holder"
    );

    // A pod reading a Secret: only its own node may read it.
    let secret: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "creds" }, "stringData": { "password": "hunter2" } }),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let mut manifest = pod("reader", &node);
    manifest["spec"]["containers"][0]["env"] = json!([
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } }
    ]);
    create_pod(&client, ns.name(), manifest).await;
    wait_running(&client, ns.name(), "reader", RUNNING_WITHIN).await;
    let log = kubelet.log_text();
    // One refusal is expected and handled: a node may not read the
    // published client CA (it then trusts the bootstrap kubeconfig's CA).
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
        .filter(|l| !l.contains("the published client CA cannot be read"))
        .collect();
    assert!(refused.is_empty(), "calls refused: {refused:?}");
}
