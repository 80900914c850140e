//! The ACI contract (`shared/specs/aci/containerInstance.json`) as JSON
//! Schema validators, Draft 4, built the way facts.md §6 says:
//!
//! - the common types' definitions are merged into the same document as
//!   `common.<Name>`, so every `$ref` is local;
//! - `allOf` of a definition is flattened into it (ContainerGroup takes
//!   Resource's id, name, type and systemData), so that
//! - `additionalProperties: false` can be added to every object schema that
//!   does not say otherwise: a misspelt property fails;
//! - for responses, `x-ms-secret` properties (secureValue, passwords, keys)
//!   are left out of `required`: ARM never returns them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Value, json};

use crate::workspace::workspace_root;

/// Where the contract is: `$VK_ACI_SPECS`, else `../shared/specs/aci` beside the workspace.
pub fn specs_dir() -> PathBuf {
    std::env::var_os("VK_ACI_SPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/specs/aci"))
}

/// Validators of the shapes the fake reads and writes.
pub struct Contract {
    request: jsonschema::Validator,
    group: jsonschema::Validator,
    list: jsonschema::Validator,
    error: jsonschema::Validator,
    logs: jsonschema::Validator,
    exec_request: jsonschema::Validator,
    exec_response: jsonschema::Validator,
    attach_response: jsonschema::Validator,
}

const COMMON_PREFIX: &str = "common.";

fn read(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Rewrites every `$ref` to a local definition.
fn rewrite_refs(v: &mut Value, common: bool, common_names: &[String]) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "$ref"
                    && let Value::String(r) = child
                {
                    let name = r.rsplit("#/definitions/").next().unwrap_or("").to_string();
                    let external = r.contains("types.json#");
                    if common || external {
                        // The spec's `systemData` quirk: match names case-insensitively.
                        let actual = common_names
                            .iter()
                            .find(|n| n.eq_ignore_ascii_case(&name))
                            .cloned()
                            .unwrap_or(name);
                        *r = format!("#/definitions/{COMMON_PREFIX}{actual}");
                    }
                } else {
                    rewrite_refs(child, common, common_names);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| rewrite_refs(i, common, common_names)),
        _ => {}
    }
}

/// Merges the `allOf` parents of a definition into it.
fn flatten_all_of(defs: &mut Map<String, Value>, name: &str, depth: usize) {
    if depth > 8 {
        return;
    }
    let Some(parents) = defs.get(name).and_then(|d| d.get("allOf")).cloned() else {
        return;
    };
    let mut merged_props = Map::new();
    let mut merged_required: Vec<Value> = Vec::new();
    for parent in parents.as_array().into_iter().flatten() {
        let Some(parent_name) = parent
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"))
        else {
            continue;
        };
        flatten_all_of(defs, parent_name, depth + 1);
        if let Some(p) = defs.get(parent_name) {
            if let Some(props) = p.get("properties").and_then(Value::as_object) {
                merged_props.extend(props.clone());
            }
            if let Some(req) = p.get("required").and_then(Value::as_array) {
                merged_required.extend(req.clone());
            }
        }
    }
    if let Some(Value::Object(def)) = defs.get_mut(name) {
        def.remove("allOf");
        let props = def.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(props) = props {
            for (k, v) in merged_props {
                props.entry(k).or_insert(v);
            }
        }
        if !merged_required.is_empty() {
            let req = def.entry("required").or_insert_with(|| json!([]));
            if let Value::Array(req) = req {
                req.extend(merged_required);
            }
        }
    }
}

/// Closes every object schema and, for responses, drops secret properties
/// from `required`.
fn close(schema: &mut Value, response: bool) {
    let Value::Object(map) = schema else { return };
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for child in props.values_mut() {
            close(child, response);
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        let secret: Vec<String> = props
            .iter()
            .filter(|(_, p)| p.get("x-ms-secret") == Some(&Value::Bool(true)))
            .map(|(k, _)| k.clone())
            .collect();
        if response && let Some(Value::Array(req)) = map.get_mut("required") {
            req.retain(|r| !r.as_str().is_some_and(|r| secret.iter().any(|s| s == r)));
        }
        map.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    if let Some(items) = map.get_mut("items") {
        close(items, response);
    }
    if let Some(extra @ Value::Object(_)) = map.get_mut("additionalProperties") {
        close(extra, response);
    }
}

/// The merged, closed document with `root` as its `$ref`.
fn document(ci: &Value, common: &Value, response: bool) -> Map<String, Value> {
    let common_defs = common["definitions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let common_names: Vec<String> = common_defs.keys().cloned().collect();
    let mut defs = Map::new();
    for (k, v) in common_defs {
        let mut v = v;
        rewrite_refs(&mut v, true, &common_names);
        defs.insert(format!("{COMMON_PREFIX}{k}"), v);
    }
    for (k, v) in ci["definitions"].as_object().cloned().unwrap_or_default() {
        let mut v = v;
        rewrite_refs(&mut v, false, &common_names);
        defs.insert(k, v);
    }
    let names: Vec<String> = defs.keys().cloned().collect();
    for name in &names {
        flatten_all_of(&mut defs, name, 0);
    }
    for def in defs.values_mut() {
        close(def, response);
    }
    defs
}

fn validator(defs: &Map<String, Value>, root: &str) -> Result<jsonschema::Validator> {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "$ref": format!("#/definitions/{root}"),
        "definitions": defs,
    });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .map_err(|e| anyhow!("building the {root} validator: {e}"))
}

fn errors(v: &jsonschema::Validator, what: &str, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{what}: at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

impl Contract {
    /// Loads the contract from `dir` (see [`specs_dir`]).
    pub fn load(dir: &Path) -> Result<Contract> {
        let ci = read(&dir.join("containerInstance.json"))?;
        let common = read(&dir.join("common-types-v5-types.json"))?;
        let request = document(&ci, &common, false);
        let response = document(&ci, &common, true);
        Ok(Contract {
            request: validator(&request, "ContainerGroup")?,
            group: validator(&response, "ContainerGroup")?,
            list: validator(&response, "ContainerGroupListResult")?,
            error: validator(&response, "CloudError")?,
            logs: validator(&response, "Logs")?,
            exec_request: validator(&request, "ContainerExecRequest")?,
            exec_response: validator(&response, "ContainerExecResponse")?,
            attach_response: validator(&response, "ContainerAttachResponse")?,
        })
    }

    /// Violations of a `ContainerGroups_CreateOrUpdate` request body.
    pub fn check_request(&self, body: &Value) -> Vec<String> {
        errors(&self.request, "request ContainerGroup", body)
    }

    /// Violations of a `ContainerGroup` response body.
    pub fn check_group(&self, body: &Value) -> Vec<String> {
        errors(&self.group, "response ContainerGroup", body)
    }

    /// Violations of a `ContainerGroupListResult` response body.
    pub fn check_list(&self, body: &Value) -> Vec<String> {
        errors(&self.list, "response ContainerGroupListResult", body)
    }

    /// Violations of a `Logs` response body.
    pub fn check_logs(&self, body: &Value) -> Vec<String> {
        errors(&self.logs, "response Logs", body)
    }

    /// Violations of a `Containers_ExecuteCommand` request body.
    pub fn check_exec_request(&self, body: &Value) -> Vec<String> {
        errors(&self.exec_request, "request ContainerExecRequest", body)
    }

    /// Violations of a `ContainerExecResponse` body.
    pub fn check_exec_response(&self, body: &Value) -> Vec<String> {
        errors(&self.exec_response, "response ContainerExecResponse", body)
    }

    /// Violations of a `ContainerAttachResponse` body.
    pub fn check_attach_response(&self, body: &Value) -> Vec<String> {
        errors(
            &self.attach_response,
            "response ContainerAttachResponse",
            body,
        )
    }

    /// Violations of a `CloudError` response body.
    pub fn check_error(&self, body: &Value) -> Vec<String> {
        errors(&self.error, "response CloudError", body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn example(name: &str) -> Value {
        read(&specs_dir().join("examples").join(name)).unwrap()
    }

    #[test]
    fn the_examples_pass_and_mistakes_fail() {
        let c = Contract::load(&specs_dir()).unwrap();
        let create = example("ContainerGroupsCreateOrUpdate.json");
        let mut request = create["parameters"]["containerGroup"].clone();
        assert_eq!(c.check_request(&request), Vec::<String>::new());
        for status in ["200", "201"] {
            assert_eq!(
                c.check_group(&create["responses"][status]["body"]),
                Vec::<String>::new(),
                "{status}"
            );
        }
        for name in [
            "ContainerGroupsGet_Succeeded.json",
            "ContainerGroupsGet_Failed.json",
        ] {
            assert_eq!(
                c.check_group(&example(name)["responses"]["200"]["body"]),
                Vec::<String>::new(),
                "{name}"
            );
        }
        let logs = example("ContainerListLogs.json");
        assert_eq!(
            c.check_logs(&logs["responses"]["200"]["body"]),
            Vec::<String>::new()
        );
        let exec = example("ContainerExec.json");
        assert_eq!(
            c.check_exec_request(&exec["parameters"]["containerExecRequest"]),
            Vec::<String>::new()
        );
        assert_eq!(
            c.check_exec_response(&exec["responses"]["200"]["body"]),
            Vec::<String>::new()
        );
        let attach = example("ContainerAttach.json");
        assert_eq!(
            c.check_attach_response(&attach["responses"]["200"]["body"]),
            Vec::<String>::new()
        );
        // An argv array is not the contract's one command string.
        assert!(
            !c.check_exec_request(&json!({"command": ["ls", "/bin"]}))
                .is_empty()
        );
        let list = example("ContainerGroupsListByResourceGroup.json");
        assert_eq!(
            c.check_list(&list["responses"]["200"]["body"]),
            Vec::<String>::new()
        );

        // A misspelt property, a missing required one, a wrong type.
        request["properties"]["containers"][0]["properties"]["imagee"] = json!("x");
        assert!(
            c.check_request(&request)
                .iter()
                .any(|e| e.contains("imagee")),
            "{:?}",
            c.check_request(&request)
        );
        let mut missing = create["parameters"]["containerGroup"].clone();
        missing["properties"]
            .as_object_mut()
            .unwrap()
            .remove("containers");
        assert!(!c.check_request(&missing).is_empty());
        let mut typed = create["parameters"]["containerGroup"].clone();
        typed["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] =
            json!("1");
        assert!(!c.check_request(&typed).is_empty());
        // A list item has no group instance view.
        let mut with_view = list["responses"]["200"]["body"].clone();
        with_view["value"][0]["properties"]["instanceView"] = json!({"state": "Running"});
        assert!(!c.check_list(&with_view).is_empty());
    }
}
