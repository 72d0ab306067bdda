//! Processes under test and the real parts they need.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Path of a workspace binary built next to the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A child process that is killed when dropped; its output goes to a log
/// file that is printed if the test fails while it runs.
pub struct Child {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(Self {
            name: name.into(),
            child,
            log,
        })
    }

    /// SIGKILL, like a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn mosquitto_path() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("mosquitto is not installed (apt-get install mosquitto); the e2e scenarios need it");
}

/// A Mosquitto broker of the test's own, with persistence so QoS 1 sessions
/// survive a restart.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Child>,
}

impl Mosquitto {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut m = Self {
            port: free_port(),
            dir,
            proc: None,
        };
        m.up().await?;
        Ok(m)
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) -> Result<()> {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 1000000\nmax_inflight_messages 0\n{}",
                self.port,
                self.dir.path().display(),
                // As root, mosquitto drops to its own user and then cannot
                // write its persistence file in our private temp dir.
                if running_as_root() { "user root\n" } else { "" }
            ),
        )?;
        let mut cmd = Command::new(mosquitto_path());
        cmd.arg("-c").arg(&conf);
        self.proc = Some(Child::spawn("mosquitto", &mut cmd, self.dir.path())?);
        let port = self.port;
        wait_for(
            "mosquitto to listen",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
    }

    /// Stop the broker (SIGTERM so it writes its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = p.child.id().to_string();
            let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
            let _ = p.child.wait();
        }
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.up().await
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway PostgreSQL database on 127.0.0.1:5432, dropped at the end.
pub struct Postgres {
    pub name: String,
}

impl Postgres {
    pub const ADMIN_URL: &'static str = "postgres://postgres@127.0.0.1:5432/postgres";

    pub async fn fresh(prefix: &str) -> Result<Self> {
        let name = format!("{prefix}_{}", rand::random::<u32>());
        let (client, conn) = tokio_postgres::connect(&Self::admin_conn(), tokio_postgres::NoTls)
            .await
            .context("PostgreSQL must run on 127.0.0.1:5432 for the e2e scenarios")?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(Self { name })
    }

    fn admin_conn() -> String {
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname={}",
                self.name
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop from a plain thread: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&Postgres::admin_conn(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
