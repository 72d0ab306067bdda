//! A real `weir-historian` process that a scenario can SIGKILL and start
//! again with the same settings (client id, so the broker's session for it
//! is found again), and whose `/metrics` it reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use weir_testkit::wait::try_wait_until_every;
use weir_testkit::{bin, free_port, Proc};

pub struct Historian {
    proc: Option<Proc>,
    dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Port of `/metrics` and `/healthz` on 127.0.0.1.
    pub metrics_port: u16,
}

impl Historian {
    /// Start `weir-historian` for `tenant` on `mqtt_url` writing to
    /// `database_url`, with client id `client_id` and extra environment
    /// (e.g. `WEIR_HISTORIAN_...` settings); waits until it is subscribed.
    pub async fn start(
        dir: &Path,
        mqtt_url: &str,
        database_url: &str,
        tenant: &str,
        client_id: &str,
        env: &[(&str, &str)],
    ) -> Result<Historian> {
        let metrics_port = free_port();
        let args = [
            "--mqtt-url",
            mqtt_url,
            "--tenant",
            tenant,
            "--database-url",
            database_url,
            "--client-id",
            client_id,
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ]
        .map(str::to_string)
        .to_vec();
        let mut h = Historian {
            proc: None,
            dir: dir.to_path_buf(),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics_port,
        };
        h.spawn_and_wait().await?;
        Ok(h)
    }

    /// SIGKILL (nothing flushed, nothing acknowledged that was not committed).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Start again with the same arguments after [`Historian::kill`].
    pub async fn start_again(&mut self) -> Result<()> {
        self.kill();
        self.spawn_and_wait().await
    }

    /// Everything the historian logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weir-historian.log")).unwrap_or_default()
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("weir-historian"));
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn("weir-historian", &mut cmd, &self.dir)?);
        let port = self.metrics_port;
        let what = "weir-historian to be subscribed (weir_historian_mqtt_connected 1)";
        try_wait_until_every(
            Duration::from_secs(30),
            Duration::from_millis(100),
            what,
            || async move { metric(port, "weir_historian_mqtt_connected").await == Some(1.0) },
        )
        .await
        .with_context(|| format!("last log lines:\n{}", tail(&self.log(), 20)))?;
        Ok(())
    }

    /// The text of `/metrics` (empty when it does not answer).
    pub async fn metrics(&self) -> String {
        metrics_text(self.metrics_port).await
    }

    /// The lines of `/metrics` whose name contains any of `words`, for a
    /// scenario to print what the historian counted.
    pub async fn metric_lines(&self, words: &[&str]) -> Vec<String> {
        self.metrics()
            .await
            .lines()
            .filter(|l| !l.starts_with('#') && words.iter().any(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }
}

async fn metrics_text(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    match reqwest::get(&url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of an unlabelled metric, if the endpoint answers and has it.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    metrics_text(port).await.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
