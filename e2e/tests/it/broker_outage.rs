//! Scenario 3: an agent reads 50,000 readings/s from simulated devices; the
//! broker goes down for 30 s; afterwards the historian's table holds every
//! reading exactly once: no frame missing, none twice, those read during the
//! outage included.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde_json::json;
use weir_e2e::api::{start_api_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, plant_spec, seed_project, start_agent, wait_applied};
use weir_e2e::{broker, ApiClient};
use weir_testkit::{bin, free_port, Proc, TestDb};

const DEVICES: usize = 10;
/// 1,000 tags in all: the most one gateway may read.
const TAGS: usize = 100;
const INTERVAL_MS: u64 = 20;
/// DEVICES × TAGS readings every INTERVAL_MS.
const RATE: usize = DEVICES * TAGS * 1000 / INTERVAL_MS as usize;
const OUTAGE: Duration = Duration::from_secs(30);

struct Tally {
    rows: i64,
    frames: i64,
    first_seq: i64,
    last_seq: i64,
    during_outage: i64,
    after_restart: i64,
}

async fn tally(db: &tokio_postgres::Client, down: SystemTime, up: SystemTime) -> Result<Tally> {
    let r = db
        .query_one(
            "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), -1), coalesce(max(seq), -1),
                    count(*) FILTER (WHERE ts > $1 AND ts < $2),
                    count(*) FILTER (WHERE ts > $2 + interval '3 seconds')
               FROM readings WHERE gateway = 'intake'",
            &[&down, &up],
        )
        .await?;
    Ok(Tally {
        rows: r.get(0),
        frames: r.get(1),
        first_seq: r.get(2),
        last_seq: r.get(3),
        during_outage: r.get(4),
        after_restart: r.get(5),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_30s_under_50k_readings_per_second_loses_and_repeats_nothing() -> Result<()> {
    assert_eq!(RATE, 50_000);
    let dir = tempfile::tempdir()?;
    let pg = TestDb::create("e2e_outage").await;
    let mut broker = broker().await;
    let (_api, base_url) = start_api_with(dir.path(), None, &[]).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, "riverside", "plant", &broker.url()).await?;

    let mut cmd = std::process::Command::new(bin("weir-historian"));
    cmd.args(["--mqtt-url", &broker.url(), "--tenant", "riverside"])
        .args(["--database-url", &pg.url])
        .args(["--client-id", "e2e-historian"])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "info");
    let _historian = Proc::spawn("weir-historian", &mut cmd, dir.path())?;

    let token = gateway_with_token(
        &admin,
        &base,
        "intake",
        plant_spec(DEVICES, TAGS, INTERVAL_MS, json!({"lingerMs": 20})),
    )
    .await?;
    let _agent = start_agent(dir.path(), "intake", &base_url, Some(&token))?;
    wait_applied(&admin, &base, "intake", Duration::from_secs(60)).await?;

    let db = pg.client().await;
    let epoch = SystemTime::UNIX_EPOCH;
    let started = Instant::now();
    while tally(&db, epoch, epoch).await?.rows == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no readings reached the historian"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let down = SystemTime::now();
    broker.stop();
    tokio::time::sleep(OUTAGE).await;
    broker.restart().await;
    let up = SystemTime::now();
    let outage = up.duration_since(down)?.as_secs_f64();

    // Done once readings taken after the restart are in and every frame
    // between the first and the last is there (commits still in flight may
    // fill a gap for a while; one that stays until the deadline fails).
    let deadline = Instant::now() + Duration::from_secs(240);
    let t = loop {
        let t = tally(&db, down, up).await?;
        let missing = t.last_seq - t.first_seq + 1 - t.frames;
        if t.after_restart > 0 && missing == 0 {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the historian did not catch up: {} rows, {} frames in seq {}..={} ({missing} missing), {} after the restart",
            t.rows,
            t.frames,
            t.first_seq,
            t.last_seq,
            t.after_restart
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let outage_rate = t.during_outage as f64 / outage;
    println!(
        "rows {} in {} frames (seq {}..={}); {} read during the {:.1} s outage ({outage_rate:.0}/s)",
        t.rows,
        t.frames,
        t.first_seq,
        t.last_seq,
        t.during_outage,
        outage
    );
    assert_eq!(
        t.rows,
        t.frames * TAGS as i64,
        "each frame has all its {TAGS} readings, none twice"
    );
    assert!(
        outage_rate > RATE as f64 * 0.8,
        "readings taken while the broker was down are all there ({outage_rate:.0}/s of {RATE}/s)"
    );
    Ok(())
}
