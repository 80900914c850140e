//! A work queue of pod keys with de-duplication, per-key serialisation, delayed
//! re-adds and per-key exponential backoff (the client-go workqueue semantics).
//!
//! A failed key waits the longer of its own backoff (jittered, so keys that
//! failed together do not retry together) and its turn in a bucket shared by
//! every retry (client-go's default controller rate limiter does the same:
//! the max of a per-item exponential and a 10/s bucket). A burst of failures,
//! every API request refused for a minute say, therefore never retries faster
//! than the bucket, however many pods there are.
//!
//! A key added while it is being processed is processed again once, after the
//! current run finishes; a key is never handed to two workers at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Backoff bounds for [`WorkQueue::add_rate_limited`].
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First retry delay.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Retries per second over all keys, once `burst` is spent.
    pub retries_per_second: f64,
    /// Retries over all keys that may go at once.
    pub burst: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            retries_per_second: 10.0,
            burst: 100,
        }
    }
}

impl Backoff {
    /// The delay before the `n`-th retry (from 1) of a key, before jitter.
    fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The retries' shared bucket: when the next retry may go.
struct RetryBucket {
    tokens: f64,
    at: Instant,
}

impl RetryBucket {
    /// Takes a token and returns how long its retry waits for it.
    fn reserve(&mut self, backoff: &Backoff) -> Duration {
        if backoff.retries_per_second <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * backoff.retries_per_second)
            .min(f64::from(backoff.burst.max(1)))
            - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / backoff.retries_per_second)
        }
    }
}

/// `delay` stretched by up to a quarter, differently each call.
fn jittered(delay: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(1.0 + 0.25 * unit)
}

struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
    /// Keys waiting to be added, and when: one timer per key, the earliest.
    scheduled: HashMap<K, Instant>,
    retries: RetryBucket,
    shutdown: bool,
}

/// The queue. Clone it freely: clones share state.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    backoff: Backoff,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            backoff: self.backoff,
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                scheduled: HashMap::new(),
                retries: RetryBucket {
                    tokens: f64::from(backoff.burst.max(1)),
                    at: Instant::now(),
                },
                shutdown: false,
            })),
            notify: Arc::new(Notify::new()),
            backoff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A poisoned lock only means another worker panicked mid-update; the
        // state is still a set of keys, so keep going rather than stop every pod.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key now.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shutdown {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds a key after `delay`. A key already waiting to be added sooner
    /// keeps its time: delayed adds never pile up, so a key whose syncs keep
    /// failing while events keep adding it still has one retry pending, not
    /// one more for every event.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            match s.scheduled.get(&key) {
                Some(sooner) if *sooner <= at => return,
                _ => {
                    s.scheduled.insert(key.clone(), at);
                }
            }
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut s = q.lock();
                let due = s.scheduled.get(&key) == Some(&at);
                if due {
                    s.scheduled.remove(&key);
                }
                due
            };
            if due {
                q.add(key);
            }
        });
    }

    /// Adds a key after its backoff delay, which doubles with every call
    /// until [`WorkQueue::forget`] (jittered by up to a quarter), or later
    /// when the shared retry bucket is empty; returns the delay.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        self.retry(key, Duration::ZERO)
    }

    /// Adds a key after the delay a backend or the apiserver asked for (a
    /// `Retry-After`), counting the failure as [`WorkQueue::add_rate_limited`]
    /// does: the delay is the longer of the two, so a hint of one second
    /// never turns repeated failures into a retry every second. The hint is
    /// capped at ten times the backoff's maximum.
    pub fn add_retry_after(&self, key: K, delay: Duration) -> Duration {
        self.retry(key, delay.min(self.backoff.max.saturating_mul(10)))
    }

    fn retry(&self, key: K, at_least: Duration) -> Duration {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            let own = jittered(self.backoff.delay(*n)).max(at_least);
            own.max(s.retries.reserve(&self.backoff))
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears the backoff of a key after a success.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Number of failures recorded for a key since the last [`WorkQueue::forget`].
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Waits for the next key; `None` after [`WorkQueue::shutdown`].
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.shutdown {
                    return None;
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks a key as finished; re-queues it when it was added meanwhile.
    pub fn done(&self, key: &K) {
        let requeue = {
            let mut s = self.lock();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if requeue {
            self.add(key.clone());
        }
    }

    /// Queued plus in-flight keys (for the queue-depth metric).
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.ready.len() + s.processing.len()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; waiting workers return `None`.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_serialises() {
        let q = WorkQueue::new(Backoff::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, Some("a"));
        // Re-added while processing: not handed out again until done.
        q.add("a");
        assert_eq!(q.next().await, Some("b"));
        q.done(&"b");
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    fn within(d: Duration, secs: f64) -> bool {
        let d = d.as_secs_f64();
        d >= secs && d <= secs * 1.25
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_with_jitter_and_resets() {
        let q: WorkQueue<&str> = WorkQueue::new(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
            ..Backoff::default()
        });
        for secs in [1.0, 2.0, 4.0, 5.0] {
            let d = q.add_rate_limited("k");
            assert!(within(d, secs), "{d:?} for {secs} s");
        }
        q.forget(&"k");
        assert_eq!(q.failures(&"k"), 0);
        assert_eq!(q.next().await, Some("k"));
        let keys: WorkQueue<u32> = WorkQueue::new(Backoff::default());
        let spread: HashSet<Duration> = (0..20).map(|k| keys.add_rate_limited(k)).collect();
        assert!(
            spread.len() > 10,
            "keys that fail together retry apart: {spread:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_a_floor_not_a_reset_of_the_backoff() {
        let q: WorkQueue<&str> = WorkQueue::new(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            ..Backoff::default()
        });
        assert!(within(q.add_retry_after("k", Duration::from_secs(3)), 3.0));
        assert!(q.add_retry_after("k", Duration::from_secs(1)) >= Duration::from_secs(2));
        assert!(q.add_retry_after("k", Duration::from_secs(1)) >= Duration::from_secs(4));
        assert!(q.add_retry_after("k", Duration::from_secs(1)) >= Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_has_one_delayed_add_pending_the_soonest() {
        let q: WorkQueue<&str> = WorkQueue::new(Backoff::default());
        q.add_after("k", Duration::from_secs(10));
        q.add_after("k", Duration::from_secs(20));
        q.add_after("k", Duration::from_secs(5));
        q.add_after("k", Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(q.next().await, Some("k"));
        q.done(&"k");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(q.is_empty(), "the later adds were folded into the first");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_of_all_keys_share_a_bucket() {
        let q: WorkQueue<u32> = WorkQueue::new(Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(1),
            retries_per_second: 10.0,
            burst: 5,
        });
        let delays: Vec<Duration> = (0..25).map(|k| q.add_rate_limited(k)).collect();
        // The burst goes at once; then one retry every 100 ms.
        assert!(
            delays[..5].iter().all(|d| *d < Duration::from_millis(2)),
            "{delays:?}"
        );
        let last = delays[24].as_secs_f64();
        assert!(
            (1.9..=2.1).contains(&last),
            "the 25th retry waits 2 s: {last}"
        );
    }

    #[tokio::test]
    async fn shutdown_releases_waiters() {
        let q: WorkQueue<u32> = WorkQueue::new(Backoff::default());
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.shutdown();
        assert_eq!(waiter.await.ok().flatten(), None);
    }
}
