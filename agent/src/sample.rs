//! What adapters produce and the pipeline consumes: one device group read at
//! one instant.

use std::fmt::Write as _;
use std::sync::Arc;

use weir_crds::message::{ErrorCode, TagValue};

/// The names a group's samples refer to by index, shared by every sample of
/// the group so a sample carries no strings.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GroupSchema {
    pub device: String,
    pub group: String,
    pub tags: Vec<String>,
}

/// Readings of one device group at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub schema: Arc<GroupSchema>,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// (index into `schema.tags`, value)
    pub values: Vec<(u16, TagValue)>,
    /// (index into `schema.tags`, error code)
    pub errors: Vec<(u16, i32)>,
}

impl Sample {
    pub fn readings(&self) -> usize {
        self.values.len() + self.errors.len()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A frame ready for the queue: its topic and its JSON without the leading
/// `{"seq":N,` (the queue assigns the sequence number when it appends).
#[derive(Debug, Clone)]
pub struct PendingFrame {
    pub topic: Arc<str>,
    pub readings: u32,
    pub rest: String,
}

/// Appends `s` as a JSON string.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a value in the JSON form `weir_crds::message::TagValue` reads back.
/// Returns false for a value JSON cannot hold (NaN, infinity).
pub fn push_json_value(out: &mut String, v: &TagValue) -> bool {
    match v {
        TagValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        TagValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        TagValue::Float(f) => {
            if !f.is_finite() {
                return false;
            }
            // Rust prints the shortest text that reads back exactly, without
            // exponents (valid JSON); keep a decimal point so the value reads
            // back as a float.
            let mark = out.len();
            let _ = write!(out, "{f}");
            if !out[mark..].contains('.') {
                out.push_str(".0");
            }
        }
        TagValue::Text(s) => push_json_str(out, s),
    }
    true
}

/// Renders the frame body after `{"seq":N,`: `"timestamp":T,"values":{..},"errors":{..}}`.
/// Values JSON cannot carry are reported as decode errors.
pub fn render_rest<'a>(
    ts_ms: i64,
    values: impl Iterator<Item = (&'a str, &'a TagValue)>,
    errors: impl Iterator<Item = (&'a str, i32)>,
    out: &mut String,
) {
    let _ = write!(out, "\"timestamp\":{ts_ms}");
    let mut extra_errors: Vec<&str> = Vec::new();
    let mut first = true;
    for (name, v) in values {
        let mark = out.len();
        out.push_str(if first { ",\"values\":{" } else { "," });
        push_json_str(out, name);
        out.push(':');
        if push_json_value(out, v) {
            first = false;
        } else {
            out.truncate(mark);
            extra_errors.push(name);
        }
    }
    if !first {
        out.push('}');
    }
    let mut first = true;
    for (name, code) in errors.chain(
        extra_errors
            .into_iter()
            .map(|n| (n, ErrorCode::Decode as i32)),
    ) {
        out.push_str(if first { ",\"errors\":{" } else { "," });
        first = false;
        push_json_str(out, name);
        let _ = write!(out, ":{code}");
    }
    if !first {
        out.push('}');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::message::UplinkMessage;

    #[test]
    fn rendered_frame_reads_back_as_the_contract_type() {
        let vals = [
            ("flow".to_string(), TagValue::Float(12.0)),
            ("count".to_string(), TagValue::Int(-3)),
            ("run\"ning".to_string(), TagValue::Bool(true)),
            ("mode".to_string(), TagValue::Text("a\nb".into())),
            ("bad".to_string(), TagValue::Float(f64::NAN)),
        ];
        let mut rest = String::new();
        render_rest(
            1_700_000_000_123,
            vals.iter().map(|(n, v)| (n.as_str(), v)),
            [("ph", 1001)].into_iter(),
            &mut rest,
        );
        let json = format!("{{\"frames\":[{{\"seq\":5,{rest}]}}");
        let m: UplinkMessage = serde_json::from_str(&json).unwrap();
        let f = &m.frames[0];
        assert_eq!(f.seq, 5);
        assert_eq!(f.timestamp, 1_700_000_000_123);
        assert_eq!(f.values["flow"], TagValue::Float(12.0));
        assert_eq!(f.values["count"], TagValue::Int(-3));
        assert_eq!(f.values["run\"ning"], TagValue::Bool(true));
        assert_eq!(f.values["mode"], TagValue::Text("a\nb".into()));
        assert_eq!(f.errors["ph"], 1001);
        assert_eq!(f.errors["bad"], ErrorCode::Decode as i32);
        assert!(!f.values.contains_key("bad"));
    }

    #[test]
    fn floats_round_trip_exactly() {
        for x in [
            0.1,
            -2.5,
            1e-7,
            123456789.125,
            1e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            3.0,
        ] {
            let mut s = String::new();
            assert!(push_json_value(&mut s, &TagValue::Float(x)));
            let back: TagValue = serde_json::from_str(&s).unwrap();
            assert_eq!(back, TagValue::Float(x), "{s}");
        }
    }
}
