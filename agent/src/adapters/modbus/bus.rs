//! A shared Modbus RTU bus: a serial line, or a serial device server's TCP
//! port. RTU has no transaction ids, so only one request may be on the line
//! at a time: one task owns the connection and serves the requests of every
//! device on it, in the order they come (each device waits for its answer
//! before asking again, so devices take turns).
//!
//! A unit that does not answer holds the line for its timeout (and
//! retries), then backs off: its requests are answered at once with an
//! error, without touching the line, until its back-off passes (doubling
//! from 100 ms up to the device's `maxBackoffMs`). So one dead unit costs
//! the others one timeout per back-off period, not one per poll.
//!
//! RTU answers carry no request id: an answer arriving after its request
//! timed out can be taken for the next request's. The client drops what it
//! buffered before each request, a header from another unit is refused,
//! and an answer of the wrong length is refused (conn.rs); a late answer
//! of the same unit, function and length is not caught, as on any RTU
//! master, which is why `timeoutMs` must exceed the slowest unit's answer.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_crds::gateway::{AdapterKind, Device, ModbusTiming};
use weir_crds::message::ErrorCode;

use super::conn::{inter_frame_delay, Conn, ReadError, Transport, WriteOp};
use super::ReadPlan;

enum BusOp {
    Read(ReadPlan, oneshot::Sender<Result<Vec<u16>, ReadError>>),
    Write(WriteOp, oneshot::Sender<Result<(), ReadError>>),
}

/// A request with the timing of the device that sends it.
struct BusJob {
    op: BusOp,
    timing: ModbusTiming,
}

/// A device's way onto its bus.
#[derive(Clone)]
pub(super) struct BusHandle {
    tx: mpsc::Sender<BusJob>,
}

fn stopped() -> ReadError {
    ReadError::Io("the bus is stopping".into(), ErrorCode::Disconnected)
}

impl BusHandle {
    pub(super) async fn read(
        &self,
        plan: &ReadPlan,
        timing: ModbusTiming,
    ) -> Result<Vec<u16>, ReadError> {
        let (reply, rx) = oneshot::channel();
        let op = BusOp::Read(plan.clone(), reply);
        if self.tx.send(BusJob { op, timing }).await.is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    pub(super) async fn write(&self, op: WriteOp, timing: ModbusTiming) -> Result<(), ReadError> {
        let (reply, rx) = oneshot::channel();
        let op = BusOp::Write(op, reply);
        if self.tx.send(BusJob { op, timing }).await.is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The buses of one config, keyed by serial port or host:port, so the
/// devices naming the same line share one connection.
#[derive(Default)]
pub struct Buses {
    by_line: HashMap<String, BusHandle>,
}

impl Buses {
    /// The bus of an RTU device, started on first use.
    pub(super) fn join(
        &mut self,
        device: &Device,
        cancel: &CancellationToken,
        handles: &mut Vec<JoinHandle<()>>,
    ) -> Result<BusHandle, String> {
        let (key, transport, gap) = match (device.adapter, &device.serial, &device.modbus) {
            (AdapterKind::ModbusRtu, Some(s), _) => (
                format!("serial:{}", s.port),
                Transport::Serial(s.clone()),
                inter_frame_delay(s),
            ),
            (AdapterKind::ModbusRtuOverTcp, _, Some(m)) => (
                format!("tcp:{}:{}", m.host, m.port),
                Transport::Tcp {
                    settings: m.clone(),
                    use_backup: false,
                    rtu: true,
                },
                // The device server keeps the line's silences itself.
                Duration::ZERO,
            ),
            (AdapterKind::ModbusRtu, None, _) => {
                return Err("devices[].serial: a modbusRtu device needs serial settings".into())
            }
            (AdapterKind::ModbusRtuOverTcp, _, None) => return Err(
                "devices[].modbus: a modbusRtuOverTcp device needs modbus settings (host, port)"
                    .into(),
            ),
            (other, _, _) => return Err(format!("adapter {other:?} does not use an RTU bus")),
        };
        if let Some(h) = self.by_line.get(&key) {
            return Ok(h.clone());
        }
        let (tx, rx) = mpsc::channel(64);
        tracing::info!(line = %transport.target(), gap_us = gap.as_micros() as u64, "modbus rtu bus starting");
        handles.push(tokio::spawn(run_bus(
            Conn::new(transport),
            gap,
            rx,
            cancel.child_token(),
        )));
        let h = BusHandle { tx };
        self.by_line.insert(key, h.clone());
        Ok(h)
    }
}

/// Back-off of one unit that stopped answering.
#[derive(Default)]
struct Unit {
    backoff: Duration,
    until: Option<Instant>,
}

struct Bus {
    conn: Conn,
    gap: Duration,
    /// The line must stay silent until then (inter-frame delay).
    quiet_until: Instant,
    units: HashMap<u8, Unit>,
}

impl Bus {
    /// `&mut`: the connection is not `Sync`, so `&Bus` may not cross an await.
    async fn wait_quiet(&mut self) {
        tokio::time::sleep_until(self.quiet_until).await;
    }

    fn done(&mut self) {
        self.quiet_until = Instant::now() + self.gap;
    }

    fn answered(&mut self, unit: u8) {
        self.units.remove(&unit);
    }

    fn backing_off(&self, unit: u8) -> Option<Duration> {
        let until = self.units.get(&unit)?.until?;
        until.checked_duration_since(Instant::now())
    }

    fn back_off(&mut self, unit: u8, max: Duration) {
        let u = self.units.entry(unit).or_default();
        u.backoff = (u.backoff * 2).clamp(Duration::from_millis(100), max);
        u.until = Some(Instant::now() + u.backoff);
        tracing::warn!(line = %self.conn.transport.target(), unit, backoff_ms = u.backoff.as_millis() as u64, "modbus rtu unit not answering; backing off");
    }

    async fn read(&mut self, plan: &ReadPlan, timing: ModbusTiming) -> Result<Vec<u16>, ReadError> {
        if let Some(left) = self.backing_off(plan.slave) {
            return Err(ReadError::Skipped(
                format!(
                    "unit {} did not answer; skipped for {} ms more while it backs off",
                    plan.slave,
                    left.as_millis()
                ),
                ErrorCode::Timeout,
            ));
        }
        let t = Duration::from_millis(u64::from(timing.timeout_ms.max(10)));
        let mut attempt = 0;
        loop {
            self.wait_quiet().await;
            let r = self.conn.read(plan, t).await;
            self.done();
            match r {
                Ok(w) => {
                    self.answered(plan.slave);
                    return Ok(w);
                }
                Err(ReadError::Io(e, code)) => {
                    // A silent unit is no reason to reopen the line; a
                    // broken socket or port is.
                    if code != ErrorCode::Timeout {
                        self.conn.disconnect();
                    }
                    if attempt >= timing.retries {
                        if code == ErrorCode::Timeout {
                            // At least the floor: `clamp` panics on min > max.
                            let max =
                                Duration::from_millis(u64::from(timing.max_backoff_ms.max(100)));
                            self.back_off(plan.slave, max);
                        }
                        return Err(ReadError::Io(format!("unit {}: {e}", plan.slave), code));
                    }
                    attempt += 1;
                }
                Err(other) => {
                    // An exception is an answer: the unit is there.
                    self.answered(plan.slave);
                    return Err(other);
                }
            }
        }
    }

    /// Writes are tried even on a unit that backs off: someone asked now.
    async fn write(&mut self, op: WriteOp, timing: ModbusTiming) -> Result<(), ReadError> {
        let t = Duration::from_millis(u64::from(timing.timeout_ms.max(10)));
        self.wait_quiet().await;
        let r = self.conn.write(&op, t).await;
        self.done();
        match &r {
            Ok(()) | Err(ReadError::Exception(_)) => self.answered(op.slave()),
            Err(ReadError::Io(_, code)) if *code != ErrorCode::Timeout => self.conn.disconnect(),
            Err(_) => {}
        }
        r
    }
}

async fn run_bus(
    conn: Conn,
    gap: Duration,
    mut jobs: mpsc::Receiver<BusJob>,
    cancel: CancellationToken,
) {
    let mut bus = Bus {
        conn,
        gap,
        quiet_until: Instant::now(),
        units: HashMap::new(),
    };
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            j = jobs.recv() => match j { Some(j) => j, None => return },
        };
        match job.op {
            BusOp::Read(plan, reply) => {
                let r = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = bus.read(&plan, job.timing) => r,
                };
                let _ = reply.send(r);
            }
            BusOp::Write(op, reply) => {
                let r = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = bus.write(op, job.timing) => r,
                };
                let _ = reply.send(r);
            }
        }
    }
}
