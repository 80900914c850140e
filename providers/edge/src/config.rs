//! vk-edge's provider config: upstream virtual-kubelet's mock format, JSON
//! keyed by node name, values Kubernetes quantities. Every field is optional:
//! CPU and memory default to what the engine reports.
//!
//! ```json
//! {"edge-0": {"cpu": "4", "memory": "8Gi", "pods": "50"}}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use vk_core::quantity::parse_nanos;

/// Resources of one edge node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    /// CPU capacity (default: the engine's CPU count).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory capacity (default: the engine host's memory).
    #[serde(default)]
    pub memory: Option<String>,
    /// Pod capacity.
    #[serde(default = "default_pods")]
    pub pods: String,
    /// Extended resources.
    #[serde(default)]
    pub others: BTreeMap<String, String>,
    /// `spec.providerID`.
    #[serde(default, rename = "providerID")]
    pub provider_id: Option<String>,
}

fn default_pods() -> String {
    "110".into()
}

impl Default for NodeResources {
    fn default() -> Self {
        NodeResources {
            cpu: None,
            memory: None,
            pods: default_pods(),
            others: BTreeMap::new(),
            provider_id: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    nodes: HashMap<String, NodeResources>,
}

impl EdgeConfig {
    /// Reads and checks the file; the error names the file and the field.
    pub fn load(path: &Path) -> Result<EdgeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("provider config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("provider config {}: {e}", path.display()))
    }

    /// Parses and checks the JSON text.
    pub fn parse(text: &str) -> Result<EdgeConfig, String> {
        let nodes: HashMap<String, NodeResources> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (node, r) in &nodes {
            let fields = [("cpu", r.cpu.as_deref()), ("memory", r.memory.as_deref())];
            for (field, value) in fields {
                if let Some(v) = value {
                    parse_nanos(v).map_err(|e| format!("{node}.{field} = {v:?}: {e}"))?;
                }
            }
            parse_nanos(&r.pods).map_err(|e| format!("{node}.pods = {:?}: {e}", r.pods))?;
            for (k, v) in &r.others {
                parse_nanos(v).map_err(|e| format!("{node}.others.{k} = {v:?}: {e}"))?;
            }
        }
        Ok(EdgeConfig { nodes })
    }

    /// The resources of `node` (defaults when the file does not name it).
    pub fn node(&self, node: &str) -> NodeResources {
        self.nodes.get(node).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_upstream_format_and_checks_quantities() {
        let c =
            EdgeConfig::parse(r#"{"e0": {"cpu": "4", "memory": "8Gi", "pods": "20"}}"#).unwrap();
        assert_eq!(c.node("e0").cpu.as_deref(), Some("4"));
        assert_eq!(c.node("other"), NodeResources::default());
        let err = EdgeConfig::parse(r#"{"e0": {"cpu": "four"}}"#).unwrap_err();
        assert!(err.contains("e0.cpu"), "{err}");
        let err = EdgeConfig::parse(r#"{"e0": {"gpu": "1"}}"#).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        assert!(EdgeConfig::parse("[").is_err());
    }
}
