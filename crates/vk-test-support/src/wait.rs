//! Polling until the cluster reaches a state: controllers act asynchronously,
//! so tests wait for observable results with a deadline instead of sleeping.
//!
//! Every wait of the test code goes through [`wait_for`]: [`wait_until`] is
//! its yes/no form for test bodies, and [`wait_blocking`] its synchronous
//! form for the rig's set-up and synchronous tests.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How often [`wait_for`] checks.
const INTERVAL: Duration = Duration::from_millis(250);

/// Calls `check` every 250 ms until it returns `Ok(Some(value))`, and returns
/// that value. `Ok(None)` means "not yet"; an `Err` is remembered and retried
/// (the API server may be briefly busy). After `timeout` the error names
/// `what` and the last error seen.
///
/// ```no_run
/// # async fn example(client: kube::Client) -> anyhow::Result<()> {
/// use std::time::Duration;
/// use k8s_openapi::api::core::v1::Pod;
/// let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
/// let node = vk_test_support::wait_for("pod p to be bound", Duration::from_secs(30), || async {
///     let pod = pods.get("p").await?;
///     Ok(pod.spec.and_then(|s| s.node_name))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if start.elapsed() >= timeout {
            match last_error {
                Some(err) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {err:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`wait_for`] with a yes/no `check`, for test bodies: panics naming `what`
/// (and the timeout) when `check` is still false after `timeout`.
///
/// ```no_run
/// # async fn example(node: &str, client: kube::Client) {
/// use std::time::Duration;
/// vk_test_support::wait_until("the node Ready", Duration::from_secs(20), || async {
///     vk_test_support::node_ready(&client, node)
///         .await
///         .is_some_and(|(status, _)| status == "True")
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
///
/// When `check` has not returned true within `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = wait_for(what, timeout, || {
        let ready = check();
        async move { Ok(ready.await.then_some(())) }
    })
    .await;
    if let Err(err) = waited {
        panic!("{err:#}");
    }
}

/// Calls `ready` every 100 ms until it is true (then returns true) or
/// `timeout` passes (then false), blocking the thread: for the rig's
/// set-up and synchronous tests, which run outside any async runtime.
pub fn wait_blocking(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;
    use std::cell::Cell;

    #[tokio::test]
    async fn returns_the_value_once_ready() -> Result<()> {
        let calls = Cell::new(0);
        let value = wait_for("three calls", Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { Ok((n >= 3).then_some(n)) }
        })
        .await?;
        assert_eq!(value, 3);
        Ok(())
    }

    #[tokio::test]
    async fn times_out_naming_what_and_the_last_error() {
        let result: Result<()> = wait_for("the impossible", Duration::from_millis(300), || async {
            Err(anyhow!("boom"))
        })
        .await;
        let Err(err) = result else {
            panic!("wait_for succeeded on a check that never does");
        };
        let message = format!("{err:#}");
        assert!(message.contains("the impossible"), "{message}");
        assert!(message.contains("boom"), "{message}");
    }

    #[tokio::test]
    async fn wait_until_returns_once_the_check_holds() {
        let calls = Cell::new(0);
        wait_until("two calls", Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { n >= 2 }
        })
        .await;
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible")]
    async fn wait_until_panics_naming_what() {
        wait_until("the impossible", Duration::from_millis(300), || async {
            false
        })
        .await;
    }

    #[test]
    fn wait_blocking_says_whether_the_check_held_in_time() {
        let mut calls = 0;
        assert!(wait_blocking(Duration::from_secs(5), || {
            calls += 1;
            calls >= 2
        }));
        assert!(!wait_blocking(Duration::from_millis(250), || false));
    }
}
