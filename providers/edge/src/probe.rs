//! Container probes (exec, httpGet, tcpSocket) and their bookkeeping: when
//! each is due, consecutive successes and failures against the thresholds.
//!
//! httpGet and tcpSocket probes dial the pod IP from the provider's host, as a
//! kubelet does from its node: vk-edge must run where the engine's container
//! network is routable (on the device itself, the usual setup).

use std::net::SocketAddr;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::spec::probe_port;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

impl ProbeKind {
    /// Name as the kubelet writes it in events ("Liveness probe failed").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// The state of one probe of one container attempt.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// Which probe.
    pub kind: ProbeKind,
    /// The probe's spec.
    pub probe: Probe,
    /// When it runs next.
    pub next: Instant,
    /// Consecutive successes.
    pub successes: i32,
    /// Consecutive failures.
    pub failures: i32,
    /// The current verdict once a threshold was crossed: `Some(true)` passing.
    pub verdict: Option<bool>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

impl ProbeState {
    /// A probe for a container that started at `started`.
    pub fn new(kind: ProbeKind, probe: Probe, started: Instant) -> ProbeState {
        let delay = secs(probe.initial_delay_seconds, 0);
        ProbeState {
            kind,
            probe,
            next: started + delay,
            successes: 0,
            failures: 0,
            verdict: None,
            last_error: None,
        }
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: Result<(), String>, now: Instant) -> Option<bool> {
        self.next = now + secs(self.probe.period_seconds, 10);
        let before = self.verdict;
        match ok {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                self.last_error = None;
                if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.verdict = Some(true);
                }
            }
            Err(e) => {
                self.successes = 0;
                self.failures += 1;
                self.last_error = Some(e);
                if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.verdict = Some(false);
                }
            }
        }
        (self.verdict != before).then_some(self.verdict.unwrap_or(false))
    }

    /// The probe's timeout.
    pub fn timeout(&self) -> Duration {
        secs(self.probe.timeout_seconds, 1)
    }
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

/// Runs one probe against a container attempt (engine id) with pod IP `ip`.
pub async fn run(
    engine: &Engine,
    container_id: &str,
    c: &Container,
    ip: Option<&str>,
    state: &ProbeState,
) -> Result<(), String> {
    let timeout = state.timeout();
    let fut = async {
        let p = &state.probe;
        if let Some(e) = &p.exec {
            return exec_probe(engine, container_id, e.command.clone().unwrap_or_default()).await;
        }
        if let Some(h) = &p.http_get {
            let port = probe_port(c, &h.port)?;
            let host = h
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| ip.map(str::to_string))
                .ok_or("the pod has no IP yet")?;
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = h
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            return http_probe(&host, port, &path, &headers).await;
        }
        if let Some(t) = &p.tcp_socket {
            let port = probe_port(c, &t.port)?;
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| ip.map(str::to_string))
                .ok_or("the pod has no IP yet")?;
            return TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
        }
        Err("probe has no handler".to_string())
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
    }
}

async fn exec_probe(engine: &Engine, id: &str, cmd: Vec<String>) -> Result<(), String> {
    let docker = engine.docker().map_err(|e| e.to_string())?;
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions::<String> {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| crate::engine::engine_message(&e))?;
    let mut output = String::new();
    if let StartExecResults::Attached {
        output: mut out, ..
    } = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| crate::engine::engine_message(&e))?
    {
        while let Some(Ok(chunk)) = out.next().await {
            if output.len() < 1024 {
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
    }
    let inspect = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| crate::engine::engine_message(&e))?;
    match inspect.exit_code {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "command exited with {code}{}",
            if output.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", output.trim())
            }
        )),
        None => Err("command did not finish".into()),
    }
}

/// A plain HTTP/1.1 GET; 200-399 is success, as for the kubelet.
async fn http_probe(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": dial tcp {addr}: {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.35\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    let mut buf = vec![0u8; 512];
    let mut n = 0;
    while n < 12 {
        let read = s
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if read == 0 {
            break;
        }
        n += read;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", head.lines().next()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            period_seconds: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_decide_the_verdict() {
        let now = Instant::now();
        let mut s = ProbeState::new(ProbeKind::Liveness, probe(1, 3), now);
        assert_eq!(s.record(Err("x".into()), now), None);
        assert_eq!(s.record(Err("x".into()), now), None);
        assert_eq!(s.record(Err("x".into()), now), Some(false));
        assert_eq!(s.record(Err("x".into()), now), None);
        assert_eq!(s.record(Ok(()), now), Some(true));
        let mut r = ProbeState::new(ProbeKind::Readiness, probe(2, 1), now);
        assert_eq!(r.record(Ok(()), now), None);
        assert_eq!(r.record(Ok(()), now), Some(true));
        assert_eq!(r.record(Err("x".into()), now), Some(false));
        assert!(r.next > now);
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_line() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for code in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert_eq!(http_probe("127.0.0.1", port, "/", &[]).await, Ok(()));
        let err = http_probe("127.0.0.1", port, "/", &[]).await.unwrap_err();
        assert!(err.contains("500"), "{err}");
    }
}
