//! `EdgeGateway.status` from heartbeats, with the Kubernetes backend: what
//! an agent reports (`online`, `appliedVersion`, `lastHeartbeat`, the
//! refused bundle, device health, queue depth, dropped readings; the names
//! are `EdgeGatewayStatus::HEARTBEAT_FIELDS`) goes to the status
//! subresource by server-side apply with field manager `weir-api`. The
//! operator applies only its own fields (phase, conditions, config
//! version/hash, observed generation) under its own manager, so neither
//! removes the other's.
//!
//! Writes are rate-limited per gateway ([`decide`]): a change of anything
//! but the heartbeat time and the queue counters is written at once (at
//! most one write a second, [`MIN_GAP`]); otherwise the status is refreshed
//! at most once per [`REFRESH_FLOOR`] or heartbeat interval, whichever is
//! longer. The heartbeat never waits for Kubernetes: a write runs in a task
//! of its own, one at a time per gateway, [`CONCURRENT_WRITES`] at a time
//! in all; a failed write is retried with backoff and logged once per
//! streak of failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use kube::api::{Api, Patch, PatchParams};
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use uuid::Uuid;
use weir_crds::agent_api::AgentStatus;
use weir_crds::edge_gateway::{DeviceStatus, RefusedStatus};
use weir_crds::{EdgeGateway, EdgeGatewayStatus};

use super::entities::gateway;
use super::kube_backend::{namespace, FIELD_MANAGER};
use crate::db::entities::org;
use crate::state::AppState;

/// Shortest time between two status writes of one gateway.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// A status whose only news is the heartbeat time or queue counters is
/// written at most this often (or once per heartbeat interval, if longer).
pub const REFRESH_FLOOR: Duration = Duration::from_secs(60);
/// Status writes in flight at once, over all gateways.
pub const CONCURRENT_WRITES: usize = 4;
/// Longest wait before a failed write is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Fields that change on nearly every heartbeat: news in them alone waits
/// for the refresh.
const VOLATILE: &[&str] = &["lastHeartbeat", "queueDepth", "droppedReadings"];

/// First `max` characters of `s` (the CRD's maxLength counts characters).
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The heartbeat part of `EdgeGateway.status` for the gateway row `g` (its
/// last report is `g.status`): a JSON object holding only
/// `EdgeGatewayStatus::HEARTBEAT_FIELDS`. Each apply sends all of them
/// (server-side apply removes the fields a manager stops sending): a field
/// missing here is one the agent has not reported or no longer reports.
pub fn status_patch(g: &gateway::Model) -> Value {
    let report: Option<AgentStatus> = g
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    let status = EdgeGatewayStatus {
        online: Some(g.online.unwrap_or(false)),
        applied_version: g.applied_version.and_then(|v| u64::try_from(v).ok()),
        last_heartbeat: g
            .last_heartbeat
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        refused: report
            .as_ref()
            .and_then(|r| r.refused.as_ref())
            .map(|r| RefusedStatus {
                version: r.version,
                reason: cut(&r.reason, EdgeGatewayStatus::REASON_LENGTH),
                at: r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            }),
        devices: report
            .as_ref()
            .map(|r| {
                r.devices
                    .iter()
                    .take(weir_crds::gateway::limits::DEVICES)
                    .map(|d| DeviceStatus {
                        name: cut(&d.name, weir_crds::gateway::limits::NAME_LENGTH),
                        state: d.state,
                        last_error: d
                            .last_error
                            .as_deref()
                            .map(|e| cut(e, EdgeGatewayStatus::DEVICE_ERROR_LENGTH)),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        queue_depth: report.as_ref().map(|r| r.queue_depth),
        dropped_readings: report.as_ref().map(|r| r.dropped_readings),
        ..Default::default()
    };
    let Ok(Value::Object(mut fields)) = serde_json::to_value(&status) else {
        unreachable!("a status serializes to an object");
    };
    fields.retain(|k, _| EdgeGatewayStatus::HEARTBEAT_FIELDS.contains(&k.as_str()));
    Value::Object(fields)
}

/// The patch without the fields that change on nearly every heartbeat.
fn settled(patch: &Value) -> Value {
    let mut p = patch.clone();
    if let Value::Object(m) = &mut p {
        for k in VOLATILE {
            m.remove(*k);
        }
    }
    p
}

/// Whether a gateway's status should be written now, given what was last
/// written (and when) and the new status.
pub fn decide(
    last: Option<&(Value, Instant)>,
    new: &Value,
    now: Instant,
    heartbeat: Duration,
) -> bool {
    let Some((old, at)) = last else {
        return true;
    };
    if old == new {
        return false;
    }
    settled(old) != settled(new) || now.duration_since(*at) >= heartbeat.max(REFRESH_FLOOR)
}

/// Where a gateway's status goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

#[derive(Default)]
struct Slot {
    /// What was last written (or is being written) and when.
    written: Option<(Value, Instant)>,
    /// The newest status waiting for the gateway's writer task.
    pending: Option<Value>,
    /// A writer task runs for this gateway.
    running: bool,
    failures: u32,
    /// No new write before this (after a failure).
    not_before: Option<Instant>,
}

/// Per-gateway memory of what was written, and the tasks that write.
pub struct Writer {
    slots: Mutex<HashMap<Uuid, Slot>>,
    permits: tokio::sync::Semaphore,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            slots: Mutex::new(HashMap::new()),
            permits: tokio::sync::Semaphore::new(CONCURRENT_WRITES),
        }
    }
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `patch` for gateway `id` would be written (see [`decide`]).
    pub fn wants(&self, id: Uuid, patch: &Value, heartbeat: Duration) -> bool {
        let now = Instant::now();
        let slots = self.lock();
        let Some(s) = slots.get(&id) else {
            return true;
        };
        // A queued status is replaced by the newer one.
        if s.pending.is_some() {
            return true;
        }
        if s.not_before.is_some_and(|t| now < t) {
            return false;
        }
        decide(s.written.as_ref(), patch, now, heartbeat)
    }

    /// Queue `patch` for gateway `id` if [`Writer::wants`] it, and start the
    /// gateway's writer task if none runs. Returns at once.
    pub fn offer(
        self: &Arc<Self>,
        client: &kube::Client,
        id: Uuid,
        target: Target,
        patch: Value,
        heartbeat: Duration,
    ) {
        if !self.wants(id, &patch, heartbeat) {
            return;
        }
        let mut slots = self.lock();
        // Gateways gone for a day are forgotten.
        if slots.len() > 10_000 {
            let day = Duration::from_secs(86_400);
            slots.retain(|_, s| {
                s.running || s.written.as_ref().is_some_and(|(_, at)| at.elapsed() < day)
            });
        }
        let s = slots.entry(id).or_default();
        s.pending = Some(patch);
        if !s.running {
            s.running = true;
            let (me, client) = (self.clone(), client.clone());
            tokio::spawn(async move { me.run(client, id, target).await });
        }
    }

    /// Write the gateway's pending status until none is left.
    async fn run(self: Arc<Self>, client: kube::Client, id: Uuid, target: Target) {
        let api: Api<EdgeGateway> = Api::namespaced(client, &target.namespace);
        loop {
            let (patch, wait) = {
                let mut slots = self.lock();
                let s = slots.entry(id).or_default();
                let now = Instant::now();
                let ready = [
                    s.written.as_ref().map(|(_, at)| *at + MIN_GAP),
                    s.not_before,
                ]
                .into_iter()
                .flatten()
                .max()
                .filter(|t| *t > now);
                match (ready, s.pending.take()) {
                    (_, None) => {
                        s.running = false;
                        return;
                    }
                    (Some(t), Some(p)) => {
                        s.pending = Some(p);
                        (None, t - now)
                    }
                    (None, Some(p)) => {
                        s.written = Some((p.clone(), now));
                        (Some(p), Duration::ZERO)
                    }
                }
            };
            let Some(patch) = patch else {
                tokio::time::sleep(wait).await;
                continue;
            };
            let result = {
                let _permit = self.permits.acquire().await;
                write(&api, &target.name, &patch).await
            };
            let mut slots = self.lock();
            let s = slots.entry(id).or_default();
            match result {
                Ok(()) => {
                    if s.failures > 0 {
                        tracing::info!(gateway = %target.name, namespace = %target.namespace, failures = s.failures, "EdgeGateway status written again");
                    }
                    s.failures = 0;
                    s.not_before = None;
                }
                Err(e) => {
                    s.failures += 1;
                    if s.failures == 1 {
                        tracing::warn!(gateway = %target.name, namespace = %target.namespace, error = %e, "cannot write EdgeGateway status (retried with backoff; logged once until it works)");
                    }
                    let backoff = Duration::from_secs(1 << s.failures.min(9)).min(MAX_BACKOFF);
                    s.not_before = Some(Instant::now() + backoff);
                    s.written = None;
                    let gone = matches!(&e, kube::Error::Api(r) if r.code == 404);
                    // A gateway whose object is gone waits for the next heartbeat.
                    if !gone && s.pending.is_none() {
                        s.pending = Some(patch);
                    }
                }
            }
        }
    }
}

/// One server-side apply of the heartbeat fields on the status subresource.
async fn write(api: &Api<EdgeGateway>, name: &str, status: &Value) -> Result<(), kube::Error> {
    let obj = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "EdgeGateway",
        "metadata": {"name": name},
        "status": status,
    });
    // Forced: these fields are the api's even if another manager once set them.
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .map(|_| ())
}

/// After the gateway row `g` changed (a heartbeat, or the monitor marking it
/// offline): queue its status for `EdgeGateway.status` when the Kubernetes
/// backend is active and [`decide`] says so. Never waits for Kubernetes.
pub async fn gateway_changed(st: &AppState, g: &gateway::Model) {
    let Some(client) = &st.fleet.kube else {
        return;
    };
    let patch = status_patch(g);
    let heartbeat = Duration::from_secs(u64::try_from(g.heartbeat_interval_s.max(1)).unwrap_or(1));
    let writer = &st.fleet.status_writer;
    if !writer.wants(g.id, &patch, heartbeat) {
        return;
    }
    let o = match org::Entity::find_by_id(g.org_id).one(&st.db).await {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, gateway = %g.slug, "EdgeGateway status: cannot read the organization");
            return;
        }
    };
    let target = Target {
        namespace: namespace(&o.slug),
        name: g.slug.clone(),
    };
    writer.offer(client, g.id, target, patch, heartbeat);
}

#[cfg(test)]
mod tests;
