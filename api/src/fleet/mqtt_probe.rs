//! Health probe of an adopted broker: connect over MQTT, subscribe to a
//! private probe topic, publish to it and time the round trip; then read
//! the broker's own figures from `$SYS` ([`super::broker_stats`], for up to
//! [`STATS_WAIT`]). Only to a broker the outbound policy allows
//! (`crate::outbound`): a refused one is reported as such without a
//! connection.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter, Transport};

use super::broker_stats::{BrokerStats, SYS_TOPICS};
use crate::outbound::Policy;

/// How long the probe waits for `$SYS` figures after the round trip.
pub const STATS_WAIT: Duration = Duration::from_millis(1000);

/// rustls needs one process-wide crypto provider; with more than one
/// compiled in (ring, aws-lc-rs) it panics at the first TLS config unless
/// one is installed. Idempotent.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub reachable: bool,
    /// Publish → receive round trip.
    pub rtt: Option<Duration>,
    pub error: Option<String>,
    /// The broker's `$SYS` figures, when it published any.
    pub stats: Option<BrokerStats>,
}

/// Host, port and TLS of an `mqtt://` / `mqtts://` (or `tcp://`, `ssl://`) URL.
/// Broker URLs the OpenAPI document promises `parse_broker_url` takes:
/// mqtt/mqtts (or tcp/ssl), a DNS name or IPv4 address, an optional port.
pub const BROKER_URL_PATTERN: &str = r"^(mqtts?|tcp|ssl)://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$";

/// The schema of a broker URL (or null).
pub fn broker_url_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(BROKER_URL_PATTERN))
        .build()
}

pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), String> {
    let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let tls = match u.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        s => {
            return Err(format!(
                "scheme '{s}' is not supported; use mqtt:// or mqtts://"
            ))
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "the URL needs a host".to_string())?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = u.port().unwrap_or(if tls { 8883 } else { 1883 });
    if !u.path().is_empty() && u.path() != "/" {
        return Err("the URL must not have a path".into());
    }
    Ok((host, port, tls))
}

/// Why the outbound policy refuses the broker at `url` (resolved now), if
/// it does.
pub async fn refused(outbound: &Policy, url: &str) -> Option<String> {
    let (host, port, _) = parse_broker_url(url).ok()?;
    outbound
        .resolve(&host, port)
        .await
        .err()
        .map(|e| format!("url: {e}"))
}

/// Probe `url` within `timeout`, if `outbound` allows its address.
pub async fn probe(
    outbound: &Policy,
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
    timeout: Duration,
) -> ProbeResult {
    let run = probe_inner(outbound, url, username, password);
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok((rtt, stats))) => ProbeResult {
            reachable: true,
            rtt: Some(rtt),
            error: None,
            stats: (!stats.is_empty()).then_some(stats),
        },
        Ok(Err(e)) => ProbeResult {
            reachable: false,
            rtt: None,
            error: Some(e),
            stats: None,
        },
        Err(_) => ProbeResult {
            reachable: false,
            rtt: None,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
            stats: None,
        },
    }
}

async fn probe_inner(
    outbound: &Policy,
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<(Duration, BrokerStats), String> {
    let (host, port, tls) = parse_broker_url(url)?;
    let checked = outbound
        .resolve(&host, port)
        .await
        .map_err(|e| format!("url: {e}"))?[0];
    // Plain MQTT connects to the checked address itself. TLS needs the name
    // for the certificate (rumqttc takes one host for both), so it connects
    // by name just after the check.
    let host = if tls { host } else { checked.ip().to_string() };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut opts = MqttOptions::new(format!("weir-probe-{}", &id[..12]), host, port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    if let Some(u) = username.filter(|u| !u.is_empty()) {
        opts.set_credentials(u, password.unwrap_or(""));
    }
    if tls {
        ensure_crypto_provider();
        opts.set_transport(Transport::tls_with_default_config());
    }
    let topic = format!("weir-probe/{id}");
    let (client, mut events) = AsyncClient::new(opts, 10);
    let mut sent_at: Option<Instant> = None;
    let result = loop {
        let ev = match events.poll().await {
            Ok(ev) => ev,
            Err(e) => break Err(format!("connection failed: {e}")),
        };
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != rumqttc::ConnectReturnCode::Success {
                    break Err(format!("broker refused the connection: {:?}", ack.code));
                }
                if let Err(e) = client.try_subscribe(&topic, QoS::AtLeastOnce) {
                    break Err(format!("subscribe: {e}"));
                }
            }
            Event::Incoming(Packet::SubAck(ack)) if sent_at.is_none() => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    break Err("broker refused the probe subscription".into());
                }
                sent_at = Some(Instant::now());
                if let Err(e) =
                    client.try_publish(&topic, QoS::AtLeastOnce, false, b"probe".to_vec())
                {
                    break Err(format!("publish: {e}"));
                }
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == topic => {
                break sent_at
                    .map(|t| t.elapsed())
                    .ok_or_else(|| "message arrived before it was sent".to_string());
            }
            _ => {}
        }
    };
    let stats = match result {
        Ok(_) => read_stats(&client, &mut events).await,
        Err(_) => BrokerStats::default(),
    };
    let _ = client.try_disconnect();
    result.map(|rtt| (rtt, stats))
}

/// The broker's `$SYS` figures, for up to [`STATS_WAIT`] (retained: they
/// come at once where the broker publishes them).
async fn read_stats(client: &AsyncClient, events: &mut rumqttc::EventLoop) -> BrokerStats {
    let mut stats = BrokerStats::default();
    let filters = SYS_TOPICS.map(|t| SubscribeFilter::new(t.to_string(), QoS::AtMostOnce));
    if client.try_subscribe_many(filters).is_err() {
        return stats;
    }
    let deadline = tokio::time::Instant::now() + STATS_WAIT;
    while !stats.complete() {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => stats.absorb(&p.topic, &p.payload),
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    /// What the document promises is taken is taken; what it refuses is refused
    /// (the pattern may be narrower than the parser, never wider).
    #[test]
    fn broker_url_pattern_is_within_what_the_parser_takes() {
        let re = regex::Regex::new(super::BROKER_URL_PATTERN).unwrap();
        for u in [
            "mqtt://broker",
            "mqtts://broker.example.org:8883",
            "tcp://10.0.0.5:1883/",
            "ssl://a-b.c:65535",
            "mqtt://0:0",
        ] {
            assert!(re.is_match(u), "{u}");
            assert!(super::parse_broker_url(u).is_ok(), "{u}");
        }
        for u in [
            "http://broker",
            "mqtt://",
            "mqtt://broker:65536",
            "mqtt://broker/topic",
            "mqtt://user:pw@broker",
            "",
        ] {
            assert!(!re.is_match(u), "{u}");
        }
    }

    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_broker_url("mqtt://10.0.0.1:1884").unwrap(),
            ("10.0.0.1".into(), 1884, false)
        );
        assert_eq!(
            parse_broker_url("mqtts://broker.example").unwrap(),
            ("broker.example".into(), 8883, true)
        );
        assert!(parse_broker_url("http://x").is_err());
        assert!(parse_broker_url("mqtt://x/path").is_err());
    }

    #[tokio::test]
    async fn unreachable_broker_reports_an_error() {
        // Bind and drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let allow = Policy::new(&["127.0.0.0/8".parse().unwrap()]);
        let r = probe(
            &allow,
            &format!("mqtt://127.0.0.1:{port}"),
            None,
            None,
            Duration::from_secs(3),
        )
        .await;
        assert!(!r.reachable);
        assert!(r.error.unwrap().contains("connection failed"));
    }

    #[tokio::test]
    async fn refused_broker_is_not_contacted() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for url in [
            format!("mqtt://127.0.0.1:{port}"),
            format!("mqtt://localhost:{port}"),
        ] {
            let r = probe(&Policy::default(), &url, None, None, Duration::from_secs(3)).await;
            assert!(!r.reachable);
            let e = r.error.unwrap();
            assert!(e.contains("is a loopback address"), "{e}");
            assert!(e.contains("WEIR_OUTBOUND_ALLOW_CIDRS"), "{e}");
        }
    }
}
