//! Issue 20, "nothing lost end to end, even when the broker is killed": real
//! weir-api, weir-agent, weir-historian, Mosquitto without persistence and
//! PostgreSQL processes, killed and restarted under load.
//!
//! 1. Every frame arrives exactly once through two broker kills, a
//!    historian kill and a PostgreSQL restart, and no gap is recorded.
//! 2. A loss that cannot be replayed (retention expired) is recorded as gap
//!    rows equal to exactly what the table lacks, and the api shows it as a
//!    `data_gap` fleet event.
//!
//! What each gateway issued is read from its own [`UplinkState`] on the
//! broker (`cmd/uplink/state`): frames `origin_seq..next_seq`, so a loss at
//! the end of the stream counts too.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use weir_crds::message::UplinkState;
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{
    gateway_with_token, patch_spec, plant_spec, seed_project, start_agent, wait_applied,
};
use weir_e2e::historian::Historian;
use weir_e2e::uplink_watch::UplinkWatch;
use weir_e2e::{broker_in_memory, ApiClient};
use weir_testkit::postgres::connect;
use weir_testkit::{PgServer, StopMode, TestDb};

const TENANT: &str = "riverside";

/// The same gateway with no devices: traffic stops, the agent (and its
/// retained frames, for replays) stays.
fn idle_spec(uplink: Value) -> Value {
    json!({"mode": "external", "clusterRef": "broker", "devices": [], "uplink": uplink})
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// One gateway's frames in `readings`.
#[derive(Debug)]
struct Tally {
    rows: i64,
    frames: i64,
    min_seq: i64,
    max_seq: i64,
}

/// A fresh connection per look: PostgreSQL may have been restarted since.
async fn tally(db_url: &str, gateway: &str) -> Result<Tally> {
    let r = connect(db_url)
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), -1), coalesce(max(seq), -1)
               FROM readings WHERE tenant = $1 AND gateway = $2",
            &[&TENANT, &gateway],
        )
        .await?;
    Ok(Tally {
        rows: r.get(0),
        frames: r.get(1),
        min_seq: r.get(2),
        max_seq: r.get(3),
    })
}

/// The frames of `origin..next` the gateway issued, per its uplink state.
fn issued(s: &UplinkState) -> (i64, i64) {
    (s.origin_seq as i64, s.next_seq as i64 - 1)
}

async fn wait_for_rows(db_url: &str, gateways: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for gw in gateways {
        while tally(db_url, gw).await?.rows == 0 {
            if Instant::now() > deadline {
                bail!("no readings of {gw} reached the historian's table within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Stop every gateway's traffic (a config with no devices) and wait until
/// each agent applied it; returns the time (ms) from which an uplink state
/// names the final `next_seq`.
async fn stop_traffic(
    admin: &ApiClient,
    base: &str,
    gateways: &[&str],
    uplink: &Value,
) -> Result<i64> {
    for gw in gateways {
        patch_spec(admin, base, gw, idle_spec(uplink.clone())).await?;
    }
    for gw in gateways {
        wait_applied(admin, base, gw, Duration::from_secs(30)).await?;
    }
    // A frame read just before the new config applied may still be queued.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(now_ms())
}

/// A state sent after `since` (ms), so its `next_seq` is final.
fn final_state(watch: &UplinkWatch, gw: &str, since: i64) -> Option<UplinkState> {
    watch.state(gw).filter(|s| s.timestamp > since)
}

async fn gap_rows(db_url: &str) -> Result<Vec<(String, i64, i64, String)>> {
    let rows = connect(db_url)
        .await
        .query(
            "SELECT gateway, seq_from, seq_to, reason FROM reading_gaps ORDER BY gateway, seq_from",
            &[],
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("reading reading_gaps (the historian creates it with `readings`): {e}")
        })?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

const NOTHING_LOST_GATEWAYS: [&str; 3] = ["intake", "filtration", "pumping"];
const DEVICES: usize = 5;
const TAGS: usize = 100;
const INTERVAL_MS: u64 = 30;
/// Readings per second of all three gateways together.
const TOTAL_RATE: usize =
    NOTHING_LOST_GATEWAYS.len() * DEVICES * TAGS * 1000 / INTERVAL_MS as usize;
const DOWN: Duration = Duration::from_secs(2);
const BETWEEN: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_through_broker_kills_a_historian_kill_and_a_postgres_restart() -> Result<()> {
    assert_eq!(TOTAL_RATE, 50_000);
    let gateways = NOTHING_LOST_GATEWAYS;
    let dir = tempfile::tempdir()?;
    let mut pg = PgServer::start();
    let db_url = pg.create_database("historian").await;
    let mut broker = broker_in_memory().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "plant", &broker.url()).await?;
    let watch = UplinkWatch::start(broker.port, "weir", TENANT);
    let mut historian = Historian::start(
        dir.path(),
        &broker.url(),
        &db_url,
        TENANT,
        "e2e-historian",
        &[],
    )
    .await?;

    // Default uplink settings but the scenario's short linger (as scenario 3).
    let uplink = json!({"lingerMs": 20});
    let mut agents = Vec::new();
    for gw in gateways {
        let spec = plant_spec(DEVICES, TAGS, INTERVAL_MS, uplink.clone());
        let token = gateway_with_token(&admin, &base, gw, spec).await?;
        agents.push(start_agent(dir.path(), gw, &base_url, Some(&token))?);
    }
    for gw in gateways {
        wait_applied(&admin, &base, gw, Duration::from_secs(60)).await?;
    }
    wait_for_rows(&db_url, &gateways).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let chaos = Instant::now();
    broker.kill();
    tokio::time::sleep(DOWN).await;
    broker.restart().await;
    tokio::time::sleep(BETWEEN).await;

    historian.kill();
    tokio::time::sleep(DOWN).await;
    historian.start_again().await?;
    tokio::time::sleep(BETWEEN).await;

    pg.restart(StopMode::Immediate);
    tokio::time::sleep(BETWEEN).await;

    broker.kill();
    tokio::time::sleep(DOWN).await;
    broker.restart().await;
    tokio::time::sleep(BETWEEN).await;
    println!(
        "two broker kills, a historian kill and a PostgreSQL restart in {:.1} s",
        chaos.elapsed().as_secs_f64()
    );

    let stopped = stop_traffic(&admin, &base, &gateways, &uplink).await?;
    // Done when each gateway's table holds every frame it issued; holes are
    // replayed after the historian's grace period, so this takes a while.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = BTreeSet::new();
    while done.len() < gateways.len() {
        for gw in gateways {
            let t = tally(&db_url, gw).await?;
            let state = final_state(&watch, gw, stopped);
            let complete = state.as_ref().is_some_and(|s| {
                let (first, last) = issued(s);
                t.min_seq == first && t.max_seq == last && t.frames == last - first + 1
            });
            if complete {
                done.insert(gw);
            } else if Instant::now() > deadline {
                bail!(
                    "{gw}: not every frame it issued reached the table within 120 s of the \
                     traffic stopping: issued {:?} (uplink state {state:?}), table {t:?} \
                     ({} frames missing); replay requests seen {:?}, answers {:?}",
                    state.as_ref().map(issued),
                    state
                        .as_ref()
                        .map(|s| issued(s).1 - issued(s).0 + 1 - t.frames)
                        .unwrap_or(-1),
                    watch.seen().requests.get(gw),
                    watch.seen().responses.get(gw)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let seen = watch.seen();
    let mut total_rows = 0;
    for gw in gateways {
        let t = tally(&db_url, gw).await?;
        total_rows += t.rows;
        println!(
            "{gw}: {} frames (seq {}..={}), {} rows; replay requests {}, answers {}",
            t.frames,
            t.min_seq,
            t.max_seq,
            t.rows,
            seen.requests.get(gw).map_or(0, Vec::len),
            seen.responses.get(gw).map_or(0, Vec::len)
        );
        assert_eq!(
            t.rows,
            t.frames * TAGS as i64,
            "{gw}: each frame has all its {TAGS} readings, none twice"
        );
    }
    println!("{total_rows} rows in all");
    for line in historian.metric_lines(&["replay", "gap"]).await {
        println!("historian metric: {line}");
    }
    let gaps = gap_rows(&db_url).await?;
    assert!(gaps.is_empty(), "no gap was recorded: {gaps:?}");
    drop(agents);
    Ok(())
}

/// Sorted, merged inclusive ranges of `seqs` (sorted).
fn ranges(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == s => *to = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The seqs of `from..=to` the table lacks for `gateway`, as ranges.
async fn missing_ranges(
    db_url: &str,
    gateway: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>> {
    let rows = connect(db_url)
        .await
        .query(
            "SELECT s FROM generate_series($3::bigint, $4::bigint) s
              WHERE s NOT IN (SELECT DISTINCT seq FROM readings WHERE tenant = $1 AND gateway = $2)
              ORDER BY s",
            &[&TENANT, &gateway, &from, &to],
        )
        .await?;
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(ranges(&seqs))
}

/// Gap rows' ranges merged where they touch (the historian may record one
/// loss as several rows, as its replay requests were split).
fn merged(gaps: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut sorted = gaps.to_vec();
    sorted.sort();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (from, to) in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 >= from => *end = (*end).max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreplayable_loss_is_recorded_as_exactly_the_missing_frames_and_alerted() -> Result<()>
{
    const GW: &str = "outfall";
    let dir = tempfile::tempdir()?;
    let pg = TestDb::create("e2e_gap").await;
    let mut broker = broker_in_memory().await;
    let (_api, base_url) =
        start_api_with(dir.path(), None, &[("WEIR_HISTORIAN_URL", &pg.url)]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, TENANT, "coast", &broker.url()).await?;
    let watch = UplinkWatch::start(broker.port, "weir", TENANT);
    let mut historian = Historian::start(
        dir.path(),
        &broker.url(),
        &pg.url,
        TENANT,
        "e2e-historian",
        &[],
    )
    .await?;

    // Acknowledged frames are kept 3 s only. The agent drops retained
    // frames a whole segment (an eighth of `maxBytes`) at a time once the
    // segment is closed: a 4 MiB queue and 5,000 readings/s close one every
    // few seconds.
    let uplink = json!({"lingerMs": 20,
                        "buffer": {"maxBytes": 4 << 20, "retain": {"maxAgeSecs": 3}}});
    let spec = plant_spec(2, 50, 20, uplink.clone());
    let token = gateway_with_token(&admin, &base, GW, spec).await?;
    let _agent = start_agent(dir.path(), GW, &base_url, Some(&token))?;
    wait_applied(&admin, &base, GW, Duration::from_secs(60)).await?;
    wait_for_rows(&pg.url, &[GW]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The broker keeps the historian's session and queues its frames in
    // memory, acknowledging them to the agent; then it dies with them.
    historian.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.kill();
    broker.restart().await;
    // Long enough for the agent's 3 s retention of those frames to expire.
    tokio::time::sleep(Duration::from_secs(6)).await;
    historian.start_again().await?;
    // Traffic goes on past the historian's grace period (10 s), closing the
    // segments that held the lost frames, so they are gone when it asks.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let stopped = stop_traffic(&admin, &base, &[GW], &uplink).await?;

    // Settled when the table holds the last frame issued and the gap rows
    // name exactly the frames the table lacks.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (missing, gaps) = loop {
        let t = tally(&pg.url, GW).await?;
        let state = final_state(&watch, GW, stopped);
        let gaps = gap_rows(&pg.url).await.unwrap_or_default();
        if let Some(s) = &state {
            let (first, last) = issued(s);
            if t.max_seq == last {
                let missing = missing_ranges(&pg.url, GW, first, last).await?;
                let recorded: Vec<(i64, i64)> = gaps.iter().map(|g| (g.1, g.2)).collect();
                if !missing.is_empty() && merged(&recorded) == missing {
                    break (missing, gaps);
                }
                if Instant::now() > deadline {
                    bail!(
                        "after 90 s the gap rows {gaps:?} are not what the table lacks of \
                         {first}..={last}: {missing:?}; table {t:?}; replay requests {:?}, \
                         answers {:?}",
                        watch.seen().requests.get(GW),
                        watch.seen().responses.get(GW)
                    );
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "after 90 s the table does not hold the last frame issued: uplink state \
                 {state:?}, table {t:?}, gap rows {gaps:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lost: i64 = missing.iter().map(|(a, b)| b - a + 1).sum();
    println!("lost {lost} frames in {missing:?}; gap rows {gaps:?}");
    for (gateway, _, _, reason) in &gaps {
        assert_eq!(gateway, GW);
        assert_eq!(
            reason, "not-retained",
            "the agent no longer held them: {gaps:?}"
        );
    }

    // The api shows each recorded gap as a data_gap fleet event of that
    // gateway, naming its range and reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = admin
            .get(&format!("{base}/fleet-events?kind=data_gap"))
            .await?;
        let items = events
            .as_array()
            .cloned()
            .or_else(|| events["items"].as_array().cloned())
            .unwrap_or_default();
        let shown: BTreeSet<(i64, i64)> = items
            .iter()
            .filter(|e| e["kind"] == "data_gap" && e["gateway"] == GW)
            .filter(|e| e["gap"]["reason"] == "not-retained")
            .filter_map(|e| Some((e["gap"]["seq_from"].as_i64()?, e["gap"]["seq_to"].as_i64()?)))
            .collect();
        let recorded: BTreeSet<(i64, i64)> = gaps.iter().map(|g| (g.1, g.2)).collect();
        if shown == recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the api's data_gap fleet events of {GW} do not show the recorded gaps \
             {recorded:?} within 30 s: {events}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
