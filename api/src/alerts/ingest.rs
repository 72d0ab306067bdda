//! Live readings from the tenant cluster: one MQTT connection (rumqttc) with
//! a shared subscription `$share/weir-alerts/{prefix}/{tenant}/#` per tenant
//! that has rules, so several api replicas split the stream between them.
//! Messages go to the alerts worker; a bad payload is counted and dropped.

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use weir_crds::message::{parse_topic, UplinkMessage};

use super::Alerts;

/// Shared-subscription group of the alert engines.
pub const SHARE_GROUP: &str = "weir-alerts";

pub fn subscription(prefix: &str, tenant: &str) -> String {
    format!("$share/{SHARE_GROUP}/{prefix}/{tenant}/#")
}

/// `mqtt://host:port` (or `tcp://`) into connection options.
pub fn options(url: &str) -> Option<MqttOptions> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "mqtt" | "tcp") {
        return None;
    }
    let host = u.host_str()?.to_string();
    let port = u.port().unwrap_or(1883);
    let id = format!(
        "weir-alerts-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if !u.username().is_empty() {
        o.set_credentials(u.username(), u.password().unwrap_or(""));
    }
    Some(o)
}

/// Run until aborted: connect, subscribe, forward, reconnect on errors.
pub async fn run(alerts: Alerts, url: String) {
    let Some(opts) = options(&url) else {
        tracing::error!(
            "alerts: WEIR_ALERTS_MQTT_URL is not an mqtt://host:port URL; no live ingestion"
        );
        return;
    };
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let mut tenants_rx = alerts.tenants();
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let prefix = alerts.topic_prefix().to_string();
    loop {
        tokio::select! {
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %redact(&url), "alerts: connected to MQTT");
                    // A new session: subscribe to every tenant again.
                    subscribed.clear();
                    let want = tenants_rx.borrow().clone();
                    subscribe_new(&client, &prefix, &want, &mut subscribed).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Some(parts) = parse_topic(&p.topic) else { continue };
                    match serde_json::from_slice::<UplinkMessage>(&p.payload) {
                        Ok(msg) => alerts.ingest(parts.tenant, parts.gateway, parts.device, msg).await,
                        Err(e) => tracing::debug!(topic = %p.topic, error = %e, "alerts: payload is not an uplink message"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            changed = tenants_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let want = tenants_rx.borrow_and_update().clone();
                subscribe_new(&client, &prefix, &want, &mut subscribed).await;
            }
        }
    }
}

async fn subscribe_new(
    client: &AsyncClient,
    prefix: &str,
    want: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
) {
    for t in want.difference(&done.clone()) {
        if client
            .subscribe(subscription(prefix, t), QoS::AtLeastOnce)
            .await
            .is_ok()
        {
            done.insert(t.clone());
        }
    }
}

/// The broker URL without its password, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}
