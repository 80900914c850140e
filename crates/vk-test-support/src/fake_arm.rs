//! [`FakeArm`]: a stateful stand-in for Azure Resource Manager's container
//! groups (`Microsoft.ContainerInstance`, api-version 2026-05-01) and for
//! the Entra ID token endpoint, over TLS with a test CA of its own (azure_core
//! sends bearer tokens only over https). No emulator of ACI exists; this is
//! the project's own, checked against the contract:
//!
//! - every request body and every response body is validated against
//!   `shared/specs/aci/containerInstance.json` ([`contract`]); a request
//!   that violates it is answered 400, and every violation is kept for the
//!   test to assert on ([`FakeArm::violations`]);
//! - ARM calls need a bearer token the fake issued;
//! - a PUT answers 201 with `Azure-AsyncOperation` and `Retry-After`; the
//!   operation is `InProgress` on its first poll and `Succeeded` on the
//!   next; the group then shows `Pending` and its containers `Waiting` until
//!   `running_after` has passed, then `Running` with an IP;
//! - a container image named `*unpullable*` fails the operation and leaves
//!   the group `Failed` with a Warning event, as ACI does for an image it
//!   cannot pull;
//! - DELETE answers 202 with an operation; the group is gone once it is
//!   polled;
//! - `secureValue`s, passwords, keys and secret volume contents are never
//!   echoed back;
//! - logs: three lines per container when it starts, more with
//!   [`FakeArm::append_log`], `tail` and `timestamps` honoured;
//! - a container's exit is set with [`FakeArm::set_exit`] (or `POST
//!   /fake/exit`), restarted per the group's `restartPolicy`;
//! - [`FakeArm::throttle`] answers the next calls with 429 or 5xx and a
//!   `Retry-After`.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use vk_test_support::{FakeArm, FakeArmOptions};
//! let arm = FakeArm::start(FakeArmOptions::default()).await?;
//! // vk-aci --arm-endpoint {arm.endpoint()} --authority-host {arm.endpoint()}
//! //        --extra-ca-file {arm.ca_file()} ...
//! assert!(arm.violations().is_empty());
//! # Ok(()) }
//! ```

pub mod contract;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use self::contract::{Contract, specs_dir};

/// The api-version of the contract.
pub const ACI_API_VERSION: &str = "2026-05-01";

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeArmOptions {
    /// The subscription it serves.
    pub subscription: String,
    /// The resource group it serves.
    pub resource_group: String,
    /// The tenant of the token endpoint.
    pub tenant: String,
    /// The client secret the token endpoint accepts (`None`: any).
    pub client_secret: Option<String>,
    /// Lifetime of the tokens it issues.
    pub token_lifetime: Duration,
    /// How long a provisioned group stays Pending before its containers run.
    pub running_after: Duration,
}

impl Default for FakeArmOptions {
    fn default() -> Self {
        FakeArmOptions {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            resource_group: "vk-test".into(),
            tenant: "00000000-0000-0000-0000-00000000000a".into(),
            client_secret: None,
            token_lifetime: Duration::from_secs(3600),
            running_after: Duration::from_secs(1),
        }
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// When, since the fake started.
    pub at: Duration,
    /// `GET`, `PUT`...
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
    /// The JSON body it answered with, if any.
    pub response: Option<Value>,
}

#[derive(Clone, Debug)]
struct ContainerRun {
    name: String,
    restart_count: i64,
    current: Value,
    previous: Option<Value>,
    image: String,
    events: Vec<Value>,
    /// Output lines: time (RFC 3339) and text.
    logs: Vec<(String, String)>,
}

#[derive(Debug)]
struct Group {
    request: Value,
    ip: String,
    provisioned_at: Option<Instant>,
    deleting: bool,
    updated: bool,
    /// Why provisioning failed (an image named `*unpullable*`).
    failed: Option<String>,
    containers: Vec<ContainerRun>,
}

#[derive(Debug)]
enum OpKind {
    Put,
    Delete,
}

#[derive(Debug)]
struct Operation {
    group: String,
    kind: OpKind,
    polls: u32,
}

struct State {
    options: FakeArmOptions,
    contract: Contract,
    started: Instant,
    groups: BTreeMap<String, Group>,
    ops: HashMap<String, Operation>,
    tokens: HashSet<String>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    faults: VecDeque<(u16, u64)>,
    next_id: u64,
    base: String,
}

/// The running fake (see the module doc). Stops when dropped.
pub struct FakeArm {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeArm {
    /// Stops the server; dropped while a test panics, it first prints its
    /// last requests and every contract violation.
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            let state = self.lock();
            eprintln!("---- fake ARM: last requests ----");
            let skip = state.requests.len().saturating_sub(FAILURE_REQUESTS);
            for r in state.requests.iter().skip(skip) {
                let answer = r
                    .response
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default();
                let answer: String = answer.chars().take(300).collect();
                eprintln!(
                    "{:>8.3}s {} {}?{} -> {} {answer}",
                    r.at.as_secs_f64(),
                    r.method,
                    r.path,
                    r.query,
                    r.status
                );
            }
            eprintln!("---- fake ARM: contract violations ----");
            for v in &state.violations {
                eprintln!("{v}");
            }
        }
    }
}

/// Requests printed when a test fails while holding the fake.
const FAILURE_REQUESTS: usize = 40;

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn tls_config(dir: &Path) -> Result<(rustls::ServerConfig, PathBuf)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vk-rs fake ARM test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let ca_file = dir.join("fake-arm-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).context("writing the test CA")?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(
        rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, ca_file))
}

impl FakeArm {
    /// Starts the fake on a free loopback port, on the current Tokio runtime.
    pub async fn start(options: FakeArmOptions) -> Result<FakeArm> {
        let contract = Contract::load(&specs_dir())?;
        let dir = tempfile::tempdir()?;
        let (tls, ca_file) = tls_config(dir.path())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            options,
            contract,
            started: Instant::now(),
            groups: BTreeMap::new(),
            ops: HashMap::new(),
            tokens: HashSet::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            faults: VecDeque::new(),
            next_id: 1,
            base: format!("https://{addr}"),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(FakeArm {
            addr,
            state,
            ca_file,
            _dir: dir,
            task,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `https://127.0.0.1:<port>`: the ARM endpoint and the authority host.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM file of the test CA that signed the fake's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The subscription, resource group and tenant it serves.
    pub fn options(&self) -> FakeArmOptions {
        self.lock().options.clone()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Every contract violation so far (requests and responses).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Names of the groups that exist.
    pub fn group_names(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    /// The last PUT body of a group, as the provider sent it (secrets included).
    pub fn group_request(&self, name: &str) -> Option<Value> {
        self.lock().groups.get(name).map(|g| g.request.clone())
    }

    /// The IP a group has (or will have once provisioned).
    pub fn group_ip(&self, name: &str) -> Option<String> {
        self.lock().groups.get(name).map(|g| g.ip.clone())
    }

    /// Ends a container with `code`: restarted (restartCount + 1, the exit as
    /// previousState) when the group's restartPolicy says so, else Terminated.
    pub fn set_exit(&self, group: &str, container: &str, code: i64) -> Result<()> {
        let mut state = self.lock();
        exit(&mut state, group, container, code)
    }

    /// Adds a line to a container's output (now).
    pub fn append_log(&self, group: &str, container: &str, text: &str) -> Result<()> {
        let mut state = self.lock();
        let c = state
            .groups
            .get_mut(group)
            .and_then(|g| g.containers.iter_mut().find(|c| c.name == container))
            .ok_or_else(|| anyhow!("no container {container} in {group}"))?;
        c.logs.push((now_rfc3339(), text.to_string()));
        Ok(())
    }

    /// Answers the next `count` ARM calls with `status` (429, 500, 503...)
    /// and `Retry-After: retry_after_secs`.
    pub fn throttle(&self, count: usize, status: u16, retry_after_secs: u64) {
        let mut state = self.lock();
        state
            .faults
            .extend(std::iter::repeat_n((status, retry_after_secs), count));
    }
}

fn exit(state: &mut State, group: &str, container: &str, code: i64) -> Result<()> {
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

fn cloud_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// Moves a provisioned group's waiting containers to Running when it is time.
fn advance(g: &mut Group, running_after: Duration) {
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

fn group_state(g: &Group) -> &'static str {
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
fn items<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// The group as ARM shows it: no secrets, with state.
fn view(state: &State, name: &str, g: &Group, listed: bool) -> Value {
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

fn reply(status: u16, body: Option<&Value>, headers: &[(&str, String)]) -> Response<String> {
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
struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    shape: Shape,
}

#[derive(PartialEq)]
enum Shape {
    Group,
    List,
    Logs,
    Error,
    Other,
}

fn answer(status: u16, body: Value, shape: Shape) -> Answer {
    Answer {
        status,
        body: Some(body),
        headers: Vec::new(),
        shape,
    }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, cloud_error(code, message), Shape::Error)
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<String> {
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

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn route(
    st: &mut State,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    raw: &[u8],
    body: Option<&Value>,
) -> Answer {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
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
    // ARM: a token we issued.
    let token_ok = auth
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| st.tokens.contains(t));
    if !token_ok {
        return error(
            401,
            "AuthenticationFailed",
            "missing or unknown bearer token",
        );
    }
    if let Some((status, after)) = st.faults.pop_front() {
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

fn logs(st: &mut State, group: &str, container: &str, query: &str) -> Answer {
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

fn new_op(st: &mut State, group: &str, kind: OpKind) -> String {
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

fn operation(st: &mut State, id: &str) -> Answer {
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

fn put(st: &mut State, name: &str, body: Option<&Value>) -> Answer {
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

fn token(st: &mut State, tenant: &str, raw: &[u8]) -> Answer {
    let form: HashMap<String, String> = String::from_utf8_lossy(raw)
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                percent_decode(&s)
            };
            Some((decode(k), decode(v)))
        })
        .collect();
    if tenant != st.options.tenant {
        return answer(
            400,
            json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found.")}),
            Shape::Other,
        );
    }
    if let Some(secret) = &st.options.client_secret
        && form.get("client_secret") != Some(secret)
    {
        return answer(
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            Shape::Other,
        );
    }
    let token = format!("fake-token-{}", st.next_id);
    st.next_id += 1;
    st.tokens.insert(token.clone());
    let lifetime = st.options.token_lifetime.as_secs();
    answer(
        200,
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
        Shape::Other,
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(hex), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
