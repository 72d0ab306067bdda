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
//! (*) An integer beyond ±2^53 (up to the u64 range) does not fit a double
//! exactly; its exact decimal digits go to `value_text` as well, so nothing
//! is silently rounded.
//!
//! `quality` 0 means good; any other value is the agent's error code
//! (`weir_crds::message::ErrorCode`, e.g. 1001 = timeout). A tag that appears
//! in both `values` and `errors` of one frame would break the "one reading per
//! (gateway, seq, tag)" rule, so such a message is rejected as malformed.

use weir_crds::message::parse_topic;

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
    /// `(seq, read time in ms)` of every frame, in message order (increasing
    /// `seq`), also of frames without readings: what the contiguity tracking
    /// (`gaps::track`) records as committed.
    pub frames: Vec<(i64, i64)>,
}

/// Why a message could not be turned into rows.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Malformed {
    /// A command or write answer (`.../{gateway}/cmd/...`): the readings
    /// filter receives them too, as they have the same depth. Not an error.
    #[error("a command topic, not readings")]
    Command,
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
///
/// The payload is the agent's [`weir_crds::message::UplinkMessage`]; it is
/// read here with a streaming deserializer straight into rows instead of
/// through that type: its `values` are an untagged enum, which serde buffers
/// and retries variant by variant (building an error message for every
/// failed variant), and its maps allocate every tag twice. The accepted
/// documents and the rows are the same; see the tests.
pub fn parse_message(topic: &[u8], payload: &[u8]) -> Result<MessageRows, Malformed> {
    let topic = std::str::from_utf8(topic).map_err(|_| Malformed::TopicEncoding)?;
    if topic.split('/').nth(3) == Some("cmd") {
        return Err(Malformed::Command);
    }
    let parts = parse_topic(topic).ok_or(Malformed::Topic)?;
    if [parts.tenant, parts.gateway, parts.device, parts.group]
        .iter()
        .any(|p| p.is_empty())
    {
        return Err(Malformed::Topic);
    }
    let mut parsed = Parsed::default();
    let mut de = serde_json::Deserializer::from_slice(payload);
    de::DeserializeSeed::deserialize(MessageSeed(&mut parsed), &mut de)
        .and_then(|()| de.end())
        .map_err(|e| Malformed::Payload(e.to_string()))?;

    // The same checks, in the same order, as on the typed message.
    let mut frames = Vec::with_capacity(parsed.frames.len());
    for f in &parsed.frames {
        let seq = i64::try_from(f.seq).map_err(|_| Malformed::Seq(f.seq))?;
        frames.push((seq, f.ts_ms));
        if !(MIN_TS_MS..=MAX_TS_MS).contains(&f.ts_ms) {
            return Err(Malformed::Timestamp {
                seq: f.seq,
                ts: f.ts_ms,
            });
        }
        if let Some(tag) = &f.value_and_error {
            return Err(Malformed::DuplicateTag {
                seq: f.seq,
                tag: tag.clone(),
            });
        }
        for r in &mut parsed.readings[f.rows.clone()] {
            r.ts_ms = f.ts_ms;
            r.seq = seq;
        }
    }
    Ok(MessageRows {
        tenant: parts.tenant.to_owned(),
        gateway: parts.gateway.to_owned(),
        device: parts.device.to_owned(),
        readings: parsed.readings,
        frames,
    })
}

/// What the streaming deserializer collects; checked afterwards.
#[derive(Default)]
struct Parsed {
    readings: Vec<Reading>,
    frames: Vec<FrameMeta>,
    /// Scratch for one frame's values and errors.
    values: Vec<Reading>,
    errors: Vec<Reading>,
}

struct FrameMeta {
    seq: u64,
    ts_ms: i64,
    rows: std::ops::Range<usize>,
    /// A tag found in both `values` and `errors`.
    value_and_error: Option<String>,
}

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Field names of the message and of a frame.
enum Field {
    Frames,
    Seq,
    Timestamp,
    Values,
    Errors,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "frames" => Field::Frames,
                    "seq" => Field::Seq,
                    "timestamp" => Field::Timestamp,
                    "values" => Field::Values,
                    "errors" => Field::Errors,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// `{"frames": [...]}`; other fields are ignored, as by the typed message.
struct MessageSeed<'a>(&'a mut Parsed);

impl<'de> de::DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an uplink message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut frames = false;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Frames if frames => return Err(de::Error::duplicate_field("frames")),
                Field::Frames => {
                    map.next_value_seed(FramesSeed(&mut *self.0))?;
                    frames = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !frames {
            return Err(de::Error::missing_field("frames"));
        }
        Ok(())
    }
}

struct FramesSeed<'a>(&'a mut Parsed);

impl<'de> de::DeserializeSeed<'de> for FramesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FramesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of frames")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FrameSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct FrameSeed<'a>(&'a mut Parsed);

impl<'de> de::DeserializeSeed<'de> for FrameSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Keep the last entry of each tag, like a map does; `rows` sorted by tag
/// (stable) first unless they already are, which they are when the agent
/// wrote them (from a `BTreeMap`).
fn last_per_tag(rows: &mut Vec<Reading>) {
    if rows.windows(2).all(|w| w[0].tag < w[1].tag) {
        return;
    }
    rows.sort_by(|a, b| a.tag.cmp(&b.tag));
    rows.reverse();
    rows.dedup_by(|later, earlier| later.tag == earlier.tag);
    rows.reverse();
}

impl<'de> Visitor<'de> for FrameSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a frame")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let p = self.0;
        let (mut seq, mut ts) = (None, None);
        let (mut has_values, mut has_errors) = (false, false);
        p.values.clear();
        p.errors.clear();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Seq if seq.is_some() => return Err(de::Error::duplicate_field("seq")),
                Field::Seq => seq = Some(map.next_value::<u64>()?),
                Field::Timestamp if ts.is_some() => {
                    return Err(de::Error::duplicate_field("timestamp"))
                }
                Field::Timestamp => ts = Some(map.next_value::<i64>()?),
                Field::Values if has_values => return Err(de::Error::duplicate_field("values")),
                Field::Values => {
                    has_values = true;
                    map.next_value_seed(EntriesSeed {
                        out: &mut p.values,
                        errors: false,
                    })?;
                }
                Field::Errors if has_errors => return Err(de::Error::duplicate_field("errors")),
                Field::Errors => {
                    has_errors = true;
                    map.next_value_seed(EntriesSeed {
                        out: &mut p.errors,
                        errors: true,
                    })?;
                }
                Field::Frames | Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let seq = seq.ok_or_else(|| de::Error::missing_field("seq"))?;
        let ts_ms = ts.ok_or_else(|| de::Error::missing_field("timestamp"))?;
        last_per_tag(&mut p.values);
        last_per_tag(&mut p.errors);
        // Both sorted by tag: one merge pass finds a tag in both.
        let mut value_and_error = None;
        let (mut i, mut j) = (0, 0);
        while i < p.values.len() && j < p.errors.len() {
            match p.values[i].tag.cmp(&p.errors[j].tag) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    value_and_error = Some(p.values[i].tag.clone());
                    break;
                }
            }
        }
        let start = p.readings.len();
        p.readings.append(&mut p.values);
        p.readings.append(&mut p.errors);
        p.frames.push(FrameMeta {
            seq,
            ts_ms,
            rows: start..p.readings.len(),
            value_and_error,
        });
        Ok(())
    }
}

/// The `values` (tag → number, bool or text) or `errors` (tag → code) of a
/// frame, appended as readings with `ts_ms` and `seq` still unset.
struct EntriesSeed<'a> {
    out: &'a mut Vec<Reading>,
    errors: bool,
}

impl<'de> de::DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.errors {
            "a map of tag to error code"
        } else {
            "a map of tag to value"
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some(n) = map.size_hint() {
            self.out.reserve(n);
        }
        while let Some(tag) = map.next_key::<Tag>()? {
            let (value, value_text, quality) = if self.errors {
                (None, None, map.next_value::<i32>()?)
            } else {
                let v = map.next_value::<Value>()?;
                (v.value, v.text, 0)
            };
            self.out.push(Reading {
                tag: tag.0,
                ts_ms: 0,
                value,
                value_text,
                quality,
                seq: 0,
            });
        }
        Ok(())
    }
}

/// A tag name, NUL characters replaced.
struct Tag(String);

impl<'de> de::Deserialize<'de> for Tag {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Tag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a tag name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                Ok(Tag(pg_text(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A reading's value in the `value` and `value_text` columns.
struct Value {
    value: Option<f64>,
    text: Option<String>,
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, a bool or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value {
                    value: Some(if v { 1.0 } else { 0.0 }),
                    text: None,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value {
                    value: Some(v as f64),
                    text: (!(-EXACT_INT..=EXACT_INT).contains(&v)).then(|| v.to_string()),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value {
                    value: Some(v as f64),
                    text: (v > EXACT_INT as u64).then(|| v.to_string()),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value {
                    value: Some(v),
                    text: None,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value {
                    value: None,
                    text: Some(pg_text(v)),
                })
            }
        }
        d.deserialize_any(V)
    }
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
        assert_eq!(
            parse_message(b"weir/t/gw/d/", b"{}").unwrap_err(),
            Malformed::Topic
        );
        assert_eq!(
            parse_message(b"weir/t/gw/cmd/write", b"{}").unwrap_err(),
            Malformed::Command
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

    /// The rows the typed message gives (the parser before it streamed).
    fn typed(topic: &[u8], payload: &[u8]) -> Result<MessageRows, Malformed> {
        use weir_crds::message::{TagValue, UplinkMessage};
        let parts = parse_topic(std::str::from_utf8(topic).unwrap()).unwrap();
        let msg: UplinkMessage =
            serde_json::from_slice(payload).map_err(|e| Malformed::Payload(e.to_string()))?;
        let mut readings = Vec::new();
        let mut frames = Vec::new();
        for frame in msg.frames {
            let seq = i64::try_from(frame.seq).map_err(|_| Malformed::Seq(frame.seq))?;
            let ts_ms = frame.timestamp;
            frames.push((seq, ts_ms));
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
            frames,
        })
    }

    #[test]
    fn same_rows_as_the_typed_message() {
        let same = [
            r#"{"frames":[]}"#,
            r#"{"frames":[],"extra":{"a":[1,2]}}"#,
            r#"{"frames":[{"seq":1,"timestamp":5}]}"#,
            r#"{"frames":[{"timestamp":5,"values":{"b":1,"a":-2.5e3},"seq":2,"x":null}]}"#,
            r#"{"frames":[{"seq":3,"timestamp":-5,"errors":{"z":1001,"y":-7},"values":{"x":false}}]}"#,
            r#"{"frames":[{"seq":4,"timestamp":1,"values":{"a":1,"b":2,"a":"again"}}]}"#,
            r#"{"frames":[{"seq":4,"timestamp":1,"values":{"c":1,"a":2,"b":3,"a":4}},{"seq":5,"timestamp":2,"values":{"a\u0041":"t\"q"}}]}"#,
            r#"{"frames":[{"seq":6,"timestamp":1,"values":{"m":-9007199254740993,"n":9007199254740992,"o":9223372036854775807,"p":1.0}}]}"#,
        ];
        for p in same {
            assert_eq!(
                parse_message(b"weir/t/gw/d/g", p.as_bytes()),
                typed(b"weir/t/gw/d/g", p.as_bytes()),
                "{p}"
            );
        }
        // Both refuse these (the error texts may differ).
        let refused = [
            r#"{}"#,
            r#"[]"#,
            r#"{"frames":[{"seq":1}]}"#,
            r#"{"frames":[{"timestamp":1}]}"#,
            r#"{"frames":[{"seq":-1,"timestamp":1}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1.5}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"values":{"a":null}}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"values":{"a":[1]}}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"values":null}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"errors":{"a":1.5}}]}"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"errors":{"a":4294967296}}]}"#,
            r#"{"frames":[{"seq":1,"seq":2,"timestamp":1}]}"#,
            r#"{"frames":[],"frames":[]}"#,
            r#"{"frames":[]} x"#,
            r#"{"frames":[{"seq":1,"timestamp":1,"values":{"a":1},"errors":{"b":1,"a":2}}]}"#,
            r#"{"frames":[{"seq":9223372036854775808,"timestamp":1}]}"#,
        ];
        for p in refused {
            let (new, old) = (
                parse_message(b"weir/t/gw/d/g", p.as_bytes()),
                typed(b"weir/t/gw/d/g", p.as_bytes()),
            );
            assert!(new.is_err() && old.is_err(), "{p}: {new:?} / {old:?}");
            if !matches!(old, Err(Malformed::Payload(_))) {
                assert_eq!(new, old, "{p}");
            }
        }
        // Beyond i64 the typed message rounded silently; we keep the digits.
        let big = parse_message(
            b"weir/t/gw/d/g",
            br#"{"frames":[{"seq":1,"timestamp":1,"values":{"u":18446744073709551615}}]}"#,
        )
        .unwrap();
        assert_eq!(
            big.readings[0].value_text.as_deref(),
            Some("18446744073709551615")
        );
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
