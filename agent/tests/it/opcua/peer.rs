//! The real OPC UA server the tests talk to: `agent/tests/opcua_server.py`
//! on PyPI asyncua, one process per server, restartable on its port; and a
//! rig running the agent's adapters into a channel.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir_agent::adapters::opcua::{CredentialSource, OpcUaContext};
use weir_agent::adapters::{Adapters, HealthTable};
use weir_agent::sample::Sample;
use weir_crds::agent_api::{DeviceCredential, DeviceHealth};
use weir_crds::gateway::GatewayConfig;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opcua_server.py")
}

/// Fail loudly when the peer is missing: the tests never skip.
pub fn assert_asyncua() {
    let out = Command::new("python3")
        .args(["-c", "import asyncua"])
        .output()
        .expect("python3 must be installed to run the OPC UA tests");
    assert!(
        out.status.success(),
        "PyPI asyncua is not installed (python3 -m pip install asyncua): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    pub secure: bool,
    pub user: Option<(String, String)>,
    pub tick_ms: u32,
    /// Extra Double nodes `Plant.B<i>`, all changed every tick (benches).
    pub bench_nodes: u32,
    /// Accept only an X.509 user whose PEMs the server writes to its pki dir.
    pub x509_user: bool,
}

pub struct OpcServer {
    pub port: u16,
    /// SHA-256 of the server certificate (secure servers).
    pub sha256: Option<String>,
    opts: ServerOpts,
    pki: tempfile::TempDir,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl OpcServer {
    pub fn start(opts: ServerOpts) -> Self {
        assert_asyncua();
        let mut s = OpcServer {
            port: weir_testkit::ports::free_port(),
            sha256: None,
            opts,
            pki: tempfile::tempdir().unwrap(),
            child: None,
            lines: Arc::default(),
        };
        s.spawn();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/weir/", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("python3");
        cmd.arg(script())
            .args(["--port", &self.port.to_string()])
            .args(["--tick-ms", &self.opts.tick_ms.max(10).to_string()])
            .args(["--pki", &self.pki.path().display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.opts.bench_nodes > 0 {
            cmd.args(["--bench-nodes", &self.opts.bench_nodes.to_string()]);
        }
        if self.opts.secure {
            cmd.args(["--security", "basic256sha256"]);
        }
        if self.opts.x509_user {
            cmd.arg("--x509-user");
        }
        if let Some((u, p)) = &self.opts.user {
            cmd.args(["--user", u, "--password", p]);
        }
        let mut child = cmd.spawn().expect("start the asyncua OPC UA server");
        let out = child.stdout.take().unwrap();
        let lines = self.lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|l| l.starts_with("READY "))
                .cloned();
            if let Some(l) = found {
                self.lines
                    .lock()
                    .unwrap()
                    .retain(|x| !x.starts_with("READY "));
                break l;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the OPC UA test server exited before serving: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "the OPC UA test server did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let sha = ready.split_whitespace().nth(2).unwrap_or("-");
        self.sha256 = (sha != "-").then(|| sha.to_string());
    }

    /// The server's key and certificate dir (also the X.509 user's PEMs).
    pub fn pki(&self) -> &Path {
        self.pki.path()
    }

    /// Kill the server (as a crash would) and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same certificate.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Values clients wrote, as the server saw them (`WRITE name value`).
    pub fn writes(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("WRITE ").map(str::to_string))
            .collect()
    }

    /// Node updates the server made so far (bench nodes; once a second).
    pub fn updates(&self) -> u64 {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("UPDATES ")?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the server process used so far, in seconds (Linux).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }
}

impl Drop for OpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Credentials from a map: the tests' stand-in for the agent's store.
#[derive(Default)]
pub struct MapCredentials(pub HashMap<String, DeviceCredential>);

impl CredentialSource for MapCredentials {
    fn get(&self, name: &str) -> Option<DeviceCredential> {
        self.0.get(name).cloned()
    }

    fn why_missing(&self, name: &str) -> Option<String> {
        (!self.0.contains_key(name))
            .then(|| format!("credential '{name}' is not known to this agent"))
    }
}

/// The agent's adapters for one config, their samples collected.
pub struct Rig {
    pub adapters: Option<Adapters>,
    pub health: Arc<HealthTable>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub data_dir: tempfile::TempDir,
}

impl Rig {
    pub fn start(config: serde_json::Value, creds: Option<Arc<dyn CredentialSource>>) -> Self {
        let config: GatewayConfig = serde_json::from_value(config).unwrap();
        if let Err(errs) = weir_crds::gateway::validate_config(&config) {
            panic!("test config is invalid: {errs:?}");
        }
        let (tx, mut rx) = mpsc::channel::<Sample>(4096);
        let health = Arc::new(HealthTable::default());
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let s = samples.clone();
        tokio::spawn(async move {
            while let Some(x) = rx.recv().await {
                s.lock().unwrap().push(x);
            }
        });
        let data_dir = tempfile::tempdir().unwrap();
        let ctx = OpcUaContext {
            data_dir: Some(data_dir.path().to_path_buf()),
            credentials: creds,
        };
        let adapters = Adapters::start_with(&config, tx, health.clone(), &ctx);
        Rig {
            adapters: Some(adapters),
            health,
            samples,
            data_dir,
        }
    }

    pub fn device(&self, name: &str) -> Option<DeviceHealth> {
        self.health.snapshot().into_iter().find(|d| d.name == name)
    }

    /// Samples of `group` so far.
    pub fn of(&self, group: &str) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.schema.group == group)
            .cloned()
            .collect()
    }

    pub async fn stop(&mut self) {
        if let Some(a) = self.adapters.take() {
            a.stop().await;
        }
    }
}
