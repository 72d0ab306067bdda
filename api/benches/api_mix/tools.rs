//! The external load tools, found or installed by the bench itself (so
//! `scripts/setup.sh` and CI need neither): `oha` (crates.io, fixed rate with
//! latency correction) and `wrk` (Debian, closed loop with a Lua mix).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn tools_root() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/weir/tools")
}

/// `oha`: `WEIR_BENCH_OHA`, else `$HOME/.cache/weir/tools/bin/oha`, else on
/// PATH, else `cargo install --root $HOME/.cache/weir/tools oha --locked`.
pub fn oha() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_BENCH_OHA") {
        return Ok(p.into());
    }
    let cached = tools_root().join("bin/oha");
    if cached.is_file() {
        return Ok(cached);
    }
    if let Some(p) = on_path("oha") {
        return Ok(p);
    }
    eprintln!(
        "api_mix: oha not found; cargo install --root {} oha --locked (once, cached)",
        tools_root().display()
    );
    let st = Command::new("cargo")
        .args(["install", "--locked", "oha", "--root"])
        .arg(tools_root())
        .status()
        .context("run cargo install oha")?;
    if !st.success() || !cached.is_file() {
        bail!(
            "could not install oha ({st}); install it with `cargo install --root {} oha` or set WEIR_BENCH_OHA",
            tools_root().display()
        );
    }
    Ok(cached)
}

/// `wrk`: `WEIR_BENCH_WRK`, else on PATH, else `apt-get install -y wrk`.
pub fn wrk() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_BENCH_WRK") {
        return Ok(p.into());
    }
    if let Some(p) = on_path("wrk") {
        return Ok(p);
    }
    eprintln!("api_mix: wrk not found; apt-get install -y wrk");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let ok = install().map(|s| s.success()).unwrap_or(false) || {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        install().map(|s| s.success()).unwrap_or(false)
    };
    match on_path("wrk") {
        Some(p) if ok => Ok(p),
        _ => bail!("could not install wrk with apt-get; install it (Debian package wrk) or set WEIR_BENCH_WRK"),
    }
}
