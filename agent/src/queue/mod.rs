//! Store-and-forward: a disk segment log between the pipeline and the uplink.
//!
//! Like Vector's disk buffer, readings are written to disk before the uplink
//! sees them and leave only when the broker acknowledged them — and, for
//! replays, a while after (`uplink.buffer.retain`):
//!
//! - Segment files `{first_seq:020}.seg` hold records appended in order. A
//!   record is `len u32 | crc32 u32 | body`, body = `seq u64 | readings u32 |
//!   topic_len u16 | topic | frame JSON`. A torn tail (kill -9, power cut) is
//!   found by length/CRC at open and cut off.
//! - The record's `seq` is the frame's per-gateway sequence number. It comes
//!   from the log position, so it is persisted with the data and never repeats
//!   after a restart; a fresh queue starts at `unix_ms * 1000` so even a wiped
//!   data dir does not reuse numbers. The kept segments are contiguous: seqs
//!   `first_kept..next_seq` are all on disk, none twice.
//! - `origin` (file `origin`, seq + CRC) is the first seq this data dir ever
//!   issued, written once at creation. A queue from before the file existed
//!   gets the lowest seq it can prove it issued (oldest kept segment, or the
//!   cursor), a lower bound of what it still holds, not of its history.
//! - `cursor` holds the first sequence number not yet acknowledged.
//!   Everything from the first kept seq up to it is *retained*: delivered,
//!   kept only so a replay can send it again. Replays read it with
//!   [`DiskQueue::read_range`] and never move the cursor.
//! - Retention: a segment wholly below the cursor is deleted when the
//!   retained bytes exceed `retain.maxBytes` (oldest first) or it was fully
//!   acknowledged more than `retain.maxAgeSecs` ago (0 = keep none). The
//!   clock is the moment the cursor passed it; after a restart, the file's
//!   mtime (its last append, so an earlier time: a restart can only shorten
//!   retention, never extend it). The checks run with the throttled cursor
//!   write and on [`DiskQueue::trim`], never per frame.
//! - The queue is bounded by bytes on disk, retained bytes included. When an
//!   append needs room, retained segments go first, without counting any
//!   loss; only then does it drop the oldest unacknowledged segment
//!   (counting every reading in it) or refuse new frames (counting them),
//!   as configured.
//!
//! Here: the writer and the ack cursor, which share the invariants above.
//! The segment format is in `segment.rs`, the uplink's reader in
//! `reader.rs`, retention, the origin and range reads in `retain.rs`, the
//! tests in `tests.rs` and `retain_tests.rs`.

mod reader;
mod retain;
mod segment;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weir_crds::gateway::{OverflowPolicy, RetainSettings};

use crate::error::{IoContext, Result};
use crate::sample::PendingFrame;
use segment::{scan_segment, SegmentInfo, HEADER_LEN};

pub use reader::QueueReader;
pub use retain::RangeReader;
pub use segment::Record;

/// When appended data is forced to disk. Every policy survives `kill -9`
/// (the data is in the page cache); only a power cut can lose the last
/// interval's data with `Interval` or `Never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|n| n.parse().ok())
                .map(|n| Self::Interval(Duration::from_millis(n)))
                .ok_or_else(|| format!("fsync policy '{s}': use always, never or e.g. 1000ms")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub overflow: OverflowPolicy,
    pub fsync: FsyncPolicy,
    pub retain: RetainSettings,
}

/// Counters the status report and metrics read without taking the lock.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Readings appended since start (with drop-oldest, including readings
    /// later dropped to make room).
    pub appended_readings: AtomicU64,
    /// Readings dropped or refused because the queue was full, since start.
    pub dropped_readings: AtomicU64,
    /// Readings acknowledged by the broker since start.
    pub acked_readings: AtomicU64,
    /// Frames not yet acknowledged.
    pub depth_frames: AtomicU64,
    /// Readings not yet acknowledged.
    pub depth_readings: AtomicU64,
    /// Bytes on disk.
    pub bytes: AtomicU64,
    /// Acknowledged frames kept for replays.
    pub retained_frames: AtomicU64,
    /// Bytes of acknowledged frames kept for replays (whole segments exact,
    /// the partly acknowledged one pro rata).
    pub retained_bytes: AtomicU64,
}

pub struct DiskQueue {
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
    stats: Arc<QueueStats>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    overflow: OverflowPolicy,
    fsync: FsyncPolicy,
    retain: RetainSettings,
    /// First seq this data dir issued (see the module doc).
    origin: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<SegmentInfo>,
    active: Option<File>,
    next_seq: u64,
    /// First sequence number not acknowledged.
    acked: u64,
    /// One past the last frame handed to the uplink (sent, maybe not acknowledged).
    sent_end: u64,
    /// Frames dropped to make room while they were in flight: (seq, readings).
    /// A PUBACK proves them delivered; a reconnect (rewind) proves them lost.
    limbo: VecDeque<(u64, u32)>,
    cursor_file: File,
    cursor_written: u64,
    cursor_written_at: Instant,
    dirty: bool,
    write_buf: Vec<u8>,
}

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended_frames: u64,
    /// Readings refused (refuse-new) or dropped from the front (drop-oldest).
    pub dropped_readings: u64,
}

const CURSOR_FILE: &str = "cursor";
const ORIGIN_FILE: &str = "origin";

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

impl DiskQueue {
    pub fn open(cfg: QueueConfig) -> Result<Self> {
        fs::create_dir_all(&cfg.dir).ctx(|| format!("creating queue dir {}", cfg.dir.display()))?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&cfg.dir)
            .ctx(|| format!("listing {}", cfg.dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let first = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse::<u64>()
                    .ok()?;
                Some((first, p))
            })
            .collect();
        names.sort();
        let cursor_path = cfg.dir.join(CURSOR_FILE);
        let mut cursor_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cursor_path)
            .ctx(|| format!("opening {}", cursor_path.display()))?;
        let mut cursor_bytes = Vec::new();
        cursor_file
            .read_to_end(&mut cursor_bytes)
            .ctx(|| format!("reading {}", cursor_path.display()))?;
        let stored_cursor = decode_cursor(&cursor_bytes);

        let mut segments = VecDeque::new();
        let n = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let info = scan_segment(&path, first, i + 1 == n)?;
            if info.records == 0 && i + 1 != n {
                // An empty segment that is not the last (crash between create
                // and first write): nothing to keep.
                let _ = fs::remove_file(&path);
                continue;
            }
            segments.push_back(info);
        }
        let next_seq = match segments.back() {
            Some(s) => s.next_seq,
            None => stored_cursor.unwrap_or_else(|| {
                // A fresh queue: start far from 0 so a wiped data dir never
                // reuses numbers the historian has already seen.
                (chrono::Utc::now().timestamp_millis().max(0) as u64) * 1000
            }),
        };
        let first_kept = segments.front().map(|s| s.first_seq).unwrap_or(next_seq);
        let acked = stored_cursor
            .unwrap_or(first_kept)
            .clamp(first_kept, next_seq);
        for s in segments.iter_mut().filter(|s| s.next_seq <= acked) {
            // The time the cursor passed it is not kept; the last append is
            // earlier, so retention after a restart errs on the short side.
            s.acked_at = Some(
                fs::metadata(&s.path)
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| std::time::SystemTime::now()),
            );
        }
        let origin = retain::open_origin(
            &cfg.dir.join(ORIGIN_FILE),
            first_kept.min(stored_cursor.unwrap_or(u64::MAX)),
        )?;
        let active = match segments.back() {
            Some(s) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .ctx(|| format!("opening {}", s.path.display()))?,
            ),
            None => None,
        };
        let segment_bytes = segment_size(cfg.max_bytes);
        let mut inner = Inner {
            dir: cfg.dir,
            max_bytes: cfg.max_bytes,
            overflow: cfg.overflow,
            fsync: cfg.fsync,
            retain: cfg.retain,
            origin,
            segment_bytes,
            segments,
            active,
            next_seq,
            acked,
            sent_end: acked,
            limbo: VecDeque::new(),
            cursor_file,
            cursor_written: u64::MAX,
            cursor_written_at: Instant::now(),
            dirty: false,
            write_buf: Vec::with_capacity(64 * 1024),
        };
        inner.write_cursor()?;
        inner.trim_retained(std::time::SystemTime::now())?;
        let stats = Arc::new(QueueStats::default());
        let q = DiskQueue {
            inner: Mutex::new(inner),
            notify: tokio::sync::Notify::new(),
            stats,
        };
        q.refresh_depth(&q.lock())?;
        Ok(q)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent files (appends are
        // whole records); keep going with the state we have.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> &Arc<QueueStats> {
        &self.stats
    }

    /// Change the size limit, overflow policy and retention (a new config
    /// was applied); a smaller retention takes effect at once.
    pub fn set_limits(
        &self,
        max_bytes: u64,
        overflow: OverflowPolicy,
        retain: RetainSettings,
    ) -> Result<()> {
        let mut g = self.lock();
        g.max_bytes = max_bytes;
        g.overflow = overflow;
        g.retain = retain;
        g.segment_bytes = segment_size(max_bytes);
        g.trim_retained(std::time::SystemTime::now())?;
        self.refresh_depth(&g)
    }

    /// Append frames in order, giving each the next sequence number.
    pub fn append(&self, frames: &[PendingFrame]) -> Result<AppendOutcome> {
        if frames.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let mut g = self.lock();
        let mut out = AppendOutcome::default();
        for f in frames {
            let topic = f.topic.as_bytes();
            let seq = g.next_seq;
            let seq_prefix = format!("{{\"seq\":{seq},");
            let body_len = 8 + 4 + 2 + topic.len() + seq_prefix.len() + f.rest.len();
            let rec_len = (HEADER_LEN + body_len) as u64;
            // Make room, or refuse.
            loop {
                let total: u64 =
                    g.segments.iter().map(|s| s.bytes).sum::<u64>() + g.write_buf.len() as u64;
                if total + rec_len <= g.max_bytes {
                    break;
                }
                // Retained (acknowledged) data makes room first: no loss.
                if g.segments
                    .front()
                    .is_some_and(|s| s.records > 0 && s.next_seq <= g.acked)
                {
                    if g.segments.len() == 1 {
                        g.flush_buf()?;
                        g.roll()?;
                    }
                    g.drop_oldest()?;
                    continue;
                }
                match g.overflow {
                    OverflowPolicy::RefuseNew => {
                        out.dropped_readings += u64::from(f.readings);
                        break;
                    }
                    OverflowPolicy::DropOldest => {
                        if g.segments.len() <= 1 {
                            // Only the active segment is left: close it so the
                            // next loop can drop it whole.
                            if g.segments.is_empty() || g.segments[0].records == 0 {
                                break;
                            }
                            g.flush_buf()?;
                            g.roll()?;
                        }
                        let dropped = g.drop_oldest()?;
                        out.dropped_readings += dropped;
                    }
                }
            }
            let total: u64 =
                g.segments.iter().map(|s| s.bytes).sum::<u64>() + g.write_buf.len() as u64;
            if g.overflow == OverflowPolicy::RefuseNew && total + rec_len > g.max_bytes {
                continue;
            }
            if g.active.is_none()
                || g.segments
                    .back()
                    .map(|s| s.bytes + g.write_buf.len() as u64 + rec_len)
                    .unwrap_or(0)
                    > g.segment_bytes
                    && g.segments.back().map(|s| s.records).unwrap_or(0) > 0
            {
                g.flush_buf()?;
                g.roll()?;
            }
            let mut crc = crc32fast::Hasher::new();
            let mut head = Vec::with_capacity(14 + topic.len());
            head.extend_from_slice(&seq.to_le_bytes());
            head.extend_from_slice(&f.readings.to_le_bytes());
            head.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            head.extend_from_slice(topic);
            crc.update(&head);
            crc.update(seq_prefix.as_bytes());
            crc.update(f.rest.as_bytes());
            let crc = crc.finalize();
            let buf = &mut g.write_buf;
            buf.extend_from_slice(&(body_len as u32).to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&head);
            buf.extend_from_slice(seq_prefix.as_bytes());
            buf.extend_from_slice(f.rest.as_bytes());
            let seg = g.segments.back_mut().expect("active segment exists");
            seg.records += 1;
            seg.readings += u64::from(f.readings);
            seg.next_seq = seq + 1;
            g.next_seq = seq + 1;
            out.appended_frames += 1;
            self.stats
                .appended_readings
                .fetch_add(u64::from(f.readings), Ordering::Relaxed);
        }
        g.flush_buf()?;
        if g.fsync == FsyncPolicy::Always {
            g.sync()?;
        }
        self.stats
            .dropped_readings
            .fetch_add(out.dropped_readings, Ordering::Relaxed);
        self.refresh_depth(&g)?;
        drop(g);
        if out.appended_frames > 0 {
            self.notify.notify_waiters();
        }
        Ok(out)
    }

    /// Force appended data to disk (the `Interval` policy calls this on a timer).
    pub fn sync(&self) -> Result<()> {
        self.lock().sync()
    }

    /// Wait until a frame at or after `seq` is available.
    pub async fn wait_for(&self, seq: u64) {
        loop {
            let notified = self.notify.notified();
            if self.lock().next_seq > seq {
                return;
            }
            notified.await;
        }
    }

    /// The sequence number the next appended frame gets.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// First sequence number not yet acknowledged (dropped frames count as gone).
    pub fn first_unacked(&self) -> u64 {
        let g = self.lock();
        g.acked.max(
            g.segments
                .front()
                .map(|s| s.first_seq)
                .unwrap_or(g.next_seq),
        )
    }

    /// Everything before `next_unacked` was delivered: persist the cursor and
    /// delete whole segments below it.
    pub fn ack(&self, next_unacked: u64, readings: u64) -> Result<()> {
        let mut g = self.lock();
        if next_unacked > g.acked {
            g.acked = next_unacked.min(g.next_seq);
        }
        // Frames dropped while in flight that the broker did take: delivered.
        while g.limbo.front().is_some_and(|(seq, _)| *seq < next_unacked) {
            g.limbo.pop_front();
        }
        self.stats
            .acked_readings
            .fetch_add(readings, Ordering::Relaxed);
        // Persisting on every PUBACK would cost a write each; a stale cursor
        // after a crash only means a few duplicates, which QoS 1 allows.
        let old_segment = g.segments.len() > 1 && g.segments[1].first_seq <= g.acked;
        if old_segment || g.cursor_written_at.elapsed() >= Duration::from_millis(50) {
            g.write_cursor()?;
            g.trim_retained(std::time::SystemTime::now())?;
        }
        self.refresh_depth(&g)
    }

    /// Write the cursor and sync everything (clean shutdown).
    pub fn close(&self) -> Result<()> {
        let mut g = self.lock();
        g.write_cursor()?;
        g.sync()
    }

    /// A reader positioned at `seq` (or the oldest frame still kept).
    pub fn reader(self: &Arc<Self>, seq: u64) -> QueueReader {
        QueueReader {
            queue: self.clone(),
            pos: seq,
            file: None,
        }
    }

    fn refresh_depth(&self, g: &Inner) -> Result<()> {
        // Depth in frames is exact; readings are exact per segment and
        // approximated inside the first, partly acknowledged one.
        let start = g.acked.max(
            g.segments
                .front()
                .map(|s| s.first_seq)
                .unwrap_or(g.next_seq),
        );
        let frames = g.next_seq - start;
        let mut readings = 0u64;
        for s in &g.segments {
            if s.first_seq >= start {
                readings += s.readings;
            } else if s.next_seq > start && s.records > 0 {
                readings += s.readings * (s.next_seq - start) / s.records;
            }
        }
        let first_kept = g
            .segments
            .front()
            .map(|s| s.first_seq)
            .unwrap_or(g.next_seq);
        self.stats
            .retained_frames
            .store(start - first_kept, Ordering::Relaxed);
        let mut retained_bytes = 0u64;
        for s in g.segments.iter().filter(|s| s.first_seq < start) {
            if s.next_seq <= start {
                retained_bytes += s.bytes;
            } else {
                retained_bytes += (s.bytes * (start - s.first_seq))
                    .checked_div(s.records)
                    .unwrap_or(0);
            }
        }
        self.stats
            .retained_bytes
            .store(retained_bytes, Ordering::Relaxed);
        self.stats.depth_frames.store(frames, Ordering::Relaxed);
        self.stats.depth_readings.store(readings, Ordering::Relaxed);
        self.stats
            .bytes
            .store(g.segments.iter().map(|s| s.bytes).sum(), Ordering::Relaxed);
        Ok(())
    }

    /// Segments as (first_seq, path), oldest first, and the end of the log.
    fn layout(&self) -> (Vec<(u64, PathBuf)>, u64) {
        let g = self.lock();
        (
            g.segments
                .iter()
                .map(|s| (s.first_seq, s.path.clone()))
                .collect(),
            g.next_seq,
        )
    }
}

impl Inner {
    fn flush_buf(&mut self) -> Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let seg = self.segments.back_mut().expect("active segment exists");
        let file = self.active.as_mut().expect("active file exists");
        file.write_all(&self.write_buf)
            .ctx(|| format!("writing {}", seg.path.display()))?;
        seg.bytes += self.write_buf.len() as u64;
        self.write_buf.clear();
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if self.dirty {
            if let Some(f) = &self.active {
                f.sync_data().ctx(|| "syncing queue segment".into())?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Start a new active segment at `next_seq`.
    fn roll(&mut self) -> Result<()> {
        if self.dirty {
            self.sync()?;
        }
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        self.active = Some(file);
        self.segments.push_back(SegmentInfo {
            path,
            first_seq: self.next_seq,
            next_seq: self.next_seq,
            records: 0,
            readings: 0,
            bytes: 0,
            acked_at: None,
        });
        Ok(())
    }

    /// Drop the oldest segment; returns the readings in it that are now
    /// certainly lost. Frames of it already sent but not acknowledged go to
    /// `limbo` until a PUBACK or a reconnect decides.
    fn drop_oldest(&mut self) -> Result<u64> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(0);
        };
        let from = self.acked.max(seg.first_seq);
        let lost = if from >= seg.next_seq {
            0
        } else if from == seg.first_seq && self.sent_end <= seg.first_seq {
            seg.readings
        } else {
            // Partly acknowledged or partly in flight: look at each record.
            let mut lost = 0;
            for (seq, readings) in record_readings(&seg.path)? {
                if seq < from {
                    continue;
                }
                if seq < self.sent_end {
                    self.limbo.push_back((seq, readings));
                } else {
                    lost += u64::from(readings);
                }
            }
            lost
        };
        fs::remove_file(&seg.path).ctx(|| format!("removing {}", seg.path.display()))?;
        if self.segments.is_empty() {
            self.active = None;
        }
        self.acked = self.acked.max(seg.next_seq);
        self.write_cursor()?;
        Ok(lost)
    }

    fn write_cursor(&mut self) -> Result<()> {
        if self.cursor_written == self.acked {
            return Ok(());
        }
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.acked.to_le_bytes());
        let crc = crc32fast::hash(&b[..8]);
        b[8..].copy_from_slice(&crc.to_le_bytes());
        // One small write at offset 0: it lands whole or the CRC shows it did
        // not, in which case the older cursor (a few duplicates) is used.
        self.cursor_file
            .write_all_at(&b, 0)
            .ctx(|| "writing queue cursor".into())?;
        self.cursor_written = self.acked;
        self.cursor_written_at = Instant::now();
        Ok(())
    }
}

fn decode_cursor(b: &[u8]) -> Option<u64> {
    if b.len() < 12 {
        return None;
    }
    let v = u64::from_le_bytes(b[..8].try_into().ok()?);
    let crc = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32fast::hash(&b[..8]) == crc).then_some(v)
}

fn segment_size(max_bytes: u64) -> u64 {
    (max_bytes / 8).clamp(16 * 1024, 64 * 1024 * 1024)
}

/// (seq, readings) of every record of a segment.
fn record_readings(path: &Path) -> Result<Vec<(u64, u32)>> {
    let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::new(file);
    let mut out = Vec::new();
    while let Some(rec) = segment::read_record(&mut r, path)? {
        out.push((rec.seq, rec.readings));
    }
    Ok(out)
}

#[cfg(test)]
mod retain_tests;
#[cfg(test)]
mod tests;
