//! Nothing lost unseen: which `seq`s of each gateway are committed, which
//! are missing, asking agents to replay them, and recording what cannot be
//! filled (issue 20; the promise of `seq` is in [`weir_crds::message`]).
//!
//! * [`track`]: in the transaction that commits a batch's rows, the batch's
//!   frames are recorded as runs of `seq` in `seq_ranges`, and the agents'
//!   uplink states and replay answers that came with the batch are stored.
//!   So what is tracked is exactly what is committed, and the broker
//!   message carrying a state or an answer is acknowledged only once stored.
//! * [`detect`]: pure functions: merge runs, find holes (between committed
//!   runs, and the tail up to the agent's last acknowledged `seq`), leave out
//!   numbers never issued (below a new data directory's `origin_seq`) and
//!   gaps already recorded.
//! * [`replay`]: the loop, about once a second, run by one replica at a time
//!   (`pg_try_advisory_xact_lock`): merges `seq_ranges`, keeps the open holes
//!   in `seq_holes`, asks for holes older than the grace period with
//!   [`weir_crds::message::ReplayRequest`]s, and records gaps in
//!   `reading_gaps` (`not-retained` from an agent's answer,
//!   `agent-unreachable` after the replay window).

pub(crate) mod detect;
pub(crate) mod replay;
pub(crate) mod track;

use weir_crds::message::{ReplayResponse, UplinkState};

/// A message on a gateway's `cmd/` topics that the historian stores.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Control {
    State {
        tenant: String,
        gateway: String,
        state: UplinkState,
    },
    Replayed {
        tenant: String,
        gateway: String,
        answer: ReplayResponse,
    },
}

/// Why a control message was skipped (acknowledged and logged).
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum BadControl {
    #[error("payload is not an uplink state: {0}")]
    State(String),
    #[error("payload is not a replay response: {0}")]
    Replayed(String),
    #[error("{field} {value} does not fit a bigint")]
    TooLarge { field: &'static str, value: u64 },
}

/// The filters, besides readings, the historian subscribes to (the ones its
/// broker ACL allows, `weir_crds::acl`).
pub(crate) fn control_filters(prefix: &str, tenant: &str) -> [String; 2] {
    [
        format!("{prefix}/{tenant}/+/cmd/uplink/state"),
        format!("{prefix}/{tenant}/+/cmd/replay/resp"),
    ]
}

/// `Some` for `{prefix}/{tenant}/{gateway}/cmd/uplink/state` and
/// `.../cmd/replay/resp`; `None` for any other topic.
pub(crate) fn parse_control(topic: &str, payload: &[u8]) -> Option<Result<Control, BadControl>> {
    let parts: Vec<&str> = topic.split('/').collect();
    let [_prefix, tenant, gateway, "cmd", a, b] = parts.as_slice() else {
        return None;
    };
    let (tenant, gateway) = (tenant.to_string(), gateway.to_string());
    let fits = |field, value: u64| {
        if i64::try_from(value).is_ok() {
            Ok(())
        } else {
            Err(BadControl::TooLarge { field, value })
        }
    };
    Some(match (*a, *b) {
        ("uplink", "state") => serde_json::from_slice::<UplinkState>(payload)
            .map_err(|e| BadControl::State(e.to_string()))
            .and_then(|state| {
                fits("originSeq", state.origin_seq)?;
                fits("lastAckedSeq", state.last_acked_seq.unwrap_or(0))?;
                fits("firstKeptSeq", state.first_kept_seq)?;
                fits("nextSeq", state.next_seq)?;
                Ok(Control::State {
                    tenant,
                    gateway,
                    state,
                })
            }),
        ("replay", "resp") => serde_json::from_slice::<ReplayResponse>(payload)
            .map_err(|e| BadControl::Replayed(e.to_string()))
            .and_then(|answer| {
                for r in &answer.missing {
                    fits("missing.toSeq", r.to_seq.max(r.from_seq))?;
                }
                Ok(Control::Replayed {
                    tenant,
                    gateway,
                    answer,
                })
            }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_topics_are_recognised() {
        let state =
            br#"{"timestamp":5,"originSeq":1,"lastAckedSeq":9,"firstKeptSeq":1,"nextSeq":10}"#;
        match parse_control("weir/t/gw-1/cmd/uplink/state", state) {
            Some(Ok(Control::State {
                tenant,
                gateway,
                state,
            })) => {
                assert_eq!((tenant.as_str(), gateway.as_str()), ("t", "gw-1"));
                assert_eq!(state.last_acked_seq, Some(9));
            }
            other => panic!("{other:?}"),
        }
        let resp =
            br#"{"fromSeq":3,"toSeq":7,"replayedFrames":2,"missing":[{"fromSeq":3,"toSeq":5}]}"#;
        assert!(matches!(
            parse_control("weir/t/gw-1/cmd/replay/resp", resp),
            Some(Ok(Control::Replayed { .. }))
        ));
        assert!(parse_control("weir/t/gw-1/cmd/replay", b"{}").is_none());
        assert!(parse_control("weir/t/gw-1/dev/fast", b"{}").is_none());
        assert!(matches!(
            parse_control("weir/t/gw-1/cmd/uplink/state", b"{}"),
            Some(Err(BadControl::State(_)))
        ));
        let huge =
            br#"{"timestamp":5,"originSeq":18446744073709551615,"firstKeptSeq":1,"nextSeq":10}"#;
        assert!(matches!(
            parse_control("weir/t/gw-1/cmd/uplink/state", huge),
            Some(Err(BadControl::TooLarge {
                field: "originSeq",
                ..
            }))
        ));
    }
}
