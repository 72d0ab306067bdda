//! What one historian instance is told: its broker, tenant and share group,
//! its database, and how it batches. Defaults are those of the
//! `weir-historian` binary; [`Config::validate`] rejects values that would
//! only fail later (empty topic levels, zero writers).

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// Configuration of one historian instance.
#[derive(Clone, Debug)]
pub struct Config {
    /// `mqtt://host:port` (or `mqtts://`).
    pub mqtt_url: String,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// A file holding the MQTT password, read at each (re)connect: a
    /// short-lived JWT renewed by the api into a mounted Secret is picked up
    /// without a restart. Wins over `mqtt_password`.
    pub mqtt_password_file: Option<std::path::PathBuf>,
    /// Stable per instance: the broker keeps this client's session (and the
    /// messages queued for it) across restarts.
    pub client_id: String,
    /// First topic level, `weir` by default.
    pub topic_prefix: String,
    /// Tenant to subscribe to; `+` for all tenants on the broker.
    pub tenant: String,
    /// Shared-subscription group; instances in one group split the load.
    pub share_group: String,
    /// MQTT 5 Receive Maximum: messages the broker may send unacknowledged.
    pub mqtt_inflight: u16,
    /// How long the broker keeps our session while we are disconnected.
    pub session_expiry_secs: u32,
    /// Largest MQTT packet we accept (the broker drops larger ones for us).
    pub max_message_bytes: u32,
    /// `postgres://user[:password]@host:port/database`.
    pub database_url: String,
    /// Rows per batch (a batch is one COPY and one commit).
    pub batch_rows: usize,
    /// Longest time a reading waits for its batch to fill.
    pub linger: Duration,
    /// Parallel PostgreSQL connections writing batches.
    pub writers: usize,
    /// Drop partitions older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Daily partitions created ahead of time.
    pub partitions_ahead_days: u32,
    /// How often partitions are created ahead and old ones dropped.
    pub maintenance_interval: Duration,
    /// Address for `/metrics` and `/healthz`; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// A hole in a gateway's `seq` open this long is a gap (asked for again).
    pub gap_grace: Duration,
    /// How often the gaps are checked (by one replica at a time).
    pub gap_check_interval: Duration,
    /// A gap still open this long after a replay request is asked again.
    pub replay_retry: Duration,
    /// A gap asked for this long without filling is recorded as
    /// `agent-unreachable`.
    pub replay_window: Duration,
    /// Most frames asked for in one replay request; bigger gaps are split.
    pub replay_max_frames: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            mqtt_username: None,
            mqtt_password: None,
            mqtt_password_file: None,
            client_id: "weir-historian".into(),
            topic_prefix: "weir".into(),
            tenant: "+".into(),
            share_group: "weir-historian".into(),
            mqtt_inflight: 1000,
            session_expiry_secs: 7 * 24 * 3600,
            max_message_bytes: 8 * 1024 * 1024,
            database_url: "postgres://postgres@127.0.0.1:5432/weir".into(),
            batch_rows: 20_000,
            linger: Duration::from_millis(10),
            writers: 2,
            retention_days: 0,
            partitions_ahead_days: 3,
            maintenance_interval: Duration::from_secs(3600),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9103))),
            gap_grace: Duration::from_secs(10),
            gap_check_interval: Duration::from_secs(1),
            replay_retry: Duration::from_secs(15),
            replay_window: Duration::from_secs(120),
            replay_max_frames: 10_000,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.batch_rows == 0 {
            return bad("batch rows must be at least 1");
        }
        if self.writers == 0 {
            return bad("writers must be at least 1");
        }
        if self.mqtt_inflight == 0 {
            return bad("MQTT inflight must be at least 1");
        }
        if self.replay_max_frames == 0 {
            return bad("--replay-max-frames must be at least 1");
        }
        if self.gap_check_interval.is_zero() || self.replay_retry.is_zero() {
            return bad("--gap-check-ms and --replay-retry-secs must be greater than 0");
        }
        if self.client_id.is_empty() {
            return bad("the MQTT client id must not be empty");
        }
        for (name, v) in [
            ("topic prefix", &self.topic_prefix),
            ("share group", &self.share_group),
        ] {
            if v.is_empty() || v.contains(['/', '+', '#']) {
                return Err(Error::Config(format!(
                    "{name} {v:?} must be one non-empty topic level without wildcards"
                )));
            }
        }
        if self.tenant.is_empty()
            || self.tenant.contains(['/', '#'])
            || (self.tenant.contains('+') && self.tenant != "+")
        {
            return bad("tenant must be a tenant name or `+` for all tenants");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        assert!(Config::default().validate().is_ok());
        let bad_tenant = Config {
            tenant: "a/b".into(),
            ..Default::default()
        };
        assert!(bad_tenant.validate().is_err());
        let zero = Config {
            batch_rows: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let no_frames = Config {
            replay_max_frames: 0,
            ..Default::default()
        };
        let e = no_frames.validate().unwrap_err().to_string();
        assert!(e.contains("--replay-max-frames"), "{e}");
    }
}
