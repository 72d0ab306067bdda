//! The historian's own schema: versioned migrations, daily partitions and
//! retention.
//!
//! Tables (in the connection's default schema, normally `public`):
//!
//! ```sql
//! weir_historian_meta(key text primary key, value text)   -- owner, version, layout
//! readings(tenant, gateway, device, tag  text COLLATE "C",
//!          ts timestamptz, value double precision, value_text text,
//!          quality integer  -- 0 = good, else the agent's error code
//!          seq bigint)      -- per-gateway frame sequence number
//! ```
//!
//! One unique index, `readings_series_key (tenant, gateway, tag, ts, device, seq)`,
//! serves both jobs:
//! * "tag over time" queries (`tenant, gateway, tag` equal, `ts` range) read it
//!   in order, the device filter is applied from the index tuples;
//! * exactly-once: a redelivered reading repeats all of these columns, so it
//!   collides. (gateway, seq, tag) already identifies a reading and determines
//!   ts, device and tenant, so this key rejects exactly the duplicates that a
//!   (gateway, seq, tag) key would. It must contain `ts` anyway: a unique index
//!   on a partitioned table has to include the partition key.
//!
//! We measured a second index (one for dedupe, one for queries) at roughly
//! half the COPY rate, so there is only this one. Text columns use the "C"
//! collation: byte order compares much faster than the locale's, and the
//! order of tag names has no meaning for us.
//!
//! Two layouts, chosen once at the first migration and recorded in the meta
//! table:
//! * `native`: `readings` is range-partitioned by `ts` into UTC days named
//!   `readings_pYYYYMMDD`, created ahead by [`maintain`] and on demand by the
//!   writer; retention drops whole days.
//! * `timescaledb`: when the extension is available, `readings` becomes a
//!   hypertable with 1-day chunks and retention uses `drop_chunks`. This path
//!   is not exercised on machines without TimescaleDB.
//!
//! Version 2 adds what keeps track of each gateway's `seq` (issue 20, see
//! `gaps`); `seq`s are bigints, times without a zone are Unix milliseconds:
//!
//! ```sql
//! reading_gaps(tenant, gateway, seq_from, seq_to, ts_from, ts_to, detected_at, reason)
//!     -- weir_crds::historian::READING_GAPS_DDL: gaps that will not be filled
//! seq_ranges(tenant, gateway, seq_from, seq_to, ts_from_ms, ts_to_ms)
//!     -- committed frames as runs of seq; appended in each batch's
//!     -- transaction (overlaps allowed), merged by the detect loop
//! seq_state(tenant, gateway PRIMARY KEY, origin_seq, last_acked_seq,
//!           first_kept_seq, next_seq, state_ms)
//!     -- the newest UplinkState of each gateway
//! seq_origins(tenant, gateway, origin_seq PRIMARY KEY)
//!     -- every sequence start seen: numbers below one were never issued
//! seq_missing(tenant, gateway, seq_from, seq_to, answered_at)
//!     -- ranges agents answered they no longer hold, until the detect loop
//!     -- records the still-missing parts as gaps
//! seq_holes(tenant, gateway, seq_from PRIMARY KEY, seq_to, ts_before_ms,
//!           ts_after_ms, first_seen_ms, requests, first_request_ms, last_request_ms)
//!     -- open holes and the replay requests sent for them; weir-api reads
//!     -- it (weir_crds::historian::OPEN_GAPS_SQL), so its columns are a contract
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use crate::Error;

/// Value of the `owner` key; anything else means the schema is not ours.
pub const OWNER: &str = "weir-historian";
/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: i32 = 2;
/// Arbitrary constant for `pg_advisory_xact_lock` so concurrent instances
/// migrate one after the other.
const MIGRATION_LOCK: i64 = 0x5745_4952_4849_5354; // "WEIRHIST"

const DAY_MS: i64 = 86_400_000;

/// How `readings` is partitioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Native,
    Timescale,
}

impl Layout {
    fn as_str(self) -> &'static str {
        match self {
            Layout::Native => "native",
            Layout::Timescale => "timescaledb",
        }
    }
}

use weir_crds::historian::{READINGS_COLUMNS, READING_GAPS_DDL, SERIES_INDEX};

/// Version 2: the contiguity tables of `gaps` (documented above).
const SEQ_TRACKING_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS seq_ranges (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    seq_from bigint NOT NULL, seq_to bigint NOT NULL,
    ts_from_ms bigint NOT NULL, ts_to_ms bigint NOT NULL);
CREATE INDEX IF NOT EXISTS seq_ranges_gateway ON seq_ranges (tenant, gateway, seq_from);
CREATE TABLE IF NOT EXISTS seq_state (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    origin_seq bigint NOT NULL, last_acked_seq bigint,
    first_kept_seq bigint NOT NULL, next_seq bigint NOT NULL, state_ms bigint NOT NULL,
    PRIMARY KEY (tenant, gateway));
CREATE TABLE IF NOT EXISTS seq_origins (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    origin_seq bigint NOT NULL, PRIMARY KEY (tenant, gateway, origin_seq));
CREATE TABLE IF NOT EXISTS seq_missing (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    seq_from bigint NOT NULL, seq_to bigint NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS seq_holes (
    tenant text COLLATE "C" NOT NULL, gateway text COLLATE "C" NOT NULL,
    seq_from bigint NOT NULL, seq_to bigint NOT NULL,
    ts_before_ms bigint, ts_after_ms bigint, first_seen_ms bigint NOT NULL,
    requests integer NOT NULL, first_request_ms bigint, last_request_ms bigint,
    PRIMARY KEY (tenant, gateway, seq_from))"#;

/// What a database holds before we touch it.
async fn inspect(client: &impl GenericClient) -> Result<Option<(String, i32, Layout)>, Error> {
    let meta = client
        .query_one("SELECT to_regclass('weir_historian_meta') IS NOT NULL, to_regclass('readings') IS NOT NULL", &[])
        .await?;
    let (has_meta, has_readings): (bool, bool) = (meta.get(0), meta.get(1));
    if !has_meta {
        if has_readings {
            return Err(Error::SchemaNotOurs(
                "a `readings` table exists but no `weir_historian_meta` table; \
                 weir-historian only writes to a schema it created — use a database of its own"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let rows = client
        .query("SELECT key, value FROM weir_historian_meta", &[])
        .await
        .map_err(|e| Error::SchemaNotOurs(format!("`weir_historian_meta` is unreadable: {e}")))?;
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == k)
            .map(|r| r.get::<_, String>(1))
    };
    let owner = get("owner").unwrap_or_default();
    if owner != OWNER {
        return Err(Error::SchemaNotOurs(format!(
            "`weir_historian_meta` names owner {owner:?}, expected {OWNER:?}"
        )));
    }
    let version: i32 = get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::SchemaNotOurs("`weir_historian_meta` has no valid version".into()))?;
    let layout = match get("layout").as_deref() {
        Some("native") => Layout::Native,
        Some("timescaledb") => Layout::Timescale,
        other => {
            return Err(Error::SchemaNotOurs(format!(
                "`weir_historian_meta` names an unknown layout {other:?}"
            )))
        }
    };
    Ok(Some((owner, version, layout)))
}

/// Bring the schema to [`SCHEMA_VERSION`]; idempotent and safe to run from
/// several instances at once. Returns the layout in use.
pub async fn migrate(client: &mut Client) -> Result<Layout, Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let (layout, version) = match inspect(&tx).await? {
        Some((_, version, _)) if version > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            })
        }
        Some((_, version, layout)) => (layout, version),
        None => {
            let timescale = tx
                .query_opt(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
                    &[],
                )
                .await?
                .is_some();
            let layout = if timescale {
                create_timescale(&tx).await?;
                Layout::Timescale
            } else {
                create_native(&tx).await?;
                Layout::Native
            };
            tx.execute(
                "INSERT INTO weir_historian_meta (key, value) VALUES ('owner', $1), ('version', '1'), ('layout', $2)",
                &[&OWNER, &layout.as_str()],
            )
            .await?;
            tracing::info!(layout = layout.as_str(), "created historian schema");
            (layout, 1)
        }
    };
    // Each later version's step, guarded by the stored version; all run
    // under the migration lock, so one instance does each step once.
    if version < 2 {
        tx.batch_execute(&format!("{READING_GAPS_DDL}; {SEQ_TRACKING_DDL}"))
            .await?;
    }
    if version < SCHEMA_VERSION {
        tx.execute(
            "UPDATE weir_historian_meta SET value = $1 WHERE key = 'version'",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await?;
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "migrated historian schema"
        );
    }
    tx.commit().await?;
    Ok(layout)
}

/// Check, without changing anything, that the schema is ours and current.
pub async fn check(client: &Client) -> Result<Layout, Error> {
    match inspect(client).await? {
        None => Err(Error::SchemaMissing),
        Some((_, v, _)) if v > SCHEMA_VERSION => Err(Error::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Some((_, v, _)) if v < SCHEMA_VERSION => Err(Error::SchemaMissing),
        Some((_, _, layout)) => Ok(layout),
    }
}

async fn create_native(tx: &impl GenericClient) -> Result<(), Error> {
    tx.batch_execute(&format!(
        "CREATE TABLE weir_historian_meta (key text PRIMARY KEY, value text NOT NULL);
         CREATE TABLE readings ({READINGS_COLUMNS}) PARTITION BY RANGE (ts);
         {SERIES_INDEX};"
    ))
    .await?;
    Ok(())
}

/// TimescaleDB variant: same columns and key, a hypertable instead of our
/// own partitions. Kept apart so the native path never depends on it.
async fn create_timescale(tx: &impl GenericClient) -> Result<(), Error> {
    tx.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS timescaledb;
         CREATE TABLE weir_historian_meta (key text PRIMARY KEY, value text NOT NULL);
         CREATE TABLE readings ({READINGS_COLUMNS});
         SELECT create_hypertable('readings', 'ts', chunk_time_interval => interval '1 day');
         {SERIES_INDEX};"
    ))
    .await?;
    Ok(())
}

/// UTC day number (days since 1970-01-01) of a timestamp in milliseconds.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

fn today() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64;
    day_of(now)
}

/// `(name, from, to)` of a day's partition; bounds as ISO dates (UTC).
fn partition_of(day: i64) -> (String, String, String) {
    let date = |d: i64| {
        chrono::DateTime::from_timestamp(d * 86_400, 0)
            .map(|t| t.date_naive())
            .unwrap_or_default()
    };
    let (from, to) = (date(day), date(day + 1));
    (
        format!("readings_p{}", from.format("%Y%m%d")),
        format!("{} 00:00:00+00", from.format("%Y-%m-%d")),
        format!("{} 00:00:00+00", to.format("%Y-%m-%d")),
    )
}

/// Day number encoded in a partition name, if it is one of ours.
fn day_of_partition(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("readings_p")?;
    let date = chrono::NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
    let secs = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some(secs.div_euclid(86_400))
}

/// Create the partitions for these days if missing. Concurrent creation by
/// another instance counts as success.
pub async fn ensure_partitions(
    client: &Client,
    days: impl IntoIterator<Item = i64>,
) -> Result<(), tokio_postgres::Error> {
    for day in days {
        let (name, from, to) = partition_of(day);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings FOR VALUES FROM ('{from}') TO ('{to}')"
        );
        match client.batch_execute(&sql).await {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.code(),
                    Some(&SqlState::DUPLICATE_TABLE) | Some(&SqlState::UNIQUE_VIOLATION)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Days that have a partition now.
pub async fn existing_partitions(client: &Client) -> Result<BTreeSet<i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'readings'::regclass",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| day_of_partition(r.get::<_, &str>(0)))
        .collect())
}

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Vec<i64>,
    pub dropped: Vec<i64>,
}

/// Create partitions from yesterday to `ahead_days` ahead and drop those that
/// end before `now - retention_days` (0 keeps everything).
pub async fn maintain(
    client: &Client,
    layout: Layout,
    ahead_days: u32,
    retention_days: u32,
) -> Result<Maintenance, tokio_postgres::Error> {
    let mut done = Maintenance::default();
    match layout {
        Layout::Native => {
            let today = today();
            let existing = existing_partitions(client).await?;
            let wanted: Vec<i64> = (today - 1..=today + i64::from(ahead_days))
                .filter(|d| !existing.contains(d))
                .collect();
            ensure_partitions(client, wanted.iter().copied()).await?;
            done.created = wanted;
            if retention_days > 0 {
                // Day d's partition holds [d, d+1): drop it when its end
                // d+1 is at or before the retention horizon, i.e. d < horizon.
                let horizon = today - i64::from(retention_days);
                for day in existing.into_iter().filter(|d| *d < horizon) {
                    let (name, _, _) = partition_of(day);
                    // A short lock timeout: DROP needs an exclusive lock on
                    // the parent and must not stall the writers behind it.
                    client
                        .batch_execute(&format!(
                            "SET lock_timeout = '2s'; DROP TABLE IF EXISTS {name}; RESET lock_timeout"
                        ))
                        .await?;
                    done.dropped.push(day);
                }
            }
        }
        Layout::Timescale => {
            if retention_days > 0 {
                let days = i32::try_from(retention_days).unwrap_or(i32::MAX);
                client
                    .execute(
                        "SELECT drop_chunks('readings', older_than => now() - $1::int * interval '1 day')",
                        &[&days],
                    )
                    .await?;
            }
        }
    }
    if !done.created.is_empty() || !done.dropped.is_empty() {
        tracing::info!(created = ?done.created, dropped = ?done.dropped, "partition maintenance");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_and_bounds_are_utc_days() {
        let day = day_of(1_764_028_800_000 + 5); // 2025-11-25T00:00:00.005Z
        let (name, from, to) = partition_of(day);
        assert_eq!(name, "readings_p20251125");
        assert_eq!(from, "2025-11-25 00:00:00+00");
        assert_eq!(to, "2025-11-26 00:00:00+00");
        assert_eq!(day_of_partition(&name), Some(day));
        assert_eq!(day_of(-1), -1);
        assert_eq!(partition_of(-1).0, "readings_p19691231");
        assert_eq!(day_of_partition("readings_stage"), None);
    }
}
