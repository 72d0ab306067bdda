//! Tumbling and hopping window aggregates, kept as running sums so memory per
//! tag is bounded by the number of overlapping windows, not by readings.

use std::collections::VecDeque;

use weir_crds::gateway::Aggregate;

/// Most windows one tag keeps open at once (size / hop); a config asking
/// for more gets a longer hop.
pub const MAX_OPEN_WINDOWS: u64 = 1024;

#[derive(Clone, Copy, Debug)]
struct Acc {
    start: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

impl Acc {
    fn new(start: i64) -> Self {
        Self {
            start,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: f64::NAN,
        }
    }
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }
}

/// A closed window: its end time and one value per configured aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub end: i64,
    pub values: Vec<(Aggregate, f64)>,
}

pub struct Window {
    size: i64,
    hop: i64,
    aggregates: Vec<Aggregate>,
    open: VecDeque<Acc>,
}

impl Window {
    pub fn new(size_ms: u64, hop_ms: Option<u64>, aggregates: Vec<Aggregate>) -> Self {
        let size = size_ms.max(1);
        let hop = hop_ms
            .unwrap_or(size)
            .clamp(size.div_ceil(MAX_OPEN_WINDOWS).max(1), size);
        Self {
            size: size as i64,
            hop: hop as i64,
            aggregates,
            open: VecDeque::new(),
        }
    }

    /// Add a reading; windows that ended at or before `ts` close first.
    pub fn add(&mut self, ts: i64, v: f64, closed: &mut Vec<Closed>) {
        self.close_until(ts, closed);
        // Windows containing ts start at multiples of hop in (ts - size, ts].
        let newest = ts.div_euclid(self.hop) * self.hop;
        let mut start = newest;
        let mut starts = Vec::new();
        while start > ts - self.size {
            starts.push(start);
            start -= self.hop;
        }
        for s in starts.into_iter().rev() {
            if !self.open.iter().any(|a| a.start == s) {
                // Keep open windows ordered by start.
                let pos = self
                    .open
                    .iter()
                    .position(|a| a.start > s)
                    .unwrap_or(self.open.len());
                self.open.insert(pos, Acc::new(s));
            }
        }
        for a in self.open.iter_mut() {
            if a.start <= ts && ts < a.start + self.size {
                a.add(v);
            }
        }
    }

    /// Close every window that ends at or before `now`.
    pub fn close_until(&mut self, now: i64, closed: &mut Vec<Closed>) {
        while let Some(a) = self.open.front() {
            if a.start + self.size > now {
                break;
            }
            let a = self.open.pop_front().expect("front exists");
            if a.count == 0 {
                continue;
            }
            closed.push(Closed {
                end: a.start + self.size,
                values: self
                    .aggregates
                    .iter()
                    .map(|agg| {
                        let v = match agg {
                            Aggregate::Avg => a.sum / a.count as f64,
                            Aggregate::Min => a.min,
                            Aggregate::Max => a.max,
                            Aggregate::Count => a.count as f64,
                            Aggregate::Last => a.last,
                        };
                        (*agg, v)
                    })
                    .collect(),
            });
        }
    }
}

pub fn aggregate_name(a: Aggregate) -> &'static str {
    match a {
        Aggregate::Avg => "avg",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Count => "count",
        Aggregate::Last => "last",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Aggregate::*;

    #[test]
    fn tumbling_window_aggregates_each_period_once() {
        let mut w = Window::new(1000, None, vec![Avg, Min, Max, Count, Last]);
        let mut closed = Vec::new();
        for (ts, v) in [(0, 1.0), (400, 3.0), (999, 2.0), (1000, 10.0), (2500, 5.0)] {
            w.add(ts, v, &mut closed);
        }
        assert_eq!(
            closed,
            vec![
                Closed {
                    end: 1000,
                    values: vec![
                        (Avg, 2.0),
                        (Min, 1.0),
                        (Max, 3.0),
                        (Count, 3.0),
                        (Last, 2.0)
                    ]
                },
                Closed {
                    end: 2000,
                    values: vec![
                        (Avg, 10.0),
                        (Min, 10.0),
                        (Max, 10.0),
                        (Count, 1.0),
                        (Last, 10.0)
                    ]
                },
            ]
        );
        closed.clear();
        w.close_until(3000, &mut closed);
        assert_eq!(closed[0].end, 3000);
        assert_eq!(closed[0].values[0], (Avg, 5.0));
    }

    #[test]
    fn hopping_windows_overlap() {
        let mut w = Window::new(1000, Some(500), vec![Count]);
        let mut closed = Vec::new();
        for ts in (0..2000).step_by(100) {
            w.add(ts, 1.0, &mut closed);
        }
        w.close_until(10_000, &mut closed);
        let counts: Vec<(i64, f64)> = closed.iter().map(|c| (c.end, c.values[0].1)).collect();
        // Windows [-500,500) [0,1000) [500,1500) [1000,2000) [1500,2500)
        assert_eq!(
            counts,
            vec![
                (500, 5.0),
                (1000, 10.0),
                (1500, 10.0),
                (2000, 10.0),
                (2500, 5.0)
            ]
        );
    }

    #[test]
    fn open_windows_are_bounded() {
        let mut w = Window::new(86_400_000, Some(1), vec![Count]);
        let mut closed = Vec::new();
        w.add(1_000_000, 1.0, &mut closed);
        assert!(w.open.len() as u64 <= MAX_OPEN_WINDOWS);
    }
}
