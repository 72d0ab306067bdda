//! Live readings from the tenant clusters. For every broker that carries a
//! tenant with alert rules, one MQTT connection (rumqttc) with a shared
//! subscription `$share/weir-alerts/{prefix}/{tenant}/#` per such tenant,
//! so several api replicas split the stream between them.
//!
//! The brokers are the projects' adopted clusters (`fleet_clusters`: the
//! URL, and the username and password sealed under the master key), plus
//! `WEIR_ALERTS_MQTT_URL` when set (it then carries every tenant with rules).
//! [`supervise`] keeps the connections in line with the clusters and the
//! rules: on start, when the rule set's tenants change, when a cluster is
//! created, changed or deleted ([`super::Alerts::clusters_changed`]), and
//! every [`REFRESH`]. Messages go to the alerts worker; a bad payload is
//! counted and dropped.
//!
//! Not yet: clusters whose agents authenticate with api-issued JWTs
//! (`apiJwt`) are not subscribed to (the api would need a JWT of its own
//! with a subscribe ACL); use `WEIR_ALERTS_MQTT_URL` for those.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use sea_orm::EntityTrait;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use weir_crds::message::{parse_topic, UplinkMessage};

use super::Alerts;
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::entities::cluster;

/// Shared-subscription group of the alert engines.
pub const SHARE_GROUP: &str = "weir-alerts";

/// How often the clusters table is read again, in case a change was missed.
pub const REFRESH: Duration = Duration::from_secs(30);

pub fn subscription(prefix: &str, tenant: &str) -> String {
    format!("$share/{SHARE_GROUP}/{prefix}/{tenant}/#")
}

/// One broker to read from (the connection's identity: a changed password
/// makes a new connection).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Broker {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{}", redact(&self.url))
    }
}

/// Connection options for a broker (`mqtt://`, `mqtts://`, `tcp://`,
/// `ssl://`); credentials from the broker, else from the URL's userinfo.
pub fn broker_options(b: &Broker) -> Option<MqttOptions> {
    let (host, port, tls) = crate::fleet::mqtt_probe::parse_broker_url(&b.url).ok()?;
    let u = url::Url::parse(&b.url).ok()?;
    let id = format!(
        "weir-alerts-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if tls {
        ensure_crypto_provider();
        o.set_transport(Transport::tls_with_default_config());
    }
    match &b.username {
        Some(user) if !user.is_empty() => {
            o.set_credentials(user, b.password.as_deref().unwrap_or(""));
        }
        _ if !u.username().is_empty() => {
            o.set_credentials(u.username(), u.password().unwrap_or(""));
        }
        _ => {}
    }
    Some(o)
}

/// rustls needs one process-wide crypto provider; with more than one
/// compiled in (ring, aws-lc-rs) it panics at the first TLS config unless
/// one is installed. Idempotent.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `mqtt://host:port` (or `tcp://`) into connection options.
pub fn options(url: &str) -> Option<MqttOptions> {
    broker_options(&Broker {
        url: url.to_string(),
        username: None,
        password: None,
    })
}

/// The brokers to read and the tenants to subscribe on each: every adopted
/// cluster of a tenant in `want`, and the override URL with all of `want`.
async fn desired(
    alerts: &Alerts,
    want: &BTreeSet<String>,
) -> Result<BTreeMap<Broker, BTreeSet<String>>, ApiError> {
    let mut out: BTreeMap<Broker, BTreeSet<String>> = BTreeMap::new();
    if let Some(url) = &alerts.inner.cfg.mqtt_url {
        if !want.is_empty() {
            out.insert(
                Broker {
                    url: url.clone(),
                    username: None,
                    password: None,
                },
                want.clone(),
            );
        }
    }
    if want.is_empty() {
        return Ok(out);
    }
    let db = &alerts.inner.db;
    let slugs: HashMap<uuid::Uuid, String> = org::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.slug))
        .collect();
    for c in cluster::Entity::find().all(db).await? {
        let Some(tenant) = slugs.get(&c.org_id).filter(|t| want.contains(*t)) else {
            continue;
        };
        if c.auth_mode != crate::fleet::clusters::AUTH_PASSWORD {
            tracing::debug!(cluster = %c.slug, "alerts: not reading a cluster with api-issued JWTs");
            continue;
        }
        let Some(url) = crate::fleet::clusters::endpoints(&c).into_iter().next() else {
            continue;
        };
        let password = match &c.password_enc {
            None => None,
            Some(p) => {
                let opened = alerts
                    .inner
                    .fleet
                    .master()
                    .and_then(|k| k.open(p, &c.id.to_string()))
                    .and_then(|b| String::from_utf8(b).map_err(ApiError::internal));
                match opened {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(cluster = %c.slug, error = %e, "alerts: cannot open the cluster's password");
                        continue;
                    }
                }
            }
        };
        out.entry(Broker {
            url,
            username: c.username.clone(),
            password,
        })
        .or_default()
        .insert(tenant.clone());
    }
    Ok(out)
}

/// Keep one connection per broker in line with the clusters and the rules.
pub async fn supervise(alerts: Alerts) {
    let mut tenants_rx = alerts.tenants();
    let mut conns: BTreeMap<Broker, (watch::Sender<BTreeSet<String>>, AbortHandle)> =
        BTreeMap::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = alerts.inner.clusters_changed.notified() => {}
            changed = tenants_rx.changed() => if changed.is_err() { return },
        }
        let want = tenants_rx.borrow_and_update().clone();
        let plan = match desired(&alerts, &want).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: reading the clusters failed");
                continue;
            }
        };
        conns.retain(|b, (_, h)| {
            let keep = plan.contains_key(b) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for (b, tenants) in plan {
            if let Some((tx, _)) = conns.get(&b) {
                tx.send_if_modified(|cur| {
                    let changed = *cur != tenants;
                    *cur = tenants.clone();
                    changed
                });
                continue;
            }
            let Some(opts) = broker_options(&b) else {
                tracing::error!(broker = ?b, "alerts: not an mqtt:// or mqtts:// URL; not reading it");
                continue;
            };
            let (tx, rx) = watch::channel(tenants);
            let h = tokio::spawn(run(alerts.clone(), opts, redact(&b.url), rx));
            alerts.track(h.abort_handle());
            conns.insert(b, (tx, h.abort_handle()));
        }
    }
}

/// One broker connection, until aborted: connect, subscribe to the
/// tenants in `tenants_rx`, forward, reconnect on errors.
async fn run(
    alerts: Alerts,
    opts: MqttOptions,
    label: String,
    mut tenants_rx: watch::Receiver<BTreeSet<String>>,
) {
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let prefix = alerts.topic_prefix().to_string();
    loop {
        tokio::select! {
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %label, "alerts: connected to MQTT");
                    // A new session: subscribe to every tenant again.
                    subscribed.clear();
                    let want = tenants_rx.borrow().clone();
                    resubscribe(&client, &prefix, &want, &mut subscribed).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Some(parts) = parse_topic(&p.topic) else { continue };
                    // Only the tenants this broker carries (a shared broker may carry others).
                    if !subscribed.contains(parts.tenant) {
                        continue;
                    }
                    match serde_json::from_slice::<UplinkMessage>(&p.payload) {
                        Ok(msg) => alerts.ingest(parts.tenant, parts.gateway, parts.device, msg).await,
                        Err(e) => tracing::debug!(topic = %p.topic, error = %e, "alerts: payload is not an uplink message"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(broker = %label, error = %e, "alerts: MQTT connection lost; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            changed = tenants_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let want = tenants_rx.borrow_and_update().clone();
                resubscribe(&client, &prefix, &want, &mut subscribed).await;
            }
        }
    }
}

async fn resubscribe(
    client: &AsyncClient,
    prefix: &str,
    want: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
) {
    for t in done.difference(want).cloned().collect::<Vec<_>>() {
        if client.unsubscribe(subscription(prefix, &t)).await.is_ok() {
            done.remove(&t);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_options_and_redaction() {
        let b = Broker {
            url: "mqtts://broker.example:8884".into(),
            username: Some("weir".into()),
            password: Some("s3cret".into()),
        };
        let o = broker_options(&b).unwrap();
        assert_eq!(o.broker_address(), ("broker.example".to_string(), 8884));
        let login = |o: &MqttOptions| o.credentials().map(|l| (l.username, l.password));
        assert_eq!(login(&o), Some(("weir".to_string(), "s3cret".to_string())));
        assert!(!format!("{b:?}").contains("s3cret"));
        let o = options("mqtt://u:p@127.0.0.1").unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(login(&o), Some(("u".to_string(), "p".to_string())));
        assert!(options("http://x").is_none());
        assert_eq!(redact("mqtt://u:p@h:1"), "mqtt://u:***@h:1");
        assert_eq!(
            subscription("weir", "riverside"),
            "$share/weir-alerts/weir/riverside/#"
        );
    }
}
