use super::*;
use weir_crds::gateway::RetainSettings;

fn cfg(dir: &Path, max_bytes: u64, overflow: OverflowPolicy) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        overflow,
        fsync: FsyncPolicy::Never,
        // Keep nothing acknowledged: the tests below are about the pending log.
        retain: RetainSettings {
            max_bytes: 0,
            max_age_secs: 0,
        },
    }
}

fn frame(i: u64, readings: u32) -> PendingFrame {
    PendingFrame {
        topic: Arc::from("weir/t/g/dev/grp"),
        readings,
        rest: format!("\"timestamp\":{i},\"values\":{{\"v\":{i}}}}}"),
    }
}

fn read_all(r: &mut QueueReader) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let b = r.read(1000, 1 << 20).unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend(b);
    }
}

#[test]
fn frames_come_back_in_order_with_increasing_seq_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    let frames: Vec<_> = (0..100).map(|i| frame(i, 1)).collect();
    q.append(&frames).unwrap();
    let first = q.first_unacked();
    let mut r = q.reader(first);
    let got = read_all(&mut r);
    assert_eq!(got.len(), 100);
    for (i, rec) in got.iter().enumerate() {
        assert_eq!(rec.seq, first + i as u64);
        let v: serde_json::Value = serde_json::from_slice(&rec.frame).unwrap();
        assert_eq!(v["seq"], rec.seq);
        assert_eq!(v["values"]["v"], i as u64);
    }
    // Acknowledge half, reopen: the rest is still there, numbers go on.
    q.ack(first + 50, 50).unwrap();
    q.close().unwrap();
    drop(r);
    drop(q);
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    assert_eq!(q.first_unacked(), first + 50);
    assert_eq!(q.next_seq(), first + 100);
    let mut r = q.reader(q.first_unacked());
    let got = read_all(&mut r);
    assert_eq!(got.len(), 50);
    assert_eq!(got[0].seq, first + 50);
    q.append(&[frame(100, 1)]).unwrap();
    assert_eq!(read_all(&mut r)[0].seq, first + 100);
}

#[test]
fn torn_tail_is_cut_and_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let q = DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap();
    q.append(&(0..10).map(|i| frame(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let next = q.next_seq();
    drop(q);
    // Simulate a crash in the middle of a write: half a record at the end.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(f);
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    assert_eq!(q.next_seq(), next);
    q.append(&[frame(10, 1)]).unwrap();
    let mut r = q.reader(0);
    let got = read_all(&mut r);
    assert_eq!(got.len(), 11);
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn drop_oldest_counts_every_dropped_reading_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let q = Arc::new(DiskQueue::open(cfg(dir.path(), max, OverflowPolicy::DropOldest)).unwrap());
    let mut appended = 0u64;
    for chunk in 0..50 {
        let frames: Vec<_> = (0..100).map(|i| frame(chunk * 100 + i, 3)).collect();
        q.append(&frames).unwrap();
        appended += 300;
    }
    let stats = q.stats();
    let dropped = stats.dropped_readings.load(Ordering::Relaxed);
    assert!(dropped > 0, "the queue should have overflowed");
    assert!(stats.bytes.load(Ordering::Relaxed) <= max);
    let mut r = q.reader(0);
    let kept = read_all(&mut r);
    let kept_readings: u64 = kept.iter().map(|r| u64::from(r.readings)).sum();
    assert_eq!(
        kept_readings + dropped,
        appended,
        "every reading is kept or counted"
    );
    // The newest frame is kept and the kept ones are a contiguous tail.
    assert_eq!(kept.last().unwrap().seq, q.next_seq() - 1);
    assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn refuse_new_counts_every_refused_reading_and_keeps_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let q = Arc::new(DiskQueue::open(cfg(dir.path(), max, OverflowPolicy::RefuseNew)).unwrap());
    let first = q.next_seq();
    let mut appended = 0u64;
    for chunk in 0..50 {
        let frames: Vec<_> = (0..100).map(|i| frame(chunk * 100 + i, 2)).collect();
        q.append(&frames).unwrap();
        appended += 200;
    }
    let dropped = q.stats().dropped_readings.load(Ordering::Relaxed);
    assert!(dropped > 0);
    let mut r = q.reader(0);
    let kept = read_all(&mut r);
    let kept_readings: u64 = kept.iter().map(|r| u64::from(r.readings)).sum();
    assert_eq!(kept_readings + dropped, appended);
    assert_eq!(kept[0].seq, first, "the oldest frames are kept");
    let v: serde_json::Value = serde_json::from_slice(&kept[0].frame).unwrap();
    assert_eq!(v["values"]["v"], 0);
}

#[test]
fn acknowledged_segments_are_deleted_and_numbers_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    for chunk in 0..20 {
        q.append(
            &(0..200)
                .map(|i| frame(chunk * 200 + i, 1))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }
    let segs_before = fs::read_dir(dir.path()).unwrap().count();
    assert!(segs_before > 3);
    let end = q.next_seq();
    q.ack(end, 4000).unwrap();
    q.close().unwrap();
    let segs_after = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        segs_after, 3,
        "the active segment, the cursor and the origin remain"
    );
    drop(q);
    let q = DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(q.next_seq(), end);
    assert_eq!(q.first_unacked(), end);
    assert_eq!(q.stats().depth_frames.load(Ordering::Relaxed), 0);
}

#[test]
fn drop_oldest_with_mixed_batches_reads_back_contiguously_in_one_big_read() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    let mut i = 0u64;
    let mut appended = 0u64;
    for batch in [
        1usize, 7, 1024, 300, 1024, 1024, 5, 1024, 1024, 1024, 1024, 999, 1024, 1024, 1024, 1024,
        1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024,
    ] {
        let frames: Vec<_> = (0..batch)
            .map(|_| {
                i += 1;
                frame(i, 10)
            })
            .collect();
        appended += 10 * batch as u64;
        q.append(&frames).unwrap();
    }
    let dropped = q.stats().dropped_readings.load(Ordering::Relaxed);
    let mut r = q.reader(q.first_unacked());
    let got = r.read(50_000, 25 << 20).unwrap();
    let readings: u64 = got.iter().map(|r| u64::from(r.readings)).sum();
    assert!(
        got.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "contiguous"
    );
    assert_eq!(readings + dropped, appended);
}

#[test]
fn a_frame_read_while_refuses_stays_for_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    q.append(&(0..10).map(|i| frame(i, 100)).collect::<Vec<_>>())
        .unwrap();
    let first = q.first_unacked();
    let mut r = q.reader(first);
    let mut budget = 350u32;
    let got = r
        .read_while(1000, 1 << 20, |rec| {
            let fits = rec.readings <= budget;
            budget = budget.saturating_sub(rec.readings);
            fits
        })
        .unwrap();
    assert_eq!(got.len(), 3, "three frames of 100 fit 350");
    assert_eq!(r.position(), first + 3);
    assert!(
        r.file.is_some(),
        "the reader steps back in the open segment instead of rescanning it"
    );
    // The refused frame and the rest come next, in order, none twice.
    let rest = read_all(&mut r);
    let seqs: Vec<u64> = rest.iter().map(|x| x.seq).collect();
    assert_eq!(seqs, (first + 3..first + 10).collect::<Vec<_>>());
    assert_eq!(q.stats.dropped_readings.load(Ordering::Relaxed), 0);
}

#[test]
fn a_refused_first_frame_is_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(DiskQueue::open(cfg(dir.path(), 1 << 20, OverflowPolicy::DropOldest)).unwrap());
    let sizes = [100, 10, 10, 10];
    q.append(
        &sizes
            .iter()
            .zip(0..)
            .map(|(&n, i)| frame(i, n))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let first = q.first_unacked();
    let mut r = q.reader(first);
    // Like the uplink's window: a refused frame is not counted.
    let mut budget = 50u32;
    let mut take = |rec: &Record| {
        let fits = rec.readings <= budget;
        if fits {
            budget -= rec.readings;
        }
        fits
    };
    let got = r.read_while(1000, 1 << 20, &mut take).unwrap();
    assert_eq!(got.iter().map(|x| x.readings).collect::<Vec<_>>(), [100]);
    let got = r.read_while(1000, 1 << 20, &mut take).unwrap();
    assert_eq!(got.iter().map(|x| x.readings).collect::<Vec<_>>(), [10; 3]);
}
