//! The container group calls: PUT, logs and the long-running operations
//! (Azure-AsyncOperation) of PUT and DELETE.

use std::time::Instant;

use serde_json::{Value, json};

use super::ACI_API_VERSION;
use super::routes::{Answer, Shape, answer, error, query_param};
use super::state::{ContainerRun, Group, OpKind, Operation, State, advance, view};

pub(super) fn logs(st: &mut State, group: &str, container: &str, query: &str) -> Answer {
    let running_after = st.options.running_after;
    let Some(g) = st.groups.get_mut(group) else {
        return error(
            404,
            "ResourceNotFound",
            &format!("container group {group} not found"),
        );
    };
    advance(g, running_after);
    let Some(c) = g.containers.iter().find(|c| c.name == container) else {
        return error(
            404,
            "ContainerNotFound",
            &format!("container {container} not found in {group}"),
        );
    };
    let timestamps = query_param(query, "timestamps") == Some("true");
    let tail: usize = query_param(query, "tail")
        .and_then(|t| t.parse().ok())
        .unwrap_or(usize::MAX);
    let skip = c.logs.len().saturating_sub(tail);
    let content: String = c
        .logs
        .iter()
        .skip(skip)
        .map(|(t, text)| {
            if timestamps {
                format!("{t} {text}\n")
            } else {
                format!("{text}\n")
            }
        })
        .collect();
    answer(200, json!({"content": content}), Shape::Logs)
}

pub(super) fn new_op(st: &mut State, group: &str, kind: OpKind) -> String {
    let id = format!("op-{}", st.next_id);
    st.next_id += 1;
    st.ops.insert(
        id.clone(),
        Operation {
            group: group.to_string(),
            kind,
            polls: 0,
        },
    );
    format!(
        "{}/subscriptions/{}/providers/Microsoft.ContainerInstance/locations/westeurope/operations/{id}?api-version={ACI_API_VERSION}",
        st.base, st.options.subscription
    )
}

pub(super) fn operation(st: &mut State, id: &str) -> Answer {
    let Some(op) = st.ops.get_mut(id) else {
        return error(404, "OperationNotFound", id);
    };
    op.polls += 1;
    if op.polls < 2 {
        let mut a = answer(200, json!({"status": "InProgress"}), Shape::Other);
        a.headers.push(("x-ms-retry-after-ms", "200".into()));
        return a;
    }
    let group = op.group.clone();
    match op.kind {
        OpKind::Put => {
            if let Some(g) = st.groups.get_mut(&group) {
                if let Some(why) = &g.failed {
                    let error = json!({"code": "InaccessibleImage", "message": why});
                    return answer(
                        200,
                        json!({"status": "Failed", "error": error}),
                        Shape::Other,
                    );
                }
                if g.provisioned_at.is_none() {
                    g.provisioned_at = Some(Instant::now());
                }
            }
        }
        OpKind::Delete => {
            st.groups.remove(&group);
        }
    }
    answer(200, json!({"status": "Succeeded"}), Shape::Other)
}

pub(super) fn put(st: &mut State, name: &str, body: Option<&Value>) -> Answer {
    let Some(body) = body else {
        return error(400, "InvalidRequestContent", "no JSON body");
    };
    let problems = st.contract.check_request(body);
    if !problems.is_empty() {
        st.violations
            .extend(problems.iter().map(|p| format!("PUT {name}: {p}")));
        return error(400, "InvalidRequestContent", &problems.join("; "));
    }
    if name.len() > 63
        || name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return error(
            400,
            "ContainerGroupNameInvalid",
            &format!("invalid container group name {name:?}"),
        );
    }
    let containers: Vec<ContainerRun> = body["properties"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| ContainerRun {
            name: c["name"].as_str().unwrap_or("").to_string(),
            restart_count: 0,
            current: json!({"state": "Waiting", "detailStatus": ""}),
            previous: None,
            image: c["properties"]["image"].as_str().unwrap_or("").to_string(),
            events: Vec::new(),
            logs: Vec::new(),
        })
        .collect();
    let exists = st.groups.contains_key(name);
    if !exists {
        st.created.push((
            name.to_string(),
            body.get("tags").cloned().unwrap_or_default(),
        ));
    }
    let ip = match st.groups.get(name) {
        Some(g) => g.ip.clone(),
        None => {
            let n = st.next_id;
            format!(
                "10.{}.{}.{}",
                (n >> 16) & 255,
                (n >> 8) & 255,
                (n & 255).max(1)
            )
        }
    };
    st.next_id += 1;
    st.groups.insert(
        name.to_string(),
        Group {
            request: body.clone(),
            ip,
            provisioned_at: None,
            deleting: false,
            updated: exists,
            failed: containers
                .iter()
                .find(|c| c.image.contains("unpullable"))
                .map(|c| format!("Failed to pull image \"{}\": not found", c.image)),
            containers,
        },
    );
    let op = new_op(st, name, OpKind::Put);
    let v = st
        .groups
        .get(name)
        .map(|g| view(st, name, g, false))
        .unwrap_or_default();
    let mut a = answer(if exists { 200 } else { 201 }, v, Shape::Group);
    a.headers.push(("azure-asyncoperation", op));
    a.headers.push(("retry-after", "1".into()));
    a
}
