//! Connection and message figures of an adopted broker, read by the health
//! probe from the broker's `$SYS` topics (Mosquitto publishes them retained,
//! so a subscriber gets the latest values at once; they refresh every
//! `sys_interval`, 10 s by default). A broker that publishes no `$SYS`, or
//! refuses the subscription, simply has no figures. Stored with the probe's
//! result (`fleet_clusters.probe_stats`) and shown on the cluster's page.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `$SYS` topics read (Mosquitto's names).
pub const SYS_TOPICS: [&str; 7] = [
    "$SYS/broker/clients/connected",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/load/messages/received/1min",
    "$SYS/broker/load/messages/sent/1min",
    "$SYS/broker/uptime",
    "$SYS/broker/version",
];

/// What the broker says about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BrokerStats {
    /// Clients connected now.
    pub clients_connected: Option<u64>,
    /// Messages of any kind received since the broker started.
    pub messages_received: Option<u64>,
    /// Messages of any kind sent since the broker started.
    pub messages_sent: Option<u64>,
    /// Messages received per minute, averaged over the last minute.
    pub messages_received_per_min: Option<f64>,
    /// Messages sent per minute, averaged over the last minute.
    pub messages_sent_per_min: Option<f64>,
    /// Seconds since the broker started.
    pub uptime_secs: Option<u64>,
    /// The broker's own version string, e.g. "mosquitto version 2.0.21".
    pub version: Option<String>,
}

impl BrokerStats {
    /// Take one `$SYS` message; unknown topics and unreadable values are ignored.
    pub fn absorb(&mut self, topic: &str, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let text = text.trim();
        // "12345 seconds" for the uptime; plain numbers elsewhere.
        let int = || text.split_whitespace().next().and_then(|n| n.parse().ok());
        let float = || text.parse::<f64>().ok().filter(|f| f.is_finite());
        match topic {
            "$SYS/broker/clients/connected" => self.clients_connected = int(),
            "$SYS/broker/messages/received" => self.messages_received = int(),
            "$SYS/broker/messages/sent" => self.messages_sent = int(),
            "$SYS/broker/load/messages/received/1min" => self.messages_received_per_min = float(),
            "$SYS/broker/load/messages/sent/1min" => self.messages_sent_per_min = float(),
            "$SYS/broker/uptime" => self.uptime_secs = int(),
            "$SYS/broker/version" => self.version = Some(text.chars().take(100).collect()),
            _ => {}
        }
    }

    /// Every figure is in.
    pub fn complete(&self) -> bool {
        self.clients_connected.is_some()
            && self.messages_received.is_some()
            && self.messages_sent.is_some()
            && self.messages_received_per_min.is_some()
            && self.messages_sent_per_min.is_some()
            && self.uptime_secs.is_some()
            && self.version.is_some()
    }

    /// Nothing came.
    pub fn is_empty(&self) -> bool {
        *self == BrokerStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_payloads_are_read() {
        let mut s = BrokerStats::default();
        for (t, p) in [
            ("$SYS/broker/clients/connected", "4"),
            ("$SYS/broker/messages/received", "1200"),
            ("$SYS/broker/messages/sent", "2400"),
            ("$SYS/broker/load/messages/received/1min", "58.31"),
            ("$SYS/broker/load/messages/sent/1min", "nan"),
            ("$SYS/broker/uptime", "3601 seconds"),
            ("$SYS/broker/version", "mosquitto version 2.0.21"),
            ("$SYS/broker/heap/current", "1"),
        ] {
            s.absorb(t, p.as_bytes());
        }
        assert_eq!(s.clients_connected, Some(4));
        assert_eq!(s.messages_sent, Some(2400));
        assert_eq!(s.messages_received_per_min, Some(58.31));
        assert_eq!(s.messages_sent_per_min, None, "not a number");
        assert_eq!(s.uptime_secs, Some(3601));
        assert_eq!(s.version.as_deref(), Some("mosquitto version 2.0.21"));
        assert!(!s.complete() && !s.is_empty());
    }
}
