//! What of a pod or a container ACI cannot express, outside the parts other
//! modules map (resources, probes, volumes, the security context): refused
//! when running without it would be wrong, else a [`Note`] (see the rule in
//! the module doc of [`super`]).
//!
//! Left out on purpose, because they are not the backend's to run: scheduling
//! fields (affinity, tolerations, priority, topology spread, scheduling
//! gates), `readinessGates` (conditions others set), `overhead`,
//! `preemptionPolicy`, env resolution and service links (the core's), and
//! the image pull policy (ACI pulls when it creates the group).

use k8s_openapi::api::core::v1::{Container as KubeContainer, PodSpec};
use vk_core::ProviderResult;

use super::{Note, invalid, security};

/// What the pod as a whole asks for that ACI cannot do.
pub(super) fn pod_notes(spec: &PodSpec) -> ProviderResult<Vec<Note>> {
    for (on, what) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if on == Some(true) {
            return Err(invalid(format!(
                "the pod asks for {what}: an ACI container group has no host to share"
            )));
        }
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(invalid(
            "the pod claims dynamic resources (resourceClaims), which ACI cannot allocate".into(),
        ));
    }
    let mut notes = Vec::new();
    let mut note = |reason: &'static str, message: String| notes.push(Note { reason, message });
    if spec.host_aliases.as_ref().is_some_and(|a| !a.is_empty()) {
        note(
            "HostAliasesNotSupported",
            "ACI writes the group's /etc/hosts itself; hostAliases are not added".into(),
        );
    }
    if spec.share_process_namespace == Some(true) {
        note(
            "ShareProcessNamespaceNotSupported",
            "ACI gives each container its own process namespace; shareProcessNamespace is not applied".into(),
        );
    }
    if spec.host_users == Some(false) {
        note(
            security::REASON,
            "ACI chooses the user namespaces; hostUsers: false is not applied".into(),
        );
    }
    if spec.hostname.is_some()
        || spec.subdomain.is_some()
        || spec.set_hostname_as_fqdn == Some(true)
    {
        note(
            "HostnameNotSupported",
            "ACI names the group's host itself; hostname, subdomain and setHostnameAsFQDN are not applied".into(),
        );
    }
    if let Some(class) = &spec.runtime_class_name {
        note(
            "RuntimeClassNotSupported",
            format!(
                "ACI has one runtime per SKU; runtimeClassName {class:?} is not applied (see the aci.vk-rs.io/sku annotation)"
            ),
        );
    }
    if spec.resources.is_some() {
        note(
            "PodResourcesNotSupported",
            "ACI sizes a group from its containers; the pod-level resources are not applied".into(),
        );
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        note(
            "EphemeralContainersNotSupported",
            "ACI cannot add a container to a running group; the ephemeral containers are not run"
                .into(),
        );
    }
    if let Some(sc) = &spec.security_context {
        let mut what = Vec::new();
        if sc.fs_group.is_some() || sc.fs_group_change_policy.is_some() {
            what.push("fsGroup (volume ownership is ACI's)");
        }
        if sc
            .supplemental_groups
            .as_ref()
            .is_some_and(|g| !g.is_empty())
            || sc.supplemental_groups_policy.is_some()
        {
            what.push("supplementalGroups");
        }
        if sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            what.push("sysctls");
        }
        if sc.se_linux_change_policy.is_some() {
            what.push("seLinuxChangePolicy");
        }
        if !what.is_empty() {
            note(
                security::REASON,
                format!("ACI cannot apply the pod's {}", what.join(", ")),
            );
        }
    }
    Ok(notes)
}

/// What a container asks for that ACI cannot do (both kinds of container).
pub(super) fn container_notes(c: &KubeContainer, notes: &mut Vec<Note>) -> ProviderResult<()> {
    let name = &c.name;
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(invalid(format!(
            "container {name:?} asks for block devices (volumeDevices), which ACI cannot attach"
        )));
    }
    if c.resources
        .as_ref()
        .and_then(|r| r.claims.as_ref())
        .is_some_and(|claims| !claims.is_empty())
    {
        return Err(invalid(format!(
            "container {name:?} uses resource claims, which ACI cannot allocate"
        )));
    }
    let mut note = |reason: &'static str, message: String| notes.push(Note { reason, message });
    if let Some(l) = &c.lifecycle
        && (l.post_start.is_some() || l.pre_stop.is_some())
    {
        note(
            "LifecycleNotSupported",
            format!(
                "container {name:?}: ACI has no lifecycle hooks; postStart and preStop are not run"
            ),
        );
    }
    if let Some(dir) = c.working_dir.as_deref().filter(|d| !d.is_empty()) {
        note(
            "WorkingDirNotSupported",
            format!(
                "container {name:?}: ACI has no working directory setting; the image's is used instead of {dir:?}"
            ),
        );
    }
    if c.stdin == Some(true) || c.tty == Some(true) {
        note(
            "StdinNotSupported",
            format!(
                "container {name:?}: ACI gives the main process no stdin or terminal; attach shows its output only"
            ),
        );
    }
    if c.restart_policy_rules
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        note(
            "RestartRulesNotSupported",
            format!(
                "container {name:?}: ACI restarts by the group's restartPolicy only; restartPolicyRules are not applied"
            ),
        );
    }
    Ok(())
}
