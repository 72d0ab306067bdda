//! Alerts: rules over live readings and fleet health, evaluated on the
//! stream, with notifications that arrive once (Alertmanager's model:
//! for-duration, labels, grouping, silences, inhibition, receivers).
//!
//! - [`engine`]: pure evaluation (inactive → pending → firing → resolved).
//! - [`notify`]: grouping and timing of notices; webhook and email senders.
//! - [`ingest`]: the MQTT subscription (`$share/weir-alerts/{prefix}/{tenant}/#`);
//!   [`mqtt_auth`]: the api's own subscribe-only JWT for `apiJwt` clusters.
//! - [`store`]: tables and persistence; [`routes`]: the HTTP API.
//!
//! One worker task owns the engine and the notifier, so neither needs a
//! lock: readings, fleet events, reloads and delivery reports reach it
//! through channels. Fleet code reports gateway, device and cluster health
//! with [`Alerts::fleet_event`] (the heartbeat handler, the fleet monitor's
//! offline sweep, the cluster prober); on start and on every reload the
//! worker also reads the fleet tables, so a rule created while a gateway is
//! already offline still fires, and an alert restored after a restart
//! resolves if its gateway came back meanwhile. Channel secrets are sealed
//! under the master key ([`secrets`]).
//!
//! Several replicas on one PostgreSQL database split the tenants between
//! them and tell each other about fleet events and changes ([`replicas`]):
//! each tenant's rules run on exactly one replica.

pub mod engine;
pub mod ingest;
pub mod metrics;
pub mod mqtt_auth;
pub mod notify;
pub mod replicas;
pub mod routes;
pub mod rules;
pub mod secrets;
pub mod silences;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;
use weir_crds::message::{ErrorCode, UplinkMessage};

use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::crypto::MasterKey;
use crate::fleet::Fleet;
use engine::{AlertState, Engine, Reading, RuleDef, Transition};
use metrics::{AlertMetrics, ChannelLabels};
use notify::{AlertEntry, Attempts, Channel, ChannelKind, DeliveryResult, Notification, Notifier};
use replicas::{Coordinator, Signal};
use rules::{RuleKind, RuleSpec};
use silences::{ActiveSilence, Matcher, Mute};
use store::{alert_channel, alert_nflog, alert_rule, alert_silence, alert_state};

pub use routes::router;

/// Settings of the alerts runtime (flattened into the api's `Config`).
#[derive(clap::Args, Clone, Debug)]
pub struct AlertsConfig {
    /// An extra MQTT broker whose readings the alert rules evaluate, for
    /// every tenant with rules, e.g. `mqtt://127.0.0.1:1883`. The projects'
    /// adopted clusters are read in any case (see `alerts::ingest`).
    #[arg(long = "alerts-mqtt-url", env = "WEIR_ALERTS_MQTT_URL")]
    pub mqtt_url: Option<String>,

    /// First topic level of readings: `{prefix}/{tenant}/{gateway}/{device}/{group}`.
    #[arg(
        long = "alerts-topic-prefix",
        env = "WEIR_ALERTS_TOPIC_PREFIX",
        default_value = "weir"
    )]
    pub topic_prefix: String,

    /// How often pending alerts, absence rules and notification groups are checked, in ms.
    #[arg(
        long = "alerts-eval-interval-ms",
        env = "WEIR_ALERTS_EVAL_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub eval_interval_ms: u64,

    /// Attempts per notification (webhook: on 5xx, 429, timeouts; email: on transient errors).
    #[arg(
        long = "alerts-send-attempts",
        env = "WEIR_ALERTS_SEND_ATTEMPTS",
        default_value_t = 5
    )]
    pub send_attempts: u32,

    /// First retry delay in ms; doubles per attempt.
    #[arg(
        long = "alerts-retry-base-ms",
        env = "WEIR_ALERTS_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,

    /// Timeout of one send attempt, in ms.
    #[arg(
        long = "alerts-send-timeout-ms",
        env = "WEIR_ALERTS_SEND_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub send_timeout_ms: u64,

    /// How often the api checks every cluster's health (MQTT round trip for
    /// adopted brokers, status for Kubernetes ones), in ms; cluster-degraded
    /// rules evaluate the result. 0: only on demand (`.../probe`).
    #[arg(
        long = "cluster-probe-interval-ms",
        env = "WEIR_CLUSTER_PROBE_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub cluster_probe_interval_ms: u64,

    /// Lifetime of the api's own MQTT JWT for `apiJwt` clusters, in
    /// seconds (4 s up to `WEIR_MQTT_JWT_TTL_SECS`); it reconnects with a
    /// fresh one before expiry.
    #[arg(
        long = "alerts-mqtt-jwt-ttl-secs",
        env = "WEIR_ALERTS_MQTT_JWT_TTL_SECS",
        default_value_t = 900
    )]
    pub api_mqtt_jwt_ttl_secs: i64,

    /// This replica's name in its MQTT username and client id
    /// (`weir-api-{replica}`); default `HOSTNAME` (the pod name in
    /// Kubernetes), else a random name for the process.
    #[arg(long = "replica", env = "WEIR_API_REPLICA")]
    pub replica: Option<String>,

    /// How often replicas on one PostgreSQL database re-divide the tenants
    /// whose rules they evaluate, in ms (a replica that died is replaced
    /// within about this long once PostgreSQL has noticed).
    #[arg(
        long = "alerts-rebalance-interval-ms",
        env = "WEIR_ALERTS_REBALANCE_INTERVAL_MS",
        default_value_t = 2000
    )]
    pub rebalance_interval_ms: u64,

    /// The time the rules see; tests swap in a manual clock.
    #[arg(skip)]
    pub clock: Clock,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            mqtt_url: None,
            topic_prefix: "weir".into(),
            eval_interval_ms: 1000,
            send_attempts: 5,
            retry_base_ms: 1000,
            send_timeout_ms: 10_000,
            cluster_probe_interval_ms: 30_000,
            api_mqtt_jwt_ttl_secs: 900,
            replica: None,
            rebalance_interval_ms: 2000,
            clock: Clock::default(),
        }
    }
}

/// Milliseconds since the epoch: the system clock, or a manual one that
/// only moves when told (tests drive for-durations and group timers with it).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    pub fn manual(start_ms: i64) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start_ms))))
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Move a manual clock forward (no effect on the system clock).
    pub fn advance(&self, d: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        }
    }
}

/// Fleet health, sent by the fleet code into [`Alerts::fleet_event`]. Each
/// names the project the gateway or cluster belongs to: only that project's
/// rules see it. Observations, not decisions: the engine alone turns them
/// into pending, firing and resolved (repeating a state changes nothing).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetEvent {
    GatewayOnline {
        project: Uuid,
        gateway: String,
    },
    GatewayOffline {
        project: Uuid,
        gateway: String,
    },
    /// A heartbeat's device report: `(device, up)`; up unless the agent says `down`.
    Devices {
        project: Uuid,
        gateway: String,
        devices: Vec<(String, bool)>,
    },
    ClusterHealthy {
        project: Uuid,
        cluster: String,
    },
    ClusterDegraded {
        project: Uuid,
        cluster: String,
    },
}

enum Input {
    Uplink {
        tenant: String,
        gateway: String,
        device: String,
        msg: UplinkMessage,
    },
    Reload,
    Delivered {
        n: Box<Notification>,
        ok: bool,
        saved: oneshot::Sender<()>,
    },
    Sync(oneshot::Sender<()>),
}

/// Handle to the alerts runtime (cheap to clone; lives in `AppState`).
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    /// This process, in signals to the other replicas.
    id: Uuid,
    /// This replica's name in its MQTT username and client id.
    replica: String,
    db: DatabaseConnection,
    cfg: AlertsConfig,
    /// The master key (channel secrets) and the fleet's clusters (ingestion).
    fleet: Arc<Fleet>,
    /// Gateways the fleet reports offline, as (project, gateway): their
    /// device alerts are inhibited.
    offline: Mutex<HashSet<(Uuid, String)>>,
    /// Wakes the ingestion supervisor (clusters were created, changed or deleted).
    clusters_changed: tokio::sync::Notify,
    tx: mpsc::Sender<Input>,
    fleet_tx: mpsc::Sender<FleetEvent>,
    metrics: AlertMetrics,
    http: reqwest::Client,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Evaluation passes done (ticks), for tests that wait for "time has been looked at".
    passes: AtomicU64,
    /// Inputs (messages, events) processed.
    processed: AtomicU64,
    tenants: watch::Sender<BTreeSet<String>>,
}

impl Alerts {
    /// Load rules, states, channels, silences and the notification log,
    /// and start the worker (and the MQTT ingestion when configured).
    pub async fn start(
        db: DatabaseConnection,
        cfg: AlertsConfig,
        metrics: AlertMetrics,
        fleet: Arc<Fleet>,
    ) -> Result<Self, ApiError> {
        match fleet.master() {
            Ok(key) => match secrets::seal_legacy(&db, key).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(channels = n, "alerts: sealed plain-text channel secrets"),
                Err(e) => tracing::warn!(error = %e, "alerts: sealing older channel secrets failed"),
            },
            Err(_) => tracing::warn!(
                "alerts: no master key; channels with secrets cannot be created until one is configured"
            ),
        }
        let (tx, rx) = mpsc::channel(4096);
        let (fleet_tx, fleet_rx) = mpsc::channel(1024);
        let (tenants, _) = watch::channel(BTreeSet::new());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ApiError::internal)?;
        let coord = Coordinator::new(&db);
        let inner = Arc::new(Inner {
            id: Uuid::new_v4(),
            replica: mqtt_auth::pick_replica_name(cfg.replica.as_deref()),
            db,
            cfg,
            fleet,
            offline: Mutex::new(HashSet::new()),
            clusters_changed: tokio::sync::Notify::new(),
            tx,
            fleet_tx,
            metrics,
            http,
            tasks: Mutex::new(vec![]),
            passes: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            tenants,
        });
        let alerts = Alerts {
            inner: inner.clone(),
        };
        let mut w = Worker {
            inner: inner.clone(),
            engine: Engine::new(),
            notifier: Notifier::default(),
            silences: vec![],
            kinds: HashMap::new(),
            out: Vec::new(),
            last_evaluations: 0,
            coord,
            defs: vec![],
            owned: BTreeSet::new(),
            in_flight: HashMap::new(),
        };
        w.load().await?;
        let h = tokio::spawn(w.run(rx, fleet_rx));
        alerts.track(h.abort_handle());
        let h = tokio::spawn(ingest::supervise(alerts.clone()));
        alerts.track(h.abort_handle());
        let h = tokio::spawn(replicas::listen(alerts.clone()));
        alerts.track(h.abort_handle());
        Ok(alerts)
    }

    fn track(&self, h: AbortHandle) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// Stop the worker, ingestion and deliveries in flight (an api shutting down).
    pub fn shutdown(&self) {
        for h in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }

    /// This replica's name in its MQTT username and client id (`weir-api-{name}`).
    pub fn replica_name(&self) -> &str {
        &self.inner.replica
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.cfg.clock
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.cfg.clock.now_ms()
    }

    /// Report fleet health (waits only if the worker is far behind); the
    /// other replicas hear of it too.
    pub async fn fleet_event(&self, ev: FleetEvent) {
        self.fleet_event_local(ev.clone()).await;
        self.announce(Signal::Fleet { event: ev }).await;
    }

    async fn fleet_event_local(&self, ev: FleetEvent) {
        let _ = self.inner.fleet_tx.send(ev).await;
    }

    async fn announce(&self, signal: Signal) {
        replicas::announce(&self.inner.db, self.inner.id, signal).await;
    }

    /// The fleet reported this gateway of the project offline (and not back since).
    pub fn gateway_offline(&self, project: Uuid, gateway: &str) -> bool {
        self.inner
            .offline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(project, gateway.to_string()))
    }

    /// Clusters were created, changed or deleted: the ingestion (here and
    /// on the other replicas) reads them again.
    pub async fn clusters_changed(&self) {
        self.clusters_changed_local();
        self.announce(Signal::Clusters).await;
    }

    fn clusters_changed_local(&self) {
        self.inner.clusters_changed.notify_one();
    }

    /// The master key, when one is configured.
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.inner.fleet.master().ok()
    }

    /// Rules, channels or silences changed: the worker (here and on the
    /// other replicas) re-reads them.
    pub async fn reload(&self) {
        self.reload_local().await;
        self.announce(Signal::Reload).await;
    }

    async fn reload_local(&self) {
        let _ = self.inner.tx.send(Input::Reload).await;
    }

    /// Tenants whose rules this replica evaluates now (all of them on SQLite).
    pub fn owned_tenants(&self) -> BTreeSet<String> {
        self.inner.tenants.borrow().clone()
    }

    /// Feed one uplink message (what the MQTT ingestion does per publish).
    pub async fn ingest(&self, tenant: &str, gateway: &str, device: &str, msg: UplinkMessage) {
        let _ = self
            .inner
            .tx
            .send(Input::Uplink {
                tenant: tenant.into(),
                gateway: gateway.into(),
                device: device.into(),
                msg,
            })
            .await;
    }

    /// Wait until the worker processed everything sent before this call.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Input::Sync(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Evaluation passes done so far (each looks at the clock once).
    pub fn passes(&self) -> u64 {
        self.inner.passes.load(Ordering::SeqCst)
    }

    /// Wait for `n` more evaluation passes: everything due by the clock's
    /// current time has been evaluated and sent off.
    pub async fn wait_passes(&self, n: u64) {
        let target = self.passes() + n;
        while self.passes() < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Readings messages and fleet events processed so far.
    pub fn processed(&self) -> u64 {
        self.inner.processed.load(Ordering::SeqCst)
    }

    pub fn metrics(&self) -> &AlertMetrics {
        &self.inner.metrics
    }

    fn attempts(&self) -> Attempts {
        Attempts {
            max_attempts: self.inner.cfg.send_attempts.max(1),
            base: Duration::from_millis(self.inner.cfg.retry_base_ms),
            timeout: Duration::from_millis(self.inner.cfg.send_timeout_ms.max(1)),
        }
    }

    /// Send a notice now (with retries) and count it.
    pub async fn send_now(&self, n: &Notification, attempts: &Attempts) -> DeliveryResult {
        let res = match &n.channel.kind {
            ChannelKind::Webhook { url, secret } => {
                notify::webhook::send(&self.inner.http, url, secret, n.webhook_body(), attempts)
                    .await
            }
            ChannelKind::Email { cfg, password } => {
                notify::email::send(cfg, password, &n.email_subject(), n.email_body(), attempts)
                    .await
            }
        };
        let labels = ChannelLabels {
            kind: match n.channel.kind {
                ChannelKind::Webhook { .. } => "webhook".into(),
                ChannelKind::Email { .. } => "email".into(),
            },
        };
        if res.ok {
            self.inner
                .metrics
                .notifications_sent
                .get_or_create(&labels)
                .inc();
        } else {
            self.inner
                .metrics
                .notifications_failed
                .get_or_create(&labels)
                .inc();
            tracing::warn!(channel = %n.channel.id, attempts = res.attempts, error = %res.error, "notification failed");
        }
        res
    }

    async fn log_delivery(
        &self,
        n: &Notification,
        kind: &str,
        res: &DeliveryResult,
    ) -> Result<(), ApiError> {
        use sea_orm::ActiveModelTrait;
        use sea_orm::ActiveValue::Set;
        store::alert_delivery::ActiveModel {
            id: Set(Uuid::new_v4()),
            channel_id: Set(n.channel.id),
            project_id: Set(n.channel.project_id),
            at: Set(chrono::Utc::now()),
            kind: Set(kind.into()),
            group_key: Set(n.group_key.clone()),
            alerts: Set((n.firing.len() + n.resolved.len()) as i32),
            attempts: Set(res.attempts as i32),
            ok: Set(res.ok),
            http_status: Set(res.http_status),
            error: Set(res.error.clone()),
        }
        .insert(&self.inner.db)
        .await?;
        Ok(())
    }

    /// A synthetic notice through one channel ("send test").
    pub async fn send_test(&self, channel: Channel) -> Result<DeliveryResult, ApiError> {
        let now = self.now_ms();
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), "Test notification".to_string());
        labels.insert("severity".to_string(), "info".to_string());
        let n = Notification {
            channel: Arc::new(channel),
            group_key: "test".into(),
            group_labels: BTreeMap::new(),
            firing: vec![AlertEntry {
                fingerprint: "test".into(),
                rule_id: Uuid::nil(),
                project_id: Uuid::nil(),
                kind: RuleKind::Threshold,
                series: String::new(),
                state: AlertState::Firing,
                labels,
                summary: "Test notification from Weir: this channel works.".into(),
                starts_ms: now,
                ends_ms: None,
                value: None,
                channels: vec![],
            }],
            resolved: vec![],
            at_ms: now,
        };
        // Someone is waiting for the answer: one attempt, no back-off.
        let once = Attempts {
            max_attempts: 1,
            ..self.attempts()
        };
        let res = self.send_now(&n, &once).await;
        self.log_delivery(&n, "test", &res).await?;
        Ok(res)
    }

    fn set_tenants(&self, t: BTreeSet<String>) {
        self.inner.tenants.send_if_modified(|cur| {
            if *cur != t {
                *cur = t;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn tenants(&self) -> watch::Receiver<BTreeSet<String>> {
        self.inner.tenants.subscribe()
    }

    pub(crate) fn topic_prefix(&self) -> &str {
        &self.inner.cfg.topic_prefix
    }
}

/// A stored channel as the notifier uses it (its secret opened with the
/// master key; `None` when the row is unreadable).
pub fn channel_from_row(m: &alert_channel::Model, key: Option<&MasterKey>) -> Option<Channel> {
    let secret = match secrets::open(key, m.id, &m.secret) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(channel = %m.id, error = %e, "alerts: cannot open the channel's secret");
            return None;
        }
    };
    let kind = match m.kind.as_str() {
        "webhook" => {
            let v: serde_json::Value = serde_json::from_str(&m.config).ok()?;
            ChannelKind::Webhook {
                url: v.get("url")?.as_str()?.to_string(),
                secret,
            }
        }
        "email" => ChannelKind::Email {
            cfg: serde_json::from_str(&m.config).ok()?,
            password: secret,
        },
        _ => return None,
    };
    Some(Channel {
        id: m.id,
        project_id: m.project_id,
        name: m.name.clone(),
        kind,
        group_by: serde_json::from_str(&m.group_by).unwrap_or_default(),
        group_wait_ms: m.group_wait_secs.saturating_mul(1000),
        group_interval_ms: m.group_interval_secs.saturating_mul(1000),
        repeat_interval_ms: m.repeat_interval_secs.saturating_mul(1000),
    })
}

pub fn silence_from_row(m: &alert_silence::Model) -> ActiveSilence {
    let matchers: Vec<Matcher> = serde_json::from_str(&m.matchers).unwrap_or_default();
    ActiveSilence::new(
        m.id,
        m.project_id,
        &matchers,
        m.starts_at.timestamp_millis(),
        m.ends_at.timestamp_millis(),
    )
}

/// Rule rows with their tenant (organization slug).
pub async fn load_rule_defs(db: &DatabaseConnection) -> Result<Vec<RuleDef>, ApiError> {
    let orgs: HashMap<Uuid, String> = org::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.slug))
        .collect();
    let rows = alert_rule::Entity::find().all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let spec: RuleSpec = serde_json::from_str(&r.spec).ok()?;
            Some(RuleDef {
                id: r.id,
                project_id: r.project_id,
                tenant: orgs.get(&r.org_id)?.clone(),
                spec,
            })
        })
        .collect())
}

/// Why each alert is muted now: silences first, then inhibition of device
/// alerts while their gateway is offline: the fleet reports it offline
/// (`gateway_offline(project, gateway)`), or a gateway-offline alert of the
/// same project fires for it.
pub fn mute_fn<'a>(
    now_ms: i64,
    silences: &'a [ActiveSilence],
    alerts: impl Iterator<Item = (Uuid, RuleKind, AlertState, &'a BTreeMap<String, String>)>,
    gateway_offline: impl Fn(Uuid, &str) -> bool + 'a,
) -> impl Fn(Uuid, RuleKind, &BTreeMap<String, String>) -> Mute + 'a {
    let offline: HashSet<(Uuid, String)> = alerts
        .filter(|(_, k, s, _)| *k == RuleKind::GatewayOffline && *s == AlertState::Firing)
        .filter_map(|(p, _, _, l)| Some((p, l.get("gateway")?.clone())))
        .collect();
    move |project, kind, labels| {
        if silences
            .iter()
            .any(|s| s.active_at(now_ms) && s.matches(project, labels))
        {
            Mute::Silenced
        } else if kind.is_device_level()
            && labels.get("gateway").is_some_and(|g| {
                offline.contains(&(project, g.clone())) || gateway_offline(project, g)
            })
        {
            Mute::Inhibited
        } else {
            Mute::None
        }
    }
}

struct Worker {
    inner: Arc<Inner>,
    engine: Engine,
    notifier: Notifier,
    silences: Vec<ActiveSilence>,
    kinds: HashMap<Uuid, RuleKind>,
    out: Vec<Transition>,
    last_evaluations: u64,
    /// Which tenants this replica evaluates.
    coord: Coordinator,
    /// Every rule, of every tenant (as last read).
    defs: Vec<RuleDef>,
    /// Tenants whose rules run here.
    owned: BTreeSet<String>,
    /// Notices being sent, by project.
    in_flight: HashMap<Uuid, usize>,
}

impl Worker {
    fn alerts(&self) -> Alerts {
        Alerts {
            inner: self.inner.clone(),
        }
    }

    /// Read rules, channels and silences, settle which tenants this replica
    /// evaluates, and observe the fleet as its tables say.
    async fn load(&mut self) -> Result<(), ApiError> {
        let db = &self.inner.db;
        self.defs = load_rule_defs(db).await?;
        let chans = alert_channel::Entity::find().all(db).await?;
        let key = self.inner.fleet.master().ok();
        self.notifier.set_channels(
            chans
                .iter()
                .filter_map(|m| channel_from_row(m, key))
                .collect(),
        );
        self.silences = alert_silence::Entity::find()
            .all(db)
            .await?
            .iter()
            .map(silence_from_row)
            .collect();
        let owned = self.assign().await;
        self.take(owned).await?;
        self.fleet_snapshot().await
    }

    fn tenants_with_rules(&self) -> BTreeSet<String> {
        self.defs.iter().map(|d| d.tenant.clone()).collect()
    }

    /// An ownership pass (see [`replicas::Coordinator::assign`]).
    async fn assign(&mut self) -> BTreeSet<String> {
        let busy: HashSet<&str> = self
            .defs
            .iter()
            .filter(|d| self.in_flight.get(&d.project_id).is_some_and(|n| *n > 0))
            .map(|d| d.tenant.as_str())
            .collect();
        let tenants = self.tenants_with_rules();
        self.coord.assign(&tenants, |t| busy.contains(t)).await
    }

    /// Another ownership pass (replicas came or went); takes what changed.
    async fn rebalance(&mut self) {
        if self.coord.is_single() {
            return;
        }
        let owned = self.assign().await;
        self.inner.metrics.replicas.set(self.coord.replicas());
        if owned != self.owned {
            tracing::info!(tenants = ?owned, replicas = self.coord.replicas(), "alerts: this replica's tenants changed");
            if let Err(e) = self.take(owned).await {
                tracing::error!(error = %e, "alerts: taking over tenants failed");
            }
        }
    }

    /// Run the rules of `owned` from now on. Tenants handed to another
    /// replica are dropped without resolving anything (their alerts go on
    /// there); tenants taken over get their persisted states and their
    /// channels' notification log back, so nothing fires or notifies twice.
    async fn take(&mut self, owned: BTreeSet<String>) -> Result<(), ApiError> {
        let db = &self.inner.db;
        let now = self.inner.cfg.clock.now_ms();
        let all = self.tenants_with_rules();
        let handed: BTreeSet<&String> = self
            .owned
            .difference(&owned)
            .filter(|t| all.contains(*t))
            .collect();
        let gained: BTreeSet<&String> = owned.difference(&self.owned).collect();
        let projects_of = |ts: &BTreeSet<&String>| -> HashSet<Uuid> {
            self.defs
                .iter()
                .filter(|d| ts.contains(&d.tenant))
                .map(|d| d.project_id)
                .collect()
        };
        if !handed.is_empty() {
            self.engine.hand_over(now, |d| handed.contains(&d.tenant));
            self.notifier.forget_projects(&projects_of(&handed));
        }
        let gained_projects = projects_of(&gained);
        let gained_rules: HashSet<Uuid> = self
            .defs
            .iter()
            .filter(|d| gained.contains(&d.tenant))
            .map(|d| d.id)
            .collect();
        self.kinds = self.defs.iter().map(|d| (d.id, d.spec.kind)).collect();
        let channels_of: HashMap<Uuid, Vec<Uuid>> = self
            .defs
            .iter()
            .map(|d| (d.id, d.spec.channels.clone()))
            .collect();
        let tenants: BTreeSet<String> = self
            .defs
            .iter()
            .filter(|d| d.spec.enabled && owned.contains(&d.tenant))
            .map(|d| d.tenant.clone())
            .collect();
        let mine: Vec<RuleDef> = self
            .defs
            .iter()
            .filter(|d| owned.contains(&d.tenant))
            .cloned()
            .collect();
        self.engine.set_rules(mine, now, &mut self.out);
        if !gained_rules.is_empty() {
            for s in alert_state::Entity::find().all(db).await? {
                if !gained_rules.contains(&s.rule_id) {
                    continue;
                }
                let Some(state) = AlertState::parse(&s.state) else {
                    continue;
                };
                let Some(kind) = self.kinds.get(&s.rule_id).copied() else {
                    continue;
                };
                let since = s.since.timestamp_millis();
                self.engine
                    .restore(s.rule_id, &s.series, state, since, s.value, now);
                if matches!(state, AlertState::Firing | AlertState::Resolved) {
                    self.notifier.restore_alert(AlertEntry {
                        fingerprint: engine::fingerprint(s.rule_id, &s.series),
                        rule_id: s.rule_id,
                        project_id: s.project_id,
                        kind,
                        series: s.series.clone(),
                        state,
                        labels: serde_json::from_str(&s.labels).unwrap_or_default(),
                        summary: s.summary.clone(),
                        starts_ms: since,
                        ends_ms: (state == AlertState::Resolved)
                            .then(|| s.updated_at.timestamp_millis()),
                        value: s.value,
                        channels: channels_of.get(&s.rule_id).cloned().unwrap_or_default(),
                    });
                }
            }
            for g in alert_nflog::Entity::find().all(db).await? {
                let mine = self
                    .notifier
                    .channel(g.channel_id)
                    .is_some_and(|c| gained_projects.contains(&c.project_id));
                if !mine {
                    continue;
                }
                let sent: Vec<String> = serde_json::from_str(&g.sent).unwrap_or_default();
                self.notifier.restore_group(
                    g.channel_id,
                    g.group_key,
                    g.last_sent_at.timestamp_millis(),
                    sent,
                );
            }
        }
        self.inner.metrics.owned_tenants.set(owned.len() as i64);
        self.inner
            .metrics
            .rules
            .set(self.engine.rule_count() as i64);
        self.inner.metrics.replicas.set(self.coord.replicas());
        self.owned = owned;
        self.alerts().set_tenants(tenants);
        Ok(())
    }

    /// Observe the fleet as its tables say now (gateways online or offline,
    /// the devices of their last heartbeat, cluster health). Live events sent
    /// after a table change are processed after this, so they win.
    async fn fleet_snapshot(&mut self) -> Result<(), ApiError> {
        use crate::fleet::entities::{cluster, gateway};
        let db = &self.inner.db;
        let mut evs = vec![];
        for g in gateway::Entity::find().all(db).await? {
            let (project, gw) = (g.project_id, g.slug.clone());
            match g.online {
                Some(true) => evs.push(FleetEvent::GatewayOnline {
                    project,
                    gateway: gw.clone(),
                }),
                Some(false) => evs.push(FleetEvent::GatewayOffline {
                    project,
                    gateway: gw.clone(),
                }),
                None => {}
            }
            evs.extend(replicas::device_event(&g));
        }
        // The tables are the truth now: forget gateways that were deleted meanwhile.
        self.inner
            .offline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for c in cluster::Entity::find().all(db).await? {
            match c.probe_ok {
                Some(true) => evs.push(FleetEvent::ClusterHealthy {
                    project: c.project_id,
                    cluster: c.slug,
                }),
                Some(false) => evs.push(FleetEvent::ClusterDegraded {
                    project: c.project_id,
                    cluster: c.slug,
                }),
                None => {}
            }
        }
        for ev in evs {
            self.fleet(ev);
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut fleet_rx: mpsc::Receiver<FleetEvent>,
    ) {
        let every = Duration::from_millis(self.inner.cfg.eval_interval_ms.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = Duration::from_millis(self.inner.cfg.rebalance_interval_ms.max(10));
        let mut rebalance = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        rebalance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut acks = vec![];
            tokio::select! {
                Some(inp) = rx.recv() => {
                    self.handle(inp, &mut acks).await;
                    // Take what else is queued in one go, then write and notify once.
                    let mut n = 0;
                    while n < 256 {
                        let Ok(inp) = rx.try_recv() else { break };
                        self.handle(inp, &mut acks).await;
                        n += 1;
                    }
                }
                Some(ev) = fleet_rx.recv() => self.fleet(ev),
                _ = rebalance.tick() => self.rebalance().await,
                _ = tick.tick() => {
                    let now = self.inner.cfg.clock.now_ms();
                    self.engine.tick(now, &mut self.out);
                    self.after().await;
                    self.inner.passes.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            }
            self.after().await;
            for a in acks {
                let _ = a.send(());
            }
        }
    }

    fn fleet(&mut self, ev: FleetEvent) {
        let now = self.inner.cfg.clock.now_ms();
        self.inner.processed.fetch_add(1, Ordering::Relaxed);
        let out = &mut self.out;
        match ev {
            FleetEvent::GatewayOnline { project, gateway } => {
                self.engine
                    .observe_gateway(now, project, &gateway, true, out);
                self.set_offline(project, gateway, false);
            }
            FleetEvent::GatewayOffline { project, gateway } => {
                self.engine
                    .observe_gateway(now, project, &gateway, false, out);
                self.set_offline(project, gateway, true);
            }
            FleetEvent::Devices {
                project,
                gateway,
                devices,
            } => {
                for (device, up) in devices {
                    self.engine
                        .observe_device(now, project, &gateway, &device, up, out);
                }
            }
            FleetEvent::ClusterHealthy { project, cluster } => self
                .engine
                .observe_cluster(now, project, &cluster, true, out),
            FleetEvent::ClusterDegraded { project, cluster } => self
                .engine
                .observe_cluster(now, project, &cluster, false, out),
        }
    }

    /// Track offline gateways (inhibition here and in the routes).
    fn set_offline(&mut self, project: Uuid, gateway: String, offline: bool) {
        let mut set = self.inner.offline.lock().unwrap_or_else(|e| e.into_inner());
        if offline {
            set.insert((project, gateway));
        } else {
            set.remove(&(project, gateway));
        }
    }

    async fn handle(&mut self, inp: Input, acks: &mut Vec<oneshot::Sender<()>>) {
        match inp {
            Input::Uplink {
                tenant,
                gateway,
                device,
                msg,
            } => {
                self.inner.processed.fetch_add(1, Ordering::Relaxed);
                let now = self.inner.cfg.clock.now_ms();
                for f in &msg.frames {
                    self.inner
                        .metrics
                        .evaluation_lag
                        .observe(((now - f.timestamp).max(0) as f64) / 1000.0);
                    for (tag, v) in &f.values {
                        let Some(value) = v.as_f64() else { continue };
                        let r = Reading {
                            tenant: &tenant,
                            gateway: &gateway,
                            device: &device,
                            tag,
                            value,
                            ts_ms: f.timestamp,
                        };
                        self.engine.observe(now, &r, &mut self.out);
                    }
                    let down = f.values.is_empty()
                        && f.errors.values().any(|c| {
                            *c == ErrorCode::Timeout as i32 || *c == ErrorCode::Disconnected as i32
                        });
                    if !f.values.is_empty() || down {
                        self.engine.observe_device(
                            now,
                            tenant.as_str(),
                            &gateway,
                            &device,
                            !down,
                            &mut self.out,
                        );
                    }
                }
            }
            Input::Reload => {
                if let Err(e) = self.load().await {
                    tracing::error!(error = %e, "alerts: reload failed");
                }
            }
            Input::Delivered { n, ok, saved } => {
                let now = self.inner.cfg.clock.now_ms();
                let handed_over = !self.notifier.knows_group(n.channel.id, &n.group_key)
                    && self.notifier.channel(n.channel.id).is_some();
                let sent = if handed_over {
                    // Its tenant went to another replica meanwhile (which
                    // waits for this): log what the notice announced.
                    ok.then(|| n.firing_fingerprints())
                } else {
                    self.notifier.delivered(&n, ok, now)
                };
                if let Some(c) = self.in_flight.get_mut(&n.channel.project_id) {
                    *c = c.saturating_sub(1);
                }
                if let Some(sent) = sent {
                    if let Err(e) = store::save_nflog(
                        &self.inner.db,
                        n.channel.id,
                        &n.group_key,
                        n.at_ms,
                        &sent,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "alerts: saving the notification log failed");
                    }
                }
                let _ = saved.send(());
            }
            Input::Sync(a) => acks.push(a),
        }
    }

    /// Persist transitions, update the notifier, send what is due.
    async fn after(&mut self) {
        let evals = self.engine.evaluations;
        self.inner
            .metrics
            .rules_evaluated
            .inc_by(evals - self.last_evaluations);
        self.last_evaluations = evals;
        let ts = std::mem::take(&mut self.out);
        if !ts.is_empty() {
            if let Err(e) = store::record(&self.inner.db, &ts).await {
                tracing::error!(error = %e, "alerts: persisting transitions failed");
            }
            for t in &ts {
                self.notifier.apply(t);
            }
        }
        let now = self.inner.cfg.clock.now_ms();
        let kinds = &self.kinds;
        let snapshot: Vec<(Uuid, RuleKind, AlertState, BTreeMap<String, String>)> = self
            .notifier
            .alerts()
            .map(|a| (a.project_id, a.kind, a.state, a.labels.clone()))
            .collect();
        let (due, forgotten) = {
            let offline = self.inner.offline.lock().unwrap_or_else(|e| e.into_inner());
            let mute = mute_fn(
                now,
                &self.silences,
                snapshot.iter().map(|(p, k, s, l)| (*p, *k, *s, l)),
                |p, g| offline.contains(&(p, g.to_string())),
            );
            self.notifier.flush(now, |a| {
                mute(
                    a.project_id,
                    kinds.get(&a.rule_id).copied().unwrap_or(a.kind),
                    &a.labels,
                )
            })
        };
        for a in forgotten {
            if let Err(e) = store::forget_resolved(&self.inner.db, a.rule_id, &a.series).await {
                tracing::error!(error = %e, "alerts: cleaning resolved state failed");
            }
        }
        self.inner.metrics.firing.set(
            self.notifier
                .alerts()
                .filter(|a| a.state == AlertState::Firing)
                .count() as i64,
        );
        for n in due {
            *self.in_flight.entry(n.channel.project_id).or_default() += 1;
            let alerts = self.alerts();
            let h = tokio::spawn(async move {
                let kind = n.status();
                let res = alerts.send_now(&n, &alerts.attempts()).await;
                // The log is saved before the delivery row is written, so a
                // delivery that is visible is also remembered across restarts.
                let (saved_tx, saved_rx) = oneshot::channel();
                let n = Box::new(n);
                let copy = n.clone();
                if alerts
                    .inner
                    .tx
                    .send(Input::Delivered {
                        n,
                        ok: res.ok,
                        saved: saved_tx,
                    })
                    .await
                    .is_ok()
                {
                    let _ = saved_rx.await;
                }
                if let Err(e) = alerts.log_delivery(&copy, kind, &res).await {
                    tracing::error!(error = %e, "alerts: writing the delivery log failed");
                }
            });
            self.alerts().track(h.abort_handle());
        }
    }
}
