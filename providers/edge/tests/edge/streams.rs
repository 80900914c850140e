//! The edge provider's streams and usage against real containers: `kubectl
//! logs` options (tail, timestamps, since, follow, previous), `kubectl attach`
//! (output and stdin), `kubectl exec` with a TTY, a memory limit the kernel
//! enforces, and `/stats/summary` and `/metrics/resource` from the engine's
//! stats. Each test runs its own `vk-edge` node and namespace on the rig's
//! rootful podman.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use vk_test_support::podman;

/// The next line of a child's output, or a panic naming `what` after `within`.
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    within: Duration,
    what: &str,
) -> String {
    match tokio::time::timeout(within, lines.next_line()).await {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => panic!("{what}: the output ended"),
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no line within {within:?}"),
    }
}

/// The terminated state of container `c`, if it has one.
fn terminated(
    p: &k8s_openapi::api::core::v1::Pod,
    c: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    container(p, c)?.state.as_ref()?.terminated.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_tail_timestamps_since_and_follow() {
    let (cluster, ns, node) = rig!("edge-logs");
    let client = cluster.client();
    let n = ns.name();
    // `burst` prints three lines, then a fourth 8 s later; `ticker` prints
    // a numbered line every second.
    create_pod(
        &client,
        n,
        pod_with(
            "logs",
            &node.name,
            json!([
                sh(
                    "burst",
                    "echo one; echo two; echo three; sleep 8; echo four; sleep 3600"
                ),
                sh(
                    "ticker",
                    "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"
                ),
            ]),
            json!({}),
        ),
    )
    .await;
    wait_running(&client, n, "logs", RUN).await;
    let logs = |extra: &'static [&'static str]| {
        let cluster = &cluster;
        async move {
            let mut args = vec!["-n", n, "logs", "logs", "-c", "burst"];
            args.extend_from_slice(extra);
            kubectl(cluster, &args).await
        }
    };
    wait_until("the first three lines", Duration::from_secs(30), || async {
        logs(&[]).await.1 == "one\ntwo\nthree\n"
    })
    .await;

    // --since: as soon as "four" is there it is at most a second or two old,
    // while the first three lines are at least 8 s old.
    wait_until("\"four\" to appear", Duration::from_secs(30), || async {
        logs(&[]).await.1 == "one\ntwo\nthree\nfour\n"
    })
    .await;
    let (code, since, err) = logs(&["--since=4s"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(since, "four\n", "--since=4s must drop the lines 8 s older");
    let (_, long_since, _) = logs(&["--since=5m"]).await;
    assert_eq!(long_since, "one\ntwo\nthree\nfour\n");

    // --tail
    let (code, tail, err) = logs(&["--tail=2"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(tail, "three\nfour\n");

    // --timestamps: an RFC3339 time, a space, the line; the times are when
    // the lines were written (the fourth line 8 s after the first).
    let (code, stamped, err) = logs(&["--timestamps"]).await;
    assert_eq!(code, 0, "{err}");
    let parsed: Vec<(jiff::Timestamp, &str)> = stamped
        .lines()
        .map(|l| {
            let (t, text) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("no timestamp in {l:?}"));
            let t: jiff::Timestamp = t
                .parse()
                .unwrap_or_else(|e| panic!("{t:?} is not RFC3339: {e}"));
            (t, text)
        })
        .collect();
    assert_eq!(
        parsed.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        ["one", "two", "three", "four"],
        "{stamped}"
    );
    let now = jiff::Timestamp::now();
    let gap = parsed[3].0.duration_since(parsed[0].0).as_secs_f64();
    assert!(
        (6.0..=12.0).contains(&gap),
        "\"four\" stamped {gap} s after \"one\", not ~8 s: {stamped}"
    );
    let age = now.duration_since(parsed[0].0).as_secs_f64();
    assert!(
        (0.0..120.0).contains(&age),
        "\"one\" stamped {age} s ago: {stamped}"
    );
    // --since-time just after the third line's time keeps only the fourth.
    let after_three = (parsed[2].0 + jiff::SignedDuration::from_secs(2)).to_string();
    let since_time = format!("--since-time={after_three}");
    let (code, out, err) = kubectl(
        &cluster,
        &["-n", n, "logs", "logs", "-c", "burst", &since_time],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "four\n"), "{since_time}: {err}");

    // -f: lines arrive while the container prints them, one a second, and
    // the stream stays open.
    let mut child = spawn_kubectl(
        &cluster,
        &["-n", n, "logs", "logs", "-c", "ticker", "-f", "--tail=1"],
    );
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = next_line(&mut lines, Duration::from_secs(20), "logs -f").await;
    let number = |l: &str| -> u64 {
        l.strip_prefix("tick-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a tick line: {l:?}"))
    };
    let mut last = number(&first);
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let l = next_line(&mut lines, Duration::from_secs(5), "logs -f").await;
        arrivals.push(Instant::now());
        let k = number(&l);
        assert_eq!(k, last + 1, "followed lines out of order");
        last = k;
    }
    let spread = arrivals[2].duration_since(arrivals[0]);
    assert!(
        spread >= Duration::from_millis(1500),
        "three followed lines came within {spread:?}: not streamed as printed"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "kubectl logs -f ended by itself"
    );
    child.kill().await.unwrap();
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_previous_after_a_restart() {
    let (cluster, ns, node) = rig!("edge-prev");
    let client = cluster.client();
    let n = ns.name();
    // Each attempt prints a marker of its own, then fails.
    create_pod(
        &client,
        n,
        pod_with(
            "again",
            &node.name,
            json!([sh(
                "main",
                "echo run-$(cat /proc/sys/kernel/random/uuid); sleep 5; exit 1"
            )]),
            json!({"restartPolicy": "OnFailure"}),
        ),
    )
    .await;
    let logs = |previous: bool| {
        let cluster = &cluster;
        async move {
            let mut args = vec!["-n", n, "logs", "again"];
            if previous {
                args.push("--previous");
            }
            kubectl(cluster, &args).await
        }
    };
    let first = wait_for("the first attempt's marker", RUN, || async {
        let (_, out, _) = logs(false).await;
        Ok(out.starts_with("run-").then_some(out))
    })
    .await
    .expect("the first attempt printed nothing");
    let p = get_pod(&cluster, n, "again").await;
    assert_eq!(
        container(&p, "main").unwrap().restart_count,
        0,
        "the first marker was read too late"
    );
    // No previous attempt yet: a clear error, not empty output.
    let (code, out, err) = logs(true).await;
    assert_ne!(
        code, 0,
        "--previous without a previous attempt succeeded: {out:?}"
    );
    // A 400 as from a real kubelet; the apiserver passes its body on.
    assert!(
        err.contains("BadRequest")
            && err.contains("previous terminated container")
            && err.contains("main")
            && err.contains("not found"),
        "unclear error for --previous without a previous attempt: {err}"
    );

    wait_pod(&client, n, "again", RUN, "restartCount >= 1", |p| {
        container(p, "main").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    let (code, previous, err) = logs(true).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        previous, first,
        "--previous is not the first attempt's output"
    );
    // The current attempt has a marker of its own.
    wait_until(
        "the second attempt's marker",
        Duration::from_secs(30),
        || async {
            let (_, out, _) = logs(false).await;
            out.starts_with("run-") && out != first
        },
    )
    .await;
    let p = get_pod(&cluster, n, "again").await;
    assert_eq!(
        container(&p, "main").unwrap().restart_count,
        1,
        "a second restart came before the checks; the previous output was that of attempt 1"
    );
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_attach_receives_output_and_sends_stdin() {
    let (cluster, ns, node) = rig!("edge-attach");
    let client = cluster.client();
    let n = ns.name();
    let mut echo = sh("echo", "while read l; do echo got:$l; done");
    echo["stdin"] = json!(true);
    create_pod(
        &client,
        n,
        pod_with(
            "att",
            &node.name,
            json!([
                sh(
                    "ticker",
                    "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"
                ),
                echo,
            ]),
            json!({}),
        ),
    )
    .await;
    wait_running(&client, n, "att", RUN).await;

    // Output of the main process as it prints it (attach replays no history).
    let mut child = spawn_kubectl(&cluster, &["-n", n, "attach", "att", "-c", "ticker"]);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ticks = Vec::new();
    let start = Instant::now();
    while ticks.len() < 3 {
        let l = next_line(&mut lines, Duration::from_secs(20), "kubectl attach").await;
        if let Some(k) = l.strip_prefix("tick-") {
            ticks.push(k.parse::<u64>().unwrap());
        }
    }
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "attach lost or reordered lines: {ticks:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(25));
    child.kill().await.unwrap();

    // stdin: what kubectl reads goes to the process, its answer comes back.
    let mut child = spawn_kubectl(&cluster, &["-n", n, "attach", "-i", "att", "-c", "echo"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // kubectl may connect after the first write: keep writing until answered.
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        let mut k = 0;
        loop {
            k += 1;
            stdin
                .write_all(format!("hello-{k}\n").as_bytes())
                .await
                .unwrap();
            stdin.flush().await.unwrap();
            if let Ok(Ok(Some(l))) =
                tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await
            {
                return l;
            }
        }
    })
    .await
    .expect("no answer through kubectl attach -i");
    assert!(
        got.starts_with("got:hello-"),
        "unexpected answer through attach -i: {got:?}"
    );
    child.kill().await.unwrap();
    drop(node);
}

/// A pod `tty` running `sleep` on `node`, Running.
async fn tty_pod(cluster: &TestCluster, ns: &str, node: &str) {
    let client = cluster.client();
    create_pod(
        &client,
        ns,
        pod_with("tty", node, json!([sh("main", "sleep 3600")]), json!({})),
    )
    .await;
    wait_running(&client, ns, "tty", RUN).await;
}

/// `kubectl exec -it tty -- sh -c SCRIPT` on a terminal of 40 rows and 100
/// columns: kubectl allocates a TTY only when its own stdin is one, so
/// `script` (util-linux) runs it on a pseudo-terminal of that size, which
/// kubectl sends on the resize stream. Returns (exit code, output without CRs).
async fn exec_on_a_terminal(
    cluster: &TestCluster,
    ns: &str,
    script: &str,
) -> (Option<i32>, String) {
    let inner = format!(
        "stty rows 40 cols 100; {} kubectl --kubeconfig {} -n {ns} exec -it tty -- sh -c '{script}'",
        cluster.vkcp().display(),
        cluster.kubeconfig().display()
    );
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &inner, "/dev/null"]);
    let out = tokio::time::timeout(Duration::from_secs(60), run_with_stdin(cmd, Vec::new()))
        .await
        .expect("kubectl exec -it under script hung");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_with_a_tty_gets_a_pts_that_follows_the_client_size() {
    let (cluster, ns, node) = rig!("edge-tty");
    let n = ns.name();
    tty_pod(&cluster, n, &node.name).await;

    // Without a terminal kubectl drops -t: the command runs without a TTY.
    let (code, out, err) = kubectl(
        &cluster,
        &[
            "-n",
            n,
            "exec",
            "-t",
            "tty",
            "--",
            "sh",
            "-c",
            "tty; echo done",
        ],
    )
    .await;
    assert_eq!(out, "not a tty\ndone\n", "code {code}: {err}");

    // On a terminal: a pts, the client's size once the resize has arrived
    // (see the ignored test below for the size at the very start), and the
    // exit code back through the TTY session.
    let (code, text) = exec_on_a_terminal(&cluster, n, "tty; sleep 2; stty size; exit 3").await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("/dev/pts/")),
        "no pts device in the output: {text:?}"
    );
    // The pts may echo a control character ahead of the size (`^@`, when
    // `script` sees its empty stdin end while the command runs): what
    // counts is the size the line ends with.
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start_matches("^@").trim_start_matches("^D") == "40 100"),
        "the terminal size did not reach the container: {text:?}"
    );
    assert_eq!(code, Some(3), "the exit code did not come back: {text:?}");
    drop(node);
}

// Known gap: the engine starts the command before kubectl's first size
// arrives, and the size is applied by a resize after the start, so a command
// that asks for its size at once sees 0x0 (busybox `stty size` fails). The
// fix is to wait for the first size and start the exec with it (podman 4
// takes `h`/`w` in the exec start body, Docker >= API 1.42 `ConsoleSize`;
// bollard 0.21's `StartExecOptions` has neither).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "known gap: the initial TTY size reaches the container only after the command started"]
async fn kubectl_exec_with_a_tty_has_the_client_size_from_the_start() {
    let (cluster, ns, node) = rig!("edge-tty0");
    let n = ns.name();
    tty_pod(&cluster, n, &node.name).await;
    let (_, text) = exec_on_a_terminal(&cluster, n, "stty size").await;
    assert!(
        text.lines().any(|l| l == "40 100"),
        "the command started before the terminal size was set: {text:?}"
    );
    drop(node);
}

// The kernel enforces the limit on this rig (cgroup v1 memory controller,
// runc, cgroupfs): the process is SIGKILLed at 16 MiB. Whether the engine
// *says* so depends on it: podman before 5.0 never sets `State.OOMKilled`
// (conmon writes its "oom" file to its working directory, where podman 4 does
// not look; containers/podman#13102, fixed by #21523 in 5.0), so Debian 12's
// podman 4.3 reports a plain exit 137. The test asserts what the engine
// reports: OOMKilled when it says OOM, and otherwise says loudly why not.
#[tokio::test(flavor = "multi_thread")]
async fn a_container_over_its_memory_limit_is_killed() {
    let (cluster, ns, node) = rig!("edge-oom");
    let client = cluster.client();
    let n = ns.name();
    let mut hog = sh(
        "hog",
        "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}; sleep 100",
    );
    hog["resources"] = json!({"limits": {"memory": "16Mi"}});
    create_pod(
        &client,
        n,
        pod_with(
            "oom",
            &node.name,
            json!([hog]),
            json!({"restartPolicy": "Never"}),
        ),
    )
    .await;
    let p = wait_pod(&client, n, "oom", RUN, "Failed", |p| phase(p) == "Failed").await;
    let t = terminated(&p, "hog").expect("terminated state");
    assert_eq!(t.exit_code, 137, "not SIGKILLed: {t:?}");
    let (_, out, _) = kubectl(&cluster, &["-n", n, "logs", "oom"]).await;
    assert!(
        !out.contains("survived"),
        "the limit was not enforced: {out}"
    );

    let uid = p.metadata.uid.clone().unwrap();
    let ids = engine_ids(&uid);
    let (_, id) = ids
        .iter()
        .find(|(name, _)| name.starts_with("k8s_hog_"))
        .unwrap_or_else(|| panic!("no engine container for hog: {ids:?}"));
    let inspect = podman([
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.State.OOMKilled}}",
        id,
    ])
    .unwrap()
    .ok()
    .unwrap();
    let (limit, oom) = inspect.trim().split_once(' ').unwrap();
    assert_eq!(
        limit, "16777216",
        "the engine container has no 16 MiB limit"
    );
    if oom == "true" {
        assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    } else {
        let version = podman(["version", "--format", "{{.Server.Version}}"])
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_default();
        eprintln!(
            "\n**** NOTE: podman {version} killed the container at its memory limit but does not \
             report OOMKilled (containers/podman#13102, fixed in podman 5.0); the pod says {:?}\n",
            t.reason
        );
        assert_eq!(t.reason.as_deref(), Some("Error"), "{t:?}");
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_summary_and_resource_metrics_report_the_container_memory() {
    let (cluster, ns, node) = rig!("edge-stats");
    let client = cluster.client();
    let n = ns.name();
    // Holds 8 MiB in a shell variable. The loop keeps that shell alive:
    // busybox sh would exec into a plain last command and free it.
    create_pod(
        &client,
        n,
        pod_with(
            "stats",
            &node.name,
            json!([sh(
                "main",
                "x=$(head -c 8388608 /dev/zero | tr '\\0' a); echo ready; while true; do sleep 1; done"
            )]),
            json!({}),
        ),
    )
    .await;
    wait_running(&client, n, "stats", RUN).await;
    wait_until(
        "the container holds its 8 MiB",
        Duration::from_secs(30),
        || async { kubectl(&cluster, &["-n", n, "logs", "stats"]).await.1 == "ready\n" },
    )
    .await;
    const HELD: u64 = 8 * 1024 * 1024;
    let port = node.kubelet_port;

    let summary = wait_for(
        "the summary to show >= 8 MiB for stats/main",
        Duration::from_secs(30),
        || async {
            let (code, body) = kubelet_get(&cluster, port, "/stats/summary").await;
            assert_eq!(code, "200", "/stats/summary: {body}");
            let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(summary["node"]["nodeName"], json!(node.name));
            let pod = summary["pods"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| {
                        p["podRef"]["name"] == "stats" && p["podRef"]["namespace"] == json!(n)
                    })
                    .cloned()
            });
            if let Some(pod) = pod
                && let Some(c) = pod["containers"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["name"] == "main"))
                && c["memory"]["workingSetBytes"].as_u64().unwrap_or(0) >= HELD
            {
                return Ok(Some((pod.clone(), c.clone())));
            }
            // Not yet: the error keeps the last summary for the timeout message.
            Err(anyhow::anyhow!("last summary: {body}"))
        },
    )
    .await;
    let (pod, c) = summary.unwrap_or_else(|e| panic!("{e:#}"));
    let ws = c["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(
        ws < 64 * 1024 * 1024,
        "working set {ws} is far more than the container holds"
    );
    assert!(c["memory"]["usageBytes"].as_u64().unwrap() >= ws, "{c}");
    assert!(
        c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{c}"
    );
    assert!(
        pod["memory"]["workingSetBytes"].as_u64().unwrap() >= ws,
        "{pod}"
    );

    let (code, text) = kubelet_get(&cluster, port, "/metrics/resource").await;
    assert_eq!(code, "200", "/metrics/resource: {text}");
    let prefix = format!(
        "container_memory_working_set_bytes{{container=\"main\",namespace=\"{n}\",pod=\"stats\"}} "
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in /metrics/resource: {text}"));
    let value: f64 = line[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    assert!(
        value >= HELD as f64,
        "container_memory_working_set_bytes {value} < 8 MiB"
    );
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "container_cpu_usage_seconds_total{{container=\"main\",namespace=\"{n}\",pod=\"stats\"}} "
        ))),
        "{text}"
    );
    drop(node);
}
