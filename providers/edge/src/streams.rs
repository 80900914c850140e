//! The streaming capabilities over the engine: container logs, exec and attach
//! (with TTY and resize), port-forward by dialing the pod IP, and usage from
//! the engine's stats.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, LogsOptions, ResizeContainerTTYOptions, StatsOptions,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use vk_core::provider::{
    ByteStream, ContainerUsage, ExecIo, LogOptions, PodUsage, TermSize, Tunnel,
};
use vk_core::{PodKey, ProviderError, ProviderResult};

use crate::engine::{Engine, map_error};
use crate::pod::PodView;

/// The engine id of a container's current (or previous) attempt. An attempt
/// that does not exist is `InvalidInput`, a 400 as from a real kubelet: the
/// apiserver shows a 400's body to `kubectl logs` but replaces a 404's with
/// "the server could not find the requested resource".
fn container_id(view: &PodView, container: &str, previous: bool) -> ProviderResult<String> {
    let (current, prev) = view
        .containers
        .get(container)
        .ok_or_else(|| ProviderError::NotFound(format!("container {container}")))?;
    let id = if previous { prev } else { current };
    id.clone().ok_or_else(|| {
        ProviderError::InvalidInput(if previous {
            format!("previous terminated container \"{container}\" not found")
        } else {
            format!("container \"{container}\" has not started yet")
        })
    })
}

/// A container's logs from the engine.
pub async fn logs(
    engine: &Engine,
    view: &PodView,
    container: &str,
    opts: &LogOptions,
) -> ProviderResult<ByteStream> {
    let id = container_id(view, container, opts.previous)?;
    let docker = engine.docker()?;
    let since = opts
        .since
        .map(|t| i32::try_from(t.as_second()).unwrap_or(i32::MAX))
        .unwrap_or(0);
    let stream = docker.logs(
        &id,
        Some(LogsOptions {
            follow: opts.follow,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: opts.timestamps,
            tail: opts
                .tail_lines
                .map(|n| n.to_string())
                .unwrap_or_else(|| "all".into()),
        }),
    );
    let mapped = stream.filter_map(|item| async move {
        match item {
            Ok(out) => Some(Ok(out.into_bytes())),
            Err(e) => {
                // The end of a followed stream when the container is removed.
                let msg = e.to_string();
                if msg.contains("404") {
                    None
                } else {
                    Some(Err(std::io::Error::other(msg)))
                }
            }
        }
    });
    Ok(Box::pin(mapped))
}

/// Copies the client's stdin into an engine stream, and resizes through `resize`.
fn pump_input(
    io_stdin: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(mut rx) = io_stdin {
            while let Some(chunk) = rx.recv().await {
                if input.write_all(&chunk).await.is_err() {
                    break;
                }
                let _ = input.flush().await;
            }
        }
        // Client closed stdin: close the container's.
        let _ = input.shutdown().await;
    })
}

/// Hands every terminal size the client sends to the engine, until the
/// client stops: `resize` gets the client, the exec or container `id` and the size.
fn forward_resizes<Fut>(
    sizes: Option<tokio::sync::mpsc::Receiver<TermSize>>,
    docker: &Docker,
    id: &str,
    resize: fn(Docker, String, TermSize) -> Fut,
) -> Option<tokio::task::JoinHandle<()>>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut sizes = sizes?;
    let (docker, id) = (docker.clone(), id.to_string());
    Some(tokio::spawn(async move {
        while let Some(size) = sizes.recv().await {
            resize(docker.clone(), id.clone(), size).await;
        }
    }))
}

/// Copies the engine's output to the client until either ends, then stops
/// the tasks that fed the session (stdin, resizes).
async fn pump_output(
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    stdout: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    stderr: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    feeders: [Option<tokio::task::JoinHandle<()>>; 2],
) -> bool {
    let mut ended = true;
    while let Some(Ok(item)) = output.next().await {
        let target = match &item {
            LogOutput::StdErr { .. } => stderr.as_ref().or(stdout.as_ref()),
            _ => stdout.as_ref(),
        };
        if let Some(tx) = target
            && tx.send(item.into_bytes()).await.is_err()
        {
            ended = false;
            break;
        }
    }
    for task in feeders.into_iter().flatten() {
        task.abort();
    }
    ended
}

/// Runs a command in a container; returns its exit code.
pub async fn exec(
    engine: &Engine,
    view: &PodView,
    container: &str,
    command: Vec<String>,
    io: ExecIo,
) -> ProviderResult<i32> {
    let id = container_id(view, container, false)?;
    let docker = engine.docker()?;
    let (stdin, stdout, stderr, tty) = (io.stdin, io.stdout, io.stderr, io.tty);
    let created = docker
        .create_exec(
            &id,
            CreateExecOptions::<String> {
                cmd: Some(command),
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(stdout.is_some()),
                attach_stderr: Some(stderr.is_some() || (tty && stdout.is_some())),
                tty: Some(tty),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match crate::engine::status_of(&e) {
            Some(404) | Some(409) => ProviderError::NotFound(format!(
                "container {container} is not running: {}",
                crate::engine::engine_message(&e)
            )),
            _ => map_error(e, "creating the exec"),
        })?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| map_error(e, "starting the exec"))?;
    if let StartExecResults::Attached { output, input } = started {
        let has_stdin = stdin.is_some();
        let input_task = has_stdin.then(|| pump_input(stdin, input));
        let resize_task = forward_resizes(
            io.resize,
            &docker,
            &created.id,
            |docker, id, size| async move {
                let (height, width) = (size.height, size.width);
                let _ = docker
                    .resize_exec(&id, ResizeExecOptions { height, width })
                    .await;
            },
        );
        pump_output(output, stdout, stderr, [input_task, resize_task]).await;
    }
    // The exit code is known once the process has ended; the output's end
    // can come a moment before the engine records it.
    for _ in 0..50 {
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| map_error(e, "inspecting the exec"))?;
        if inspect.running != Some(true)
            && let Some(code) = inspect.exit_code
        {
            return Ok(i32::try_from(code).unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(ProviderError::unavailable(
        "the engine did not report the command's exit code",
    ))
}

/// Attaches to a container's main process until it or the client ends.
pub async fn attach(
    engine: &Engine,
    view: &PodView,
    container: &str,
    io: ExecIo,
) -> ProviderResult<i32> {
    let id = container_id(view, container, false)?;
    let docker = engine.docker()?;
    let (stdin, stdout, stderr) = (io.stdin, io.stdout, io.stderr);
    let attached = docker
        .attach_container(
            &id,
            Some(AttachContainerOptions {
                stdin: stdin.is_some(),
                stdout: stdout.is_some(),
                stderr: stderr.is_some(),
                stream: true,
                logs: false,
                detach_keys: None,
            }),
        )
        .await
        .map_err(|e| map_error(e, "attaching"))?;
    let input_task = stdin.is_some().then(|| pump_input(stdin, attached.input));
    let resize_task = forward_resizes(io.resize, &docker, &id, |docker, id, size| async move {
        let (h, w) = (i32::from(size.height), i32::from(size.width));
        let _ = docker
            .resize_container_tty(&id, ResizeContainerTTYOptions { h, w })
            .await;
    });
    let output_ended =
        pump_output(attached.output, stdout, stderr, [input_task, resize_task]).await;
    // The output ends a moment before the engine records the exit; give it
    // that moment, so the client gets the real exit code. A process that
    // closed its output and runs on is reported as a clean end, as the
    // kubelet does.
    let tries = if output_ended { 150 } else { 1 };
    for attempt in 1..=tries {
        let info = crate::pod::inspect(&docker, &id)
            .await
            .map_err(|e| map_error(e, "inspecting the container"))?;
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(i32::try_from(state.exit_code.unwrap_or(0)).unwrap_or(-1));
        }
        if attempt < tries {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(0)
}

/// Carries one port-forward connection to `port` on the pod IP.
pub async fn port_forward(
    view: &PodView,
    port: u16,
    mut tunnel: Box<dyn Tunnel>,
) -> ProviderResult<()> {
    let ip = view
        .ip
        .clone()
        .ok_or_else(|| ProviderError::unavailable("the pod has no IP yet"))?;
    let mut conn = tokio::net::TcpStream::connect((ip.as_str(), port))
        .await
        .map_err(|e| ProviderError::unavailable(format!("dialing {ip}:{port} in the pod: {e}")))?;
    let _ = tokio::io::copy_bidirectional(&mut tunnel, &mut conn).await;
    Ok(())
}

/// The last CPU sample per container, for a rate in nanocores.
#[derive(Default)]
pub struct UsageCache {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

/// CPU and memory of every running container, from one stats sample each.
pub async fn usage(
    engine: &Engine,
    cache: &UsageCache,
    pods: Vec<(PodKey, PodView)>,
) -> ProviderResult<Vec<PodUsage>> {
    let docker = engine.docker()?;
    let mut out = Vec::new();
    for (key, view) in pods {
        let mut containers = Vec::new();
        for (name, (current, _)) in &view.containers {
            let Some(id) = current else { continue };
            let mut stats = docker.stats(
                id,
                Some(StatsOptions {
                    stream: false,
                    one_shot: true,
                }),
            );
            let Some(Ok(s)) = stats.next().await else {
                continue;
            };
            let cpu = s
                .cpu_stats
                .as_ref()
                .and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0);
            let mem = s.memory_stats.clone().unwrap_or_default();
            let usage = mem.usage.unwrap_or(0);
            let inactive = mem
                .stats
                .as_ref()
                .and_then(|m| {
                    m.get("inactive_file")
                        .or_else(|| m.get("total_inactive_file"))
                })
                .copied()
                .unwrap_or(0);
            let now = Instant::now();
            let nano_cores = {
                let mut last = cache.last.lock().unwrap_or_else(|p| p.into_inner());
                let rate = match last.get(id) {
                    Some((t, prev)) if cpu >= *prev => {
                        let secs = now.duration_since(*t).as_secs_f64();
                        if secs > 0.0 {
                            ((cpu - prev) as f64 / secs) as u64
                        } else {
                            0
                        }
                    }
                    _ => 0,
                };
                last.insert(id.clone(), (now, cpu));
                rate
            };
            containers.push(ContainerUsage {
                name: name.clone(),
                start_time: None,
                cpu_usage_core_nanoseconds: cpu,
                cpu_usage_nano_cores: nano_cores,
                memory_working_set_bytes: usage.saturating_sub(inactive),
                memory_usage_bytes: usage,
            });
        }
        out.push(PodUsage {
            key,
            start_time: None,
            containers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_attempt_is_invalid_input_with_the_kubelet_wording() {
        let mut view = PodView::default();
        view.containers
            .insert("main".into(), (Some("abc".into()), None));
        assert!(matches!(container_id(&view, "main", false), Ok(id) if id == "abc"));
        assert!(matches!(
            container_id(&view, "main", true),
            Err(ProviderError::InvalidInput(m)) if m == "previous terminated container \"main\" not found"
        ));
        view.containers.insert("late".into(), (None, None));
        assert!(matches!(
            container_id(&view, "late", false),
            Err(ProviderError::InvalidInput(m)) if m.contains("has not started yet")
        ));
        assert!(matches!(
            container_id(&view, "other", false),
            Err(ProviderError::NotFound(_))
        ));
    }
}
