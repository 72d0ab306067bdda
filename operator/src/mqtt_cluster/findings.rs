//! What one reconcile round found: problems and work in flight.

use std::time::Duration;

/// Problems (Degraded) and work in flight (Progressing) found this round,
/// each `(reason, message)` in the order found: the first names the
/// condition's reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Findings {
    pub(super) degraded: Vec<(String, String)>,
    pub(super) progressing: Vec<(String, String)>,
}

impl Findings {
    pub(super) fn degraded(&mut self, reason: &str, message: impl Into<String>) {
        self.degraded.push((reason.into(), message.into()));
    }
    pub(super) fn progressing(&mut self, reason: &str, message: impl Into<String>) {
        self.progressing.push((reason.into(), message.into()));
    }
    /// Add another step's findings after these.
    pub(super) fn extend(&mut self, other: Findings) {
        self.degraded.extend(other.degraded);
        self.progressing.extend(other.progressing);
    }

    /// When to look again: soon while work is in flight, less often while
    /// degraded (a user has to act), else once a minute.
    pub(super) fn requeue_after(&self) -> Duration {
        Duration::from_secs(if !self.progressing.is_empty() {
            5
        } else if !self.degraded.is_empty() {
            30
        } else {
            60
        })
    }
}
