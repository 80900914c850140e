//! Send-side flow-control accounting, enforced only once the peer shows it
//! takes part in flow control.
//!
//! SPDY/3.1 gives every stream, and the session as a whole, a send window
//! (64 KiB at first) that the receiver refills with WINDOW_UPDATE frames.
//! `moby/spdystream`, the client the apiserver uses, never sends
//! WINDOW_UPDATE (its `Connection` has no code that builds one, and it drops
//! the ones it receives as "unhandled frame type"). A sender that honoured the
//! windows would stall after 64 KiB on every stream. So windows are tracked
//! from the start but only enforced per level (streams, session) once the
//! peer has sent a WINDOW_UPDATE for that level: from then on the accounting
//! is exact, because it started with the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::sync::Notify;

use crate::frame::DEFAULT_INITIAL_WINDOW;

/// Largest window SPDY allows (31 bits).
pub(crate) const MAX_WINDOW: i64 = 0x7fff_ffff;

/// The peer-granted windows this side sends against.
#[derive(Debug)]
pub(crate) struct SendWindows {
    session: AtomicI64,
    initial_stream: AtomicI64,
    enforce_stream: AtomicBool,
    enforce_session: AtomicBool,
    /// Woken whenever a window grows, a stream is reset or the connection
    /// ends: every sender waiting for credit then re-checks.
    pub(crate) changed: Arc<Notify>,
}

impl SendWindows {
    pub(crate) fn new() -> Self {
        Self {
            session: AtomicI64::new(i64::from(DEFAULT_INITIAL_WINDOW)),
            initial_stream: AtomicI64::new(i64::from(DEFAULT_INITIAL_WINDOW)),
            enforce_stream: AtomicBool::new(false),
            enforce_session: AtomicBool::new(false),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Window a new stream starts with.
    pub(crate) fn initial_stream_window(&self) -> i64 {
        self.initial_stream.load(Ordering::Acquire)
    }

    /// Bytes a stream with window `stream` may send now (`usize::MAX` when
    /// nothing is enforced).
    pub(crate) fn available(&self, stream: &AtomicI64) -> usize {
        let enforce_stream = self.enforce_stream.load(Ordering::Acquire);
        let enforce_session = self.enforce_session.load(Ordering::Acquire);
        if !enforce_stream && !enforce_session {
            return usize::MAX;
        }
        let mut available = i64::MAX;
        if enforce_stream {
            available = available.min(stream.load(Ordering::Acquire));
        }
        if enforce_session {
            available = available.min(self.session.load(Ordering::Acquire));
        }
        usize::try_from(available.max(0)).unwrap_or(usize::MAX)
    }

    /// Takes up to `want` bytes of credit for one data frame and returns how
    /// many were granted (0: wait for a WINDOW_UPDATE). Windows that are not
    /// enforced are still debited, so enforcement can start later with exact
    /// numbers; they may go negative meanwhile.
    pub(crate) fn take(&self, stream: &AtomicI64, want: usize) -> usize {
        let mut n = i64::try_from(want).unwrap_or(i64::MAX);
        if self.enforce_stream.load(Ordering::Acquire) {
            n = n.min(stream.load(Ordering::Acquire).max(0));
        }
        if n == 0 {
            return 0;
        }
        if self.enforce_session.load(Ordering::Acquire) {
            // Streams share the session window: claim it atomically.
            let claimed =
                self.session
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                        let m = n.min(current);
                        (m > 0).then_some(current - m)
                    });
            match claimed {
                Ok(previous) => n = n.min(previous),
                Err(_) => return 0,
            }
        } else {
            self.session.fetch_sub(n, Ordering::AcqRel);
        }
        stream.fetch_sub(n, Ordering::AcqRel);
        usize::try_from(n).unwrap_or(0)
    }

    /// The peer granted `delta` more bytes on the session.
    pub(crate) fn grant_session(&self, delta: u32) {
        self.session.fetch_add(i64::from(delta), Ordering::AcqRel);
        self.enforce_session.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The peer granted `delta` more bytes on the stream whose window is `stream`.
    pub(crate) fn grant_stream(&self, stream: &AtomicI64, delta: u32) {
        stream.fetch_add(i64::from(delta), Ordering::AcqRel);
        self.enforce_stream.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The peer changed the initial stream window (SETTINGS). Returns the
    /// difference, which the caller applies to every open stream.
    pub(crate) fn set_initial_stream_window(&self, value: u32) -> i64 {
        let value = i64::from(value).min(MAX_WINDOW);
        let old = self.initial_stream.swap(value, Ordering::AcqRel);
        value - old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_until_the_peer_sends_an_update() {
        let windows = SendWindows::new();
        let stream = AtomicI64::new(windows.initial_stream_window());
        // 10 MB goes through although the window is 64 KiB.
        for _ in 0..320 {
            assert_eq!(windows.take(&stream, 32 * 1024), 32 * 1024);
        }
        assert_eq!(windows.available(&stream), usize::MAX);
        assert!(stream.load(Ordering::Acquire) < 0);

        // The peer starts refilling: from now on the (exact) window counts.
        windows.grant_stream(&stream, 10 * 1024 * 1024);
        let left = stream.load(Ordering::Acquire);
        assert_eq!(left, 65_536);
        assert_eq!(windows.available(&stream), 65_536);
        assert_eq!(windows.take(&stream, 100_000), 65_536);
        assert_eq!(windows.take(&stream, 1), 0);
    }

    #[test]
    fn session_window_is_shared() {
        let windows = SendWindows::new();
        let a = AtomicI64::new(windows.initial_stream_window());
        let b = AtomicI64::new(windows.initial_stream_window());
        windows.grant_session(0);
        assert_eq!(windows.take(&a, 40_000), 40_000);
        assert_eq!(windows.take(&b, 40_000), 25_536);
        assert_eq!(windows.take(&b, 1), 0);
        windows.grant_session(10);
        assert_eq!(windows.take(&a, 100), 10);
    }

    #[test]
    fn initial_window_change_reports_the_delta() {
        let windows = SendWindows::new();
        assert_eq!(
            windows.set_initial_stream_window(1 << 20),
            (1 << 20) - 65_536
        );
        assert_eq!(windows.initial_stream_window(), 1 << 20);
    }
}
