//! A pod's total resources, counted as the kubelet and the scheduler count
//! them, for backends that size a whole workload (a Fargate task's CPU and
//! memory, a container group's resources):
//!
//! - the app containers add up;
//! - an init container runs alone (with the sidecars started before it), so
//!   the pod needs the larger of the two;
//! - sidecars (init containers with `restartPolicy: Always`) keep running, so
//!   they add to the app containers and to every later init container;
//! - pod-level `spec.resources` replace the containers' sum for the resources
//!   they name; `spec.overhead` is added (to limits only where there is one).
//!
//! Three views: [`PodResources::requests`], [`PodResources::limits`] (a
//! container without a limit adds nothing), and [`PodResources::sizing`],
//! each container's limit where it has one, else its request: what a backend
//! that reserves a fixed size per workload must provide.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{QuantityError, divide_ceil, parse_nanos};
use crate::toolkit::restart::is_sidecar;

const NANO: i128 = 1_000_000_000;

/// Amounts by resource name (`cpu`, `memory`, `ephemeral-storage`,
/// `nvidia.com/gpu`...), exact, in nano-units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceTotals(BTreeMap<String, i128>);

impl ResourceTotals {
    /// The amount of `resource` in nano-units, when any container names it.
    pub fn nanos(&self, resource: &str) -> Option<i128> {
        self.0.get(resource).copied()
    }

    /// The amount of `resource` in whole units, rounded up (bytes for
    /// memory and storage, devices for extended resources).
    pub fn units(&self, resource: &str) -> Option<i128> {
        divide_ceil(self.nanos(resource)?, NANO)
    }

    /// CPU in millicores, rounded up.
    pub fn cpu_millis(&self) -> Option<i128> {
        divide_ceil(self.nanos("cpu")?, NANO / 1000)
    }

    /// Memory in bytes, rounded up.
    pub fn memory_bytes(&self) -> Option<i128> {
        self.units("memory")
    }

    /// The amount of `resource` as a quantity (`2`, `1500m`, `3n`).
    pub fn quantity(&self, resource: &str) -> Option<Quantity> {
        let n = self.nanos(resource)?;
        Some(Quantity(if n % NANO == 0 {
            (n / NANO).to_string()
        } else if n % (NANO / 1000) == 0 {
            format!("{}m", n / (NANO / 1000))
        } else {
            format!("{n}n")
        }))
    }

    /// Every resource and its amount in nano-units.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i128)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether no container names any resource.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A pod's totals (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodResources {
    /// What the pod requests.
    pub requests: ResourceTotals,
    /// Its limits, for the resources some container limits.
    pub limits: ResourceTotals,
    /// Limits where set, else requests: the size to reserve.
    pub sizing: ResourceTotals,
}

/// A quantity in the pod that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{place} {resource}: {source}")]
pub struct ResourceError {
    /// Where: `container "web" limits`, `pod overhead`...
    pub place: String,
    /// Which resource.
    pub resource: String,
    /// The quantity's error.
    pub source: QuantityError,
}

type Amounts = BTreeMap<String, i128>;

fn parse(list: Option<&BTreeMap<String, Quantity>>, place: &str) -> Result<Amounts, ResourceError> {
    list.into_iter()
        .flatten()
        .map(|(resource, q)| {
            let v = parse_nanos(&q.0).map_err(|source| ResourceError {
                place: place.to_string(),
                resource: resource.clone(),
                source,
            })?;
            Ok((resource.clone(), v))
        })
        .collect()
}

/// Requests, limits and sizing of one set of requirements.
fn views(r: Option<&ResourceRequirements>, place: &str) -> Result<[Amounts; 3], ResourceError> {
    let requests = parse(
        r.and_then(|r| r.requests.as_ref()),
        &format!("{place} requests"),
    )?;
    let limits = parse(
        r.and_then(|r| r.limits.as_ref()),
        &format!("{place} limits"),
    )?;
    let mut sizing = requests.clone();
    sizing.extend(limits.iter().map(|(k, v)| (k.clone(), *v)));
    Ok([requests, limits, sizing])
}

/// The kubelet's effective amount of one view: app containers plus
/// sidecars, or the largest init container with the sidecars before it.
fn effective(apps: &[&Amounts], inits: &[(&Amounts, bool)]) -> Amounts {
    let names: BTreeSet<&String> = apps
        .iter()
        .flat_map(|a| a.keys())
        .chain(inits.iter().flat_map(|(a, _)| a.keys()))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let get = |a: &Amounts| a.get(name).copied().unwrap_or(0);
            // The sidecars started so far run beside each later init
            // container; the sidecars alone never exceed what runs at the end.
            let mut sidecars = 0;
            let mut init_peak = 0;
            for (amounts, sidecar) in inits {
                if *sidecar {
                    sidecars += get(amounts);
                } else {
                    init_peak = init_peak.max(sidecars + get(amounts));
                }
            }
            let running: i128 = apps.iter().map(|a| get(a)).sum::<i128>() + sidecars;
            (name.clone(), running.max(init_peak))
        })
        .collect()
}

/// The pod's totals; an error names the container and resource of a
/// quantity that does not parse (the API server never lets one through).
pub fn pod_resources(spec: &PodSpec) -> Result<PodResources, ResourceError> {
    let apps = spec
        .containers
        .iter()
        .map(|c| views(c.resources.as_ref(), &format!("container {:?}", c.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let inits = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let v = views(
                c.resources.as_ref(),
                &format!("init container {:?}", c.name),
            )?;
            Ok((v, is_sidecar(c)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pod_level = views(spec.resources.as_ref(), "pod")?;
    let overhead = parse(spec.overhead.as_ref(), "pod overhead")?;
    let [requests, limits, sizing] = [0, 1, 2].map(|view| {
        let app_view: Vec<&Amounts> = apps.iter().map(|a| &a[view]).collect();
        let init_view: Vec<(&Amounts, bool)> = inits
            .iter()
            .map(|(v, sidecar)| (&v[view], *sidecar))
            .collect();
        let mut total = effective(&app_view, &init_view);
        total.extend(pod_level[view].iter().map(|(k, v)| (k.clone(), *v)));
        for (name, extra) in &overhead {
            // A limit stays unlimited: overhead is added to limits that exist.
            match total.get_mut(name) {
                Some(v) => *v += extra,
                None if view != 1 => {
                    total.insert(name.clone(), *extra);
                }
                None => {}
            }
        }
        ResourceTotals(total)
    });
    Ok(PodResources {
        requests,
        limits,
        sizing,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn c(name: &str, requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "resources": {"requests": requests, "limits": limits}})
    }

    fn sidecar(name: &str, requests: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "restartPolicy": "Always", "resources": {"requests": requests}})
    }

    /// `resource=quantity` of each resource of a view.
    fn shown(t: &ResourceTotals) -> Vec<String> {
        t.iter()
            .map(|(k, _)| format!("{k}={}", t.quantity(k).unwrap().0))
            .collect()
    }

    /// What, the pod spec, and the requests, limits and sizing it totals.
    type Case = (
        &'static str,
        serde_json::Value,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn totals_follow_the_kubelet() {
        let cases: [Case; 10] = [
            (
                "no resources",
                json!({"containers": [{"name": "a"}]}),
                &[],
                &[],
                &[],
            ),
            (
                "app containers add up",
                json!({"containers": [
                    c("a", json!({"cpu": "100m", "memory": "64Mi"}), json!({})),
                    c("b", json!({"cpu": "200m", "memory": "128Mi"}), json!({})),
                ]}),
                &["cpu=300m", "memory=201326592"],
                &[],
                &["cpu=300m", "memory=201326592"],
            ),
            (
                "a larger init container wins",
                json!({
                    "initContainers": [c("i", json!({"cpu": "1"}), json!({}))],
                    "containers": [c("a", json!({"cpu": "300m"}), json!({}))],
                }),
                &["cpu=1"],
                &[],
                &["cpu=1"],
            ),
            (
                "sidecars add to the apps and to later init containers",
                json!({
                    "initContainers": [
                        sidecar("s", json!({"cpu": "100m"})),
                        c("i", json!({"cpu": "250m"}), json!({})),
                    ],
                    "containers": [c("a", json!({"cpu": "200m"}), json!({}))],
                }),
                &["cpu=350m"],
                &[],
                &["cpu=350m"],
            ),
            (
                "an init container before a sidecar runs without it",
                json!({
                    "initContainers": [
                        c("i", json!({"cpu": "500m"}), json!({})),
                        sidecar("s", json!({"cpu": "100m"})),
                    ],
                    "containers": [c("a", json!({"cpu": "200m"}), json!({}))],
                }),
                &["cpu=500m"],
                &[],
                &["cpu=500m"],
            ),
            (
                "sidecars beyond the largest init container",
                json!({
                    "initContainers": [
                        c("i", json!({"cpu": "400m"}), json!({})),
                        sidecar("s", json!({"cpu": "300m"})),
                    ],
                    "containers": [c("a", json!({"cpu": "200m"}), json!({}))],
                }),
                &["cpu=500m"],
                &[],
                &["cpu=500m"],
            ),
            (
                "limits where set, else requests",
                json!({"containers": [
                    c("a", json!({"cpu": "100m", "memory": "1Gi"}), json!({"cpu": "500m", "memory": "2Gi"})),
                    c("b", json!({"cpu": "200m", "memory": "1Gi"}), json!({})),
                ]}),
                &["cpu=300m", "memory=2147483648"],
                &["cpu=500m", "memory=2147483648"],
                &["cpu=700m", "memory=3221225472"],
            ),
            (
                "extended resources and ephemeral storage",
                json!({
                    "initContainers": [c("i", json!({"ephemeral-storage": "10Gi"}), json!({}))],
                    "containers": [
                        c("a", json!({"nvidia.com/gpu": "1", "ephemeral-storage": "1Gi"}), json!({"nvidia.com/gpu": "1"})),
                        c("b", json!({"nvidia.com/gpu": "2"}), json!({"nvidia.com/gpu": "2"})),
                    ],
                }),
                &["ephemeral-storage=10737418240", "nvidia.com/gpu=3"],
                &["nvidia.com/gpu=3"],
                &["ephemeral-storage=10737418240", "nvidia.com/gpu=3"],
            ),
            (
                "overhead adds to requests, and to limits that exist",
                json!({
                    "overhead": {"cpu": "250m", "memory": "120Mi"},
                    "containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "2"}))],
                }),
                &["cpu=1250m", "memory=1199570944"],
                &["cpu=2250m"],
                &["cpu=2250m", "memory=1199570944"],
            ),
            (
                "pod-level resources replace the containers' sum",
                json!({
                    "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}},
                    "containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}), json!({}))],
                }),
                &["cpu=2", "memory=1073741824"],
                &["memory=4294967296"],
                &["cpu=2", "memory=4294967296"],
            ),
        ];
        for (what, s, requests, limits, sizing) in cases {
            let got = pod_resources(&spec(s)).unwrap();
            assert_eq!(shown(&got.requests), requests, "{what}: requests");
            assert_eq!(shown(&got.limits), limits, "{what}: limits");
            assert_eq!(shown(&got.sizing), sizing, "{what}: sizing");
        }
    }

    #[test]
    fn units_round_up() {
        let got = pod_resources(&spec(json!({"containers": [
            c("a", json!({"cpu": "1500u", "memory": "1500m", "nvidia.com/gpu": "1"}), json!({})),
        ]})))
        .unwrap();
        let r = &got.requests;
        assert_eq!(r.cpu_millis(), Some(2));
        assert_eq!(r.memory_bytes(), Some(2));
        assert_eq!(r.units("nvidia.com/gpu"), Some(1));
        assert_eq!(r.nanos("cpu"), Some(1_500_000));
        assert_eq!(r.quantity("cpu").unwrap().0, "1500000n");
        assert_eq!(r.nanos("ephemeral-storage"), None);
        assert!(got.limits.is_empty() && !r.is_empty());
    }

    #[test]
    fn a_bad_quantity_names_where_it_is() {
        let cases = [
            (
                json!({"containers": [c("web", json!({"cpu": "lots"}), json!({}))]}),
                "container \"web\" requests cpu",
            ),
            (
                json!({"initContainers": [c("i", json!({}), json!({"memory": "1Qi"}))], "containers": []}),
                "init container \"i\" limits memory",
            ),
            (
                json!({"overhead": {"cpu": "x"}, "containers": []}),
                "pod overhead cpu",
            ),
        ];
        for (s, want) in cases {
            let err = pod_resources(&spec(s)).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
