//! The uplink's state, published on `{gw}/cmd/uplink/state` right after
//! each connect and every [`STATE_INTERVAL`] while connected, so a reader
//! sees a loss at the end of the stream (frames acknowledged by a broker
//! that then lost them) and knows what a replay can still fill.

use std::time::Duration;

use weir_crds::message::UplinkState;

use crate::queue::DiskQueue;
use crate::sample::now_ms;

/// How often the state goes out while connected.
pub const STATE_INTERVAL: Duration = Duration::from_secs(5);

/// The state as of now.
pub fn uplink_state(queue: &DiskQueue) -> UplinkState {
    UplinkState {
        timestamp: now_ms(),
        origin_seq: queue.origin(),
        last_acked_seq: queue.last_acked_seq(),
        first_kept_seq: queue.first_kept(),
        next_seq: queue.next_seq(),
    }
}
