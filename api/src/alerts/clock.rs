//! The time the rules see: the system clock, or a manual one that tests
//! move by hand to drive for-durations and group timers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the epoch: the system clock, or a manual one that
/// only moves when told (tests drive for-durations and group timers with it).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    pub fn manual(start_ms: i64) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start_ms))))
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, d: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        }
    }
}
