//! A pod → its ECS task definition and `RunTask` input. Pure: no AWS call;
//! the provider sends what [`TaskPlan`] holds.
//!
//! - Containers: `command` → `entryPoint`, `args` → `command`, `workingDir`,
//!   ports, env. Env values that came from Secrets never go to
//!   `environment`: they go to ECS `secrets`, each a JSON key of one Secrets
//!   Manager secret per pod ([`TaskPlan::secret_values`]), created before
//!   `RunTask`, so a task definition never holds them.
//! - Init containers are non-essential and run in order (`dependsOn`
//!   SUCCESS on the one before); sidecars (init containers with
//!   `restartPolicy: Always`) are non-essential and `dependsOn` START; app
//!   containers wait for both.
//! - The task's CPU and memory are the smallest valid Fargate size that
//!   holds the pod's totals ([`crate::task_size`]); each container reserves
//!   its memory request (`memoryReservation`, which the stand-in needs too)
//!   and is capped by its memory limit.
//! - Network: awsvpc with the config's subnets, security groups and public
//!   IP, each overridable per pod by annotation ([`ANNOTATION_SUBNETS`]...).
//! - Identity: tags carry node, namespace, name and UID
//!   ([`vk_core::toolkit::pod_identity`]); `startedBy` carries the UID, the
//!   `clientToken` is the UID.
//! - Logs: `awslogs` to the configured group, the stream prefix naming the pod.
//! - Stopping: each container's `stopTimeout` is the pod's
//!   `terminationGracePeriodSeconds` (30 s when unset), at most Fargate's
//!   120 s: the time between SIGTERM and SIGKILL when the task is stopped.
//! - Pull secrets: the credential of each container's registry
//!   ([`RegistryCredential::for_image`]) goes into the pod's secret as its
//!   `username` and `password` keys, which is the shape ECS
//!   `repositoryCredentials` reads; the container points at the secret. One
//!   secret per pod holds one credential, so a pod whose containers need two
//!   different ones is refused.
//! - Restarts: the pod's `restartPolicy` and its Fargate annotations are
//!   task tags too, so a replacement task ([`crate::restart`]) is placed as
//!   the first was, even by a vk-fargate that never saw the pod.
//! - Volumes ([`crate::task_volumes`]): emptyDir is a task volume shared by
//!   the containers; configMap, secret, downwardAPI and projected volumes
//!   (the service-account token's included) are task volumes too, filled
//!   before any other container starts (`dependsOn` SUCCESS) by the first
//!   container, [`WRITER_CONTAINER`], from the provider's own image, its
//!   input one key of the pod's secret ([`crate::volume_files`]). The pod's
//!   secret holds at most [`SECRET_MAX_BYTES`].
//!
//! What cannot be honoured is a [`ProviderError::InvalidInput`] with a sentence
//! saying why.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerCondition, ContainerDefinition,
    ContainerDependency, KeyValuePair, LogConfiguration, LogDriver, NetworkConfiguration,
    PortMapping, RepositoryCredentials, Secret, Tag, TransportProtocol, Volume,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use vk_core::provider::{ProviderError, ProviderResult, ResolvedPod};
use vk_core::quantity::{divide_ceil, quantity_nanos};
use vk_core::registry::RegistryCredential;
use vk_core::toolkit::pod_identity::{NameRules, PodIdentity};
use vk_core::toolkit::pod_resources::pod_resources;
use vk_core::toolkit::restart::{is_sidecar, restart_policy};

use crate::config::{CapacityProvider, FargateConfig};
use crate::restart::TAG_RESTART_POLICY;
use crate::task_size::TaskSize;
use crate::task_volumes::{TaskVolumes, task_volumes};
use crate::volume_files::{MANIFEST_ENV, MANIFEST_KEY, VolumeManifest, WRITER_CONTAINER};

/// Annotation: comma-separated subnets for this pod's task.
pub const ANNOTATION_SUBNETS: &str = "fargate.vk-rs.io/subnets";
/// Annotation: comma-separated security groups for this pod's task.
pub const ANNOTATION_SECURITY_GROUPS: &str = "fargate.vk-rs.io/security-groups";
/// Annotation: `true` or `false`, a public IPv4 address for this pod's task.
pub const ANNOTATION_PUBLIC_IP: &str = "fargate.vk-rs.io/assign-public-ip";
/// Annotation: `FARGATE` or `FARGATE_SPOT` for this pod's task.
pub const ANNOTATION_CAPACITY_PROVIDER: &str = "fargate.vk-rs.io/capacity-provider";

/// The prefix of `startedBy`: the pod's UID follows.
pub const STARTED_BY_PREFIX: &str = "vk-rs/";

/// The most a Secrets Manager secret holds (`SecretString`), in bytes.
pub const SECRET_MAX_BYTES: usize = 65_536;

/// Every annotation that places a pod's task, kept as task tags.
pub const PLACEMENT_ANNOTATIONS: [&str; 4] = [
    ANNOTATION_SUBNETS,
    ANNOTATION_SECURITY_GROUPS,
    ANNOTATION_PUBLIC_IP,
    ANNOTATION_CAPACITY_PROVIDER,
];

/// Fargate's longest `stopTimeout`, in seconds.
pub const MAX_STOP_TIMEOUT: i64 = 120;

/// The grace period when the pod sets none (the API's default).
const DEFAULT_GRACE: i64 = 30;

/// The keys of the pull credential in the pod's secret, as ECS
/// `repositoryCredentials` reads them.
const PULL_USERNAME: &str = "username";
const PULL_PASSWORD: &str = "password";

/// ECS's smallest `memoryReservation`, in MiB.
const MIN_CONTAINER_MIB: i32 = 6;

const MIB: i128 = 1024 * 1024;
const NANO: i128 = 1_000_000_000;

/// What the provider needs to turn a pod into a task.
#[derive(Clone, Copy, Debug)]
pub struct TaskSettings<'a> {
    /// The node the pod is bound to.
    pub node: &'a str,
    /// The provider config.
    pub config: &'a FargateConfig,
}

/// One container of the task, with its secrets still to point at the pod's secret.
#[derive(Clone, Debug)]
struct PlannedContainer {
    definition: ContainerDefinition,
    /// (env name, JSON key in the pod's secret).
    secrets: Vec<(String, String)>,
    /// Its image is pulled with the pod's pull credential.
    pull: bool,
}

/// Everything the provider sends for one pod.
#[derive(Clone, Debug)]
pub struct TaskPlan {
    /// Task definition family: the pod's backend name (unique per UID).
    pub family: String,
    /// The task's size.
    pub size: TaskSize,
    /// Task volumes: emptyDir and the volumes with files.
    pub volumes: Vec<Volume>,
    /// awsvpc subnets, security groups and public IP.
    pub network: NetworkConfiguration,
    /// Launch type or capacity provider.
    pub capacity: CapacityProvider,
    /// Tags of the task, its definition and its secret.
    pub tags: Vec<Tag>,
    /// `startedBy` of `RunTask`: finds the pod's task again.
    pub started_by: String,
    /// `clientToken` of `RunTask`.
    pub client_token: String,
    /// Name of the pod's Secrets Manager secret.
    pub secret_name: String,
    /// The Secret-backed env values by JSON key: the pod's secret's content.
    /// Empty when the pod has none.
    pub secret_values: BTreeMap<String, String>,
    /// The registry credential of the pod's images, when one applies.
    pub pull_credential: Option<RegistryCredential>,
    /// Volumes left out, with why (the pod's event says so).
    pub skipped_volumes: Vec<String>,
    containers: Vec<PlannedContainer>,
}

impl TaskPlan {
    /// The container definitions, their `secrets` pointing at JSON keys of
    /// the secret `secret_arn` (`None` only when there are no secret values).
    pub fn container_definitions(&self, secret_arn: Option<&str>) -> Vec<ContainerDefinition> {
        self.containers
            .iter()
            .map(|c| {
                let mut d = c.definition.clone();
                if let Some(arn) = secret_arn
                    && c.pull
                {
                    d.repository_credentials = RepositoryCredentials::builder()
                        .credentials_parameter(arn)
                        .build()
                        .ok();
                }
                if let Some(arn) = secret_arn
                    && !c.secrets.is_empty()
                {
                    d.secrets = Some(
                        c.secrets
                            .iter()
                            .filter_map(|(name, key)| {
                                Secret::builder()
                                    .name(name)
                                    .value_from(format!("{arn}:{key}::"))
                                    .build()
                                    .ok()
                            })
                            .collect(),
                    );
                }
                d
            })
            .collect()
    }

    /// Whether the pod needs its secret (env values from Secrets, volume
    /// files, a pull credential).
    pub fn needs_secret(&self) -> bool {
        !self.secret_values.is_empty() || self.pull_credential.is_some()
    }

    /// The content of the pod's secret: the Secret-backed env values, the
    /// volume files' manifest, and the pull credential as `username` and
    /// `password`.
    pub fn secret_body(&self) -> BTreeMap<String, String> {
        secret_body(&self.secret_values, self.pull_credential.as_ref())
    }

    /// The awslogs stream of container `container` of task `task_id` (the
    /// last part of the task ARN), as ECS names it.
    pub fn log_stream(family: &str, container: &str, task_id: &str) -> String {
        format!("{family}/{container}/{task_id}")
    }
}

fn invalid(key: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::InvalidInput(format!("pod {key}: {message}"))
}

/// The key of a Secret-backed env value in the pod's secret: `<container>.<NAME>`
/// (by index when the name has a `:`, which `valueFrom` uses as separator).
fn secret_key(container: &str, index: usize, name: &str) -> String {
    if name.contains(':') {
        format!("{container}.#{index}")
    } else {
        format!("{container}.{name}")
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// A list annotation (`a,b`), or its tag (`a b`: ECS tags have no commas).
fn list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// MiB of a container's memory request or limit, rounded up.
fn container_mib(c: &Container, limit: bool) -> Result<Option<i128>, String> {
    let list = c.resources.as_ref().and_then(|r| {
        if limit {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }
    });
    let Some(q) = list.and_then(|l| l.get("memory")) else {
        return Ok(None);
    };
    let nanos = quantity_nanos(q).map_err(|e| format!("container {:?} memory: {e}", c.name))?;
    Ok(Some(divide_ceil(nanos.max(0), NANO * MIB).unwrap_or(0)))
}

/// Turns `resolved` into its task. See the module doc.
pub fn plan_task(resolved: &ResolvedPod, settings: TaskSettings<'_>) -> ProviderResult<TaskPlan> {
    let pod = &resolved.pod;
    let key = resolved
        .key()
        .ok_or_else(|| ProviderError::InvalidInput("pod without namespace, name or UID".into()))?;
    let shown = format!("{}/{}", key.namespace, key.name);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid(&shown, "the pod has no spec"))?;
    let identity = PodIdentity::new(settings.node, &key);
    let family = identity.backend_name(&NameRules::ECS_TASK_FAMILY);
    let config = settings.config;

    let totals = pod_resources(spec).map_err(|e| invalid(&shown, e))?;
    let size = TaskSize::for_pod(&totals.sizing).map_err(|e| invalid(&shown, e))?;

    let planned = task_volumes(spec, config).map_err(|e| invalid(&shown, e))?;

    let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
    let apps: Vec<&Container> = spec.containers.iter().collect();
    let log_prefix = family.clone();
    let mut secret_values = BTreeMap::new();
    let mut containers = Vec::new();
    // The writer first: every other container waits for its files.
    let writer = match planned.writer(config, log_configuration(config, &log_prefix)?) {
        None => None,
        Some(definition) => {
            let names: Vec<&str> = planned.with_files.iter().map(String::as_str).collect();
            let manifest = VolumeManifest::of(
                &names,
                &resolved.volumes,
                spec.security_context.as_ref().and_then(|s| s.fs_group),
            );
            secret_values.insert(
                MANIFEST_KEY.to_string(),
                manifest.to_json().map_err(|e| invalid(&shown, e))?,
            );
            containers.push(PlannedContainer {
                definition,
                secrets: vec![(MANIFEST_ENV.to_string(), MANIFEST_KEY.to_string())],
                pull: false,
            });
            Some(WRITER_CONTAINER)
        }
    };
    // Dependencies so far: the last init container (SUCCESS) and every sidecar (START).
    let mut last_init: Option<&str> = None;
    let mut sidecars: Vec<&str> = Vec::new();
    let dependencies = |last_init: Option<&str>, sidecars: &[&str]| -> ProviderResult<_> {
        let mut deps = Vec::new();
        if let Some(w) = writer {
            deps.push((w.to_string(), ContainerCondition::Success));
        }
        if let Some(init) = last_init {
            deps.push((init.to_string(), ContainerCondition::Success));
        }
        deps.extend(
            sidecars
                .iter()
                .map(|s| (s.to_string(), ContainerCondition::Start)),
        );
        deps.into_iter()
            .map(|(name, condition)| {
                ContainerDependency::builder()
                    .container_name(name)
                    .condition(condition)
                    .build()
                    .map_err(|e| ProviderError::InvalidInput(e.to_string()))
            })
            .collect::<ProviderResult<Vec<_>>>()
    };
    let roles = inits
        .iter()
        .map(|c| {
            (
                *c,
                if is_sidecar(c) {
                    Role::Sidecar
                } else {
                    Role::Init
                },
            )
        })
        .chain(apps.iter().map(|c| (*c, Role::App)));
    for (c, role) in roles {
        let depends_on = dependencies(last_init, &sidecars)?;
        let mut d = container_definition(c, role, &shown, &planned)?;
        d.depends_on = (!depends_on.is_empty()).then_some(depends_on);
        d.log_configuration = log_configuration(config, &log_prefix)?;
        let mut environment = Vec::new();
        let mut secrets = Vec::new();
        for (i, e) in c.env.iter().flatten().enumerate() {
            let value = e.value.clone().unwrap_or_default();
            if resolved.is_secret_env(&c.name, &e.name) {
                let k = secret_key(&c.name, i, &e.name);
                secret_values.insert(k.clone(), value);
                secrets.push((e.name.clone(), k));
            } else {
                environment.push(KeyValuePair::builder().name(&e.name).value(value).build());
            }
        }
        d.environment = (!environment.is_empty()).then_some(environment);
        containers.push(PlannedContainer {
            definition: d,
            secrets,
            pull: false,
        });
        match role {
            Role::Init => last_init = Some(&c.name),
            Role::Sidecar => sidecars.push(&c.name),
            Role::App => {}
        }
    }
    // The writer's small reservation comes off the task's memory first: the
    // pod's containers share the rest.
    let (writers, pods_own) = containers.split_at_mut(usize::from(writer.is_some()));
    let writer_mib: i32 = writers
        .iter()
        .filter_map(|c| c.definition.memory_reservation)
        .sum();
    fit_reservations(
        pods_own,
        size.memory_mib
            .saturating_sub(u32::try_from(writer_mib).unwrap_or(0)),
    );
    let grace = spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE)
        .clamp(0, MAX_STOP_TIMEOUT);
    for c in &mut containers {
        c.definition.stop_timeout = i32::try_from(grace).ok();
    }

    let Placement { network, capacity } = placement(pod, config, &shown)?;
    let pull_credential = pull_credential(resolved, &mut containers, &shown)?;
    check_secret_size(&secret_values, pull_credential.as_ref(), &shown)?;

    let labels: BTreeMap<String, String> = identity.labels();
    let placed = PLACEMENT_ANNOTATIONS
        .iter()
        .filter_map(|a| annotation(pod, a).map(|v| (a.to_string(), list(v).join(" "))));
    let tags = config
        .tags
        .clone()
        .into_iter()
        .chain(labels)
        .chain(placed)
        .chain([(
            TAG_RESTART_POLICY.to_string(),
            restart_policy(pod).to_string(),
        )])
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    Ok(TaskPlan {
        secret_name: format!("vk-rs/{family}"),
        family,
        size,
        volumes: planned.volumes,
        network,
        capacity,
        tags,
        started_by: format!("{STARTED_BY_PREFIX}{}", key.uid),
        client_token: key.uid.clone(),
        secret_values,
        pull_credential,
        skipped_volumes: planned.skipped.into_iter().map(|(_, why)| why).collect(),
        containers,
    })
}

/// The `awslogs` configuration of a container, when the config names a log group.
fn log_configuration(
    config: &FargateConfig,
    prefix: &str,
) -> ProviderResult<Option<LogConfiguration>> {
    let Some(group) = &config.log_group else {
        return Ok(None);
    };
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", group)
        .options("awslogs-region", &config.region)
        .options("awslogs-stream-prefix", prefix)
        .build()
        .map(Some)
        .map_err(|e| ProviderError::InvalidInput(e.to_string()))
}

/// See [`TaskPlan::secret_body`].
fn secret_body(
    values: &BTreeMap<String, String>,
    pull: Option<&RegistryCredential>,
) -> BTreeMap<String, String> {
    let mut body = values.clone();
    if let Some(c) = pull {
        body.insert(PULL_USERNAME.into(), c.username.clone());
        body.insert(PULL_PASSWORD.into(), c.password.clone());
    }
    body
}

/// Refuses a pod whose secret would not fit in a Secrets Manager secret.
fn check_secret_size(
    values: &BTreeMap<String, String>,
    pull: Option<&RegistryCredential>,
    shown: &str,
) -> ProviderResult<()> {
    let size = serde_json::to_string(&secret_body(values, pull))
        .map_err(|e| invalid(shown, format!("its secret: {e}")))?
        .len();
    if size > SECRET_MAX_BYTES {
        return Err(invalid(
            shown,
            format!(
                "its volume files, Secret-backed env values and pull credential take {size} bytes in its Secrets Manager secret (volume files base64-encoded), more than the {SECRET_MAX_BYTES} a secret holds"
            ),
        ));
    }
    Ok(())
}

/// Where a pod's task runs.
#[derive(Clone, Debug)]
pub struct Placement {
    /// awsvpc subnets, security groups and public IP.
    pub network: NetworkConfiguration,
    /// Launch type or capacity provider.
    pub capacity: CapacityProvider,
}

/// The placement of `pod`'s task: the config's, overridden by the pod's
/// annotations ([`PLACEMENT_ANNOTATIONS`]; `shown` names the pod in errors).
pub fn placement(pod: &Pod, config: &FargateConfig, shown: &str) -> ProviderResult<Placement> {
    let subnets = annotation(pod, ANNOTATION_SUBNETS)
        .map(list)
        .unwrap_or_else(|| config.subnets.clone());
    let security_groups = annotation(pod, ANNOTATION_SECURITY_GROUPS)
        .map(list)
        .unwrap_or_else(|| config.security_groups.clone());
    let public_ip = match annotation(pod, ANNOTATION_PUBLIC_IP) {
        None => config.assign_public_ip,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(invalid(
                shown,
                format!("annotation {ANNOTATION_PUBLIC_IP} is {other:?}: must be true or false"),
            ));
        }
    };
    let capacity = match annotation(pod, ANNOTATION_CAPACITY_PROVIDER) {
        None => config.capacity_provider,
        Some("FARGATE") => CapacityProvider::Fargate,
        Some("FARGATE_SPOT") => CapacityProvider::FargateSpot,
        Some(other) => {
            return Err(invalid(
                shown,
                format!(
                    "annotation {ANNOTATION_CAPACITY_PROVIDER} is {other:?}: must be FARGATE or FARGATE_SPOT"
                ),
            ));
        }
    };
    if subnets.is_empty() {
        return Err(invalid(shown, "no subnet for its task"));
    }
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(subnets))
        .set_security_groups(Some(security_groups))
        .assign_public_ip(if public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| invalid(shown, e))?;
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build();
    Ok(Placement { network, capacity })
}

/// The pod's pull credential: the one matching each container's image
/// (marking the container), which must be the same for all of them.
fn pull_credential(
    resolved: &ResolvedPod,
    containers: &mut [PlannedContainer],
    shown: &str,
) -> ProviderResult<Option<RegistryCredential>> {
    let mut chosen: Option<&RegistryCredential> = None;
    for c in containers {
        if c.definition.name() == Some(WRITER_CONTAINER) {
            continue;
        }
        let image = c.definition.image().unwrap_or_default();
        let Some(cred) = RegistryCredential::for_image(&resolved.pull_credentials, image) else {
            continue;
        };
        if chosen.is_some_and(|k| k != cred) {
            return Err(invalid(
                shown,
                "its images need two different pull credentials: vk-fargate keeps one per pod",
            ));
        }
        chosen = Some(cred);
        c.pull = true;
    }
    Ok(chosen.cloned())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Init,
    Sidecar,
    App,
}

/// One container's definition, without env, dependencies and logs.
fn container_definition(
    c: &Container,
    role: Role,
    pod: &str,
    volumes: &TaskVolumes,
) -> ProviderResult<ContainerDefinition> {
    let image = c
        .image
        .as_deref()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid(pod, format!("container {:?} has no image", c.name)))?;
    let mut ports = Vec::new();
    for p in c.ports.iter().flatten() {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => TransportProtocol::Tcp,
            Some("UDP") => TransportProtocol::Udp,
            Some(other) => {
                return Err(invalid(
                    pod,
                    format!("container {:?}: Fargate has no {other} ports", c.name),
                ));
            }
        };
        if p.host_port.is_some_and(|h| h != p.container_port) {
            return Err(invalid(
                pod,
                format!(
                    "container {:?}: on Fargate a hostPort must equal its containerPort",
                    c.name
                ),
            ));
        }
        ports.push(
            PortMapping::builder()
                .container_port(p.container_port)
                .protocol(protocol)
                .build(),
        );
    }
    let mounts = volumes.mount_points(c).map_err(|e| invalid(pod, e))?;
    let limit = container_mib(c, true).map_err(|e| invalid(pod, e))?;
    let request = container_mib(c, false).map_err(|e| invalid(pod, e))?;
    let to_i32 = |v: i128| i32::try_from(v).unwrap_or(i32::MAX);
    let reservation = request
        .or(limit)
        .map_or(MIN_CONTAINER_MIB, |v| to_i32(v).max(MIN_CONTAINER_MIB));
    Ok(ContainerDefinition::builder()
        .name(&c.name)
        .image(image)
        .essential(role == Role::App)
        .set_entry_point(c.command.clone().filter(|v| !v.is_empty()))
        .set_command(c.args.clone().filter(|v| !v.is_empty()))
        .set_working_directory(c.working_dir.clone().filter(|w| !w.is_empty()))
        .set_port_mappings((!ports.is_empty()).then_some(ports))
        .set_mount_points((!mounts.is_empty()).then_some(mounts))
        .set_memory(limit.map(|v| to_i32(v).max(MIN_CONTAINER_MIB)))
        .memory_reservation(reservation)
        .build())
}

/// Keeps the containers' reservations within the task's memory (ECS
/// refuses more): when they add up to more (init containers run alone, so
/// their requests do not add up in the pod's size), each gets an equal share.
fn fit_reservations(containers: &mut [PlannedContainer], task_mib: u32) {
    let task_mib = i32::try_from(task_mib).unwrap_or(i32::MAX);
    let total: i64 = containers
        .iter()
        .map(|c| i64::from(c.definition.memory_reservation.unwrap_or(0)))
        .sum();
    if total <= i64::from(task_mib) || containers.is_empty() {
        return;
    }
    let n = i32::try_from(containers.len()).unwrap_or(i32::MAX);
    let share = (task_mib / n).max(MIN_CONTAINER_MIB);
    for c in containers {
        let d = &mut c.definition;
        let reservation = d.memory_reservation.unwrap_or(share).min(share);
        d.memory_reservation = Some(reservation);
        // A hard limit below its reservation is refused too.
        if let Some(m) = d.memory {
            d.memory = Some(m.max(reservation));
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
