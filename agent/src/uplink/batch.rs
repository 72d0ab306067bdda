//! Batching: frames read from the queue become MQTT messages, per topic,
//! within the message limits and the publish window.

use std::collections::HashMap;

use super::READ_BYTES_MAX;
use crate::queue::Record;

/// Frames for one read of the backlog, bounded so the messages they make fit
/// rumqttc's request channel (2 × inflight + 64) on top of what is already in
/// flight (inflight − free): `cap` = (free + inflight) / 2 full messages of
/// readings over at most `cap` topics (each topic's last message may be
/// partly filled), so at most free + inflight messages. Reads stay large
/// (full messages) even when only one slot just freed up.
pub(super) struct Window {
    cap: usize,
    budget: usize,
    readings: usize,
    topics: Vec<String>,
}

impl Window {
    pub(super) fn new(free: usize, inflight: usize, max_readings: usize) -> Self {
        let cap = ((free + inflight) / 2).max(1);
        Self {
            cap,
            budget: cap * max_readings.max(1),
            readings: 0,
            topics: Vec::new(),
        }
    }

    /// Bytes the window's `cap` full messages may hold, bounded so a long
    /// backlog does not pull megabytes into memory at once.
    pub(super) fn bytes(&self, max_bytes_per_message: usize) -> usize {
        (self.cap * max_bytes_per_message).min(READ_BYTES_MAX)
    }

    /// Take `r` into the window if it fits.
    pub(super) fn admit(&mut self, r: &Record) -> bool {
        let new_topic = !self.topics.contains(&r.topic);
        if self.readings + r.readings as usize > self.budget
            || (new_topic && self.topics.len() >= self.cap)
        {
            return false;
        }
        self.readings += r.readings as usize;
        if new_topic {
            self.topics.push(r.topic.clone());
        }
        true
    }
}

/// Group records per topic, keeping their order, into messages within the
/// limits. Returns (topic, payload, frames).
pub fn build_messages(
    records: Vec<Record>,
    max_readings: usize,
    max_bytes: usize,
) -> Vec<(String, Vec<u8>, usize)> {
    let mut order: Vec<String> = Vec::new();
    let mut by_topic: HashMap<String, Vec<Record>> = HashMap::new();
    for r in records {
        if !by_topic.contains_key(&r.topic) {
            order.push(r.topic.clone());
        }
        by_topic.entry(r.topic.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for topic in order {
        let recs = by_topic.remove(&topic).unwrap_or_default();
        // Reserve what this topic's frames need, at most one message: a
        // payload's allocation lives until its PUBACK (rumqttc keeps it for
        // a resend), so reserving `max_bytes` (256 KiB by default) for a
        // message of a few KiB held inflight × 256 KiB.
        let mut left: usize = recs.iter().map(|r| r.frame.len() + 1).sum::<usize>() + 13;
        let mut payload = Vec::new();
        let mut readings = 0usize;
        let mut frames = 0usize;
        for r in recs {
            let would = payload.len() + r.frame.len() + 2;
            if frames > 0
                && (readings + r.readings as usize > max_readings || would + 2 > max_bytes)
            {
                payload.extend_from_slice(b"]}");
                out.push((topic.clone(), std::mem::take(&mut payload), frames));
                readings = 0;
                frames = 0;
            }
            if frames == 0 {
                payload.reserve_exact(left.min(max_bytes));
            }
            left = left.saturating_sub(r.frame.len() + 1);
            payload.extend_from_slice(if frames == 0 { b"{\"frames\":[" } else { b"," });
            payload.extend_from_slice(&r.frame);
            readings += r.readings as usize;
            frames += 1;
        }
        if frames > 0 {
            payload.extend_from_slice(b"]}");
            out.push((topic, payload, frames));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::message::UplinkMessage;

    fn rec(seq: u64, topic: &str) -> Record {
        Record {
            seq,
            readings: 2,
            topic: topic.into(),
            frame: format!("{{\"seq\":{seq},\"timestamp\":1,\"values\":{{\"a\":1,\"b\":2}}}}")
                .into_bytes(),
        }
    }

    #[test]
    fn a_backlog_of_big_frames_is_cut_to_the_free_window() {
        let big = |seq: u64, topic: &str| Record {
            readings: 500,
            ..rec(seq, topic)
        };
        let taken = |recs: &[Record], free, max| {
            let mut w = Window::new(free, free, max);
            recs.iter().take_while(|r| w.admit(r)).count()
        };
        let recs: Vec<Record> = (0..100).map(|i| big(i, "a")).collect();
        assert_eq!(taken(&recs, 8, 500), 8);
        assert_eq!(build_messages(recs[..8].to_vec(), 500, 1 << 20).len(), 8);
        // Many topics of small frames: bounded by topics too.
        let recs: Vec<Record> = (0..100).map(|i| rec(i, &format!("t{i}"))).collect();
        assert_eq!(taken(&recs, 8, 500), 8);
    }

    #[test]
    fn messages_group_by_topic_in_order_within_limits() {
        let recs = vec![
            rec(1, "a"),
            rec(2, "b"),
            rec(3, "a"),
            rec(4, "a"),
            rec(5, "b"),
        ];
        let msgs = build_messages(recs, 4, 1 << 20);
        let seqs: Vec<(String, Vec<u64>)> = msgs
            .iter()
            .map(|(t, p, _)| {
                let m: UplinkMessage = serde_json::from_slice(p).unwrap();
                (t.clone(), m.frames.iter().map(|f| f.seq).collect())
            })
            .collect();
        assert_eq!(
            seqs,
            vec![
                ("a".into(), vec![1, 3]),
                ("a".into(), vec![4]),
                ("b".into(), vec![2, 5]),
            ]
        );
        // Byte limit: each frame alone.
        let msgs = build_messages(vec![rec(1, "a"), rec(2, "a")], 100, 60);
        assert_eq!(msgs.len(), 2);
    }
}
