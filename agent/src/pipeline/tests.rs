use super::*;
use weir_crds::gateway::{
    AdapterKind, DataType, Device, Pipeline as PipelineCfg, Selector, TagGroup,
};
use weir_crds::message::UplinkMessage;

fn tag(name: &str) -> Tag {
    Tag {
        name: name.into(),
        address: name.into(),
        data_type: DataType::Float64,
        attributes: vec![],
        scale: None,
        offset: None,
        decimals: None,
        unit: None,
        description: None,
        write_min: None,
        write_max: None,
        signal: None,
    }
}

fn config(steps: Vec<Step>) -> GatewayConfig {
    GatewayConfig {
        devices: vec![Device {
            name: "pump-1".into(),
            adapter: AdapterKind::Simulator,
            description: None,
            modbus: None,
            simulator: None,
            serial: None,
            opc_ua: None,
            groups: vec![TagGroup {
                name: "fast".into(),
                interval_ms: 1000,
                mode: None,
                deadband: None,
                tags: vec![tag("flow"), tag("level")],
            }],
        }],
        pipelines: vec![PipelineCfg {
            name: "p".into(),
            select: Selector {
                device: "pump-1".into(),
                group: None,
                tag: Some("flow".into()),
            },
            steps,
        }],
        uplink: Default::default(),
    }
}

fn step(json: &str) -> Step {
    serde_json::from_str(json).unwrap()
}

fn base() -> TopicBase {
    TopicBase {
        prefix: "weir".into(),
        tenant: "t".into(),
        gateway: "g".into(),
    }
}

fn schema() -> Arc<GroupSchema> {
    Arc::new(GroupSchema {
        device: "pump-1".into(),
        group: "fast".into(),
        tags: vec!["flow".into(), "level".into()],
    })
}

fn run(
    p: &mut Pipeline,
    s: &Arc<GroupSchema>,
    ts: i64,
    flow: f64,
    level: f64,
) -> Vec<weir_crds::message::Frame> {
    let mut out = Vec::new();
    p.process(
        Sample {
            schema: s.clone(),
            ts_ms: ts,
            values: vec![(0, TagValue::Float(flow)), (1, TagValue::Float(level))],
            errors: vec![],
        },
        &mut out,
    );
    out.iter()
        .map(|f| {
            assert_eq!(&*f.topic, "weir/t/g/pump-1/fast");
            let m: UplinkMessage =
                serde_json::from_str(&format!("{{\"frames\":[{{\"seq\":1,{}]}}", f.rest)).unwrap();
            m.frames.into_iter().next().unwrap()
        })
        .collect()
}

#[test]
fn filter_drops_only_the_selected_tag() {
    let mut p = Pipeline::compile(
        &config(vec![step(r#"{"filter":"value >= 0.0 && value < 50.0"}"#)]),
        base(),
        Default::default(),
    )
    .unwrap();
    let s = schema();
    let f = run(&mut p, &s, 1, 80.0, 80.0);
    assert!(!f[0].values.contains_key("flow"));
    assert_eq!(f[0].values["level"], TagValue::Float(80.0));
    let f = run(&mut p, &s, 2, 20.0, 80.0);
    assert_eq!(f[0].values["flow"], TagValue::Float(20.0));
    assert_eq!(p.stats().readings_filtered.load(Ordering::Relaxed), 1);
}

#[test]
fn failing_rule_becomes_an_error_entry_and_is_counted() {
    let mut p = Pipeline::compile(
        &config(vec![step(r#"{"filter":"value.size() > 1"}"#)]),
        base(),
        Default::default(),
    )
    .unwrap();
    let s = schema();
    for ts in 0..3 {
        let f = run(&mut p, &s, ts, 1.0, 2.0);
        assert_eq!(f[0].errors["flow"], ErrorCode::RuleFailed as i32);
        assert_eq!(f[0].values["level"], TagValue::Float(2.0));
    }
    assert_eq!(p.stats().rule_failures.load(Ordering::Relaxed), 3);
    assert!(p.stats().last_rule_failure.lock().unwrap().is_some());
}

#[test]
fn scale_then_deadband_then_rate() {
    let mut p = Pipeline::compile(
        &config(vec![
            step(r#"{"scale":{"factor":2.0,"offset":1.0}}"#),
            step(r#"{"deadband":{"absolute":1.0}}"#),
        ]),
        base(),
        Default::default(),
    )
    .unwrap();
    let s = schema();
    assert_eq!(
        run(&mut p, &s, 0, 1.0, 0.0)[0].values["flow"],
        TagValue::Float(3.0)
    );
    assert!(!run(&mut p, &s, 1, 1.2, 0.0)[0].values.contains_key("flow"));
    assert_eq!(
        run(&mut p, &s, 2, 1.5, 0.0)[0].values["flow"],
        TagValue::Float(4.0)
    );

    let mut p = Pipeline::compile(
        &config(vec![step(r#"{"rateOfChange":{"perSeconds":60.0}}"#)]),
        base(),
        Default::default(),
    )
    .unwrap();
    assert!(!run(&mut p, &s, 0, 10.0, 0.0)[0].values.contains_key("flow"));
    // 5 units in 2 s = 150 per minute.
    assert_eq!(
        run(&mut p, &s, 2000, 15.0, 0.0)[0].values["flow"],
        TagValue::Float(150.0)
    );
}

#[test]
fn window_emits_aggregates_at_the_window_end() {
    let mut p = Pipeline::compile(
        &config(vec![step(
            r#"{"window":{"sizeMs":1000,"aggregates":["avg","max","count"]}}"#,
        )]),
        base(),
        Default::default(),
    )
    .unwrap();
    let s = schema();
    for (ts, v) in [(0, 1.0), (500, 3.0)] {
        let f = run(&mut p, &s, ts, v, 0.0);
        assert_eq!(f.len(), 1);
        assert!(!f[0].values.contains_key("flow"));
    }
    let f = run(&mut p, &s, 1000, 7.0, 0.0);
    assert_eq!(f.len(), 2);
    let agg = &f[1];
    assert_eq!(agg.timestamp, 1000);
    assert_eq!(agg.values["flow_avg"], TagValue::Float(2.0));
    assert_eq!(agg.values["flow_max"], TagValue::Float(3.0));
    assert_eq!(agg.values["flow_count"], TagValue::Int(2));
    let mut out = Vec::new();
    p.flush(5000, &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].rest.contains("\"flow_avg\":7.0"));
}

#[test]
fn tag_scale_offset_and_decimals_apply() {
    let mut cfg = config(vec![step(r#"{"scale":{"factor":1.0}}"#)]);
    let t = &mut cfg.devices[0].groups[0].tags[1];
    t.scale = Some(0.1);
    t.offset = Some(-2.0);
    t.decimals = Some(1);
    let mut p = Pipeline::compile(&cfg, base(), Default::default()).unwrap();
    let f = run(&mut p, &schema(), 0, 1.0, 123.0);
    assert_eq!(f[0].values["level"], TagValue::Float(10.3));
}

#[test]
fn bad_filter_refuses_the_config() {
    let err = Pipeline::compile(
        &config(vec![step(r#"{"filter":"value >"}"#)]),
        base(),
        Default::default(),
    );
    assert!(err.is_err());
}
