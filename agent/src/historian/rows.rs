//! From one MQTT message (topic + JSON payload) to the rows of `readings`.
//!
//! Mapping of a frame's entries to columns:
//!
//! | reading                 | `value`         | `value_text`          | `quality`   |
//! |-------------------------|-----------------|-----------------------|-------------|
//! | number (float or int)   | the number      | NULL (*)              | 0           |
//! | bool                    | 1 or 0          | NULL                  | 0           |
//! | text                    | NULL            | the text              | 0           |
//! | entry of `errors`       | NULL            | NULL                  | error code  |
//!
//! (*) An integer beyond ±2^53 does not fit a double exactly; its exact
//! decimal digits go to `value_text` as well, so nothing is silently rounded.
//!
//! `quality` 0 means good; any other value is the agent's error code
//! (`weir_crds::message::ErrorCode`, e.g. 1001 = timeout). A tag that appears
//! in both `values` and `errors` of one frame would break the "one reading per
//! (gateway, seq, tag)" rule, so such a message is rejected as malformed.

use weir_crds::message::{parse_topic, TagValue, UplinkMessage};

/// PostgreSQL's `timestamptz` range is 4713 BC .. 294276 AD; we accept years
/// 1 .. 9999 so a broken agent clock cannot produce a row PostgreSQL refuses
/// (which would otherwise block the stream on retry).
const MIN_TS_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
const MAX_TS_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// Largest integer a double represents exactly.
const EXACT_INT: i64 = 1 << 53;

/// One row of `readings`, minus the per-message columns (tenant, gateway, device).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub tag: String,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub value: Option<f64>,
    pub value_text: Option<String>,
    pub quality: i32,
    pub seq: i64,
}

/// The rows of one MQTT message.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageRows {
    pub tenant: String,
    pub gateway: String,
    pub device: String,
    pub readings: Vec<Reading>,
}

/// Why a message could not be turned into rows.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Malformed {
    #[error("topic is not {{prefix}}/{{tenant}}/{{gateway}}/{{device}}/{{group}}")]
    Topic,
    #[error("topic is not UTF-8")]
    TopicEncoding,
    #[error("payload is not an uplink message: {0}")]
    Payload(String),
    #[error("frame seq {0} does not fit a bigint")]
    Seq(u64),
    #[error("frame seq {seq}: timestamp {ts} ms is outside years 1..9999")]
    Timestamp { seq: u64, ts: i64 },
    #[error("frame seq {seq}: tag {tag:?} is both a value and an error")]
    DuplicateTag { seq: u64, tag: String },
}

/// PostgreSQL text cannot hold U+0000; replace it so one odd string does not
/// make the whole batch fail forever.
fn pg_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// Parse one message into rows.
pub fn parse_message(topic: &[u8], payload: &[u8]) -> Result<MessageRows, Malformed> {
    let topic = std::str::from_utf8(topic).map_err(|_| Malformed::TopicEncoding)?;
    let parts = parse_topic(topic).ok_or(Malformed::Topic)?;
    if [parts.tenant, parts.gateway, parts.device, parts.group]
        .iter()
        .any(|p| p.is_empty())
    {
        return Err(Malformed::Topic);
    }
    let msg: UplinkMessage =
        serde_json::from_slice(payload).map_err(|e| Malformed::Payload(e.to_string()))?;

    let count: usize = msg
        .frames
        .iter()
        .map(|f| f.values.len() + f.errors.len())
        .sum();
    let mut readings = Vec::with_capacity(count);
    for frame in msg.frames {
        let seq = i64::try_from(frame.seq).map_err(|_| Malformed::Seq(frame.seq))?;
        let ts_ms = frame.timestamp;
        if !(MIN_TS_MS..=MAX_TS_MS).contains(&ts_ms) {
            return Err(Malformed::Timestamp {
                seq: frame.seq,
                ts: ts_ms,
            });
        }
        for (tag, value) in frame.values {
            if frame.errors.contains_key(&tag) {
                return Err(Malformed::DuplicateTag {
                    seq: frame.seq,
                    tag,
                });
            }
            let (value, value_text) = match value {
                TagValue::Int(i) if !(-EXACT_INT..=EXACT_INT).contains(&i) => {
                    (Some(i as f64), Some(i.to_string()))
                }
                TagValue::Text(t) => (None, Some(pg_text(&t))),
                other => (other.as_f64(), None),
            };
            readings.push(Reading {
                tag: pg_text(&tag),
                ts_ms,
                value,
                value_text,
                quality: 0,
                seq,
            });
        }
        for (tag, code) in frame.errors {
            readings.push(Reading {
                tag: pg_text(&tag),
                ts_ms,
                value: None,
                value_text: None,
                quality: code,
                seq,
            });
        }
    }
    Ok(MessageRows {
        tenant: parts.tenant.to_owned(),
        gateway: parts.gateway.to_owned(),
        device: parts.device.to_owned(),
        readings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_errors_become_rows() {
        let payload = br#"{"frames":[{"seq":7,"timestamp":1732543200123,"values":{"big":9007199254740993,"count":3,"flow":12.5,"mode":"auto","running":true},"errors":{"ph":1001}}]}"#;
        let m = parse_message(b"weir/riverside/ps-1/pump-1/fast", payload).unwrap();
        assert_eq!(
            (m.tenant.as_str(), m.gateway.as_str(), m.device.as_str()),
            ("riverside", "ps-1", "pump-1")
        );
        let by_tag = |t: &str| m.readings.iter().find(|r| r.tag == t).unwrap();
        assert_eq!(m.readings.len(), 6);
        assert_eq!(by_tag("flow").value, Some(12.5));
        assert_eq!(by_tag("count").value, Some(3.0));
        assert_eq!(by_tag("running").value, Some(1.0));
        assert_eq!(by_tag("mode").value, None);
        assert_eq!(by_tag("mode").value_text.as_deref(), Some("auto"));
        assert_eq!(
            by_tag("big").value_text.as_deref(),
            Some("9007199254740993")
        );
        let ph = by_tag("ph");
        assert_eq!((ph.value, ph.quality), (None, 1001));
        assert!(m
            .readings
            .iter()
            .all(|r| r.seq == 7 && r.ts_ms == 1732543200123));
    }

    #[test]
    fn malformed_messages_are_named() {
        assert_eq!(
            parse_message(b"weir/t/gw", b"{}").unwrap_err(),
            Malformed::Topic
        );
        assert!(matches!(
            parse_message(b"weir/t/gw/d/g", b"not json").unwrap_err(),
            Malformed::Payload(_)
        ));
        assert_eq!(
            parse_message(
                b"weir/t/gw/d/g",
                br#"{"frames":[{"seq":18446744073709551615,"timestamp":1}]}"#
            )
            .unwrap_err(),
            Malformed::Seq(u64::MAX)
        );
        assert!(matches!(
            parse_message(
                b"weir/t/gw/d/g",
                br#"{"frames":[{"seq":1,"timestamp":1,"values":{"a":1},"errors":{"a":1001}}]}"#
            )
            .unwrap_err(),
            Malformed::DuplicateTag { .. }
        ));
        assert!(matches!(
            parse_message(
                b"weir/t/gw/d/g",
                br#"{"frames":[{"seq":1,"timestamp":9223372036854775807}]}"#
            )
            .unwrap_err(),
            Malformed::Timestamp { .. }
        ));
    }

    #[test]
    fn nul_characters_are_replaced() {
        let m = parse_message(
            b"weir/t/gw/d/g",
            br#"{"frames":[{"seq":1,"timestamp":1,"values":{"a\u0000":"x\u0000y"}}]}"#,
        )
        .unwrap();
        assert_eq!(m.readings[0].tag, "a\u{FFFD}");
        assert_eq!(m.readings[0].value_text.as_deref(), Some("x\u{FFFD}y"));
    }
}
