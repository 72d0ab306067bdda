//! Alert metrics, registered in the api's prometheus-client registry
//! (`weir_api_alerts_*` at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// webhook or email
    pub kind: String,
}

#[derive(Clone)]
pub struct AlertMetrics {
    /// One per rule a reading or fleet event was evaluated against.
    pub rules_evaluated: Counter,
    /// Seconds from a reading's read time to its evaluation.
    pub evaluation_lag: Histogram,
    pub notifications_sent: Family<ChannelLabels, Counter>,
    pub notifications_failed: Family<ChannelLabels, Counter>,
    pub firing: Gauge,
    /// Tenants whose rules this replica evaluates.
    pub owned_tenants: Gauge,
    /// Enabled rules this replica evaluates.
    pub rules: Gauge,
    /// Live api replicas sharing the alert work (1 on SQLite).
    pub replicas: Gauge,
}

impl Default for AlertMetrics {
    fn default() -> Self {
        Self {
            rules_evaluated: Counter::default(),
            // 1 ms .. ~65 s
            evaluation_lag: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            notifications_sent: Family::default(),
            notifications_failed: Family::default(),
            firing: Gauge::default(),
            owned_tenants: Gauge::default(),
            rules: Gauge::default(),
            replicas: Gauge::default(),
        }
    }
}

impl AlertMetrics {
    /// Make the metrics and register them under `alerts_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("alerts");
        r.register(
            "rules_evaluated",
            "Rule evaluations (rule x reading or fleet event)",
            m.rules_evaluated.clone(),
        );
        r.register(
            "evaluation_lag_seconds",
            "Delay from a reading's read time to its evaluation",
            m.evaluation_lag.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications delivered, by channel kind",
            m.notifications_sent.clone(),
        );
        r.register(
            "notifications_failed",
            "Notifications that failed after all retries, by channel kind",
            m.notifications_failed.clone(),
        );
        r.register(
            "firing",
            "Alerts firing now (this replica)",
            m.firing.clone(),
        );
        r.register(
            "owned_tenants",
            "Tenants whose rules this replica evaluates",
            m.owned_tenants.clone(),
        );
        r.register(
            "rules",
            "Enabled rules this replica evaluates",
            m.rules.clone(),
        );
        r.register(
            "replicas",
            "Live api replicas sharing the alert work",
            m.replicas.clone(),
        );
        m
    }
}
