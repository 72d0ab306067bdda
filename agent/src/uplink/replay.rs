//! Replays: `{prefix}/{tenant}/{gateway}/cmd/replay` asks for the frames
//! `fromSeq..=toSeq` again. The kept frames of the range (retained or
//! pending) are republished on their own topics, a few messages at a time
//! beside the live stream; once the broker acknowledged them all, a
//! [`ReplayResponse`] names how many went out and what the agent does not
//! hold (below the oldest kept frame, dropped, or at/after `next_seq`).
//! Replays never move the queue's ack cursor. One runs at a time; up to
//! [`REPLAY_QUEUE`] more wait, further ones are refused as busy.

use std::collections::VecDeque;
use std::sync::Arc;

use weir_crds::message::{ReplayRequest, ReplayResponse, SeqRange};

use super::batch::{build_messages, Window};
use crate::queue::{DiskQueue, RangeReader};

/// Most frames one request may ask for; larger ranges are refused (ask in
/// several requests).
pub const MAX_REPLAY_FRAMES: u64 = 1_000_000;
/// Requests waiting behind the running one, at most.
pub const REPLAY_QUEUE: usize = 8;

/// Parse a request strictly; the error names the field.
pub fn parse_request(payload: &[u8]) -> Result<ReplayRequest, ReplayResponse> {
    let refuse = |from_seq, to_seq, msg: String| ReplayResponse {
        from_seq,
        to_seq,
        replayed_frames: 0,
        missing: vec![],
        error: Some(msg),
    };
    let req: ReplayRequest = serde_json::from_slice(payload).map_err(|e| {
        // Echo what can be read of the range, so the asker can match it.
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        refuse(
            n("fromSeq"),
            n("toSeq"),
            format!("malformed replay request (want {{\"fromSeq\":N,\"toSeq\":M}}): {e}"),
        )
    })?;
    if req.from_seq > req.to_seq {
        return Err(refuse(
            req.from_seq,
            req.to_seq,
            format!(
                "fromSeq {} is after toSeq {}: the range is inclusive, fromSeq <= toSeq",
                req.from_seq, req.to_seq
            ),
        ));
    }
    if req.to_seq - req.from_seq >= MAX_REPLAY_FRAMES {
        return Err(refuse(
            req.from_seq,
            req.to_seq,
            format!(
                "toSeq - fromSeq + 1 = {} frames: at most {MAX_REPLAY_FRAMES} per request",
                (req.to_seq - req.from_seq).saturating_add(1)
            ),
        ));
    }
    Ok(req)
}

struct Job {
    req: ReplayRequest,
    reader: RangeReader,
    /// Seqs below it have been read or recorded missing.
    expected: u64,
    /// One past the last seq held when the job started.
    end: u64,
    replayed: u64,
    missing: Vec<SeqRange>,
    in_flight: usize,
}

pub(super) struct Replays {
    queue: Arc<DiskQueue>,
    waiting: VecDeque<ReplayRequest>,
    job: Option<Job>,
}

/// Messages to publish: (topic, payload, frames).
pub(super) type Messages = Vec<(String, Vec<u8>, usize)>;

impl Replays {
    pub fn new(queue: Arc<DiskQueue>) -> Self {
        Self {
            queue,
            waiting: VecDeque::new(),
            job: None,
        }
    }

    /// A request arrived; `Err` is the answer to send at once.
    pub fn request(&mut self, payload: &[u8]) -> Result<(), ReplayResponse> {
        let req = parse_request(payload)?;
        if self.waiting.len() >= REPLAY_QUEUE {
            return Err(ReplayResponse {
                from_seq: req.from_seq,
                to_seq: req.to_seq,
                replayed_frames: 0,
                missing: vec![],
                error: Some(format!(
                    "busy: one replay running and {REPLAY_QUEUE} waiting; ask again later"
                )),
            });
        }
        self.waiting.push_back(req);
        Ok(())
    }

    fn start(&mut self) {
        if self.job.is_some() {
            return;
        }
        let Some(req) = self.waiting.pop_front() else {
            return;
        };
        let end = (req.to_seq + 1)
            .min(self.queue.next_seq())
            .max(req.from_seq);
        self.job = Some(Job {
            req,
            reader: self.queue.range_reader(req.from_seq, end),
            expected: req.from_seq,
            end,
            replayed: 0,
            missing: vec![],
            in_flight: 0,
        });
    }

    /// The connection was lost: frames in flight may not have arrived, so
    /// the running replay starts over on the next connection.
    pub fn restart(&mut self) {
        if let Some(j) = self.job.take() {
            self.waiting.push_front(j.req);
        }
    }

    /// Whether a replay has frames to send and room (`window` messages).
    pub fn can_send(&mut self, window: usize) -> bool {
        self.start();
        self.job
            .as_ref()
            .is_some_and(|j| !j.reader.done() && j.in_flight < window.max(1))
    }

    /// The next few messages of the running replay.
    pub fn next_messages(
        &mut self,
        max_readings: usize,
        max_bytes: usize,
    ) -> crate::error::Result<Messages> {
        let Some(j) = self.job.as_mut() else {
            return Ok(vec![]);
        };
        // About one message at a time, so live data keeps its share.
        let mut w = Window::new(1, 1, max_readings);
        let records = j.reader.read(1000, |r| w.admit(r))?;
        for r in &records {
            if r.seq > j.expected {
                push_missing(&mut j.missing, j.expected, r.seq - 1);
            }
            j.expected = r.seq + 1;
        }
        j.replayed += records.len() as u64;
        let msgs = build_messages(records, max_readings, max_bytes);
        j.in_flight += msgs.len();
        Ok(msgs)
    }

    /// A replayed message was acknowledged; the response when the replay is
    /// complete.
    pub fn acked(&mut self) -> Option<ReplayResponse> {
        let j = self.job.as_mut()?;
        j.in_flight = j.in_flight.saturating_sub(1);
        self.finish()
    }

    /// The response if the running replay has nothing more to send or wait
    /// for (also for a range with nothing kept).
    pub fn finish(&mut self) -> Option<ReplayResponse> {
        self.start();
        let j = self.job.as_mut()?;
        if !j.reader.done() || j.in_flight > 0 {
            return None;
        }
        let mut j = self.job.take().expect("checked");
        if j.expected < j.end {
            push_missing(&mut j.missing, j.expected, j.end - 1);
        }
        if j.end <= j.req.to_seq {
            push_missing(&mut j.missing, j.end.max(j.req.from_seq), j.req.to_seq);
        }
        Some(ReplayResponse {
            from_seq: j.req.from_seq,
            to_seq: j.req.to_seq,
            replayed_frames: j.replayed,
            missing: j.missing,
            error: None,
        })
    }
}

/// Add `from..=to`, merging with the last range when adjacent.
fn push_missing(missing: &mut Vec<SeqRange>, from: u64, to: u64) {
    if let Some(last) = missing.last_mut() {
        if last.to_seq + 1 >= from {
            last.to_seq = last.to_seq.max(to);
            return;
        }
    }
    missing.push(SeqRange {
        from_seq: from,
        to_seq: to,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_strictly_naming_the_field() {
        assert_eq!(
            parse_request(br#"{"fromSeq":5,"toSeq":9}"#).unwrap(),
            ReplayRequest {
                from_seq: 5,
                to_seq: 9
            }
        );
        let e = parse_request(br#"{"fromSeq":5}"#).unwrap_err();
        assert!(e.error.unwrap().contains("toSeq"));
        let e = parse_request(br#"{"fromSeq":5,"toSeq":9,"x":1}"#).unwrap_err();
        assert!(e.error.unwrap().contains("`x`"));
        let e = parse_request(br#"{"fromSeq":9,"toSeq":5}"#).unwrap_err();
        assert_eq!((e.from_seq, e.to_seq), (9, 5));
        assert!(e.error.unwrap().contains("fromSeq 9 is after toSeq 5"));
        let e = parse_request(br#"{"fromSeq":0,"toSeq":1000000}"#).unwrap_err();
        assert!(e.error.unwrap().contains("at most 1000000"));
        assert!(parse_request(b"not json").unwrap_err().error.is_some());
    }

    #[test]
    fn adjacent_missing_ranges_merge() {
        let mut m = vec![];
        push_missing(&mut m, 1, 3);
        push_missing(&mut m, 4, 6);
        push_missing(&mut m, 9, 9);
        assert_eq!(
            m,
            vec![
                SeqRange {
                    from_seq: 1,
                    to_seq: 6
                },
                SeqRange {
                    from_seq: 9,
                    to_seq: 9
                }
            ]
        );
    }
}
