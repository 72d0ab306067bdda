//! Waiting with a deadline. Every wait in a test ends: a condition that never
//! holds fails the test with what was awaited and for how long, instead of
//! hanging the suite.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked: short enough that tests do not idle,
/// long enough not to spin on the shared cores.
pub const POLL: Duration = Duration::from_millis(20);

/// A wait that reached its deadline; says what it waited for.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.timeout, self.what
        )
    }
}

impl std::error::Error for TimedOut {}

/// Check `cond` every [`POLL`] until it holds; panics naming `what` once
/// `timeout` has passed.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if let Err(e) = try_wait_until(timeout, what, cond).await {
        panic!("{e}");
    }
}

/// [`wait_until`] checking every `every` (for conditions that are costly to
/// check, such as an HTTP round trip or a database query).
pub async fn wait_until_every<F, Fut>(timeout: Duration, every: Duration, what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if let Err(e) = poll(timeout, every, what, cond).await {
        panic!("{e}");
    }
}

/// [`wait_until`] that returns the time-out as an error instead of
/// panicking, for harness code that reports errors with `?`.
pub async fn try_wait_until<F, Fut>(timeout: Duration, what: &str, cond: F) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(timeout, POLL, what, cond).await
}

/// [`try_wait_until`] checking every `every`.
pub async fn try_wait_until_every<F, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    cond: F,
) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(timeout, every, what, cond).await
}

async fn poll<F, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut cond: F,
) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(TimedOut {
                what: what.to_string(),
                timeout,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// The blocking form of [`wait_until`], for code outside an async runtime
/// (or that must not yield, like a `Drop`).
pub fn wait_until_blocking(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), "the third check", || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn a_condition_that_never_holds_is_reported_by_name() {
        let e = try_wait_until(Duration::from_millis(50), "pigs to fly", || async { false })
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "timed out after 50ms waiting for pigs to fly"
        );
    }

    #[test]
    #[should_panic(expected = "waiting for the kettle")]
    fn the_blocking_form_panics_at_its_deadline() {
        wait_until_blocking(Duration::from_millis(30), "the kettle", || false);
    }
}
