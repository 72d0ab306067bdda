//! Heartbeat: the agent's status posted to the api every interval.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::{AgentStatus, RefusedBundle};

use crate::enroll::ApiClient;
use crate::runtime::Runtime;

/// The status as of now.
pub fn snapshot(
    runtime: &Runtime,
    refused: &Mutex<Option<RefusedBundle>>,
    started: Instant,
    interval: Duration,
) -> AgentStatus {
    let q = runtime.queue.stats();
    let u = &runtime.uplink_stats;
    let v = runtime.applied_version.load(Ordering::Relaxed);
    AgentStatus {
        applied_version: (v > 0).then_some(v),
        refused: refused.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        devices: runtime.health.snapshot(),
        queue_depth: q.depth_readings.load(Ordering::Relaxed),
        queue_bytes: q.bytes.load(Ordering::Relaxed),
        dropped_readings: q.dropped_readings.load(Ordering::Relaxed),
        readings_out: q.acked_readings.load(Ordering::Relaxed),
        uptime_s: started.elapsed().as_secs(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        heartbeat_interval_s: interval.as_secs(),
        last_acked_seq: runtime.queue.last_acked_seq(),
        retained_frames: q.retained_frames.load(Ordering::Relaxed),
        waiting_for_subscriber: u.waiting_for_subscriber.load(Ordering::Relaxed),
        replays: u.replays.load(Ordering::Relaxed),
    }
}

/// Post status every `interval` until cancelled; failures are logged and retried next beat.
pub async fn run_heartbeat(
    api: Arc<ApiClient>,
    runtime: Arc<Runtime>,
    refused: Arc<Mutex<Option<RefusedBundle>>>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = snapshot(&runtime, &refused, started, interval);
        if let Err(e) = api.post_status(&s).await {
            tracing::warn!("status report failed: {e}");
        }
    }
}
