//! Deadband and report-on-change: drop readings that did not move enough.

use weir_crds::message::TagValue;

/// Pass a reading when it moved at least the band since the last one passed.
pub struct Deadband {
    absolute: Option<f64>,
    /// Fraction of the last passed value, e.g. 0.02 for 2 %.
    fraction: Option<f64>,
    last: Option<f64>,
}

impl Deadband {
    pub fn new(absolute: Option<f64>, percent: Option<f64>) -> Self {
        Self {
            absolute: absolute.map(f64::abs),
            fraction: percent.map(|p| p.abs() / 100.0),
            last: None,
        }
    }

    pub fn pass(&mut self, v: f64) -> bool {
        let pass = match self.last {
            None => true,
            Some(last) => {
                let band = match (self.absolute, self.fraction) {
                    (Some(a), _) => a,
                    (None, Some(f)) => last.abs() * f,
                    (None, None) => 0.0,
                };
                v != last && (v - last).abs() >= band
            }
        };
        if pass {
            self.last = Some(v);
        }
        pass
    }
}

/// Pass changed values, and an unchanged one at least every heartbeat.
pub struct ReportOnChange {
    heartbeat_ms: Option<u64>,
    last: Option<(TagValue, i64)>,
}

impl ReportOnChange {
    pub fn new(heartbeat_ms: Option<u64>) -> Self {
        Self {
            heartbeat_ms,
            last: None,
        }
    }

    pub fn pass(&mut self, ts: i64, v: &TagValue) -> bool {
        let pass = match &self.last {
            None => true,
            Some((last, at)) => {
                last != v
                    || self
                        .heartbeat_ms
                        .is_some_and(|hb| ts.saturating_sub(*at) >= hb as i64)
            }
        };
        if pass {
            self.last = Some((v.clone(), ts));
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_band_passes_only_real_moves() {
        let mut d = Deadband::new(Some(0.5), None);
        let passed: Vec<f64> = [10.0, 10.2, 10.4, 10.6, 10.0, 9.9, 12.0]
            .into_iter()
            .filter(|v| d.pass(*v))
            .collect();
        // 10.6 moved 0.6 from 10.0; 10.0 moved 0.6 back; 12.0 moved 2.0.
        assert_eq!(passed, vec![10.0, 10.6, 10.0, 12.0]);
    }

    #[test]
    fn percent_band_is_relative_to_the_last_value() {
        let mut d = Deadband::new(None, Some(10.0));
        let passed: Vec<f64> = [100.0, 105.0, 111.0, 120.0, 123.0]
            .into_iter()
            .filter(|v| d.pass(*v))
            .collect();
        assert_eq!(passed, vec![100.0, 111.0, 123.0]);
    }

    #[test]
    fn report_on_change_sends_heartbeats() {
        let mut r = ReportOnChange::new(Some(1000));
        let v = |x: i64| TagValue::Int(x);
        assert!(r.pass(0, &v(1)));
        assert!(!r.pass(100, &v(1)));
        assert!(r.pass(200, &v(2)));
        assert!(!r.pass(1100, &v(2)));
        assert!(r.pass(1200, &v(2)), "heartbeat after 1000 ms");
    }
}
