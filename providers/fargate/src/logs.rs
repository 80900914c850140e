//! A container's log in CloudWatch Logs as a [`LineSource`]: `GetLogEvents`
//! on the container's awslogs stream, from the head, page after page
//! (`nextForwardToken`; the last page comes back empty with the same
//! token). The toolkit's [`vk_core::toolkit::log_lines`] does the
//! selection (tail, since, timestamps, limit) and the following.
//!
//! `limit` is never sent: CloudWatch's default page (up to 10,000 events or
//! 1 MB) is the largest, and a `limit` of 0 is refused.

use std::io;

use bytes::Bytes;
use jiff::Timestamp;
use vk_core::toolkit::log_lines::{LinePage, LineSource, LogLine};

use crate::aws::is_not_found;

/// One container's awslogs stream.
pub struct CloudWatchLines {
    /// The client.
    pub client: aws_sdk_cloudwatchlogs::Client,
    /// The log group.
    pub group: String,
    /// The stream (`<prefix>/<container>/<task id>`).
    pub stream: String,
    /// The task has stopped: once the stream is read to its end, nothing follows.
    pub task_stopped: bool,
}

impl LineSource for CloudWatchLines {
    /// The next forward token, once CloudWatch gave one.
    type Cursor = Option<String>;

    async fn lines_since(
        &mut self,
        cursor: Option<Option<String>>,
    ) -> io::Result<LinePage<Option<String>>> {
        let cursor = cursor.flatten();
        let answer = self
            .client
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .start_from_head(true)
            .set_next_token(cursor.clone())
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            // The stream appears with the container's first line.
            Err(e) if is_not_found(&e) => {
                return Ok(LinePage {
                    lines: Vec::new(),
                    next: cursor,
                    ended: self.task_stopped,
                });
            }
            Err(e) => {
                return Err(io::Error::other(format!(
                    "GetLogEvents {}/{}: {}",
                    self.group,
                    self.stream,
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                )));
            }
        };
        let lines: Vec<LogLine> = out
            .events()
            .iter()
            .map(|e| {
                let time = e
                    .timestamp()
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                let text = e.message().unwrap_or_default().trim_end_matches('\n');
                LogLine::new(time, Bytes::from(text.to_string()))
            })
            .collect();
        let ended = self.task_stopped && lines.is_empty();
        let next = out.next_forward_token().map(str::to_string).or(cursor);
        Ok(LinePage { lines, next, ended })
    }
}
