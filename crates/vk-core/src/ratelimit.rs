//! A token bucket shared by every API call a process makes (client QPS and burst).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Token bucket: `qps` tokens per second, at most `burst` stored.
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the last token handed out is used: the request it was for
    /// starts then (after its wait).
    busy_until: Instant,
}

impl RateLimiter {
    /// A bucket that starts full. `qps <= 0` disables limiting.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            qps,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
                busy_until: Instant::now(),
            }),
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let wait = if self.qps <= 0.0 {
                Duration::ZERO
            } else {
                let elapsed = now.duration_since(s.at).as_secs_f64();
                s.tokens = (s.tokens + elapsed * self.qps).min(self.burst) - 1.0;
                s.at = now;
                if s.tokens >= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(-s.tokens / self.qps)
                }
            };
            s.busy_until = s.busy_until.max(now + wait);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until no token has been used for `quiet`, or until `deadline`,
    /// whichever comes first: lets work of lower priority (events) yield to
    /// the requests this bucket paces, without starving it.
    pub async fn wait_quiet(&self, quiet: Duration, deadline: Instant) {
        loop {
            let busy_until = self.state.lock().await.busy_until;
            let now = Instant::now();
            let quiet_at = busy_until + quiet;
            if quiet_at <= now || deadline <= now {
                return;
            }
            tokio::time::sleep_until(quiet_at.min(deadline)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let rl = RateLimiter::new(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            rl.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        for _ in 0..10 {
            rl.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_waits_for_the_last_use_but_not_past_the_deadline() {
        let rl = RateLimiter::new(10.0, 1);
        let start = Instant::now();
        rl.acquire().await;
        // Paced: the second token is used 100 ms from now.
        rl.acquire().await;
        rl.wait_quiet(Duration::from_millis(250), start + Duration::from_secs(10))
            .await;
        let quiet = start.elapsed();
        assert!(
            quiet >= Duration::from_millis(350) && quiet <= Duration::from_millis(360),
            "{quiet:?}"
        );
        // Busy again: the deadline wins.
        rl.acquire().await;
        let deadline = Instant::now() + Duration::from_millis(50);
        rl.wait_quiet(Duration::from_secs(5), deadline).await;
        assert!(Instant::now() >= deadline && Instant::now() < deadline + Duration::from_millis(5));
    }
}
