//! A pod's volumes → the task's volumes, the volume writer container and
//! each container's mount points. Pure; [`crate::task`] puts them in the
//! task definition, [`crate::volume_files`] is what the writer does.
//!
//! - emptyDir: a task volume (a bind mount on the task's ephemeral
//!   storage) shared by the containers.
//! - configMap, secret, downwardAPI, projected (the service-account token's
//!   `kube-api-access-*` volume included): task volumes too, which the
//!   writer container ([`WRITER_CONTAINER`]) fills before any other starts;
//!   the pod's containers mount them read-only, as the kubelet does.
//! - Without an execution role, ECS cannot read the pod's secret, so no file
//!   can be handed over: the token volume is left out (the pod runs without
//!   it, with an event), any other volume with files is refused.
//! - Every other volume kind, and `subPath` mounts (ECS mounts whole
//!   volumes), are refused with a sentence saying why.

use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, MountPoint, Volume};
use k8s_openapi::api::core::v1::{Container, PodSpec, Volume as PodVolume};

use crate::config::FargateConfig;
use crate::volume_files::{SUBCOMMAND, WRITER_CONTAINER, WRITER_ROOT};

/// The volume the API server adds to every pod for its service-account token.
const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

/// The path of the binary in the provider's image (FROM scratch).
const WRITER_BINARY: &str = "/vk-fargate";

/// ECS's smallest `memoryReservation`, in MiB: the writer's (the stand-in
/// needs one on every container).
const WRITER_MIB: i32 = 6;

/// What a pod's volumes become.
#[derive(Clone, Debug, Default)]
pub struct TaskVolumes {
    /// The task's volumes (bind mounts), in the pod's order.
    pub volumes: Vec<Volume>,
    /// The volumes whose files the writer writes.
    pub with_files: Vec<String>,
    /// Volumes left out (not mounted anywhere), with why.
    pub skipped: Vec<(String, String)>,
}

/// Whether the core materialises the volume's files.
fn has_files(v: &PodVolume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The kind of a volume Fargate cannot honour, as the API spells it.
fn volume_kind(v: &PodVolume) -> &'static str {
    let kinds: [(bool, &'static str); 9] = [
        (v.host_path.is_some(), "hostPath"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.nfs.is_some(), "nfs"),
        (v.csi.is_some(), "csi"),
        (v.image.is_some(), "image"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.iscsi.is_some(), "iscsi"),
    ];
    kinds
        .iter()
        .find(|(set, _)| *set)
        .map_or("such", |(_, kind)| kind)
}

/// The task volumes of `spec` (see the module doc); the error is a sentence.
pub fn task_volumes(spec: &PodSpec, config: &FargateConfig) -> Result<TaskVolumes, String> {
    let mut out = TaskVolumes::default();
    for v in spec.volumes.iter().flatten() {
        if v.projected.is_some()
            && v.name.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX)
            && config.execution_role_arn.is_none()
        {
            // Nearly every pod has one: without an execution role (upstream's
            // example config) the pod runs without its token rather than not at all.
            out.skipped.push((
                v.name.clone(),
                format!(
                    "the service-account token volume {:?} is not mounted: volume files go through Secrets Manager, which needs ExecutionRoleArn in the provider config",
                    v.name
                ),
            ));
            continue;
        }
        if has_files(v) {
            out.with_files.push(v.name.clone());
        } else if v.empty_dir.is_none() {
            return Err(format!(
                "volume {:?} cannot be honoured on Fargate: {} volumes are not supported (only emptyDir, configMap, secret, downwardAPI and projected)",
                v.name,
                volume_kind(v)
            ));
        }
        out.volumes.push(Volume::builder().name(&v.name).build());
    }
    Ok(out)
}

impl TaskVolumes {
    /// Container `c`'s mount points; the error is a sentence.
    pub fn mount_points(&self, c: &Container) -> Result<Vec<MountPoint>, String> {
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            if self.skipped.iter().any(|(name, _)| *name == m.name) {
                continue;
            }
            if !self
                .volumes
                .iter()
                .any(|v| v.name() == Some(m.name.as_str()))
            {
                return Err(format!(
                    "container {:?} mounts unknown volume {:?}",
                    c.name, m.name
                ));
            }
            if m.sub_path.as_deref().is_some_and(|p| !p.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|p| !p.is_empty())
            {
                return Err(format!(
                    "container {:?} mounts volume {:?} with a subPath: ECS mounts whole volumes only",
                    c.name, m.name
                ));
            }
            // Files from the API are read-only, as the kubelet mounts them.
            let read_only = self.with_files.contains(&m.name) || m.read_only.unwrap_or(false);
            mounts.push(
                MountPoint::builder()
                    .source_volume(&m.name)
                    .container_path(&m.mount_path)
                    .read_only(read_only)
                    .build(),
            );
        }
        Ok(mounts)
    }

    /// The writer container, when there are files to write: `vk-fargate
    /// write-volumes` from the provider's image, non-essential, as root (a
    /// bind-mount volume belongs to root), each volume at
    /// `/vk-volumes/<name>`; the caller adds its manifest as an ECS secret
    /// ([`crate::volume_files::MANIFEST_ENV`]).
    pub fn writer(
        &self,
        config: &FargateConfig,
        logs: Option<LogConfiguration>,
    ) -> Option<ContainerDefinition> {
        if self.with_files.is_empty() {
            return None;
        }
        let mounts = self
            .with_files
            .iter()
            .map(|v| {
                MountPoint::builder()
                    .source_volume(v)
                    .container_path(format!("{WRITER_ROOT}/{v}"))
                    .read_only(false)
                    .build()
            })
            .collect();
        Some(
            ContainerDefinition::builder()
                .name(WRITER_CONTAINER)
                .image(&config.volume_writer_image)
                .essential(false)
                .user("0")
                .entry_point(WRITER_BINARY)
                .command(SUBCOMMAND)
                .command("--root")
                .command(WRITER_ROOT)
                .set_mount_points(Some(mounts))
                .memory_reservation(WRITER_MIB)
                .set_log_configuration(logs)
                .build(),
        )
    }
}
