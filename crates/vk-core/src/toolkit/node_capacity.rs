//! A node's capacity from its config ([`NodeResources`]) and what the backend
//! offers when the file is silent: the mock's fixed defaults, an engine's CPUs
//! and memory, a cloud account's quota.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::provider::NodeCapacity;
use crate::toolkit::node_config::NodeResources;

/// Pods per node when neither the file nor the backend says: the kubelet's
/// default `maxPods`.
pub const DEFAULT_MAX_PODS: &str = "110";

/// What the backend offers for the fields the config file leaves out. A
/// resource that neither gives is left out of the capacity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapacityDefaults {
    /// CPU capacity.
    pub cpu: Option<String>,
    /// Memory capacity.
    pub memory: Option<String>,
    /// Pod capacity ([`DEFAULT_MAX_PODS`] when `None`).
    pub pods: Option<String>,
    /// `spec.providerID`.
    pub provider_id: Option<String>,
}

/// The node's capacity (`cpu`, `memory`, `pods`, then the extended
/// resources, which may override them) and provider ID: the file's value
/// where it has one, else the backend's. Labels, taints, addresses and the
/// operating system are the provider's to add.
pub fn node_capacity<X>(resources: &NodeResources<X>, defaults: CapacityDefaults) -> NodeCapacity {
    let pods = resources
        .pods
        .clone()
        .or(defaults.pods)
        .unwrap_or_else(|| DEFAULT_MAX_PODS.to_string());
    let named = [
        ("cpu", resources.cpu.clone().or(defaults.cpu)),
        ("memory", resources.memory.clone().or(defaults.memory)),
        ("pods", Some(pods)),
    ];
    let mut capacity: BTreeMap<String, Quantity> = named
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), Quantity(value?))))
        .collect();
    for (name, value) in &resources.others {
        capacity.insert(name.clone(), Quantity(value.clone()));
    }
    NodeCapacity {
        capacity,
        provider_id: resources.provider_id.clone().or(defaults.provider_id),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::toolkit::node_config::NodeConfig;

    /// `resource=quantity` of each capacity entry.
    fn capacity_of(c: &NodeCapacity) -> Vec<String> {
        c.capacity
            .iter()
            .map(|(k, v)| format!("{k}={}", v.0))
            .collect()
    }

    #[test]
    fn the_file_wins_then_the_backend_then_the_kubelet_default() {
        let mock_like = CapacityDefaults {
            cpu: Some("20".into()),
            memory: Some("100Gi".into()),
            pods: None,
            provider_id: Some("mock://n".into()),
        };
        let engine_like = CapacityDefaults {
            cpu: Some("8".into()),
            memory: Some("16384Ki".into()),
            ..Default::default()
        };
        let cases: [(&str, CapacityDefaults, &[&str], Option<&str>); 6] = [
            (
                "{}",
                mock_like.clone(),
                &["cpu=20", "memory=100Gi", "pods=110"],
                Some("mock://n"),
            ),
            (
                r#"{"cpu": "4", "pods": "10", "providerID": "x://n"}"#,
                mock_like,
                &["cpu=4", "memory=100Gi", "pods=10"],
                Some("x://n"),
            ),
            (
                r#"{"memory": "2Gi", "others": {"nvidia.com/gpu": "2"}}"#,
                engine_like,
                &["cpu=8", "memory=2Gi", "nvidia.com/gpu=2", "pods=110"],
                None,
            ),
            ("{}", CapacityDefaults::default(), &["pods=110"], None),
            (
                "{}",
                CapacityDefaults {
                    pods: Some("5000".into()),
                    ..Default::default()
                },
                &["pods=5000"],
                None,
            ),
            (
                r#"{"cpu": "1", "others": {"cpu": "3"}}"#,
                CapacityDefaults::default(),
                &["cpu=3", "pods=110"],
                None,
            ),
        ];
        for (node, defaults, want, provider_id) in cases {
            let config: NodeConfig = NodeConfig::parse(&format!(r#"{{"n": {node}}}"#)).unwrap();
            let got = node_capacity(&config.node("n"), defaults);
            assert_eq!(capacity_of(&got), want, "{node}");
            assert_eq!(got.provider_id.as_deref(), provider_id, "{node}");
            assert!(got.labels.is_empty() && got.operating_system.is_none());
        }
    }
}
