//! `cargo xtask bench --provider fargate`: the benchmark's kubelet is
//! `vk-fargate` (release) against moto (the pinned virtual environment and
//! the provider's wrapper `providers/fargate/tests/rig/moto_ecs.py`, run by
//! `vk-rig moto`), and the result gains what moto answered: the AWS calls
//! of the whole run by API name, per pod, the mutating ones per pod, and
//! how many tasks each `DescribeTasks` covered.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::workspace;

/// The region and ECS cluster of the benchmark's config.
const REGION: &str = "us-east-1";
const CLUSTER: &str = "vk-bench";

/// Moto behind `vk-rig moto`, stopped (and its calls read) by [`Moto::finish`].
pub struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub endpoint: String,
    subnet: String,
    security_group: String,
}

/// `cargo build -p vk-test-support --bin vk-rig` (debug: it only starts
/// moto); its path.
pub fn build_rig(root: &Path) -> Result<PathBuf> {
    eprintln!("building vk-rig (starts moto for the benchmark)");
    let out = Command::new(workspace::cargo())
        .current_dir(root)
        .args([
            "build",
            "--package",
            "vk-test-support",
            "--bin",
            "vk-rig",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build of vk-rig")?;
    if !out.status.success() {
        bail!("cargo build of vk-rig failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"name\":\"vk-rig\""))
        .find_map(crate::bench::executable)
        .map(PathBuf::from)
        .context("cargo did not report a vk-rig executable")
}

impl Moto {
    /// Starts moto (a first run creates its virtual environment: about a
    /// minute) and waits for its endpoint.
    pub fn start(rig: &Path, root: &Path) -> Result<Moto> {
        let script = root.join("providers/fargate/tests/rig/moto_ecs.py");
        eprintln!("starting moto ({})", script.display());
        let mut child = Command::new(rig)
            .arg("moto")
            .arg(&script)
            .arg(REGION)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", rig.display()))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("vk-rig's stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line).context("reading vk-rig")?;
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("vk-rig said {line:?} instead of its endpoint"))?;
        let field = |key: &str| -> Result<String> {
            ready[key]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("vk-rig's answer has no {key}: {line}"))
        };
        Ok(Moto {
            endpoint: field("endpoint")?,
            subnet: field("subnet")?,
            security_group: field("securityGroup")?,
            stdin,
            stdout,
            child,
        })
    }

    /// Writes the provider config for moto's default network, with room for
    /// every pod of the benchmark, and returns the `--kubelet-cmd` line.
    pub fn kubelet_cmd(&self, fargate: &Path, out_dir: &Path, name: &str) -> Result<String> {
        let config = out_dir.join(format!("{name}.fargate.toml"));
        fs::write(
            &config,
            format!(
                "Region = \"{REGION}\"\nClusterName = \"{CLUSTER}\"\nSubnets = [\"{}\"]\n\
                 SecurityGroups = [\"{}\"]\nCPU = \"100000\"\nMemory = \"100Ti\"\n\
                 Pods = \"100000\"\n",
                self.subnet, self.security_group
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Ok(format!(
            "env AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
             AWS_EC2_METADATA_DISABLED=true '{}' --provider-config '{}' \
             --metrics-addr 127.0.0.1:{{metrics_port}} --kubelet-listen-address 127.0.0.1",
            self.endpoint,
            fargate.display(),
            config.display()
        ))
    }

    /// Stops moto; the calls it answered by API name.
    pub fn finish(mut self) -> Result<Map<String, Value>> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("reading vk-rig's calls")?;
        let status = self.child.wait().context("waiting for vk-rig")?;
        if !status.success() {
            bail!("vk-rig failed ({status})");
        }
        match serde_json::from_str(&line) {
            Ok(Value::Object(calls)) => Ok(calls),
            _ => bail!("vk-rig said {line:?} instead of its calls"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether an AWS API call changes something (and costs a mutating-call
/// quota): `RunTask`, `RegisterTaskDefinition`, `CreateSecret`...
fn mutating(api: &str) -> bool {
    let action = api.rsplit('.').next().unwrap_or(api);
    [
        "Run",
        "Start",
        "Stop",
        "Register",
        "Deregister",
        "Create",
        "Delete",
        "Put",
        "Tag",
        "Untag",
        "Update",
    ]
    .iter()
    .any(|verb| action.starts_with(verb))
}

/// What the result JSON gains: `aws_calls` (by API name), `aws_calls_per_pod`,
/// `aws_mutating_calls_per_pod` and `describe_tasks_per_task` (DescribeTasks
/// calls over the tasks they asked about: at most 0.01 when each call takes
/// a full batch of 100).
pub fn summarise(calls: &Map<String, Value>, pods: u64) -> Value {
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let apis: Map<String, Value> = calls
        .iter()
        .filter(|(api, _)| !api.contains(':'))
        .map(|(api, n)| (api.clone(), json!(count(n))))
        .collect();
    let per_pod = |n: u64| {
        if pods == 0 {
            0.0
        } else {
            n as f64 / pods as f64
        }
    };
    let per_pod_by_api: Map<String, Value> = apis
        .iter()
        .map(|(api, n)| (api.clone(), json!(round3(per_pod(count(n))))))
        .collect();
    let mutating_total: u64 = apis
        .iter()
        .filter(|(api, _)| mutating(api))
        .map(|(_, n)| count(n))
        .sum();
    let describes = calls.get("ecs.DescribeTasks").map_or(0, count);
    let described = calls.get("ecs.DescribeTasks:tasks").map_or(0, count);
    json!({
        "aws_calls": apis,
        "aws_calls_per_pod": per_pod_by_api,
        "aws_mutating_calls_per_pod": round3(per_pod(mutating_total)),
        "describe_tasks_per_task": if described == 0 {
            Value::Null
        } else {
            json!(round3(describes as f64 / described as f64))
        },
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Adds [`summarise`]'s figures to the result at `out` and prints them.
pub fn record(out: &Path, calls: &Map<String, Value>) -> Result<()> {
    let text = fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let mut result: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))?;
    let pods = result["pods"].as_u64().unwrap_or(0);
    let summary = summarise(calls, pods);
    let mut stderr = std::io::stderr();
    writeln!(stderr, "AWS calls per pod lifecycle ({pods} pods), by API:")?;
    if let Some(per_pod) = summary["aws_calls_per_pod"].as_object() {
        for (api, n) in per_pod {
            let mark = if mutating(api) { "  (mutating)" } else { "" };
            writeln!(stderr, "  {api:<40} {n}{mark}")?;
        }
    }
    writeln!(
        stderr,
        "  mutating calls per pod: {}; DescribeTasks per task described: {}",
        summary["aws_mutating_calls_per_pod"], summary["describe_tasks_per_task"]
    )?;
    if let (Some(result), Some(summary)) = (result.as_object_mut(), summary.as_object()) {
        result.extend(summary.clone());
    }
    fs::write(out, format!("{result:#}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_mutating_calls_and_describe_batches() {
        let calls: Map<String, Value> = serde_json::from_value(json!({
            "ecs.RunTask": 10,
            "ecs.RegisterTaskDefinition": 10,
            "ecs.StopTask": 10,
            "ecs.DeregisterTaskDefinition": 10,
            "ecs.ListTasks": 40,
            "ecs.DescribeTasks": 20,
            "ecs.DescribeTasks:tasks": 200,
            "ecs.CreateCluster": 1,
        }))
        .unwrap_or_default();
        let s = summarise(&calls, 10);
        assert_eq!(s["aws_mutating_calls_per_pod"], json!(4.1));
        assert_eq!(s["aws_calls_per_pod"]["ecs.ListTasks"], json!(4.0));
        assert_eq!(s["describe_tasks_per_task"], json!(0.1));
        assert!(s["aws_calls"].get("ecs.DescribeTasks:tasks").is_none());
        assert!(!mutating("ecs.DescribeTasks") && !mutating("logs.GetLogEvents"));
        assert!(mutating("secretsmanager.CreateSecret"));
    }
}
