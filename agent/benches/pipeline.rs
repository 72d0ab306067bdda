//! Pipeline readings/s on one core, in process: simulator samples through
//! typical rule chains into rendered frames (what the queue stores).
//!
//! `cargo bench -p weir-agent --bench pipeline`

use std::sync::Arc;
use std::time::Instant;

use weir_agent::adapters::simulator::SimGroup;
use weir_agent::pipeline::{Pipeline, TopicBase};
use weir_agent::sample::Sample;
use weir_crds::gateway::GatewayConfig;

fn config(steps: serde_json::Value) -> GatewayConfig {
    let tags: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "address": "x", "dataType": "float64", "signal": {"kind": "randomWalk", "min": 0.0, "max": 100.0, "step": 0.05}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "devices": [{"name": "plant", "adapter": "simulator", "groups": [{"name": "fast", "intervalMs": 100, "tags": tags}]}],
        "pipelines": if steps.is_null() { serde_json::json!([]) } else { serde_json::json!([{"name": "p", "select": {"device": "plant"}, "steps": steps}]) }
    }))
    .unwrap()
}

fn run(name: &str, steps: serde_json::Value, samples: usize) {
    let cfg = config(steps);
    let base = TopicBase {
        prefix: "weir".into(),
        tenant: "t".into(),
        gateway: "g".into(),
    };
    let mut p = Pipeline::compile(&cfg, base, Arc::default()).unwrap();
    let mut sim = SimGroup::new(&cfg.devices[0], &cfg.devices[0].groups[0]);
    // Generate first so the figure is the pipeline's alone.
    let input: Vec<Sample> = (0..samples)
        .map(|i| sim.sample(1_700_000_000_000 + i as i64 * 100))
        .collect();
    let readings: usize = input.iter().map(|s| s.readings()).sum();
    let mut out = Vec::with_capacity(1024);
    let mut bytes = 0usize;
    let t = Instant::now();
    for s in input {
        p.process(s, &mut out);
        if out.len() >= 1024 {
            bytes += out.iter().map(|f| f.rest.len()).sum::<usize>();
            out.clear();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    bytes += out.iter().map(|f| f.rest.len()).sum::<usize>();
    println!(
        "pipeline {name:<38} {:>12.0} readings/s/core  ({readings} readings in {secs:.3} s, {:.1} MB rendered)",
        readings as f64 / secs,
        bytes as f64 / 1e6
    );
}

fn main() {
    let n = 20_000; // × 100 tags = 2,000,000 readings per case
    run("pass-through (render only)", serde_json::Value::Null, n);
    run(
        "filter (fast path) + scale + deadband",
        serde_json::json!([
            {"filter": "value >= 0.0 && value < 100.0"},
            {"scale": {"factor": 1.8, "offset": 32.0}},
            {"deadband": {"absolute": 0.5}}
        ]),
        n,
    );
    run(
        "window 1 s avg/min/max",
        serde_json::json!([
            {"window": {"sizeMs": 1000, "aggregates": ["avg", "min", "max"]}}
        ]),
        n,
    );
    run(
        "filter (CEL interpreter)",
        serde_json::json!([
            {"filter": "tag != 'x' && value >= 0.0"}
        ]),
        n / 10,
    );
}
