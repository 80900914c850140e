//! Container logs: ACI's `GET .../logs?timestamps=true` as a
//! [`LineSource`] for the core's log toolkit, which does `tailLines`,
//! `sinceTime`, `limitBytes`, `timestamps` and `follow` on top.
//!
//! ACI has no follow and no cursor: each read returns the whole log (or its
//! tail). Following polls it and keeps, as its cursor, the time of the last
//! line returned and how many lines carried that time, so that a line is
//! never given twice. A followed log ends once the container has terminated
//! and will not be restarted.

use std::str::FromStr;

use jiff::Timestamp;
use vk_core::toolkit::log_lines::{LinePage, LineSource, LogLine};

use crate::client::ArmClient;

/// Where a read of the log continues: after the `count`-th line at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    time: Timestamp,
    count: usize,
}

/// One container's log in ARM.
pub struct AciLogSource {
    client: ArmClient,
    group: String,
    container: String,
    /// The tail to ask for on the first read (`tailLines` without `since`).
    first_tail: Option<u64>,
}

impl AciLogSource {
    /// The log of `container` in `group`.
    pub fn new(
        client: ArmClient,
        group: String,
        container: String,
        first_tail: Option<u64>,
    ) -> Self {
        AciLogSource {
            client,
            group,
            container,
            first_tail,
        }
    }
}

/// Lines of `ACI timestamps=true` output: `<RFC 3339> <text>`. A line
/// without a time (a continuation) takes the previous line's.
pub fn parse_lines(content: &str) -> Vec<LogLine> {
    let mut last = Timestamp::UNIX_EPOCH;
    content
        .lines()
        .map(|line| {
            let (time, text) = match line.split_once(' ') {
                Some((t, rest)) => match Timestamp::from_str(t) {
                    Ok(t) => (t, rest),
                    Err(_) => (last, line),
                },
                None => match Timestamp::from_str(line) {
                    Ok(t) => (t, ""),
                    Err(_) => (last, line),
                },
            };
            last = time;
            LogLine::new(time, text.as_bytes().to_vec())
        })
        .collect()
}

/// The lines after `cursor` and the cursor after them.
pub fn after(lines: Vec<LogLine>, cursor: Option<LogCursor>) -> (Vec<LogLine>, Option<LogCursor>) {
    let mut next = cursor;
    let mut out = Vec::new();
    let mut same_time = 0usize;
    let mut previous: Option<Timestamp> = None;
    for line in lines {
        same_time = if previous == Some(line.time) {
            same_time + 1
        } else {
            1
        };
        previous = Some(line.time);
        let new = match cursor {
            None => true,
            Some(c) => line.time > c.time || (line.time == c.time && same_time > c.count),
        };
        if new {
            next = Some(LogCursor {
                time: line.time,
                count: same_time,
            });
            out.push(line);
        }
    }
    (out, next)
}

impl LineSource for AciLogSource {
    type Cursor = Option<LogCursor>;

    async fn lines_since(
        &mut self,
        cursor: Option<Self::Cursor>,
    ) -> std::io::Result<LinePage<Self::Cursor>> {
        let cursor = cursor.flatten();
        let tail = if cursor.is_none() {
            self.first_tail.take()
        } else {
            None
        };
        let io = |e: vk_core::ProviderError| std::io::Error::other(e.to_string());
        let content = self
            .client
            .logs(&self.group, &self.container, tail)
            .await
            .map_err(io)?;
        let (lines, next) = after(parse_lines(&content), cursor);
        let ended = if lines.is_empty() {
            let group = self.client.get_group(&self.group).await.map_err(io)?;
            // Terminated stays terminated only when ACI will not restart it.
            group.is_none_or(|g| {
                let restarts = g.properties.restart_policy.as_deref().unwrap_or("Always");
                let c = g
                    .properties
                    .containers
                    .iter()
                    .find(|c| c.name == self.container);
                c.is_none_or(|c| {
                    let state = c
                        .properties
                        .instance_view
                        .as_ref()
                        .and_then(|v| v.current_state.as_ref());
                    state.is_some_and(|s| {
                        s.state.as_deref() == Some("Terminated")
                            && (restarts == "Never"
                                || (restarts == "OnFailure" && s.exit_code == Some(0)))
                    })
                })
            })
        } else {
            false
        };
        Ok(LinePage { lines, next, ended })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn lines_carry_their_time_and_continuations_the_previous_one() {
        let lines = parse_lines(
            "2026-01-01T00:00:01.5Z hello world\n  continued\n2026-01-01T00:00:02Z \n2026-01-01T00:00:03Z",
        );
        assert_eq!(texts(&lines), ["hello world", "  continued", "", ""]);
        assert_eq!(lines[0].time.to_string(), "2026-01-01T00:00:01.5Z");
        assert_eq!(lines[1].time, lines[0].time);
        assert_eq!(lines[3].time.to_string(), "2026-01-01T00:00:03Z");
    }

    #[test]
    fn following_never_repeats_a_line() {
        let log = "2026-01-01T00:00:01Z a\n2026-01-01T00:00:02Z b\n2026-01-01T00:00:02Z c\n";
        let (first, cursor) = after(parse_lines(log), None);
        assert_eq!(texts(&first), ["a", "b", "c"]);
        let (none, same) = after(parse_lines(log), cursor);
        assert!(none.is_empty());
        assert_eq!(same, cursor);
        // A new line at the same second as the last, and one later.
        let grown = format!("{log}2026-01-01T00:00:02Z d\n2026-01-01T00:00:05Z e\n");
        let (more, cursor2) = after(parse_lines(&grown), cursor);
        assert_eq!(texts(&more), ["d", "e"]);
        // A tail that cut the start off changes nothing.
        let tail = "2026-01-01T00:00:02Z d\n2026-01-01T00:00:05Z e\n2026-01-01T00:00:06Z f\n";
        let (last, _) = after(parse_lines(tail), cursor2);
        assert_eq!(texts(&last), ["f"]);
    }
}
