//! The AWS stand-in of the Fargate provider's tests: `moto` (PyPI, pinned)
//! in server mode, run in-process by a small wrapper of the provider's own
//! (`providers/fargate/tests/rig/moto_ecs.py`) that adds a control route,
//! makes moto's ECS behave as ECS documents where it falls short, and puts a
//! fault-injecting reverse proxy in front ([`MotoServer::faulty_endpoint`]).
//!
//! The Python virtual environment is made by the tests themselves, once per
//! machine, under the cache (`$VK_CACHE_DIR`, else `~/.cache/vk-rs`,
//! `moto-venv`), with [`MOTO_REQUIREMENT`] from PyPI; a marker file records
//! what was installed, so a changed pin installs again. Each
//! [`MotoServer`] is its own process on a free loopback port, so tests
//! never see each other's tasks.
//!
//! ```no_run
//! # fn example(script: &std::path::Path) -> anyhow::Result<()> {
//! use vk_test_support::MotoServer;
//! let moto = MotoServer::start(script)?;
//! let (subnet, security_group) = moto.default_network("us-east-1")?;
//! // AWS_ENDPOINT_URL for the provider process:
//! let endpoint = moto.endpoint();
//! moto.reset()?;
//! # Ok(()) }
//! ```

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::logs::log_tail;

/// What the virtual environment installs: moto in server mode, pinned (the
/// version `../shared/design/facts.md` §6 was checked against).
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";

/// How long the wrapper may take to listen (imports are slow on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one control call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The cache directory of the test tooling: `$VK_CACHE_DIR`, else
/// `~/.cache/vk-rs` (as the xtask keeps its builds).
fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VK_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither VK_CACHE_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("vk-rs"))
}

/// The Python of the moto virtual environment, made (under a file lock, so
/// concurrent test processes make it once) when missing or installed from
/// another pin.
pub fn moto_python() -> Result<PathBuf> {
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let venv = cache.join("moto-venv");
    let marker = venv.join(".vk-rs-installed");
    let python = venv.join("bin").join("python");
    let ready = || std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == MOTO_REQUIREMENT);
    if ready() {
        return Ok(python);
    }
    let lock_path = cache.join("moto-venv.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if ready() {
        return Ok(python);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("removing the stale {}", venv.display()))?;
    }
    eprintln!(
        "vk-test-support: installing {MOTO_REQUIREMENT} into {}",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO_REQUIREMENT,
    ]))?;
    std::fs::write(&marker, MOTO_REQUIREMENT)
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One moto server (the wrapper) on a loopback port; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    /// The fault-injecting proxy in front of it.
    proxy_port: u16,
    log: PathBuf,
    child: Child,
    /// Closing it tells the wrapper to stop.
    _stdin: Option<ChildStdin>,
}

impl MotoServer {
    /// Starts the wrapper `script` (the provider's `moto_ecs.py`) with the
    /// moto virtual environment, and waits until it listens.
    pub fn start(script: &Path) -> Result<MotoServer> {
        let python = moto_python()?;
        // Kept after the test, beside the other logs of the run.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let log = std::env::temp_dir().join(format!("vk-moto-{}-{stamp}.log", std::process::id()));
        let err =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let stdout = child.stdout.take().context("the wrapper's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "moto did not listen within {START_TIMEOUT:?}: {}",
                    log_tail(&log, 20)
                );
            }
        };
        // `listening on 127.0.0.1:PORT faults 127.0.0.1:PROXY`
        let ports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|w| w.rsplit_once(':')?.1.parse().ok())
            .collect();
        let (Some(&port), Some(&proxy_port)) = (ports.first(), ports.get(1)) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "moto wrapper said {line:?}; its log: {}",
                log_tail(&log, 20)
            );
        };
        Ok(MotoServer {
            port,
            proxy_port,
            log,
            _stdin: child.stdin.take(),
            child,
        })
    }

    /// The endpoint of every AWS API it serves (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint of the fault-injecting proxy in front of it: the same
    /// APIs, with the share of failures [`MotoServer::set_faults`] chose
    /// (none at first).
    pub fn faulty_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// Makes the proxy fail `share` of the calls (0 to 1) without
    /// forwarding them: `throttled` of those with 400 `ThrottlingException`,
    /// the others with 500. Returns the counts so far
    /// (`{"forwarded": n, "throttled": n, "failed": n}`).
    pub fn set_faults(&self, share: f64, throttled: f64) -> Result<serde_json::Value> {
        let body = serde_json::json!({ "share": share, "throttled": throttled });
        let answer = self.call("POST", "/_vk/faults", &body.to_string())?;
        serde_json::from_str(&answer).context("the faults answer")
    }

    /// The last lines of its log (requests and errors), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Forgets every resource of every service (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<()> {
        self.call("POST", "/moto-api/reset", "")?;
        Ok(())
    }

    /// The default VPC's first subnet and default security group in `region`.
    pub fn default_network(&self, region: &str) -> Result<(String, String)> {
        let body = self.call("GET", &format!("/_vk/network?region={region}"), "")?;
        let v: serde_json::Value = serde_json::from_str(&body).context("the network answer")?;
        match (v["subnet"].as_str(), v["securityGroup"].as_str()) {
            (Some(s), Some(g)) => Ok((s.to_string(), g.to_string())),
            _ => bail!("unexpected network answer {body}"),
        }
    }

    /// The AWS calls it answered so far by API name (`{"ecs.RunTask": 3,
    /// ...}`), with `ecs.DescribeTasks:tasks`, the tasks those DescribeTasks
    /// calls asked about.
    pub fn calls(&self) -> Result<serde_json::Value> {
        let body = self.call("GET", "/_vk/calls", "")?;
        serde_json::from_str(&body).context("the calls answer")
    }

    /// Sets a container's state: `fields` of `lastStatus`, `exitCode`, `reason`.
    pub fn set_container(
        &self,
        task: &str,
        container: &str,
        fields: serde_json::Value,
    ) -> Result<()> {
        let mut body = fields;
        body["task"] = task.into();
        body["container"] = container.into();
        self.call("POST", "/_vk/container", &body.to_string())?;
        Ok(())
    }

    /// Sets a task's state: `fields` of `lastStatus`, `stopCode`, `stoppedReason`.
    pub fn set_task(&self, task: &str, fields: serde_json::Value) -> Result<()> {
        let mut body = fields;
        body["task"] = task.into();
        self.call("POST", "/_vk/task", &body.to_string())?;
        Ok(())
    }

    /// Makes later calls of AWS action `action` (`RunTask`...) answered one
    /// at a time, each `seconds` late (0: on time again).
    pub fn set_latency(&self, action: &str, seconds: f64) -> Result<()> {
        let body = serde_json::json!({ action: seconds });
        self.call("POST", "/_vk/latency", &body.to_string())?;
        Ok(())
    }

    /// One HTTP/1.1 call to the server; the body of a 2xx answer.
    fn call(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let what = format!("{method} {path}");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("{what}: connecting to moto"))?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .with_context(|| format!("{what}: sending"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .with_context(|| format!("{what}: reading"))?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            bail!("{what}: {status}: {body}");
        }
        Ok(body.to_string())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- moto log ({}) ----\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
