//! The mock's streaming capabilities: deterministic logs, a tiny exec shell,
//! attach, a port-forward echo, and growing usage counters.
//!
//! Logs are computed, not stored: a container that started at `t0` has written
//! line `n` at `t0 + n × interval` (`<container> tick <n>`), framed by lifecycle
//! lines. So `--tail`, `--since` and `-f` are exact and cost no memory: the
//! core's [`vk_core::toolkit::log_lines`] selects and follows them.

use std::time::Duration;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::sync::mpsc;
use vk_core::provider::{ByteStream, ContainerUsage, ExecIo, LogOptions};
use vk_core::toolkit::log_lines::{LinePage, LineSource, LogLine, log_stream as select_and_follow};

/// Interval between two generated log lines.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One run of a container: when it started and, if it ended, when and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Start time.
    pub start: Timestamp,
    /// End time and exit code.
    pub end: Option<(Timestamp, i32)>,
}

/// The current run of a container (or, with `previous`, the one before), from its status.
pub fn run_of(status: &ContainerStatus, previous: bool) -> Option<Run> {
    let state = if previous {
        status.last_state.as_ref()?
    } else {
        status.state.as_ref()?
    };
    if let Some(r) = &state.running {
        return Some(Run {
            start: r.started_at.as_ref()?.0,
            end: None,
        });
    }
    let t = state.terminated.as_ref()?;
    let start = t.started_at.as_ref()?.0;
    let end = t.finished_at.as_ref().map(|f| f.0).unwrap_or(start);
    Some(Run {
        start,
        end: Some((end, t.exit_code)),
    })
}

/// Log lines of a run up to `now`.
pub fn lines(container: &str, image: &str, run: &Run, now: Timestamp) -> Vec<LogLine> {
    let until = run.end.map(|(e, _)| e).unwrap_or(now).min(now);
    let mut out = vec![LogLine::new(
        run.start,
        format!("{container}: started (image {image})"),
    )];
    let step = SignedDuration::try_from(LOG_INTERVAL).unwrap_or(SignedDuration::from_secs(1));
    let mut n: i64 = 1;
    while let Ok(t) = run.start.checked_add(step * n as i32) {
        if t > until {
            break;
        }
        out.push(LogLine::new(t, format!("{container}: tick {n}")));
        n += 1;
    }
    if let Some((end, code)) = run.end
        && end <= now
    {
        out.push(LogLine::new(
            end,
            format!("{container}: exited with code {code}"),
        ));
    }
    out
}

/// The computed log of one run, read by the core's log selection. The
/// cursor is the number of lines read; after the first read, `alive` gives
/// the container's run as it is now, and the log ends when that run ends or
/// is another one (the container restarted or is gone).
struct RunLog<F> {
    container: String,
    image: String,
    run: Run,
    alive: F,
}

impl<F: Fn() -> Option<Run> + Send + Sync + 'static> LineSource for RunLog<F> {
    type Cursor = usize;

    async fn lines_since(&mut self, cursor: Option<usize>) -> std::io::Result<LinePage<usize>> {
        let read = cursor.unwrap_or(0);
        if cursor.is_some() {
            match (self.alive)() {
                Some(now) if now.start == self.run.start => self.run = now,
                _ => {
                    return Ok(LinePage {
                        lines: Vec::new(),
                        next: read,
                        ended: true,
                    });
                }
            }
        }
        let all = lines(&self.container, &self.image, &self.run, Timestamp::now());
        Ok(LinePage {
            next: all.len(),
            lines: all.into_iter().skip(read).collect(),
            ended: self.run.end.is_some(),
        })
    }
}

/// A log stream: the lines `opts` selects, then (with `follow`) each new line
/// as it is written, until the run ends or `alive` says the container is gone.
pub fn log_stream(
    container: String,
    image: String,
    run: Run,
    opts: LogOptions,
    alive: impl Fn() -> Option<Run> + Send + Sync + 'static,
) -> ByteStream {
    let source = RunLog {
        container,
        image,
        run,
        alive,
    };
    select_and_follow(source, &opts, LOG_INTERVAL / 4)
}

/// Runs a command of the mock's built-in shell. Returns the exit code.
///
/// Commands: `echo ARGS`, `env`, `hostname`, `cat` (stdin to stdout), `sleep N`,
/// `exit N`, `true`, `false`, `tty-size` (the last terminal size), `sh -c 'CMD'`.
pub async fn exec(pod: &Pod, container: &str, command: &[String], mut io: ExecIo) -> i32 {
    let mut out = Output {
        stdout: io.stdout.clone(),
        stderr: io.stderr.clone(),
        tty: io.tty,
    };
    let args: Vec<String> = match command {
        [sh, flag, script] if (sh == "sh" || sh == "/bin/sh" || sh == "bash") && flag == "-c" => {
            split_words(script)
        }
        other => other.to_vec(),
    };
    let Some((cmd, rest)) = args.split_first() else {
        out.err("mock: empty command\n").await;
        return 126;
    };
    match cmd.as_str() {
        "echo" => {
            out.out(&format!("{}\n", rest.join(" "))).await;
            0
        }
        "hostname" => {
            out.out(&format!(
                "{}\n",
                pod.metadata.name.clone().unwrap_or_default()
            ))
            .await;
            0
        }
        "env" => {
            let ephemeral = vk_core::toolkit::ephemeral::ephemeral_containers(pod);
            let c = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .chain(ephemeral.iter().map(|e| &e.container))
                .find(|c| c.name == container);
            let mut text = String::new();
            for e in c.and_then(|c| c.env.as_ref()).into_iter().flatten() {
                text.push_str(&format!(
                    "{}={}\n",
                    e.name,
                    e.value.clone().unwrap_or_default()
                ));
            }
            out.out(&text).await;
            0
        }
        "cat" => {
            if let Some(stdin) = io.stdin.as_mut() {
                while let Some(chunk) = stdin.recv().await {
                    if let Some(tx) = &out.stdout
                        && tx.send(chunk).await.is_err()
                    {
                        return 0;
                    }
                }
            }
            0
        }
        "sleep" => match rest
            .first()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| (0.0..=3600.0).contains(s))
        {
            Some(secs) => {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                0
            }
            None => {
                out.err("sleep: invalid time interval\n").await;
                1
            }
        },
        "exit" => rest
            .first()
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(0),
        "true" => 0,
        "false" => 1,
        "tty-size" => {
            let mut last = None;
            if let Some(r) = io.resize.as_mut() {
                // Sizes sent before the command ran are queued; take the newest.
                let deadline = tokio::time::sleep(Duration::from_millis(500));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        s = r.recv() => match s { Some(s) => last = Some(s), None => break },
                        _ = &mut deadline => break,
                    }
                }
            }
            match last {
                Some(s) => out.out(&format!("{} {}\n", s.height, s.width)).await,
                None => out.out("unknown\n").await,
            }
            0
        }
        other => {
            out.err(&format!("mock: {other}: command not found\n"))
                .await;
            127
        }
    }
}

struct Output {
    stdout: Option<mpsc::Sender<Bytes>>,
    stderr: Option<mpsc::Sender<Bytes>>,
    tty: bool,
}

impl Output {
    async fn out(&mut self, text: &str) {
        let text = if self.tty {
            text.replace('\n', "\r\n")
        } else {
            text.to_string()
        };
        if let Some(tx) = &self.stdout {
            let _ = tx.send(Bytes::from(text)).await;
        }
    }
    async fn err(&mut self, text: &str) {
        // With a TTY stderr is merged into stdout, as on a real terminal.
        let target = if self.tty { &self.stdout } else { &self.stderr };
        if let Some(tx) = target {
            let _ = tx.send(Bytes::from(text.to_string())).await;
        }
    }
}

/// Splits a shell-like command line on spaces, honouring single and double quotes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() || any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || any {
        out.push(cur);
    }
    out
}

/// Deterministic usage of a container that started at `start`: 10 millicores
/// busy all the time, 16 MiB plus 1 KiB per second of uptime (capped at 64 MiB).
pub fn usage(name: &str, start: Timestamp, now: Timestamp) -> ContainerUsage {
    let secs = now.duration_since(start).as_secs().max(0) as u64;
    let mem = (16u64 << 20) + (secs << 10).min(48 << 20);
    ContainerUsage {
        name: name.to_string(),
        start_time: Some(start),
        cpu_usage_core_nanoseconds: secs * 10_000_000,
        cpu_usage_nano_cores: 10_000_000,
        memory_working_set_bytes: mem,
        memory_usage_bytes: mem + (4 << 20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(start: i64, end: Option<(i64, i32)>) -> Run {
        Run {
            start: Timestamp::from_second(start).unwrap(),
            end: end.map(|(e, c)| (Timestamp::from_second(e).unwrap(), c)),
        }
    }

    #[test]
    fn lines_are_deterministic() {
        let r = run(1000, None);
        let l = lines("c", "img", &r, Timestamp::from_second(1003).unwrap());
        let text: Vec<&[u8]> = l.iter().map(|l| &l.text[..]).collect();
        assert_eq!(
            text,
            [
                &b"c: started (image img)"[..],
                b"c: tick 1",
                b"c: tick 2",
                b"c: tick 3"
            ]
        );
        let ended = lines(
            "c",
            "img",
            &run(1000, Some((1002, 3))),
            Timestamp::from_second(2000).unwrap(),
        );
        assert_eq!(ended.last().unwrap().text, "c: exited with code 3");
        assert_eq!(ended.last().unwrap().time.as_second(), 1002);
        assert_eq!(ended.len(), 4);
    }

    async fn read(run: Run, opts: LogOptions, alive: Option<Run>) -> String {
        let s = log_stream("c".into(), "i".into(), run, opts, move || alive.clone());
        let chunks: Vec<std::io::Result<Bytes>> = futures::StreamExt::collect(s).await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn logs_of_a_run_are_selected_by_the_core() {
        let ended = run(1000, Some((1010, 0)));
        let cases = [
            (
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                },
                "c: tick 10\nc: exited with code 0\n",
            ),
            (
                LogOptions {
                    since: Some(Timestamp::from_second(1009).unwrap()),
                    timestamps: true,
                    ..Default::default()
                },
                "1970-01-01T00:16:49.000000000Z c: tick 9\n\
                 1970-01-01T00:16:50.000000000Z c: tick 10\n\
                 1970-01-01T00:16:50.000000000Z c: exited with code 0\n",
            ),
            (
                // An ended run is not followed, whatever runs now.
                LogOptions {
                    follow: true,
                    tail_lines: Some(1),
                    ..Default::default()
                },
                "c: exited with code 0\n",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(
                read(ended.clone(), opts.clone(), None).await,
                want,
                "{opts:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_followed_log_ends_when_the_container_restarts_or_goes() {
        let start = Timestamp::now().as_second() - 3;
        let current = run(start, None);
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        for alive in [None, Some(run(start + 1, None))] {
            let text = tokio::time::timeout(
                Duration::from_secs(5),
                read(current.clone(), opts.clone(), alive),
            )
            .await
            .expect("the log ends");
            assert!(text.starts_with("c: tick "), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn words() {
        assert_eq!(split_words("echo 'a b' c"), ["echo", "a b", "c"]);
        assert_eq!(split_words("exit 3"), ["exit", "3"]);
        assert_eq!(split_words("echo ''"), ["echo", ""]);
    }

    #[tokio::test]
    async fn shell_builtins() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p1" },
            "spec": { "containers": [{ "name": "c", "env": [{ "name": "A", "value": "1" }] }] }
        }))
        .unwrap();
        async fn run(pod: &Pod, cmd: &[&str], input: &[&str]) -> (i32, String, String) {
            let (otx, mut orx) = mpsc::channel(16);
            let (etx, mut erx) = mpsc::channel(16);
            let (itx, irx) = mpsc::channel(16);
            for i in input {
                itx.send(Bytes::from(i.to_string())).await.unwrap();
            }
            drop(itx);
            let io = ExecIo {
                stdin: Some(irx),
                stdout: Some(otx),
                stderr: Some(etx),
                tty: false,
                resize: None,
            };
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            let code = exec(pod, "c", &cmd, io).await;
            let mut out = String::new();
            while let Ok(b) = orx.try_recv() {
                out.push_str(&String::from_utf8_lossy(&b));
            }
            let mut err = String::new();
            while let Ok(b) = erx.try_recv() {
                err.push_str(&String::from_utf8_lossy(&b));
            }
            (code, out, err)
        }
        assert_eq!(
            run(&pod, &["echo", "hi"], &[]).await,
            (0, "hi\n".into(), String::new())
        );
        assert_eq!(run(&pod, &["sh", "-c", "exit 3"], &[]).await.0, 3);
        assert_eq!(run(&pod, &["hostname"], &[]).await.1, "p1\n");
        assert_eq!(run(&pod, &["env"], &[]).await.1, "A=1\n");
        assert_eq!(run(&pod, &["cat"], &["x", "y"]).await.1, "xy");
        let (code, _, err) = run(&pod, &["nope"], &[]).await;
        assert_eq!(code, 127);
        assert!(err.contains("not found"));
    }

    #[test]
    fn usage_grows() {
        let s = Timestamp::from_second(1000).unwrap();
        let a = usage("c", s, Timestamp::from_second(1010).unwrap());
        let b = usage("c", s, Timestamp::from_second(1020).unwrap());
        assert!(b.cpu_usage_core_nanoseconds > a.cpu_usage_core_nanoseconds);
        assert!(b.memory_working_set_bytes >= a.memory_working_set_bytes);
    }
}
