//! One Modbus connection, whatever carries it: Modbus TCP (MBAP frames),
//! RTU frames over a TCP socket (serial device servers), or RTU on a serial
//! line. Requests and their errors are the same on all three; only how the
//! connection is opened differs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_modbus::client::{rtu, tcp, Context, Reader, Writer};
use tokio_modbus::prelude::{Slave, SlaveContext};
use tokio_serial::SerialPortBuilderExt;
use weir_crds::gateway::address::{Area, ModbusAddress};
use weir_crds::gateway::{DataType, Device, ModbusSettings, Parity, SerialSettings};
use weir_crds::message::{ErrorCode, TagValue, WriteRequest};

use super::super::codec::encode_registers;
use super::ReadPlan;

pub(super) enum ReadError {
    /// Connection lost or timed out.
    Io(String, ErrorCode),
    /// The device answered with an exception: the connection is fine.
    Exception(String),
    /// Not tried: the unit did not answer lately and is backing off, so
    /// the bus serves the units that do.
    Skipped(String, ErrorCode),
}

impl ReadError {
    pub(super) fn message(self) -> String {
        match self {
            ReadError::Io(m, _) | ReadError::Exception(m) | ReadError::Skipped(m, _) => m,
        }
    }
}

/// What carries the frames.
#[derive(Clone, Debug)]
pub(super) enum Transport {
    /// Modbus TCP (MBAP frames), or RTU frames (address, PDU, CRC) over a
    /// TCP socket when `rtu`; a failing host switches to `backupHost` if set.
    Tcp {
        settings: ModbusSettings,
        use_backup: bool,
        rtu: bool,
    },
    /// RTU on a serial line.
    Serial(SerialSettings),
}

impl Transport {
    /// Where the frames go, for messages and for finding shared buses.
    pub(super) fn target(&self) -> String {
        match self {
            Transport::Tcp {
                settings,
                use_backup,
                ..
            } => match (&settings.backup_host, use_backup) {
                (Some(b), true) => format!("{b}:{}", settings.port),
                _ => format!("{}:{}", settings.host, settings.port),
            },
            Transport::Serial(s) => s.port.clone(),
        }
    }
}

/// A write resolved against the device's tags: what to put where.
pub(super) struct WriteOp {
    addr: ModbusAddress,
    data_type: DataType,
    value: TagValue,
}

impl WriteOp {
    pub(super) fn slave(&self) -> u8 {
        self.addr.slave
    }

    /// Check the request against the device's tags and undo the tag's
    /// scale and offset, so the device gets its raw value.
    pub(super) fn prepare(req: &WriteRequest, device: &Device) -> Result<WriteOp, String> {
        let tag = crate::adapters::writable_tag(device, req)?;
        let addr = ModbusAddress::parse(&tag.address).map_err(|e| e.to_string())?;
        if !addr.area.writable() {
            return Err(format!("tag '{}' is in a read-only area", tag.name));
        }
        let value = crate::adapters::raw_write_value(&req.value, tag)?;
        Ok(WriteOp {
            addr,
            data_type: tag.data_type,
            value,
        })
    }
}

pub(super) struct Conn {
    ctx: Option<Context>,
    pub(super) transport: Transport,
}

impl Conn {
    pub(super) fn new(transport: Transport) -> Self {
        Conn {
            ctx: None,
            transport,
        }
    }

    async fn tcp_stream(target: &str, t: Duration) -> Result<tokio::net::TcpStream, String> {
        let addr: SocketAddr = tokio::time::timeout(t, tokio::net::lookup_host(target))
            .await
            .map_err(|_| format!("resolving {target} timed out"))?
            .map_err(|e| format!("resolving {target}: {e}"))?
            .next()
            .ok_or_else(|| format!("{target} has no address"))?;
        let stream = tokio::time::timeout(t, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {target} timed out"))?
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        // A request is one small write answered before the next: with
        // Nagle on, a write command behind a read waits for a delayed ACK.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("setting TCP_NODELAY to {target}: {e}"))?;
        Ok(stream)
    }

    async fn connect(&mut self, t: Duration) -> Result<(), String> {
        let target = self.transport.target();
        let ctx = match &self.transport {
            Transport::Tcp { rtu: false, .. } => tcp::attach(Self::tcp_stream(&target, t).await?),
            Transport::Tcp { rtu: true, .. } => {
                rtu::attach_slave(Self::tcp_stream(&target, t).await?, Slave(1))
            }
            Transport::Serial(s) => rtu::attach_slave(open_serial(s)?, Slave(1)),
        };
        self.ctx = Some(ctx);
        Ok(())
    }

    /// Drop the connection; over TCP with a backup host, try it next.
    pub(super) fn disconnect(&mut self) {
        self.ctx = None;
        if let Transport::Tcp {
            settings,
            use_backup,
            ..
        } = &mut self.transport
        {
            if settings.backup_host.is_some() {
                *use_backup = !*use_backup;
            }
        }
    }

    async fn ctx(&mut self, t: Duration) -> Result<&mut Context, ReadError> {
        if self.ctx.is_none() {
            self.connect(t)
                .await
                .map_err(|e| ReadError::Io(e, ErrorCode::Disconnected))?;
        }
        Ok(self.ctx.as_mut().expect("connected"))
    }

    /// One read, no retry.
    pub(super) async fn read(&mut self, r: &ReadPlan, t: Duration) -> Result<Vec<u16>, ReadError> {
        let ctx = self.ctx(t).await?;
        ctx.set_slave(Slave(r.slave));
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
            Err(_) => Err(timed_out(t)),
            Ok(Err(e)) => Err(ReadError::Io(e.to_string(), ErrorCode::Disconnected)),
            Ok(Ok(Err(ex))) => Err(ReadError::Exception(format!("device exception: {ex}"))),
            // On a shared line a late answer to an earlier, timed-out
            // request can be taken for this one: a short one is refused.
            Ok(Ok(Ok(words))) if words.len() < usize::from(r.count) => Err(ReadError::Io(
                format!(
                    "answer has {} values, {} were asked for",
                    words.len(),
                    r.count
                ),
                ErrorCode::Disconnected,
            )),
            Ok(Ok(Ok(words))) => Ok(words),
        }
    }

    /// One write, no retry (a write is not repeated behind the user's back).
    pub(super) async fn write(&mut self, op: &WriteOp, t: Duration) -> Result<(), ReadError> {
        let ctx = self.ctx(t).await?;
        ctx.set_slave(Slave(op.addr.slave));
        let res = tokio::time::timeout(t, async {
            let io = |e: tokio_modbus::Error| ReadError::Io(e.to_string(), ErrorCode::Disconnected);
            if op.addr.area == Area::Coil {
                let on =
                    op.value.as_f64().ok_or_else(|| {
                        ReadError::Exception("a coil needs a bool or number".into())
                    })? != 0.0;
                return ctx
                    .write_single_coil(op.addr.register, on)
                    .await
                    .map_err(io);
            }
            // A bit inside a register: read it, change the bit, write it back.
            let current = if op.data_type == DataType::Bit {
                ctx.read_holding_registers(op.addr.register, 1)
                    .await
                    .map_err(io)?
                    .map_err(|e| ReadError::Exception(format!("device exception: {e}")))?
                    .first()
                    .copied()
            } else {
                None
            };
            let words = encode_registers(&op.value, &op.addr, op.data_type, current)
                .map_err(ReadError::Exception)?;
            if words.len() == 1 {
                ctx.write_single_register(op.addr.register, words[0])
                    .await
                    .map_err(io)
            } else {
                ctx.write_multiple_registers(op.addr.register, &words)
                    .await
                    .map_err(io)
            }
        })
        .await;
        match res {
            Err(_) => Err(timed_out(t)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Err(ex))) => Err(ReadError::Exception(format!("device exception: {ex}"))),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

fn timed_out(t: Duration) -> ReadError {
    ReadError::Io(
        format!("no answer within {} ms", t.as_millis()),
        ErrorCode::Timeout,
    )
}

fn open_serial(s: &SerialSettings) -> Result<tokio_serial::SerialStream, String> {
    let data_bits = match s.data_bits {
        7 => tokio_serial::DataBits::Seven,
        8 => tokio_serial::DataBits::Eight,
        n => return Err(format!("serial.dataBits: {n} is not supported (7 or 8)")),
    };
    let stop_bits = match s.stop_bits {
        1 => tokio_serial::StopBits::One,
        2 => tokio_serial::StopBits::Two,
        n => return Err(format!("serial.stopBits: {n} is not supported (1 or 2)")),
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    tokio_serial::new(&s.port, s.baud_rate)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|e| format!("opening serial port {}: {e}", s.port))
}

/// Silence kept between frames on a serial line: `interFrameDelayMs`, or
/// the Modbus rule of 3.5 characters at the line's speed, at least 1.75 ms
/// (the spec's fixed value above 19200 baud).
pub(super) fn inter_frame_delay(s: &SerialSettings) -> Duration {
    if let Some(ms) = s.inter_frame_delay_ms {
        return Duration::from_millis(u64::from(ms));
    }
    let parity_bits = u32::from(s.parity != Parity::None);
    let char_bits = 1 + u32::from(s.data_bits) + parity_bits + u32::from(s.stop_bits);
    let secs = 3.5 * f64::from(char_bits) / f64::from(s.baud_rate.max(1));
    Duration::from_secs_f64(secs).max(Duration::from_micros(1750))
}
