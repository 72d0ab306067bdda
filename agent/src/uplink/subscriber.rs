//! `uplink.requireSubscriber`: a PUBACK "no matching subscribers" (reason
//! 16) means nobody read the readings, so they are not delivered. The uplink
//! stops sending new data, lets what is in flight finish, rewinds to the
//! first unacknowledged frame and tries again after a jittered exponential
//! back-off — on the same connection, which is fine; only the readers are
//! missing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::UplinkStats;

/// First wait after a "no subscribers"; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Short enough that a reader back after a broker restart gets the backlog
/// within seconds; each probe costs only one publish window.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Subscribers answer: send as usual.
    Flowing,
    /// A reason 16 came: send nothing new, wait for the in-flight PUBACKs.
    Draining,
    /// Rewound; try again at this instant.
    Sleeping(Instant),
    /// Sending again after a wait; the next PUBACK decides.
    Probing,
}

pub(super) struct SubscriberWait {
    phase: Phase,
    backoff: Duration,
}

impl SubscriberWait {
    pub fn new() -> Self {
        Self {
            phase: Phase::Flowing,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Whether new live data may be sent.
    pub fn can_send(&self) -> bool {
        matches!(self.phase, Phase::Flowing | Phase::Probing)
    }

    /// Whether a rewind is due (draining and nothing live in flight).
    pub fn must_rewind(&self, live_in_flight: usize) -> bool {
        self.phase == Phase::Draining && live_in_flight == 0
    }

    /// When the current wait ends, if waiting.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Sleeping(t) => Some(t),
            _ => None,
        }
    }

    pub fn wake(&mut self) {
        if matches!(self.phase, Phase::Sleeping(_)) {
            self.phase = Phase::Probing;
        }
    }

    /// A new connection resends from the first unacknowledged frame anyway.
    pub fn reconnected(&mut self) {
        if self.phase != Phase::Flowing {
            self.phase = Phase::Probing;
        }
    }

    /// A live message was answered "no matching subscribers".
    pub fn no_subscriber(&mut self, stats: &UplinkStats) {
        stats.no_subscriber_acks.fetch_add(1, Ordering::Relaxed);
        if matches!(self.phase, Phase::Flowing | Phase::Probing) {
            self.phase = Phase::Draining;
        }
        if !stats.waiting_for_subscriber.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the broker has no subscriber for this gateway's readings; holding them \
                 in the queue and retrying (uplink.requireSubscriber)"
            );
        }
    }

    /// Rewound after draining: sleep a jittered back-off.
    pub fn rewound(&mut self) {
        let b = self.backoff.as_millis().max(2) as u64;
        let wait = Duration::from_millis(rand::thread_rng().gen_range(b / 2..=b));
        self.phase = Phase::Sleeping(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A live message was delivered to a subscriber.
    pub fn delivered(&mut self, stats: &UplinkStats) {
        if self.phase == Phase::Probing {
            self.phase = Phase::Flowing;
            self.backoff = FIRST_BACKOFF;
            if stats.waiting_for_subscriber.swap(false, Ordering::Relaxed) {
                tracing::info!("a subscriber reads this gateway's readings again; sending");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_rewind_back_off_and_recover() {
        let stats = UplinkStats::default();
        let mut w = SubscriberWait::new();
        assert!(w.can_send());
        w.no_subscriber(&stats);
        assert!(!w.can_send(), "nothing new goes out while draining");
        assert!(stats.waiting_for_subscriber.load(Ordering::Relaxed));
        assert!(!w.must_rewind(3), "in-flight messages finish first");
        assert!(w.must_rewind(0));
        let mut waits = vec![];
        for _ in 0..8 {
            let before = Instant::now();
            w.rewound();
            let wake = w.wake_at().expect("sleeping");
            waits.push(wake - before);
            assert!(!w.can_send());
            w.wake();
            assert!(w.can_send(), "probing after the wait");
            w.no_subscriber(&stats);
        }
        // Jittered in [b/2, b], doubling from 500 ms, capped at 5 s.
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= FIRST_BACKOFF);
        assert!(waits[7] >= MAX_BACKOFF / 2 && waits[7] <= MAX_BACKOFF);
        assert_eq!(stats.no_subscriber_acks.load(Ordering::Relaxed), 9);
        w.rewound();
        w.wake();
        w.delivered(&stats);
        assert!(!stats.waiting_for_subscriber.load(Ordering::Relaxed));
        assert!(w.can_send());
        // The back-off starts over.
        w.no_subscriber(&stats);
        let before = Instant::now();
        w.rewound();
        assert!(w.wake_at().unwrap() - before <= FIRST_BACKOFF);
    }
}
