//! HTTP: one request in, its answer out, every body checked against the
//! contract and recorded; the routing of ARM and Entra ID paths.

use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::groups::{logs, new_op, operation, put};
use super::sessions;
use super::state::{OpKind, State, advance, cloud_error, exit, view};
use super::token::token;
use super::{ACI_API_VERSION, RecordedRequest};

pub(super) fn reply(
    status: u16,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Response<String> {
    let mut r = Response::new(body.map(Value::to_string).unwrap_or_default());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if body.is_some() {
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// What the fake answers: status, body, headers, and which contract shape
/// the body must have.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Option<Value>,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) shape: Shape,
}

#[derive(PartialEq)]
pub(super) enum Shape {
    Group,
    List,
    Logs,
    Error,
    Exec,
    Attach,
    Other,
}

pub(super) fn answer(status: u16, body: Value, shape: Shape) -> Answer {
    Answer {
        status,
        body: Some(body),
        headers: Vec::new(),
        shape,
    }
}

pub(super) fn error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, cloud_error(code, message), Shape::Error)
}

pub(super) async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<String> {
    if req.uri().path().starts_with(sessions::SESSIONS_PATH) {
        return sessions::upgrade(state, req);
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(axum::body::Body::new(req.into_body()), 16 << 20)
        .await
        .unwrap_or_default();
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let json_body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let a = route(
        &mut st,
        &method,
        &path,
        &query,
        auth.as_deref(),
        &bytes,
        json_body.as_ref(),
    );
    if let Some(body) = &a.body {
        let problems = match a.shape {
            Shape::Group => st.contract.check_group(body),
            Shape::List => st.contract.check_list(body),
            Shape::Logs => st.contract.check_logs(body),
            Shape::Error => st.contract.check_error(body),
            Shape::Exec => st.contract.check_exec_response(body),
            Shape::Attach => st.contract.check_attach_response(body),
            Shape::Other => Vec::new(),
        };
        let problems: Vec<String> = problems
            .into_iter()
            .map(|p| format!("{method} {path}: {p}"))
            .collect();
        st.violations.extend(problems);
    }
    let at = st.started.elapsed();
    st.requests.push(RecordedRequest {
        at,
        method,
        path,
        query,
        body: json_body,
        status: a.status,
        response: a.body.clone(),
    });
    let headers: Vec<(&str, String)> = a.headers.iter().map(|(k, v)| (*k, v.clone())).collect();
    reply(a.status, a.body.as_ref(), &headers)
}

pub(super) fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

pub(super) fn route(
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    raw: &[u8],
    body: Option<&Value>,
) -> Answer {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Entra ID: POST /{tenant}/oauth2/v2.0/token
    if segs.len() == 4 && segs[1] == "oauth2" && segs[3] == "token" && method == "POST" {
        return token(st, segs[0], raw);
    }
    if segs.len() == 2 && segs[0] == "fake" && segs[1] == "exit" && method == "POST" {
        let b = body.cloned().unwrap_or_default();
        return match exit(
            st,
            b["group"].as_str().unwrap_or(""),
            b["container"].as_str().unwrap_or(""),
            b["code"].as_i64().unwrap_or(0),
        ) {
            Ok(()) => answer(200, json!({}), Shape::Other),
            Err(e) => answer(404, json!({"error": e.to_string()}), Shape::Other),
        };
    }
    // ARM: a token we issued, not expired.
    let expiry = auth
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t));
    match expiry {
        None => {
            return error(
                401,
                "AuthenticationFailed",
                "missing or unknown bearer token",
            );
        }
        Some(at) if *at <= std::time::Instant::now() => {
            return error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            );
        }
        Some(_) => {}
    }
    let drawn = st.fault_rate.as_mut().and_then(|f| {
        let status = f.draw()?;
        Some((status, f.retry_after_secs))
    });
    if let Some((500, after)) = drawn {
        // Served, then the answer is lost.
        let _served = route_arm(st, method, path, query, body, &segs);
        let mut a = error(500, "InternalServerError", "injected fault after serving");
        a.headers.push(("retry-after", after.to_string()));
        return a;
    }
    if let Some((status, after)) = st.faults.pop_front().or(drawn) {
        let mut a = error(
            status,
            if status == 429 {
                "TooManyRequests"
            } else {
                "InternalServerError"
            },
            "injected fault",
        );
        a.headers.push(("retry-after", after.to_string()));
        return a;
    }
    route_arm(st, method, path, query, body, &segs)
}

/// An authenticated ARM call, past fault injection.
fn route_arm(
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
    segs: &[&str],
) -> Answer {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if segs.len() < 2 || !eq(segs[0], "subscriptions") || segs[1] != st.options.subscription {
        return error(
            404,
            "SubscriptionNotFound",
            &format!("no subscription in {path}"),
        );
    }
    // Operations: /subscriptions/{s}/providers/Microsoft.ContainerInstance/locations/{l}/operations/{id}
    if segs.len() == 8 && eq(segs[2], "providers") && eq(segs[6], "operations") {
        return operation(st, segs[7]);
    }
    if segs.len() < 4 || !eq(segs[2], "resourceGroups") || segs[3] != st.options.resource_group {
        return error(
            404,
            "ResourceGroupNotFound",
            &format!("no resource group in {path}"),
        );
    }
    if segs.len() == 4 && method == "GET" {
        let o = &st.options;
        return answer(
            200,
            json!({"id": format!("/subscriptions/{}/resourceGroups/{}", o.subscription, o.resource_group),
                "name": o.resource_group, "location": "westeurope",
                "properties": {"provisioningState": "Succeeded"}}),
            Shape::Other,
        );
    }
    let is_groups = segs.len() >= 7
        && eq(segs[4], "providers")
        && eq(segs[5], "Microsoft.ContainerInstance")
        && eq(segs[6], "containerGroups");
    if !is_groups {
        return error(404, "NotFound", &format!("no route for {method} {path}"));
    }
    if query_param(query, "api-version") != Some(ACI_API_VERSION) {
        st.violations.push(format!(
            "{method} {path}: api-version is not {ACI_API_VERSION}: {query}"
        ));
        return error(400, "InvalidApiVersionParameter", "unsupported api-version");
    }
    let running_after = st.options.running_after;
    match (segs.len(), method) {
        (7, "GET") => {
            let names: Vec<String> = st.groups.keys().cloned().collect();
            let mut value = Vec::new();
            for name in names {
                if let Some(g) = st.groups.get_mut(&name) {
                    advance(g, running_after);
                }
                if let Some(g) = st.groups.get(&name) {
                    value.push(view(st, &name, g, true));
                }
            }
            answer(200, json!({"value": value}), Shape::List)
        }
        (8, "GET") => {
            let name = segs[7];
            match st.groups.get_mut(name) {
                Some(g) => {
                    advance(g, running_after);
                    let v = st
                        .groups
                        .get(name)
                        .map(|g| view(st, name, g, false))
                        .unwrap_or_default();
                    answer(200, v, Shape::Group)
                }
                None => error(
                    404,
                    "ResourceNotFound",
                    &format!("container group {name} not found"),
                ),
            }
        }
        (8, "PUT") => put(st, segs[7], body),
        (11, "POST")
            if eq(segs[8], "containers") && (eq(segs[10], "exec") || eq(segs[10], "attach")) =>
        {
            let attach = eq(segs[10], "attach");
            sessions::start(st, segs[7], segs[9], attach, body)
        }
        (11, "GET") if eq(segs[8], "containers") && eq(segs[10], "logs") => {
            logs(st, segs[7], segs[9], query)
        }
        (8, "DELETE") => {
            let name = segs[7].to_string();
            match st.groups.get_mut(&name) {
                None => Answer {
                    status: 204,
                    body: None,
                    headers: Vec::new(),
                    shape: Shape::Other,
                },
                Some(g) => {
                    g.deleting = true;
                    let op = new_op(st, &name, OpKind::Delete);
                    Answer {
                        status: 202,
                        body: None,
                        headers: vec![("azure-asyncoperation", op), ("retry-after", "1".into())],
                        shape: Shape::Other,
                    }
                }
            }
        }
        _ => error(405, "MethodNotAllowed", &format!("{method} {path}")),
    }
}
