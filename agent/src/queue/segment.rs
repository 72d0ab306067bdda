//! One segment file: records, scanning at open, reading.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};

/// `len u32 | crc32 u32`
pub(super) const HEADER_LEN: usize = 8;

/// Largest body accepted when reading; anything larger is corruption.
const MAX_BODY: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(super) struct SegmentInfo {
    pub path: PathBuf,
    pub first_seq: u64,
    /// One past the last record's seq.
    pub next_seq: u64,
    pub records: u64,
    pub readings: u64,
    pub bytes: u64,
    /// When the ack cursor passed the segment's last frame (retention's
    /// clock); `None` while any of it is unacknowledged.
    pub acked_at: Option<SystemTime>,
}

/// A frame as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub readings: u32,
    pub topic: String,
    /// The frame's JSON, `{"seq":N,...}`.
    pub frame: Vec<u8>,
}

/// Read one record. `Ok(None)` at the end of the valid data (clean end, torn
/// tail or a bad CRC).
pub(super) fn read_record<R: Read>(r: &mut R, path: &Path) -> Result<Option<Record>> {
    Ok(read_record_len(r, path)?.map(|(rec, _)| rec))
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8], path: &Path) -> Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        }),
    }
}

/// [`read_record`] and the record's length in the file.
pub(super) fn read_record_len<R: Read>(r: &mut R, path: &Path) -> Result<Option<(Record, usize)>> {
    let mut head = [0u8; HEADER_LEN];
    if !read_exact_or_eof(r, &mut head, path)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if !(14..=MAX_BODY).contains(&len) {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    if !read_exact_or_eof(r, &mut body, path)? {
        return Ok(None);
    }
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let readings = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    let tlen = u16::from_le_bytes(body[12..14].try_into().expect("2 bytes")) as usize;
    if 14 + tlen > len {
        return Ok(None);
    }
    let topic = String::from_utf8_lossy(&body[14..14 + tlen]).into_owned();
    let frame = body[14 + tlen..].to_vec();
    Ok(Some((
        Record {
            seq,
            readings,
            topic,
            frame,
        },
        HEADER_LEN + len,
    )))
}

/// Scan a segment, cut off a torn or corrupt tail, and summarize it.
pub(super) fn scan_segment(path: &Path, first_seq: u64, _is_last: bool) -> Result<SegmentInfo> {
    let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let file_len = file
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut info = SegmentInfo {
        path: path.to_path_buf(),
        first_seq,
        next_seq: first_seq,
        records: 0,
        readings: 0,
        bytes: 0,
        acked_at: None,
    };
    while let Some((rec, n)) = read_record_len(&mut r, path)? {
        if rec.seq < info.next_seq && info.records > 0 {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                message: format!(
                    "sequence goes back to {} after {}",
                    rec.seq,
                    info.next_seq - 1
                ),
            });
        }
        info.next_seq = rec.seq + 1;
        info.records += 1;
        info.readings += u64::from(rec.readings);
        info.bytes += n as u64;
    }
    if info.bytes < file_len {
        tracing::warn!(
            segment = %path.display(),
            kept = info.bytes,
            cut = file_len - info.bytes,
            "queue segment has a torn or corrupt tail (crash during write); cutting it off"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        f.set_len(info.bytes)
            .ctx(|| format!("truncating {}", path.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
    }
    Ok(info)
}
