//! The one task that owns the engine and the notifier (so neither needs a
//! lock): it takes readings, fleet events, reloads and delivery reports
//! from channels, persists transitions, and sends what is due.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::EntityTrait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use weir_crds::message::ErrorCode;

use super::acknowledgements::{AckState, Acks};
use super::engine::{self, AlertState, Engine, Reading, RuleDef, Transition};
use super::formats::TagFormats;
use super::handle::{Inner, Input};
use super::notify::{AlertEntry, Notifier};
use super::replicas::Coordinator;
use super::rows::{channel_from_row, load_gateways, load_rule_defs, silence_from_row};
use super::rules::{RuleKind, DATA_GAP_FIRING_SECS};
use super::silences::{mute_fn, ActiveSilence, Mute};
use super::store::{self, alert_channel, alert_nflog, alert_silence, alert_state};
use super::Alerts;
use crate::error::ApiError;
use crate::fleet_events::{device_event, recent_data_gaps, FleetEvent};

pub(super) struct Worker {
    inner: Arc<Inner>,
    engine: Engine,
    formats: TagFormats,
    notifier: Notifier,
    silences: Vec<ActiveSilence>,
    /// Acknowledged and shelved alerts.
    acks: Acks,
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
    /// When the gateway map was last read (a reading of an unknown gateway
    /// reads it again, at most once per [`GATEWAYS_RETRY`]).
    gateways_read: Option<Instant>,
}

/// How often a reading of a gateway the engine does not know may make the
/// worker read the gateways again (one just created on another replica).
const GATEWAYS_RETRY: Duration = Duration::from_secs(1);

impl Worker {
    pub(super) fn new(inner: Arc<Inner>, coord: Coordinator) -> Self {
        Worker {
            inner,
            engine: Engine::new(),
            formats: TagFormats::default(),
            notifier: Notifier::default(),
            silences: vec![],
            acks: Acks::default(),
            kinds: HashMap::new(),
            out: Vec::new(),
            last_evaluations: 0,
            coord,
            defs: vec![],
            owned: BTreeSet::new(),
            in_flight: HashMap::new(),
            gateways_read: None,
        }
    }

    fn alerts(&self) -> Alerts {
        Alerts {
            inner: self.inner.clone(),
        }
    }

    /// Read rules, channels and silences, settle which tenants this replica
    /// evaluates, and observe the fleet as its tables say.
    pub(super) async fn load(&mut self) -> Result<(), ApiError> {
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
        self.acks = Acks::load(db).await?;
        self.read_gateways().await?;
        let owned = self.assign().await;
        self.take(owned).await?;
        self.fleet_snapshot().await
    }

    /// Read which project each gateway belongs to: a reading reaches only
    /// the rules of its gateway's project.
    async fn read_gateways(&mut self) -> Result<(), ApiError> {
        self.gateways_read = Some(Instant::now());
        let gws = load_gateways(&self.inner.db).await?;
        self.engine.set_gateways(gws);
        self.formats.load(&self.inner.db, &self.defs).await?;
        *self
            .inner
            .formats
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(self.formats.clone());
        Ok(())
    }

    /// The project of a reading's gateway; an unknown gateway may be a new
    /// one (created on another replica, its signal not here yet): read the
    /// gateways again, at most once per [`GATEWAYS_RETRY`].
    async fn project_of(&mut self, tenant: &str, gateway: &str) -> Option<Uuid> {
        if let Some(p) = self.engine.gateway_project(tenant, gateway) {
            return Some(p);
        }
        if self
            .gateways_read
            .is_some_and(|t| t.elapsed() < GATEWAYS_RETRY)
        {
            return None;
        }
        if let Err(e) = self.read_gateways().await {
            tracing::error!(error = %e, "alerts: reading the gateways failed");
        }
        self.engine.gateway_project(tenant, gateway)
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
            let since = chrono::Utc::now() - chrono::Duration::seconds(DATA_GAP_FIRING_SECS);
            for ev in recent_data_gaps(db, &gained_projects, since).await? {
                self.fleet(ev);
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
            evs.extend(device_event(&g));
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

    pub(super) async fn run(
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
        // In case a gateway change was missed (its signal lost).
        let every = super::ingest::REFRESH;
        let mut regateway = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        regateway.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = regateway.tick() => {
                    if let Err(e) = self.read_gateways().await {
                        tracing::error!(error = %e, "alerts: reading the gateways failed");
                    }
                    continue;
                }
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
            FleetEvent::DataGap {
                project,
                gateway,
                seq_from,
                seq_to,
                reason,
                ..
            } => self
                .engine
                .observe_gap(now, project, &gateway, (seq_from, seq_to), &reason, out),
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
                let project = self.project_of(&tenant, &gateway).await;
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
                    let Some(project) = project else { continue };
                    if !f.values.is_empty() || down {
                        self.engine.observe_device(
                            now,
                            project,
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
            Input::Acks => match Acks::load(&self.inner.db).await {
                Ok(a) => self.acks = a,
                Err(e) => {
                    tracing::error!(error = %e, "alerts: reading the acknowledgements failed")
                }
            },
            Input::Gateways => {
                if let Err(e) = self.read_gateways().await {
                    tracing::error!(error = %e, "alerts: reading the gateways failed");
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
        let mut ts = std::mem::take(&mut self.out);
        if !ts.is_empty() {
            self.formats.apply(&self.defs, &mut ts);
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
            let acks = &self.acks;
            self.notifier.flush(now, |a| {
                let ack = acks.state(a.rule_id, &a.series, a.starts_ms, now);
                if ack == AckState::Shelved {
                    return Mute::Shelved;
                }
                let m = mute(
                    a.project_id,
                    kinds.get(&a.rule_id).copied().unwrap_or(a.kind),
                    &a.labels,
                );
                if m == Mute::None && ack == AckState::Acknowledged {
                    Mute::Acknowledged
                } else {
                    m
                }
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
