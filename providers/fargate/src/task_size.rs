//! The size of a Fargate task: the valid CPU/memory pairs and the
//! ephemeral storage range, and the smallest valid size that holds a pod's
//! totals (AWS ECS developer guide, "Task CPU and memory", "Fargate task
//! ephemeral storage"). ECS itself refuses a pair outside the table, but
//! its stand-in does not: the provider checks before it asks.

use vk_core::quantity::divide_ceil;
use vk_core::toolkit::pod_resources::ResourceTotals;

const MIB: i128 = 1024 * 1024;
const GIB: i128 = 1024 * MIB;

/// Valid task memory for each CPU size: (CPU units, first MiB, last MiB, step MiB).
const PAIRS: [(u32, u32, u32, u32); 7] = [
    (256, 512, 2048, 0),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// 0.25 vCPU takes 512 MiB, 1 GB or 2 GB: not a regular step.
const QUARTER_VCPU_MEMORY: [u32; 3] = [512, 1024, 2048];

/// Ephemeral storage a task gets without asking, in GiB.
pub const DEFAULT_STORAGE_GIB: i64 = 20;
/// The least ephemeral storage one can ask for, in GiB.
pub const MIN_STORAGE_GIB: i64 = 21;
/// The most ephemeral storage a task can have, in GiB.
pub const MAX_STORAGE_GIB: i64 = 200;

/// A valid task size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSize {
    /// CPU units (1024 = 1 vCPU).
    pub cpu_units: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Ephemeral storage in GiB, when more than the default 20.
    pub storage_gib: Option<i32>,
}

/// Every valid (CPU units, memory MiB) pair, smallest first.
pub fn valid_pairs() -> impl Iterator<Item = (u32, u32)> {
    PAIRS.iter().flat_map(|&(cpu, first, last, step)| {
        let memories: Vec<u32> = if step == 0 {
            QUARTER_VCPU_MEMORY.to_vec()
        } else {
            (first..=last).step_by(step as usize).collect()
        };
        memories.into_iter().map(move |m| (cpu, m))
    })
}

/// `a / b` rounded up, for non-negative `a` and positive `b`.
fn ceil(a: i128, b: i128) -> i128 {
    divide_ceil(a, b).unwrap_or(i128::MAX)
}

fn shown_cpu(millis: i128) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

impl TaskSize {
    /// The smallest valid size that holds `sizing` (each container's limit
    /// where set, else its request): the least CPU, then the least memory.
    /// A pod that names nothing gets the smallest task. `Err` says, in a
    /// sentence, why no task can hold the pod.
    pub fn for_pod(sizing: &ResourceTotals) -> Result<TaskSize, String> {
        for (resource, _) in sizing.iter() {
            let known = matches!(resource, "cpu" | "memory" | "ephemeral-storage");
            if !known && !resource.starts_with("hugepages-") {
                return Err(format!(
                    "Fargate tasks offer no {resource}: the pod asks for it"
                ));
            }
        }
        let millis = sizing.cpu_millis().unwrap_or(0).max(0);
        let bytes = sizing.memory_bytes().unwrap_or(0).max(0);
        // CPU units are 1024 per core: round up to whole units.
        let units = ceil(millis * 1024, 1000);
        let mib = ceil(bytes, MIB);
        let Some((cpu_units, memory_mib)) =
            valid_pairs().find(|&(c, m)| i128::from(c) >= units && i128::from(m) >= mib)
        else {
            return Err(format!(
                "the pod needs {} CPU and {mib} MiB of memory; the largest Fargate task has 16 vCPU and 120 GiB",
                shown_cpu(millis)
            ));
        };
        let storage_gib = match sizing.units("ephemeral-storage") {
            Some(b) if b > i128::from(DEFAULT_STORAGE_GIB) * GIB => {
                let gib = ceil(b, GIB);
                if gib > i128::from(MAX_STORAGE_GIB) {
                    return Err(format!(
                        "the pod needs {gib} GiB of ephemeral storage; a Fargate task has at most {MAX_STORAGE_GIB} GiB"
                    ));
                }
                // 21..=200: fits.
                i32::try_from(gib.max(i128::from(MIN_STORAGE_GIB))).ok()
            }
            _ => None,
        };
        Ok(TaskSize {
            cpu_units,
            memory_mib,
            storage_gib,
        })
    }

    /// The task's `cpu` field (`"256"`).
    pub fn cpu(&self) -> String {
        self.cpu_units.to_string()
    }

    /// The task's `memory` field (`"512"`).
    pub fn memory(&self) -> String {
        self.memory_mib.to_string()
    }

    /// What was chosen, for the pod's event: `0.5 vCPU and 1024 MiB`.
    pub fn describe(&self) -> String {
        let vcpu = f64::from(self.cpu_units) / 1024.0;
        let storage = self
            .storage_gib
            .map(|g| format!(", {g} GiB of ephemeral storage"))
            .unwrap_or_default();
        format!("{vcpu} vCPU and {} MiB{storage}", self.memory_mib)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use serde_json::json;
    use vk_core::toolkit::pod_resources::pod_resources;

    fn sizing(resources: serde_json::Value) -> ResourceTotals {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "a", "resources": resources}]
        }))
        .unwrap();
        pod_resources(&spec).unwrap().sizing
    }

    #[test]
    fn the_table_is_the_documented_one() {
        let pairs: Vec<(u32, u32)> = valid_pairs().collect();
        // 3 + 4 + 7 + 13 + 23 + 12 + 12
        assert_eq!(pairs.len(), 74);
        assert_eq!(pairs.first(), Some(&(256, 512)));
        assert_eq!(pairs.last(), Some(&(16384, 122880)));
        for want in [
            (256, 2048),
            (512, 3072),
            (1024, 8192),
            (4096, 30720),
            (8192, 20480),
        ] {
            assert!(pairs.contains(&want), "{want:?}");
        }
        for absent in [
            (256, 1536),
            (256, 4096),
            (512, 512),
            (8192, 18432),
            (16384, 36864),
        ] {
            assert!(!pairs.contains(&absent), "{absent:?}");
        }
        let mut sorted = pairs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, pairs, "smallest first");
    }

    #[test]
    fn the_smallest_valid_size_holds_the_pod() {
        let cases = [
            ("nothing asked", json!({}), (256, 512, None)),
            (
                "a little",
                json!({"requests": {"cpu": "100m", "memory": "64Mi"}}),
                (256, 512, None),
            ),
            (
                "300m/700Mi",
                json!({"requests": {"cpu": "300m", "memory": "700Mi"}}),
                (512, 1024, None),
            ),
            (
                "250m exactly",
                json!({"requests": {"cpu": "250m", "memory": "512Mi"}}),
                (256, 512, None),
            ),
            (
                "quarter core, 3 GiB",
                json!({"requests": {"cpu": "250m", "memory": "3Gi"}}),
                (512, 3072, None),
            ),
            (
                "limits win",
                json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "2", "memory": "5Gi"}}),
                (2048, 5120, None),
            ),
            (
                "memory only",
                json!({"requests": {"memory": "9Gi"}}),
                (2048, 9216, None),
            ),
            (
                "memory beyond 4 vCPU",
                json!({"requests": {"memory": "31Gi"}}),
                (8192, 32768, None),
            ),
            (
                "a big one",
                json!({"requests": {"cpu": "16", "memory": "120Gi"}}),
                (16384, 122880, None),
            ),
            (
                "storage by default",
                json!({"requests": {"ephemeral-storage": "20Gi"}}),
                (256, 512, None),
            ),
            (
                "more storage",
                json!({"requests": {"ephemeral-storage": "20.5Gi"}}),
                (256, 512, Some(21)),
            ),
            (
                "storage rounds up",
                json!({"limits": {"ephemeral-storage": "100G"}}),
                (256, 512, Some(94)),
            ),
        ];
        for (what, resources, (cpu, memory, storage)) in cases {
            let got = TaskSize::for_pod(&sizing(resources)).unwrap();
            assert_eq!(
                (got.cpu_units, got.memory_mib, got.storage_gib),
                (cpu, memory, storage),
                "{what}"
            );
        }
    }

    #[test]
    fn a_pod_too_big_or_with_devices_is_refused_in_a_sentence() {
        let cases = [
            (json!({"requests": {"cpu": "17"}}), "needs 17 CPU and 0 MiB"),
            (
                json!({"requests": {"memory": "121Gi"}}),
                "largest Fargate task has 16 vCPU and 120 GiB",
            ),
            (json!({"requests": {"cpu": "16500m"}}), "needs 16500m CPU"),
            (
                json!({"requests": {"ephemeral-storage": "201Gi"}}),
                "201 GiB of ephemeral storage; a Fargate task has at most 200 GiB",
            ),
            (
                json!({"limits": {"nvidia.com/gpu": "1"}}),
                "Fargate tasks offer no nvidia.com/gpu",
            ),
        ];
        for (resources, want) in cases {
            let err = TaskSize::for_pod(&sizing(resources.clone())).unwrap_err();
            assert!(err.contains(want), "{resources}: {err}");
        }
    }

    #[test]
    fn sizes_describe_themselves() {
        let s = TaskSize {
            cpu_units: 512,
            memory_mib: 1024,
            storage_gib: None,
        };
        assert_eq!((s.cpu().as_str(), s.memory().as_str()), ("512", "1024"));
        assert_eq!(s.describe(), "0.5 vCPU and 1024 MiB");
        let s = TaskSize {
            cpu_units: 256,
            memory_mib: 512,
            storage_gib: Some(40),
        };
        assert_eq!(
            s.describe(),
            "0.25 vCPU and 512 MiB, 40 GiB of ephemeral storage"
        );
    }
}
