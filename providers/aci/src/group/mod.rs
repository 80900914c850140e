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
//! - **argv** is the container's `command` followed by its `args`, as one
//!   exec-form array. ACI replaces the image's entrypoint with it, so `args`
//!   without `command` cannot be expressed and is refused.
//! - **Resources** ([`resources`]): ACI sizes a group as the sum of its
//!   containers' requests and refuses a limit above that sum (azure-aci#149).
//!   The group is made big enough for the largest limit and for the largest
//!   init container. CPU goes in 0.01-core steps, memory in 0.1 GB steps
//!   (decimal GB, as upstream), always rounded up. A container without
//!   requests gets upstream's 1 core and 1.5 GB.
//! - **Secrets** never travel as plain values: env from Secrets is
//!   `secureValue`; configMap, secret, downwardAPI and projected volumes
//!   (service-account tokens included) are ACI `secret` volumes, base64
//!   ([`volumes`]).

mod annotations;
mod container;
mod dns;
mod probes;
mod resources;
pub mod security;
mod unsupported;
mod volumes;

use vk_core::toolkit::pod_identity::{NameRules, PodIdentity};
use vk_core::toolkit::restart::restart_policy;
use vk_core::{ProviderError, ProviderResult, ResolvedPod};

use crate::models::{ContainerGroup, ContainerGroupProperties, IpAddress, Port, SubnetId};

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

/// Translates a resolved pod (see the module doc).
pub fn container_group(pod: &ResolvedPod, settings: &GroupSettings) -> ProviderResult<Translation> {
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

    let mut containers = spec
        .containers
        .iter()
        .map(|c| container::app_container(pod, c, options.gpu_sku.as_deref(), &mut notes))
        .collect::<ProviderResult<Vec<_>>>()?;
    let init_containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container::init_container(pod, c, &mut notes))
        .collect::<ProviderResult<Vec<_>>>()?;
    resources::fit_limits(&mut containers);
    let init_sizes = spec
        .init_containers
        .iter()
        .flatten()
        .map(resources::init_size)
        .collect::<ProviderResult<Vec<_>>>()?;
    resources::fit_init_containers(&mut containers, &init_sizes);
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| volumes::volume(pod, v))
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

    let group = ContainerGroup {
        location: Some(settings.region.clone()),
        tags: identity.labels(),
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
