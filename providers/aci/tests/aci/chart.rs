//! The `vk-aci` Helm chart (`charts/vk-aci`), rendered with the pinned helm
//! (`cargo xtask helm-path`):
//!
//! - its RBAC grants exactly what the core runtime calls (the ACI provider
//!   adds no rule: ARM is outside Kubernetes), in every variant;
//! - the values become vk-aci's environment (upstream's variable names) and
//!   the node's capacity file, and Azure credentials by workload identity
//!   or from a client-secret Secret;
//! - bad values are rejected; `cargo xtask charts --chart vk-aci` passes.

use serde_json::{Value, json};

use vk_test_support::chart::{self, RbacExpectation, assert_rejected, of_kind, pod_spec};

/// The chart under test.
const CHART: &str = "vk-aci";

/// The renderings `cargo xtask charts` checks: the defaults and each `ci/` file.
const VARIANTS: &[&str] = &["", "workload-identity", "client-secret", "node-identity"];

fn render(args: &[&str]) -> Vec<Value> {
    chart::render(CHART, args)
}

fn render_variant(variant: &str) -> Vec<Value> {
    chart::render_variant(CHART, variant)
}

/// The container's environment, by name.
fn env_of(objects: &[Value]) -> Vec<(String, Value)> {
    pod_spec(objects)["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap_or("").to_string(), e.clone()))
        .collect()
}

fn value_of<'a>(env: &'a [(String, Value)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v["value"].as_str())
}

#[test]
fn chart_rbac_grants_exactly_what_the_code_uses() {
    for (variant, node, csr) in [
        ("", "vk-aci-0", true),
        ("workload-identity", "vk-aci-westeurope", true),
        ("client-secret", "vk-aci-eastus", false),
    ] {
        chart::check_rbac(
            &render_variant(variant),
            &RbacExpectation {
                node,
                namespace: "vk-system",
                service_account: "rel-vk-aci",
                csr,
                provider_allowed: &[],
            },
        );
    }
}

#[test]
fn chart_settings_become_the_environment_and_the_capacity_file() {
    let rendered = render_variant("workload-identity");
    let env = env_of(&rendered);
    for (name, value) in [
        (
            "AZURE_SUBSCRIPTION_ID",
            "00000000-0000-0000-0000-000000000001",
        ),
        ("ACI_RESOURCE_GROUP", "vk-pods"),
        ("ACI_REGION", "westeurope"),
        ("ACI_VNET_NAME", "cluster-vnet"),
        ("ACI_SUBNET_NAME", "aci"),
        ("ACI_VNET_RESOURCE_GROUP", "network-rg"),
        ("ACI_CLUSTER_DNS", "10.0.0.10"),
    ] {
        assert_eq!(value_of(&env, name), Some(value), "{name} in {env:?}");
    }
    assert_eq!(
        chart::provider_config(&rendered),
        json!({ "vk-aci-westeurope": {
            "cpu": "100", "memory": "400Gi", "pods": "200",
            "others": { "nvidia.com/gpu": "4" },
        }})
    );
    // The defaults: upstream's capacity, no empty settings.
    let rendered = render(&[]);
    assert_eq!(chart::provider_config(&rendered), json!({ "vk-aci-0": {} }));
    let env = env_of(&rendered);
    assert!(
        !env.iter()
            .any(|(n, _)| n.starts_with("AZURE_") || n.starts_with("ACI_")),
        "{env:?}"
    );
}

#[test]
fn chart_azure_credentials_are_workload_identity_or_a_client_secret() {
    // Workload identity: the client id on the ServiceAccount, the webhook's
    // label on the pod, no secret in the environment.
    let rendered = render_variant("workload-identity");
    let accounts = of_kind(&rendered, "ServiceAccount");
    assert_eq!(
        accounts[0]["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "11111111-2222-3333-4444-555555555555"
    );
    let deployments = of_kind(&rendered, "Deployment");
    assert_eq!(
        deployments[0]["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let env = env_of(&rendered);
    assert!(
        !env.iter().any(|(n, _)| n == "AZURE_CLIENT_SECRET"),
        "{env:?}"
    );

    // A client secret: from the Secret, with the tenant and the application.
    let rendered = render_variant("client-secret");
    let env = env_of(&rendered);
    assert_eq!(
        value_of(&env, "AZURE_TENANT_ID"),
        Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
    assert_eq!(
        value_of(&env, "AZURE_CLIENT_ID"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    let (_, secret) = env
        .iter()
        .find(|(n, _)| n == "AZURE_CLIENT_SECRET")
        .unwrap_or_else(|| panic!("AZURE_CLIENT_SECRET missing from {env:?}"));
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"],
        json!({ "name": "vk-aci-sp", "key": "clientSecret" })
    );
    assert!(secret.get("value").is_none(), "{secret}");
}

#[test]
fn chart_rejects_bad_values() {
    let rejected = |args: &[&str], why: &str| assert_rejected(CHART, args, why);
    let client_id = "serviceAccount.annotations.azure\\.workload\\.identity/client-id";
    // The schema, by JSON pointer.
    rejected(
        &["--set", "azure.subscriptionId=my-sub"],
        "/azure/subscriptionId",
    );
    rejected(
        &["--set", "azure.clusterDNS={kube-dns}"],
        "/azure/clusterDNS/0",
    );
    rejected(&["--set", "providerConfig.cpu=lots"], "/providerConfig/cpu");
    rejected(&["--set", "azure.typo=1"], "typo");
    rejected(
        &["--set", &format!("{client_id}=not-a-guid")],
        "/serviceAccount/annotations/azure.workload.identity~1client-id",
    );
    // The templates, for combinations that cannot work.
    let guid = "11111111-2222-3333-4444-555555555555";
    rejected(
        &["--set", &format!("{client_id}={guid}")],
        "needs the pod label azure.workload.identity/use",
    );
    rejected(
        &[
            "--set",
            &format!("{client_id}={guid}"),
            "--set-string",
            "podLabels.azure\\.workload\\.identity/use=true",
            "--set",
            "azure.clientSecret.name=sp",
        ],
        "not both",
    );
    rejected(
        &["--set", "azure.clientSecret.name=sp"],
        "azure.clientSecret.name needs azure.tenantId and azure.clientId",
    );
    rejected(
        &["--set", "azure.vnet.name=net"],
        "give both name and subnetName",
    );
}

#[test]
fn chart_lint_is_clean_and_the_apiserver_accepts_every_rendering() {
    chart::lint_and_dry_run_variants(CHART, VARIANTS);
}
