//! How the kubelet API (and the metrics port) take connections from clients
//! they cannot trust: a cap on connections open at once, in all and per
//! client IP; accept that backs off after an error (out of file descriptors,
//! `EMFILE`/`ENFILE`) instead of spinning; warnings about either at most one
//! line every few seconds, with the count of those left out.
//!
//! Deadlines (TLS handshake, request headers, idle keep-alive) are the
//! connection's own business, in [`super::serve`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// First wait after a failed accept; doubled after each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two accepts after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning line of a kind this often.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// Descriptors kept for the process's own work (API client, backend, files)
/// when the default connection cap is derived from `RLIMIT_NOFILE`.
const FD_RESERVE: u64 = 256;

/// The caps on connections open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// In all.
    pub total: usize,
    /// From one client IP.
    pub per_ip: usize,
}

impl ConnectionLimits {
    /// The caps from the flags: `total` as given, or the default lowered to
    /// the process's file-descriptor limit less a reserve.
    pub fn new(total: Option<u32>, default_total: u32, per_ip: u32) -> ConnectionLimits {
        let total = match total {
            Some(t) => t as usize,
            None => {
                let from_fds = fd_soft_limit()
                    .map(|l| l.saturating_sub(FD_RESERVE).max(16))
                    .unwrap_or(u64::MAX);
                (default_total as u64).min(from_fds) as usize
            }
        };
        ConnectionLimits {
            total: total.max(1),
            per_ip: (per_ip as usize).clamp(1, total.max(1)),
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn fd_soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Counts open connections and refuses those over a cap.
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The cap in all.
    Total,
    /// The cap of the client's IP.
    PerIp,
}

/// One admitted connection; its place is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: Mutex::default(),
        })
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if *from_ip >= self.limits.per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A connection's IO holding its [`Slot`]: the place is given back when the
/// IO is dropped, also after an upgrade (exec, attach and port-forward
/// streams keep the connection's IO long after its HTTP exchange ended).
#[derive(Debug)]
pub struct Counted<I> {
    io: I,
    _slot: Slot,
}

impl<I> Counted<I> {
    /// `io`, counted against `slot` for as long as it lives.
    pub fn new(io: I, slot: Slot) -> Counted<I> {
        Counted { io, _slot: slot }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// The wait before the next accept after failures in a row: 100 ms, doubled
/// up to 1 s, back to nothing after a success.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// Records a failed accept; returns how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next.unwrap_or(BACKOFF_FIRST);
        self.next = Some((wait * 2).min(BACKOFF_MAX));
        wait
    }

    /// Records a successful accept.
    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

/// Lets one line through every `period`; counts the rest.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line every `period`.
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence at `now`. `Some(n)` when a line should be
    /// written, `n` being the occurrences left out since the previous line.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A listening socket whose accept backs off after errors and whose
/// connections are counted against [`ConnectionLimits`].
pub struct Listener {
    inner: TcpListener,
    what: &'static str,
    admission: Arc<Admission>,
    backoff: AcceptBackoff,
    accept_errors: LogThrottle,
    refusals: LogThrottle,
}

impl Listener {
    /// Wraps a bound listener; `what` names it in log lines.
    pub fn new(inner: TcpListener, what: &'static str, limits: ConnectionLimits) -> Listener {
        Listener {
            inner,
            what,
            admission: Admission::new(limits),
            backoff: AcceptBackoff::default(),
            accept_errors: LogThrottle::new(WARN_EVERY),
            refusals: LogThrottle::new(WARN_EVERY),
        }
    }

    /// The next admitted connection, with its slot; `None` once `stop` is
    /// cancelled. Connections over a cap are closed at once.
    pub async fn next(
        &mut self,
        stop: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr, Slot)> {
        loop {
            let accepted = tokio::select! {
                r = self.inner.accept() => r,
                _ = stop.cancelled() => return None,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    let wait = self.backoff.failed();
                    if let Some(left_out) = self.accept_errors.hit(Instant::now()) {
                        warn!(
                            listener = self.what,
                            error = %e,
                            retry_in_ms = wait.as_millis() as u64,
                            errors_not_logged = left_out,
                            "accept failed (out of file descriptors?); accepting more slowly"
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.cancelled() => return None,
                    }
                }
            };
            self.backoff.succeeded();
            match self.admission.admit(peer.ip()) {
                Ok(slot) => return Some((tcp, peer, slot)),
                Err(refusal) => {
                    drop(tcp);
                    if let Some(left_out) = self.refusals.hit(Instant::now()) {
                        let cap = match refusal {
                            Refusal::Total => "in all",
                            Refusal::PerIp => "from one client IP",
                        };
                        warn!(
                            listener = self.what,
                            %peer,
                            cap,
                            open = self.admission.open(),
                            refused_not_logged = left_out,
                            "too many connections; closed a new one"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn caps_in_all_and_per_ip_and_gives_places_back() {
        let adm = Admission::new(ConnectionLimits {
            total: 3,
            per_ip: 2,
        });
        let a1 = adm.admit(ip(1)).unwrap();
        let _a2 = adm.admit(ip(1)).unwrap();
        assert_eq!(adm.admit(ip(1)).unwrap_err(), Refusal::PerIp);
        let _b1 = adm.admit(ip(2)).unwrap();
        assert_eq!(adm.admit(ip(3)).unwrap_err(), Refusal::Total);
        assert_eq!(adm.open(), 3);
        drop(a1);
        assert_eq!(adm.open(), 2);
        let _c1 = adm.admit(ip(3)).unwrap();
        assert_eq!(adm.admit(ip(1)).unwrap_err(), Refusal::Total);
    }

    #[test]
    fn a_counted_io_holds_its_place_until_dropped() {
        let adm = Admission::new(ConnectionLimits {
            total: 1,
            per_ip: 1,
        });
        let io = Counted::new((), adm.admit(ip(1)).unwrap());
        assert_eq!(adm.admit(ip(2)).unwrap_err(), Refusal::Total);
        drop(io);
        assert!(adm.admit(ip(2)).is_ok());
    }

    #[test]
    fn the_per_ip_entry_goes_with_its_last_connection() {
        let adm = Admission::new(ConnectionLimits {
            total: 10,
            per_ip: 1,
        });
        drop(adm.admit(ip(1)).unwrap());
        assert!(adm.open.lock().unwrap().per_ip.is_empty());
        assert!(adm.admit(ip(1)).is_ok());
    }

    #[test]
    fn accept_backs_off_from_100ms_doubling_to_1s_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..6).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_per_period_with_the_count_left_out() {
        let mut t = LogThrottle::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(t.hit(start), Some(0));
        let mut lines = Vec::new();
        // 1,000 errors a second for 12 s.
        for ms in 1..12_000u64 {
            if let Some(n) = t.hit(start + Duration::from_millis(ms)) {
                lines.push((ms, n));
            }
        }
        assert_eq!(lines, [(5000, 4999), (10000, 4999)]);
    }

    #[test]
    fn default_cap_follows_the_descriptor_limit_and_explicit_caps_are_kept() {
        let explicit = ConnectionLimits::new(Some(100_000), 1024, 256);
        assert_eq!(explicit.total, 100_000);
        assert_eq!(explicit.per_ip, 256);
        let default = ConnectionLimits::new(None, 1024, 256);
        if let Some(limit) = fd_soft_limit() {
            assert!(default.total as u64 <= limit.saturating_sub(FD_RESERVE).max(16));
        }
        assert!(default.total <= 1024);
        assert_eq!(ConnectionLimits::new(Some(10), 1024, 256).per_ip, 10);
    }
}
