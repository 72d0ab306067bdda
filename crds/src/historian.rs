//! The historian's `readings` table: the contract between `weir-historian`
//! (which creates it and writes rows) and `weir-api` (which reads series for
//! charts from it). Kept here so both read one definition.

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
