//! Live readings from the tenant clusters. For every broker that carries a
//! tenant with alert rules that this replica owns ([`super::replicas`]),
//! one MQTT connection (rumqttc) with a shared subscription
//! `$share/weir-alerts/{prefix}/{tenant}/+/+/+` (the readings filter of the
//! api's row in `weir_crds::acl`) per such tenant: one replica
//! reads a tenant's whole stream, and while a tenant moves between
//! replicas the two split it rather than both evaluating every reading.
//!
//! The brokers are the projects' adopted clusters (`fleet_clusters`), plus
//! `WEIR_ALERTS_MQTT_URL` when set (it then carries every tenant with rules).
//! [`supervise`] keeps the connections in line with the clusters and the
//! rules: on start, when the rule set's tenants change, when a cluster is
//! created, changed or deleted ([`super::Alerts::clusters_changed`]), and
//! every [`REFRESH`]. Messages go to the alerts worker; a bad payload is
//! counted and dropped.
//!
//! An adopted Mosquitto with a stored admin login is read with the api's own
//! restricted dynamic-security login on it (`fleet::broker_identity`, made
//! by the cluster health probe; until it exists the cluster waits), never
//! with the admin login; an open broker (no login) anonymously; clusters in
//! `apiJwt` mode (EMQX checking JWTs against the
//! api's JWKS) with the api's own short-lived, subscribe-only JWT for the
//! tenant ([`super::mqtt_auth`]), minted at connect and renewed by
//! reconnecting at three quarters of its lifetime (messages the broker
//! sends in that moment may go to another replica or be missed). Until
//! the org has a JWT key (made when its first agent fetches MQTT
//! credentials) the connection waits and retries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};
use sea_orm::EntityTrait;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;
use weir_crds::message::{parse_topic, UplinkMessage};

use super::Alerts;
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::broker_identity::{self, Login};
use crate::fleet::entities::cluster;

/// Shared-subscription group of the alert engines.
pub const SHARE_GROUP: &str = "weir-alerts";

/// How often the clusters table is read again, in case a change was missed.
pub const REFRESH: Duration = Duration::from_secs(30);

pub fn subscription(prefix: &str, tenant: &str) -> String {
    format!(
        "$share/{SHARE_GROUP}/{}",
        weir_crds::acl::readings_filter(prefix, tenant)
    )
}

/// How the api logs in to a broker.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum BrokerAuth {
    /// The cluster's username and password (or the URL's userinfo).
    Password {
        username: Option<String>,
        password: Option<String>,
    },
    /// The api's own JWT for the tenant, signed with the org's JWT key,
    /// minted at every connect (see [`super::mqtt_auth`]).
    ApiJwt { org_id: Uuid, tenant: String },
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the password.
            BrokerAuth::Password { username, password } => f
                .debug_struct("Password")
                .field("username", username)
                .field("has_password", &password.is_some())
                .finish(),
            BrokerAuth::ApiJwt { org_id, tenant } => f
                .debug_struct("ApiJwt")
                .field("org_id", org_id)
                .field("tenant", tenant)
                .finish(),
        }
    }
}

/// One broker to read from (the connection's identity: a changed password
/// makes a new connection; a renewed JWT does not).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Broker {
    pub url: String,
    pub auth: BrokerAuth,
}

impl Broker {
    /// A broker read with a password (or none).
    pub fn password(url: &str, username: Option<String>, password: Option<String>) -> Self {
        Broker {
            url: url.to_string(),
            auth: BrokerAuth::Password { username, password },
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{}", redact(&self.url))?;
        if let BrokerAuth::ApiJwt { tenant, .. } = &self.auth {
            write!(f, " (api JWT for {tenant})")?;
        }
        Ok(())
    }
}

/// How ingest reaches a cluster of `tenant` (a pure choice, by the
/// cluster's auth mode): its first MQTT endpoint, with the api's own
/// dynamic-security login (`api_login`, an adopted Mosquitto with an admin
/// login; the admin login itself is never used to read), anonymously (an
/// open broker) or with the api's own JWT (`apiJwt`). `None`: no MQTT
/// endpoint yet, no api login yet, or an unknown auth mode.
pub fn cluster_broker(
    c: &cluster::Model,
    tenant: &str,
    api_login: Option<Login>,
) -> Option<Broker> {
    let url = crate::fleet::clusters::endpoints(c)
        .into_iter()
        .find(|u| crate::fleet::mqtt_probe::parse_broker_url(u).is_ok())?;
    let auth = match c.auth_mode.as_str() {
        crate::fleet::clusters::AUTH_PASSWORD if broker_identity::uses_dynsec(c) => {
            let l = api_login?;
            BrokerAuth::Password {
                username: Some(l.username),
                password: Some(l.password),
            }
        }
        crate::fleet::clusters::AUTH_PASSWORD => BrokerAuth::Password {
            username: None,
            password: None,
        },
        crate::fleet::clusters::AUTH_JWT => BrokerAuth::ApiJwt {
            org_id: c.org_id,
            tenant: tenant.to_string(),
        },
        _ => return None,
    };
    Some(Broker { url, auth })
}

/// Connection options for a broker (`mqtt://`, `mqtts://`, `tcp://`,
/// `ssl://`); credentials from the broker, else from the URL's userinfo.
/// For an apiJwt broker this has no credentials yet (see [`login_jwt`]);
/// its client id names the `replica`.
pub fn broker_options(b: &Broker, replica: &str) -> Option<MqttOptions> {
    let (host, port, tls) = crate::fleet::mqtt_probe::parse_broker_url(&b.url).ok()?;
    let u = url::Url::parse(&b.url).ok()?;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let id = match &b.auth {
        BrokerAuth::Password { .. } => format!("weir-alerts-{suffix}"),
        // Names the replica (its username is `weir-api-{replica}`).
        BrokerAuth::ApiJwt { .. } => format!(
            "{}-alerts-{}",
            super::mqtt_auth::username(replica),
            &suffix[..6]
        ),
    };
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if tls {
        crate::fleet::mqtt_probe::ensure_crypto_provider();
        o.set_transport(Transport::tls_with_default_config());
    }
    match &b.auth {
        BrokerAuth::Password {
            username: Some(user),
            password,
        } if !user.is_empty() => {
            o.set_credentials(user, password.as_deref().unwrap_or(""));
        }
        BrokerAuth::Password { .. } if !u.username().is_empty() => {
            o.set_credentials(u.username(), u.password().unwrap_or(""));
        }
        _ => {}
    }
    Some(o)
}

/// Put a fresh api JWT into `o`; returns when to renew it (three quarters
/// into its lifetime). `None`: the org has no JWT key yet.
async fn login_jwt(
    alerts: &Alerts,
    org_id: Uuid,
    tenant: &str,
    o: &mut MqttOptions,
) -> Result<Option<Instant>, ApiError> {
    let Some(t) = alerts.mint_mqtt_token(org_id, tenant).await? else {
        return Ok(None);
    };
    o.set_credentials(&t.username, &t.jwt);
    let left = (t.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    Ok(Some(Instant::now() + left.mul_f64(0.75)))
}

/// How long an apiJwt connection waits for its org's JWT key, or after a
/// failed mint, before trying again.
const JWT_RETRY: Duration = Duration::from_secs(5);

/// The brokers to read and the tenants to subscribe on each: every adopted
/// cluster of a tenant in `want`, and the override URL with all of `want`.
async fn desired(
    alerts: &Alerts,
    want: &BTreeSet<String>,
) -> Result<BTreeMap<Broker, BTreeSet<String>>, ApiError> {
    let mut out: BTreeMap<Broker, BTreeSet<String>> = BTreeMap::new();
    if let Some(url) = &alerts.inner.cfg.mqtt_url {
        if !want.is_empty() {
            out.insert(Broker::password(url, None, None), want.clone());
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
        let api_login = if broker_identity::uses_dynsec(&c) {
            match broker_identity::stored_api_login(db, &alerts.inner.fleet, &c).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(cluster = %c.slug, error = %e, "alerts: cannot open the api's broker login");
                    continue;
                }
            }
        } else {
            None
        };
        let Some(broker) = cluster_broker(&c, tenant, api_login) else {
            tracing::debug!(cluster = %c.slug, auth = %c.auth_mode, "alerts: no MQTT endpoint or api login to read with yet");
            continue;
        };
        // An adopted broker is read only where the outbound policy allows
        // (its health says why not); the platform's own clusters are exempt.
        if c.backend == crate::fleet::clusters::BACKEND_EXTERNAL {
            let outbound = &alerts.inner.outbound;
            if let Some(e) = crate::fleet::mqtt_probe::refused(outbound, &broker.url).await {
                tracing::debug!(cluster = %c.slug, error = %e, "alerts: not reading this broker");
                continue;
            }
        }
        out.entry(broker).or_default().insert(tenant.clone());
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
            let Some(opts) = broker_options(&b, alerts.replica_name()) else {
                tracing::error!(broker = ?b, "alerts: not an mqtt:// or mqtts:// URL; not reading it");
                continue;
            };
            let (tx, rx) = watch::channel(tenants);
            let jwt = match &b.auth {
                BrokerAuth::ApiJwt { org_id, tenant } => Some((*org_id, tenant.clone())),
                BrokerAuth::Password { .. } => None,
            };
            let h = tokio::spawn(run(alerts.clone(), opts, jwt, format!("{b:?}"), rx));
            alerts.track(h.abort_handle());
            conns.insert(b, (tx, h.abort_handle()));
        }
    }
}

/// One broker connection, until aborted: connect, subscribe to the
/// tenants in `tenants_rx`, forward, reconnect on errors. With `jwt`
/// (org, tenant) it logs in with a fresh api JWT and, before that one
/// expires, disconnects and connects again with a new one.
async fn run(
    alerts: Alerts,
    mut opts: MqttOptions,
    jwt: Option<(Uuid, String)>,
    label: String,
    mut tenants_rx: watch::Receiver<BTreeSet<String>>,
) {
    let prefix = alerts.topic_prefix().to_string();
    loop {
        let renew_at = match &jwt {
            None => None,
            Some((org_id, tenant)) => match login_jwt(&alerts, *org_id, tenant, &mut opts).await {
                Ok(Some(at)) => Some(at),
                Ok(None) => {
                    tracing::info!(broker = %label, "alerts: the org has no MQTT JWT key yet; waiting");
                    tokio::time::sleep(JWT_RETRY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(broker = %label, error = %e, "alerts: minting the api's MQTT JWT failed; retrying");
                    tokio::time::sleep(JWT_RETRY).await;
                    continue;
                }
            },
        };
        let renew = async move {
            match renew_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(renew);
        let (client, mut eventloop) = AsyncClient::new(opts.clone(), 1024);
        // Small acks and subscribes go out at once, not after a delayed ACK.
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
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
                _ = &mut renew => {
                    tracing::debug!(broker = %label, "alerts: reconnecting with a fresh MQTT JWT");
                    disconnect(&client, &mut eventloop).await;
                    break;
                }
            }
        }
    }
}

/// Say goodbye (DISCONNECT) if the connection is up, within 2 s.
async fn disconnect(client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    if eventloop.network.is_none() || client.try_disconnect().is_err() {
        return;
    }
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
        let b = Broker::password(
            "mqtts://broker.example:8884",
            Some("weir".into()),
            Some("s3cret".into()),
        );
        let o = broker_options(&b, "api-0").unwrap();
        assert_eq!(o.broker_address(), ("broker.example".to_string(), 8884));
        let login = |o: &MqttOptions| o.credentials().map(|l| (l.username, l.password));
        assert_eq!(login(&o), Some(("weir".to_string(), "s3cret".to_string())));
        assert!(!format!("{b:?}").contains("s3cret"));
        let url_login = |u: &str| broker_options(&Broker::password(u, None, None), "api-0");
        let o = url_login("mqtt://u:p@127.0.0.1").unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(login(&o), Some(("u".to_string(), "p".to_string())));
        assert!(url_login("http://x").is_none());
        assert_eq!(redact("mqtt://u:p@h:1"), "mqtt://u:***@h:1");
        assert_eq!(
            subscription("weir", "riverside"),
            "$share/weir-alerts/weir/riverside/+/+/+"
        );
    }

    fn cluster_row(auth_mode: &str) -> cluster::Model {
        let now = chrono::Utc::now();
        cluster::Model {
            id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            project_id: Uuid::new_v4(),
            slug: "main".into(),
            name: "main".into(),
            backend: crate::fleet::clusters::BACKEND_EXTERNAL.into(),
            auth_mode: auth_mode.into(),
            url: Some("mqtt://broker.example:1883".into()),
            username: Some("weir".into()),
            password_enc: Some("sealed".into()),
            spec: None,
            status: None,
            probe_at: None,
            probe_ok: None,
            probe_rtt_us: None,
            probe_error: None,
            probe_stats: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_adopted_mosquitto_is_read_with_the_apis_own_login_never_the_admins() {
        let c = cluster_row(crate::fleet::clusters::AUTH_PASSWORD);
        let api = Login {
            username: "weir-api.riverside.main".into(),
            password: "api-pw".into(),
        };
        let b = cluster_broker(&c, "riverside", Some(api)).unwrap();
        assert_eq!(
            b,
            Broker::password(
                "mqtt://broker.example:1883",
                Some("weir-api.riverside.main".into()),
                Some("api-pw".into())
            )
        );
        let login = broker_options(&b, "api-0")
            .unwrap()
            .credentials()
            .map(|l| (l.username, l.password));
        assert_eq!(
            login,
            Some(("weir-api.riverside.main".to_string(), "api-pw".to_string()))
        );
        // Until the api's login exists the cluster waits: no admin fallback.
        assert!(cluster_broker(&c, "riverside", None).is_none());
        // An open broker (no admin login) is read anonymously.
        let mut open = c.clone();
        open.username = None;
        open.password_enc = None;
        let b = cluster_broker(&open, "riverside", None).unwrap();
        assert!(broker_options(&b, "api-0").unwrap().credentials().is_none());
    }

    #[test]
    fn api_jwt_cluster_is_read_with_the_api_jwt() {
        // A Kubernetes-backed EMQX cluster: endpoints from its status; the
        // first MQTT one is used (not the websocket one).
        let mut c = cluster_row(crate::fleet::clusters::AUTH_JWT);
        c.backend = crate::fleet::clusters::BACKEND_KUBERNETES.into();
        c.url = None;
        c.username = None;
        c.password_enc = None;
        c.status = Some(
            serde_json::json!({
                "endpoints": ["ws://riverside-mqtt.weir-riverside.svc:8083/mqtt",
                              "mqtt://riverside-mqtt.weir-riverside.svc:1883"],
            })
            .to_string(),
        );
        let b = cluster_broker(&c, "riverside", None).unwrap();
        assert_eq!(b.url, "mqtt://riverside-mqtt.weir-riverside.svc:1883");
        assert_eq!(
            b.auth,
            BrokerAuth::ApiJwt {
                org_id: c.org_id,
                tenant: "riverside".into()
            }
        );
        // Credentials come from the minted token at connect; the client id names the replica.
        let o = broker_options(&b, "api-0").unwrap();
        assert!(o.credentials().is_none());
        assert!(o.client_id().starts_with("weir-api-api-0-alerts-"));
        // Even a stored password does not turn a JWT cluster into a password one.
        c.password_enc = Some("sealed".into());
        let b2 = cluster_broker(&c, "riverside", None).unwrap();
        assert_eq!(b2, b);
        // No endpoint yet, or an unknown mode: not read.
        c.status = None;
        assert!(cluster_broker(&c, "riverside", None).is_none());
        let mut d = cluster_row("kerberos");
        d.url = Some("mqtt://h:1883".into());
        assert!(cluster_broker(&d, "riverside", None).is_none());
    }
}
