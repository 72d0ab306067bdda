//! What a benchmark reads about a running process from /proc: CPU seconds
//! (utime + stime), resident memory now (VmRSS) and at its peak (VmHWM),
//! and a process found by a string in its command line (for children of
//! helpers that do not expose their PID, such as Mosquitto).

use std::path::Path;

use anyhow::{Context, Result};

/// Clock ticks per second of /proc/PID/stat's times (`getconf CLK_TCK`;
/// 100 on Linux unless the kernel was built otherwise).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// A `Vm...` line of /proc/PID/status in MiB (e.g. `VmRSS`, `VmHWM`).
pub fn vm_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} for process {pid}"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

/// The first process whose command line contains `needle` (arguments
/// joined by spaces), other than this one.
pub fn find_pid(needle: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        if pid == me {
            return None;
        }
        let cmd = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(needle).then_some(pid)
    })
}
