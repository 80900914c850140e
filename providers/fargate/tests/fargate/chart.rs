//! The `vk-fargate` Helm chart (`charts/vk-fargate`), rendered with the pinned
//! helm (`cargo xtask helm-path`):
//!
//! - its RBAC grants exactly what the core runtime calls (the Fargate
//!   provider adds no rule: ECS is outside Kubernetes), in every variant;
//! - the values become a fargate.toml that vk-fargate's own parser accepts,
//!   and AWS credentials by IRSA (the ServiceAccount's role annotation) or
//!   from an existing Secret;
//! - bad values are rejected; `cargo xtask charts --chart vk-fargate` passes.

use serde_json::Value;

use vk_fargate::config::{CapacityProvider, FargateConfig};
use vk_test_support::chart::{self, RbacExpectation, assert_rejected, of_kind, pod_spec};

/// The chart under test.
const CHART: &str = "vk-fargate";

/// The renderings `cargo xtask charts` checks: the defaults and each `ci/` file.
const VARIANTS: &[&str] = &["", "irsa", "credentials-secret", "node-identity"];

fn render(args: &[&str]) -> Vec<Value> {
    chart::render(CHART, args)
}

fn render_variant(variant: &str) -> Vec<Value> {
    chart::render_variant(CHART, variant)
}

/// The rendered fargate.toml (the ConfigMap's `config.json`, read as TOML).
fn toml_of(objects: &[Value]) -> String {
    let config_maps = of_kind(objects, "ConfigMap");
    config_maps
        .first()
        .and_then(|c| c["data"]["config.json"].as_str())
        .unwrap_or_else(|| panic!("no provider config: {config_maps:?}"))
        .to_string()
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

#[test]
fn chart_rbac_grants_exactly_what_the_code_uses() {
    for (variant, node, csr) in [
        ("", "vk-fargate-0", true),
        ("irsa", "vk-fargate-eu-1", true),
        ("credentials-secret", "vk-fargate-us-1", false),
    ] {
        chart::check_rbac(
            &render_variant(variant),
            &RbacExpectation {
                node,
                namespace: "vk-system",
                service_account: "rel-vk-fargate",
                csr,
                provider_allowed: &[],
            },
        );
    }
}

#[test]
fn chart_renders_a_fargate_toml_vk_fargate_accepts() {
    let rendered = render_variant("irsa");
    let config = FargateConfig::parse(&toml_of(&rendered)).expect("a valid fargate.toml");
    assert_eq!(config.region, "eu-west-1");
    assert_eq!(config.cluster_name, "vk-pods");
    assert_eq!(config.subnets, ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]);
    assert_eq!(config.security_groups, ["sg-0123abcd"]);
    assert!(!config.assign_public_ip);
    assert_eq!(config.log_group.as_deref(), Some("/vk-rs/pods"));
    assert_eq!(
        config.task_role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/vk-pods")
    );
    assert_eq!(config.capacity_provider, CapacityProvider::FargateSpot);
    assert_eq!(config.cpu, "64");
    assert_eq!(
        config.tags.get("cost-center").map(String::as_str),
        Some("42")
    );
    let args: Vec<String> = chart::strings(&pod_spec(&rendered)["containers"][0]["args"]);
    assert!(args.contains(&"--provider-config=/etc/vk/config.json".to_string()));
    // The volume writer runs the chart's own image unless told otherwise.
    let image = pod_spec(&rendered)["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(image, "vk-rs/vk-fargate:0.1.0");
    assert_eq!(config.volume_writer_image, image);
    assert_eq!(config.sweep_interval, std::time::Duration::from_secs(300));
    let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vk-fargate:0.1.0";
    let irsa = chart::ci_values(CHART, "irsa");
    let config = FargateConfig::parse(&toml_of(&render(&[
        "--values",
        &irsa,
        "--set",
        &format!("providerConfig.VolumeWriterImage={ecr}"),
        "--set",
        "providerConfig.SweepInterval=1m",
    ])))
    .expect("a valid fargate.toml");
    assert_eq!(config.volume_writer_image, ecr);
    assert_eq!(config.sweep_interval, std::time::Duration::from_secs(60));

    let config = FargateConfig::parse(&toml_of(&render_variant("credentials-secret")))
        .expect("a valid fargate.toml");
    assert_eq!(config.region, "us-east-1");
    assert_eq!(config.cluster_name, "default");
    assert!(config.assign_public_ip);
    assert!(config.security_groups.is_empty());

    // The defaults leave the required keys out: vk-fargate names them.
    let err = FargateConfig::parse(&toml_of(&render(&[]))).unwrap_err();
    assert!(err.contains("Region"), "{err}");
}

#[test]
fn chart_aws_credentials_are_irsa_or_an_existing_secret() {
    // IRSA: the role on the ServiceAccount, no keys in the environment.
    let rendered = render_variant("irsa");
    let accounts = of_kind(&rendered, "ServiceAccount");
    assert_eq!(
        accounts[0]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/vk-fargate"
    );
    let env = env_of(&rendered);
    assert!(
        !env.iter().any(|(n, _)| n.starts_with("AWS_ACCESS")),
        "{env:?}"
    );
    assert!(
        env.iter()
            .any(|(n, v)| n == "AWS_REGION" && v["value"] == "eu-west-1")
    );

    // A Secret: both keys from it, no role annotation.
    let rendered = render_variant("credentials-secret");
    let env = env_of(&rendered);
    for (name, key) in [
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ] {
        let (_, var) = env
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from {env:?}"));
        assert_eq!(var["valueFrom"]["secretKeyRef"]["name"], "vk-fargate-aws");
        assert_eq!(var["valueFrom"]["secretKeyRef"]["key"], key);
        assert!(var.get("value").is_none(), "{var}");
    }
    let accounts = of_kind(&rendered, "ServiceAccount");
    assert!(accounts[0]["metadata"].get("annotations").is_none());
}

#[test]
fn chart_rejects_bad_values() {
    let rejected = |args: &[&str], why: &str| assert_rejected(CHART, args, why);
    // The schema, by JSON pointer.
    rejected(
        &["--set", "providerConfig.Subnets={vpc-1}"],
        "/providerConfig/Subnets/0",
    );
    rejected(
        &["--set", "providerConfig.CapacityProvider=EC2"],
        "/providerConfig/CapacityProvider",
    );
    rejected(&["--set", "providerConfig.CPU=lots"], "/providerConfig/CPU");
    rejected(&["--set", "providerConfig.Typo=1"], "Typo");
    rejected(
        &[
            "--set",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=my-role",
        ],
        "/serviceAccount/annotations/eks.amazonaws.com~1role-arn",
    );
    // The templates, for combinations that cannot work.
    rejected(
        &[
            "--set",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/vk",
            "--set",
            "aws.credentialsSecret.name=keys",
        ],
        "not both",
    );
    rejected(
        &["--set", "providerConfig.CloudWatchLogGroupName=logs"],
        "needs providerConfig.ExecutionRoleArn",
    );
}

#[test]
fn chart_lint_is_clean_and_the_apiserver_accepts_every_rendering() {
    chart::lint_and_dry_run_variants(CHART, VARIANTS);
}
