//! OPC UA client devices (`adapter: opcUa`) with async-opcua.
//!
//! One task per device holds one session. Polled groups are read with one
//! Read call per group every `intervalMs`; subscribed groups get a
//! subscription each (sampling interval `intervalMs`, optional absolute
//! deadband) and every notification becomes samples of the group. When the
//! session is lost the device is `down`, every group publishes its tags as
//! failed (code 1003), and the task reconnects with exponential back-off
//! up to `maxBackoffMs`, re-checking the server certificate and creating
//! the subscriptions anew. Writes use the Write service and answer with the
//! server's status.

pub mod browse;
pub mod errors;
pub mod groups;
pub mod session;
pub mod values;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::DeviceState;
use weir_crds::gateway::{Device, GroupMode};
use weir_crds::message::{ErrorCode, WriteResponse};

use super::{HealthTable, WriteJob};
use crate::sample::Sample;
use groups::{Changes, GroupPlan};
use session::{Connected, Pki};

/// Where the agent gets the credential a device names (`opcUa.credential`):
/// the agent's store (fetched over its api channel, or its local
/// credentials file).
pub use crate::credentials::CredentialSource;

/// What OPC UA devices need from the agent beyond their config.
#[derive(Clone, Default)]
pub struct OpcUaContext {
    /// The agent's data dir: its application certificate and the trusted
    /// server certificates live under `opcua/`.
    pub data_dir: Option<PathBuf>,
    pub credentials: Option<Arc<dyn CredentialSource>>,
}

struct Task {
    device: Device,
    tx: mpsc::Sender<Sample>,
    health: Arc<HealthTable>,
    groups: Vec<GroupPlan>,
    timeout: Duration,
}

enum Ended {
    Cancelled,
    Lost(String),
}

impl Task {
    fn down(&self, why: &str) {
        tracing::warn!(device = %self.device.name, "device down: {why}");
        self.health
            .set(&self.device.name, DeviceState::Down, Some(why.to_string()));
    }

    async fn send(&self, s: Sample, cancel: &CancellationToken) -> bool {
        let n = s.readings() as u64;
        tokio::select! {
            _ = cancel.cancelled() => return false,
            r = self.tx.send(s) => if r.is_err() { return false },
        }
        self.health.add_readings(&self.device.name, n);
        true
    }

    /// Publish every group's tags as failed, so consumers see the outage.
    async fn publish_outage(&self, code: ErrorCode, cancel: &CancellationToken) -> bool {
        for g in &self.groups {
            if !self.send(groups::failed_sample(g, code), cancel).await {
                return false;
            }
        }
        true
    }

    /// Run the groups on an open session until it is lost or we stop.
    async fn run_session(
        &mut self,
        conn: &mut Connected,
        writes: &mut mpsc::Receiver<WriteJob>,
        cancel: &CancellationToken,
    ) -> Ended {
        let session = conn.session.clone();
        let (ctx, mut crx) = mpsc::unbounded_channel::<Changes>();
        for i in 0..self.groups.len() {
            self.groups[i].error = None;
            if self.groups[i].mode != GroupMode::Subscribe {
                continue;
            }
            let r = groups::subscribe(&session, i, &self.groups[i], ctx.clone(), self.timeout);
            match r.await {
                Err(e) => {
                    return Ended::Lost(format!("group '{}': {e}", self.groups[i].schema.group))
                }
                Ok(Some((s, why))) => {
                    self.groups[i].error = Some(why);
                    if !self.send(s, cancel).await {
                        return Ended::Cancelled;
                    }
                }
                Ok(None) => {}
            }
        }
        self.set_health();
        let now = Instant::now();
        for g in &mut self.groups {
            g.next = now;
        }
        loop {
            let due = self
                .groups
                .iter()
                .filter(|g| g.mode == GroupMode::Poll)
                .map(|g| g.next)
                .min();
            let sleep = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ended::Cancelled,
                r = &mut conn.lost => return Ended::Lost(r.unwrap_or_else(|_| "session ended".into())),
                Some(job) = writes.recv() => self.answer(&session, job).await,
                Some((gi, changes)) = crx.recv() => {
                    for s in groups::change_samples(&self.groups[gi], changes) {
                        if !self.send(s, cancel).await {
                            return Ended::Cancelled;
                        }
                    }
                }
                _ = sleep => {
                    if let Err(e) = self.poll_due(&session, cancel).await {
                        return e;
                    }
                }
            }
        }
    }

    async fn poll_due(
        &mut self,
        session: &opcua::client::Session,
        cancel: &CancellationToken,
    ) -> Result<(), Ended> {
        let now = Instant::now();
        for i in 0..self.groups.len() {
            let g = &mut self.groups[i];
            if g.mode != GroupMode::Poll || g.next > now {
                continue;
            }
            // Keep the schedule; skip ticks missed while the server was slow.
            while g.next <= now {
                g.next += g.every;
            }
            let (s, why) = groups::poll(session, &self.groups[i], self.timeout)
                .await
                .map_err(Ended::Lost)?;
            self.groups[i].error = why;
            if !self.send(s, cancel).await {
                return Err(Ended::Cancelled);
            }
        }
        self.set_health();
        Ok(())
    }

    /// `ok`, or `degraded` naming the first group's failing tag.
    fn set_health(&self) {
        match self.groups.iter().find_map(|g| g.error.as_deref()) {
            None => self.health.set(&self.device.name, DeviceState::Ok, None),
            Some(e) => self.health.set(
                &self.device.name,
                DeviceState::Degraded,
                Some(e.to_string()),
            ),
        }
    }

    async fn answer(&self, session: &opcua::client::Session, job: WriteJob) {
        let r = groups::write(session, &self.device, &job.request, self.timeout).await;
        let _ = job.reply.send(WriteResponse {
            correlation_id: job.request.correlation_id.clone(),
            ok: r.is_ok(),
            error: r.err(),
        });
    }
}

/// Answer writes with `why` until `until` (the device is not connected).
async fn refuse_writes_until(
    until: Instant,
    why: &str,
    writes: &mut mpsc::Receiver<WriteJob>,
    cancel: &CancellationToken,
) -> bool {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep_until(until) => return true,
            Some(job) = writes.recv() => {
                let _ = job.reply.send(WriteResponse {
                    correlation_id: job.request.correlation_id.clone(),
                    ok: false,
                    error: Some(format!("device is not connected: {why}")),
                });
            }
        }
    }
}

pub async fn run_device(
    device: Device,
    tx: mpsc::Sender<Sample>,
    mut writes: mpsc::Receiver<WriteJob>,
    cancel: CancellationToken,
    health: Arc<HealthTable>,
    ctx: OpcUaContext,
) {
    let Some(settings) = device.opc_ua.clone() else {
        health.set(
            &device.name,
            DeviceState::Down,
            Some("no opcUa settings".into()),
        );
        return;
    };
    let Some(data_dir) = ctx.data_dir.clone() else {
        health.set(
            &device.name,
            DeviceState::Down,
            Some("this agent has no data dir for its OPC UA certificates".into()),
        );
        return;
    };
    let pki = Pki::new(&data_dir);
    let max_backoff = Duration::from_millis(u64::from(settings.max_backoff_ms.max(100)));
    let mut task = Task {
        groups: groups::plan(&device),
        timeout: Duration::from_millis(u64::from(settings.timeout_ms.max(100))),
        device,
        tx,
        health,
    };
    let mut backoff = Duration::ZERO;
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            r = session::connect(&pki, &settings, ctx.credentials.as_ref()) => r,
        };
        let why = match connected {
            Ok(mut conn) => {
                tracing::info!(device = %task.device.name, endpoint = %settings.endpoint, "OPC UA session open");
                backoff = Duration::ZERO;
                match task.run_session(&mut conn, &mut writes, &cancel).await {
                    Ended::Cancelled => {
                        conn.close(task.timeout).await;
                        return;
                    }
                    Ended::Lost(why) => {
                        conn.close(Duration::from_millis(200)).await;
                        why
                    }
                }
            }
            Err(e) => e,
        };
        task.down(&why);
        if !task.publish_outage(ErrorCode::Disconnected, &cancel).await {
            return;
        }
        backoff = (backoff * 2).clamp(Duration::from_millis(100), max_backoff);
        tracing::debug!(device = %task.device.name, backoff_ms = backoff.as_millis() as u64, "reconnecting after back-off");
        if !refuse_writes_until(Instant::now() + backoff, &why, &mut writes, &cancel).await {
            return;
        }
    }
}
