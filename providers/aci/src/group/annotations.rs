//! The pod annotations that choose what Kubernetes has no field for: a
//! user-assigned managed identity, Spot priority, the SKU (confidential
//! groups and their policy) and the GPU SKU. A value ACI would refuse is
//! refused here, with the annotation named.

use std::collections::BTreeMap;

use vk_core::ProviderResult;

use super::invalid;
use crate::models::{ConfidentialComputeProperties, ContainerGroupIdentity, UserAssignedIdentity};

/// Annotation: user-assigned managed identities (ARM ids, comma-separated).
pub const ANNOTATION_IDENTITY: &str = "aci.vk-rs.io/user-assigned-identity";
/// Annotation: `Spot` or `Regular` priority.
pub const ANNOTATION_PRIORITY: &str = "aci.vk-rs.io/priority";
/// Annotation: the group's SKU (`Standard`, `Dedicated`, `Confidential`).
pub const ANNOTATION_SKU: &str = "aci.vk-rs.io/sku";
/// Annotation: the base64 confidential compute enforcement policy.
pub const ANNOTATION_CCE_POLICY: &str = "aci.vk-rs.io/cce-policy";
/// Annotation: the GPU SKU for `nvidia.com/gpu` (`K80`, `P100`, `V100`).
pub const ANNOTATION_GPU_SKU: &str = "aci.vk-rs.io/gpu-sku";

/// What the annotations ask of the group.
#[derive(Default)]
pub(super) struct GroupOptions {
    pub identity: Option<ContainerGroupIdentity>,
    pub priority: Option<String>,
    pub sku: Option<String>,
    pub confidential: Option<ConfidentialComputeProperties>,
    pub gpu_sku: Option<String>,
}

/// Reads and checks the annotations.
pub(super) fn group_options(
    annotations: &BTreeMap<String, String>,
) -> ProviderResult<GroupOptions> {
    let identity_ids: Vec<String> = annotations
        .get(ANNOTATION_IDENTITY)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for id in &identity_ids {
        if !id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.managedidentity/userassignedidentities/")
        {
            return Err(invalid(format!(
                "annotation {ANNOTATION_IDENTITY}: {id:?} is not the ARM id of a user-assigned managed identity"
            )));
        }
    }
    let identity = (!identity_ids.is_empty()).then(|| ContainerGroupIdentity {
        type_: Some("UserAssigned".into()),
        user_assigned_identities: identity_ids
            .into_iter()
            .map(|id| (id, UserAssignedIdentity::default()))
            .collect(),
        ..Default::default()
    });
    let priority = match annotations.get(ANNOTATION_PRIORITY).map(String::as_str) {
        None => None,
        Some(p @ ("Spot" | "Regular")) => Some(p.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_PRIORITY}: {other:?} is neither Spot nor Regular"
            )));
        }
    };
    let sku = match annotations.get(ANNOTATION_SKU).map(String::as_str) {
        None => None,
        Some(s @ ("Standard" | "Dedicated" | "Confidential")) => Some(s.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_SKU}: {other:?} is not Standard, Dedicated or Confidential"
            )));
        }
    };
    let confidential = match annotations.get(ANNOTATION_CCE_POLICY) {
        Some(_) if sku.as_deref() != Some("Confidential") => {
            return Err(invalid(format!(
                "annotation {ANNOTATION_CCE_POLICY} needs {ANNOTATION_SKU}: Confidential"
            )));
        }
        policy => policy.map(|p| ConfidentialComputeProperties {
            cce_policy: Some(p.clone()),
        }),
    };
    Ok(GroupOptions {
        identity,
        priority,
        sku,
        confidential,
        gpu_sku: annotations.get(ANNOTATION_GPU_SKU).cloned(),
    })
}
