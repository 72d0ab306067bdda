//! [`Alerts`], the handle to the alerts runtime that lives in `AppState`:
//! it starts the worker and the ingestion, feeds them (readings, fleet
//! events, reloads) through channels, sends notices, and tells the other
//! replicas what changed. The worker itself is in [`super::worker`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;
use weir_crds::message::UplinkMessage;

use super::engine::AlertState;
use super::metrics::{AlertMetrics, ChannelLabels};
use super::notify::{
    self, AlertEntry, Attempts, Channel, ChannelKind, DeliveryResult, Notification,
};
use super::replicas::{self, Coordinator, Signal};
use super::rules::RuleKind;
use super::worker::Worker;
use super::{ingest, mqtt_auth, store, AlertsConfig, Clock};
use crate::error::ApiError;
use crate::fleet::Fleet;
use crate::fleet_events::FleetEvent;
use crate::secrets::MasterKey;

pub(super) enum Input {
    Uplink {
        tenant: String,
        gateway: String,
        device: String,
        msg: UplinkMessage,
    },
    Reload,
    /// An alert was acknowledged or shelved: read the acknowledgements again.
    Acks,
    /// Gateways were created, changed or deleted: read their projects again.
    Gateways,
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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// This process, in signals to the other replicas.
    pub(super) id: Uuid,
    /// This replica's name in its MQTT username and client id.
    pub(super) replica: String,
    pub(super) db: DatabaseConnection,
    pub(super) cfg: AlertsConfig,
    /// The master key (channel secrets) and the fleet's clusters (ingestion).
    pub(super) fleet: Arc<Fleet>,
    /// Gateways the fleet reports offline, as (project, gateway): their
    /// device alerts are inhibited.
    pub(super) offline: Mutex<HashSet<(Uuid, String)>>,
    /// Wakes the ingestion supervisor (clusters were created, changed or deleted).
    pub(super) clusters_changed: tokio::sync::Notify,
    pub(super) tx: mpsc::Sender<Input>,
    pub(super) fleet_tx: mpsc::Sender<FleetEvent>,
    pub(super) metrics: AlertMetrics,
    /// Webhooks go through this client, which connects only where
    /// `outbound` allows.
    pub(super) http: reqwest::Client,
    pub(super) outbound: crate::outbound::Policy,
    pub(super) tasks: Mutex<Vec<AbortHandle>>,
    /// Evaluation passes done (ticks), for tests that wait for "time has been looked at".
    pub(super) passes: AtomicU64,
    /// Inputs (messages, events) processed.
    pub(super) processed: AtomicU64,
    pub(super) tenants: watch::Sender<BTreeSet<String>>,
    /// The worker's tag formats, for the routes ([`Alerts::value_text`]).
    pub(super) formats: std::sync::RwLock<Arc<super::formats::TagFormats>>,
}

impl Alerts {
    /// Load rules, states, channels, silences and the notification log,
    /// and start the worker (and the MQTT ingestion when configured).
    pub async fn start(
        db: DatabaseConnection,
        cfg: AlertsConfig,
        outbound: crate::outbound::Policy,
        metrics: AlertMetrics,
        fleet: Arc<Fleet>,
    ) -> Result<Self, ApiError> {
        match fleet.master() {
            Ok(key) => match store::seal_legacy(&db, key).await {
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
        let http = outbound.http_client().map_err(ApiError::internal)?;
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
            outbound,
            tasks: Mutex::new(vec![]),
            passes: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            tenants,
            formats: Default::default(),
        });
        let alerts = Alerts {
            inner: inner.clone(),
        };
        let mut w = Worker::new(inner.clone(), coord);
        w.load().await?;
        let h = tokio::spawn(w.run(rx, fleet_rx));
        alerts.track(h.abort_handle());
        let h = tokio::spawn(ingest::supervise(alerts.clone()));
        alerts.track(h.abort_handle());
        let h = tokio::spawn(replicas::listen(alerts.clone()));
        alerts.track(h.abort_handle());
        let h = tokio::spawn(watch_gateways(alerts.clone()));
        alerts.track(h.abort_handle());
        Ok(alerts)
    }

    pub(super) fn track(&self, h: AbortHandle) {
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

    /// `WEIR_ALERTS_MQTT_URL`: the broker every tenant uses, when set.
    pub fn mqtt_url(&self) -> Option<&str> {
        self.inner.cfg.mqtt_url.as_deref()
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

    pub(super) async fn fleet_event_local(&self, ev: FleetEvent) {
        let _ = self.inner.fleet_tx.send(ev).await;
    }

    pub(super) async fn announce(&self, signal: Signal) {
        replicas::announce(&self.inner.db, self.inner.id, signal).await;
    }

    /// An alert's value as its summary shows it ("0.18 mg/L"): with the
    /// decimals and unit of its tag in the gateway's current config.
    pub fn value_text(
        &self,
        project: Uuid,
        kind: super::rules::RuleKind,
        labels: &BTreeMap<String, String>,
        value: Option<f64>,
    ) -> Option<String> {
        let formats = self
            .inner
            .formats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        formats.value_text(project, kind, labels, value?)
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

    pub(super) fn clusters_changed_local(&self) {
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

    pub(super) async fn reload_local(&self) {
        let _ = self.inner.tx.send(Input::Reload).await;
    }

    /// An alert was acknowledged or shelved: the worker (here and on the
    /// other replicas) reads the acknowledgements again.
    pub async fn acks_changed(&self) {
        self.acks_changed_local().await;
        self.announce(Signal::Acks).await;
    }

    pub(super) async fn acks_changed_local(&self) {
        let _ = self.inner.tx.send(Input::Acks).await;
    }

    /// Gateways were created, changed or deleted: the worker (here and on
    /// the other replicas) reads which project each belongs to again.
    pub async fn gateways_changed(&self) {
        self.gateways_changed_local().await;
        self.announce(Signal::Gateways).await;
    }

    pub(super) async fn gateways_changed_local(&self) {
        let _ = self.inner.tx.send(Input::Gateways).await;
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

    pub(super) fn attempts(&self) -> Attempts {
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
                let body = n.webhook_body();
                let out = &self.inner.outbound;
                notify::webhook::send(&self.inner.http, out, url, secret, body, attempts).await
            }
            ChannelKind::Email { cfg, password } => {
                let (subject, body) = (n.email_subject(), n.email_body());
                let out = &self.inner.outbound;
                notify::email::send(cfg, password, out, &subject, body, attempts).await
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

    pub(super) async fn log_delivery(
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

    pub(super) fn set_tenants(&self, t: BTreeSet<String>) {
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

/// The fleet wakes agents through `bundles` whenever a gateway is created,
/// changed or deleted on this replica: the gateway map follows. Many at
/// once (a batch, a key rotation) make one reading of the gateways.
async fn watch_gateways(alerts: Alerts) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut rx = alerts.inner.fleet.bundles.subscribe();
    loop {
        if let Err(RecvError::Closed) = rx.recv().await {
            return;
        }
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
        alerts.gateways_changed().await;
    }
}
