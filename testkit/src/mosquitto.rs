//! A Mosquitto broker of the test's own: on a free port of 127.0.0.1,
//! configured in a private temporary directory, logging to a file there, and
//! killed when dropped. Optionally persistent (queued QoS 1 messages survive
//! a restart), with a TLS listener signed by a private CA, and with the
//! dynamic-security plugin (no anonymous access; one admin login).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bins::{print_tail, sigterm, wait_exit};
use crate::ports::{free_port, is_listening};
use crate::wait::{wait_until, wait_until_blocking};

/// How long a starting broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Debian and a source install put the binary (tests run with a
/// PATH that often lacks /usr/sbin).
const CANDIDATES: [&str; 4] = [
    "/usr/sbin/mosquitto",
    "/usr/bin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/usr/local/bin/mosquitto",
];

/// The `mosquitto` binary; panics saying how to install it.
pub fn binary() -> PathBuf {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto not found: sudo apt-get install mosquitto (looked in {})",
                CANDIDATES.join(", ")
            )
        })
}

/// How to configure a broker before it starts; [`Mosquitto::builder`].
#[derive(Default)]
pub struct Builder {
    port: Option<u16>,
    persistent: bool,
    tls: bool,
    dynsec: Option<(String, String)>,
    extra: Vec<String>,
}

impl Builder {
    /// Listen on `port` instead of a free one (a test that drops its broker
    /// and starts another where its clients reconnect).
    pub fn port(mut self, port: u16) -> Builder {
        self.port = Some(port);
        self
    }

    /// Keep sessions and queued messages in a persistence file in the
    /// broker's directory, written when it stops (SIGTERM) and read when it
    /// starts again: see [`Mosquitto::restart`].
    pub fn persistent(mut self) -> Builder {
        self.persistent = true;
        self
    }

    /// A second listener, TLS, with a server certificate for 127.0.0.1
    /// signed by a private CA made with `openssl` ([`Mosquitto::ca_pem`]).
    pub fn tls(mut self) -> Builder {
        self.tls = true;
        self
    }

    /// Load the dynamic-security plugin with `admin_user` / `admin_password`
    /// as its admin (made with `mosquitto_ctrl dynsec init`), and refuse
    /// anonymous clients: every other login is a dynamic-security client.
    pub fn dynamic_security(mut self, admin_user: &str, admin_password: &str) -> Builder {
        self.dynsec = Some((admin_user.to_string(), admin_password.to_string()));
        self
    }

    /// A line of global configuration, such as `max_queued_messages 0`.
    pub fn config(mut self, line: &str) -> Builder {
        self.extra.push(line.to_string());
        self
    }

    fn prepare(self) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temporary directory for mosquitto");
        let port = self.port.unwrap_or_else(free_port);
        let tls_port = self.tls.then(free_port);
        let d = dir.path().display();
        // As root, Mosquitto would drop to the `mosquitto` user, which cannot
        // write its persistence file into our private directory; as any
        // other user `user` has no effect.
        // set_tcp_nodelay: as in production configs (scripts/demo.sh), so
        // latency figures carry no Nagle/delayed-ACK stalls of the broker's.
        let mut conf = String::from("user root\nlog_dest stderr\nset_tcp_nodelay true\n");
        match &self.dynsec {
            None => conf += "allow_anonymous true\n",
            Some((user, password)) => {
                let file = dir.path().join("dynamic-security.json");
                dynsec_init(&file, user, password);
                conf += &format!(
                    "allow_anonymous false\nplugin {}\nplugin_opt_config_file {}\n",
                    dynsec_plugin().display(),
                    file.display()
                );
            }
        }
        if self.persistent {
            conf += &format!("persistence true\npersistence_location {d}/\n");
        }
        for line in &self.extra {
            conf += line;
            conf.push('\n');
        }
        conf += &format!("listener {port} 127.0.0.1\n");
        if let Some(tls_port) = tls_port {
            make_certificates(dir.path());
            conf += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
            );
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("write mosquitto.conf");
        Mosquitto {
            port,
            tls_port,
            dir,
            child: None,
        }
    }

    /// Start the broker and wait (asynchronously) until it accepts
    /// connections on every listener.
    pub async fn start(self) -> Mosquitto {
        let mut m = self.prepare();
        m.up().await;
        m
    }

    /// [`Builder::start`] for code outside an async runtime.
    pub fn start_blocking(self) -> Mosquitto {
        let mut m = self.prepare();
        m.up_blocking();
        m
    }
}

/// A running Mosquitto; see the module doc.
pub struct Mosquitto {
    /// The plain (mqtt://) listener's port.
    pub port: u16,
    /// The TLS (mqtts://) listener's port, when built with [`Builder::tls`].
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A plain broker on a free port, anonymous access, no persistence.
    pub async fn start() -> Mosquitto {
        Self::builder().start().await
    }

    /// [`Mosquitto::start`] for code outside an async runtime.
    pub fn start_blocking() -> Mosquitto {
        Self::builder().start_blocking()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtts://` URL of the TLS listener; panics when there is none.
    pub fn tls_url(&self) -> String {
        format!(
            "mqtts://127.0.0.1:{}",
            self.tls_port.expect("built with .tls()")
        )
    }

    /// The private CA that signed the TLS listener's certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.pem")).expect("built with .tls()")
    }

    /// The broker's private directory (configuration, log, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the broker logged so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stop gracefully: SIGTERM, so a persistent broker writes its
    /// persistence file, then wait for the exit. A no-op when stopped.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm(c.id());
            wait_exit(&mut c, "mosquitto");
        }
    }

    /// SIGKILL, like a crash: nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// [`Mosquitto::stop`], then start again on the same ports and directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.up().await;
    }

    /// [`Mosquitto::restart`] for code outside an async runtime.
    pub fn restart_blocking(&mut self) {
        self.stop();
        self.up_blocking();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open mosquitto.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start mosquitto: {e}"));
        self.child = Some(child);
    }

    /// Every listener accepts connections; panics (with the broker's log)
    /// when the broker exited instead.
    fn ready(&mut self) -> bool {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "mosquitto exited at start ({status}); its log:\n{}",
                self.log()
            );
        }
        is_listening(self.port) && self.tls_port.is_none_or(is_listening)
    }

    async fn up(&mut self) {
        self.spawn();
        let what = format!("mosquitto to listen on port {}", self.port);
        wait_until(START_TIMEOUT, &what, || {
            let ok = self.ready();
            async move { ok }
        })
        .await;
    }

    fn up_blocking(&mut self) {
        self.spawn();
        let what = format!("mosquitto to listen on port {}", self.port);
        wait_until_blocking(START_TIMEOUT, &what, || self.ready());
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            print_tail("mosquitto", &self.log());
        }
    }
}

/// Where distributions put the dynamic-security plugin, when `dpkg` cannot say.
const PLUGIN_CANDIDATES: [&str; 5] = [
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/lib64/mosquitto_dynamic_security.so",
];

/// The dynamic-security plugin (`mosquitto_dynamic_security.so`, in
/// Debian's `mosquitto` package); panics saying how to install it.
pub fn dynsec_plugin() -> PathBuf {
    let from_dpkg = Command::new("dpkg")
        .args(["-L", "mosquitto"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.ends_with("/mosquitto_dynamic_security.so"))
                .map(PathBuf::from)
        });
    from_dpkg
        .into_iter()
        .chain(PLUGIN_CANDIDATES.iter().map(PathBuf::from))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto_dynamic_security.so not found: sudo apt-get install mosquitto \
                 (Mosquitto 2.0 or newer; looked in dpkg -L mosquitto and {})",
                PLUGIN_CANDIDATES.join(", ")
            )
        })
}

/// Write a dynamic-security config with one admin client to `file`.
fn dynsec_init(file: &Path, user: &str, password: &str) {
    let ctrl = ["/usr/bin/mosquitto_ctrl", "/usr/local/bin/mosquitto_ctrl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto_ctrl"));
    let out = Command::new(&ctrl)
        .args(["dynsec", "init"])
        .arg(file)
        .args([user, password])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("mosquitto_ctrl not found ({e}): sudo apt-get install mosquitto (2.0 or newer)")
        });
    assert!(
        out.status.success() && file.exists(),
        "mosquitto_ctrl dynsec init failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`:
/// ca.pem, server.pem, server.key.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("openssl not found ({e}): sudo apt-get install openssl"));
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=weir-test-ca",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("write ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_persistent_broker_listens_again_on_its_port_after_a_restart() {
        let mut m = Mosquitto::builder().persistent().start().await;
        let port = m.port;
        assert!(is_listening(port));
        m.stop();
        assert!(!is_listening(port), "a stopped broker no longer listens");
        m.restart().await;
        assert_eq!(m.port, port);
        assert!(is_listening(port));
        assert!(
            m.log().contains("mosquitto"),
            "the log is kept: {}",
            m.log()
        );
    }

    #[tokio::test]
    async fn a_dynamic_security_broker_loads_the_plugin() {
        let m = Mosquitto::builder()
            .dynamic_security("admin", "admin-pw")
            .start()
            .await;
        assert!(is_listening(m.port));
        let conf = std::fs::read_to_string(m.dir().join("mosquitto.conf")).unwrap();
        assert!(conf.contains("allow_anonymous false"), "{conf}");
        assert!(
            m.log().contains("mosquitto_dynamic_security.so"),
            "{}",
            m.log()
        );
    }

    #[test]
    fn a_dropped_broker_stops_listening() {
        let m = Mosquitto::start_blocking();
        let port = m.port;
        drop(m);
        assert!(!is_listening(port));
    }
}
