//! An in-memory Modbus TCP device on tokio-modbus's server, for tests,
//! benchmarks and demos: coils, discrete inputs, input and holding registers
//! in maps, a request log, and an optional answer delay (a slow or hung PLC).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};

#[derive(Debug, Default)]
pub struct Memory {
    pub coils: HashMap<u16, bool>,
    pub discrete: HashMap<u16, bool>,
    pub input: HashMap<u16, u16>,
    pub holding: HashMap<u16, u16>,
    /// Every request as (function code, address, count).
    pub log: Vec<(u8, u16, u16)>,
    /// Answer each request after this long.
    pub delay: Duration,
    /// Where each write is reported the moment it lands in memory (see
    /// [`MemoryDevice::watch_writes`]).
    pub writes_to: Option<mpsc::UnboundedSender<Written>>,
}

/// A write as the device applied it: first register (or coil), the words
/// written (a coil as 0 or 1), and when.
#[derive(Clone, Debug)]
pub struct Written {
    pub addr: u16,
    pub words: Vec<u16>,
    pub at: Instant,
}

impl Memory {
    fn report_write(&self, addr: u16, words: Vec<u16>) {
        if let Some(tx) = &self.writes_to {
            let _ = tx.send(Written {
                addr,
                words,
                at: Instant::now(),
            });
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MemoryDevice {
    pub mem: Arc<Mutex<Memory>>,
}

impl MemoryDevice {
    pub fn set_holding(&self, start: u16, words: &[u16]) {
        let mut m = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in words.iter().enumerate() {
            m.holding.insert(start + i as u16, *w);
        }
    }
    pub fn set_input(&self, start: u16, words: &[u16]) {
        let mut m = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        for (i, w) in words.iter().enumerate() {
            m.input.insert(start + i as u16, *w);
        }
    }
    pub fn set_coil(&self, addr: u16, v: bool) {
        self.mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .coils
            .insert(addr, v);
    }
    pub fn holding(&self, addr: u16) -> u16 {
        *self
            .mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holding
            .get(&addr)
            .unwrap_or(&0)
    }
    pub fn requests(&self) -> Vec<(u8, u16, u16)> {
        self.mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .clone()
    }
    /// Report every write from now on, stamped when it is applied: a
    /// benchmark times command → register written from this, not from a
    /// later poll of the memory.
    pub fn watch_writes(&self) -> mpsc::UnboundedReceiver<Written> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.mem.lock().unwrap_or_else(|e| e.into_inner()).writes_to = Some(tx);
        rx
    }
    pub fn set_delay(&self, d: Duration) {
        self.mem.lock().unwrap_or_else(|e| e.into_inner()).delay = d;
    }

    fn answer(&self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        let mut m = self.mem.lock().unwrap_or_else(|e| e.into_inner());
        let words = |map: &HashMap<u16, u16>, a: u16, n: u16| {
            (0..n)
                .map(|i| *map.get(&(a + i)).unwrap_or(&0))
                .collect::<Vec<_>>()
        };
        let bits = |map: &HashMap<u16, bool>, a: u16, n: u16| {
            (0..n)
                .map(|i| *map.get(&(a + i)).unwrap_or(&false))
                .collect::<Vec<_>>()
        };
        Ok(match req {
            Request::ReadCoils(a, n) => {
                m.log.push((1, a, n));
                Response::ReadCoils(bits(&m.coils, a, n))
            }
            Request::ReadDiscreteInputs(a, n) => {
                m.log.push((2, a, n));
                Response::ReadDiscreteInputs(bits(&m.discrete, a, n))
            }
            Request::ReadHoldingRegisters(a, n) => {
                m.log.push((3, a, n));
                if u32::from(a) + u32::from(n) > 60000 {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                Response::ReadHoldingRegisters(words(&m.holding, a, n))
            }
            Request::ReadInputRegisters(a, n) => {
                m.log.push((4, a, n));
                Response::ReadInputRegisters(words(&m.input, a, n))
            }
            Request::WriteSingleCoil(a, v) => {
                m.log.push((5, a, 1));
                m.coils.insert(a, v);
                m.report_write(a, vec![u16::from(v)]);
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteSingleRegister(a, v) => {
                m.log.push((6, a, 1));
                m.holding.insert(a, v);
                m.report_write(a, vec![v]);
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, ws) => {
                m.log.push((16, a, ws.len() as u16));
                for (i, w) in ws.iter().enumerate() {
                    m.holding.insert(a + i as u16, *w);
                }
                m.report_write(a, ws.to_vec());
                Response::WriteMultipleRegisters(a, ws.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

impl tokio_modbus::server::Service for MemoryDevice {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let delay = this.mem.lock().unwrap_or_else(|e| e.into_inner()).delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            this.answer(req)
        })
    }
}

/// Serve `device` on 127.0.0.1 at a free port; runs until the runtime ends.
pub async fn serve(device: MemoryDevice) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, socket_addr| {
            let d = device.clone();
            async move { accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(d.clone()))) }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    Ok(addr)
}
