//! The MQTT side: one persistent MQTT 5 session with manual acknowledgements.
//!
//! * `clean_start = false` with a session expiry and a stable client id: the
//!   broker keeps our subscription and queues readings while we are away, and
//!   re-sends every message we had not acknowledged when we come back.
//! * Manual acks: a message is acknowledged only after the rows it carried
//!   are committed (see `pipeline`). Until then the broker owns it.
//! * `Receive Maximum` = `inflight`: the broker sends at most that many
//!   unacknowledged messages. That is the first line of backpressure — when
//!   PostgreSQL is slow, acks stop and so does the flow — and it bounds memory.
//!
//! Acks and reconnects: packet ids are only meaningful on the connection
//! that delivered the message. Every connection gets an epoch number; an ack
//! for a message from an older epoch is dropped (the broker re-sends that
//! message on the new connection, its rows are then deduplicated). The epoch
//! is bumped and rumqttc's queued acks are discarded (`EventLoop::clean`)
//! under one write lock, and acks are queued under the read lock after
//! checking the epoch, so an ack can never leak from one connection into the
//! next.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gaps::{control_filters, parse_control, Control};
use crate::metrics::Metrics;
use crate::rows::{parse_message, Malformed, MessageRows};
use crate::{Config, Error};

/// The longest wait between reconnects (see `consume`).
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// What the pipeline needs to acknowledge one message later.
#[derive(Debug)]
pub(crate) struct AckToken {
    epoch: u64,
    publish: Publish,
}

/// One received message, parsed.
#[derive(Debug)]
pub(crate) struct Received {
    pub topic: String,
    pub rows: Result<MessageRows, Malformed>,
    /// The broker marked it as a re-delivery: its rows may already be stored.
    pub dup: bool,
    /// An uplink state or replay answer to store with the batch.
    pub control: Option<Control>,
    /// When it came from the broker (µs since the epoch); 0 unless
    /// `--lag-samples` is on.
    pub received_us: i64,
    pub ack: AckToken,
}

/// Sends acknowledgements for the current connection only.
#[derive(Clone)]
pub(crate) struct Acker {
    client: AsyncClient,
    epoch: Arc<RwLock<u64>>,
}

impl Acker {
    /// Acknowledge a message whose rows are committed (or that is skipped as
    /// malformed). Returns false when the ack was dropped because the
    /// message came on an earlier connection.
    pub fn ack(&self, token: &AckToken) -> bool {
        let epoch = self.epoch.read().unwrap_or_else(|e| e.into_inner());
        if *epoch != token.epoch {
            return false;
        }
        // The request channel has room for `inflight` acks plus slack and the
        // broker never has more than `inflight` messages unacknowledged, so
        // this only fails if the broker ignores Receive Maximum; the message
        // is then re-delivered after the next reconnect and deduplicated.
        match self.client.try_ack(&token.publish) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, pkid = token.publish.pkid, "could not queue MQTT ack; the message will be re-delivered");
                false
            }
        }
    }
}

/// `mqtt://host[:port]`, `tcp://…` or `mqtts://…` (TLS with the system roots).
fn parse_url(url: &str) -> Result<(String, u16, bool), Error> {
    let bad = |reason: &str| Error::MqttUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected mqtt://host:port"))?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return Err(bad("scheme must be mqtt, tcp, mqtts or ssl")),
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') || hostport.contains('@') {
        return Err(bad(
            "only host and port are allowed; pass credentials with --mqtt-username/--mqtt-password",
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>().map_err(|_| bad("invalid port"))?,
        ),
        _ => (hostport, default_port),
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    Ok((host.to_owned(), port, tls))
}

/// The subscriptions, all in the share group: `{prefix}/{tenant}/+/+/+`
/// (readings), and the agents' uplink states and replay answers — the
/// filters the historian's broker ACL allows (`weir_crds::acl`); a wider
/// `#` would be refused by a broker that enforces it.
pub(crate) fn filters(cfg: &Config) -> Vec<String> {
    let [state, answers] = control_filters(&cfg.topic_prefix, &cfg.tenant);
    [
        weir_crds::acl::readings_filter(&cfg.topic_prefix, &cfg.tenant),
        state,
        answers,
    ]
    .into_iter()
    .map(|f| format!("$share/{}/{f}", cfg.share_group))
    .collect()
}

pub(crate) fn options(cfg: &Config) -> Result<MqttOptions, Error> {
    let (host, port, tls) = parse_url(&cfg.mqtt_url)?;
    let mut o = MqttOptions::new(cfg.client_id.clone(), host, port);
    if tls {
        o.set_transport(Transport::tls_with_default_config());
    }
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(cfg.session_expiry_secs))
        .set_manual_acks(true)
        .set_receive_maximum(Some(cfg.mqtt_inflight))
        .set_max_packet_size(Some(cfg.max_message_bytes))
        .set_keep_alive(Duration::from_secs(30))
        .set_connection_timeout(10);
    if let Some(user) = &cfg.mqtt_username {
        o.set_credentials(user.clone(), password(cfg)?);
    }
    Ok(o)
}

/// The MQTT password: the file's content (trimmed) when one is given,
/// else `mqtt_password`.
pub(crate) fn password(cfg: &Config) -> Result<String, Error> {
    match &cfg.mqtt_password_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                Error::Config(format!(
                    "--mqtt-password-file {}: cannot read it: {e}",
                    path.display()
                ))
            }),
        None => Ok(cfg.mqtt_password.clone().unwrap_or_default()),
    }
}

/// Before a reconnect: read the password file again (the api renews the
/// JWT in it before the old one expires, and the broker refuses an expired
/// one). A file that cannot be read keeps the password we had.
fn refresh_password(cfg: &Config, options: &mut MqttOptions) {
    let (Some(user), Some(_)) = (&cfg.mqtt_username, &cfg.mqtt_password_file) else {
        return;
    };
    match password(cfg) {
        Ok(p) => {
            options.set_credentials(user.clone(), p);
        }
        Err(e) => tracing::warn!(error = %e, "keeping the MQTT password read before"),
    }
}

/// A client, its event loop and the acker bound to it.
pub(crate) struct Session {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub acker: Acker,
}

pub(crate) fn session(cfg: &Config) -> Result<Session, Error> {
    let opts = options(cfg)?;
    // Room for one ack per in-flight message plus subscribe/disconnect.
    let (client, mut eventloop) = AsyncClient::new(opts, usize::from(cfg.mqtt_inflight) + 64);
    // Without TCP_NODELAY a PUBACK after a commit can wait ~40 ms for the
    // broker's delayed ACK (Nagle), holding the agent's window for nothing.
    let mut net = eventloop.options.network_options();
    net.set_tcp_nodelay(true);
    eventloop.options.set_network_options(net);
    let acker = Acker {
        client: client.clone(),
        epoch: Arc::new(RwLock::new(0)),
    };
    Ok(Session {
        client,
        eventloop,
        acker,
    })
}

/// Poll the broker until `done` fires. Parsed messages go to `tx`; when
/// `stop` fires (or the pipeline is gone) messages are no longer forwarded —
/// and not acknowledged, so the broker keeps them — while polling goes on so
/// that acks of the last batches still reach the broker.
pub(crate) async fn consume(
    cfg: Arc<Config>,
    session: Session,
    tx: mpsc::Sender<Received>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    done: CancellationToken,
) {
    let Session {
        client,
        mut eventloop,
        acker,
    } = session;
    let filters = filters(&cfg);
    let filter = filters.join(", ");
    let mut forwarding = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            biased;
            _ = done.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                tracing::info!(
                    url = %cfg.mqtt_url,
                    client_id = %cfg.client_id,
                    session_present = ack.session_present,
                    "connected to MQTT broker"
                );
                // Subscribing again on a resumed session is harmless and
                // covers a broker that lost the session.
                let subs = filters.iter().map(|t| {
                    let mut f = Filter::new(t.clone(), QoS::AtLeastOnce);
                    f.preserve_retain = true;
                    f
                });
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::error!(error = %e, "could not queue MQTT subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(sub))) => {
                let failed: Vec<_> = sub
                    .return_codes
                    .iter()
                    .filter(|c| {
                        !matches!(
                            c,
                            rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                        )
                    })
                    .collect();
                if failed.is_empty() {
                    tracing::info!(%filter, "subscribed");
                    metrics.mqtt_connected.set(1);
                } else {
                    tracing::error!(%filter, codes = ?failed, "broker refused the subscription");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics.messages.inc();
                let received_us = if metrics.logs_lags() {
                    crate::metrics::unix_us(std::time::SystemTime::now())
                } else {
                    0
                };
                if !forwarding {
                    continue;
                }
                let epoch = *acker.epoch.read().unwrap_or_else(|e| e.into_inner());
                let rows = parse_message(&p.topic, &p.payload);
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let control = match rows {
                    Err(Malformed::Command) => match parse_control(&topic, &p.payload) {
                        Some(Ok(c)) => Some(c),
                        Some(Err(e)) => {
                            metrics.malformed_messages.inc();
                            tracing::warn!(%topic, error = %e, "malformed control message; acknowledged and skipped");
                            None
                        }
                        None => None,
                    },
                    _ => None,
                };
                let received = Received {
                    topic,
                    rows,
                    dup: p.dup,
                    control,
                    received_us,
                    ack: AckToken {
                        epoch,
                        publish: Publish {
                            qos: p.qos,
                            pkid: p.pkid,
                            ..Default::default()
                        },
                    },
                };
                // Blocks when the pipeline is full: we stop reading from the
                // broker until PostgreSQL catches up.
                let sent = tokio::select! {
                    biased;
                    _ = stop.cancelled() => false,
                    r = tx.send(received) => r.is_ok(),
                };
                if !sent {
                    forwarding = false;
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                tracing::warn!(reason = ?d.reason_code, "broker sent DISCONNECT");
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_connected.set(0);
                {
                    let mut epoch = acker.epoch.write().unwrap_or_else(|e| e.into_inner());
                    *epoch += 1;
                    // Drop acks queued for the connection that just ended.
                    eventloop.clean();
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost; reconnecting");
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                refresh_password(&cfg, &mut eventloop.options);
                // At most 1 s: after a broker restart, what agents publish
                // before this session has re-subscribed finds no subscriber
                // and is lost (issue 20), so come back quickly; a retry a
                // second against a broker that is down costs nothing.
                backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
            }
        }
        if stop.is_cancelled() {
            forwarding = false;
        }
    }
    metrics.mqtt_connected.set(0);
    // A clean DISCONNECT keeps the session (clean_start=false, expiry > 0).
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://broker.example").unwrap(),
            ("broker.example".into(), 8883, true)
        );
        assert_eq!(
            parse_url("tcp://[::1]:1999/").unwrap(),
            ("::1".into(), 1999, false)
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://user:pw@x:1").is_err());
        assert!(parse_url("mqtt://x:notaport").is_err());
    }

    #[test]
    fn the_password_file_is_read_again_at_each_reconnect() {
        let dir = std::env::temp_dir().join(format!("weir-historian-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "jwt-1\n").unwrap();
        let cfg = Config {
            mqtt_username: Some("weir-historian-riverside".into()),
            mqtt_password: Some("ignored".into()),
            mqtt_password_file: Some(file.clone()),
            ..Config::default()
        };
        let mut o = options(&cfg).unwrap();
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("weir-historian-riverside", "jwt-1")
        );
        // The api renewed the JWT in the mounted Secret.
        std::fs::write(&file, "jwt-2").unwrap();
        refresh_password(&cfg, &mut o);
        assert_eq!(o.credentials().unwrap().password, "jwt-2");
        // Gone for a moment (a Secret volume being updated): kept.
        std::fs::remove_file(&file).unwrap();
        refresh_password(&cfg, &mut o);
        assert_eq!(o.credentials().unwrap().password, "jwt-2");
        // Unreadable at start: an error naming the flag.
        let e = options(&cfg).unwrap_err().to_string();
        assert!(e.contains("--mqtt-password-file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
