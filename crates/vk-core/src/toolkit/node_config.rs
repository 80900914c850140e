//! The node config file (`--provider-config`), in upstream virtual-kubelet's
//! format: JSON keyed by node name, values Kubernetes quantities. Every field
//! is optional; what a missing one means is the provider's choice (see
//! [`crate::toolkit::node_capacity`]).
//!
//! ```json
//! {"vk-0": {"cpu": "20", "memory": "100Gi", "pods": "110",
//!           "others": {"nvidia.com/gpu": "4"}, "providerID": "mock://vk-0"}}
//! ```
//!
//! A provider with fields of its own names a type for them (`X`): they sit
//! beside the common ones in the same node object. Fields neither knows are
//! an error, so a typo never goes unnoticed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::quantity::parse_nanos;

/// The resources of one node, as the file gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResources<X = NoExtra> {
    /// CPU capacity.
    pub cpu: Option<String>,
    /// Memory capacity.
    pub memory: Option<String>,
    /// Pod capacity.
    pub pods: Option<String>,
    /// Extended resources (`nvidia.com/gpu`...).
    pub others: BTreeMap<String, String>,
    /// `spec.providerID`.
    pub provider_id: Option<String>,
    /// The provider's own fields.
    pub extra: X,
}

/// No provider-specific fields: any field beyond the common ones is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoExtra {}

/// The common fields, as they are spelt in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    cpu: Option<String>,
    memory: Option<String>,
    pods: Option<String>,
    #[serde(default)]
    others: BTreeMap<String, String>,
    #[serde(rename = "providerID")]
    provider_id: Option<String>,
}

const COMMON_FIELDS: [&str; 5] = ["cpu", "memory", "pods", "others", "providerID"];

/// A config file that cannot be used, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("cannot read provider config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape, or a quantity is wrong.
    #[error("invalid provider config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the node and field.
        message: String,
    },
}

/// The whole file: node name → resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig<X = NoExtra> {
    nodes: BTreeMap<String, NodeResources<X>>,
}

impl<X: DeserializeOwned + Default + Clone> NodeConfig<X> {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| NodeConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// The file of `--provider-config` when it is given, else an empty config
    /// (every node with the provider's defaults).
    pub fn load_optional(path: Option<&Path>) -> Result<Self, NodeConfigError> {
        path.map_or_else(|| Ok(NodeConfig::default()), Self::load)
    }

    /// Parses and checks config text; the error names the node and field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, Map<String, Value>> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        let nodes = raw
            .into_iter()
            .map(|(node, fields)| {
                let resources = node_resources(&node, fields)?;
                Ok((node, resources))
            })
            .collect::<Result<_, String>>()?;
        Ok(NodeConfig { nodes })
    }

    /// The resources of `node`; all defaults when the file does not name it.
    pub fn node(&self, node: &str) -> NodeResources<X> {
        self.nodes.get(node).cloned().unwrap_or_default()
    }

    /// Whether the file names `node`.
    pub fn has_node(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }
}

/// One node's object: the common fields, each quantity checked, then the
/// provider's own from what is left.
fn node_resources<X: DeserializeOwned>(
    node: &str,
    mut fields: Map<String, Value>,
) -> Result<NodeResources<X>, String> {
    let common: Map<String, Value> = COMMON_FIELDS
        .iter()
        .filter_map(|f| fields.remove(*f).map(|v| (f.to_string(), v)))
        .collect();
    let common: Common =
        serde_json::from_value(Value::Object(common)).map_err(|e| format!("node {node}: {e}"))?;
    let extra: X =
        serde_json::from_value(Value::Object(fields)).map_err(|e| format!("node {node}: {e}"))?;
    let named = [
        ("cpu", &common.cpu),
        ("memory", &common.memory),
        ("pods", &common.pods),
    ];
    let quantities = named
        .into_iter()
        .filter_map(|(field, v)| Some((field.to_string(), v.as_ref()?)))
        .chain(
            common
                .others
                .iter()
                .map(|(k, v)| (format!("others.{k}"), v)),
        );
    for (field, value) in quantities {
        match parse_nanos(value) {
            Ok(v) if v >= 0 => {}
            Ok(_) => return Err(format!("{node}.{field} = {value:?}: must not be negative")),
            Err(e) => return Err(format!("{node}.{field} = {value:?}: {e}")),
        }
    }
    Ok(NodeResources {
        cpu: common.cpu,
        memory: common.memory,
        pods: common.pods,
        others: common.others,
        provider_id: common.provider_id,
        extra,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_upstream_format() {
        let c: NodeConfig = NodeConfig::parse(
            r#"{"vk-0": {"cpu": "20", "memory": "100Gi", "pods": "110",
                "others": {"nvidia.com/gpu": "4"}, "providerID": "mock://vk-0"},
                "vk-1": {}}"#,
        )
        .unwrap();
        let n = c.node("vk-0");
        assert_eq!(n.cpu.as_deref(), Some("20"));
        assert_eq!(n.memory.as_deref(), Some("100Gi"));
        assert_eq!(n.pods.as_deref(), Some("110"));
        assert_eq!(n.others["nvidia.com/gpu"], "4");
        assert_eq!(n.provider_id.as_deref(), Some("mock://vk-0"));
        assert!(c.has_node("vk-1") && !c.has_node("other"));
        assert_eq!(c.node("vk-1"), NodeResources::default());
        assert_eq!(c.node("other"), NodeResources::default());
    }

    #[test]
    fn rejects_bad_input_naming_node_and_field() {
        let cases = [
            ("not json", "expected"),
            (r#"["n"]"#, "invalid type"),
            (r#"{"n": {"cpu": "lots"}}"#, "n.cpu = \"lots\""),
            (
                r#"{"n": {"cpu": "-1"}}"#,
                "n.cpu = \"-1\": must not be negative",
            ),
            (r#"{"n": {"memory": "1Qi"}}"#, "n.memory"),
            (r#"{"n": {"pods": ""}}"#, "n.pods"),
            (r#"{"n": {"cpuu": "1"}}"#, "node n: unknown field `cpuu`"),
            (r#"{"n": {"cpu": 4}}"#, "node n: invalid type: integer"),
            (r#"{"n": {"others": {"gpu": "x"}}}"#, "n.others.gpu = \"x\""),
            (r#"{"n": {"others": ["gpu"]}}"#, "node n: invalid type"),
        ];
        for (text, want) in cases {
            let err = NodeConfig::<NoExtra>::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct CloudFields {
        region: Option<String>,
        #[serde(default)]
        subnets: Vec<String>,
    }

    #[test]
    fn a_provider_adds_its_own_fields() {
        let c: NodeConfig<CloudFields> = NodeConfig::parse(
            r#"{"n": {"cpu": "4", "region": "eu-west-1", "subnets": ["a", "b"]}}"#,
        )
        .unwrap();
        let n = c.node("n");
        assert_eq!(n.cpu.as_deref(), Some("4"));
        assert_eq!(
            n.extra,
            CloudFields {
                region: Some("eu-west-1".into()),
                subnets: vec!["a".into(), "b".into()],
            }
        );
        let err = NodeConfig::<CloudFields>::parse(r#"{"n": {"regoin": "x"}}"#).unwrap_err();
        assert!(err.contains("unknown field `regoin`"), "{err}");
        let err = NodeConfig::<NoExtra>::parse(r#"{"n": {"region": "x"}}"#).unwrap_err();
        assert!(err.contains("unknown field `region`"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let missing = NodeConfig::<NoExtra>::load(&path).unwrap_err();
        assert!(matches!(missing, NodeConfigError::Read { .. }), "{missing}");
        assert!(missing.to_string().contains("config.json"), "{missing}");
        std::fs::write(&path, r#"{"n": {"cpu": "x"}}"#).unwrap();
        let invalid = NodeConfig::<NoExtra>::load(&path).unwrap_err();
        let text = invalid.to_string();
        assert!(text.starts_with("invalid provider config "), "{text}");
        assert!(
            text.contains("config.json") && text.contains("n.cpu"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "one line for the CLI: {text}");
        std::fs::write(&path, r#"{"n": {"cpu": "2"}}"#).unwrap();
        let ok = NodeConfig::<NoExtra>::load(&path).unwrap();
        assert_eq!(ok.node("n").cpu.as_deref(), Some("2"));
        assert_eq!(
            NodeConfig::<NoExtra>::load_optional(Some(&path)).unwrap(),
            ok
        );
        let none = NodeConfig::<NoExtra>::load_optional(None).unwrap();
        assert!(!none.has_node("n"));
    }
}
