//! Modbus TCP devices with tokio-modbus.
//!
//! One task per device, so one dead PLC never delays another. Per group,
//! tags are sorted by (slave, area, register) and contiguous ones are read in
//! one request of at most `maxRegistersPerRequest` registers (coils and
//! discrete inputs: up to 16× that many bits). A failed request is retried
//! `retries` times (reconnecting, and switching to `backupHost` if set); when
//! a whole poll fails the device is `down` and waits an exponential back-off
//! (up to `maxBackoffMs`) before the next try. Failed tags are published as
//! error codes so consumers see the outage.

pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::{tcp, Context, Reader, Writer};
use tokio_modbus::prelude::{Slave, SlaveContext};
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::DeviceState;
use weir_crds::gateway::address::{Area, ModbusAddress};
use weir_crds::gateway::{DataType, Device, ModbusSettings, TagAttribute};
use weir_crds::message::{ErrorCode, WriteRequest, WriteResponse};

use super::codec::{decode_registers, encode_registers};
use super::{HealthTable, WriteJob};
use crate::sample::{now_ms, GroupSchema, Sample};

#[derive(Debug, Clone)]
struct PlannedTag {
    index: u16,
    addr: ModbusAddress,
    data_type: DataType,
}

/// One read request and the tags it serves.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub slave: u8,
    pub area: Area,
    pub start: u16,
    pub count: u16,
    tags: Vec<PlannedTag>,
}

struct GroupPlan {
    schema: Arc<GroupSchema>,
    every: Duration,
    next: Instant,
    requests: Vec<ReadPlan>,
    /// Tags whose address did not parse (validation should prevent this).
    bad: Vec<u16>,
}

/// Coalesce a group's tags into as few requests as the limits allow.
pub fn plan_requests(tags: &[(u16, ModbusAddress, DataType)], max_registers: u16) -> Vec<ReadPlan> {
    let mut sorted: Vec<PlannedTag> = tags
        .iter()
        .map(|(i, a, d)| PlannedTag {
            index: *i,
            addr: *a,
            data_type: *d,
        })
        .collect();
    sorted.sort_by_key(|t| (t.addr.slave, t.addr.area, t.addr.register));
    let mut out: Vec<ReadPlan> = Vec::new();
    for t in sorted {
        let qty = t.addr.quantity(t.data_type);
        let limit = if t.addr.area.is_bit_area() {
            // Bit reads allow up to 2000 per request.
            (u32::from(max_registers) * 16).min(2000) as u16
        } else {
            max_registers
        };
        let end = u32::from(t.addr.register) + u32::from(qty);
        if let Some(last) = out.last_mut() {
            let last_end = u32::from(last.start) + u32::from(last.count);
            let new_end = end.max(last_end);
            if last.slave == t.addr.slave
                && last.area == t.addr.area
                && u32::from(t.addr.register) <= last_end
                && new_end - u32::from(last.start) <= u32::from(limit)
            {
                last.count = (new_end - u32::from(last.start)) as u16;
                last.tags.push(t);
                continue;
            }
        }
        out.push(ReadPlan {
            slave: t.addr.slave,
            area: t.addr.area,
            start: t.addr.register,
            count: qty,
            tags: vec![t],
        });
    }
    out
}

enum ReadError {
    /// Connection lost or timed out: reconnect.
    Io(String, ErrorCode),
    /// The device answered with an exception: the connection is fine.
    Exception(String),
}

struct Conn {
    ctx: Option<Context>,
    settings: ModbusSettings,
    use_backup: bool,
}

impl Conn {
    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.settings.timeout_ms.max(10)))
    }

    async fn connect(&mut self) -> Result<(), String> {
        let host = match (&self.settings.backup_host, self.use_backup) {
            (Some(b), true) => b.clone(),
            _ => self.settings.host.clone(),
        };
        let target = format!("{host}:{}", self.settings.port);
        let addr: SocketAddr =
            tokio::time::timeout(self.timeout(), tokio::net::lookup_host(&target))
                .await
                .map_err(|_| format!("resolving {target} timed out"))?
                .map_err(|e| format!("resolving {target}: {e}"))?
                .next()
                .ok_or_else(|| format!("{target} has no address"))?;
        let stream = tokio::time::timeout(self.timeout(), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {target} timed out"))?
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        // A request is one small write answered before the next: with
        // Nagle on, a write command behind a read waits for a delayed ACK.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("setting TCP_NODELAY to {target}: {e}"))?;
        self.ctx = Some(tcp::attach(stream));
        Ok(())
    }

    /// Drop the connection and, if there is a backup host, try it next.
    fn fail_over(&mut self) {
        self.ctx = None;
        if self.settings.backup_host.is_some() {
            self.use_backup = !self.use_backup;
        }
    }

    async fn ctx(&mut self) -> Result<&mut Context, ReadError> {
        if self.ctx.is_none() {
            self.connect()
                .await
                .map_err(|e| ReadError::Io(e, ErrorCode::Disconnected))?;
        }
        Ok(self.ctx.as_mut().expect("connected"))
    }

    async fn read(&mut self, r: &ReadPlan) -> Result<Vec<u16>, ReadError> {
        let t = self.timeout();
        let ctx = self.ctx().await?;
        ctx.set_slave(Slave(r.slave));
        let io = |e: tokio_modbus::Error| ReadError::Io(e.to_string(), ErrorCode::Disconnected);
        let fut = async {
            match r.area {
                Area::Coil => ctx
                    .read_coils(r.start, r.count)
                    .await
                    .map(|x| x.map(|bits| bits.into_iter().map(u16::from).collect())),
                Area::DiscreteInput => ctx
                    .read_discrete_inputs(r.start, r.count)
                    .await
                    .map(|x| x.map(|bits| bits.into_iter().map(u16::from).collect())),
                Area::InputRegister => ctx.read_input_registers(r.start, r.count).await,
                Area::HoldingRegister => ctx.read_holding_registers(r.start, r.count).await,
            }
        };
        match tokio::time::timeout(t, fut).await {
            Err(_) => Err(ReadError::Io(
                format!("no answer within {} ms", t.as_millis()),
                ErrorCode::Timeout,
            )),
            Ok(Err(e)) => Err(io(e)),
            Ok(Ok(Err(ex))) => Err(ReadError::Exception(format!("device exception: {ex}"))),
            Ok(Ok(Ok(words))) => Ok(words),
        }
    }

    /// Read with retries; reconnects (and fails over) after I/O errors.
    async fn read_retrying(&mut self, r: &ReadPlan) -> Result<Vec<u16>, ReadError> {
        let mut attempt = 0;
        loop {
            match self.read(r).await {
                Ok(w) => return Ok(w),
                Err(ReadError::Exception(e)) => return Err(ReadError::Exception(e)),
                Err(ReadError::Io(e, code)) => {
                    self.fail_over();
                    if attempt >= self.settings.retries {
                        return Err(ReadError::Io(e, code));
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn write(&mut self, req: &WriteRequest, device: &Device) -> Result<(), String> {
        let (tag, _) = device
            .groups
            .iter()
            .flat_map(|g| g.tags.iter().map(move |t| (t, g)))
            .find(|(t, _)| t.name == req.tag)
            .ok_or_else(|| format!("device '{}' has no tag '{}'", device.name, req.tag))?;
        if !tag.attributes.contains(&TagAttribute::Write) {
            return Err(format!(
                "tag '{}' is not writable (attributes lack write)",
                tag.name
            ));
        }
        let addr = ModbusAddress::parse(&tag.address).map_err(|e| e.to_string())?;
        if !addr.area.writable() {
            return Err(format!("tag '{}' is in a read-only area", tag.name));
        }
        let t = self.timeout();
        // Undo the tag's scale/offset so the device gets its raw value.
        let value = match (&req.value, tag.scale, tag.offset) {
            (v, None, None) => v.clone(),
            (v, s, o) => {
                let n = v.as_f64().ok_or("a scaled tag needs a number")?;
                let raw = (n - o.unwrap_or(0.0)) / s.unwrap_or(1.0);
                if matches!(tag.data_type, DataType::Float32 | DataType::Float64) {
                    weir_crds::message::TagValue::Float(raw)
                } else {
                    weir_crds::message::TagValue::Int(raw.round() as i64)
                }
            }
        };
        let ctx = self.ctx().await.map_err(|e| match e {
            ReadError::Io(m, _) | ReadError::Exception(m) => m,
        })?;
        ctx.set_slave(Slave(addr.slave));
        let res = tokio::time::timeout(t, async {
            match addr.area {
                Area::Coil => {
                    let on = value.as_f64().ok_or("a coil needs a bool or number")? != 0.0;
                    ctx.write_single_coil(addr.register, on)
                        .await
                        .map_err(|e| e.to_string())
                }
                _ => {
                    let current = if tag.data_type == DataType::Bit {
                        let w = ctx
                            .read_holding_registers(addr.register, 1)
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| format!("device exception: {e}"))?;
                        w.first().copied()
                    } else {
                        None
                    };
                    let words = encode_registers(&value, &addr, tag.data_type, current)?;
                    if words.len() == 1 {
                        ctx.write_single_register(addr.register, words[0])
                            .await
                            .map_err(|e| e.to_string())
                    } else {
                        ctx.write_multiple_registers(addr.register, &words)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            }
        })
        .await;
        match res {
            Err(_) => {
                self.fail_over();
                Err(format!("no answer within {} ms", t.as_millis()))
            }
            Ok(Err(e)) => {
                self.fail_over();
                Err(e)
            }
            Ok(Ok(Err(ex))) => Err(format!("device exception: {ex}")),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

fn plan_groups(device: &Device, max_registers: u16) -> Vec<GroupPlan> {
    let now = Instant::now();
    device
        .groups
        .iter()
        .map(|g| {
            let mut tags = Vec::new();
            let mut bad = Vec::new();
            for (i, t) in g.tags.iter().enumerate() {
                match ModbusAddress::parse(&t.address) {
                    Ok(a) if a.check_type(t.data_type).is_ok() => {
                        tags.push((i as u16, a, t.data_type))
                    }
                    _ => bad.push(i as u16),
                }
            }
            GroupPlan {
                schema: Arc::new(GroupSchema {
                    device: device.name.clone(),
                    group: g.name.clone(),
                    tags: g.tags.iter().map(|t| t.name.clone()).collect(),
                }),
                every: Duration::from_millis(u64::from(g.interval_ms.max(1))),
                next: now,
                requests: plan_requests(&tags, max_registers),
                bad,
            }
        })
        .collect()
}

/// Apply one write request and answer it.
async fn answer_write(conn: &mut Conn, job: WriteJob, device: &Device) {
    let r = conn.write(&job.request, device).await;
    let _ = job.reply.send(WriteResponse {
        correlation_id: job.request.correlation_id.clone(),
        ok: r.is_ok(),
        error: r.err(),
    });
}

pub async fn run_device(
    device: Device,
    tx: mpsc::Sender<Sample>,
    mut writes: mpsc::Receiver<WriteJob>,
    cancel: CancellationToken,
    health: Arc<HealthTable>,
) {
    let Some(settings) = device.modbus.clone() else {
        health.set(
            &device.name,
            DeviceState::Down,
            Some("no modbus settings".into()),
        );
        return;
    };
    let mut groups = plan_groups(&device, settings.max_registers_per_request.clamp(1, 125));
    let max_backoff = Duration::from_millis(u64::from(settings.max_backoff_ms.max(100)));
    let mut conn = Conn {
        ctx: None,
        settings,
        use_backup: false,
    };
    let mut backoff = Duration::ZERO;
    let mut blocked_until = Instant::now();
    loop {
        let due = groups
            .iter()
            .map(|g| g.next)
            .min()
            .unwrap_or_else(Instant::now)
            .max(blocked_until);
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(job) = writes.recv() => {
                answer_write(&mut conn, job, &device).await;
                continue;
            }
            _ = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        let mut any_ok = false;
        let mut any_err: Option<String> = None;
        let mut all_io_failed = true;
        for g in groups.iter_mut().filter(|g| g.next <= now) {
            // Keep the schedule; skip ticks missed while the device was slow.
            while g.next <= now {
                g.next += g.every;
            }
            let ts = now_ms();
            let mut values = Vec::new();
            let mut errors: Vec<(u16, i32)> = g
                .bad
                .iter()
                .map(|i| (*i, ErrorCode::Decode as i32))
                .collect();
            for r in &g.requests {
                match conn.read_retrying(r).await {
                    Ok(words) => {
                        any_ok = true;
                        all_io_failed = false;
                        for t in &r.tags {
                            let off = (t.addr.register - r.start) as usize;
                            let qty = t.addr.quantity(t.data_type) as usize;
                            let slice = &words[off.min(words.len())..(off + qty).min(words.len())];
                            match decode_registers(slice, &t.addr, t.data_type) {
                                Ok(v) => values.push((t.index, v)),
                                Err(_) => errors.push((t.index, ErrorCode::Decode as i32)),
                            }
                        }
                    }
                    Err(ReadError::Exception(e)) => {
                        all_io_failed = false;
                        errors.extend(
                            r.tags
                                .iter()
                                .map(|t| (t.index, ErrorCode::DeviceException as i32)),
                        );
                        any_err = Some(e);
                    }
                    Err(ReadError::Io(e, code)) => {
                        errors.extend(r.tags.iter().map(|t| (t.index, code as i32)));
                        any_err = Some(e);
                    }
                }
                if cancel.is_cancelled() {
                    return;
                }
                // A write waiting now goes before the round's next read, so
                // it waits for one request at most, not a whole poll round
                // (on a PLC answering in 5 ms, 8 requests: up to 40 ms).
                while let Ok(job) = writes.try_recv() {
                    answer_write(&mut conn, job, &device).await;
                }
            }
            let n = (values.len() + errors.len()) as u64;
            let s = Sample {
                schema: g.schema.clone(),
                ts_ms: ts,
                values,
                errors,
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = tx.send(s) => if r.is_err() { return },
            }
            health.add_readings(&device.name, n);
        }
        match (&any_err, any_ok) {
            (None, _) => {
                backoff = Duration::ZERO;
                health.set(&device.name, DeviceState::Ok, None);
            }
            (Some(e), true) => {
                backoff = Duration::ZERO;
                health.set(&device.name, DeviceState::Degraded, Some(e.clone()));
            }
            (Some(e), false) => {
                if all_io_failed {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), max_backoff);
                    blocked_until = Instant::now() + backoff;
                    tracing::warn!(device = %device.name, backoff_ms = backoff.as_millis() as u64, "device down: {e}");
                    health.set(&device.name, DeviceState::Down, Some(e.clone()));
                } else {
                    health.set(&device.name, DeviceState::Degraded, Some(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
