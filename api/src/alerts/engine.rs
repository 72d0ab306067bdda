//! Pure rule evaluation: no I/O, no clock of its own. Every call takes
//! `now_ms` (from the runtime's [`super::Clock`], which tests control), so
//! the state machine inactive → pending → firing → resolved and the
//! for-duration can be driven exactly.
//!
//! Projects are walls: a reading belongs to the project of its gateway
//! (gateway names are unique in an org; [`Engine::set_gateways`] gives the
//! map) and reaches only that project's rules, with or without a gateway
//! filter. A reading of a gateway the api does not know reaches no rule.
//!
//! Hot path: a reading finds its gateway's project (remembered from the
//! previous reading, as a message's readings share one gateway), looks its
//! tag up once in that project's rules, then walks the few rules on it;
//! series state is keyed by `gateway/device/tag` built in a reused buffer,
//! so a reading that changes no state allocates nothing. Unit tests are in
//! engine_tests.rs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::rules::{RuleKind, RuleSpec, Severity, ThresholdOp, DATA_GAP_FIRING_SECS};

/// A rule as the engine runs it.
#[derive(Clone, Debug)]
pub struct RuleDef {
    pub id: Uuid,
    pub project_id: Uuid,
    /// Tenant (organization slug) whose readings and fleet events the rule sees.
    pub tenant: String,
    pub spec: RuleSpec,
}

/// State of one rule on one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    /// Reported once when a firing alert clears; the series is inactive again.
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Inactive, Self::Pending, Self::Firing, Self::Resolved]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One numeric reading.
#[derive(Clone, Copy, Debug)]
pub struct Reading<'a> {
    pub tenant: &'a str,
    pub gateway: &'a str,
    pub device: &'a str,
    pub tag: &'a str,
    pub value: f64,
    /// Read time at the device, ms since the epoch (used for rates).
    pub ts_ms: i64,
}

/// A change of state, with everything needed to persist and notify it.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub rule_id: Uuid,
    pub project_id: Uuid,
    pub rule_name: String,
    pub kind: RuleKind,
    pub severity: Severity,
    /// `gateway/device/tag` (parts empty when they do not apply).
    pub series: String,
    pub from: AlertState,
    pub to: AlertState,
    pub at_ms: i64,
    /// When the condition started to hold (pending or firing start).
    pub since_ms: i64,
    pub value: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub channels: Vec<Uuid>,
}

impl Transition {
    /// Identity of the alert across restarts: rule and series.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.rule_id, &self.series)
    }
}

pub fn fingerprint(rule_id: Uuid, series: &str) -> String {
    format!("{rule_id}/{series}")
}

#[derive(Clone, Debug)]
struct Series {
    state: AlertState,
    /// The condition at the last evaluation.
    cond: bool,
    since_ms: i64,
    last_seen_ms: i64,
    value: Option<f64>,
    /// Previous (read time, value), for rates.
    prev: Option<(i64, f64)>,
}

impl Series {
    fn new(now_ms: i64) -> Self {
        Self {
            state: AlertState::Inactive,
            cond: false,
            since_ms: now_ms,
            last_seen_ms: now_ms,
            value: None,
            prev: None,
        }
    }
}

struct CompiledRule {
    def: Arc<RuleDef>,
    for_ms: i64,
    series: HashMap<Box<str>, Series>,
}

/// The gateway of the previous reading and where it led: (its project,
/// the slot of that project's tag rules), `None` for an unknown gateway.
#[derive(Default)]
struct LastGateway {
    valid: bool,
    tenant: String,
    gateway: String,
    found: Option<(Uuid, Option<u32>)>,
}

/// The evaluator. Not thread-safe by itself; the runtime holds it in a mutex.
#[derive(Default)]
pub struct Engine {
    rules: Vec<CompiledRule>,
    /// Tag rules by project (slot in `by_tag`), then by tag.
    slots: HashMap<Uuid, u32>,
    by_tag: Vec<HashMap<Box<str>, Vec<u32>>>,
    /// Project of every gateway the api knows: tenant → gateway → project.
    gateways: HashMap<Box<str>, HashMap<Box<str>, Uuid>>,
    last: LastGateway,
    device_rules: Vec<u32>,
    gateway_rules: Vec<u32>,
    cluster_rules: Vec<u32>,
    data_gap_rules: Vec<u32>,
    key: String,
    /// Rule evaluations done (one per rule a reading or event reached).
    pub evaluations: u64,
}

fn matches_opt(filter: &Option<String>, v: &str) -> bool {
    filter.as_deref().is_none_or(|f| f == v)
}

fn series_key(buf: &mut String, gateway: &str, device: &str, tag: &str) {
    buf.clear();
    buf.push_str(gateway);
    buf.push('/');
    buf.push_str(device);
    buf.push('/');
    buf.push_str(tag);
}

/// Advance one series; returns the transition (from, to) if any.
fn step(s: &mut Series, cond: bool, now_ms: i64, for_ms: i64) -> Option<(AlertState, AlertState)> {
    s.cond = cond;
    match (s.state, cond) {
        (AlertState::Inactive, true) => {
            s.since_ms = now_ms;
            if for_ms == 0 {
                s.state = AlertState::Firing;
                Some((AlertState::Inactive, AlertState::Firing))
            } else {
                s.state = AlertState::Pending;
                Some((AlertState::Inactive, AlertState::Pending))
            }
        }
        (AlertState::Pending, true) if now_ms - s.since_ms >= for_ms => {
            s.state = AlertState::Firing;
            Some((AlertState::Pending, AlertState::Firing))
        }
        (AlertState::Pending, false) => {
            s.state = AlertState::Inactive;
            Some((AlertState::Pending, AlertState::Inactive))
        }
        (AlertState::Firing, false) => {
            s.state = AlertState::Inactive;
            Some((AlertState::Firing, AlertState::Resolved))
        }
        _ => None,
    }
}

fn make_transition(
    def: &RuleDef,
    key: &str,
    s: &Series,
    (from, to): (AlertState, AlertState),
    now_ms: i64,
) -> Transition {
    let spec = &def.spec;
    let mut parts = key.splitn(3, '/');
    let (gateway, device, tag) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut labels = spec.labels.clone();
    labels.insert("alertname".into(), spec.name.clone());
    labels.insert("severity".into(), spec.severity.as_str().into());
    if spec.kind == RuleKind::ClusterDegraded {
        labels.insert("cluster".into(), gateway.into());
    } else if spec.kind == RuleKind::DataGap {
        // Key `gateway/{seq_from}-{seq_to}/{reason}` (see `observe_gap`).
        let (from, to) = device.split_once('-').unwrap_or((device, device));
        for (k, v) in [
            ("gateway", gateway),
            ("seq_from", from),
            ("seq_to", to),
            ("reason", tag),
        ] {
            labels.insert(k.into(), v.into());
        }
    } else {
        for (k, v) in [("gateway", gateway), ("device", device), ("tag", tag)] {
            if !v.is_empty() {
                labels.insert(k.into(), v.into());
            }
        }
    }
    // Plain numbers here; the worker renders again with the tag's decimals
    // and unit (`formats`), which the engine does not know.
    let summary = super::formats::summary(spec, &labels, s.value, None);
    Transition {
        rule_id: def.id,
        project_id: def.project_id,
        rule_name: spec.name.clone(),
        kind: spec.kind,
        severity: spec.severity,
        series: key.to_string(),
        from,
        to,
        at_ms: now_ms,
        since_ms: s.since_ms,
        value: s.value,
        labels,
        summary,
        channels: spec.channels.clone(),
    }
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Replace the rule set. Series state of rules that stay (same id) is
    /// kept; firing alerts of rules that went away (deleted or disabled)
    /// resolve into `out`.
    pub fn set_rules(&mut self, defs: Vec<RuleDef>, now_ms: i64, out: &mut Vec<Transition>) {
        let mut old: HashMap<Uuid, CompiledRule> =
            self.rules.drain(..).map(|r| (r.def.id, r)).collect();
        self.slots.clear();
        self.by_tag.clear();
        self.last.valid = false;
        self.device_rules.clear();
        self.gateway_rules.clear();
        self.cluster_rules.clear();
        self.data_gap_rules.clear();
        for def in defs.into_iter().filter(|d| d.spec.enabled) {
            let i = self.rules.len() as u32;
            let mut series = old.remove(&def.id).map(|r| r.series).unwrap_or_default();
            match def.spec.kind {
                RuleKind::Threshold | RuleKind::Absence | RuleKind::Rate => {
                    let tag = def.spec.tag.clone().unwrap_or_default();
                    // An absence rule on one exact series watches it from now on,
                    // even if it never reported.
                    if def.spec.kind == RuleKind::Absence {
                        if let (Some(g), Some(d)) = (&def.spec.gateway, &def.spec.device) {
                            series_key(&mut self.key, g, d, &tag);
                            if !series.contains_key(self.key.as_str()) {
                                series
                                    .insert(self.key.clone().into_boxed_str(), Series::new(now_ms));
                            }
                        }
                    }
                    let next = self.by_tag.len() as u32;
                    let slot = *self.slots.entry(def.project_id).or_insert(next);
                    if slot == next {
                        self.by_tag.push(HashMap::new());
                    }
                    self.by_tag[slot as usize]
                        .entry(tag.into_boxed_str())
                        .or_default()
                        .push(i);
                }
                RuleKind::DeviceDown => self.device_rules.push(i),
                RuleKind::GatewayOffline => self.gateway_rules.push(i),
                RuleKind::ClusterDegraded => self.cluster_rules.push(i),
                RuleKind::DataGap => self.data_gap_rules.push(i),
            }
            let for_ms = (def.spec.for_secs as i64).saturating_mul(1000);
            self.rules.push(CompiledRule {
                def: Arc::new(def),
                for_ms,
                series,
            });
        }
        for (_, r) in old {
            for (k, s) in r.series {
                if s.state == AlertState::Firing {
                    out.push(make_transition(
                        &r.def,
                        &k,
                        &s,
                        (AlertState::Firing, AlertState::Resolved),
                        now_ms,
                    ));
                }
            }
        }
    }

    /// Drop the rules `gone` picks without resolving their alerts: another
    /// api replica carries them on from the persisted states.
    pub fn hand_over(&mut self, now_ms: i64, gone: impl Fn(&RuleDef) -> bool) {
        self.rules.retain(|r| !gone(&r.def));
        let keep: Vec<RuleDef> = self.rules.iter().map(|r| (*r.def).clone()).collect();
        let mut out = vec![];
        self.set_rules(keep, now_ms, &mut out);
        debug_assert!(out.is_empty(), "kept rules resolve nothing");
    }

    /// Put back a persisted state (after a restart). Returns false when the
    /// rule is not loaded.
    pub fn restore(
        &mut self,
        rule_id: Uuid,
        series: &str,
        state: AlertState,
        since_ms: i64,
        value: Option<f64>,
        now_ms: i64,
    ) -> bool {
        let Some(r) = self.rules.iter_mut().find(|r| r.def.id == rule_id) else {
            return false;
        };
        if !matches!(state, AlertState::Pending | AlertState::Firing) {
            return false;
        }
        let s = r
            .series
            .entry(series.into())
            .or_insert_with(|| Series::new(now_ms));
        s.state = state;
        s.cond = true;
        s.since_ms = since_ms;
        s.value = value;
        true
    }

    /// Replace the gateway map: (tenant, gateway, project) of every gateway
    /// the api knows. Readings of other gateways reach no rule.
    pub fn set_gateways<I, T, G>(&mut self, gateways: I)
    where
        I: IntoIterator<Item = (T, G, Uuid)>,
        T: Into<Box<str>>,
        G: Into<Box<str>>,
    {
        self.gateways.clear();
        for (t, g, p) in gateways {
            self.gateways
                .entry(t.into())
                .or_default()
                .insert(g.into(), p);
        }
        self.last.valid = false;
    }

    /// The gateway's project and the slot of its tag rules, remembered
    /// from the previous call (a message's readings share one gateway).
    #[inline]
    fn resolve(&mut self, tenant: &str, gateway: &str) -> Option<(Uuid, Option<u32>)> {
        let l = &mut self.last;
        if l.valid && l.gateway == gateway && l.tenant == tenant {
            return l.found;
        }
        let project = self.gateways.get(tenant).and_then(|m| m.get(gateway));
        l.found = project.map(|p| (*p, self.slots.get(p).copied()));
        l.tenant.clear();
        l.tenant.push_str(tenant);
        l.gateway.clear();
        l.gateway.push_str(gateway);
        l.valid = true;
        l.found
    }

    /// The project of a tenant's gateway, `None` when the api does not know it.
    pub fn gateway_project(&mut self, tenant: &str, gateway: &str) -> Option<Uuid> {
        self.resolve(tenant, gateway).map(|(p, _)| p)
    }

    /// Evaluate one reading against the rules on its tag in its gateway's project.
    #[inline]
    pub fn observe(&mut self, now_ms: i64, r: &Reading<'_>, out: &mut Vec<Transition>) {
        let Some((_, Some(slot))) = self.resolve(r.tenant, r.gateway) else {
            return;
        };
        let Some(idx) = self.by_tag[slot as usize].get(r.tag) else {
            return;
        };
        for &i in idx {
            let rule = &mut self.rules[i as usize];
            let spec = &rule.def.spec;
            if !matches_opt(&spec.gateway, r.gateway) || !matches_opt(&spec.device, r.device) {
                continue;
            }
            self.evaluations += 1;
            series_key(&mut self.key, r.gateway, r.device, r.tag);
            let s = match rule.series.get_mut(self.key.as_str()) {
                Some(s) => s,
                None => rule
                    .series
                    .entry(self.key.clone().into_boxed_str())
                    .or_insert_with(|| Series::new(now_ms)),
            };
            s.last_seen_ms = now_ms;
            let cond = match spec.kind {
                RuleKind::Threshold => {
                    s.value = Some(r.value);
                    match spec.op {
                        Some(ThresholdOp::Above) => spec.threshold.is_some_and(|t| r.value > t),
                        Some(ThresholdOp::Below) => spec.threshold.is_some_and(|t| r.value < t),
                        Some(ThresholdOp::Outside) => {
                            spec.low.is_some_and(|l| r.value < l)
                                || spec.high.is_some_and(|h| r.value > h)
                        }
                        None => false,
                    }
                }
                RuleKind::Absence => {
                    s.value = Some(r.value);
                    false
                }
                RuleKind::Rate => {
                    let prev = s.prev.replace((r.ts_ms, r.value));
                    match prev {
                        Some((t0, v0)) if r.ts_ms > t0 => {
                            let rate = (r.value - v0) / ((r.ts_ms - t0) as f64 / 1000.0);
                            s.value = Some(rate);
                            spec.max_rate_per_sec.is_some_and(|m| rate.abs() > m)
                        }
                        // Same or older timestamp: no new information.
                        _ => s.cond,
                    }
                }
                _ => false,
            };
            if let Some(t) = step(s, cond, now_ms, rule.for_ms) {
                out.push(make_transition(&rule.def, &self.key, s, t, now_ms));
            }
        }
    }

    fn observe_status(
        &mut self,
        which: fn(&Engine) -> &Vec<u32>,
        now_ms: i64,
        project: Uuid,
        (gateway, device): (&str, &str),
        bad: bool,
        out: &mut Vec<Transition>,
    ) {
        let idx = which(self).clone();
        for i in idx {
            let rule = &mut self.rules[i as usize];
            let spec = &rule.def.spec;
            let is_cluster = spec.kind == RuleKind::ClusterDegraded;
            if rule.def.project_id != project
                || (!is_cluster && !matches_opt(&spec.gateway, gateway))
                || !matches_opt(&spec.device, device)
            {
                continue;
            }
            self.evaluations += 1;
            series_key(&mut self.key, gateway, device, "");
            let s = rule
                .series
                .entry(self.key.clone().into_boxed_str())
                .or_insert_with(|| Series::new(now_ms));
            s.last_seen_ms = now_ms;
            if let Some(t) = step(s, bad, now_ms, rule.for_ms) {
                out.push(make_transition(&rule.def, &self.key, s, t, now_ms));
            }
        }
    }

    /// A device answered (`up`) or failed with timeout/disconnected errors
    /// (in readings), or the agent's heartbeat reports it up or down.
    pub fn observe_device(
        &mut self,
        now_ms: i64,
        project: Uuid,
        gateway: &str,
        device: &str,
        up: bool,
        out: &mut Vec<Transition>,
    ) {
        self.observe_status(
            |e| &e.device_rules,
            now_ms,
            project,
            (gateway, device),
            !up,
            out,
        );
    }

    /// The fleet reports a gateway online or offline.
    pub fn observe_gateway(
        &mut self,
        now_ms: i64,
        project: Uuid,
        gateway: &str,
        online: bool,
        out: &mut Vec<Transition>,
    ) {
        self.observe_status(
            |e| &e.gateway_rules,
            now_ms,
            project,
            (gateway, ""),
            !online,
            out,
        );
    }

    /// The fleet reports the health of a tenant's MQTT cluster.
    pub fn observe_cluster(
        &mut self,
        now_ms: i64,
        project: Uuid,
        cluster: &str,
        healthy: bool,
        out: &mut Vec<Transition>,
    ) {
        self.observe_status(
            |e| &e.cluster_rules,
            now_ms,
            project,
            (cluster, ""),
            !healthy,
            out,
        );
    }

    /// The historian recorded a lost range `seq_from..=seq_to` of a
    /// gateway: every matching `data_gap` rule fires one alert for it (a
    /// gap seen again changes nothing while its alert is firing).
    #[allow(clippy::too_many_arguments)]
    pub fn observe_gap(
        &mut self,
        now_ms: i64,
        project: Uuid,
        gateway: &str,
        (seq_from, seq_to): (i64, i64),
        reason: &str,
        out: &mut Vec<Transition>,
    ) {
        let range = format!("{seq_from}-{seq_to}");
        for i in self.data_gap_rules.clone() {
            let rule = &mut self.rules[i as usize];
            if rule.def.project_id != project || !matches_opt(&rule.def.spec.gateway, gateway) {
                continue;
            }
            self.evaluations += 1;
            series_key(&mut self.key, gateway, &range, reason);
            let s = rule
                .series
                .entry(self.key.clone().into_boxed_str())
                .or_insert_with(|| Series::new(now_ms));
            s.last_seen_ms = now_ms;
            if let Some(t) = step(s, true, now_ms, 0) {
                out.push(make_transition(&rule.def, &self.key, s, t, now_ms));
            }
        }
    }

    /// Time passes: pending alerts whose for-duration is over fire,
    /// absence rules check how long each series has been silent, and
    /// `data_gap` alerts resolve [`DATA_GAP_FIRING_SECS`] after they fired
    /// (and are forgotten: each gap is its own series).
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Transition>) {
        for rule in &mut self.rules {
            if rule.def.spec.kind == RuleKind::DataGap {
                let hold = DATA_GAP_FIRING_SECS * 1000;
                rule.series.retain(|k, s| {
                    if now_ms - s.since_ms < hold {
                        return true;
                    }
                    if let Some(t) = step(s, false, now_ms, 0) {
                        out.push(make_transition(&rule.def, k, s, t, now_ms));
                    }
                    false
                });
                continue;
            }
            let absent_ms = (rule.def.spec.kind == RuleKind::Absence)
                .then(|| rule.def.spec.absent_secs.unwrap_or(0) as i64 * 1000);
            for (k, s) in rule.series.iter_mut() {
                let cond = match absent_ms {
                    Some(a) => now_ms - s.last_seen_ms >= a,
                    None => s.cond,
                };
                if absent_ms.is_none() && s.state != AlertState::Pending {
                    continue;
                }
                if let Some(t) = step(s, cond, now_ms, rule.for_ms) {
                    out.push(make_transition(&rule.def, k, s, t, now_ms));
                }
            }
        }
    }

    /// Firing or pending series: (rule, series, state).
    pub fn active(&self) -> Vec<(Uuid, String, AlertState)> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.series
                    .iter()
                    .filter(|(_, s)| matches!(s.state, AlertState::Pending | AlertState::Firing))
                    .map(|(k, s)| (r.def.id, k.to_string(), s.state))
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
