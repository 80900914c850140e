//! The mock's configuration file, compatible with upstream virtual-kubelet's mock:
//! JSON keyed by node name, values are Kubernetes quantities.
//!
//! ```json
//! {"vk-mock-0": {"cpu": "20", "memory": "100Gi", "pods": "110",
//!                "others": {"nvidia.com/gpu": "4"}, "providerID": "mock://vk-mock-0"}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use vk_core::quantity::parse_nanos;

/// Resources of one mock node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    /// CPU capacity.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Memory capacity.
    #[serde(default = "default_memory")]
    pub memory: String,
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

fn default_cpu() -> String {
    "20".into()
}
fn default_memory() -> String {
    "100Gi".into()
}
fn default_pods() -> String {
    "110".into()
}

impl Default for NodeResources {
    fn default() -> Self {
        NodeResources {
            cpu: default_cpu(),
            memory: default_memory(),
            pods: default_pods(),
            others: BTreeMap::new(),
            provider_id: None,
        }
    }
}

/// A config error, with the file and the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read provider config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("invalid provider config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole file: node name → resources.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    nodes: BTreeMap<String, NodeResources>,
}

impl MockConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<MockConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        MockConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<MockConfig, String> {
        let nodes: BTreeMap<String, NodeResources> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (node, r) in &nodes {
            let fields = [("cpu", &r.cpu), ("memory", &r.memory), ("pods", &r.pods)];
            for (field, value) in fields
                .into_iter()
                .chain(r.others.iter().map(|(k, v)| (k.as_str(), v)))
            {
                match parse_nanos(value) {
                    Ok(v) if v >= 0 => {}
                    _ => {
                        return Err(format!(
                            "node {node}: {field} {value:?} is not a valid quantity"
                        ));
                    }
                }
            }
        }
        Ok(MockConfig { nodes })
    }

    /// Resources of a node; the defaults when the file does not name it.
    pub fn node(&self, name: &str) -> Option<&NodeResources> {
        self.nodes.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_format() {
        let c = MockConfig::parse(
            r#"{"vk-mock-0": {"cpu": "20", "memory": "100Gi", "pods": "110", "others": {"nvidia.com/gpu": "4"}, "providerID": "mock://vk-mock-0"}}"#,
        )
        .unwrap();
        let n = c.node("vk-mock-0").unwrap();
        assert_eq!(n.memory, "100Gi");
        assert_eq!(n.others["nvidia.com/gpu"], "4");
        assert_eq!(n.provider_id.as_deref(), Some("mock://vk-mock-0"));
        assert!(c.node("other").is_none());
    }

    #[test]
    fn rejects_bad_input() {
        for text in [
            "not json",
            r#"{"n": {"cpu": "lots"}}"#,
            r#"{"n": {"cpu": "-1"}}"#,
            r#"{"n": {"cpuu": "1"}}"#,
            r#"{"n": {"others": {"gpu": "x"}}}"#,
            r#"["n"]"#,
        ] {
            assert!(MockConfig::parse(text).is_err(), "{text}");
        }
    }
}
