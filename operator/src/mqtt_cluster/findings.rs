//! What one reconcile round found: problems and work in flight.

/// Problems (Degraded) and work in flight (Progressing) found this round.
#[derive(Default)]
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
}
