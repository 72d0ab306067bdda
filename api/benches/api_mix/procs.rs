//! What a process costs: CPU seconds and resident memory from /proc (for
//! weir-api, still running), and the CPU of a load tool run under
//! `bash -c '...; times'` (it has exited: /proc no longer has it).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Linux's USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_secs: f64,
    pub rss_mb: f64,
    pub peak_mb: f64,
}

/// CPU (user + system) and memory of a running process.
pub fn sample(pid: u32) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Sample {
        cpu_secs: ticks / TICKS_PER_SEC,
        rss_mb: kib("VmRSS:") / 1024.0,
        peak_mb: kib("VmHWM:") / 1024.0,
    })
}

/// A tool run whose CPU seconds bash reports (`times`) into `times_file`
/// when it exits.
pub fn spawn_timed(
    tool: &Path,
    args: &[String],
    times_file: &Path,
    stdout: &Path,
) -> Result<Child> {
    let out = std::fs::File::create(stdout)?;
    let err = std::fs::File::create(stdout.with_extension("stderr"))?;
    Command::new("bash")
        .arg("-c")
        .arg(r#""$@"; rc=$?; times > "$WEIR_TIMES_FILE"; exit $rc"#)
        .arg("bench")
        .arg(tool)
        .args(args)
        .env("WEIR_TIMES_FILE", times_file)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {}", tool.display()))
}

/// Wait for a [`spawn_timed`] run; its CPU seconds (user + system).
pub fn wait_timed(mut child: Child, times_file: &Path, stdout: &Path) -> Result<f64> {
    let st = child.wait()?;
    if !st.success() {
        let err = std::fs::read_to_string(stdout.with_extension("stderr")).unwrap_or_default();
        bail!("load tool failed ({st}): {}", err.trim());
    }
    let text = std::fs::read_to_string(times_file).context("times of the load tool")?;
    // Second line: the children's user and system time, e.g. "0m1.234s 0m0.567s".
    let line = text.lines().nth(1).context("no children line in times")?;
    let mut secs = 0.0;
    for t in line.split_whitespace() {
        let (m, s) = t
            .trim_end_matches('s')
            .split_once('m')
            .context("times format")?;
        secs += m.parse::<f64>()? * 60.0 + s.parse::<f64>()?;
    }
    Ok(secs)
}
