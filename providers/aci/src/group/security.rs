//! A container's security context (its own over the pod's) → ACI's.
//!
//! | Kubernetes | ACI |
//! |---|---|
//! | `privileged`, `allowPrivilegeEscalation`, `capabilities` | the same fields |
//! | `runAsUser`, `runAsGroup` (container, else pod) | the same fields |
//! | `runAsNonRoot` with a non-zero `runAsUser` | nothing more to do |
//! | `runAsNonRoot` without `runAsUser`, or with user 0 | refused: ACI cannot check the image's user, and refusing is the setting's whole purpose |
//! | seccomp `RuntimeDefault`, AppArmor `RuntimeDefault`, procMount `Default` | ACI's default |
//! | seccomp or AppArmor `Localhost`/`Unconfined`, `seLinuxOptions`, procMount `Unmasked`, `readOnlyRootFilesystem`, Windows gMSA or user name | a Warning event: a hardening or loosening ACI cannot apply |
//! | Windows `hostProcess` | refused: there is no host |
//!
//! A seccomp `Localhost` profile names a file on the node; ACI wants the
//! profile itself, which the kubelet does not have, so it is a Warning too.

use k8s_openapi::api::core::v1::{
    Container as KubeContainer, PodSecurityContext, SecurityContext as KubeSecurityContext,
};
use vk_core::ProviderResult;

use super::{Note, invalid};
use crate::models::{Capabilities, SecurityContext};

/// The event reason of what ACI cannot apply.
pub const REASON: &str = "SecurityContextNotSupported";

/// The container's ACI security context, `None` when it has nothing to say.
pub(super) fn security_context(
    pod: Option<&PodSecurityContext>,
    c: &KubeContainer,
    notes: &mut Vec<Note>,
) -> ProviderResult<Option<SecurityContext>> {
    let own = c.security_context.as_ref();
    let mut note = |what: String| {
        notes.push(Note {
            reason: REASON,
            message: format!("container {:?}: ACI cannot apply {what}", c.name),
        })
    };
    let id = |field: &str, v: Option<i64>| -> ProviderResult<Option<i32>> {
        v.map(|v| {
            i32::try_from(v).map_err(|_| {
                invalid(format!(
                    "container {:?}: {field} {v} is out of ACI's range",
                    c.name
                ))
            })
        })
        .transpose()
    };
    let run_as_user = id(
        "runAsUser",
        own.and_then(|s| s.run_as_user)
            .or(pod.and_then(|p| p.run_as_user)),
    )?;
    let run_as_group = id(
        "runAsGroup",
        own.and_then(|s| s.run_as_group)
            .or(pod.and_then(|p| p.run_as_group)),
    )?;
    let non_root = own
        .and_then(|s| s.run_as_non_root)
        .or(pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    match (non_root, run_as_user) {
        (true, None) => {
            return Err(invalid(format!(
                "container {:?} has runAsNonRoot but no runAsUser: ACI cannot check the image's user, so set runAsUser",
                c.name
            )));
        }
        (true, Some(0)) => {
            return Err(invalid(format!(
                "container {:?} has runAsNonRoot and runAsUser 0",
                c.name
            )));
        }
        _ => {}
    }

    let seccomp = own
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(pod.and_then(|p| p.seccomp_profile.as_ref()));
    if let Some(p) = seccomp.filter(|p| p.type_ != "RuntimeDefault") {
        note(format!("the {} seccomp profile", p.type_));
    }
    let apparmor = own
        .and_then(|s| s.app_armor_profile.as_ref())
        .or(pod.and_then(|p| p.app_armor_profile.as_ref()));
    if let Some(p) = apparmor.filter(|p| p.type_ != "RuntimeDefault") {
        note(format!("the {} AppArmor profile", p.type_));
    }
    if own
        .and_then(|s| s.se_linux_options.as_ref())
        .or(pod.and_then(|p| p.se_linux_options.as_ref()))
        .is_some()
    {
        note("seLinuxOptions".into());
    }
    if let Some(windows) = own
        .and_then(|s| s.windows_options.as_ref())
        .or(pod.and_then(|p| p.windows_options.as_ref()))
    {
        if windows.host_process == Some(true) {
            return Err(invalid(format!(
                "container {:?} is a Windows hostProcess container: ACI has no host",
                c.name
            )));
        }
        if windows.gmsa_credential_spec.is_some() || windows.gmsa_credential_spec_name.is_some() {
            note("a gMSA credential spec".into());
        }
        if windows.run_as_user_name.is_some() {
            note("windowsOptions.runAsUserName".into());
        }
    }
    if let Some(own) = own {
        if own.read_only_root_filesystem == Some(true) {
            note("readOnlyRootFilesystem: the root filesystem is writable".into());
        }
        if own.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            note("procMount Unmasked".into());
        }
    }

    let out = SecurityContext {
        privileged: own.and_then(|s| s.privileged),
        allow_privilege_escalation: own.and_then(|s| s.allow_privilege_escalation),
        capabilities: own.and_then(capabilities),
        run_as_group,
        run_as_user,
        seccomp_profile: None,
    };
    Ok((out != SecurityContext::default()).then_some(out))
}

fn capabilities(s: &KubeSecurityContext) -> Option<Capabilities> {
    let c = s.capabilities.as_ref()?;
    let out = Capabilities {
        add: c.add.clone().unwrap_or_default(),
        drop: c.drop.clone().unwrap_or_default(),
    };
    (out != Capabilities::default()).then_some(out)
}
