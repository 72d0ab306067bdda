//! Retention of acknowledged frames and reading a seq range back for a
//! replay (see the module doc of `queue` for the invariants).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{segment, DiskQueue, Inner, Record};
use crate::error::{Error, IoContext, Result};

/// Read the persisted origin, or write `fallback` as it (a fresh queue, or
/// one from before the file existed: the lowest seq it can prove it issued).
pub(super) fn open_origin(path: &Path, fallback: u64) -> Result<u64> {
    let mut b = Vec::new();
    if let Ok(mut f) = File::open(path) {
        f.read_to_end(&mut b)
            .ctx(|| format!("reading {}", path.display()))?;
    }
    if let Some(v) = super::decode_cursor(&b) {
        return Ok(v);
    }
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&fallback.to_le_bytes());
    let crc = crc32fast::hash(&out[..8]);
    out[8..].copy_from_slice(&crc.to_le_bytes());
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))?;
    f.write_all(&out)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(fallback)
}

impl Inner {
    /// Stamp segments the cursor has passed and delete retained segments
    /// beyond `retain.maxBytes` or older than `retain.maxAgeSecs`. The
    /// active segment stays: it carries the next sequence number.
    pub(super) fn trim_retained(&mut self, now: SystemTime) -> Result<()> {
        let acked = self.acked;
        for s in self.segments.iter_mut() {
            if s.next_seq > acked {
                break;
            }
            s.acked_at.get_or_insert(now);
        }
        let max_age = Duration::from_secs(self.retain.max_age_secs);
        let mut retained: u64 = self
            .segments
            .iter()
            .take_while(|s| s.next_seq <= acked)
            .map(|s| s.bytes)
            .sum();
        while self.segments.len() > 1 && self.segments[0].next_seq <= acked {
            let s = &self.segments[0];
            let expired = s
                .acked_at
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= max_age);
            if retained <= self.retain.max_bytes && !expired && self.retain.max_age_secs > 0 {
                break;
            }
            let seg = self.segments.pop_front().expect("checked");
            retained -= seg.bytes;
            fs::remove_file(&seg.path).ctx(|| format!("removing {}", seg.path.display()))?;
        }
        Ok(())
    }
}

impl DiskQueue {
    /// The first seq this data dir issued.
    pub fn origin(&self) -> u64 {
        self.lock().origin
    }

    /// The oldest seq still on disk (retained or pending); `next_seq` when
    /// the queue is empty.
    pub fn first_kept(&self) -> u64 {
        let g = self.lock();
        g.segments
            .front()
            .map(|s| s.first_seq)
            .unwrap_or(g.next_seq)
    }

    /// The highest seq the broker acknowledged (or that was dropped past, so
    /// is gone for good), `None` before the first.
    pub fn last_acked_seq(&self) -> Option<u64> {
        let g = self.lock();
        (g.acked > g.origin).then(|| g.acked - 1)
    }

    /// Apply the age limit of retention now (called on a timer, so an idle
    /// queue also lets old frames go).
    pub fn trim(&self) -> Result<()> {
        let mut g = self.lock();
        g.trim_retained(SystemTime::now())?;
        self.refresh_depth(&g)
    }

    /// A reader of the kept frames `from..end` (end exclusive), independent
    /// of the uplink's reader: it never moves the cursor, `sent_end` or
    /// limbo.
    pub fn range_reader(self: &Arc<Self>, from: u64, end: u64) -> RangeReader {
        RangeReader {
            queue: self.clone(),
            pos: from,
            end,
            file: None,
        }
    }
}

/// Reads a seq range from the kept log (retained or pending) for a replay.
/// Frames dropped from the disk meanwhile are simply not returned; the
/// caller sees the jump in `seq`.
pub struct RangeReader {
    queue: Arc<DiskQueue>,
    pos: u64,
    end: u64,
    file: Option<(u64, BufReader<File>, PathBuf)>,
}

impl RangeReader {
    /// Whether every kept frame of the range has been read.
    pub fn done(&self) -> bool {
        self.pos >= self.end
    }

    /// Up to `max_frames` frames of the range, in seq order, stopping before
    /// the first frame `take` refuses (a refused first frame is taken alone,
    /// so every call makes progress). Empty only when the range is done.
    pub fn read(
        &mut self,
        max_frames: usize,
        mut take: impl FnMut(&Record) -> bool,
    ) -> Result<Vec<Record>> {
        let (segments, log_end) = self.queue.layout();
        self.end = self.end.min(log_end);
        let mut out = Vec::new();
        while out.len() < max_frames && self.pos < self.end {
            let Some(idx) = segments.iter().rposition(|(first, _)| *first <= self.pos) else {
                // Below what is kept: jump to the oldest kept frame.
                match segments.first() {
                    Some((first, _)) if *first < self.end => self.pos = *first,
                    _ => self.pos = self.end,
                }
                self.file = None;
                continue;
            };
            let (first, path) = &segments[idx];
            if self.file.as_ref().map(|(f, _, _)| f) != Some(first) {
                match File::open(path) {
                    Ok(f) => self.file = Some((*first, BufReader::new(f), path.clone())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Deleted under us (retention, overflow): go on
                        // with the next segment.
                        self.pos = segments.get(idx + 1).map(|s| s.0).unwrap_or(self.end);
                        self.file = None;
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::Io {
                            context: format!("opening {}", path.display()),
                            source: e,
                        })
                    }
                }
            }
            let (_, r, p) = self.file.as_mut().expect("opened");
            match segment::read_record_len(r, p)? {
                Some((rec, _)) if rec.seq < self.pos => continue,
                Some((rec, _)) if rec.seq >= self.end => self.pos = self.end,
                Some((rec, len)) => {
                    let taken = take(&rec);
                    if !taken && !out.is_empty() {
                        r.seek_relative(-(len as i64))
                            .ctx(|| format!("seeking {}", p.display()))?;
                        break;
                    }
                    self.pos = rec.seq + 1;
                    out.push(rec);
                    if !taken {
                        break;
                    }
                }
                None => {
                    self.pos = segments.get(idx + 1).map(|s| s.0).unwrap_or(self.end);
                    self.file = None;
                }
            }
        }
        Ok(out)
    }
}
