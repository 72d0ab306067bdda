//! Real peers for the Modbus RTU tests and bench: pymodbus serving RTU
//! frames (`peer.py`, over TCP or on a serial line) and a socat pty pair as
//! the serial line. Missing tools fail loudly: these tests never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Panic with what to install unless python3 with pymodbus and pyserial,
/// and socat, are there.
pub fn require_peers() {
    let py = Command::new("python3")
        .args(["-c", "import pymodbus, serial"])
        .output();
    match py {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "these tests need pymodbus and pyserial: python3 -m pip install 'pymodbus>=3.9,<4' pyserial ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("these tests need python3 with pymodbus and pyserial: {e}"),
    }
    let socat = Command::new("socat").arg("-V").output();
    assert!(
        socat.is_ok_and(|o| o.status.success()),
        "these tests need socat (apt-get install socat)"
    );
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pymodbus RTU server with unit 1 present and every other unit silent.
pub struct Peer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Peer {
    /// RTU frames over TCP on 127.0.0.1:`port`.
    pub fn tcp(port: u16) -> Peer {
        Self::start(&["--tcp".into(), port.to_string()])
    }

    /// RTU on the serial line at `path`.
    pub fn serial(path: &Path, baud: u32) -> Peer {
        Self::start(&[
            "--serial".into(),
            path.display().to_string(),
            "--baud".into(),
            baud.to_string(),
        ])
    }

    fn start(args: &[String]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/modbus_rtu/peer.py");
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let child = Command::new("python3")
            .arg(script)
            .args(args)
            .arg("--out")
            .arg(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 starts");
        let mut peer = Peer { child, dir };
        let ready = peer.dir.path().join("ready");
        let log = peer.dir.path().join("peer.log");
        wait_for("pymodbus listening", Duration::from_secs(20), || {
            ready.exists() || peer.child.try_wait().ok().flatten().is_some()
        });
        assert!(
            ready.exists(),
            "pymodbus exited before listening: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        peer
    }

    fn json(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The tags that read unit 1's table (addresses `1!...`).
    pub fn tags(&self) -> Value {
        self.json("tags.json")
    }

    /// Tag name → the value pymodbus holds.
    pub fn expected(&self) -> serde_json::Map<String, Value> {
        match self.json("expected.json") {
            Value::Object(m) => m,
            other => panic!("expected.json is not an object: {other}"),
        }
    }

    /// The write requests the server received, in order.
    pub fn writes(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("writes.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two connected pseudo-terminals (`socat pty,raw,echo=0 ...`): a serial
/// line with the agent on one end and pymodbus on the other.
pub struct PtyPair {
    child: Child,
    _dir: tempfile::TempDir,
    pub agent_end: PathBuf,
    pub peer_end: PathBuf,
}

impl PtyPair {
    pub fn start() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let agent_end = dir.path().join("agent");
        let peer_end = dir.path().join("peer");
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", agent_end.display()))
            .arg(format!("pty,raw,echo=0,link={}", peer_end.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        let pair = PtyPair {
            child,
            _dir: dir,
            agent_end,
            peer_end,
        };
        wait_for("socat's pty pair", Duration::from_secs(10), || {
            pair.agent_end.exists() && pair.peer_end.exists()
        });
        pair
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
