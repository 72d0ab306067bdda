//! The workspace's binaries as child processes of a test: found next to the
//! running test binary, logging to a file, killed when dropped, and their
//! last log lines printed when the test fails.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::wait::wait_until_blocking;

/// Path of a workspace binary built next to the running test
/// (`target/<profile>/<name>`). Tests of the crate that owns the binary use
/// `env!("CARGO_BIN_EXE_<name>")` instead; this is for other crates' tests.
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

/// A child process that is killed when dropped; its stdout and stderr go to
/// `<log_dir>/<name>.log`, whose last lines are printed if the test panics
/// while it runs.
pub struct Proc {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` (stdin closed) logging to `<log_dir>/<name>.log`, appended
    /// to so a restarted process keeps its earlier lines.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> io::Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {name}: {e}")))?;
        Ok(Proc {
            name: name.into(),
            child,
            log,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, like a power cut; waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a clean shutdown) and wait for the exit; panics if the
    /// process is still running after 30 s.
    pub fn terminate(&mut self) -> ExitStatus {
        sigterm(self.child.id());
        wait_exit(&mut self.child, &self.name)
    }

    /// Still running (not exited, not reaped)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            print_tail(&self.name, &self.log_text());
        }
    }
}

/// Send SIGTERM to `pid` (through kill(1): no libc binding for one signal).
pub fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// How long a process may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait for `child` to exit, at most [`EXIT_TIMEOUT`]; panics naming it
/// (and kills it) when it does not.
pub fn wait_exit(child: &mut std::process::Child, name: &str) -> ExitStatus {
    let mut status = None;
    let what = format!("{name} to exit");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until_blocking(EXIT_TIMEOUT, &what, || {
            status = child.try_wait().expect("poll a child process");
            status.is_some()
        })
    }));
    if let Err(e) = waited {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(e);
    }
    status.expect("exited")
}

/// The last 40 lines of a failed test's child, on stderr where the test
/// harness shows them.
pub(crate) fn print_tail(name: &str, text: &str) {
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    eprintln!("--- last lines of {name} ---");
    for l in tail.into_iter().rev() {
        eprintln!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_proc_is_gone_and_its_output_was_logged() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let mut p = Proc::spawn("sleeper", &mut cmd, dir.path()).unwrap();
        assert!(p.is_running());
        let pid = p.id();
        crate::wait::wait_until_blocking(
            std::time::Duration::from_secs(5),
            "the sleeper's first line",
            || p.log_text().contains("started"),
        );
        drop(p);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped on drop"
        );
    }

    #[test]
    fn a_missing_program_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Proc::spawn("ghost", &mut Command::new("/nonexistent/ghost"), dir.path())
            .err()
            .expect("no such program");
        assert!(e.to_string().starts_with("start ghost:"), "{e}");
    }
}
