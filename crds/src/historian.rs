//! The historian's `readings` table: the contract between `weir-historian`
//! (which creates it and writes rows) and `weir-api` (which reads series for
//! charts and each tag's latest value from it). Kept here so both read one definition.

/// Columns of `readings` (one row per reading; `seq` is the frame's
/// per-gateway sequence number, see [`crate::message::Frame`]).
pub const READINGS_COLUMNS: &str = r#"
    tenant     text COLLATE "C" NOT NULL,
    gateway    text COLLATE "C" NOT NULL,
    device     text COLLATE "C" NOT NULL,
    tag        text COLLATE "C" NOT NULL,
    ts         timestamptz NOT NULL,
    value      double precision,
    value_text text,
    quality    integer NOT NULL DEFAULT 0,
    seq        bigint NOT NULL"#;

/// Gaps the historian could not fill: frames the agent acknowledged (or
/// numbered) that never reached the table and cannot be replayed any more.
/// One row per lost range; `seq_from..=seq_to` inclusive. `ts_from`/`ts_to`
/// are the read times of the last frame committed before the range and the
/// first after it (NULL when there is none): the time the chart shows as a
/// gap. `reason` is one of [`GAP_REASONS`].
pub const READING_GAPS_DDL: &str = r#"CREATE TABLE IF NOT EXISTS reading_gaps (
    tenant      text COLLATE "C" NOT NULL,
    gateway     text COLLATE "C" NOT NULL,
    seq_from    bigint NOT NULL,
    seq_to      bigint NOT NULL,
    ts_from     timestamptz,
    ts_to       timestamptz,
    detected_at timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    PRIMARY KEY (tenant, gateway, seq_from)
);
CREATE INDEX IF NOT EXISTS reading_gaps_detected ON reading_gaps (detected_at)"#;

/// Why a gap could not be filled.
/// * `not-retained`: the agent answered that it no longer holds those frames
///   (past `uplink.buffer.retain`, or dropped when its queue was full);
/// * `agent-unreachable`: the agent did not answer replay requests for the
///   whole replay window.
pub const GAP_REASONS: [&str; 2] = ["not-retained", "agent-unreachable"];

/// Gaps of one gateway whose time window overlaps a range, for charts.
/// Parameters: `$1` tenant, `$2` gateway, `$3` from, `$4` to (timestamptz).
/// Rows: `seq_from bigint, seq_to bigint, ts_from timestamptz (NULL),
/// ts_to timestamptz (NULL), detected_at timestamptz, reason text`.
pub const GAPS_SQL: &str = "SELECT seq_from, seq_to, ts_from, ts_to, detected_at, reason    FROM reading_gaps   WHERE tenant = $1 AND gateway = $2     AND coalesce(ts_to, detected_at) >= $3 AND coalesce(ts_from, '-infinity') < $4   ORDER BY seq_from";

/// Gaps recorded after a point, oldest first, for the api's `data_gap`
/// fleet events. Parameters: `$1` detected after (timestamptz), `$2` limit
/// (bigint). Rows: `tenant, gateway, seq_from, seq_to, ts_from, ts_to,
/// detected_at, reason`.
pub const NEW_GAPS_SQL: &str = "SELECT tenant, gateway, seq_from, seq_to, ts_from, ts_to, detected_at, reason    FROM reading_gaps WHERE detected_at > $1 ORDER BY detected_at, tenant, gateway, seq_from LIMIT $2";

/// Holes of one gateway the historian is asking the agent to replay right
/// now (open longer than its grace period, not yet filled nor recorded as
/// gaps), from the historian's `seq_holes` table. Parameters: `$1` tenant,
/// `$2` gateway. Rows: `seq_from bigint, seq_to bigint, first_seen_ms
/// bigint` (when the hole was first seen, ms since the epoch), `requests
/// integer` (replay requests sent so far), `last_request_ms bigint`.
pub const OPEN_GAPS_SQL: &str =
    "SELECT seq_from, seq_to, first_seen_ms, requests, last_request_ms \
   FROM seq_holes WHERE tenant = $1 AND gateway = $2 AND requests > 0 ORDER BY seq_from";

/// The unique key that makes redelivered readings a no-op, and the index
/// [`SERIES_SQL`] reads in order.
pub const SERIES_INDEX: &str =
    "CREATE UNIQUE INDEX readings_series_key ON readings (tenant, gateway, tag, ts, device, seq)";

/// A downsampled series of one tag.
///
/// Parameters: `$1` tenant (text), `$2` gateway (text), `$3` tag (text),
/// `$4` from (timestamptz, inclusive, also the bucket origin), `$5` to
/// (timestamptz, exclusive), `$6` step in seconds (double precision, > 0),
/// `$7` device (text or NULL for every device of the gateway that has this
/// tag). Rows: `bucket timestamptz` (start of the bucket), `avg`, `min`,
/// `max` (double precision, NULL when the bucket only has text readings),
/// `count bigint` (good readings in the bucket). Empty buckets are absent.
/// Only good readings (`quality = 0`) count. Needs PostgreSQL 14+
/// (`date_bin`).
pub const SERIES_SQL: &str =
    "SELECT date_bin(make_interval(secs => $6::float8), ts, $4::timestamptz) AS bucket, \
        avg(value), min(value), max(value), count(*) \
   FROM readings \
  WHERE tenant = $1 AND gateway = $2 AND tag = $3 \
    AND ts >= $4 AND ts < $5 \
    AND ($7::text IS NULL OR device = $7) \
    AND quality = 0 \
  GROUP BY bucket \
  ORDER BY bucket";

/// The newest reading of each (device, tag) of one gateway, in one query:
/// what the console's "Latest values" table shows.
///
/// Parameters: `$1` tenant (text), `$2` gateway (text), `$3` devices
/// (text[]), `$4` tags (text[]): `$3[i]`, `$4[i]` name one tag, as many as
/// the gateway's config has. Rows, one per pair in the order given:
/// `device text, tag text, ts timestamptz, value double precision,
/// value_text text, quality integer` (`ts` and the rest NULL when the tag
/// was never read). The newest reading counts whatever its quality (an
/// error reading is the tag's current state).
///
/// Each pair is one backward scan of [`SERIES_INDEX`] (`tenant, gateway,
/// tag` equal, `device` checked in the index tuples) under `LIMIT 1`; the
/// `ORDER BY` is exactly that index order reversed, and the day partitions
/// are range partitions on `ts`, so PostgreSQL runs them as an ordered
/// `Append`, newest day first, and stops at the first tuple. Measured with
/// `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL 15, 2.1 M rows over six day
/// partitions, 10 devices × 10 tags every 30 s: 100 tags in 13.5 ms
/// (1,500 buffer hits), of which a tag still read today costs 0.03 ms
/// (about 5 buffers, the older partitions "never executed"). The cost is in
/// a tag whose device stopped sending it (or never did) while other
/// devices send a tag of the same name: its scan walks those devices'
/// entries of every day back to its last reading (here 1.5–3 ms and 210
/// buffers per day). A separate index on `(tenant, gateway, device, tag,
/// ts)` would avoid that, at the cost of the historian's write rate (see
/// `weir-historian`'s schema notes), so there is none.
pub const LATEST_SQL: &str = "SELECT t.device, t.tag, r.ts, r.value, r.value_text, r.quality \
   FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(device, tag, i) \
   LEFT JOIN LATERAL ( \
     SELECT ts, value, value_text, quality FROM readings \
      WHERE tenant = $1 AND gateway = $2 AND tag = t.tag AND device = t.device \
      ORDER BY ts DESC, device DESC, seq DESC LIMIT 1) r ON true \
  ORDER BY t.i";
