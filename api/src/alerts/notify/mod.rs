//! Notifications, Alertmanager style: alerts are grouped per channel by the
//! channel's `group_by` labels; a new group waits `group_wait` before its
//! first notice, a changed group (new firing or resolved alerts) is sent at
//! most once per `group_interval`, an unchanged firing group again after
//! `repeat_interval`. What each group last carried is the notification log
//! (persisted), so a restart sends no duplicate.
//!
//! [`Notifier`] is pure (time comes in as `now_ms`); the runtime sends what
//! [`Notifier::flush`] returns and reports back with [`Notifier::delivered`].

pub mod email;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::engine::{AlertState, Transition};
use super::rules::RuleKind;
use super::silences::Mute;
use super::store::to_time;

/// Retry policy of one delivery.
#[derive(Clone, Debug)]
pub struct Attempts {
    pub max_attempts: u32,
    pub base: Duration,
    pub timeout: Duration,
}

impl Attempts {
    /// base, 2·base, 4·base ... capped at one minute.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let f = 1u32 << (attempt.saturating_sub(1)).min(16);
        (self.base * f).min(Duration::from_secs(60))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryResult {
    pub ok: bool,
    pub attempts: u32,
    pub http_status: Option<i32>,
    pub error: String,
}

#[derive(Clone, Debug)]
pub enum ChannelKind {
    Webhook {
        url: String,
        secret: String,
    },
    Email {
        cfg: email::EmailConfig,
        password: String,
    },
}

/// A channel as the notifier uses it (secrets included; never logged).
#[derive(Clone)]
pub struct Channel {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub group_by: Vec<String>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so a secret can never reach a log line.
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An alert the notifier knows: firing, or resolved and not yet announced.
#[derive(Clone, Debug)]
pub struct AlertEntry {
    pub fingerprint: String,
    pub rule_id: Uuid,
    pub project_id: Uuid,
    pub kind: RuleKind,
    pub series: String,
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub starts_ms: i64,
    pub ends_ms: Option<i64>,
    pub value: Option<f64>,
    pub channels: Vec<Uuid>,
}

impl AlertEntry {
    pub fn from_transition(t: &Transition) -> Self {
        Self {
            fingerprint: t.fingerprint(),
            rule_id: t.rule_id,
            project_id: t.project_id,
            kind: t.kind,
            series: t.series.clone(),
            state: t.to,
            labels: t.labels.clone(),
            summary: t.summary.clone(),
            starts_ms: t.since_ms,
            ends_ms: (t.to == AlertState::Resolved).then_some(t.at_ms),
            value: t.value,
            channels: t.channels.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Group {
    /// When the group first had a firing alert to announce (group wait).
    first_ms: Option<i64>,
    last_sent_ms: Option<i64>,
    /// Fingerprints the last notice carried as firing.
    sent: BTreeSet<String>,
    in_flight: bool,
    /// After a failed delivery, not before this.
    hold_until_ms: i64,
}

/// One notice to send.
#[derive(Clone, Debug)]
pub struct Notification {
    pub channel: Arc<Channel>,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub firing: Vec<AlertEntry>,
    pub resolved: Vec<AlertEntry>,
    pub at_ms: i64,
}

impl Notification {
    pub fn status(&self) -> &'static str {
        if self.firing.is_empty() {
            "resolved"
        } else {
            "firing"
        }
    }

    /// What this notice leaves in the notification log.
    pub fn firing_fingerprints(&self) -> Vec<String> {
        self.firing.iter().map(|a| a.fingerprint.clone()).collect()
    }

    /// The webhook body (Alertmanager-like).
    pub fn webhook_body(&self) -> Vec<u8> {
        let alert = |a: &AlertEntry, status: &str| {
            serde_json::json!({
                "status": status,
                "fingerprint": a.fingerprint,
                "rule_id": a.rule_id,
                "labels": a.labels,
                "summary": a.summary,
                "value": a.value,
                "starts_at": to_time(a.starts_ms),
                "ends_at": a.ends_ms.map(to_time),
            })
        };
        let alerts: Vec<_> = self
            .firing
            .iter()
            .map(|a| alert(a, "firing"))
            .chain(self.resolved.iter().map(|a| alert(a, "resolved")))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "version": "1",
            "status": self.status(),
            "channel": {"id": self.channel.id, "name": self.channel.name},
            "project_id": self.channel.project_id,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "alerts": alerts,
            "sent_at": to_time(self.at_ms),
        }))
        .unwrap_or_default()
    }

    pub fn email_subject(&self) -> String {
        let name = self
            .firing
            .first()
            .or(self.resolved.first())
            .and_then(|a| a.labels.get("alertname"))
            .cloned()
            .unwrap_or_default();
        if self.firing.is_empty() {
            format!("[RESOLVED] {name} ({} alerts)", self.resolved.len())
        } else {
            format!("[FIRING:{}] {name}", self.firing.len())
        }
    }

    pub fn email_body(&self) -> String {
        let mut s = String::new();
        for (title, list) in [("Firing", &self.firing), ("Resolved", &self.resolved)] {
            if list.is_empty() {
                continue;
            }
            s.push_str(&format!("{title}:\n"));
            for a in list.iter() {
                s.push_str(&format!(
                    "- {} (since {})\n",
                    a.summary,
                    to_time(a.starts_ms).to_rfc3339()
                ));
                let labels: Vec<String> =
                    a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("  {}\n", labels.join(", ")));
            }
            s.push('\n');
        }
        s
    }
}

type GroupId = (Uuid, String);
type Labels = BTreeMap<String, String>;

/// Grouping and timing of notices.
#[derive(Default)]
pub struct Notifier {
    channels: HashMap<Uuid, Arc<Channel>>,
    alerts: HashMap<String, AlertEntry>,
    groups: HashMap<(Uuid, String), Group>,
}

fn group_of(ch: &Channel, labels: &BTreeMap<String, String>) -> (String, BTreeMap<String, String>) {
    let mut gl = BTreeMap::new();
    for k in &ch.group_by {
        gl.insert(k.clone(), labels.get(k).cloned().unwrap_or_default());
    }
    let key = gl
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    (key, gl)
}

impl Notifier {
    pub fn set_channels(&mut self, chans: Vec<Channel>) {
        self.channels = chans.into_iter().map(|c| (c.id, Arc::new(c))).collect();
        let ids: BTreeSet<Uuid> = self.channels.keys().copied().collect();
        self.groups.retain(|(c, _), _| ids.contains(c));
    }

    /// Forget the alerts and groups of these projects (another api replica
    /// notifies for them now).
    pub fn forget_projects(&mut self, projects: &HashSet<Uuid>) {
        self.alerts.retain(|_, a| !projects.contains(&a.project_id));
        let channels = &self.channels;
        self.groups.retain(|(c, _), _| {
            channels
                .get(c)
                .is_none_or(|ch| !projects.contains(&ch.project_id))
        });
    }

    /// Whether a group of this channel and key is tracked here.
    pub fn knows_group(&self, channel: Uuid, key: &str) -> bool {
        self.groups.contains_key(&(channel, key.to_string()))
    }

    pub fn channel(&self, id: Uuid) -> Option<Arc<Channel>> {
        self.channels.get(&id).cloned()
    }

    /// Restore a group's log after a restart.
    pub fn restore_group(
        &mut self,
        channel: Uuid,
        key: String,
        last_sent_ms: i64,
        sent: Vec<String>,
    ) {
        let g = self.groups.entry((channel, key)).or_default();
        g.last_sent_ms = Some(last_sent_ms);
        g.first_ms = Some(last_sent_ms);
        g.sent = sent.into_iter().collect();
    }

    pub fn restore_alert(&mut self, a: AlertEntry) {
        self.alerts.insert(a.fingerprint.clone(), a);
    }

    /// Follow the engine: firing alerts join, resolved ones are marked.
    pub fn apply(&mut self, t: &Transition) {
        match t.to {
            AlertState::Firing => {
                self.alerts
                    .insert(t.fingerprint(), AlertEntry::from_transition(t));
            }
            AlertState::Resolved => {
                if let Some(a) = self.alerts.get_mut(&t.fingerprint()) {
                    a.state = AlertState::Resolved;
                    a.ends_ms = Some(t.at_ms);
                    a.value = t.value;
                }
            }
            AlertState::Pending | AlertState::Inactive => {}
        }
    }

    pub fn alerts(&self) -> impl Iterator<Item = &AlertEntry> {
        self.alerts.values()
    }

    /// Notices due at `now_ms`, and the resolved alerts that are fully
    /// announced (or were never announced) and can be forgotten.
    pub fn flush(
        &mut self,
        now_ms: i64,
        mute: impl Fn(&AlertEntry) -> Mute,
    ) -> (Vec<Notification>, Vec<AlertEntry>) {
        let mut members: HashMap<GroupId, (Labels, Vec<&AlertEntry>)> = HashMap::new();
        for a in self.alerts.values() {
            for ch in self.channels.values() {
                if ch.project_id != a.project_id
                    || !(a.channels.is_empty() || a.channels.contains(&ch.id))
                {
                    continue;
                }
                let (key, gl) = group_of(ch, &a.labels);
                members
                    .entry((ch.id, key))
                    .or_insert_with(|| (gl, vec![]))
                    .1
                    .push(a);
            }
        }
        let mut out = Vec::new();
        let keys: BTreeSet<(Uuid, String)> = members
            .keys()
            .cloned()
            .chain(self.groups.keys().cloned())
            .collect();
        for gk in keys {
            let Some(ch) = self.channels.get(&gk.0).cloned() else {
                continue;
            };
            let (gl, list) = members.get(&gk).cloned().unwrap_or_default();
            let g = self.groups.entry(gk.clone()).or_default();
            if g.in_flight {
                continue;
            }
            let muted: Vec<(&AlertEntry, Mute)> = list.iter().map(|a| (*a, mute(a))).collect();
            let firing: Vec<&AlertEntry> = muted
                .iter()
                .filter(|(a, m)| a.state == AlertState::Firing && *m == Mute::None)
                .map(|(a, _)| *a)
                .collect();
            let resolved: Vec<&AlertEntry> = muted
                .iter()
                .filter(|(a, m)| {
                    a.state == AlertState::Resolved
                        && *m != Mute::Shelved
                        && g.sent.contains(&a.fingerprint)
                })
                .map(|(a, _)| *a)
                .collect();
            // Alerts that vanished entirely (their rule went away) leave the
            // log quietly; so do shelved ones: nothing about them goes out
            // while shelved, and afterwards they are announced as new.
            g.sent.retain(|fp| {
                muted
                    .iter()
                    .any(|(a, m)| &a.fingerprint == fp && *m != Mute::Shelved)
            });
            if firing.is_empty() && resolved.is_empty() {
                if g.sent.is_empty() {
                    self.groups.remove(&gk);
                }
                continue;
            }
            if now_ms < g.hold_until_ms {
                continue;
            }
            let changed =
                firing.iter().any(|a| !g.sent.contains(&a.fingerprint)) || !resolved.is_empty();
            let due = match g.last_sent_ms {
                None => {
                    let first = *g.first_ms.get_or_insert(now_ms);
                    !firing.is_empty() && now_ms - first >= ch.group_wait_ms
                }
                Some(last) => {
                    (changed && now_ms - last >= ch.group_interval_ms)
                        || (!firing.is_empty() && now_ms - last >= ch.repeat_interval_ms)
                }
            };
            if !due {
                continue;
            }
            g.in_flight = true;
            out.push(Notification {
                channel: ch,
                group_key: gk.1.clone(),
                group_labels: gl,
                firing: firing.into_iter().cloned().collect(),
                resolved: resolved.into_iter().cloned().collect(),
                at_ms: now_ms,
            });
        }
        // Resolved alerts no group still has to announce.
        let pending: BTreeSet<&String> = self
            .groups
            .values()
            .flat_map(|g| g.sent.iter())
            .chain(
                out.iter()
                    .flat_map(|n| n.resolved.iter().map(|a| &a.fingerprint)),
            )
            .collect();
        let done: Vec<String> = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved && !pending.contains(&a.fingerprint))
            .map(|a| a.fingerprint.clone())
            .collect();
        let forgotten = done
            .iter()
            .filter_map(|fp| self.alerts.remove(fp))
            .collect();
        (out, forgotten)
    }

    /// A notice was delivered (or finally failed). Returns the group's new
    /// firing set to persist, when it changed.
    pub fn delivered(&mut self, n: &Notification, ok: bool, now_ms: i64) -> Option<Vec<String>> {
        let ch = n.channel.clone();
        let g = self.groups.get_mut(&(ch.id, n.group_key.clone()))?;
        g.in_flight = false;
        if !ok {
            g.hold_until_ms = now_ms + ch.group_interval_ms.max(1000);
            return None;
        }
        // Muted alerts that were announced before stay in the log, so lifting
        // a silence does not announce them again as new.
        let keep: BTreeSet<String> = g
            .sent
            .iter()
            .filter(|fp| {
                self.alerts
                    .get(*fp)
                    .is_some_and(|a| a.state == AlertState::Firing)
            })
            .cloned()
            .collect();
        g.sent = keep.into_iter().chain(n.firing_fingerprints()).collect();
        g.last_sent_ms = Some(n.at_ms);
        Some(g.sent.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(project: Uuid) -> Channel {
        Channel {
            id: Uuid::new_v4(),
            project_id: project,
            name: "ops".into(),
            kind: ChannelKind::Webhook {
                url: "http://x".into(),
                secret: "s".into(),
            },
            group_by: vec!["alertname".into()],
            group_wait_ms: 10_000,
            group_interval_ms: 60_000,
            repeat_interval_ms: 3_600_000,
        }
    }

    fn alert(project: Uuid, name: &str, series: &str, state: AlertState, at: i64) -> Transition {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), name.to_string());
        Transition {
            rule_id: Uuid::nil(),
            project_id: project,
            rule_name: name.into(),
            kind: RuleKind::Threshold,
            severity: Default::default(),
            series: series.into(),
            from: AlertState::Pending,
            to: state,
            at_ms: at,
            since_ms: at,
            value: Some(1.0),
            labels,
            summary: "s".into(),
            channels: vec![],
        }
    }

    fn flush(n: &mut Notifier, now: i64) -> Vec<Notification> {
        let (out, _) = n.flush(now, |_| Mute::None);
        for x in &out {
            n.delivered(x, true, now);
        }
        out
    }

    #[test]
    fn group_wait_interval_repeat_and_resolved_notice() {
        let p = Uuid::new_v4();
        let mut n = Notifier::default();
        n.set_channels(vec![channel(p)]);
        n.apply(&alert(p, "hi", "a", AlertState::Firing, 0));
        assert!(flush(&mut n, 0).is_empty(), "group wait");
        n.apply(&alert(p, "hi", "b", AlertState::Firing, 5_000));
        let sent = flush(&mut n, 10_000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].firing.len(), 2, "both alerts in one notice");
        n.apply(&alert(p, "hi", "c", AlertState::Firing, 20_000));
        assert!(flush(&mut n, 20_000).is_empty(), "group interval");
        assert!(flush(&mut n, 69_999).is_empty());
        assert_eq!(flush(&mut n, 70_000)[0].firing.len(), 3);
        assert!(flush(&mut n, 200_000).is_empty(), "nothing changed");
        n.apply(&alert(p, "hi", "a", AlertState::Resolved, 210_000));
        let r = flush(&mut n, 210_000);
        assert_eq!((r[0].firing.len(), r[0].resolved.len()), (2, 1));
        assert!(flush(&mut n, 210_000 + 3_599_999).is_empty());
        let rep = flush(&mut n, 210_000 + 3_600_000);
        assert_eq!(rep.len(), 1, "repeat interval");
        assert!(
            n.alerts().all(|a| a.state == AlertState::Firing),
            "announced resolved alert forgotten"
        );
    }

    #[test]
    fn muted_alerts_send_nothing_and_restored_log_prevents_duplicates() {
        let p = Uuid::new_v4();
        let ch = channel(p);
        let mut n = Notifier::default();
        n.set_channels(vec![ch.clone()]);
        n.apply(&alert(p, "hi", "a", AlertState::Firing, 0));
        let (out, _) = n.flush(20_000, |_| Mute::Silenced);
        assert!(out.is_empty());
        assert!(
            flush(&mut n, 20_000).is_empty(),
            "group wait starts when unmuted"
        );
        let sent = flush(&mut n, 30_000);
        assert_eq!(sent.len(), 1);
        // Restart: same alert, log restored.
        let mut m = Notifier::default();
        m.set_channels(vec![ch.clone()]);
        m.restore_alert(AlertEntry::from_transition(&alert(
            p,
            "hi",
            "a",
            AlertState::Firing,
            0,
        )));
        m.restore_group(
            ch.id,
            sent[0].group_key.clone(),
            30_000,
            sent[0].firing_fingerprints(),
        );
        assert!(flush(&mut m, 100_000).is_empty());
        // Resolved alert that was never announced is forgotten without a notice.
        n.apply(&alert(p, "hi", "z", AlertState::Firing, 30_000));
        n.apply(&alert(p, "hi", "z", AlertState::Resolved, 31_000));
        let (out, gone) = n.flush(31_000, |_| Mute::None);
        assert!(out.is_empty());
        assert_eq!(gone.len(), 1);
    }

    /// Acknowledged: no repeat notice, the resolution still announced.
    /// Shelved: nothing while shelved, not even a resolution; announced
    /// again as new once the shelve ends.
    #[test]
    fn acknowledged_and_shelved_alerts() {
        let p = Uuid::new_v4();
        let mut n = Notifier::default();
        n.set_channels(vec![channel(p)]);
        n.apply(&alert(p, "hi", "a", AlertState::Firing, 0));
        n.apply(&alert(p, "hi", "b", AlertState::Firing, 0));
        assert!(flush(&mut n, 0).is_empty(), "group wait");
        assert_eq!(flush(&mut n, 10_000)[0].firing.len(), 2);
        let mute = |acked: &'static str, shelved: &'static str| {
            move |a: &AlertEntry| {
                if a.series == acked {
                    Mute::Acknowledged
                } else if a.series == shelved {
                    Mute::Shelved
                } else {
                    Mute::None
                }
            }
        };
        let run = |n: &mut Notifier, now: i64, m: &dyn Fn(&AlertEntry) -> Mute| {
            let (out, _) = n.flush(now, m);
            for x in &out {
                n.delivered(x, true, now);
            }
            out
        };
        // a acknowledged, b shelved: the repeat interval passes in silence.
        let out = run(&mut n, 10_000 + 3_600_000, &mute("a", "b"));
        assert!(out.is_empty(), "{out:?}");
        // a resolves: its resolution goes out even though it was acknowledged.
        n.apply(&alert(p, "hi", "a", AlertState::Resolved, 4_000_000));
        let out = run(&mut n, 4_000_000, &mute("a", "b"));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].firing.len(), out[0].resolved.len()), (0, 1));
        assert_eq!(out[0].resolved[0].series, "a");
        // The shelve ends while b still fires: announced again, as new
        // (after the group interval since the last notice).
        let out = run(&mut n, 4_000_000 + 60_000, &mute("", ""));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].firing[0].series, "b");
        // A shelved alert that resolves sends nothing.
        n.apply(&alert(p, "hi", "c", AlertState::Firing, 5_000_000));
        assert_eq!(run(&mut n, 5_000_000, &mute("", "")).len(), 1);
        n.apply(&alert(p, "hi", "c", AlertState::Resolved, 5_100_000));
        let (out, gone) = n.flush(5_200_000, mute("", "c"));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(gone.len(), 1, "forgotten without a notice");
    }
}
