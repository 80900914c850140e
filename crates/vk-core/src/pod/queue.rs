//! A work queue of pod keys with de-duplication, per-key serialisation, delayed
//! re-adds and per-key exponential backoff (the client-go workqueue semantics).
//!
//! A key added while it is being processed is processed again once, after the
//! current run finishes; a key is never handed to two workers at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Backoff bounds for [`WorkQueue::add_rate_limited`].
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First retry delay.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
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

    /// Adds a key after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Adds a key after its backoff delay, which doubles with every call until [`WorkQueue::forget`].
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        let delay = self
            .backoff
            .base
            .saturating_mul(factor)
            .min(self.backoff.max);
        self.add_after(key, delay);
        delay
    }

    /// Adds a key after the delay a backend asked for (a `Retry-After`),
    /// not its backoff delay, counting the failure as
    /// [`WorkQueue::add_rate_limited`] does: a later failure without a hint
    /// backs off from there. The delay is capped at the backoff's maximum
    /// times ten, so a bogus hint cannot park a pod for hours.
    pub fn add_retry_after(&self, key: K, delay: Duration) -> Duration {
        {
            let mut s = self.lock();
            *s.failures.entry(key.clone()).or_insert(0) += 1;
        }
        let delay = delay.min(self.backoff.max.saturating_mul(10));
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

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_resets() {
        let q: WorkQueue<&str> = WorkQueue::new(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        });
        assert_eq!(q.add_rate_limited("k"), Duration::from_secs(1));
        assert_eq!(q.add_rate_limited("k"), Duration::from_secs(2));
        assert_eq!(q.add_rate_limited("k"), Duration::from_secs(4));
        assert_eq!(q.add_rate_limited("k"), Duration::from_secs(5));
        q.forget(&"k");
        assert_eq!(q.failures(&"k"), 0);
        assert_eq!(q.next().await, Some("k"));
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
