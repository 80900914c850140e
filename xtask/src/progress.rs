//! Progress for long waits: nothing slow happens silently. A [`Ticker`] prints
//! `label... 2m30s` at a fixed interval; [`wait_child`] waits for a child
//! process with one.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often a waiting loop polls what it waits for.
pub const POLL: Duration = Duration::from_millis(200);

/// Prints `label... <elapsed>` every `every` while something is in progress.
pub struct Ticker {
    label: String,
    start: Instant,
    next: Instant,
    every: Duration,
}

impl Ticker {
    /// Starts the clock; the first line comes after `every`.
    pub fn new(label: impl Into<String>, every: Duration) -> Self {
        let start = Instant::now();
        Ticker {
            label: label.into(),
            start,
            next: start + every,
            every,
        }
    }

    /// Prints the progress line if one is due.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next {
            eprintln!("{}... {}", self.label, format_duration(self.elapsed()));
            self.next = now + self.every;
        }
    }

    /// Time since [`Ticker::new`].
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Waits for `child` to exit, printing progress every `every`.
pub fn wait_child(child: &mut Child, label: &str, every: Duration) -> Result<ExitStatus> {
    let mut ticker = Ticker::new(label, every);
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {label}"))?
        {
            return Ok(status);
        }
        ticker.tick();
        std::thread::sleep(POLL);
    }
}

/// `1h2m3s`, `2m30s`, `12.3s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h2m3s");
    }
}
