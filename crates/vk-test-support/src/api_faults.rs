//! A fault-injecting proxy between a virtual kubelet and the apiserver, on
//! loopback, controlled by the test (or by `cargo xtask bench --api-faults`
//! through `vk-rig api-proxy`).
//!
//! The kubelet is given a kubeconfig naming the proxy (plain HTTP on
//! 127.0.0.1, no credentials of its own); the proxy forwards each request
//! to the apiserver over TLS with the credentials of the kubeconfig it was
//! started from, so the apiserver sees the same user. What [`Faults`] says
//! happens on the way:
//! - `latency`: every request waits this long before it is forwarded;
//! - `errors`: this share of requests is answered by the proxy itself, half
//!   with 429 and `Retry-After`, a quarter each with 500 and 503 (a
//!   `Status` body, as the apiserver writes them);
//! - `resets`: this share of connections is closed with no answer;
//! - `gone`: this share of watches is answered with the `ERROR` event of an
//!   expired resourceVersion (410 `Expired`), as the apiserver does;
//! - `watch_cut`: every watch stream is broken off this long after it began;
//! - `stall`: every response body waits this long before its first byte.
//!
//! [`FaultProxy::counts`] says what happened, with the requests of each
//! second since the start, so a test can bound the kubelet's request rate.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Body;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic; [`Faults::default`] is nothing.
///
/// Parsed from a spec such as `errors=0.1,resets=0.02,watch-cut=20s`
/// (`all` fails every request, `none` is nothing; durations in `ms` or `s`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Added before each request is forwarded.
    pub latency: Duration,
    /// Share of requests answered 429 (half), 500 or 503 by the proxy.
    pub errors: f64,
    /// Share of requests whose connection is closed without an answer.
    pub resets: f64,
    /// Share of watches answered with a 410 `Expired` event.
    pub gone: f64,
    /// Every watch stream is broken off after this long.
    pub watch_cut: Option<Duration>,
    /// Every response body waits this long before its first byte.
    pub stall: Option<Duration>,
    /// The `Retry-After` seconds of a 429.
    pub retry_after_secs: u64,
}

impl Faults {
    /// Every request answered 429, 500 or 503.
    pub fn all_failing() -> Faults {
        Faults {
            errors: 1.0,
            retry_after_secs: 1,
            ..Faults::default()
        }
    }
}

impl FromStr for Faults {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> Result<Faults> {
        let mut faults = Faults {
            retry_after_secs: 1,
            ..Faults::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "none" => {}
                "all" => faults.errors = 1.0,
                "errors" => faults.errors = share(key, value)?,
                "resets" => faults.resets = share(key, value)?,
                "gone" => faults.gone = share(key, value)?,
                "latency" => faults.latency = duration(key, value)?,
                "watch-cut" => faults.watch_cut = Some(duration(key, value)?),
                "stall" => faults.stall = Some(duration(key, value)?),
                "retry-after" => {
                    faults.retry_after_secs = value
                        .parse()
                        .map_err(|_| anyhow!("retry-after={value:?}: whole seconds"))?;
                }
                other => bail!(
                    "unknown fault {other:?} (errors, resets, gone, latency, watch-cut, stall, retry-after, all, none)"
                ),
            }
        }
        if faults.errors + faults.resets > 1.0 {
            bail!("errors and resets add up to more than 1: {spec}");
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "errors={},resets={},gone={},latency={}ms,retry-after={}",
            self.errors,
            self.resets,
            self.gone,
            self.latency.as_millis(),
            self.retry_after_secs
        )?;
        if let Some(cut) = self.watch_cut {
            write!(f, ",watch-cut={}ms", cut.as_millis())?;
        }
        if let Some(stall) = self.stall {
            write!(f, ",stall={}ms", stall.as_millis())?;
        }
        Ok(())
    }
}

fn share(key: &str, value: &str) -> Result<f64> {
    let share: f64 = value
        .parse()
        .map_err(|_| anyhow!("{key}={value:?}: a share between 0 and 1"))?;
    if !(0.0..=1.0).contains(&share) {
        bail!("{key}={value}: a share between 0 and 1");
    }
    Ok(share)
}

fn duration(key: &str, value: &str) -> Result<Duration> {
    let parsed = if let Some(ms) = value.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else if let Some(s) = value.strip_suffix('s') {
        s.parse().map(Duration::from_secs)
    } else {
        bail!("{key}={value:?}: a duration such as 500ms or 20s");
    };
    parsed.map_err(|_| anyhow!("{key}={value:?}: a duration such as 500ms or 20s"))
}

/// What the proxy saw and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Requests received (each counted once, whatever happened to it).
    pub requests: u64,
    /// Requests forwarded to the apiserver.
    pub forwarded: u64,
    /// Answered 429 by the proxy.
    pub throttled: u64,
    /// Answered 500 or 503 by the proxy.
    pub failed: u64,
    /// Connections closed without an answer.
    pub resets: u64,
    /// Watches answered 410 `Expired`.
    pub gone: u64,
    /// Watch streams broken off.
    pub cut: u64,
    /// Requests received in each second since the proxy started.
    pub per_second: Vec<u64>,
    /// Requests by verb and path without the query (`GET /api/v1/pods`).
    pub by_request: BTreeMap<String, u64>,
    /// The latest requests (at most [`TIMELINE`]): the second since the
    /// start, verb and path.
    pub timeline: Vec<(usize, String)>,
}

/// How many requests [`Counts::timeline`] keeps.
pub const TIMELINE: usize = 20_000;

impl Counts {
    /// Requests by verb and path within seconds `from..to` since the start
    /// (as far as [`Counts::timeline`] goes back).
    pub fn requests_between(&self, from: usize, to: usize) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for (_, key) in self.timeline.iter().filter(|(s, _)| (from..to).contains(s)) {
            *by.entry(key.clone()).or_default() += 1;
        }
        by
    }

    /// The highest number of requests in any `window` seconds in a row
    /// within seconds `from..to` since the start, per second.
    pub fn peak_rate(&self, from: usize, to: usize, window: usize) -> f64 {
        let to = to.min(self.per_second.len());
        let window = window.max(1);
        if from >= to {
            return 0.0;
        }
        let seconds = &self.per_second[from..to];
        let peak = seconds
            .windows(window.min(seconds.len()))
            .map(|w| w.iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        peak as f64 / window.min(seconds.len()) as f64
    }

    /// The counts as JSON (for `vk-rig api-proxy` and bench results).
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "forwarded": self.forwarded,
            "throttled": self.throttled,
            "failed": self.failed,
            "resets": self.resets,
            "gone": self.gone,
            "cut": self.cut,
            "per_second": self.per_second,
            "by_request": self.by_request,
        })
    }
}

struct Shared {
    faults: Mutex<Faults>,
    counts: Mutex<Counts>,
    started: Instant,
    dice: AtomicU64,
}

impl Shared {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A uniform number in [0, 1): splitmix64 over a shared counter.
    fn roll(&self) -> f64 {
        let mut z = self
            .dice
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn count(&self, request: &Request<Incoming>) {
        let second = usize::try_from(self.started.elapsed().as_secs()).unwrap_or(usize::MAX);
        let key = format!("{} {}", request.method(), request.uri().path());
        let mut counts = self.counts();
        counts.requests += 1;
        if counts.per_second.len() <= second {
            counts.per_second.resize(second + 1, 0);
        }
        counts.per_second[second] += 1;
        *counts.by_request.entry(key.clone()).or_default() += 1;
        if counts.timeline.len() == TIMELINE {
            counts.timeline.remove(0);
        }
        counts.timeline.push((second, key));
    }
}

/// The proxy: started with [`FaultProxy::start`], stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy to the apiserver of `upstream` (a kubeconfig), with no
    /// fault until [`FaultProxy::set`].
    pub async fn start(upstream: &Path) -> Result<FaultProxy> {
        let kubeconfig = Kubeconfig::read_from(upstream)
            .with_context(|| format!("reading {}", upstream.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("the upstream kubeconfig")?;
        let client = kube::Client::try_from(config).context("a client for the apiserver")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            counts: Mutex::new(Counts::default()),
            started: Instant::now(),
            dice: AtomicU64::new(seed),
        });
        let task = tokio::spawn(serve(listener, client, shared.clone()));
        Ok(FaultProxy { addr, shared, task })
    }

    /// The proxy's URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig that reaches the apiserver through the proxy.
    pub fn write_kubeconfig(&self, out: &Path) -> Result<()> {
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "faulty", "cluster": {"server": self.url()}}],
            "users": [{"name": "proxied", "user": {}}],
            "contexts": [{"name": "faulty", "context": {"cluster": "faulty", "user": "proxied"}}],
            "current-context": "faulty",
        });
        std::fs::write(out, serde_json::to_vec_pretty(&kubeconfig)?)
            .with_context(|| format!("writing {}", out.display()))
    }

    /// Changes what the proxy does from the next request on.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// What happened so far.
    pub fn counts(&self) -> Counts {
        self.shared.counts().clone()
    }

    /// Seconds since the proxy started (the index into `per_second`).
    pub fn elapsed_secs(&self) -> usize {
        usize::try_from(self.shared.started.elapsed().as_secs()).unwrap_or(usize::MAX)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, client: kube::Client, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (client, shared) = (client.clone(), shared.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (client, shared) = (client.clone(), shared.clone());
                async move { handle(request, client, shared).await }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why a connection was closed without an answer.
#[derive(Debug)]
struct Reset;

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for Reset {}

fn is_watch(request: &Request<Incoming>) -> bool {
    request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

async fn handle(
    request: Request<Incoming>,
    client: kube::Client,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Reset> {
    shared.count(&request);
    let faults = shared.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let roll = shared.roll();
    if roll < faults.resets {
        shared.counts().resets += 1;
        return Err(Reset);
    }
    if roll < faults.resets + faults.errors {
        let within = (roll - faults.resets) / faults.errors;
        let (code, reason) = if within < 0.5 {
            shared.counts().throttled += 1;
            (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
        } else if within < 0.75 {
            shared.counts().failed += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        } else {
            shared.counts().failed += 1;
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        };
        let body = status(code, reason, "injected by the fault proxy");
        let mut answer = Response::builder()
            .status(code)
            .header("content-type", "application/json");
        if code == StatusCode::TOO_MANY_REQUESTS {
            answer = answer.header("retry-after", faults.retry_after_secs.to_string());
        }
        return answer.body(Body::from(body.to_string())).map_err(|_| Reset);
    }
    let watch = is_watch(&request);
    if watch && shared.roll() < faults.gone {
        shared.counts().gone += 1;
        let event = json!({
            "type": "ERROR",
            "object": status(StatusCode::GONE, "Expired", "too old resource version (injected by the fault proxy)"),
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(format!("{event}\n")))
            .map_err(|_| Reset);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(Body::new(body), 64 << 20).await else {
        return Err(Reset);
    };
    let mut upstream = Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    );
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "connection" | "authorization") {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(kube::client::Body::from(bytes)) else {
        return Err(Reset);
    };
    let Ok(answer) = client.send(upstream).await else {
        return Err(Reset);
    };
    shared.counts().forwarded += 1;
    let (mut parts, body) = answer.into_parts();
    parts.headers.remove("connection");
    let mut stream = Body::new(body).into_data_stream().boxed();
    if let Some(stall) = faults.stall {
        stream = futures::stream::once(async move {
            tokio::time::sleep(stall).await;
            stream
        })
        .flatten()
        .boxed();
    }
    if watch {
        // Cut when the watch is older than `watch_cut` as it is now: a watch
        // opened before the faults were set is cut too.
        parts.headers.remove("content-length");
        let opened = tokio::time::Instant::now();
        stream = futures::stream::unfold(
            (stream, shared.clone(), false),
            move |(mut inner, shared, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    let due = shared.faults().watch_cut.map(|cut| opened + cut);
                    let check = tokio::time::Instant::now() + Duration::from_millis(500);
                    let wake = due.map_or(check, |d| d.min(check));
                    tokio::select! {
                        item = inner.next() => return item.map(|i| (i, (inner, shared, false))),
                        () = tokio::time::sleep_until(wake) => {
                            if due.is_some_and(|d| d <= tokio::time::Instant::now()) {
                                shared.counts().cut += 1;
                                return Some((Err(axum::Error::new(Reset)), (inner, shared, true)));
                            }
                        }
                    }
                }
            },
        )
        .boxed();
    }
    Ok(Response::from_parts(parts, Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let f: Faults = "errors=0.1,resets=0.02,watch-cut=20s,gone=0.05,latency=30ms"
            .parse()
            .unwrap();
        assert_eq!(f.errors, 0.1);
        assert_eq!(f.resets, 0.02);
        assert_eq!(f.watch_cut, Some(Duration::from_secs(20)));
        assert_eq!(f.latency, Duration::from_millis(30));
        assert_eq!("all".parse::<Faults>().unwrap().errors, 1.0);
        assert_eq!("none".parse::<Faults>().unwrap().errors, 0.0);
        let e = "errors=2".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = "flaky=1".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("unknown fault"), "{e}");
        let e = "watch-cut=20".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("500ms or 20s"), "{e}");
        let round: Faults = f.to_string().parse().unwrap();
        assert_eq!(round, f);
    }

    #[test]
    fn the_peak_rate_is_over_a_sliding_window() {
        let counts = Counts {
            per_second: vec![1, 10, 2, 2, 30, 0],
            ..Counts::default()
        };
        assert_eq!(counts.peak_rate(0, 6, 1), 30.0);
        assert_eq!(counts.peak_rate(0, 4, 2), 6.0);
        assert_eq!(counts.peak_rate(5, 6, 10), 0.0);
        assert_eq!(counts.peak_rate(7, 9, 1), 0.0);
    }
}
