//! The fake's state: groups and their containers, operations, tokens, the
//! request log; how a group advances, exits, and how ARM shows it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::contract::Contract;
use super::sessions::Session;
use super::{ExecRecord, FakeArmOptions, RecordedRequest, now_rfc3339};

#[derive(Clone, Debug)]
pub(super) struct ContainerRun {
    pub(super) name: String,
    pub(super) restart_count: i64,
    pub(super) current: Value,
    pub(super) previous: Option<Value>,
    pub(super) image: String,
    pub(super) events: Vec<Value>,
    /// Output lines: time (RFC 3339) and text.
    pub(super) logs: Vec<(String, String)>,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) request: Value,
    pub(super) ip: String,
    pub(super) provisioned_at: Option<Instant>,
    pub(super) deleting: bool,
    pub(super) updated: bool,
    /// Why provisioning failed (an image named `*unpullable*`).
    pub(super) failed: Option<String>,
    pub(super) containers: Vec<ContainerRun>,
}

#[derive(Debug)]
pub(super) enum OpKind {
    Put,
    Delete,
}

#[derive(Debug)]
pub(super) struct Operation {
    pub(super) group: String,
    pub(super) kind: OpKind,
    pub(super) polls: u32,
}

pub(super) struct State {
    pub(super) options: FakeArmOptions,
    pub(super) contract: Contract,
    pub(super) started: Instant,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) ops: HashMap<String, Operation>,
    /// Tokens issued, with when each expires.
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) violations: Vec<String>,
    pub(super) sessions: HashMap<String, Session>,
    pub(super) exec_log: Vec<ExecRecord>,
    pub(super) faults: VecDeque<(u16, u64)>,
    /// A share of ARM calls answered with a fault (see [`FaultRate`]).
    pub(super) fault_rate: Option<FaultRate>,
    /// Every PUT that created a group (not an update): its name and tags.
    pub(super) created: Vec<(String, Value)>,
    pub(super) next_id: u64,
    pub(super) base: String,
}

/// Faults on a share of ARM calls, drawn from a fixed-seed generator so a
/// run can be repeated: 429s are answered before the call is served (ARM
/// throttles before it does anything); 500s after it (the work was done and
/// the answer lost, the harshest case for a client that retries writes).
#[derive(Debug)]
pub(super) struct FaultRate {
    pub(super) share: f64,
    pub(super) retry_after_secs: u64,
    pub(super) seed: u64,
    pub(super) draws: u64,
}

impl FaultRate {
    /// The fault of the next call, if it gets one: 429 and 500 alternate.
    pub(super) fn draw(&mut self) -> Option<u16> {
        // xorshift64*: enough randomness for picking calls, no dependency.
        let mut x = self.seed;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed = x;
        let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        if r >= self.share {
            return None;
        }
        self.draws += 1;
        Some(if self.draws % 2 == 1 { 429 } else { 500 })
    }
}

pub(super) fn exit(state: &mut State, group: &str, container: &str, code: i64) -> Result<()> {
    let g = state
        .groups
        .get_mut(group)
        .ok_or_else(|| anyhow!("no group {group}"))?;
    let policy = g.request["properties"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    let c = g
        .containers
        .iter_mut()
        .find(|c| c.name == container)
        .ok_or_else(|| anyhow!("no container {container} in {group}"))?;
    let now = now_rfc3339();
    let terminated = json!({
        "state": "Terminated", "exitCode": code,
        "startTime": c.current.get("startTime").cloned().unwrap_or_else(|| json!(now.clone())),
        "finishTime": now.clone(),
        "detailStatus": if code == 0 { "Completed" } else { "Error" },
    });
    let restart = match policy.as_str() {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    };
    if restart {
        c.previous = Some(terminated);
        c.restart_count += 1;
        c.current = json!({"state": "Running", "startTime": now, "detailStatus": ""});
    } else {
        c.current = terminated;
    }
    Ok(())
}

pub(super) fn cloud_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// Moves a provisioned group's waiting containers to Running when it is time.
pub(super) fn advance(g: &mut Group, running_after: Duration) {
    let Some(at) = g.provisioned_at else { return };
    if at.elapsed() < running_after {
        return;
    }
    for c in &mut g.containers {
        if c.current["state"] == "Waiting" {
            let now = now_rfc3339();
            c.current = json!({"state": "Running", "startTime": now, "detailStatus": ""});
            let event = |name: &str, message: String| {
                json!({"name": name, "type": "Normal", "count": 1, "firstTimestamp": now,
                    "lastTimestamp": now, "message": message})
            };
            c.logs = (1..=3)
                .map(|i| (now.clone(), format!("{} line {i}", c.name)))
                .collect();
            c.events = vec![
                event("Pulling", format!("pulling image \"{}\"", c.image)),
                event(
                    "Pulled",
                    format!("Successfully pulled image \"{}\"", c.image),
                ),
                event("Started", "Started container".to_string()),
            ];
        }
    }
}

pub(super) fn group_state(g: &Group) -> &'static str {
    if g.provisioned_at.is_none() {
        return "Pending";
    }
    let states: Vec<&str> = g
        .containers
        .iter()
        .map(|c| c.current["state"].as_str().unwrap_or(""))
        .collect();
    if states.contains(&"Waiting") {
        "Pending"
    } else if states.contains(&"Running") {
        "Running"
    } else if g.containers.iter().all(|c| c.current["exitCode"] == 0) {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// The elements of array `key` of `v` (none when absent: indexing with
/// `v[key]` would insert a `null`).
pub(super) fn items<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// The group as ARM shows it: no secrets, with state.
pub(super) fn view(state: &State, name: &str, g: &Group, listed: bool) -> Value {
    let mut v = g.request.clone();
    let o = &state.options;
    v["id"] = json!(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{name}",
        o.subscription, o.resource_group
    ));
    v["name"] = json!(name);
    v["type"] = json!("Microsoft.ContainerInstance/containerGroups");
    let provisioning = if g.deleting {
        "Deleting"
    } else if g.failed.is_some() {
        "Failed"
    } else if g.provisioned_at.is_some() {
        "Succeeded"
    } else if g.updated {
        "Updating"
    } else {
        "Creating"
    };
    let props = &mut v["properties"];
    props["provisioningState"] = json!(provisioning);
    for list in ["containers", "initContainers"] {
        for c in items(props, list) {
            for e in items(&mut c["properties"], "environmentVariables") {
                if let Some(e) = e.as_object_mut() {
                    e.remove("secureValue");
                }
            }
        }
    }
    for cred in items(props, "imageRegistryCredentials") {
        if let Some(c) = cred.as_object_mut() {
            c.remove("password");
        }
    }
    for vol in items(props, "volumes") {
        if vol.get("secret").is_some() {
            vol["secret"] = json!({});
        }
        if let Some(f) = vol.get_mut("azureFile").and_then(Value::as_object_mut) {
            f.remove("storageAccountKey");
        }
    }
    if props.get("ipAddress").is_some() && g.provisioned_at.is_some() {
        props["ipAddress"]["ip"] = json!(g.ip);
    }
    if g.provisioned_at.is_some() {
        for (c, run) in items(props, "containers").zip(&g.containers) {
            let mut iv = json!({"restartCount": run.restart_count, "currentState": run.current, "events": run.events});
            if let Some(p) = &run.previous {
                iv["previousState"] = p.clone();
            }
            c["properties"]["instanceView"] = iv;
        }
        for c in items(props, "initContainers") {
            c["properties"]["instanceView"] = json!({"restartCount": 0, "currentState": {
                "state": "Terminated", "exitCode": 0, "detailStatus": "Completed"}, "events": []});
        }
    }
    if !listed {
        let events = match &g.failed {
            Some(why) => json!([{"name": "Failed", "type": "Warning", "count": 1, "message": why,
                "firstTimestamp": now_rfc3339(), "lastTimestamp": now_rfc3339()}]),
            None => json!([]),
        };
        props["instanceView"] = json!({"state": group_state(g), "events": events});
    }
    v
}
