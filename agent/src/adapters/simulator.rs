//! Simulated water-plant devices: sine (diurnal demand), ramp (tank fill),
//! random walk (turbidity, pH), step (valve positions), pumps that run and
//! trip into fault, and constants. Deterministic for a given seed, so demo
//! runs and benchmarks repeat.

use std::sync::Arc;

use weir_crds::gateway::{DataType, Device, Signal, SignalKind, TagGroup};
use weir_crds::message::TagValue;

use crate::sample::{GroupSchema, Sample};

/// xorshift64*: fast, tiny, good enough for test signals.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn name_hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (std's hasher is not).
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[derive(Debug)]
struct SimTag {
    signal: Signal,
    data_type: DataType,
    rng: Rng,
    walk: f64,
    /// Pump: in fault until this time (ms).
    fault_until: i64,
    /// Index of the pump a PumpFault tag follows.
    pump: Option<usize>,
}

/// One simulated group: produces a sample per call.
#[derive(Debug)]
pub struct SimGroup {
    schema: Arc<GroupSchema>,
    tags: Vec<SimTag>,
}

fn default_signal() -> Signal {
    Signal {
        kind: SignalKind::Sine,
        min: 0.0,
        max: 100.0,
        period_s: 60.0,
        step: 0.01,
        fault_rate: 0.0,
    }
}

impl SimGroup {
    pub fn new(device: &Device, group: &TagGroup) -> Self {
        let seed = device.simulator.as_ref().map(|s| s.seed).unwrap_or(0);
        let schema = Arc::new(GroupSchema {
            device: device.name.clone(),
            group: group.name.clone(),
            tags: group.tags.iter().map(|t| t.name.clone()).collect(),
        });
        let first_pump = group.tags.iter().position(|t| {
            t.signal
                .as_ref()
                .is_some_and(|s| s.kind == SignalKind::Pump)
        });
        let tags = group
            .tags
            .iter()
            .map(|t| {
                let signal = t.signal.clone().unwrap_or_else(default_signal);
                let mut rng =
                    Rng::new(seed ^ name_hash(&device.name) ^ name_hash(&t.name).rotate_left(17));
                let walk = signal.min + (signal.max - signal.min) * rng.unit();
                SimTag {
                    pump: (signal.kind == SignalKind::PumpFault)
                        .then_some(first_pump)
                        .flatten(),
                    signal,
                    data_type: t.data_type,
                    rng,
                    walk,
                    fault_until: i64::MIN,
                }
            })
            .collect();
        Self { schema, tags }
    }

    pub fn schema(&self) -> &Arc<GroupSchema> {
        &self.schema
    }

    /// The readings at `ts_ms`.
    pub fn sample(&mut self, ts_ms: i64) -> Sample {
        let mut values = Vec::with_capacity(self.tags.len());
        let mut pump_fault = vec![false; self.tags.len()];
        for (i, t) in self.tags.iter_mut().enumerate() {
            let s = &t.signal;
            let span = s.max - s.min;
            let secs = ts_ms as f64 / 1000.0;
            let phase = (secs / s.period_s.max(1e-3)).rem_euclid(1.0);
            let raw = match s.kind {
                SignalKind::Sine => {
                    s.min + span * (0.5 + 0.5 * (std::f64::consts::TAU * phase).sin())
                }
                SignalKind::Ramp => s.min + span * phase,
                SignalKind::RandomWalk => {
                    t.walk += (t.rng.unit() * 2.0 - 1.0) * s.step * span;
                    t.walk = t.walk.clamp(s.min, s.max);
                    t.walk
                }
                SignalKind::Step => {
                    if phase < 0.5 {
                        s.min
                    } else {
                        s.max
                    }
                }
                SignalKind::Pump => {
                    if ts_ms >= t.fault_until && t.rng.unit() < s.fault_rate {
                        // A trip lasts a quarter period, then the pump restarts.
                        t.fault_until = ts_ms + (s.period_s * 250.0) as i64;
                    }
                    let faulted = ts_ms < t.fault_until;
                    pump_fault[i] = faulted;
                    // Duty cycle: runs in the first 70 % of each period.
                    if !faulted && phase < 0.7 {
                        1.0
                    } else {
                        0.0
                    }
                }
                SignalKind::PumpFault => f64::NAN,
                SignalKind::Constant => s.min,
            };
            values.push((i as u16, raw));
        }
        let out = values
            .into_iter()
            .map(|(i, raw)| {
                let t = &self.tags[i as usize];
                let raw = if t.signal.kind == SignalKind::PumpFault {
                    match t.pump {
                        Some(p) if pump_fault[p] => 1.0,
                        _ => 0.0,
                    }
                } else {
                    raw
                };
                (i, typed(raw, t.data_type))
            })
            .collect();
        Sample {
            schema: self.schema.clone(),
            ts_ms,
            values: out,
            errors: Vec::new(),
        }
    }
}

fn typed(v: f64, dt: DataType) -> TagValue {
    match dt {
        DataType::Bool | DataType::Bit => TagValue::Bool(v >= 0.5),
        DataType::Int16
        | DataType::Uint16
        | DataType::Int32
        | DataType::Uint32
        | DataType::Int64
        | DataType::Uint64 => TagValue::Int(v.round() as i64),
        DataType::Float32 => TagValue::Float(super::codec::widen_f32(v as f32)),
        DataType::Float64 => TagValue::Float(v),
        DataType::String => TagValue::Text(format!("{v:.2}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::gateway::{AdapterKind, SimulatorSettings, Tag};

    fn tag(name: &str, kind: SignalKind, dt: DataType, fault_rate: f64) -> Tag {
        Tag {
            name: name.into(),
            address: name.into(),
            data_type: dt,
            attributes: vec![],
            scale: None,
            offset: None,
            decimals: None,
            unit: None,
            description: None,
            write_min: None,
            write_max: None,
            signal: Some(Signal {
                kind,
                min: 10.0,
                max: 20.0,
                period_s: 10.0,
                step: 0.05,
                fault_rate,
            }),
        }
    }

    fn group() -> (Device, TagGroup) {
        let g = TagGroup {
            name: "fast".into(),
            interval_ms: 1000,
            mode: None,
            deadband: None,
            tags: vec![
                tag("demand", SignalKind::Sine, DataType::Float64, 0.0),
                tag("level", SignalKind::Ramp, DataType::Float64, 0.0),
                tag("turbidity", SignalKind::RandomWalk, DataType::Float64, 0.0),
                tag("valve", SignalKind::Step, DataType::Int16, 0.0),
                tag("pump", SignalKind::Pump, DataType::Bool, 0.01),
                tag("pump_fault", SignalKind::PumpFault, DataType::Bool, 0.0),
            ],
        };
        let d = Device {
            name: "sim".into(),
            adapter: AdapterKind::Simulator,
            description: None,
            modbus: None,
            simulator: Some(SimulatorSettings { seed: 42 }),
            serial: None,
            opc_ua: None,
            groups: vec![g.clone()],
        };
        (d, g)
    }

    #[test]
    fn signals_stay_in_range_and_repeat_for_a_seed() {
        let (d, g) = group();
        let mut a = SimGroup::new(&d, &g);
        let mut b = SimGroup::new(&d, &g);
        let mut faults = 0;
        for i in 0..20_000 {
            let ts = 1_700_000_000_000 + i * 100;
            let sa = a.sample(ts);
            assert_eq!(
                format!("{:?}", sa.values),
                format!("{:?}", b.sample(ts).values)
            );
            for (idx, v) in &sa.values {
                if let TagValue::Float(f) = v {
                    assert!((10.0..=20.0).contains(f), "tag {idx} = {f}");
                }
            }
            let pump = &sa.values[4].1;
            let fault = &sa.values[5].1;
            if *fault == TagValue::Bool(true) {
                faults += 1;
                assert_eq!(*pump, TagValue::Bool(false), "a faulted pump does not run");
            }
        }
        assert!(faults > 0, "pumps trip at a 1 % fault rate");
    }

    #[test]
    fn sine_and_step_follow_their_period() {
        let (d, g) = group();
        let mut s = SimGroup::new(&d, &g);
        // Quarter period: sine at max; step low in the first half.
        let v = s.sample(2_500).values;
        assert_eq!(v[0].1, TagValue::Float(20.0));
        assert_eq!(v[3].1, TagValue::Int(10));
        assert_eq!(s.sample(7_500).values[3].1, TagValue::Int(20));
    }
}
