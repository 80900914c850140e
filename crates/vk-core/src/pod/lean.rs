//! Pods as the controller's watch parses them: a `Pod` without
//! `metadata.managedFields`.
//!
//! Every watch event carries the pod's managed fields, a tree of nested maps
//! per field manager that `FieldsV1` parses into a `serde_json::Value`. The
//! controller never reads them (they were dropped right after parsing), yet
//! building and freeing those trees was the largest cost of parsing a watch
//! event. Here the parser skips them instead, without allocating.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// The annotation `kubectl apply` keeps a copy of the whole object in; never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A pod parsed without its managed fields and the last-applied annotation.
#[derive(Clone, Debug, Default)]
pub struct LeanPod(pub Pod);

impl Resource for LeanPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

/// The pod on the wire; `apiVersion` and `kind` are not read.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: Meta,
    spec: Option<PodSpec>,
    status: Option<PodStatus>,
}

/// `ObjectMeta` without `managedFields`: unknown keys are skipped by the
/// parser, which builds nothing for them.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl<'de> Deserialize<'de> for LeanPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Wire {
            metadata: m,
            spec,
            status,
        } = Wire::deserialize(d)?;
        let annotations = m.annotations.map(|mut a| {
            a.remove(LAST_APPLIED);
            a
        });
        Ok(LeanPod(Pod {
            metadata: ObjectMeta {
                annotations,
                creation_timestamp: m.creation_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                deletion_timestamp: m.deletion_timestamp,
                finalizers: m.finalizers,
                generate_name: m.generate_name,
                generation: m.generation,
                labels: m.labels,
                managed_fields: None,
                name: m.name,
                namespace: m.namespace,
                owner_references: m.owner_references,
                resource_version: m.resource_version,
                self_link: m.self_link,
                uid: m.uid,
            },
            spec,
            status,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pod_as_the_full_parser_does_but_without_managed_fields() {
        let json = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "x"},
                "annotations": {"a": "b", LAST_APPLIED: "{\"huge\":true}"},
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "deletionTimestamp": "2026-01-02T03:05:05Z",
                "deletionGracePeriodSeconds": 30,
                "finalizers": ["f"],
                "generateName": "p-",
                "generation": 1,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "o-1"}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}],
                "somethingNew": {"ignored": [1, 2, 3]}
            },
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        });
        let lean: LeanPod = serde_json::from_value(json.clone()).unwrap();
        let mut full: Pod = serde_json::from_value(json).unwrap();
        full.metadata.managed_fields = None;
        full.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(LAST_APPLIED);
        assert_eq!(lean.0, full);
        assert_eq!(lean.0.metadata.annotations.unwrap().len(), 1);
    }

    #[test]
    fn a_pod_without_metadata_or_spec_parses() {
        let lean: LeanPod = serde_json::from_str(r#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap();
        assert_eq!(lean.0, Pod::default());
        assert!(serde_json::from_str::<LeanPod>(r#"{"metadata": 3}"#).is_err());
    }
}
