//! Prometheus metrics on `--metrics-listen` (`GET /metrics`), read from the
//! same counters status reports use, at scrape time.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::routing::get;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::DeviceState;

use crate::error::{IoContext, Result};
use crate::runtime::Runtime;
use crate::uplink::LATENCY_BUCKETS_US;

struct AgentCollector {
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCollector")
    }
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl prometheus_client::collector::Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = &self.runtime;
        let p = &r.pipeline_stats;
        let q = r.queue.stats();
        let u = &r.uplink_stats;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut e,
            "weir_agent_readings_in",
            "Readings read from devices",
            ld(&p.readings_in),
        )?;
        counter(
            &mut e,
            "weir_agent_readings_queued",
            "Readings appended to the disk queue",
            ld(&q.appended_readings),
        )?;
        counter(
            &mut e,
            "weir_agent_readings_out",
            "Readings acknowledged by the broker",
            ld(&q.acked_readings),
        )?;
        counter(
            &mut e,
            "weir_agent_readings_filtered",
            "Readings dropped on purpose by rules",
            ld(&p.readings_filtered),
        )?;
        counter(
            &mut e,
            "weir_agent_rule_failures",
            "Readings on which a rule failed",
            ld(&p.rule_failures),
        )?;
        counter(
            &mut e,
            "weir_agent_dropped_readings",
            "Readings dropped because the queue was full",
            ld(&q.dropped_readings),
        )?;
        gauge(
            &mut e,
            "weir_agent_queue_depth_frames",
            "Frames waiting for a PUBACK",
            ld(&q.depth_frames) as i64,
        )?;
        gauge(
            &mut e,
            "weir_agent_queue_depth_readings",
            "Readings waiting for a PUBACK",
            ld(&q.depth_readings) as i64,
        )?;
        gauge(
            &mut e,
            "weir_agent_queue_bytes",
            "Bytes of the disk queue",
            ld(&q.bytes) as i64,
        )?;
        gauge(
            &mut e,
            "weir_agent_uplink_connected",
            "1 while connected to the broker",
            i64::from(u.connected.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "weir_agent_uplink_reconnects",
            "Broker connection losses",
            ld(&u.reconnects),
        )?;
        counter(
            &mut e,
            "weir_agent_messages_acked",
            "MQTT messages acknowledged",
            ld(&u.messages_acked),
        )?;
        gauge(
            &mut e,
            "weir_agent_queue_retained_frames",
            "Acknowledged frames kept on disk for replays",
            ld(&q.retained_frames) as i64,
        )?;
        gauge(
            &mut e,
            "weir_agent_queue_retained_bytes",
            "Bytes of acknowledged frames kept on disk for replays",
            ld(&q.retained_bytes) as i64,
        )?;
        counter(
            &mut e,
            "weir_agent_uplink_no_subscribers",
            "PUBACKs 'no matching subscribers' of readings held for a retry (uplink.requireSubscriber)",
            ld(&u.no_subscriber_acks),
        )?;
        gauge(
            &mut e,
            "weir_agent_uplink_waiting_for_subscriber",
            "1 while readings are held because no subscriber reads them",
            i64::from(u.waiting_for_subscriber.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut e,
            "weir_agent_replays",
            "Replay requests answered",
            ld(&u.replays),
        )?;
        counter(
            &mut e,
            "weir_agent_replayed_frames",
            "Frames republished by replays",
            ld(&u.replayed_frames),
        )?;
        gauge(
            &mut e,
            "weir_agent_config_version",
            "Applied config bundle version",
            ld(&r.applied_version) as i64,
        )?;

        let h = &u.latency;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_US.len() + 1);
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            buckets.push((*b as f64 / 1e6, ld(&h.buckets[i])));
        }
        buckets.push((f64::INFINITY, ld(&h.buckets[LATENCY_BUCKETS_US.len()])));
        let mut me = e.encode_descriptor(
            "weir_agent_publish_latency_seconds",
            "Publish to PUBACK latency",
            None,
            MetricType::Histogram,
        )?;
        me.encode_histogram::<NoLabelSet>(
            ld(&h.sum_us) as f64 / 1e6,
            ld(&h.count),
            &buckets,
            None,
        )?;

        let devices = r.health.snapshot();
        let mut me = e.encode_descriptor(
            "weir_agent_device_up",
            "Device health: 2 ok, 1 degraded, 0 down",
            None,
            MetricType::Gauge,
        )?;
        for d in &devices {
            let v: i64 = match d.state {
                DeviceState::Ok => 2,
                DeviceState::Degraded => 1,
                DeviceState::Down => 0,
            };
            let labels = [("device", d.name.as_str())];
            let fe = me.encode_family(&labels)?;
            ConstGauge::new(v).encode(fe)?;
        }
        Ok(())
    }
}

/// The text exposition of every agent metric.
pub fn render(runtime: &Arc<Runtime>) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(AgentCollector {
        runtime: runtime.clone(),
    }));
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Serve `/metrics` until cancelled.
pub async fn serve(
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    cancel: CancellationToken,
) -> Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let r = runtime.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(&r),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .ctx(|| format!("binding metrics listener {addr}"))?;
    tracing::info!(%addr, "metrics on /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .ctx(|| "serving metrics".into())
}
