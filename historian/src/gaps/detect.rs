//! Holes in one gateway's `seq`, computed from what is committed; no I/O.
//!
//! Rules (see [`weir_crds::message`] for what `seq` promises):
//! * tracking starts at the first `seq` ever committed for the gateway:
//!   nothing below it is a hole;
//! * a hole is a gap between two committed runs, or the tail from the last
//!   committed `seq` up to the agent's `last_acked_seq`;
//! * a new data directory starts its sequence at `origin_seq`, above the old
//!   one: the numbers from the hole's start up to below the origin were never
//!   issued, so only the part from the origin on is a hole;
//! * parts already recorded in `reading_gaps` are not holes any more.

/// A run of committed `seq`s with the read times of its first and last frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub from: i64,
    pub to: i64,
    pub ts_from_ms: i64,
    pub ts_to_ms: i64,
}

/// Missing `seq`s `from..=to`, with the read times of the committed frames
/// bordering it (none after a tail hole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hole {
    pub from: i64,
    pub to: i64,
    pub ts_before_ms: Option<i64>,
    pub ts_after_ms: Option<i64>,
}

impl Hole {
    pub fn frames(&self) -> i64 {
        self.to - self.from + 1
    }
}

/// Sort and merge overlapping or adjacent runs (redeliveries overlap).
pub(crate) fn merge(mut runs: Vec<Run>) -> Vec<Run> {
    runs.sort_unstable_by_key(|r| (r.from, r.to));
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for r in runs {
        match out.last_mut() {
            Some(last) if r.from <= last.to.saturating_add(1) => {
                if r.to > last.to {
                    last.to = r.to;
                    last.ts_to_ms = r.ts_to_ms;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// The holes of a gateway given its merged runs, its last acknowledged
/// `seq`, the origins of its sequences and the ranges already recorded as
/// gaps (inclusive `(from, to)`).
pub(crate) fn holes(
    runs: &[Run],
    last_acked: Option<i64>,
    origins: &[i64],
    recorded: &[(i64, i64)],
) -> Vec<Hole> {
    let mut raw = Vec::new();
    for w in runs.windows(2) {
        raw.push(Hole {
            from: w[0].to + 1,
            to: w[1].from - 1,
            ts_before_ms: Some(w[0].ts_to_ms),
            ts_after_ms: Some(w[1].ts_from_ms),
        });
    }
    if let (Some(last), Some(acked)) = (runs.last(), last_acked) {
        if acked > last.to {
            raw.push(Hole {
                from: last.to + 1,
                to: acked,
                ts_before_ms: Some(last.ts_to_ms),
                ts_after_ms: None,
            });
        }
    }
    let mut out = Vec::new();
    for mut h in raw {
        // Never issued: from the hole's start to below the newest origin in it.
        if let Some(o) = origins
            .iter()
            .copied()
            .filter(|&o| o > h.from && o <= h.to + 1)
            .max()
        {
            h.from = o;
        }
        if h.from > h.to {
            continue;
        }
        subtract(h, recorded, &mut out);
    }
    out
}

/// `h` minus the `recorded` ranges, pieces appended to `out`.
fn subtract(h: Hole, recorded: &[(i64, i64)], out: &mut Vec<Hole>) {
    let mut pieces = vec![h];
    for &(a, b) in recorded {
        let mut next = Vec::with_capacity(pieces.len() + 1);
        for p in pieces {
            if b < p.from || a > p.to {
                next.push(p);
                continue;
            }
            if a > p.from {
                next.push(Hole { to: a - 1, ..p });
            }
            if b < p.to {
                next.push(Hole { from: b + 1, ..p });
            }
        }
        pieces = next;
    }
    out.extend(pieces);
}

/// The parts of `range` (inclusive) that lie in `holes`.
pub(crate) fn intersect(range: (i64, i64), holes: &[Hole]) -> Vec<Hole> {
    holes
        .iter()
        .filter(|h| h.from <= range.1 && range.0 <= h.to)
        .map(|h| Hole {
            from: h.from.max(range.0),
            to: h.to.min(range.1),
            ..*h
        })
        .collect()
}

/// How many committed `seq`s of `runs` lie in `from..=to`.
pub(crate) fn committed_within(runs: &[Run], from: i64, to: i64) -> i64 {
    runs.iter()
        .filter(|r| r.from <= to && from <= r.to)
        .map(|r| r.to.min(to) - r.from.max(from) + 1)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: i64, to: i64) -> Run {
        Run {
            from,
            to,
            ts_from_ms: from * 10,
            ts_to_ms: to * 10,
        }
    }

    fn spans(h: &[Hole]) -> Vec<(i64, i64)> {
        h.iter().map(|h| (h.from, h.to)).collect()
    }

    #[test]
    fn runs_merge_across_overlaps_and_adjacency() {
        let m = merge(vec![
            run(5, 9),
            run(1, 3),
            run(4, 4),
            run(2, 6),
            run(12, 20),
        ]);
        assert_eq!(m, vec![run(1, 9), run(12, 20)]);
    }

    #[test]
    fn holes_between_runs_and_at_the_tail() {
        let runs = merge(vec![run(1, 10), run(21, 30)]);
        let h = holes(&runs, Some(35), &[], &[]);
        assert_eq!(spans(&h), vec![(11, 20), (31, 35)]);
        assert_eq!(h[0].ts_before_ms, Some(100));
        assert_eq!(h[0].ts_after_ms, Some(210));
        assert_eq!(h[1].ts_after_ms, None);
        // Nothing acknowledged beyond what is committed: no tail.
        assert_eq!(spans(&holes(&runs, Some(30), &[], &[])), vec![(11, 20)]);
        // Nothing committed yet: tracking has not started.
        assert!(holes(&[], Some(5), &[], &[]).is_empty());
    }

    #[test]
    fn a_new_origin_is_not_a_hole_but_what_follows_it_can_be() {
        let origin = 1_700_000_000_000_000;
        let runs = merge(vec![run(1, 500), run(origin, origin + 9)]);
        assert!(holes(&runs, None, &[origin], &[]).is_empty());
        // The first frames of the new sequence are missing.
        let runs = merge(vec![run(1, 500), run(origin + 3, origin + 9)]);
        assert_eq!(
            spans(&holes(&runs, None, &[origin], &[])),
            vec![(origin, origin + 2)]
        );
        // Only the old sequence committed, the new one acknowledged up to +4.
        let runs = vec![run(1, 500)];
        assert_eq!(
            spans(&holes(&runs, Some(origin + 4), &[origin], &[])),
            vec![(origin, origin + 4)]
        );
        // Without knowing the origin, the jump looks like a hole.
        let runs = merge(vec![run(1, 500), run(origin, origin + 9)]);
        assert_eq!(
            spans(&holes(&runs, None, &[], &[])),
            vec![(501, origin - 1)]
        );
    }

    #[test]
    fn recorded_gaps_are_left_out() {
        let runs = merge(vec![run(1, 10), run(31, 40)]);
        let h = holes(&runs, None, &[], &[(14, 16), (20, 22)]);
        assert_eq!(spans(&h), vec![(11, 13), (17, 19), (23, 30)]);
        assert!(holes(&runs, None, &[], &[(5, 35)]).is_empty());
    }

    #[test]
    fn intersections_and_counts() {
        let runs = merge(vec![run(1, 10), run(21, 30)]);
        let h = holes(&runs, Some(40), &[], &[]);
        assert_eq!(spans(&intersect((15, 35), &h)), vec![(15, 20), (31, 35)]);
        assert_eq!(committed_within(&runs, 5, 25), 6 + 5);
    }
}
