//! The uplink message: what agents publish and the historian and alerts read.
//!
//! Topic: `{prefix}/{tenant}/{gateway}/{device}/{group}`. Payload: JSON with a
//! list of frames in Neuron's "values" shape (`timestamp`, `values`,
//! `errors`), each frame with a per-gateway sequence number. A tag appears at
//! most once per frame, so (gateway, seq, tag) names one reading exactly; the
//! historian dedupes on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UplinkMessage {
    pub frames: Vec<Frame>,
}

/// Readings of one device group taken at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Per-gateway sequence number; strictly increasing in publish order.
    pub seq: u64,
    /// Read time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, TagValue>,
    /// Tags that failed to read, with an error code (see [`ErrorCode`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, i32>,
}

/// A tag's value as it travels: number, bool or text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TagValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl TagValue {
    /// Numeric view (bools as 0/1) for the historian's `value` column.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TagValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            TagValue::Int(i) => Some(*i as f64),
            TagValue::Float(f) => Some(*f),
            TagValue::Text(_) => None,
        }
    }
}

/// Error codes in `errors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    /// The device did not answer in time.
    Timeout = 1001,
    /// The device answered with a Modbus exception.
    DeviceException = 1002,
    /// The connection to the device failed.
    Disconnected = 1003,
    /// The raw value could not be decoded as the tag's type.
    Decode = 1004,
    /// A pipeline rule failed on this reading.
    RuleFailed = 1005,
}

/// Topic of a device group's readings.
pub fn topic(prefix: &str, tenant: &str, gateway: &str, device: &str, group: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/{device}/{group}")
}

/// Topic on which a gateway receives write requests.
pub fn command_topic(prefix: &str, tenant: &str, gateway: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/cmd/write")
}

/// Topic on which a gateway answers write requests.
pub fn command_response_topic(prefix: &str, tenant: &str, gateway: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/cmd/write/resp")
}

/// The parts of a readings topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicParts<'a> {
    pub tenant: &'a str,
    pub gateway: &'a str,
    pub device: &'a str,
    pub group: &'a str,
}

/// Split `{prefix}/{tenant}/{gateway}/{device}/{group}`; `None` for other topics.
pub fn parse_topic(topic: &str) -> Option<TopicParts<'_>> {
    let mut it = topic.split('/');
    let (_prefix, tenant, gateway, device, group) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || device == "cmd" {
        return None;
    }
    Some(TopicParts {
        tenant,
        gateway,
        device,
        group,
    })
}

/// A write request on the command topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRequest {
    pub correlation_id: String,
    pub device: String,
    pub tag: String,
    pub value: TagValue,
}

/// The answer to a [`WriteRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResponse {
    pub correlation_id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_in_neuron_shape() {
        let json = r#"{"frames":[{"seq":7,"timestamp":1732543200123,"values":{"count":3,"flow":12.5,"mode":"auto","running":true},"errors":{"ph":1001}}]}"#;
        let m: UplinkMessage = serde_json::from_str(json).unwrap();
        let f = &m.frames[0];
        assert_eq!(f.values["flow"], TagValue::Float(12.5));
        assert_eq!(f.values["running"], TagValue::Bool(true));
        assert_eq!(f.values["count"], TagValue::Int(3));
        assert_eq!(f.values["mode"], TagValue::Text("auto".into()));
        assert_eq!(f.errors["ph"], ErrorCode::Timeout as i32);
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
    }

    #[test]
    fn topics_split_and_join() {
        let t = topic("weir", "riverside-water", "ps-1", "pump-1", "fast");
        let p = parse_topic(&t).unwrap();
        assert_eq!(
            (p.tenant, p.gateway, p.device, p.group),
            ("riverside-water", "ps-1", "pump-1", "fast")
        );
        assert!(parse_topic("weir/a/b/cmd/write").is_none());
        assert!(parse_topic("weir/a/b/c").is_none());
    }
}
