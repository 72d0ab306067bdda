//! The uplink's reader: frames in order from a position, rewound to the
//! first unacknowledged frame after a reconnect.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{segment, DiskQueue, Record};
use crate::error::{Error, IoContext, Result};

/// Reads frames in order from a position; used by the uplink, which rewinds
/// it to the first unacknowledged frame after a reconnect.
pub struct QueueReader {
    pub(super) queue: Arc<DiskQueue>,
    pub(super) pos: u64,
    pub(super) file: Option<(u64, BufReader<File>, PathBuf)>,
}

impl QueueReader {
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn queue(&self) -> &Arc<DiskQueue> {
        &self.queue
    }

    /// Go back (or forward) to `seq`. Going back means the connection that
    /// carried the frames after `seq` is gone: frames dropped while in flight
    /// on it are now known lost and counted.
    pub fn seek(&mut self, seq: u64) {
        self.pos = seq;
        self.file = None;
        let mut g = self.queue.lock();
        let lost: u64 = g.limbo.drain(..).map(|(_, r)| u64::from(r)).sum();
        g.sent_end = seq;
        drop(g);
        self.queue
            .stats
            .dropped_readings
            .fetch_add(lost, Ordering::Relaxed);
    }

    /// Up to `max_frames` frames (and about `max_bytes`) from the position.
    pub fn read(&mut self, max_frames: usize, max_bytes: usize) -> Result<Vec<Record>> {
        self.read_while(max_frames, max_bytes, |_| true)
    }

    /// [`read`](Self::read), stopping before the first frame `take` refuses;
    /// a refused frame stays unread. So that every read makes progress, a
    /// refused first frame is taken, but alone.
    pub fn read_while(
        &mut self,
        max_frames: usize,
        max_bytes: usize,
        mut take: impl FnMut(&Record) -> bool,
    ) -> Result<Vec<Record>> {
        let (segments, end) = self.queue.layout();
        let oldest = self.queue.first_unacked().min(end);
        if self.pos < oldest {
            // Frames were dropped (queue full) while we were behind.
            self.pos = oldest;
            self.file = None;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_frames && bytes < max_bytes && self.pos < end {
            // Which segment holds pos?
            let Some(idx) = segments.iter().rposition(|(first, _)| *first <= self.pos) else {
                self.pos = segments.first().map(|s| s.0).unwrap_or(end);
                self.file = None;
                continue;
            };
            let (first, path) = &segments[idx];
            let need_open = match &self.file {
                Some((f, _, _)) => f != first,
                None => true,
            };
            if need_open {
                let file = match File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Dropped under us; the next read starts from what is kept.
                        break;
                    }
                    Err(e) => {
                        return Err(Error::Io {
                            context: format!("opening {}", path.display()),
                            source: e,
                        })
                    }
                };
                let mut r = BufReader::with_capacity(256 * 1024, file);
                r.seek(SeekFrom::Start(0))
                    .ctx(|| format!("seeking {}", path.display()))?;
                self.file = Some((*first, r, path.clone()));
            }
            let (_, r, p) = self.file.as_mut().expect("opened");
            match segment::read_record_len(r, p)? {
                Some((rec, _)) if rec.seq < self.pos => continue,
                Some((rec, len)) => {
                    let taken = take(&rec);
                    if !taken && !out.is_empty() {
                        // Step back over it so the next read starts there.
                        r.seek_relative(-(len as i64))
                            .ctx(|| format!("seeking {}", p.display()))?;
                        break;
                    }
                    self.pos = rec.seq + 1;
                    bytes += rec.frame.len();
                    out.push(rec);
                    if !taken {
                        // A refused first frame goes alone.
                        break;
                    }
                }
                None => {
                    // End of this segment's flushed data: move to the next one.
                    if idx + 1 < segments.len() {
                        self.pos = self.pos.max(segments[idx + 1].0);
                        self.file = None;
                    } else {
                        break;
                    }
                }
            }
        }
        // From here the uplink will send these: a drop from now on puts
        // them in limbo. Any dropped while we read them are already counted
        // as lost, so they must not go out.
        let mut g = self.queue.lock();
        g.sent_end = g.sent_end.max(self.pos);
        let gone_below = g.acked;
        drop(g);
        out.retain(|r| r.seq >= gone_below);
        Ok(out)
    }
}
