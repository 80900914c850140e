//! A pod → the container group that runs it. Pure: no client, no clock.
//!
//! What a pod asks for that ACI cannot do is never dropped silently. The
//! rule:
//! - what the workload needs to work and ACI cannot give (the host's
//!   network, PID or IPC namespace, a hostPort other than the container
//!   port, block devices, resource claims, a Windows host process) is
//!   refused with [`ProviderError::InvalidInput`] and a sentence saying
//!   what and why (the core fails the pod with `ProviderFailed`); so is a
//!   setting whose only purpose is to stop a pod from running and that ACI
//!   cannot check (`runAsNonRoot` without a `runAsUser`);
//! - what ACI runs differently (startup and tcpSocket probes, lifecycle
//!   hooks, `workingDir`, host aliases, hardening ACI cannot apply such as
//!   `readOnlyRootFilesystem` or seccomp/AppArmor/SELinux profiles) becomes a
//!   [`Note`] the provider records as a Warning event on the pod;
//! - the rest maps (see [`security`] for the security context).
//!
//! Choices worth knowing:
//! - **Sidecars** (init containers with `restartPolicy: Always`): ACI has no
//!   sidecar ordering, and its init containers must end. A sidecar runs as
//!   a regular container of the group (started with the app containers,
//!   after the other init containers), said in a `SidecarRunsAsContainer`
//!   event; the group's [`TAG_SIDECARS`] tag names them so that their status
//!   is reported among the init containers' and the pod's phase follows
//!   its app containers only.
//! - **argv** is the container's `command` followed by its `args`, as one
//!   exec-form array. ACI replaces the image's entrypoint with it, so `args`
//!   without `command` cannot be expressed and is refused.
//! - **Resources** (`resources.rs`): ACI sizes a group as the sum of its
//!   containers' requests and refuses a limit above that sum (azure-aci#149).
//!   The group is made big enough for the largest limit and for the largest
//!   init container. CPU goes in 0.01-core steps, memory in 0.1 GB steps
//!   (decimal GB, as upstream), always rounded up. A container without
//!   requests gets upstream's 1 core and 1.5 GB.
//! - **Secrets** never travel as plain values: env from Secrets is
//!   `secureValue`; configMap, secret, downwardAPI and projected volumes
//!   (service-account tokens included) are ACI `secret` volumes, base64;
//!   an azureFile volume's storage key, read from its Secret, goes only in
//!   the group's `storageAccountKey` (ARM never returns it) (`volumes.rs`).

mod annotations;
mod container;
mod dns;
mod probes;
mod resources;
pub mod security;
mod unsupported;
mod volumes;

use vk_core::toolkit::pod_identity::{NameRules, PodIdentity};
use vk_core::toolkit::restart::{is_sidecar, restart_policy};
use vk_core::{ProviderError, ProviderResult, ResolvedPod};

use k8s_openapi::api::core::v1::PodSpec;

use crate::models::{ContainerGroup, ContainerGroupProperties, IpAddress, Port, SubnetId};

/// The group tag naming the containers that are the pod's sidecars
/// (comma-separated), so that their status goes back among the init
/// containers' and they do not keep the pod's phase from ending.
pub const TAG_SIDECARS: &str = "io.vk-rs.sidecars";

/// What a sidecar becomes: one note per sidecar saying how it runs.
fn sidecar_notes(spec: &PodSpec) -> Vec<Note> {
    let inits: Vec<_> = spec.init_containers.iter().flatten().collect();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    inits
        .iter()
        .enumerate()
        .filter(|(_, c)| is_sidecar(c))
        .map(|(i, c)| {
            let mut message = format!(
                "init container {:?} is a sidecar (restartPolicy: Always); ACI has no sidecars: it runs as a regular container of the group, started together with the app containers after the init containers, not before them",
                c.name
            );
            let later: Vec<&str> = inits[i + 1..]
                .iter()
                .filter(|l| !is_sidecar(l))
                .map(|l| l.name.as_str())
                .collect();
            if !later.is_empty() {
                message.push_str(&format!(
                    "; init containers {later:?} listed after it run without it"
                ));
            }
            if policy != "Always" {
                message.push_str(&format!(
                    "; it restarts per the pod's restartPolicy ({policy}), not always, and keeps the group running after the app containers end until the pod is deleted"
                ));
            }
            Note {
                reason: "SidecarRunsAsContainer",
                message,
            }
        })
        .collect()
}

pub use volumes::{
    AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_ACCOUNT_NAME, AzureFileSecrets,
    azure_file_secret_names,
};

pub use annotations::{
    ANNOTATION_CCE_POLICY, ANNOTATION_GPU_SKU, ANNOTATION_IDENTITY, ANNOTATION_PRIORITY,
    ANNOTATION_SKU,
};

/// Where the groups of this node go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// The node's name (a tag on every group).
    pub node: String,
    /// Azure region.
    pub region: String,
    /// Subnet ARM id of VNet injection.
    pub subnet_id: Option<String>,
    /// The cluster DNS service's IPs: the nameservers of ClusterFirst pods.
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

/// Something of the pod ACI runs differently: the provider records it as a
/// Warning event on the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The event reason.
    pub reason: &'static str,
    /// The event message.
    pub message: String,
}

/// The group for a pod, its name and what the pod loses on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// The group's name (≤ 63 characters, unique per pod UID).
    pub name: String,
    /// The request body.
    pub group: ContainerGroup,
    /// What ACI cannot express.
    pub notes: Vec<Note>,
}

fn invalid(message: String) -> ProviderError {
    ProviderError::InvalidInput(message)
}

/// The group name of a pod (see `vk_core::toolkit::pod_identity`).
pub fn group_name(namespace: &str, name: &str, uid: &str) -> String {
    vk_core::toolkit::pod_identity::backend_name(
        namespace,
        name,
        uid,
        &NameRules::ACI_CONTAINER_GROUP,
    )
}

/// Translates a resolved pod that has no azureFile volume (see the module
/// doc and [`container_group_with`]).
pub fn container_group(pod: &ResolvedPod, settings: &GroupSettings) -> ProviderResult<Translation> {
    container_group_with(pod, settings, &AzureFileSecrets::new())
}

/// Translates a resolved pod, with the Secrets its azureFile volumes name
/// (see [`azure_file_secret_names`]): one missing, or without the account's
/// name or key, refuses the pod.
pub fn container_group_with(
    pod: &ResolvedPod,
    settings: &GroupSettings,
    azure_files: &AzureFileSecrets,
) -> ProviderResult<Translation> {
    let key = pod
        .key()
        .ok_or_else(|| invalid("the pod has no namespace, name or UID".into()))?;
    let spec = pod
        .pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("the pod has no spec".into()))?;
    let annotations = pod.pod.metadata.annotations.clone().unwrap_or_default();
    let options = annotations::group_options(&annotations)?;
    let identity = PodIdentity::new(&settings.node, &key);
    let mut notes = unsupported::pod_notes(spec)?;

    let (sidecars, inits): (Vec<_>, Vec<_>) = spec
        .init_containers
        .iter()
        .flatten()
        .partition(|c| is_sidecar(c));
    let mut containers = spec
        .containers
        .iter()
        .chain(sidecars.iter().copied())
        .map(|c| container::app_container(pod, c, options.gpu_sku.as_deref(), &mut notes))
        .collect::<ProviderResult<Vec<_>>>()?;
    notes.extend(sidecar_notes(spec));
    let init_containers = inits
        .iter()
        .map(|c| container::init_container(pod, c, &mut notes))
        .collect::<ProviderResult<Vec<_>>>()?;
    resources::fit_limits(&mut containers);
    let init_sizes = inits
        .iter()
        .map(|c| resources::init_size(c))
        .collect::<ProviderResult<Vec<_>>>()?;
    resources::fit_init_containers(&mut containers, &init_sizes);
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| volumes::volume(pod, v, azure_files))
        .collect::<ProviderResult<Vec<_>>>()?;

    let ports: Vec<Port> = containers
        .iter()
        .flat_map(|c| &c.properties.ports)
        .map(|p| Port {
            port: p.port,
            protocol: p.protocol.clone(),
        })
        .collect();
    let ip_address = match (&settings.subnet_id, ports.is_empty()) {
        (Some(_), _) => Some(IpAddress {
            ports,
            type_: "Private".into(),
            ip: None,
        }),
        (None, false) => Some(IpAddress {
            ports,
            type_: "Public".into(),
            ip: None,
        }),
        (None, true) => None,
    };
    let windows = spec.os.as_ref().is_some_and(|os| os.name == "windows")
        || spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            .is_some_and(|os| os == "windows");

    let mut tags: std::collections::BTreeMap<String, String> = identity.labels();
    if !sidecars.is_empty() {
        let names: Vec<&str> = sidecars.iter().map(|c| c.name.as_str()).collect();
        tags.insert(TAG_SIDECARS.to_string(), names.join(","));
    }
    let group = ContainerGroup {
        location: Some(settings.region.clone()),
        tags,
        identity: options.identity,
        properties: ContainerGroupProperties {
            containers,
            init_containers,
            image_registry_credentials: volumes::registry_credentials(pod),
            restart_policy: Some(restart_policy(&pod.pod).to_string()),
            ip_address,
            os_type: Some(if windows { "Windows" } else { "Linux" }.into()),
            volumes,
            subnet_ids: settings
                .subnet_id
                .iter()
                .map(|id| SubnetId {
                    id: id.clone(),
                    name: None,
                })
                .collect(),
            dns_config: dns::dns_config(spec, &key.namespace, settings, &mut notes),
            sku: options.sku,
            priority: options.priority,
            confidential_compute_properties: options.confidential,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(Translation {
        name: identity.backend_name(&NameRules::ACI_CONTAINER_GROUP),
        group,
        notes,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unsupported_tests;
