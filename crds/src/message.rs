//! The uplink message: what agents publish and the historian and alerts read.
//!
//! Topic: `{prefix}/{tenant}/{gateway}/{device}/{group}`. Payload: JSON with a
//! list of frames in Neuron's "values" shape (`timestamp`, `values`,
//! `errors`), each frame with a per-gateway sequence number. A tag appears at
//! most once per frame, so (gateway, seq, tag) names one reading exactly; the
//! historian dedupes on it.
//!
//! # What `seq` promises
//!
//! A frame gets the next integer of its gateway's sequence when the agent
//! writes it to its disk queue, before anything is published. So no two
//! frames of a gateway share a `seq`, and every number between the first and
//! the last was given to exactly one frame: a frame the agent later drops
//! (queue full) keeps its number, and its loss shows as a hole. Publish order
//! is *not* `seq` order: frames are grouped per topic into messages, a
//! reconnect resends from the first unacknowledged frame, and a replay
//! resends older ones. Only within one message are `seq`s increasing. A new
//! agent data directory starts a new sequence at `unix_ms × 1000`, above any
//! earlier one; [`UplinkState::origin_seq`] says where.
//!
//! # Keep, detect, replay
//!
//! The agent keeps acknowledged frames on disk for a while
//! (`uplink.buffer.retain`). It publishes its [`UplinkState`] on
//! [`uplink_state_topic`] every few seconds, so a loss at the end of the
//! stream is seen too. The historian tracks which `seq`s it has committed;
//! a hole still open after a grace period is asked for again with a
//! [`ReplayRequest`] on [`replay_topic`]. The agent republishes the frames it
//! still holds on their own topics (readers dedupe them as any redelivery) and
//! answers with a [`ReplayResponse`] on [`replay_response_topic`] naming what
//! it no longer has; those ranges become recorded gaps.
//!
//! Every topic under `{prefix}/{tenant}/{gateway}/cmd/` is a command or an
//! answer, never readings (`cmd` is not a device name readers accept).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UplinkMessage {
    pub frames: Vec<Frame>,
}

/// Readings of one device group taken at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Per-gateway sequence number, unique and without holes (see the
    /// module doc for exactly what it promises; not publish order).
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
    /// OPC UA: the server does not know the tag's node id
    /// (BadNodeIdUnknown, BadNodeIdInvalid) or the node has no value
    /// (BadAttributeIdInvalid).
    NodeUnknown = 1006,
    /// OPC UA: the session's user may not read the node (BadUserAccessDenied,
    /// BadNotReadable, BadSecurityModeInsufficient).
    AccessDenied = 1007,
    /// OPC UA: the server reported another Bad status for the value (the
    /// device's health names it, e.g. BadSensorFailure).
    BadStatus = 1008,
}

impl ErrorCode {
    /// Every code, for lookups and docs.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::Timeout,
        ErrorCode::DeviceException,
        ErrorCode::Disconnected,
        ErrorCode::Decode,
        ErrorCode::RuleFailed,
        ErrorCode::NodeUnknown,
        ErrorCode::AccessDenied,
        ErrorCode::BadStatus,
    ];

    /// The code of an `errors` entry (the historian's `quality`), if it is one of ours.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| *c as i32 == code)
    }

    /// What the code means, in words an operator reads next to a tag.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "the device did not answer in time",
            ErrorCode::DeviceException => "the device answered with a Modbus exception",
            ErrorCode::Disconnected => "the connection to the device failed",
            ErrorCode::Decode => "the raw value could not be decoded as the tag's type",
            ErrorCode::RuleFailed => "a pipeline rule failed on this reading",
            ErrorCode::NodeUnknown => "the OPC UA server does not know the tag's node",
            ErrorCode::AccessDenied => "the OPC UA server does not let the agent read the node",
            ErrorCode::BadStatus => "the OPC UA server reported a bad status for the value",
        }
    }
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

/// Topic on which the historian (or the api) asks a gateway to replay frames.
pub fn replay_topic(prefix: &str, tenant: &str, gateway: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/cmd/replay")
}

/// Topic on which a gateway answers a [`ReplayRequest`].
pub fn replay_response_topic(prefix: &str, tenant: &str, gateway: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/cmd/replay/resp")
}

/// Topic on which a gateway publishes its [`UplinkState`].
pub fn uplink_state_topic(prefix: &str, tenant: &str, gateway: &str) -> String {
    format!("{prefix}/{tenant}/{gateway}/cmd/uplink/state")
}

/// An inclusive range of sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeqRange {
    pub from_seq: u64,
    pub to_seq: u64,
}

/// "Publish the frames `fromSeq..=toSeq` again", on [`replay_topic`].
/// Payload `{"fromSeq":N,"toSeq":M}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub from_seq: u64,
    pub to_seq: u64,
}

/// The answer to a [`ReplayRequest`], on [`replay_response_topic`], sent
/// after the replayed frames were acknowledged by the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResponse {
    pub from_seq: u64,
    pub to_seq: u64,
    /// Frames of the range republished.
    pub replayed_frames: u64,
    /// Parts of the range the agent no longer holds (past retention, dropped
    /// when the queue was full) or never issued; empty when all was replayed.
    #[serde(default)]
    pub missing: Vec<SeqRange>,
    /// Set when the request was refused as a whole (malformed, range too
    /// large); `missing` is then empty and nothing was replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the agent's uplink has done, on [`uplink_state_topic`], QoS 1, every
/// few seconds while connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UplinkState {
    /// Milliseconds since the Unix epoch when this was sent.
    pub timestamp: i64,
    /// First `seq` of this agent's data directory: numbers below it (down to
    /// the previous sequence's last) were never issued.
    pub origin_seq: u64,
    /// The highest `seq` the broker has acknowledged, if any: every frame up
    /// to it should reach the readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_acked_seq: Option<u64>,
    /// The oldest `seq` still on the agent's disk (retained or pending): a
    /// replay can only fill holes from here on.
    pub first_kept_seq: u64,
    /// The `seq` the next frame will get.
    pub next_seq: u64,
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
    #[test]
    fn error_codes_round_trip_and_have_words() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c as i32), Some(c));
            assert!(c.meaning().len() > 10);
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(1009), None);
    }

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
        assert!(parse_topic("weir/a/b/cmd/replay").is_none());
        assert!(parse_topic("weir/a/b/c").is_none());
    }
}
