//! Modbus devices with tokio-modbus: Modbus TCP, RTU over TCP and RTU on a
//! serial line (`conn.rs` opens each; `bus.rs` shares an RTU line).
//!
//! One task per device, so one dead PLC never delays another (RTU devices
//! on one line take turns on it, see `bus.rs`). Per group,
//! tags are sorted by (slave, area, register) and contiguous ones are read in
//! one request of at most `maxRegistersPerRequest` registers (coils and
//! discrete inputs: up to 16× that many bits). A failed request is retried
//! `retries` times (reconnecting, and switching to `backupHost` if set); when
//! a whole poll fails the device is `down` and waits an exponential back-off
//! (up to `maxBackoffMs`) before the next try (on an RTU bus, a unit that
//! does not answer backs off alone and its requests are skipped meanwhile).
//! Failed tags are published as
//! error codes so consumers see the outage.

mod bus;
mod conn;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::agent_api::DeviceState;
use weir_crds::gateway::address::{Area, ModbusAddress};
use weir_crds::gateway::{AdapterKind, DataType, Device, ModbusTiming};
use weir_crds::message::{ErrorCode, WriteResponse};

use bus::BusHandle;
pub use bus::Buses;
use conn::{Conn, ReadError, Transport, WriteOp};

use super::codec::decode_registers;
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

/// How a device reaches its units: its own connection (Modbus TCP) or a
/// shared RTU bus.
enum Link {
    Direct(Conn),
    Bus(BusHandle),
}

impl Link {
    /// Read with retries. Modbus TCP reconnects (and fails over) after I/O
    /// errors; a bus retries and backs off per unit itself.
    async fn read(&mut self, r: &ReadPlan, timing: ModbusTiming) -> Result<Vec<u16>, ReadError> {
        let conn = match self {
            Link::Bus(bus) => return bus.read(r, timing).await,
            Link::Direct(conn) => conn,
        };
        let t = timeout_of(timing);
        let mut attempt = 0;
        loop {
            match conn.read(r, t).await {
                Err(ReadError::Io(e, code)) => {
                    conn.disconnect();
                    if attempt >= timing.retries {
                        return Err(ReadError::Io(e, code));
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn write(&mut self, op: WriteOp, timing: ModbusTiming) -> Result<(), ReadError> {
        match self {
            Link::Bus(bus) => bus.write(op, timing).await,
            Link::Direct(conn) => {
                let r = conn.write(&op, timeout_of(timing)).await;
                if let Err(ReadError::Io(..)) = r {
                    conn.disconnect();
                }
                r
            }
        }
    }
}

fn timeout_of(timing: ModbusTiming) -> Duration {
    Duration::from_millis(u64::from(timing.timeout_ms.max(10)))
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
async fn answer_write(link: &mut Link, timing: ModbusTiming, job: WriteJob, device: &Device) {
    let r = match WriteOp::prepare(&job.request, device) {
        Ok(op) => link.write(op, timing).await.map_err(ReadError::message),
        Err(e) => Err(e),
    };
    let _ = job.reply.send(WriteResponse {
        correlation_id: job.request.correlation_id.clone(),
        ok: r.is_ok(),
        error: r.err(),
    });
}

/// Start a Modbus device of any transport: Modbus TCP gets a connection
/// of its own; RTU devices join (or start) the bus of their line.
pub fn spawn_device(
    device: &Device,
    buses: &mut Buses,
    tx: mpsc::Sender<Sample>,
    writes: mpsc::Receiver<WriteJob>,
    cancel: &CancellationToken,
    health: Arc<HealthTable>,
    handles: &mut Vec<JoinHandle<()>>,
) {
    let link = match device.adapter {
        AdapterKind::ModbusTcp => match &device.modbus {
            Some(m) => Ok(Link::Direct(Conn::new(Transport::Tcp {
                settings: m.clone(),
                use_backup: false,
                rtu: false,
            }))),
            None => Err("no modbus settings".to_string()),
        },
        _ => buses.join(device, cancel, handles).map(Link::Bus),
    };
    let (link, timing) = match (link, device.modbus_timing()) {
        (Ok(l), Some(t)) => (l, t),
        (Err(e), _) => return health.set(&device.name, DeviceState::Down, Some(e)),
        (_, None) => {
            let e = "no modbus or serial settings".to_string();
            return health.set(&device.name, DeviceState::Down, Some(e));
        }
    };
    handles.push(tokio::spawn(run_device(
        device.clone(),
        link,
        timing,
        tx,
        writes,
        cancel.child_token(),
        health,
    )));
}

/// What one poll round saw, for the device's health.
#[derive(Default)]
struct Round {
    any_ok: bool,
    last_error: Option<String>,
    /// Every request failed without an answer (tried or skipped).
    all_io_failed: bool,
    /// At least one request was really tried and failed without an answer.
    tried_io: bool,
}

/// Read one group's requests; a write waiting goes before the next read.
async fn poll_group(
    g: &GroupPlan,
    link: &mut Link,
    timing: ModbusTiming,
    writes: &mut mpsc::Receiver<WriteJob>,
    device: &Device,
    round: &mut Round,
) -> Sample {
    let ts = now_ms();
    let mut values = Vec::new();
    let mut errors: Vec<(u16, i32)> = g
        .bad
        .iter()
        .map(|i| (*i, ErrorCode::Decode as i32))
        .collect();
    for r in &g.requests {
        match link.read(r, timing).await {
            Ok(words) => {
                round.any_ok = true;
                round.all_io_failed = false;
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
                round.all_io_failed = false;
                errors.extend(
                    r.tags
                        .iter()
                        .map(|t| (t.index, ErrorCode::DeviceException as i32)),
                );
                round.last_error = Some(e);
            }
            Err(ReadError::Io(e, code)) => {
                round.tried_io = true;
                errors.extend(r.tags.iter().map(|t| (t.index, code as i32)));
                round.last_error = Some(e);
            }
            Err(ReadError::Skipped(e, code)) => {
                errors.extend(r.tags.iter().map(|t| (t.index, code as i32)));
                round.last_error = Some(e);
            }
        }
        // A write waiting now goes before the round's next read, so it
        // waits for one request at most, not a whole poll round (on a PLC
        // answering in 5 ms, 8 requests: up to 40 ms).
        while let Ok(job) = writes.try_recv() {
            answer_write(link, timing, job, device).await;
        }
    }
    Sample {
        schema: g.schema.clone(),
        ts_ms: ts,
        values,
        errors,
    }
}

async fn run_device(
    device: Device,
    mut link: Link,
    timing: ModbusTiming,
    tx: mpsc::Sender<Sample>,
    mut writes: mpsc::Receiver<WriteJob>,
    cancel: CancellationToken,
    health: Arc<HealthTable>,
) {
    let mut groups = plan_groups(&device, timing.max_registers_per_request.clamp(1, 125));
    let max_backoff = Duration::from_millis(u64::from(timing.max_backoff_ms.max(100)));
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
                answer_write(&mut link, timing, job, &device).await;
                continue;
            }
            _ = tokio::time::sleep_until(due) => {}
        }
        let now = Instant::now();
        let mut round = Round {
            all_io_failed: true,
            ..Round::default()
        };
        for g in groups.iter_mut().filter(|g| g.next <= now) {
            // Keep the schedule; skip ticks missed while the device was slow.
            while g.next <= now {
                g.next += g.every;
            }
            let s = tokio::select! {
                _ = cancel.cancelled() => return,
                s = poll_group(g, &mut link, timing, &mut writes, &device, &mut round) => s,
            };
            let n = (s.values.len() + s.errors.len()) as u64;
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = tx.send(s) => if r.is_err() { return },
            }
            health.add_readings(&device.name, n);
        }
        match (&round.last_error, round.any_ok) {
            (None, _) => {
                backoff = Duration::ZERO;
                health.set(&device.name, DeviceState::Ok, None);
            }
            (Some(e), true) => {
                backoff = Duration::ZERO;
                health.set(&device.name, DeviceState::Degraded, Some(e.clone()));
            }
            (Some(e), false) if round.all_io_failed => {
                // Requests skipped by a bus (their unit backs off) are not
                // a reason to wait longer: the bus already paces them.
                if round.tried_io {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), max_backoff);
                    blocked_until = Instant::now() + backoff;
                    tracing::warn!(device = %device.name, backoff_ms = backoff.as_millis() as u64, "device down: {e}");
                }
                health.set(&device.name, DeviceState::Down, Some(e.clone()));
            }
            (Some(e), false) => {
                health.set(&device.name, DeviceState::Degraded, Some(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
