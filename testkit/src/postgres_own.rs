//! A PostgreSQL server of the test's own: `initdb` into a temporary
//! directory, listening on a free port of 127.0.0.1 (and a socket in that
//! directory), so a test may stop, kill and restart it without touching the
//! shared server other tests use ([`crate::TestDb`]).
//!
//! The binaries come from `/usr/lib/postgresql/<version>/bin` (Debian's
//! `postgresql` package; the newest version wins) or `WEIR_TEST_PG_BIN`.
//! PostgreSQL refuses to run as root, and CI runs as root: then every
//! PostgreSQL command runs as the `postgres` user (through `runuser`), which
//! owns the directory.
//!
//! Settings: trust authentication for user `postgres`, and `fsync = off`.
//! That only risks data when the operating system itself crashes; a killed
//! or restarted server keeps every committed transaction, which is what the
//! tests that restart it check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::bins::print_tail;
use crate::ports::free_port;

/// The user PostgreSQL runs as when the test runs as root.
const SERVICE_USER: &str = "postgres";

/// How `stop` ends the server (`pg_ctl stop -m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect the clients, write a checkpoint, exit: a clean shutdown.
    Fast,
    /// Exit at once without a checkpoint, like a crash: the next start
    /// recovers from the write-ahead log.
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A running (or stopped) server of the test's own; see the module doc.
/// Stopped (immediately) and deleted when dropped.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some(runuser)` when commands run as [`SERVICE_USER`].
    runuser: Option<PathBuf>,
    running: bool,
}

impl PgServer {
    /// `initdb` and start; panics saying what is missing when PostgreSQL's
    /// binaries (or, as root, the `postgres` user) are not there. Blocks for
    /// a second or two.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("weir-pg-")
            .tempdir()
            .expect("temporary directory for PostgreSQL");
        let runuser = if is_root() {
            let (uid, gid) = service_user_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the PostgreSQL directory to the postgres user");
            Some(runuser_binary())
        } else {
            None
        };
        let mut pg = PgServer {
            port: free_port(),
            dir,
            bin,
            runuser,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\n# weir-testkit\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nmax_connections = 100\n",
            pg.port,
            pg.dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text += &conf;
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        pg.up();
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create `name` (lower case letters, digits, `_`) and return its URL.
    pub async fn create_database(&self, name: &str) -> String {
        crate::postgres::connect(&self.url("postgres"))
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create database {name} on port {}: {e}", self.port));
        self.url(name)
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stop the server; a no-op when stopped.
    pub fn stop(&mut self, mode: StopMode) {
        if !self.running {
            return;
        }
        let data = self.data_dir().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", mode.arg(), "-w", "stop"]);
        self.running = false;
    }

    /// Start again on the same port and data (after [`PgServer::stop`]).
    pub fn start_again(&mut self) {
        if !self.running {
            self.up();
        }
    }

    /// Stop with `mode`, then start again: clients lose their connections
    /// and must reconnect; committed data stays.
    pub fn restart(&mut self, mode: StopMode) {
        self.stop(mode);
        self.up();
    }

    /// The server's log, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn up(&mut self) {
        let data = self.data_dir().display().to_string();
        let log = self.log_path().display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
        self.running = true;
    }

    /// Run one of PostgreSQL's programs (as the service user when root);
    /// panics with its output and the server log when it fails.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = match &self.runuser {
            Some(runuser) => {
                let mut c = Command::new(runuser);
                c.args(["-u", SERVICE_USER, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        if !out.status.success() {
            panic!(
                "{program} {args:?} failed ({}): {}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        out
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir().display().to_string();
            let path = self.bin.join("pg_ctl");
            let mut cmd = match &self.runuser {
                Some(r) => {
                    let mut c = Command::new(r);
                    c.args(["-u", SERVICE_USER, "--"]).arg(&path);
                    c
                }
                None => Command::new(&path),
            };
            let _ = cmd
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            print_tail("postgres", &self.log());
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `WEIR_TEST_PG_BIN`,
/// else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WEIR_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "WEIR_TEST_PG_BIN={} has no initdb",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not in /usr/lib/postgresql/*/bin: \
             sudo apt-get install postgresql (bash scripts/setup.sh does), or set WEIR_TEST_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    // /proc/self is owned by the effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// uid and gid of [`SERVICE_USER`] from /etc/passwd.
fn service_user_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == SERVICE_USER)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "running as root, PostgreSQL must run as the '{SERVICE_USER}' user, and there \
                 is none: sudo apt-get install postgresql creates it (or run the tests as \
                 another user)"
            )
        })
}

fn runuser_binary() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            panic!("runuser not found (util-linux): needed to run PostgreSQL as '{SERVICE_USER}' when root")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_rows_survive_an_immediate_restart_and_clients_must_reconnect() {
        let mut pg = PgServer::start();
        let url = pg.create_database("kept").await;
        let c = crate::postgres::connect(&url).await;
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
            .await
            .unwrap();
        pg.restart(StopMode::Immediate);
        assert!(
            c.query_one("SELECT 1", &[]).await.is_err(),
            "a connection from before the restart is gone"
        );
        let c = crate::postgres::connect(&url).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1000, "every committed row is still there");
        let port = pg.port;
        drop(c);
        drop(pg);
        assert!(
            !crate::ports::is_listening(port),
            "a dropped server no longer listens"
        );
    }
}
