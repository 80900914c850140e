//! `GET /stats/summary` (kubelet stats v1alpha1 `Summary`) and `GET /metrics/resource`
//! (the Prometheus text metrics-server scrapes for `kubectl top`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::provider::{ContainerUsage, PodUsage};

fn ts(t: Option<jiff::Timestamp>) -> Value {
    t.map(|t| Value::String(t.to_string()))
        .unwrap_or(Value::Null)
}

fn cpu_mem(now: &str, cpu_ns: u64, nano_cores: u64, ws: u64, usage: u64) -> (Value, Value) {
    (
        json!({ "time": now, "usageNanoCores": nano_cores, "usageCoreNanoSeconds": cpu_ns }),
        json!({ "time": now, "workingSetBytes": ws, "usageBytes": usage }),
    )
}

fn sum(cs: &[ContainerUsage]) -> (u64, u64, u64, u64) {
    cs.iter().fold((0, 0, 0, 0), |a, c| {
        (
            a.0 + c.cpu_usage_core_nanoseconds,
            a.1 + c.cpu_usage_nano_cores,
            a.2 + c.memory_working_set_bytes,
            a.3 + c.memory_usage_bytes,
        )
    })
}

/// The `Summary` object for a node.
pub fn summary(node: &str, node_start: jiff::Timestamp, pods: &[PodUsage]) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let all: Vec<ContainerUsage> = pods
        .iter()
        .flat_map(|p| p.containers.iter().cloned())
        .collect();
    let (cpu_ns, nc, ws, usage) = sum(&all);
    let (ncpu, nmem) = cpu_mem(&now, cpu_ns, nc, ws, usage);
    let pods_json: Vec<Value> = pods
        .iter()
        .map(|p| {
            let (cpu_ns, nc, ws, usage) = sum(&p.containers);
            let (cpu, mem) = cpu_mem(&now, cpu_ns, nc, ws, usage);
            json!({
                "podRef": { "name": p.key.name, "namespace": p.key.namespace, "uid": p.key.uid },
                "startTime": ts(p.start_time),
                "containers": p.containers.iter().map(|c| {
                    let (cpu, mem) = cpu_mem(&now, c.cpu_usage_core_nanoseconds, c.cpu_usage_nano_cores, c.memory_working_set_bytes, c.memory_usage_bytes);
                    json!({ "name": c.name, "startTime": ts(c.start_time), "cpu": cpu, "memory": mem })
                }).collect::<Vec<_>>(),
                "cpu": cpu,
                "memory": mem,
            })
        })
        .collect();
    json!({
        "node": { "nodeName": node, "startTime": node_start.to_string(), "cpu": ncpu, "memory": nmem },
        "pods": pods_json,
    })
}

/// Prometheus text of `/metrics/resource`.
pub fn resource_metrics(pods: &[PodUsage]) -> String {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut out = String::new();
    let all: Vec<ContainerUsage> = pods
        .iter()
        .flat_map(|p| p.containers.iter().cloned())
        .collect();
    let (cpu_ns, _, ws, _) = sum(&all);
    let secs = |ns: u64| ns as f64 / 1e9;
    let _ = writeln!(
        out,
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds"
    );
    let _ = writeln!(out, "# TYPE node_cpu_usage_seconds_total counter");
    let _ = writeln!(
        out,
        "node_cpu_usage_seconds_total {} {now_ms}",
        secs(cpu_ns)
    );
    let _ = writeln!(
        out,
        "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes"
    );
    let _ = writeln!(out, "# TYPE node_memory_working_set_bytes gauge");
    let _ = writeln!(out, "node_memory_working_set_bytes {ws} {now_ms}");
    let _ = writeln!(
        out,
        "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds"
    );
    let _ = writeln!(out, "# TYPE pod_cpu_usage_seconds_total counter");
    for p in pods {
        let (cpu_ns, ..) = sum(&p.containers);
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {} {now_ms}",
            p.key.namespace,
            p.key.name,
            secs(cpu_ns)
        );
    }
    let _ = writeln!(
        out,
        "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes"
    );
    let _ = writeln!(out, "# TYPE pod_memory_working_set_bytes gauge");
    for p in pods {
        let (_, _, ws, _) = sum(&p.containers);
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {ws} {now_ms}",
            p.key.namespace, p.key.name
        );
    }
    let _ = writeln!(
        out,
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds"
    );
    let _ = writeln!(out, "# TYPE container_cpu_usage_seconds_total counter");
    for p in pods {
        for c in &p.containers {
            let _ = writeln!(
                out,
                "container_cpu_usage_seconds_total{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {now_ms}",
                c.name,
                p.key.namespace,
                p.key.name,
                secs(c.cpu_usage_core_nanoseconds)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes"
    );
    let _ = writeln!(out, "# TYPE container_memory_working_set_bytes gauge");
    for p in pods {
        for c in &p.containers {
            let _ = writeln!(
                out,
                "container_memory_working_set_bytes{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {now_ms}",
                c.name, p.key.namespace, p.key.name, c.memory_working_set_bytes
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds"
    );
    let _ = writeln!(out, "# TYPE container_start_time_seconds gauge");
    for p in pods {
        for c in &p.containers {
            if let Some(t) = c.start_time {
                let _ = writeln!(
                    out,
                    "container_start_time_seconds{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {} {now_ms}",
                    c.name,
                    p.key.namespace,
                    p.key.name,
                    t.as_second()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE scrape_error gauge");
    let _ = writeln!(out, "scrape_error 0");
    out
}
