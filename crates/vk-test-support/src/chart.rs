//! The providers' Helm charts (`charts/vk-<name>`) as their tests check
//! them: rendering with the pinned helm, picking objects out of the
//! rendering, and the RBAC check against the allow-list of what the core
//! runtime calls. Every chart shares the core's rules (`_helpers.tpl`), so
//! the allow-list lives here once; a provider's own rules
//! (`vk.providerRules`) are passed in as
//! [`RbacExpectation::provider_allowed`].
//!
//! These helpers are for test bodies and fail like assertions: they panic
//! with what was expected and what was found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::cluster::TestCluster;
use crate::workspace::{workspace_root, xtask};

/// A rule set as (API group, resource) → verbs.
pub type Allowed = [(&'static str, &'static str, &'static [&'static str])];

/// What the core runtime calls, by (API group, resource) → verbs. A chart's
/// ClusterRole must grant exactly this plus its provider's rules, no more
/// (minimal) and no less (the mock's scenario test shows it is sufficient).
pub const CLUSTER_ALLOWED: &Allowed = &[
    // pod/controller.rs: reflector over `watcher(Api::<Pod>::all, spec.nodeName=<node>)`,
    // `delete` with a UID precondition.
    ("", "pods", &["list", "watch", "delete"]),
    // pod/controller.rs: `patch_status` (strategic merge).
    ("", "pods/status", &["patch"]),
    // node/mod.rs: `get_opt`, `create`, merge `patch` on adoption; `watch_deletion`
    // lists and watches with metadata.name=<node>.
    ("", "nodes", &["create", "get", "list", "watch", "patch"]),
    // node/mod.rs: `patch_status`.
    ("", "nodes/status", &["patch"]),
    // objects.rs: `get_opt` of what env and volumes reference (cached, never listed);
    // api/tls.rs reads kube-system/extension-apiserver-authentication.
    ("", "configmaps", &["get"]),
    ("", "secrets", &["get"]),
    // runtime.rs: one reflector over `Api::<Service>::all` (service link variables).
    ("", "services", &["list", "watch"]),
    // objects.rs: TokenRequest (`create_subresource("token")`) for projected tokens.
    ("", "serviceaccounts/token", &["create"]),
    // context.rs: kube's event Recorder creates events and patches repeated ones.
    ("events.k8s.io", "events", &["create", "patch"]),
    // api/auth.rs: kubelet API callers' bearer tokens and their authorization.
    ("authentication.k8s.io", "tokenreviews", &["create"]),
    ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
    // api/tls.rs: the serving certificate by CSR (tls.mode=csr only): `create`,
    // then `get_opt` by name every second until it is issued.
    (
        "certificates.k8s.io",
        "certificatesigningrequests",
        &["create", "get"],
    ),
];

/// node/lease.rs: `get_opt`, `replace` (update) and `create` of the node's
/// Lease, in kube-node-lease only.
pub const LEASE_ALLOWED: (&str, &str, &[&str]) = (
    "coordination.k8s.io",
    "leases",
    &["create", "get", "update"],
);

/// leader.rs (`--leader-elect`): `get_opt`, `replace` (update) and `create`
/// of the node's leader Lease, and a watch of it by name (list, watch), in
/// the release namespace only.
pub const LEADER_LEASE_ALLOWED: (&str, &str, &[&str]) = (
    "coordination.k8s.io",
    "leases",
    &["create", "get", "update", "list", "watch"],
);

/// Verbs that change an object.
pub const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// `charts/<chart>` in the workspace.
pub fn chart_dir(chart: &str) -> PathBuf {
    workspace_root().join("charts").join(chart)
}

/// The pinned helm, built by the xtask on first use.
///
/// # Panics
///
/// When `cargo xtask helm-path` fails.
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = xtask(["helm-path"]).unwrap_or_else(|e| panic!("{e:#}"));
        let path = out
            .last_line()
            .unwrap_or_else(|| panic!("cargo xtask helm-path printed nothing"));
        PathBuf::from(path)
    })
}

/// `helm template RELEASE charts/<chart> --namespace NS [ARGS]`: Ok(stdout)
/// or Err(stderr).
///
/// # Panics
///
/// When helm cannot be run.
pub fn template(
    chart: &str,
    release: &str,
    namespace: &str,
    args: &[&str],
) -> Result<String, String> {
    let out = Command::new(helm())
        .arg("template")
        .arg(release)
        .arg(chart_dir(chart))
        .args(["--namespace", namespace])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm().display()));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that `helm template` of `chart` with `args` fails and names `why`.
pub fn assert_rejected(chart: &str, args: &[&str], why: &str) {
    let err = template(chart, "rel", "vk-system", args)
        .err()
        .unwrap_or_else(|| panic!("{args:?} was accepted"));
    assert!(err.contains(why), "{args:?}: expected {why:?} in: {err}");
}

/// The objects of `chart` rendered as release `rel` in `vk-system` with helm `args`.
///
/// # Panics
///
/// When helm fails or its output is not YAML.
pub fn render(chart: &str, args: &[&str]) -> Vec<Value> {
    let manifest = template(chart, "rel", "vk-system", args)
        .unwrap_or_else(|e| panic!("helm template {chart} {args:?}: {e}"));
    objects(&manifest)
}

/// The path of the chart's `ci/<variant>-values.yaml`.
pub fn ci_values(chart: &str, variant: &str) -> String {
    chart_dir(chart)
        .join("ci")
        .join(format!("{variant}-values.yaml"))
        .to_string_lossy()
        .into_owned()
}

/// [`render`] with one of the chart's `ci/` values files, or the defaults
/// for `""`: the renderings `cargo xtask charts` checks.
pub fn render_variant(chart: &str, variant: &str) -> Vec<Value> {
    if variant.is_empty() {
        render(chart, &[])
    } else {
        render(chart, &["--values", &ci_values(chart, variant)])
    }
}

/// The objects of a rendered chart.
///
/// # Panics
///
/// When the rendering is not YAML.
pub fn objects(manifest: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(manifest)
        .unwrap_or_else(|e| panic!("the rendered chart is not YAML: {e}"))
        .into_iter()
        .filter(|v| v.is_object())
        .collect()
}

/// The objects of kind `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The strings of a JSON array (none if `v` is not an array).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod spec of the rendering's only Deployment.
pub fn pod_spec(objects: &[Value]) -> &Value {
    let deployments = of_kind(objects, "Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment");
    &deployments[0]["spec"]["template"]["spec"]
}

/// The `config.json` of the rendering's provider-config ConfigMap.
///
/// # Panics
///
/// When the rendering has no ConfigMap with a JSON `config.json`.
pub fn provider_config(objects: &[Value]) -> Value {
    let config_maps = of_kind(objects, "ConfigMap");
    let text = config_maps
        .first()
        .and_then(|c| c["data"]["config.json"].as_str())
        .unwrap_or_else(|| panic!("no ConfigMap with a config.json: {config_maps:?}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("config.json is not JSON ({e}): {text}"))
}

/// (group, resource, verb) triples a set of rules grants, with the resource
/// names each triple is limited to (empty: all).
pub fn grants(rules: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for rule in rules.as_array().into_iter().flatten() {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.push((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    out
}

/// The (group, resource, verb) triples of an allow-list.
pub fn allowed_set(entries: &Allowed) -> BTreeSet<(String, String, String)> {
    entries
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// What one rendering should grant, and to whom.
pub struct RbacExpectation<'a> {
    /// The node the rendering is for: node and lease rights are limited to it.
    pub node: &'a str,
    /// The release's namespace, where its ServiceAccount lives.
    pub namespace: &'a str,
    /// The ServiceAccount the bindings must name.
    pub service_account: &'a str,
    /// tls.mode is csr: the CSR rule is granted.
    pub csr: bool,
    /// The provider's rules (`vk.providerRules`) on top of [`CLUSTER_ALLOWED`].
    pub provider_allowed: &'a Allowed,
}

/// Checks one rendering's RBAC: no wildcard, exactly the allow-list, read-only
/// objects stay read-only, node and lease rights limited to the node, the
/// bindings name the chart's own roles and ServiceAccount.
///
/// # Panics
///
/// On the first rule or binding that breaks one of these.
pub fn check_rbac(objects: &[Value], want: &RbacExpectation) {
    let node = want.node;
    // No wildcard and no non-resource URLs anywhere.
    for role in of_kind(objects, "ClusterRole")
        .into_iter()
        .chain(of_kind(objects, "Role"))
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "wildcard in {field}: {rule}"
                );
            }
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "non-resource URL rule: {rule}"
            );
        }
    }

    // The ClusterRole: exactly the allow-list (CSRs only in csr mode).
    let cluster_roles = of_kind(objects, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "one ClusterRole");
    let role = cluster_roles[0];
    let granted = grants(&role["rules"]);
    let granted_set: BTreeSet<(String, String, String)> = granted
        .iter()
        .map(|(g, r, v, _)| (g.clone(), r.clone(), v.clone()))
        .collect();
    let mut expected = allowed_set(CLUSTER_ALLOWED);
    expected.extend(allowed_set(want.provider_allowed));
    if !want.csr {
        expected.retain(|(_, r, _)| r != "certificatesigningrequests");
    }
    let extra: Vec<_> = granted_set.difference(&expected).collect();
    assert!(
        extra.is_empty(),
        "granted beyond what the code uses: {extra:?}"
    );
    let missing: Vec<_> = expected.difference(&granted_set).collect();
    assert!(
        missing.is_empty(),
        "the code uses what is not granted: {missing:?}"
    );

    for (group, resource, verb, names) in &granted {
        // Read-only objects stay read-only.
        if group.is_empty() && ["configmaps", "secrets", "services"].contains(&resource.as_str()) {
            assert!(
                !WRITE_VERBS.contains(&verb.as_str()),
                "{verb} on {resource}"
            );
        }
        // Everything on nodes but create is limited to this node.
        if group.is_empty() && resource.starts_with("nodes") && verb != "create" {
            assert_eq!(
                names,
                &vec![node.to_string()],
                "{verb} {resource} not limited to the node"
            );
        }
    }

    // The lease Role: kube-node-lease only, get/update on this node's lease only.
    let roles = of_kind(objects, "Role");
    let heartbeat: Vec<&Value> = roles
        .iter()
        .copied()
        .filter(|r| r["metadata"]["namespace"] == "kube-node-lease")
        .collect();
    assert_eq!(heartbeat.len(), 1, "one Role in kube-node-lease");
    check_lease_role(heartbeat[0], &[LEASE_ALLOWED], node);
    // With --leader-elect, the leader Lease's Role: the release namespace
    // only, everything but create on that one Lease.
    let leader: Vec<&Value> = roles
        .iter()
        .copied()
        .filter(|r| r["metadata"]["namespace"] != "kube-node-lease")
        .collect();
    assert!(leader.len() <= 1, "at most one leader Lease Role");
    for role in &leader {
        assert_eq!(
            role["metadata"]["namespace"], want.namespace,
            "the leader Lease Role is in the release namespace"
        );
        let lease = of_kind(objects, "Deployment")
            .first()
            .and_then(|d| {
                strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])
                    .iter()
                    .find_map(|a| {
                        a.strip_prefix("--leader-elect-lease-name=")
                            .map(str::to_string)
                    })
            })
            .unwrap_or_else(|| format!("vk-rs-{node}"));
        check_lease_role(role, &[LEADER_LEASE_ALLOWED], &lease);
    }

    // Bindings: the chart's own roles, to the chart's ServiceAccount; never cluster-admin.
    let own_roles: Vec<String> = cluster_roles
        .iter()
        .chain(roles.iter())
        .map(|r| r["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    for binding in of_kind(objects, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(objects, "RoleBinding"))
    {
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or("");
        assert!(
            !["cluster-admin", "admin", "edit"].contains(&role_name),
            "binds {role_name}"
        );
        assert!(
            own_roles.iter().any(|r| r == role_name),
            "binds a foreign role {role_name}"
        );
        assert_eq!(
            binding["subjects"],
            json!([{
                "kind": "ServiceAccount",
                "name": want.service_account,
                "namespace": want.namespace,
            }])
        );
    }
    assert_eq!(of_kind(objects, "ClusterRoleBinding").len(), 1);
    assert_eq!(of_kind(objects, "RoleBinding").len(), roles.len());
}

/// A lease Role grants exactly `allowed`, everything but create on `lease` only.
fn check_lease_role(role: &Value, allowed: &Allowed, lease: &str) {
    let lease_grants = grants(&role["rules"]);
    let lease_set: BTreeSet<(String, String, String)> = lease_grants
        .iter()
        .map(|(g, r, v, _)| (g.clone(), r.clone(), v.clone()))
        .collect();
    assert_eq!(lease_set, allowed_set(allowed));
    for (_, _, verb, names) in &lease_grants {
        if verb != "create" {
            assert_eq!(
                names,
                &vec![lease.to_string()],
                "{verb} on leases not limited to {lease}"
            );
        }
    }
}

/// `cargo xtask charts --chart <chart>` against the shared test cluster
/// (started if needed): `helm lint --strict` clean and every rendering
/// accepted by a server-side dry run; then checks that each of `renderings`
/// (`<chart>[-<variant>].yaml`) was written to `target/charts/`. For a
/// synchronous test: it runs a Tokio runtime of its own.
///
/// # Panics
///
/// When the cluster cannot be had, the xtask fails, or a rendering is missing.
pub fn lint_and_dry_run(chart: &str, renderings: &[&str]) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("a Tokio runtime: {e}"));
    let kubeconfig = runtime.block_on(async {
        let cluster = TestCluster::get()
            .await
            .unwrap_or_else(|e| panic!("no test cluster: {e:#}"));
        cluster.kubeconfig().to_path_buf()
    });
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    // Fails on any lint warning or error and on any object the apiserver refuses.
    if let Err(err) = xtask([
        "charts",
        "--chart",
        chart,
        "--kubeconfig",
        kubeconfig.as_str(),
    ]) {
        panic!("{err:#}");
    }
    let rendered = workspace_root().join("target/charts");
    for name in renderings {
        assert!(rendered.join(name).is_file(), "{name} not rendered");
    }
}

/// [`lint_and_dry_run`] of the renderings of `variants` (see
/// [`render_variant`]): `<chart>.yaml` for the defaults (`""`), else
/// `<chart>-<variant>.yaml`.
pub fn lint_and_dry_run_variants(chart: &str, variants: &[&str]) {
    let renderings: Vec<String> = variants
        .iter()
        .map(|v| {
            if v.is_empty() {
                format!("{chart}.yaml")
            } else {
                format!("{chart}-{v}.yaml")
            }
        })
        .collect();
    let names: Vec<&str> = renderings.iter().map(String::as_str).collect();
    lint_and_dry_run(chart, &names);
}
