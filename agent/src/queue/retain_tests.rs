//! Retention, range reads and the origin (issue 20).

use super::*;
use weir_crds::gateway::RetainSettings;

fn cfg(dir: &Path, max_bytes: u64, overflow: OverflowPolicy, retain: (u64, u64)) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        overflow,
        fsync: FsyncPolicy::Never,
        retain: RetainSettings {
            max_bytes: retain.0,
            max_age_secs: retain.1,
        },
    }
}

/// A frame of about 1 KiB.
fn frame(i: u64) -> PendingFrame {
    PendingFrame {
        topic: Arc::from("weir/t/g/dev/grp"),
        readings: 2,
        rest: format!(
            "\"timestamp\":{i},\"values\":{{\"v\":\"{}\"}}}}",
            "x".repeat(1000)
        ),
    }
}

fn append(q: &DiskQueue, n: u64) {
    q.append(&(0..n).map(frame).collect::<Vec<_>>()).unwrap();
}

fn read_range(q: &Arc<DiskQueue>, from: u64, to: u64) -> Vec<u64> {
    let mut r = q.range_reader(from, to + 1);
    let mut out = vec![];
    loop {
        let b = r.read(37, |_| true).unwrap();
        if b.is_empty() {
            assert!(r.done());
            return out;
        }
        out.extend(b.iter().map(|r| r.seq));
    }
}

fn segments(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[test]
fn acknowledged_frames_stay_up_to_retain_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB queue: 128 KiB segments; keep at most 300 KiB acknowledged.
    let q = Arc::new(
        DiskQueue::open(cfg(
            dir.path(),
            1 << 20,
            OverflowPolicy::DropOldest,
            (300 << 10, 3600),
        ))
        .unwrap(),
    );
    let first = q.next_seq();
    append(&q, 600);
    assert!(segments(dir.path()) >= 4);
    q.ack(first + 600, 1200).unwrap();
    let kept = q.first_kept();
    assert!(kept > first, "retention beyond maxBytes was not trimmed");
    let st = q.stats();
    let retained = st.retained_bytes.load(Ordering::Relaxed);
    // Whole segments below the cursor within 300 KiB, plus the active one.
    assert!(
        retained <= (300 << 10) + (130 << 10),
        "retained {retained} bytes"
    );
    assert_eq!(
        st.retained_frames.load(Ordering::Relaxed),
        first + 600 - kept
    );
    assert_eq!(st.depth_frames.load(Ordering::Relaxed), 0);
    assert!(
        first + 600 - kept >= 150,
        "only {} frames kept",
        first + 600 - kept
    );
    assert_eq!(q.last_acked_seq(), Some(first + 599));
    // What is kept reads back, in order, without touching the cursor.
    let seqs = read_range(&q, kept, first + 599);
    assert_eq!(seqs, (kept..first + 600).collect::<Vec<_>>());
    assert_eq!(q.first_unacked(), first + 600);

    // retain 0 keeps none (beyond the active segment), at once.
    q.set_limits(
        1 << 20,
        OverflowPolicy::DropOldest,
        RetainSettings {
            max_bytes: 0,
            max_age_secs: 900,
        },
    )
    .unwrap();
    assert_eq!(segments(dir.path()), 1);
}

#[test]
fn acknowledged_frames_go_after_retain_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(
        DiskQueue::open(cfg(
            dir.path(),
            1 << 20,
            OverflowPolicy::DropOldest,
            (1 << 30, 1),
        ))
        .unwrap(),
    );
    let first = q.next_seq();
    append(&q, 400);
    q.ack(first + 400, 800).unwrap();
    assert_eq!(q.first_kept(), first, "kept less than a second");
    std::thread::sleep(Duration::from_millis(1100));
    q.trim().unwrap();
    assert!(q.first_kept() > first);
    assert_eq!(segments(dir.path()), 1, "only the active segment stays");

    // After a restart the clock is the file's mtime: a fresh file stays.
    drop(q);
    let q = Arc::new(
        DiskQueue::open(cfg(
            dir.path(),
            1 << 20,
            OverflowPolicy::DropOldest,
            (1 << 30, 3600),
        ))
        .unwrap(),
    );
    let kept = q.first_kept();
    append(&q, 400);
    q.ack(q.next_seq(), 800).unwrap();
    drop(q);
    let q = DiskQueue::open(cfg(
        dir.path(),
        1 << 20,
        OverflowPolicy::DropOldest,
        (1 << 30, 3600),
    ))
    .unwrap();
    assert_eq!(q.first_kept(), kept);
    drop(q);
    // ... and an hour-old one goes when it is reopened with a 60 s limit.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") {
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    let q = DiskQueue::open(cfg(
        dir.path(),
        1 << 20,
        OverflowPolicy::DropOldest,
        (1 << 30, 60),
    ))
    .unwrap();
    assert!(q.first_kept() > kept);
    assert_eq!(segments(dir.path()), 1);
}

#[test]
fn retained_frames_make_room_first_without_counting_a_loss() {
    for overflow in [OverflowPolicy::DropOldest, OverflowPolicy::RefuseNew] {
        let dir = tempfile::tempdir().unwrap();
        // 128 KiB queue (16 KiB segments), retention as large as it likes.
        let q = Arc::new(
            DiskQueue::open(cfg(dir.path(), 128 << 10, overflow, (1 << 30, 3600))).unwrap(),
        );
        let first = q.next_seq();
        append(&q, 100);
        q.ack(first + 100, 200).unwrap();
        assert_eq!(q.first_kept(), first);
        // 100 more need room the retained ones give up.
        append(&q, 100);
        let st = q.stats();
        assert_eq!(
            st.dropped_readings.load(Ordering::Relaxed),
            0,
            "{overflow:?}"
        );
        assert!(q.first_kept() > first, "{overflow:?}");
        assert!(st.bytes.load(Ordering::Relaxed) <= 128 << 10);
        assert_eq!(st.depth_frames.load(Ordering::Relaxed), 100);
        // Every unacknowledged frame is still there for the uplink.
        let mut r = q.reader(q.first_unacked());
        let got = r.read(1000, 1 << 30).unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(got[0].seq, first + 100);
        // Only with nothing retained left does overflow lose data (frames
        // dropped while in flight count once a rewind shows them lost).
        append(&q, 100);
        r.seek(q.first_unacked());
        assert!(
            st.dropped_readings.load(Ordering::Relaxed) > 0,
            "{overflow:?}"
        );
    }
}

#[test]
fn a_range_reads_across_segments_and_retained_and_pending_frames() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(
        DiskQueue::open(cfg(
            dir.path(),
            1 << 20,
            OverflowPolicy::DropOldest,
            (1 << 30, 3600),
        ))
        .unwrap(),
    );
    let first = q.next_seq();
    append(&q, 500);
    q.ack(first + 200, 400).unwrap();
    let mut uplink = q.reader(q.first_unacked());
    let live = uplink.read(10, 1 << 30).unwrap();
    assert_eq!(live[0].seq, first + 200);
    // Retained and pending, over several 128 KiB segments.
    let seqs = read_range(&q, first + 10, first + 450);
    assert_eq!(seqs, (first + 10..=first + 450).collect::<Vec<_>>());
    // Below the oldest kept and past the end: only what is held.
    assert_eq!(
        read_range(&q, first - 5, first + 2),
        vec![first, first + 1, first + 2]
    );
    assert!(read_range(&q, first + 500, first + 600).is_empty());
    // The uplink's reader and cursor did not move.
    assert_eq!(uplink.read(1, 1 << 30).unwrap()[0].seq, first + 210);
    assert_eq!(q.first_unacked(), first + 200);
}

#[test]
fn the_origin_survives_restarts_and_deleted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let c = || cfg(dir.path(), 64 << 10, OverflowPolicy::DropOldest, (0, 0));
    let q = DiskQueue::open(c()).unwrap();
    let origin = q.origin();
    assert_eq!(origin, q.next_seq());
    assert_eq!(q.last_acked_seq(), None);
    append(&q, 200);
    q.ack(origin + 200, 400).unwrap();
    q.close().unwrap();
    drop(q);
    let q = DiskQueue::open(c()).unwrap();
    assert!(
        q.first_kept() > origin,
        "acknowledged segments were deleted"
    );
    assert_eq!(q.origin(), origin);
    assert_eq!(q.last_acked_seq(), Some(origin + 199));
    drop(q);
    // A queue from before the origin file: the lowest seq it can prove.
    fs::remove_file(dir.path().join(ORIGIN_FILE)).unwrap();
    let q = DiskQueue::open(c()).unwrap();
    let kept = q.first_kept();
    assert_eq!(q.origin(), kept);
    drop(q);
    assert_eq!(DiskQueue::open(c()).unwrap().origin(), kept, "persisted");
}
