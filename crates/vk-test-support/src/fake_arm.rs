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
//! - ARM calls need a bearer token the fake issued and that has not
//!   expired (`token_lifetime`);
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
//! - exec and attach answer a WebSocket of the fake's own that runs a tiny
//!   command set (`echo`, `ls`, `sh -c`, `cat`, an interactive `sh`, and
//!   `argv` to show how the words arrived), password checked as the
//!   contract says; [`FakeArm::exec_sessions`] lists them;
//! - [`FakeArm::throttle`] answers the next calls with 429 or 5xx and a
//!   `Retry-After`; [`FakeArm::fault_share`] answers a share of all calls
//!   with 429 or 500 (a 500 after the call was served: the answer lost);
//! - [`FakeArm::created_groups`] lists the PUTs that created a group (an
//!   update is not one), to catch duplicates.
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
mod groups;
mod routes;
mod sessions;
mod shell;
mod state;
mod tls;
mod token;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use self::contract::{Contract, specs_dir};
use self::routes::handle;
use self::state::{FaultRate, State, exit};
use self::tls::tls_config;

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
    /// Lifetime of the tokens it issues (`expires_in`); an ARM call with
    /// an expired token is answered 401 `ExpiredAuthenticationToken`.
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

/// One exec or attach session the provider started.
#[derive(Clone, Debug)]
pub struct ExecRecord {
    /// The group.
    pub group: String,
    /// The container.
    pub container: String,
    /// An attach (else an exec).
    pub attach: bool,
    /// The exec request's one command string.
    pub command: Option<String>,
    /// That string split into words as a shell does: the argv that ran.
    pub argv: Vec<String>,
    /// The exec request's terminal size: rows, columns.
    pub terminal_size: Option<(i64, i64)>,
    /// The WebSocket was dialled and authenticated.
    pub connected: bool,
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
            tokens: HashMap::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            sessions: HashMap::new(),
            exec_log: Vec::new(),
            faults: VecDeque::new(),
            fault_rate: None,
            created: Vec::new(),
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
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
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

    /// Every exec and attach session so far, in order.
    pub fn exec_sessions(&self) -> Vec<ExecRecord> {
        self.lock().exec_log.clone()
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

    /// From now on answers about `share` (0.0–1.0) of the ARM calls with a
    /// fault, 429 and 500 in turn, each with `Retry-After:
    /// retry_after_secs`. A 429 is answered before the call is served; a
    /// 500 after it (the group was created or deleted, the answer lost).
    /// The choice is pseudo-random with a fixed seed. `0.0` stops it.
    pub fn fault_share(&self, share: f64, retry_after_secs: u64) {
        self.lock().fault_rate = (share > 0.0).then_some(FaultRate {
            share,
            retry_after_secs,
            seed: 0x9E37_79B9_7F4A_7C15,
            draws: 0,
        });
    }

    /// Every PUT that created a group (not one that updated it), in order:
    /// the group's name and its tags.
    pub fn created_groups(&self) -> Vec<(String, Value)> {
        self.lock().created.clone()
    }
}
