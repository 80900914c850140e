//! The provider config file (`--provider-config`): upstream virtual-kubelet's
//! `fargate.toml`, accepted unchanged, plus our own fields.
//!
//! Upstream's fields and defaults: `Region` (required), `ClusterName`
//! (`default`), `Subnets` (required), `SecurityGroups`,
//! `AssignPublicIPv4Address` (false), `ExecutionRoleArn`,
//! `CloudWatchLogGroupName` (a log group needs an execution role),
//! `PlatformVersion` (`LATEST`), `OperatingSystem` (`Linux`, the only one),
//! and the node's capacity `CPU` (20), `Memory` (40Gi), `Storage` (40Gi),
//! `Pods` (20). An empty string is the same as a missing field, as upstream
//! read it.
//!
//! Ours: `TaskRoleArn` (the role the pods' code runs as), `CapacityProvider`
//! (`FARGATE` or `FARGATE_SPOT`; none means launch type FARGATE),
//! `PollInterval` (how often the tasks are listed, `10s`), `Tags` (a
//! table of tags added to every task, task definition and secret),
//! `VolumeWriterImage` (the image of the container that writes a pod's
//! volume files, `vk-rs/vk-fargate:<version>` by default: this provider's own
//! image, see [`crate::volume_files`]) and `SweepInterval` (how often task
//! definitions and secrets left without a pod are looked for, `5m`). A field
//! that neither knows is an error, so a typo never goes unnoticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use vk_core::cli::parse_duration;
use vk_core::quantity::parse_nanos;
use vk_core::toolkit::node_config::NodeConfigError;

/// How the tasks get their capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityProvider {
    /// `launchType: FARGATE` (upstream's only choice).
    LaunchType,
    /// The cluster's `FARGATE` capacity provider.
    Fargate,
    /// The cluster's `FARGATE_SPOT` capacity provider: cheaper, interruptible.
    FargateSpot,
}

impl CapacityProvider {
    /// The capacity provider's name in ECS, when one is used.
    pub fn name(self) -> Option<&'static str> {
        match self {
            CapacityProvider::LaunchType => None,
            CapacityProvider::Fargate => Some("FARGATE"),
            CapacityProvider::FargateSpot => Some("FARGATE_SPOT"),
        }
    }
}

/// A checked config file.
#[derive(Clone, Debug, PartialEq)]
pub struct FargateConfig {
    /// AWS region of the cluster.
    pub region: String,
    /// ECS cluster the tasks run in (created when missing).
    pub cluster_name: String,
    /// Subnets of the tasks' network interfaces.
    pub subnets: Vec<String>,
    /// Security groups of the tasks' network interfaces.
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IPv4 address.
    pub assign_public_ip: bool,
    /// The role ECS uses to pull images, write logs and read secrets.
    pub execution_role_arn: Option<String>,
    /// The role the pods' code runs as.
    pub task_role_arn: Option<String>,
    /// CloudWatch Logs group of the containers' output (`awslogs`).
    pub log_group: Option<String>,
    /// Fargate platform version.
    pub platform_version: String,
    /// Launch type or capacity provider.
    pub capacity_provider: CapacityProvider,
    /// How often the tasks are listed for their status.
    pub poll_interval: Duration,
    /// Tags added to every task, task definition and secret.
    pub tags: BTreeMap<String, String>,
    /// The image of the container that writes a pod's volume files: this
    /// provider's own image (it runs `vk-fargate write-volumes`).
    pub volume_writer_image: String,
    /// How often task definitions and secrets left without a pod (a create
    /// interrupted between them and `RunTask`) are looked for.
    pub sweep_interval: Duration,
    /// Node CPU capacity (a quantity).
    pub cpu: String,
    /// Node memory capacity.
    pub memory: String,
    /// Node ephemeral-storage capacity.
    pub storage: String,
    /// Node pod capacity.
    pub pods: String,
}

/// The file as written: upstream's spelling, every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "Region")]
    region: Option<String>,
    #[serde(rename = "ClusterName")]
    cluster_name: Option<String>,
    #[serde(rename = "Subnets")]
    subnets: Option<Vec<String>>,
    #[serde(rename = "SecurityGroups")]
    security_groups: Option<Vec<String>>,
    #[serde(rename = "AssignPublicIPv4Address")]
    assign_public_ip: Option<bool>,
    #[serde(rename = "ExecutionRoleArn")]
    execution_role_arn: Option<String>,
    #[serde(rename = "CloudWatchLogGroupName")]
    log_group: Option<String>,
    #[serde(rename = "PlatformVersion")]
    platform_version: Option<String>,
    #[serde(rename = "OperatingSystem")]
    operating_system: Option<String>,
    #[serde(rename = "CPU")]
    cpu: Option<String>,
    #[serde(rename = "Memory")]
    memory: Option<String>,
    #[serde(rename = "Storage")]
    storage: Option<String>,
    #[serde(rename = "Pods")]
    pods: Option<String>,
    #[serde(rename = "TaskRoleArn")]
    task_role_arn: Option<String>,
    #[serde(rename = "CapacityProvider")]
    capacity_provider: Option<String>,
    #[serde(rename = "PollInterval")]
    poll_interval: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "VolumeWriterImage")]
    volume_writer_image: Option<String>,
    #[serde(rename = "SweepInterval")]
    sweep_interval: Option<String>,
}

/// The image of the volume writer when the config names none: this
/// provider's own image, as `cargo xtask build-images` tags it.
pub fn default_volume_writer_image() -> String {
    format!("vk-rs/vk-fargate:{}", env!("CARGO_PKG_VERSION"))
}

/// A non-empty string, or `None` (upstream wrote `""` for "not set").
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Checks a capacity quantity against upstream's minimum (in nano-units).
fn quantity(field: &str, value: String, min: Option<(i128, &str)>) -> Result<String, String> {
    let nanos = parse_nanos(&value).map_err(|e| format!("{field} = {value:?}: {e}"))?;
    if let Some((min, shown)) = min
        && nanos < min
    {
        return Err(format!(
            "{field} = {value:?} is less than the minimum {shown}"
        ));
    }
    Ok(value)
}

impl FargateConfig {
    /// Reads and checks a config file.
    /// The error is the toolkit's config error: one line naming the file
    /// and the fault.
    pub fn load(path: &Path) -> Result<FargateConfig, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        FargateConfig::parse(&text).map_err(|message| NodeConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks config text; the error is one line.
    pub fn parse(text: &str) -> Result<FargateConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's messages span several lines (the offending line, a caret):
            // the first and the last say what and where.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if first != last => format!("{first} {last}"),
                (Some(first), _) => first.to_string(),
                _ => "not valid TOML".to_string(),
            }
        })?;
        let region = non_empty(raw.region).ok_or("Region is a required field")?;
        let subnets: Vec<String> = raw
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect();
        if subnets.is_empty() {
            return Err("Subnets is a required field".into());
        }
        let os = non_empty(raw.operating_system).unwrap_or_else(|| "Linux".into());
        if os != "Linux" {
            return Err(format!("Fargate does not support operating system {os:?}"));
        }
        let execution_role_arn = non_empty(raw.execution_role_arn);
        let log_group = non_empty(raw.log_group);
        if log_group.is_some() && execution_role_arn.is_none() {
            return Err("Execution role required if CloudWatch log group is specified".into());
        }
        let capacity_provider = match non_empty(raw.capacity_provider).as_deref() {
            None => CapacityProvider::LaunchType,
            Some("FARGATE") => CapacityProvider::Fargate,
            Some("FARGATE_SPOT") => CapacityProvider::FargateSpot,
            Some(other) => {
                return Err(format!(
                    "CapacityProvider = {other:?}: must be FARGATE or FARGATE_SPOT"
                ));
            }
        };
        let poll_interval = match non_empty(raw.poll_interval) {
            None => Duration::from_secs(10),
            Some(text) => {
                parse_duration(&text).map_err(|e| format!("PollInterval = {text:?}: {e}"))?
            }
        };
        if poll_interval.is_zero() {
            return Err("PollInterval must be more than zero".into());
        }
        let sweep_interval = match non_empty(raw.sweep_interval) {
            None => Duration::from_secs(300),
            Some(text) => {
                parse_duration(&text).map_err(|e| format!("SweepInterval = {text:?}: {e}"))?
            }
        };
        if sweep_interval.is_zero() {
            return Err("SweepInterval must be more than zero".into());
        }
        const NANO: i128 = 1_000_000_000;
        let cpu = quantity(
            "CPU",
            non_empty(raw.cpu).unwrap_or_else(|| "20".into()),
            Some((NANO / 4, "250m")),
        )?;
        let memory = quantity(
            "Memory",
            non_empty(raw.memory).unwrap_or_else(|| "40Gi".into()),
            Some((512 * 1024 * 1024 * NANO, "512Mi")),
        )?;
        let storage = quantity(
            "Storage",
            non_empty(raw.storage).unwrap_or_else(|| "40Gi".into()),
            None,
        )?;
        let pods = quantity(
            "Pods",
            non_empty(raw.pods).unwrap_or_else(|| "20".into()),
            Some((NANO, "1")),
        )?;
        Ok(FargateConfig {
            region,
            cluster_name: non_empty(raw.cluster_name).unwrap_or_else(|| "default".into()),
            subnets,
            security_groups: raw.security_groups.unwrap_or_default(),
            assign_public_ip: raw.assign_public_ip.unwrap_or(false),
            execution_role_arn,
            task_role_arn: non_empty(raw.task_role_arn),
            log_group,
            platform_version: non_empty(raw.platform_version).unwrap_or_else(|| "LATEST".into()),
            capacity_provider,
            poll_interval,
            tags: raw.tags.unwrap_or_default(),
            volume_writer_image: non_empty(raw.volume_writer_image)
                .unwrap_or_else(default_volume_writer_image),
            sweep_interval,
            cpu,
            memory,
            storage,
            pods,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Upstream's example `fargate.toml`, as its users have it.
    const UPSTREAM_EXAMPLE: &str = include_str!("../tests/fixtures/fargate.toml");

    #[test]
    fn upstream_example_is_accepted_unchanged() {
        let c = FargateConfig::parse(UPSTREAM_EXAMPLE).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.cluster_name, "default");
        assert_eq!(c.subnets, ["subnet-12345678"]);
        assert_eq!(c.security_groups, ["sg-12345678"]);
        assert!(!c.assign_public_ip);
        assert_eq!(c.execution_role_arn, None);
        assert_eq!(c.log_group, None);
        assert_eq!(c.platform_version, "LATEST");
        assert_eq!(
            (
                c.cpu.as_str(),
                c.memory.as_str(),
                c.storage.as_str(),
                c.pods.as_str()
            ),
            ("20", "40Gi", "40Gi", "20")
        );
        // Ours, at their defaults.
        assert_eq!(c.capacity_provider, CapacityProvider::LaunchType);
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert!(c.task_role_arn.is_none() && c.tags.is_empty());
        assert_eq!(
            c.volume_writer_image,
            format!("vk-rs/vk-fargate:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(c.sweep_interval, Duration::from_secs(300));
    }

    #[test]
    fn defaults_and_our_fields() {
        let c = FargateConfig::parse(
            r#"
            Region = "eu-west-1"
            Subnets = ["subnet-a", "subnet-b"]
            ExecutionRoleArn = "arn:aws:iam::1:role/exec"
            CloudWatchLogGroupName = "vk"
            TaskRoleArn = "arn:aws:iam::1:role/task"
            CapacityProvider = "FARGATE_SPOT"
            PollInterval = "3s"
            AssignPublicIPv4Address = true
            VolumeWriterImage = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vk-fargate:1"
            SweepInterval = "1m"
            [Tags]
            team = "infra"
            "#,
        )
        .unwrap();
        assert_eq!(c.cluster_name, "default");
        assert_eq!(c.subnets, ["subnet-a", "subnet-b"]);
        assert!(c.security_groups.is_empty());
        assert!(c.assign_public_ip);
        assert_eq!(c.log_group.as_deref(), Some("vk"));
        assert_eq!(c.task_role_arn.as_deref(), Some("arn:aws:iam::1:role/task"));
        assert_eq!(c.capacity_provider, CapacityProvider::FargateSpot);
        assert_eq!(c.capacity_provider.name(), Some("FARGATE_SPOT"));
        assert_eq!(c.poll_interval, Duration::from_secs(3));
        assert_eq!(c.tags["team"], "infra");
        assert_eq!((c.cpu.as_str(), c.pods.as_str()), ("20", "20"));
        assert_eq!(
            c.volume_writer_image,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vk-fargate:1"
        );
        assert_eq!(c.sweep_interval, Duration::from_secs(60));
    }

    #[test]
    fn upstream_validation_and_ours_in_one_line() {
        let base = "Region = \"us-east-1\"\nSubnets = [\"s\"]\n";
        let cases = [
            ("Subnets = [\"s\"]", "Region is a required field"),
            (
                "Region = \"\"\nSubnets = [\"s\"]",
                "Region is a required field",
            ),
            ("Region = \"us-east-1\"", "Subnets is a required field"),
            (
                "Region = \"us-east-1\"\nSubnets = []",
                "Subnets is a required field",
            ),
            (
                &format!("{base}OperatingSystem = \"Windows\""),
                "does not support operating system \"Windows\"",
            ),
            (
                &format!("{base}CloudWatchLogGroupName = \"g\""),
                "Execution role required if CloudWatch log group is specified",
            ),
            (
                &format!("{base}CloudWatchLogGroupName = \"g\"\nExecutionRoleArn = \"\""),
                "Execution role required",
            ),
            (&format!("{base}CPU = \"lots\""), "CPU = \"lots\""),
            (
                &format!("{base}CPU = \"100m\""),
                "CPU = \"100m\" is less than the minimum 250m",
            ),
            (
                &format!("{base}Memory = \"256Mi\""),
                "less than the minimum 512Mi",
            ),
            (&format!("{base}Pods = \"0\""), "less than the minimum 1"),
            (
                &format!("{base}CapacityProvider = \"EC2\""),
                "must be FARGATE or FARGATE_SPOT",
            ),
            (&format!("{base}PollInterval = \"soon\""), "PollInterval"),
            (&format!("{base}PollInterval = \"0s\""), "more than zero"),
            (&format!("{base}SweepInterval = \"0s\""), "more than zero"),
            (&format!("{base}SweepInterval = \"later\""), "SweepInterval"),
            (&format!("{base}Regoin = \"x\""), "unknown field `Regoin`"),
            (&format!("{base}Subnets = \"s\""), "duplicate key"),
            ("Region = ", "TOML"),
            (
                &format!("{base}AssignPublicIPv4Address = \"yes\""),
                "invalid type",
            ),
        ];
        for (text, want) in cases {
            let err = FargateConfig::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{text:?}: {err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fargate.toml");
        let missing = FargateConfig::load(&path).unwrap_err().to_string();
        assert!(missing.contains("cannot read") && missing.contains("fargate.toml"));
        std::fs::write(&path, "Subnets = [\"s\"]").unwrap();
        let invalid = FargateConfig::load(&path).unwrap_err().to_string();
        assert!(
            invalid.starts_with("invalid provider config ")
                && invalid.contains("fargate.toml")
                && invalid.ends_with("Region is a required field"),
            "{invalid}"
        );
        std::fs::write(&path, UPSTREAM_EXAMPLE).unwrap();
        assert_eq!(FargateConfig::load(&path).unwrap().region, "us-east-1");
    }
}
