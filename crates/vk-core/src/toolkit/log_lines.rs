//! Container logs over any source of timestamped lines: the kubelet's
//! `tailLines`, `sinceSeconds`/`sinceTime`, `limitBytes`, `timestamps` and
//! `follow` ([`LogOptions`]), done once here. A backend whose logs are an API
//! to poll (CloudWatch `GetLogEvents`, Azure container logs, a computed log
//! like the mock's) implements [`LineSource`] and hands [`log_stream`]'s
//! result to the core; following is polling that source until it says the
//! container ended or the client goes away.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use jiff::Timestamp;

use crate::provider::{ByteStream, LogOptions};

/// One line of a container's output, without its newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When the container wrote it.
    pub time: Timestamp,
    /// What it wrote.
    pub text: Bytes,
}

impl LogLine {
    /// A line written at `time`.
    pub fn new(time: Timestamp, text: impl Into<Bytes>) -> LogLine {
        LogLine {
            time,
            text: text.into(),
        }
    }
}

/// One answer of a [`LineSource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinePage<C> {
    /// The lines after the cursor, oldest first (possibly none).
    pub lines: Vec<LogLine>,
    /// Where the next call continues.
    pub next: C,
    /// No line will ever follow these (the container ended, or its log is
    /// gone): a followed stream ends after them.
    pub ended: bool,
}

/// A container's log as a backend gives it: the lines after a cursor.
pub trait LineSource: Send + 'static {
    /// Where a read continues (a CloudWatch `nextForwardToken`, a line count).
    type Cursor: Send + 'static;

    /// The lines after `cursor`, from the start of the log when it is
    /// `None`. A page may hold only part of what there is (a paginated API):
    /// the first read goes on until a page comes back empty.
    fn lines_since(
        &mut self,
        cursor: Option<Self::Cursor>,
    ) -> impl Future<Output = std::io::Result<LinePage<Self::Cursor>>> + Send;
}

/// A time as the kubelet prefixes log lines with it (RFC 3339, nanoseconds, UTC).
pub fn format_timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Where a [`log_stream`] is.
enum Phase {
    /// Reading what the log holds; with a tail, the last lines so far.
    Initial {
        started: Timestamp,
        tail: Option<VecDeque<LogLine>>,
    },
    /// Polling for new lines.
    Follow,
    Done,
}

struct State<S: LineSource> {
    source: S,
    cursor: Option<S::Cursor>,
    opts: LogOptions,
    poll: Duration,
    phase: Phase,
    /// Bytes left under `limit_bytes`.
    left: Option<u64>,
}

/// The log of `source` as `opts` selects it: the lines at or after `since`,
/// the last `tail_lines` of them, each prefixed with its time when
/// `timestamps` is set, cut at `limit_bytes`; then, with `follow`, every new
/// line, asking the source again every `poll`, until it says the log ended.
/// A source error ends the stream with that error.
pub fn log_stream<S: LineSource>(source: S, opts: &LogOptions, poll: Duration) -> ByteStream {
    let tail = opts
        .tail_lines
        .map(|n| VecDeque::with_capacity(usize::try_from(n).unwrap_or(usize::MAX).min(1024)));
    let state = State {
        source,
        cursor: None,
        left: opts.limit_bytes,
        opts: opts.clone(),
        poll,
        phase: Phase::Initial {
            started: Timestamp::now(),
            tail,
        },
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        let chunk = next_chunk(&mut state).await?;
        Some((chunk, state))
    }))
}

/// The next non-empty chunk of output, or `None` at the end.
async fn next_chunk<S: LineSource>(st: &mut State<S>) -> Option<std::io::Result<Bytes>> {
    loop {
        if matches!(st.phase, Phase::Done) {
            return None;
        }
        if matches!(st.phase, Phase::Follow) {
            tokio::time::sleep(st.poll).await;
        }
        let page = match st.source.lines_since(st.cursor.take()).await {
            Ok(page) => page,
            Err(e) => {
                st.phase = Phase::Done;
                return Some(Err(e));
            }
        };
        st.cursor = Some(page.next);
        let since = st.opts.since;
        let fresh = page
            .lines
            .iter()
            .filter(|l| since.is_none_or(|s| l.time >= s));
        let mut out = BytesMut::new();
        match &mut st.phase {
            Phase::Initial { started, tail } => {
                let newest = page.lines.last().map(|l| l.time);
                let caught_up =
                    page.ended || page.lines.is_empty() || newest.is_some_and(|t| t > *started);
                let keep = st.opts.tail_lines.unwrap_or(0);
                match tail {
                    Some(tail) => {
                        for line in fresh {
                            tail.push_back(line.clone());
                            if tail.len() as u64 > keep {
                                tail.pop_front();
                            }
                        }
                        if caught_up {
                            render(tail.iter(), st.opts.timestamps, &mut out);
                        }
                    }
                    None => render(fresh, st.opts.timestamps, &mut out),
                }
                if caught_up {
                    st.phase = if page.ended || !st.opts.follow {
                        Phase::Done
                    } else {
                        Phase::Follow
                    };
                }
            }
            Phase::Follow => {
                render(fresh, st.opts.timestamps, &mut out);
                if page.ended {
                    st.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        if let Some(left) = st.left.as_mut() {
            if out.len() as u64 >= *left {
                out.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                st.phase = Phase::Done;
            }
            *left -= out.len() as u64;
        }
        if !out.is_empty() {
            return Some(Ok(out.freeze()));
        }
    }
}

fn render<'a>(lines: impl Iterator<Item = &'a LogLine>, timestamps: bool, out: &mut BytesMut) {
    for line in lines {
        if timestamps {
            out.put_slice(format_timestamp(line.time).as_bytes());
            out.put_u8(b' ');
        }
        out.put_slice(&line.text);
        out.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// Lines `tick 1..=n` at seconds 1001..; pages of `page` lines; the log
    /// grows by what `grow` holds, one batch per call once the first read
    /// is done; ended when `grow` is empty and `ends` is set.
    struct Scripted {
        lines: Vec<LogLine>,
        page: usize,
        grow: Arc<Mutex<VecDeque<Vec<LogLine>>>>,
        ends: bool,
        calls: Arc<Mutex<u32>>,
        fail_at: Option<u32>,
    }

    fn ticks(from: i64, to: i64) -> Vec<LogLine> {
        (from..=to)
            .map(|n| LogLine::new(at(1000 + n), format!("tick {n}")))
            .collect()
    }

    fn scripted(n: i64, page: usize) -> Scripted {
        Scripted {
            lines: ticks(1, n),
            page,
            grow: Arc::default(),
            ends: true,
            calls: Arc::default(),
            fail_at: None,
        }
    }

    impl LineSource for Scripted {
        type Cursor = usize;

        async fn lines_since(&mut self, cursor: Option<usize>) -> std::io::Result<LinePage<usize>> {
            let calls = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if self.fail_at == Some(calls) {
                return Err(std::io::Error::other("backend went away"));
            }
            let from = cursor.unwrap_or(0);
            if from >= self.lines.len()
                && let Some(batch) = self.grow.lock().unwrap().pop_front()
            {
                self.lines.extend(batch);
            }
            let to = (from + self.page).min(self.lines.len());
            let ended = self.ends && to == self.lines.len() && self.grow.lock().unwrap().is_empty();
            Ok(LinePage {
                lines: self.lines[from..to].to_vec(),
                next: to,
                ended,
            })
        }
    }

    async fn collect(s: ByteStream) -> (String, Option<String>) {
        let items: Vec<std::io::Result<Bytes>> = s.collect().await;
        let mut text = String::new();
        let mut err = None;
        for item in items {
            match item {
                Ok(b) => {
                    assert!(!b.is_empty(), "no empty chunks");
                    text.push_str(&String::from_utf8_lossy(&b));
                }
                Err(e) => err = Some(e.to_string()),
            }
        }
        (text, err)
    }

    fn opts() -> LogOptions {
        LogOptions::default()
    }

    #[tokio::test(start_paused = true)]
    async fn selection_over_a_finished_log() {
        let cases = [
            (
                "everything",
                opts(),
                1,
                "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n",
            ),
            (
                "tail",
                LogOptions {
                    tail_lines: Some(2),
                    ..opts()
                },
                2,
                "tick 4\ntick 5\n",
            ),
            (
                "tail zero",
                LogOptions {
                    tail_lines: Some(0),
                    ..opts()
                },
                2,
                "",
            ),
            (
                "tail beyond the log",
                LogOptions {
                    tail_lines: Some(50),
                    ..opts()
                },
                3,
                "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n",
            ),
            (
                "since is inclusive",
                LogOptions {
                    since: Some(at(1004)),
                    ..opts()
                },
                2,
                "tick 4\ntick 5\n",
            ),
            (
                "since after the end",
                LogOptions {
                    since: Some(at(2000)),
                    ..opts()
                },
                2,
                "",
            ),
            (
                "since then tail",
                LogOptions {
                    since: Some(at(1002)),
                    tail_lines: Some(3),
                    ..opts()
                },
                1,
                "tick 3\ntick 4\ntick 5\n",
            ),
            (
                "timestamps",
                LogOptions {
                    tail_lines: Some(1),
                    timestamps: true,
                    ..opts()
                },
                2,
                "1970-01-01T00:16:45.000000000Z tick 5\n",
            ),
            (
                "limit bytes cuts mid-line",
                LogOptions {
                    limit_bytes: Some(10),
                    ..opts()
                },
                1,
                "tick 1\ntic",
            ),
            (
                "limit bytes after a tail",
                LogOptions {
                    tail_lines: Some(2),
                    limit_bytes: Some(7),
                    ..opts()
                },
                5,
                "tick 4\n",
            ),
            (
                "follow on an ended log stops",
                LogOptions {
                    follow: true,
                    ..opts()
                },
                2,
                "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n",
            ),
        ];
        for (what, o, page, want) in cases {
            let s = log_stream(scripted(5, page), &o, Duration::from_secs(1));
            let (text, err) = collect(s).await;
            assert_eq!(text, want, "{what}");
            assert_eq!(err, None, "{what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follow_polls_until_the_log_ends() {
        let source = scripted(3, 10);
        source
            .grow
            .lock()
            .unwrap()
            .extend([vec![], ticks(4, 5), vec![], ticks(6, 6)]);
        let calls = source.calls.clone();
        let o = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..opts()
        };
        let started = tokio::time::Instant::now();
        let (text, err) = collect(log_stream(source, &o, Duration::from_secs(2))).await;
        assert_eq!(text, "tick 3\ntick 4\ntick 5\ntick 6\n");
        assert_eq!(err, None);
        // The first read (two calls: the lines, then the empty page that
        // says it caught up), then one poll per batch.
        assert_eq!(*calls.lock().unwrap(), 5);
        assert_eq!(started.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn follow_applies_since_and_limit_to_new_lines() {
        let source = scripted(2, 10);
        // Caught up after the first read; then lines 3-4, then 5-9.
        source
            .grow
            .lock()
            .unwrap()
            .extend([vec![], ticks(3, 4), ticks(5, 9)]);
        let o = LogOptions {
            follow: true,
            since: Some(at(1004)),
            limit_bytes: Some(17),
            ..opts()
        };
        let (text, err) = collect(log_stream(source, &o, Duration::from_secs(1))).await;
        assert_eq!(text, "tick 4\ntick 5\ntic");
        assert_eq!(err, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_without_end_keeps_polling_and_stops_when_dropped() {
        let mut source = scripted(1, 10);
        source.ends = false;
        let calls = source.calls.clone();
        let o = LogOptions {
            follow: true,
            ..opts()
        };
        let mut s = log_stream(source, &o, Duration::from_millis(250));
        assert_eq!(s.next().await.unwrap().unwrap(), Bytes::from("tick 1\n"));
        let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        assert!(next.is_err(), "nothing new: still waiting");
        assert!(*calls.lock().unwrap() >= 20, "polled every 250 ms");
        drop(s);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_error_ends_the_stream_with_it() {
        let cases = [
            (1, ""),
            (2, "tick 1\ntick 2\n"),
            (3, "tick 1\ntick 2\ntick 3\ntick 4\n"),
        ];
        for (fail_at, want) in cases {
            let mut source = scripted(4, 2);
            source.ends = false;
            source.fail_at = Some(fail_at);
            let o = LogOptions {
                follow: true,
                ..opts()
            };
            let (text, err) = collect(log_stream(source, &o, Duration::from_secs(1))).await;
            assert_eq!(text, want, "failing call {fail_at}");
            assert_eq!(
                err.as_deref(),
                Some("backend went away"),
                "failing call {fail_at}"
            );
        }
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let cases = [
            (at(0), "1970-01-01T00:00:00.000000000Z"),
            (
                Timestamp::new(1_767_225_600, 123_456_789).unwrap(),
                "2026-01-01T00:00:00.123456789Z",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(format_timestamp(t), want);
        }
    }
}
