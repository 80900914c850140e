//! Kubelet admission: whether a pod the node sees for the first time may run
//! here at all. The scheduler normally checks resources, but a pod bound
//! directly (`spec.nodeName` set by its author) bypasses it; the kubelet
//! then refuses what the node cannot hold, and so does this core.
//!
//! - **Volumes**: a volume of a type the provider does not honour
//!   ([`crate::Provider::volume_types`]) refuses the pod, reason
//!   `UnsupportedVolume`: running it without the volume would be a silent lie.
//! - **Resources**, as the kubelet's `noderesources` fit: one more pod than
//!   `pods` allows is `OutOfpods`; a request of a resource the node
//!   advertises beyond what is left (allocatable minus the requests of the
//!   pods already admitted and not finished) is `OutOf<resource>`
//!   (`OutOfcpu`, `OutOfmemory`, `OutOfnvidia.com/gpu`), with the kubelet's
//!   message (CPU in millicores, other resources in whole units).
//!
//! Decided once per pod, the first time the core would create it, and in a
//! stable order whatever order the workers pick pods in: the pods not yet
//! decided that were created before it (creation time, then namespace and
//! name, as the kubelet sorts them) are decided first. [`fit`] and
//! [`volume_refusal`] are pure; [`Admission`] holds the decisions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::backend::ObjectKey;
use crate::quantity::parse_nanos;
use crate::toolkit::pod_resources::pod_resources;

const NANO: i128 = 1_000_000_000;

/// Amounts by resource name, in nano-units (`pods` counts pods).
pub type Amounts = BTreeMap<String, i128>;

/// Why a pod may not run on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The pod status reason and the event reason (`OutOfcpu`...).
    pub reason: String,
    /// What the event says; the pod status says "Pod was rejected: " and this.
    pub message: String,
}

/// Node allocatable as the node status reports it, parsed. Quantities that
/// do not parse are left out (not checked).
pub fn parse_allocatable(alloc: &BTreeMap<String, String>) -> Amounts {
    alloc
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), parse_nanos(v).ok()?)))
        .collect()
}

/// What a pod requests, as the kubelet counts it (see `toolkit::pod_resources`);
/// a quantity that does not parse counts as nothing.
pub fn pod_requests(pod: &Pod) -> Amounts {
    pod.spec
        .as_ref()
        .and_then(|s| pod_resources(s).ok())
        .map(|r| r.requests.iter().map(|(k, v)| (k.to_string(), v)).collect())
        .unwrap_or_default()
}

/// An amount in the unit of the kubelet's message: millicores for CPU, whole
/// units (bytes, devices) otherwise, rounded up.
fn display(resource: &str, nanos: i128) -> i128 {
    let unit = if resource == "cpu" { NANO / 1000 } else { NANO };
    (nanos + unit - 1).div_euclid(unit)
}

fn insufficient(resource: &str, requested: i128, used: i128, capacity: i128) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {}, used: {}, capacity: {}",
            display(resource, requested),
            display(resource, used),
            display(resource, capacity),
        ),
    }
}

/// Whether a pod requesting `requests` fits beside `admitted` (the requests
/// of the node's admitted, unfinished pods) within `allocatable`. The pod
/// count first, then CPU, memory, and the other resources by name, as the
/// kubelet checks them. Only resources the node advertises are checked.
pub fn fit(
    allocatable: &Amounts,
    admitted: &[&Amounts],
    requests: &Amounts,
) -> Result<(), Rejection> {
    if let Some(&pods) = allocatable.get("pods") {
        let used = admitted.len() as i128 * NANO;
        if used + NANO > pods {
            return Err(insufficient("pods", NANO, used, pods));
        }
    }
    let mut order: Vec<&String> = requests.keys().filter(|k| *k != "pods").collect();
    order.sort_by_key(|k| match k.as_str() {
        "cpu" => (0, k.as_str()),
        "memory" => (1, k.as_str()),
        _ => (2, k.as_str()),
    });
    for resource in order {
        let requested = requests.get(resource).copied().unwrap_or(0);
        let Some(&capacity) = allocatable.get(resource) else {
            continue;
        };
        if requested <= 0 {
            continue;
        }
        let used: i128 = admitted
            .iter()
            .map(|a| a.get(resource).copied().unwrap_or(0))
            .sum();
        if used + requested > capacity {
            return Err(insufficient(resource, requested, used, capacity));
        }
    }
    Ok(())
}

/// The type name of a volume as its field in the API is spelt
/// (`hostPath`, `nfs`, `csi`, `emptyDir`...).
pub fn volume_type(v: &Volume) -> &'static str {
    macro_rules! first_set {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if v.$field.is_some() { return $name; })*
        };
    }
    first_set! {
        empty_dir => "emptyDir", config_map => "configMap", secret => "secret",
        downward_api => "downwardAPI", projected => "projected",
        persistent_volume_claim => "persistentVolumeClaim", ephemeral => "ephemeral",
        host_path => "hostPath", nfs => "nfs", csi => "csi", iscsi => "iscsi",
        image => "image", aws_elastic_block_store => "awsElasticBlockStore",
        azure_disk => "azureDisk", azure_file => "azureFile", cephfs => "cephfs",
        cinder => "cinder", fc => "fc", flex_volume => "flexVolume", flocker => "flocker",
        gce_persistent_disk => "gcePersistentDisk", git_repo => "gitRepo",
        glusterfs => "glusterfs", photon_persistent_disk => "photonPersistentDisk",
        portworx_volume => "portworxVolume", quobyte => "quobyte", rbd => "rbd",
        scale_io => "scaleIO", storageos => "storageos", vsphere_volume => "vsphereVolume",
    }
    // No source at all is an emptyDir to the API server's defaulting.
    "emptyDir"
}

/// The refusal of a pod with a volume the provider does not honour;
/// `honoured` is the provider's list (`None`: every type).
pub fn volume_refusal(pod: &Pod, provider: &str, honoured: Option<&[&str]>) -> Option<Rejection> {
    let honoured = honoured?;
    let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
    let v = volumes
        .iter()
        .find(|v| !honoured.contains(&volume_type(v)))?;
    Some(Rejection {
        reason: "UnsupportedVolume".into(),
        message: format!(
            "volume {:?} is of type {}, which the {provider} provider does not support (it supports: {})",
            v.name,
            volume_type(v),
            honoured.join(", "),
        ),
    })
}

/// One pod as admission orders and counts it.
pub struct Candidate {
    /// Its namespace and name.
    pub key: ObjectKey,
    /// Its UID.
    pub uid: String,
    /// Creation time (RFC 3339 sorts as time), namespace, name: the order.
    pub order: (String, String, String),
    /// Whether the backend runs it already: admitted, whatever the order.
    pub running: bool,
    /// Whether the pod is finished or being deleted: not admitted, not counted.
    pub finished: bool,
    /// Its requests.
    pub requests: Amounts,
    /// Its volume refusal, if any.
    pub refusal: Option<Rejection>,
}

#[derive(Clone, Debug)]
enum Decision {
    Admitted(Amounts),
    Rejected(Rejection),
    /// Finished, or finished before it was decided: never counted.
    Ignored,
}

/// The decisions of one node, by pod (namespace and name, with the UID
/// decided: a recreated pod of the same name is decided anew).
#[derive(Default)]
pub struct Admission {
    decided: Mutex<HashMap<ObjectKey, (String, Decision)>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    /// How the pod `uid` was decided, when it was.
    pub fn decided(&self, key: &ObjectKey, uid: &str) -> Option<Result<(), Rejection>> {
        match locked(&self.decided).get(key) {
            Some((u, Decision::Admitted(_))) if u == uid => Some(Ok(())),
            Some((u, Decision::Rejected(r))) if u == uid => Some(Err(r.clone())),
            _ => None,
        }
    }

    /// Counts a pod the backend runs (adopted, or created) as admitted.
    pub fn running(&self, key: &ObjectKey, uid: &str, requests: impl FnOnce() -> Amounts) {
        let mut d = locked(&self.decided);
        if !matches!(d.get(key), Some((u, Decision::Admitted(_))) if u == uid) {
            d.insert(
                key.clone(),
                (uid.to_string(), Decision::Admitted(requests())),
            );
        }
    }

    /// A pod that finished no longer holds resources.
    pub fn release(&self, key: &ObjectKey, uid: &str) {
        if let Some((u, d)) = locked(&self.decided).get_mut(key)
            && u == uid
        {
            *d = Decision::Ignored;
        }
    }

    /// Forgets a pod that is gone from the API.
    pub fn forget(&self, key: &ObjectKey) {
        locked(&self.decided).remove(key);
    }

    /// Decides the pod `uid` under `key`: pods the backend runs count as
    /// admitted, every undecided pod ordered before it is decided first (in
    /// order), then the pod itself. `undecided` is called under the lock (so
    /// two workers never admit past the node's size) with a test of what is
    /// decided already, and returns the node's other pods.
    pub fn admit(
        &self,
        key: &ObjectKey,
        uid: &str,
        allocatable: &Amounts,
        undecided: impl FnOnce(&dyn Fn(&ObjectKey, &str) -> bool) -> Vec<Candidate>,
    ) -> Result<(), Rejection> {
        let mut d = locked(&self.decided);
        match d.get(key) {
            Some((u, Decision::Admitted(_))) if u == uid => return Ok(()),
            Some((u, Decision::Rejected(r))) if u == uid => return Err(r.clone()),
            _ => {}
        }
        let known = |k: &ObjectKey, u: &str| d.get(k).is_some_and(|(x, _)| x == u);
        let mut pending = undecided(&known);
        for c in pending.iter_mut().filter(|c| c.running && !c.finished) {
            let requests = std::mem::take(&mut c.requests);
            d.insert(c.key.clone(), (c.uid.clone(), Decision::Admitted(requests)));
        }
        pending.retain(|c| !c.running);
        pending.sort_by(|a, b| a.order.cmp(&b.order));
        let Some(upto) = pending.iter().position(|c| c.uid == uid) else {
            // Not in the store: nothing to order it against.
            return Ok(());
        };
        let mut result = Ok(());
        for c in pending.into_iter().take(upto + 1) {
            let decision = if c.finished {
                Decision::Ignored
            } else {
                let admitted: Vec<&Amounts> = d
                    .values()
                    .filter_map(|(_, x)| match x {
                        Decision::Admitted(a) => Some(a),
                        _ => None,
                    })
                    .collect();
                match c
                    .refusal
                    .map_or_else(|| fit(allocatable, &admitted, &c.requests), Err)
                {
                    Ok(()) => Decision::Admitted(c.requests),
                    Err(r) => Decision::Rejected(r),
                }
            };
            if c.uid == uid {
                result = match &decision {
                    Decision::Rejected(r) => Err(r.clone()),
                    _ => Ok(()),
                };
            }
            d.insert(c.key, (c.uid, decision));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, HostPathVolumeSource, NFSVolumeSource, PodSpec,
    };

    fn amounts(items: &[(&str, &str)]) -> Amounts {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), parse_nanos(v).unwrap()))
            .collect()
    }

    #[test]
    fn fits() {
        let node = amounts(&[
            ("cpu", "20"),
            ("memory", "100Gi"),
            ("pods", "3"),
            ("nvidia.com/gpu", "4"),
        ]);
        let half = amounts(&[("cpu", "10"), ("memory", "1Gi")]);
        let none = Amounts::new();
        // (name, admitted pods' requests, the pod's requests, the answer)
        type Case<'a> = (
            &'a str,
            Vec<&'a Amounts>,
            Amounts,
            Result<(), (&'a str, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "empty node, small pod",
                vec![],
                amounts(&[("cpu", "1")]),
                Ok(()),
            ),
            (
                "1,000 CPUs on 20",
                vec![],
                amounts(&[("cpu", "1000")]),
                Err((
                    "OutOfcpu",
                    "Node didn't have enough resource: cpu, requested: 1000000, used: 0, capacity: 20000",
                )),
            ),
            (
                "exactly what is left",
                vec![&half],
                amounts(&[("cpu", "10")]),
                Ok(()),
            ),
            (
                "a millicore too many",
                vec![&half, &none],
                amounts(&[("cpu", "10001m")]),
                Err((
                    "OutOfcpu",
                    "Node didn't have enough resource: cpu, requested: 10001, used: 10000, capacity: 20000",
                )),
            ),
            (
                "memory",
                vec![&half],
                amounts(&[("memory", "100Gi")]),
                Err((
                    "OutOfmemory",
                    "Node didn't have enough resource: memory, requested: 107374182400, used: 1073741824, capacity: 107374182400",
                )),
            ),
            (
                "cpu is checked before memory",
                vec![],
                amounts(&[("memory", "200Gi"), ("cpu", "21")]),
                Err((
                    "OutOfcpu",
                    "Node didn't have enough resource: cpu, requested: 21000, used: 0, capacity: 20000",
                )),
            ),
            (
                "pods first",
                vec![&half, &none, &none],
                amounts(&[("cpu", "1000")]),
                Err((
                    "OutOfpods",
                    "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3",
                )),
            ),
            (
                "a pod requesting nothing",
                vec![&none, &none],
                none.clone(),
                Ok(()),
            ),
            (
                "an extended resource",
                vec![],
                amounts(&[("nvidia.com/gpu", "5")]),
                Err((
                    "OutOfnvidia.com/gpu",
                    "Node didn't have enough resource: nvidia.com/gpu, requested: 5, used: 0, capacity: 4",
                )),
            ),
            (
                "a resource the node does not advertise is not checked",
                vec![],
                amounts(&[("ephemeral-storage", "1Ti")]),
                Ok(()),
            ),
        ];
        for (name, admitted, requests, want) in cases {
            let got = fit(&node, &admitted, &requests);
            let want = want.map_err(|(r, m)| Rejection {
                reason: r.into(),
                message: m.into(),
            });
            assert_eq!(got, want, "{name}");
        }
    }

    fn with_volumes(volumes: Vec<Volume>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn volumes() {
        let empty = Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
        let host = Volume {
            name: "host".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/etc".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let nfs = Volume {
            name: "share".into(),
            nfs: Some(NFSVolumeSource::default()),
            ..Default::default()
        };
        let honoured: &[&str] = &["emptyDir", "configMap"];
        // (name, pod, the provider's volume types, the refusal's message)
        type Case<'a> = (&'a str, Pod, Option<&'a [&'a str]>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "emptyDir honoured",
                with_volumes(vec![empty.clone()]),
                Some(honoured),
                None,
            ),
            (
                "hostPath refused",
                with_volumes(vec![empty.clone(), host.clone()]),
                Some(honoured),
                Some(
                    "volume \"host\" is of type hostPath, which the mock provider does not support (it supports: emptyDir, configMap)",
                ),
            ),
            (
                "nfs refused",
                with_volumes(vec![nfs.clone()]),
                Some(honoured),
                Some(
                    "volume \"share\" is of type nfs, which the mock provider does not support (it supports: emptyDir, configMap)",
                ),
            ),
            (
                "a provider that honours every type",
                with_volumes(vec![host, nfs]),
                None,
                None,
            ),
            ("no volumes", Pod::default(), Some(honoured), None),
        ];
        for (name, pod, honoured, want) in cases {
            let got = volume_refusal(&pod, "mock", honoured);
            assert_eq!(got.as_ref().map(|r| r.message.as_str()), want, "{name}");
            if let Some(r) = got {
                assert_eq!(r.reason, "UnsupportedVolume");
            }
        }
    }

    fn candidate(uid: &str, created: &str, cpu: &str) -> Candidate {
        Candidate {
            key: ("ns".into(), uid.into()),
            uid: uid.into(),
            order: (created.into(), "ns".into(), uid.into()),
            running: false,
            finished: false,
            requests: amounts(&[("cpu", cpu)]),
            refusal: None,
        }
    }

    fn key(name: &str) -> ObjectKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn decided_once_in_creation_order() {
        let node = amounts(&[("cpu", "4"), ("pods", "10")]);
        let admission = Admission::default();
        let all = || {
            let mut adopted = candidate("adopted", "2026-01-01T00:00:09Z", "0");
            adopted.running = true;
            vec![
                candidate("late", "2026-01-01T00:00:03Z", "3"),
                candidate("early", "2026-01-01T00:00:01Z", "2"),
                candidate("small", "2026-01-01T00:00:02Z", "1"),
                adopted,
            ]
        };
        let undecided = |known: &dyn Fn(&ObjectKey, &str) -> bool| {
            all()
                .into_iter()
                .filter(|c| !known(&c.key, &c.uid))
                .collect::<Vec<_>>()
        };
        // The late pod is seen first, yet the earlier ones are decided before it.
        let late = admission.admit(&key("late"), "late", &node, undecided);
        assert_eq!(late.unwrap_err().reason, "OutOfcpu");
        assert_eq!(admission.decided(&key("early"), "early"), Some(Ok(())));
        assert_eq!(admission.decided(&key("small"), "small"), Some(Ok(())));
        assert_eq!(admission.decided(&key("adopted"), "adopted"), Some(Ok(())));
        // Once decided, always the same answer, even after room was made.
        admission.release(&key("early"), "early");
        let again = admission.admit(&key("late"), "late", &node, undecided);
        assert_eq!(again.unwrap_err().reason, "OutOfcpu");
        // A recreated pod of the same name is decided anew, in the room left.
        admission.forget(&key("late"));
        let fresh = || vec![candidate("late", "2026-01-01T00:00:04Z", "3")];
        let new = admission.admit(&key("late"), "late", &node, |known| {
            fresh()
                .into_iter()
                .filter(|c| !known(&c.key, &c.uid))
                .collect()
        });
        assert_eq!(new, Ok(()));
    }
}
