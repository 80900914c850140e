//! Pods as the controller's watch keeps them: metadata parsed (without
//! `managedFields` and the last-applied annotation), spec and status as the
//! compact JSON text they arrived in, parsed when a sync reads the pod.
//!
//! Every watch event carries the pod's managed fields, a tree of nested maps
//! per field manager that `FieldsV1` parses into a `serde_json::Value`. The
//! controller never reads them, yet building and freeing those trees was the
//! largest cost of parsing a watch event: the parser skips them here without
//! allocating.
//!
//! A parsed `Pod` stores every optional field of its spec, its containers,
//! volumes and probes inline: a small pod is several kilobytes parsed and
//! about half of that as JSON. The store holds every pod of the node for as
//! long as it lives, and a pod is read only when its key is synced, so the
//! text is what is kept.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// The annotation `kubectl apply` keeps a copy of the whole object in; never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A pod without its managed fields and the last-applied annotation, its
/// spec and status kept as JSON text ([`LeanPod::pod`] parses them).
#[derive(Clone, Debug, Default)]
pub struct LeanPod {
    metadata: ObjectMeta,
    spec: Option<Json>,
    status: Option<Json>,
}

impl LeanPod {
    /// The whole pod, parsed. Fails only on a spec or status that is valid
    /// JSON but not a pod's (an apiserver never sends one).
    pub fn pod(&self) -> Result<Pod, serde_json::Error> {
        Ok(Pod {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(Json::parse::<PodSpec>).transpose()?,
            status: self
                .status
                .as_ref()
                .map(Json::parse::<PodStatus>)
                .transpose()?,
        })
    }
}

/// A JSON value as compact text, taken from whatever the deserializer reads
/// (the watch's text, or the buffered fields of a list's items).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Json(Box<str>);

impl Json {
    fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::with_capacity(512);
        serde_transcode::transcode(d, &mut serde_json::Serializer::new(&mut out))
            .map_err(D::Error::custom)?;
        String::from_utf8(out)
            .map(|s| Json(s.into_boxed_str()))
            .map_err(D::Error::custom)
    }
}

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
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The pod on the wire; `apiVersion` and `kind` are not read. A `null`
/// spec or status is as good as none.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Json>,
    status: Option<Json>,
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
        let present = |j: Option<Json>| j.filter(|j| &*j.0 != "null");
        Ok(LeanPod {
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
            spec: present(spec),
            status: present(status),
        })
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
        let lean: LeanPod = serde_json::from_str(&json.to_string()).unwrap();
        let mut full: Pod = serde_json::from_value(json).unwrap();
        full.metadata.managed_fields = None;
        full.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(LAST_APPLIED);
        let parsed = lean.pod().unwrap();
        assert_eq!(parsed, full);
        assert_eq!(parsed.metadata.annotations.unwrap().len(), 1);
    }

    #[test]
    fn items_of_a_list_parse_too() {
        // A list's items reach the parser buffered (kube's `ObjectList`
        // flattens its fields), not as text.
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": "p", "namespace": "ns"},
                       "spec": {"containers": [{"name": "c", "image": "i", "args": ["a \"b\"", "\u{e9}\\"]}]},
                       "status": {"phase": "Pending"}}]
        });
        let parsed: kube::core::ObjectList<LeanPod> =
            serde_json::from_str(&list.to_string()).unwrap();
        let pod = parsed.items[0].pod().unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.containers[0].args.as_deref(),
            Some(&["a \"b\"".to_string(), "\u{e9}\\".to_string()][..])
        );
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn a_spec_that_is_not_a_pods_fails_when_read_not_when_watched() {
        let lean: LeanPod = serde_json::from_str(
            r#"{"metadata": {"name": "p"}, "spec": {"containers": "none"}, "status": null}"#,
        )
        .unwrap();
        assert_eq!(lean.metadata.name.as_deref(), Some("p"));
        assert!(lean.status.is_none());
        assert!(lean.pod().is_err());
    }

    #[test]
    fn a_pod_without_metadata_or_spec_parses() {
        let lean: LeanPod = serde_json::from_str(r#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap();
        assert_eq!(lean.pod().unwrap(), Pod::default());
        assert!(serde_json::from_str::<LeanPod>(r#"{"metadata": 3}"#).is_err());
    }
}
