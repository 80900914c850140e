//! The `vk-edge` Helm chart (`charts/vk-edge`), rendered with the pinned helm
//! (`cargo xtask helm-path`):
//!
//! - its RBAC grants exactly what the core runtime calls (the edge provider
//!   adds no rule: its engine is outside Kubernetes), in every variant,
//!   including the one that runs no Deployment;
//! - the engine values become vk-edge's flags, volumes and security context:
//!   the endpoint, the engine's TLS credentials, a host socket with its group
//!   or root, privileged pods and host path prefixes; nothing writable, as
//!   vk-edge keeps its state in the engine, not on disk;
//! - every rendering's arguments are flags `vk-edge` accepts;
//! - the device credentials (ServiceAccount token Secret) authenticate as the
//!   chart's ServiceAccount with exactly the node's rights;
//! - bad values are rejected; `cargo xtask charts --chart vk-edge` passes.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use vk_test_support::chart::{
    self, RbacExpectation, assert_rejected, objects, of_kind, pod_spec, strings,
};

/// The chart under test.
const CHART: &str = "vk-edge";

fn render(args: &[&str]) -> Vec<Value> {
    chart::render(CHART, args)
}

fn ci_values(variant: &str) -> String {
    chart::ci_values(CHART, variant)
}

/// The renderings `cargo xtask charts` checks: the defaults and each `ci/` file.
const VARIANTS: &[&str] = &[
    "",
    "engine-tls",
    "on-device",
    "on-device-podman",
    "device-credentials",
    "node-identity",
];

fn render_variant(variant: &str) -> Vec<Value> {
    chart::render_variant(CHART, variant)
}

fn container(objects: &[Value]) -> &Value {
    &pod_spec(objects)["containers"][0]
}

fn args_of(objects: &[Value]) -> Vec<String> {
    strings(&container(objects)["args"])
}

/// The volume mounted at `path`, with its mount.
fn volume_at<'a>(objects: &'a [Value], path: &str) -> Option<(&'a Value, &'a Value)> {
    let pod = pod_spec(objects);
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == path)?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    Some((mount, volume))
}

fn host_paths(objects: &[Value]) -> Vec<String> {
    pod_spec(objects)["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn rendered_rbac_grants_exactly_what_the_code_uses() {
    for (variant, node, csr) in [
        ("", "vk-edge-0", true),
        ("engine-tls", "edge-gw-1", false),
        ("on-device", "edge-cam-7", true),
        ("on-device-podman", "edge-podman-1", true),
        ("device-credentials", "edge-pi-3", true),
    ] {
        chart::check_rbac(
            &render_variant(variant),
            &RbacExpectation {
                node,
                namespace: "vk-system",
                service_account: "rel-vk-edge",
                csr,
                provider_allowed: &[],
            },
        );
    }
}

#[test]
fn the_defaults_run_vk_edge_non_root_on_the_docker_socket() {
    let rendered = render(&["--set", "nodeName=edge-9"]);
    let pod = pod_spec(&rendered);
    assert_eq!(pod["serviceAccountName"], "rel-vk-edge");
    assert!(pod.get("hostNetwork").is_none(), "{pod}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"].get("supplementalGroups").is_none());
    let container = container(&rendered);
    assert_eq!(container["name"], "vk-edge");
    assert_eq!(container["image"], "vk-rs/vk-edge:0.1.0");
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));

    let args = args_of(&rendered);
    for arg in [
        "--nodename=edge-9",
        "--provider-config=/etc/vk/config.json",
        "--engine-endpoint=unix:///var/run/docker.sock",
        "--engine-network=bridge",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} missing from {args:?}");
    }
    for absent in [
        "--allow-privileged",
        "--allow-host-path",
        "--engine-tls",
        "--state-dir",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(absent)),
            "{absent} in {args:?}"
        );
    }
    // Nothing from the host, nothing writable: vk-edge's state is in the
    // engine (labels on containers, engine volumes), the root file system is
    // read-only and the one mount is the provider config.
    assert!(host_paths(&rendered).is_empty());
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let (mount, volume) = volume_at(&rendered, "/etc/vk").expect("config volume");
    assert_eq!(mount["readOnly"], true);
    assert!(volume["configMap"].is_object(), "{volume}");
    assert_eq!(pod["volumes"].as_array().map(Vec::len), Some(1));

    // The provider config is keyed by the node, empty fields left out (the
    // engine's CPU and memory, vk-edge's pod count).
    assert_eq!(chart::provider_config(&rendered), json!({ "edge-9": {} }));
    let rendered = render(&[
        "--set",
        "nodeName=edge-9",
        "--set",
        "nodeResources.cpu=2",
        "--set",
        "nodeResources.memory=3Gi",
    ]);
    assert_eq!(
        chart::provider_config(&rendered),
        json!({ "edge-9": { "cpu": "2", "memory": "3Gi" } })
    );
}

#[test]
fn a_remote_engine_is_reached_with_the_tls_secret() {
    let rendered = render_variant("engine-tls");
    let args = args_of(&rendered);
    let expected = [
        "--engine-endpoint=tcp://edge-gw-1.example.net:2376",
        "--engine-network=vk-pods",
        "--engine-tls-ca=/etc/vk-engine-tls/ca.pem",
        "--engine-tls-cert=/etc/vk-engine-tls/cert.pem",
        "--engine-tls-key=/etc/vk-engine-tls/key.pem",
        "--allow-privileged",
    ];
    for arg in expected {
        assert!(args.iter().any(|a| a == arg), "{arg} missing from {args:?}");
    }
    // One flag per prefix, in order.
    let prefixes: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--allow-host-path"))
        .collect();
    assert_eq!(
        prefixes,
        [
            "--allow-host-path=/srv/data",
            "--allow-host-path=/var/log/apps"
        ]
    );
    let (mount, volume) = volume_at(&rendered, "/etc/vk-engine-tls").expect("engine TLS volume");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(volume["secret"]["secretName"], "edge-gw-1-engine-tls");
    let keys: Vec<&str> = volume["secret"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, ["ca.pem", "cert.pem", "key.pem"]);
    // No host access for a remote engine.
    assert!(host_paths(&rendered).is_empty());
    assert_eq!(pod_spec(&rendered)["securityContext"]["runAsUser"], 65532);
    let config = chart::provider_config(&rendered);
    assert_eq!(config["edge-gw-1"]["others"]["example.com/camera"], "1");
    assert_eq!(config["edge-gw-1"]["providerID"], "edge://edge-gw-1");
}

#[test]
fn on_the_device_the_host_socket_is_mounted_with_its_group() {
    let rendered = render_variant("on-device");
    let pod = pod_spec(&rendered);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], "edge-cam-7");
    // Still uid 65532, with the socket's group.
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["supplementalGroups"], json!([998]));
    assert_eq!(
        container(&rendered)["securityContext"]["runAsNonRoot"],
        true
    );
    let (_, socket) = volume_at(&rendered, "/var/run/docker.sock").expect("socket volume");
    assert_eq!(
        socket["hostPath"],
        json!({ "path": "/var/run/docker.sock", "type": "Socket" })
    );
    // The socket is all it takes from the host.
    assert_eq!(host_paths(&rendered), ["/var/run/docker.sock"]);
    // Ports off the device kubelet's.
    let ports: Vec<&Value> = container(&rendered)["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["containerPort"])
        .collect();
    assert_eq!(ports, [&json!(10350), &json!(10355)]);
    let args = args_of(&rendered);
    assert!(args.contains(&"--metrics-addr=0.0.0.0:10355".to_string()));
    assert!(args.contains(&"--allow-host-path=/dev/video0".to_string()));

    // A group the operator already set is kept.
    let rendered = render(&[
        "--values",
        &ci_values("on-device"),
        "--set",
        "podSecurityContext.supplementalGroups={44}",
    ]);
    assert_eq!(
        pod_spec(&rendered)["securityContext"]["supplementalGroups"],
        json!([44, 998])
    );
}

#[test]
fn a_root_only_podman_socket_runs_vk_edge_as_root_without_capabilities() {
    let rendered = render_variant("on-device-podman");
    let pod = pod_spec(&rendered);
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], false);
    let security = &container(&rendered)["securityContext"];
    assert_eq!(security["runAsUser"], 0);
    assert_eq!(security["runAsNonRoot"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    let (_, socket) = volume_at(&rendered, "/run/podman/podman.sock").expect("socket volume");
    assert_eq!(socket["hostPath"]["type"], "Socket");
    let args = args_of(&rendered);
    assert!(args.contains(&"--engine-endpoint=unix:///run/podman/podman.sock".to_string()));
    assert!(args.contains(&"--engine-network=podman".to_string()));
}

#[test]
fn without_a_deployment_only_the_identity_and_its_token_are_created() {
    let rendered = render_variant("device-credentials");
    let mut kinds: Vec<&str> = rendered.iter().filter_map(|o| o["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Secret",
            "ServiceAccount",
            // The ServiceAccount mode's guard rails (tokens bound to pods,
            // only this node's pods): the device uses the token too.
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
        ]
    );
    let secret = of_kind(&rendered, "Secret")[0];
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(secret["metadata"]["name"], "rel-vk-edge-token");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "rel-vk-edge"
    );
    // No token Secret unless asked for.
    assert!(of_kind(&render(&[]), "Secret").is_empty());
}

#[test]
fn bad_values_are_rejected() {
    let rejected = |args: &[&str], why: &str| assert_rejected(CHART, args, why);
    // The schema, by JSON pointer.
    rejected(
        &["--set", "engine.endpoint=http://h:2375"],
        "/engine/endpoint",
    );
    rejected(&["--set", "engine.endpoint=tcp://h"], "/engine/endpoint");
    rejected(
        &["--set", "allowedHostPaths={relative}"],
        "/allowedHostPaths/0",
    );
    rejected(&["--set", "nodeResources.cpu=lots"], "/nodeResources/cpu");
    rejected(
        &["--set", "engine.hostSocket.groupId=-1"],
        "/engine/hostSocket/groupId",
    );
    // vk-edge has no state directory: a leftover value is an error, not ignored.
    rejected(&["--set", "stateDir.hostPath=true"], "stateDir");
    rejected(&["--set", "nodeName=Not_A_Name"], "/nodeName");
    rejected(&["--set", "tls.mode=secret"], "/tls/existingSecret");
    rejected(&["--set", "engine.unknown=1"], "unknown");
    // The templates, for combinations that cannot work.
    rejected(
        &["--set", "engine.tls.secretName=creds"],
        "engine.tls.secretName needs a tcp:// engine.endpoint",
    );
    rejected(
        &["--set", "engine.hostSocket.enabled=true"],
        "set engine.hostSocket.groupId",
    );
    rejected(
        &[
            "--set",
            "engine.hostSocket.enabled=true",
            "--set",
            "engine.hostSocket.runAsRoot=true",
            "--set",
            "engine.endpoint=tcp://h:2376",
        ],
        "engine.hostSocket.enabled needs a unix:// engine.endpoint",
    );
    rejected(&["--set", "hostNetwork=true"], "set kubeletPort");
    rejected(
        &["--set", "serviceAccount.create=false"],
        "serviceAccount.name is required",
    );
}

/// `vk-edge <the chart's args> --help`: clap parses every argument before
/// `--help` and rejects an unknown flag or a bad value on the way, so exit 0
/// means vk-edge accepts the chart's command line.
#[test]
fn every_rendering_passes_flags_vk_edge_accepts() {
    let binary = env!("CARGO_BIN_EXE_vk-edge");
    let version = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("running vk-edge --version");
    if !String::from_utf8_lossy(&version.stdout).starts_with("vk-edge ") {
        eprintln!(
            "SKIPPED: {binary} has no command line yet (--version printed nothing); \
             the chart's flags are not checked against it"
        );
        return;
    }
    for variant in VARIANTS.iter().filter(|v| **v != "device-credentials") {
        let rendered = render_variant(variant);
        let args = args_of(&rendered);
        let out = Command::new(binary)
            .args(&args)
            .arg("--help")
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("running vk-edge");
        assert!(
            out.status.success(),
            "vk-edge refuses the command line of the {variant:?} rendering {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// What `deploy/systemd` and docs/edge.md tell an operator to do for a
/// vk-edge on the device: install the chart without a Deployment, read the
/// token Secret, write a kubeconfig. That kubeconfig must authenticate as the
/// chart's ServiceAccount and carry the node's rights, and only those.
#[tokio::test]
async fn the_device_token_authenticates_as_the_charts_service_account() {
    let (cluster, ns) = vk_test_support::cluster_and_namespace("vk-edge-creds").await;
    let node = vk_test_support::unique_name("edge-creds");
    let release = node.clone();
    let sa = format!("{release}-vk-edge");
    let manifest = chart::template(
        CHART,
        &release,
        ns.name(),
        &[
            "--values",
            &ci_values("device-credentials"),
            "--set",
            &format!("nodeName={node}"),
        ],
    )
    .expect("helm template");
    let rendered = objects(&manifest);
    let _cleanup = [
        cluster.delete_on_drop("clusterrole", None, &sa),
        cluster.delete_on_drop("clusterrolebinding", None, &sa),
        cluster.delete_on_drop("role", Some("kube-node-lease"), &format!("{sa}-lease")),
        cluster.delete_on_drop(
            "rolebinding",
            Some("kube-node-lease"),
            &format!("{sa}-lease"),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("objects.json");
    std::fs::write(
        &file,
        json!({ "apiVersion": "v1", "kind": "List", "items": rendered }).to_string(),
    )
    .expect("write objects");
    let applied = cluster
        .kubectl(["apply", "-f", file.to_str().unwrap_or("")])
        .await
        .expect("kubectl apply");
    assert!(applied.success(), "applying the chart: {}", applied.stderr);

    // The token controller fills the Secret in.
    let secret = format!("{sa}-token");
    let token = vk_test_support::wait_for(
        "the token Secret filled in",
        Duration::from_secs(60),
        || async {
            let out = cluster
                .kubectl([
                    "get",
                    "secret",
                    &secret,
                    "-n",
                    ns.name(),
                    "-o",
                    "jsonpath={.data.token}",
                ])
                .await?;
            Ok(Some(out.stdout.trim().to_string()).filter(|t| !t.is_empty()))
        },
    )
    .await
    .expect("token");
    let token = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map(String::from_utf8)
        .expect("base64")
        .expect("token is text");
    let kubeconfig = dir.path().join("device.kubeconfig");
    cluster
        .write_token_kubeconfig(&token, &kubeconfig)
        .expect("a kubeconfig with the token");

    let as_device = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        let vkcp = cluster.vkcp().to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                vk_test_support::kubectl_blocking(&vkcp, &kubeconfig, &args)
            })
            .await
            .expect("join")
            .expect("kubectl")
        }
    };
    let whoami = as_device(vec![
        "auth".into(),
        "whoami".into(),
        "-o".into(),
        "jsonpath={.status.userInfo.username}".into(),
    ])
    .await;
    assert_eq!(
        whoami.stdout.trim(),
        format!("system:serviceaccount:{}:{sa}", ns.name()),
        "{}",
        whoami.stderr
    );
    let can = |verb: &str, resource: String, namespace: Option<&str>| {
        let mut args = vec!["auth".to_string(), "can-i".into(), verb.into(), resource];
        if let Some(ns) = namespace {
            args.extend(["-n".to_string(), ns.to_string()]);
        }
        async { as_device(args).await.stdout.trim() == "yes" }
    };
    assert!(can("create", "nodes".into(), None).await);
    assert!(can("patch", format!("nodes/{node}"), None).await);
    assert!(can("update", format!("leases/{node}"), Some("kube-node-lease")).await);
    assert!(can("watch", "pods".into(), None).await);
    // Another node, another lease, writing secrets: no.
    assert!(!can("patch", "nodes/some-other-node".into(), None).await);
    assert!(
        !can(
            "update",
            "leases/some-other-node".into(),
            Some("kube-node-lease")
        )
        .await
    );
    assert!(!can("create", "secrets".into(), Some(ns.name())).await);
    assert!(!can("create", "pods".into(), Some(ns.name())).await);
}

#[test]
fn lint_is_clean_and_the_apiserver_accepts_every_rendering() {
    let renderings: Vec<String> = VARIANTS
        .iter()
        .map(|v| {
            if v.is_empty() {
                "vk-edge.yaml".to_string()
            } else {
                format!("vk-edge-{v}.yaml")
            }
        })
        .collect();
    let names: Vec<&str> = renderings.iter().map(String::as_str).collect();
    chart::lint_and_dry_run(CHART, &names);
}
