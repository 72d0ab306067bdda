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

/// Several series of one gateway in one query, for the console's trends:
/// the raw readings when every series has few enough of them in the range,
/// else time buckets (as [`SERIES_SQL`] computes them, per series).
///
/// Parameters: `$1` tenant (text), `$2` gateway (text), `$3` devices
/// (text[]; a NULL element: every device of the gateway that has the tag),
/// `$4` tags (text[]): `$3[i]`, `$4[i]` name series `i` (1-based); `$5`
/// from (timestamptz, inclusive, also the bucket origin), `$6` to
/// (timestamptz, exclusive), `$7` step in seconds (double precision, > 0),
/// `$8` raw limit (bigint): at most this many readings per series come back
/// raw; if any series has more, or `$8` is negative, every series comes
/// back in buckets.
///
/// Rows, by series then time: `bucketed boolean` (the same on every row),
/// `i bigint` (the series; 0 on the first row, which only carries
/// `bucketed`, so an answer without readings still says which kind it is),
/// `t timestamptz` (read time, or bucket start),
/// `value double precision` (the reading, or the bucket's average), `min`,
/// `max` (double precision, buckets only), `count bigint` (buckets only:
/// good readings), `value_text text` (raw only), `quality integer` (raw
/// only: 0 or the agent's error code; buckets count good readings only).
///
/// The raw part reads at most `$8 + 1` index entries per series (the
/// [`SERIES_INDEX`] order, `LIMIT`); the bucket part runs only when that
/// found too many: both sit under a one-time filter on the same `InitPlan`,
/// so PostgreSQL executes exactly one of them. Each reads the series through
/// a `UNION ALL` of "this device" and "any device" (the latter gated on
/// `$3[i] IS NULL`) rather than `(device IS NULL OR device = …)`, which
/// would take `device` out of the index condition: with three devices
/// sharing a tag name that OR cost 3× the heap reads. Each branch has its
/// own `ORDER BY … LIMIT` so the raw probe stays an ordered index scan that
/// stops early (without them PostgreSQL sorts the whole range).
///
/// Measured with `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL 15, two day
/// partitions, 2.1 M rows (3 devices × 4 tags, one reading a second, the
/// tag names shared by the devices), on a busy 2-core machine: 2 series
/// over 10 minutes answer raw (1,200 rows) in 3.3–7.6 ms, 225 buffers, the
/// bucket part "never executed"; 8 series over 10 minutes raw (4,800 rows)
/// in 18 ms; 2 series over 24 h (86,400 readings each) in 5-minute buckets
/// in 0.50–0.56 s with the raw probe (2,001 entries a series, 2.7 ms
/// each) and 0.45–0.52 s with `$8 = -1`; 8 series over 24 h in 1.9 s.
pub const TRENDS_SQL: &str = "WITH t AS MATERIALIZED ( \
     SELECT device, tag, i FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(device, tag, i)), \
   raw AS MATERIALIZED ( \
     SELECT t.i, r.ts, r.value, r.value_text, r.quality FROM t CROSS JOIN LATERAL ( \
       SELECT ts, value, value_text, quality FROM ( \
         (SELECT ts, device, seq, value, value_text, quality FROM readings \
           WHERE tenant = $1 AND gateway = $2 AND tag = t.tag AND device = t.device \
             AND ts >= $5 AND ts < $6 \
           ORDER BY ts, device, seq LIMIT greatest($8::bigint, -1) + 1) \
         UNION ALL \
         (SELECT ts, device, seq, value, value_text, quality FROM readings \
           WHERE tenant = $1 AND gateway = $2 AND tag = t.tag AND t.device IS NULL \
             AND ts >= $5 AND ts < $6 \
           ORDER BY ts, device, seq LIMIT greatest($8::bigint, -1) + 1)) one \
        ORDER BY ts, device, seq LIMIT greatest($8::bigint, -1) + 1) r), \
   pick AS ( \
     SELECT $8::bigint < 0 OR coalesce(bool_or(n > $8::bigint), false) AS bucketed \
       FROM (SELECT count(*) AS n FROM raw GROUP BY i) c) \
 SELECT bucketed, 0::bigint AS i, NULL::timestamptz AS t, NULL::float8 AS value, NULL::float8, \
        NULL::float8, NULL::bigint, NULL::text, 0 \
   FROM pick \
 UNION ALL \
 SELECT false, raw.i, raw.ts, raw.value, NULL::float8, NULL::float8, NULL::bigint, \
        raw.value_text, raw.quality \
   FROM raw WHERE NOT (SELECT bucketed FROM pick) \
 UNION ALL \
 SELECT true, t.i, b.bucket, b.avg, b.min, b.max, b.n, NULL::text, 0 \
   FROM t CROSS JOIN LATERAL ( \
     SELECT date_bin(make_interval(secs => $7::float8), ts, $5::timestamptz) AS bucket, \
            avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n \
       FROM ( \
       SELECT ts, value FROM readings \
        WHERE tenant = $1 AND gateway = $2 AND tag = t.tag AND device = t.device \
          AND ts >= $5 AND ts < $6 AND quality = 0 \
       UNION ALL \
       SELECT ts, value FROM readings \
        WHERE tenant = $1 AND gateway = $2 AND tag = t.tag AND t.device IS NULL \
          AND ts >= $5 AND ts < $6 AND quality = 0) one \
      GROUP BY 1) b \
  WHERE (SELECT bucketed FROM pick) \
  ORDER BY 2, 3";
