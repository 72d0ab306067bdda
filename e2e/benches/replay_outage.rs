//! Replay into PostgreSQL after a 60-second broker outage with the
//! historian also restarting (DESIGN.md goal: ≥ 300,000 readings/s).
//!
//! The path, all real processes on this machine (release builds):
//! simulated devices → `weir-agent` (enrolled through `weir-api`, default
//! uplink settings: QoS 1, 500 readings per message, linger 20 ms, 1 GiB
//! disk queue, fsync every 1000 ms, requireSubscriber) → Mosquitto without
//! persistence → `weir-historian` (default settings: 2 writers, 20,000-row
//! batches, binary COPY) → PostgreSQL at 127.0.0.1:5432 (a fresh database).
//!
//! Load: one gateway at its largest, 10 devices × 100 float tags every
//! 20 ms = 50,000 readings/s. Then the broker and the historian are both
//! SIGKILLed; 60 s later the broker starts again (empty: no sessions) and so
//! does the historian. The figure: readings read during the outage (the
//! agent's backlog) divided by the time from the historian being subscribed
//! again to the last of them committed. That time includes the agent's
//! reconnect back-off (doubling up to 1 s while the broker is away) and its wait for a subscriber, so the
//! line also gives the rate from the first of them committed to the last. Live readings keep coming at
//! 50,000/s meanwhile and share the path. The run then stops the traffic and
//! checks that every frame the agent issued is in the table exactly once
//! (frames the dead broker had acknowledged are filled by the historian's
//! replay requests); it fails loudly if not.
//!
//! Run: `cargo build --release -p weir-agent -p weir-api -p weir-historian`,
//! then `cargo bench -p weir-e2e --bench replay_outage`. Env:
//! `WEIR_BENCH_OUTAGE_SECS` (default 60).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{
    gateway_with_token, patch_spec, plant_spec, seed_project, start_agent, wait_applied,
};
use weir_e2e::historian::Historian;
use weir_e2e::uplink_watch::{Committed, UplinkWatch};
use weir_e2e::{broker_in_memory, ApiClient};
use weir_testkit::postgres::connect;
use weir_testkit::TestDb;

const TENANT: &str = "bench";
const GW: &str = "plant";
const DEVICES: usize = 10;
const TAGS: usize = 100;
const INTERVAL_MS: u64 = 20;
const RATE: usize = DEVICES * TAGS * 1000 / INTERVAL_MS as usize;
const GOAL: f64 = 300_000.0;

/// No uplink settings: the defaults.
fn spec(devices: usize) -> Value {
    plant_spec(devices, TAGS, INTERVAL_MS, json!({}))
}

/// Frames (one per device read) with read time in `(from, to]`: tag `t0` is
/// in every frame, and the series index answers this from one range.
async fn frames_between(db_url: &str, from: SystemTime, to: SystemTime) -> Result<i64> {
    Ok(connect(db_url)
        .await
        .query_one(
            "SELECT count(*) FROM readings
              WHERE tenant = $1 AND gateway = $2 AND tag = 't0' AND ts > $3 AND ts <= $4",
            &[&TENANT, &GW, &from, &to],
        )
        .await?
        .get(0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("replay_outage FAILED: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let outage = Duration::from_secs(
        std::env::var("WEIR_BENCH_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let dir = tempfile::tempdir()?;
    let pg = TestDb::create("bench_replay").await;
    let mut broker = broker_in_memory().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "works", &broker.url()).await?;
    let watch = UplinkWatch::start(broker.port, "weir", TENANT);
    let mut historian = Historian::start(
        dir.path(),
        &broker.url(),
        &pg.url,
        TENANT,
        "bench-historian",
        &[],
    )
    .await?;
    let token = gateway_with_token(&admin, &base, GW, spec(DEVICES)).await?;
    let _agent = start_agent(dir.path(), GW, &base_url, Some(&token))?;
    wait_applied(&admin, &base, GW, Duration::from_secs(60)).await?;
    let epoch = SystemTime::UNIX_EPOCH;
    let start = Instant::now();
    while frames_between(&pg.url, epoch, SystemTime::now()).await? == 0 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no readings reached PostgreSQL within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let down = SystemTime::now();
    broker.kill();
    historian.kill();
    tokio::time::sleep(outage).await;
    let broker_up = SystemTime::now();
    broker.restart().await;
    historian
        .start_again()
        .await
        .context("the historian after the outage")?;
    let t0 = Instant::now();

    // Sample the outage's frames in the table until the traffic stops.
    let mut samples: Vec<(Duration, i64)> = Vec::new();
    let mut last_change = Instant::now();
    loop {
        let n = frames_between(&pg.url, down, broker_up).await?;
        if samples.last().is_none_or(|&(_, m)| m != n) {
            last_change = Instant::now();
        }
        samples.push((t0.elapsed(), n));
        // Stable for 3 s after the historian's grace period (10 s) had a
        // chance to fill what the dead broker had acknowledged.
        if n > 0
            && last_change.elapsed() > Duration::from_secs(3)
            && t0.elapsed() > Duration::from_secs(15)
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            bail!("the outage's readings were still arriving after 180 s: {n} frames so far");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stop the traffic; every frame issued must be in the table once.
    patch_spec(&admin, &base, GW, spec(0)).await?;
    wait_applied(&admin, &base, GW, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = SystemTime::now().duration_since(epoch)?.as_millis() as i64;
    let Committed {
        issued,
        frames,
        rows,
    } = watch
        .all_issued_committed(
            &pg.url,
            TENANT,
            GW,
            stopped,
            TAGS as i64,
            Duration::from_secs(120),
        )
        .await?;

    let outage_frames = frames_between(&pg.url, down, broker_up).await?;
    let done = samples
        .iter()
        .find(|&&(_, n)| n == outage_frames)
        .map(|&(t, _)| t)
        .context("the outage's readings were still arriving when sampling stopped")?;
    let first = samples
        .iter()
        .find(|&&(_, n)| n > 0)
        .map(|&(t, _)| t)
        .unwrap_or_default();
    let readings = outage_frames * TAGS as i64;
    let rate = readings as f64 / done.as_secs_f64();
    let seen = watch.seen();
    let requests = seen.requests.get(GW).map_or(0, Vec::len);
    println!(
        "replay_outage (weir-agent -> Mosquitto, no persistence -> weir-historian -> PostgreSQL; \
         {RATE} readings/s live, {} s broker outage, historian killed and restarted)",
        outage.as_secs()
    );
    // From the first outage reading committed to the last: the drain alone,
    // without the agent's reconnect back-off (doubling to 1 s while the
    // broker was away).
    let drain = done.saturating_sub(first).as_secs_f64().max(0.001);
    println!(
        "  replay into PostgreSQL after a {} s broker outage: {rate:.0} readings/s \
         ({readings} readings read during the outage, all committed {:.2} s after the \
         historian was back; the first after {:.2} s (agent reconnect back-off and subscriber check), then \
         {:.0} readings/s to the last; goal >= {GOAL:.0})",
        outage.as_secs(),
        done.as_secs_f64(),
        first.as_secs_f64(),
        readings as f64 / drain
    );
    println!(
        "  checked: {issued} frames issued, {frames} in the table once each ({rows} rows); \
         {requests} replay requests for frames the killed broker had acknowledged"
    );
    for line in historian
        .metric_lines(&["replay", "gap", "rows_written"])
        .await
    {
        println!("  historian metric after the restart: {line}");
    }
    Ok(())
}
