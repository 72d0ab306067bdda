//! Device adapters (the sources): one task per device (Modbus) or per group
//! (simulator), each sending samples into the pipeline's bounded channel.
//! A config swap stops the old set and starts a new one; samples already in
//! the channel are processed, not lost.

pub mod codec;
pub mod modbus;
pub mod opcua;
pub mod simulator;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::{DeviceHealth, DeviceState};
use weir_crds::gateway::{AdapterKind, DataType, Device, GatewayConfig, Tag};
use weir_crds::message::{TagValue, WriteRequest, WriteResponse};

use crate::sample::{now_ms, Sample};

/// Health of every device, for status and metrics.
#[derive(Debug, Default)]
pub struct HealthTable {
    inner: Mutex<BTreeMap<String, DeviceHealth>>,
}

impl HealthTable {
    pub fn set(&self, device: &str, state: DeviceState, last_error: Option<String>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.entry(device.to_string()).or_insert_with(|| DeviceHealth {
            name: device.to_string(),
            state,
            last_error: None,
            readings: 0,
        });
        e.state = state;
        if last_error.is_some() || state == DeviceState::Ok {
            e.last_error = last_error;
        }
    }

    pub fn add_readings(&self, device: &str, n: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.get_mut(device) {
            e.readings += n;
        }
    }

    /// Keep only the devices of the running config.
    pub fn retain(&self, names: &[String]) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|k, _| names.contains(k));
    }

    pub fn snapshot(&self) -> Vec<DeviceHealth> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.values().cloned().collect()
    }
}

/// The tag a write request names, if its device has it and the value may
/// be written to it (the `write` attribute, the tag's type, `writeMin` and
/// `writeMax`).
pub(crate) fn writable_tag<'a>(device: &'a Device, req: &WriteRequest) -> Result<&'a Tag, String> {
    let tag = device
        .groups
        .iter()
        .flat_map(|g| g.tags.iter())
        .find(|t| t.name == req.tag)
        .ok_or_else(|| format!("device '{}' has no tag '{}'", device.name, req.tag))?;
    // The api checked the same rule; a config that changed since is
    // checked again here, before the device sees the value.
    weir_crds::gateway::write::check_write(tag, &req.value)?;
    Ok(tag)
}

/// A written value with the tag's scale and offset undone, so the device
/// gets its raw value (rounded for integer types).
pub(crate) fn raw_write_value(value: &TagValue, tag: &Tag) -> Result<TagValue, String> {
    Ok(match (tag.scale, tag.offset) {
        (None, None) => value.clone(),
        (s, o) => {
            let n = value.as_f64().ok_or("a scaled tag needs a number")?;
            let raw = (n - o.unwrap_or(0.0)) / s.unwrap_or(1.0);
            if matches!(tag.data_type, DataType::Float32 | DataType::Float64) {
                TagValue::Float(raw)
            } else {
                TagValue::Int(raw.round() as i64)
            }
        }
    })
}

/// A write request with where to send the answer.
pub struct WriteJob {
    pub request: WriteRequest,
    pub reply: oneshot::Sender<WriteResponse>,
}

/// The running adapters of one config.
pub struct Adapters {
    cancel: CancellationToken,
    handles: Vec<JoinHandle<()>>,
    writers: HashMap<String, mpsc::Sender<WriteJob>>,
}

impl Adapters {
    pub fn start(
        config: &GatewayConfig,
        tx: mpsc::Sender<Sample>,
        health: Arc<HealthTable>,
    ) -> Self {
        Self::start_with(config, tx, health, &opcua::OpcUaContext::default())
    }

    /// As [`Adapters::start`], with what OPC UA devices need from the agent.
    pub fn start_with(
        config: &GatewayConfig,
        tx: mpsc::Sender<Sample>,
        health: Arc<HealthTable>,
        opcua_ctx: &opcua::OpcUaContext,
    ) -> Self {
        let cancel = CancellationToken::new();
        let mut handles = Vec::new();
        let mut writers = HashMap::new();
        let mut buses = modbus::Buses::default();
        health.retain(
            &config
                .devices
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        );
        for device in &config.devices {
            match device.adapter {
                AdapterKind::Simulator => {
                    health.set(&device.name, DeviceState::Ok, None);
                    for group in &device.groups {
                        let sim = simulator::SimGroup::new(device, group);
                        handles.push(tokio::spawn(run_simulated_group(
                            sim,
                            Duration::from_millis(u64::from(group.interval_ms.max(1))),
                            tx.clone(),
                            cancel.child_token(),
                            health.clone(),
                        )));
                    }
                }
                AdapterKind::OpcUa => {
                    let (wtx, wrx) = mpsc::channel(64);
                    writers.insert(device.name.clone(), wtx);
                    handles.push(tokio::spawn(opcua::run_device(
                        device.clone(),
                        tx.clone(),
                        wrx,
                        cancel.child_token(),
                        health.clone(),
                        opcua_ctx.clone(),
                    )));
                }
                AdapterKind::ModbusTcp | AdapterKind::ModbusRtu | AdapterKind::ModbusRtuOverTcp => {
                    let (wtx, wrx) = mpsc::channel(64);
                    writers.insert(device.name.clone(), wtx);
                    modbus::spawn_device(
                        device,
                        &mut buses,
                        tx.clone(),
                        wrx,
                        &cancel,
                        health.clone(),
                        &mut handles,
                    );
                }
            }
        }
        Self {
            cancel,
            handles,
            writers,
        }
    }

    /// Stop every adapter and wait for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for h in self.handles {
            let _ = h.await;
        }
    }

    /// Route a write request to its device.
    pub async fn write(&self, request: WriteRequest) -> WriteResponse {
        let fail = |id: String, e: String| WriteResponse {
            correlation_id: id,
            ok: false,
            error: Some(e),
        };
        let Some(w) = self.writers.get(&request.device) else {
            let msg = format!(
                "device '{}' does not accept writes (unknown or simulated)",
                request.device
            );
            return fail(request.correlation_id, msg);
        };
        let (reply, rx) = oneshot::channel();
        let id = request.correlation_id.clone();
        if w.send(WriteJob { request, reply }).await.is_err() {
            return fail(id, "device is stopping".into());
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => fail(id, "device stopped before answering".into()),
            Err(_) => fail(id, "device did not answer within 30 s".into()),
        }
    }
}

async fn run_simulated_group(
    mut sim: simulator::SimGroup,
    every: Duration,
    tx: mpsc::Sender<Sample>,
    cancel: CancellationToken,
    health: Arc<HealthTable>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let device = sim.schema().device.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = sim.sample(now_ms());
        let n = s.readings() as u64;
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tx.send(s) => if r.is_err() { return },
        }
        health.add_readings(&device, n);
    }
}
