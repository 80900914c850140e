//! A container's requests and limits → ACI's, in ACI's steps (0.01 core,
//! 0.1 GB, rounded up), and the group made big enough for every limit and
//! every init container (ACI sizes a group as the sum of its containers'
//! requests and gives init containers no resources of their own).

use k8s_openapi::api::core::v1::Container as KubeContainer;
use vk_core::ProviderResult;
use vk_core::quantity::parse_nanos;

use super::annotations::ANNOTATION_GPU_SKU;
use super::invalid;
use crate::models::{
    Container, GpuResource, ResourceLimits, ResourceRequests, ResourceRequirements,
};

/// Requests of a container that names none: upstream azure-aci's defaults.
const DEFAULT_CPU_CENTI: i128 = 100;
const DEFAULT_MEMORY_DECI_GB: i128 = 15;

/// A quantity in whole `step`s of nano-units, rounded up.
fn steps(
    c: &KubeContainer,
    list: &str,
    resource: &str,
    text: &str,
    step: i128,
) -> ProviderResult<i128> {
    let nanos = parse_nanos(text).map_err(|e| {
        invalid(format!(
            "container {:?} {list} {resource} {text:?}: {e}",
            c.name
        ))
    })?;
    Ok((nanos.max(0) + step - 1) / step)
}

/// CPU in hundredths of a core, memory in tenths of a GB.
const CENTI_CORE: i128 = 10_000_000;
const DECI_GB: i128 = 100_000_000 * 1_000_000_000;

pub(super) fn resources(
    c: &KubeContainer,
    gpu_sku: Option<&str>,
) -> ProviderResult<ResourceRequirements> {
    let r = c.resources.as_ref();
    let get = |list: &str, resource: &str| -> ProviderResult<Option<i128>> {
        let map = match list {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        match map.and_then(|m| m.get(resource)) {
            None => Ok(None),
            Some(q) => {
                let step = if resource == "cpu" {
                    CENTI_CORE
                } else {
                    DECI_GB
                };
                steps(c, list, resource, &q.0, step).map(|s| Some(s.max(1)))
            }
        }
    };
    let cpu_limit = get("limits", "cpu")?;
    let memory_limit = get("limits", "memory")?;
    let cpu = get("requests", "cpu")?
        .or(cpu_limit)
        .unwrap_or(DEFAULT_CPU_CENTI.min(cpu_limit.unwrap_or(i128::MAX)));
    let memory = get("requests", "memory")?
        .or(memory_limit)
        .unwrap_or(DEFAULT_MEMORY_DECI_GB.min(memory_limit.unwrap_or(i128::MAX)));
    let gpu_of = |list: &str| -> ProviderResult<Option<GpuResource>> {
        let map = match list {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        let Some(q) = map.and_then(|m| m.get("nvidia.com/gpu")) else {
            return Ok(None);
        };
        let count = steps(c, list, "nvidia.com/gpu", &q.0, 1_000_000_000)?;
        let sku = gpu_sku.ok_or_else(|| {
            invalid(format!(
                "container {:?} asks for nvidia.com/gpu: set annotation {ANNOTATION_GPU_SKU} (K80, P100 or V100)",
                c.name
            ))
        })?;
        Ok(Some(GpuResource {
            count: i32::try_from(count).unwrap_or(i32::MAX),
            sku: sku.to_string(),
        }))
    };
    let gpu_limit = gpu_of("limits")?;
    let gpu = gpu_of("requests")?.or_else(|| gpu_limit.clone());
    let limits =
        (cpu_limit.is_some() || memory_limit.is_some() || gpu_limit.is_some()).then(|| {
            ResourceLimits {
                cpu: cpu_limit.map(|l| cores(l.max(cpu))),
                memory_in_gb: memory_limit.map(|l| gigabytes(l.max(memory))),
                gpu: gpu_limit,
            }
        });
    Ok(ResourceRequirements {
        requests: ResourceRequests {
            cpu: cores(cpu),
            memory_in_gb: gigabytes(memory),
            gpu,
        },
        limits,
    })
}

fn cores(centi: i128) -> f64 {
    centi as f64 / 100.0
}

fn gigabytes(deci: i128) -> f64 {
    deci as f64 / 10.0
}

fn centi(cores: f64) -> i128 {
    (cores * 100.0).round() as i128
}

fn deci(gb: f64) -> i128 {
    (gb * 10.0).round() as i128
}

/// Grows requests so the group (the sum of requests) holds every limit.
pub(super) fn fit_limits(containers: &mut [Container]) {
    type Get = fn(&ResourceRequirements) -> (i128, Option<i128>);
    type Set = fn(&mut ResourceRequests, i128);
    let dims: [(Get, Set); 2] = [
        (
            |r| {
                (
                    centi(r.requests.cpu),
                    r.limits.as_ref().and_then(|l| l.cpu).map(centi),
                )
            },
            |r, v| r.cpu = cores(v),
        ),
        (
            |r| {
                (
                    deci(r.requests.memory_in_gb),
                    r.limits.as_ref().and_then(|l| l.memory_in_gb).map(deci),
                )
            },
            |r, v| r.memory_in_gb = gigabytes(v),
        ),
    ];
    for (get, set) in dims {
        let total: i128 = containers
            .iter()
            .map(|c| get(&c.properties.resources).0)
            .sum();
        let Some((index, limit)) = containers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, get(&c.properties.resources).1?)))
            .max_by_key(|(_, l)| *l)
        else {
            continue;
        };
        if limit > total
            && let Some(c) = containers.get_mut(index)
        {
            let own = get(&c.properties.resources).0;
            set(&mut c.properties.resources.requests, own + limit - total);
        }
    }
}

/// What an init container needs of the group: the larger of its request
/// and its limit, CPU in hundredths of a core and memory in tenths of a GB
/// (0 when it names none).
pub(super) fn init_size(c: &KubeContainer) -> ProviderResult<(i128, i128)> {
    let r = c.resources.as_ref();
    let mut size = (0, 0);
    for map in [
        r.and_then(|r| r.requests.as_ref()),
        r.and_then(|r| r.limits.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(q) = map.get("cpu") {
            size.0 = size.0.max(steps(c, "resources", "cpu", &q.0, CENTI_CORE)?);
        }
        if let Some(q) = map.get("memory") {
            size.1 = size.1.max(steps(c, "resources", "memory", &q.0, DECI_GB)?);
        }
    }
    Ok(size)
}

/// Grows the first container's requests so the group holds the largest init
/// container (init containers run one at a time, before the containers).
pub(super) fn fit_init_containers(containers: &mut [Container], init_sizes: &[(i128, i128)]) {
    let cpu_total: i128 = containers
        .iter()
        .map(|c| centi(c.properties.resources.requests.cpu))
        .sum();
    let memory_total: i128 = containers
        .iter()
        .map(|c| deci(c.properties.resources.requests.memory_in_gb))
        .sum();
    let cpu_need = init_sizes.iter().map(|s| s.0).max().unwrap_or(0);
    let memory_need = init_sizes.iter().map(|s| s.1).max().unwrap_or(0);
    let Some(first) = containers.first_mut() else {
        return;
    };
    let requests = &mut first.properties.resources.requests;
    if cpu_need > cpu_total {
        requests.cpu = cores(centi(requests.cpu) + cpu_need - cpu_total);
    }
    if memory_need > memory_total {
        requests.memory_in_gb = gigabytes(deci(requests.memory_in_gb) + memory_need - memory_total);
    }
}
