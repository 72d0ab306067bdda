//! Unit tests of the engine (a module of engine.rs, kept in its own file).

use super::*;

fn rule(json: serde_json::Value) -> RuleDef {
    RuleDef {
        id: Uuid::new_v4(),
        project_id: Uuid::nil(),
        tenant: "riverside".into(),
        spec: serde_json::from_value(json).unwrap(),
    }
}

/// Riverside's gateway `ps-1` is in the nil project, lakeside's in [`LAKESIDE`].
const LAKESIDE: Uuid = Uuid::from_u128(7);

fn engine() -> Engine {
    let mut e = Engine::new();
    e.set_gateways([
        ("riverside", "ps-1", Uuid::nil()),
        ("lakeside", "ps-1", LAKESIDE),
    ]);
    e
}

fn reading(tag: &str, value: f64, ts_ms: i64) -> Reading<'_> {
    Reading {
        tenant: "riverside",
        gateway: "ps-1",
        device: "pump-1",
        tag,
        value,
        ts_ms,
    }
}

fn states(out: &[Transition]) -> Vec<(AlertState, AlertState)> {
    out.iter().map(|t| (t.from, t.to)).collect()
}

use AlertState::*;

#[test]
fn threshold_honours_the_for_duration() {
    let mut e = engine();
    let mut out = vec![];
    e.set_rules(
        vec![rule(serde_json::json!({"name": "Cl low", "kind": "threshold", "tag": "cl", "op": "<", "threshold": 0.2, "for_secs": 60,
            "summary": "{{gateway}}/{{tag}} is {{value}} (limit {{threshold}})"}))],
        0,
        &mut out,
    );
    e.observe(1_000, &reading("cl", 0.5, 1_000), &mut out);
    assert!(out.is_empty());
    e.observe(2_000, &reading("cl", 0.1, 2_000), &mut out);
    assert_eq!(states(&out), vec![(Inactive, Pending)]);
    out.clear();
    e.tick(61_999, &mut out);
    assert!(out.is_empty(), "fired before the for-duration");
    e.tick(62_000, &mut out);
    assert_eq!(states(&out), vec![(Pending, Firing)]);
    assert_eq!(out[0].summary, "ps-1/cl is 0.1 (limit 0.2)");
    assert_eq!(out[0].labels["alertname"], "Cl low");
    assert_eq!(out[0].labels["device"], "pump-1");
    out.clear();
    e.observe(63_000, &reading("cl", 0.05, 63_000), &mut out);
    assert!(out.is_empty(), "a firing alert does not fire again");
    e.observe(64_000, &reading("cl", 0.3, 64_000), &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
}

#[test]
fn a_handed_over_rule_leaves_without_resolving_and_the_rest_keep_state() {
    let mut e = engine();
    let mut out = vec![];
    let mine = rule(
        serde_json::json!({"name": "Cl low", "kind": "threshold", "tag": "cl", "op": "<", "threshold": 0.2}),
    );
    let mut theirs = rule(
        serde_json::json!({"name": "Cl low", "kind": "threshold", "tag": "cl", "op": "<", "threshold": 0.2}),
    );
    theirs.tenant = "lakeside".into();
    theirs.project_id = LAKESIDE;
    let (mine_id, theirs_id) = (mine.id, theirs.id);
    e.set_rules(vec![mine, theirs], 0, &mut out);
    e.observe(1_000, &reading("cl", 0.1, 1_000), &mut out);
    let lakeside = Reading {
        tenant: "lakeside",
        ..reading("cl", 0.1, 1_000)
    };
    e.observe(1_000, &lakeside, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing), (Inactive, Firing)]);
    out.clear();
    e.hand_over(2_000, |d| d.tenant == "lakeside");
    let active: Vec<Uuid> = e.active().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(active, vec![mine_id], "lakeside's alert went with it");
    assert!(!active.contains(&theirs_id));
    e.observe(3_000, &reading("cl", 0.1, 3_000), &mut out);
    assert!(out.is_empty(), "the kept alert is still firing, not new");
    e.observe(4_000, &reading("cl", 0.5, 4_000), &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
    assert_eq!(out[0].rule_id, mine_id);
}

#[test]
fn pending_that_clears_goes_back_to_inactive() {
    let mut e = engine();
    let mut out = vec![];
    e.set_rules(vec![rule(serde_json::json!({"name": "band", "kind": "threshold", "tag": "ph", "op": "outside", "low": 6.5, "high": 8.5, "for_secs": 10}))], 0, &mut out);
    e.observe(0, &reading("ph", 9.0, 0), &mut out);
    e.observe(5_000, &reading("ph", 7.0, 5_000), &mut out);
    e.tick(20_000, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Pending), (Pending, Inactive)]);
}

#[test]
fn absence_rate_and_fleet_rules() {
    let mut e = engine();
    let mut out = vec![];
    e.set_rules(
        vec![
            rule(serde_json::json!({"name": "quiet", "kind": "absence", "tag": "flow", "absent_secs": 30})),
            rule(serde_json::json!({"name": "jump", "kind": "rate", "tag": "level", "max_rate_per_sec": 1.0})),
            rule(serde_json::json!({"name": "gw", "kind": "gateway_offline", "for_secs": 5})),
            rule(serde_json::json!({"name": "dev", "kind": "device_down"})),
        ],
        0,
        &mut out,
    );
    e.observe(0, &reading("flow", 1.0, 0), &mut out);
    e.tick(29_000, &mut out);
    assert!(out.is_empty());
    e.tick(30_000, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing)]);
    out.clear();
    e.observe(31_000, &reading("flow", 1.0, 31_000), &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
    out.clear();
    e.observe(0, &reading("level", 1.0, 0), &mut out);
    e.observe(1_000, &reading("level", 1.5, 1_000), &mut out);
    assert!(out.is_empty());
    e.observe(2_000, &reading("level", 5.0, 2_000), &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing)]);
    out.clear();
    e.observe_gateway(0, Uuid::nil(), "ps-1", false, &mut out);
    e.tick(5_000, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Pending), (Pending, Firing)]);
    assert_eq!(out[1].summary, "gateway ps-1 is offline");
    out.clear();
    e.observe_gateway(6_000, LAKESIDE, "ps-1", true, &mut out);
    assert!(
        out.is_empty(),
        "another project's gateway is another gateway"
    );
    e.observe_device(0, Uuid::nil(), "ps-1", "pump-1", false, &mut out);
    e.observe_device(1, Uuid::nil(), "ps-1", "pump-1", true, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing), (Firing, Resolved)]);
}

#[test]
fn fleet_health_in_project_scope_reaches_only_that_projects_rules() {
    let mut e = engine();
    let mut out = vec![];
    let mine = rule(serde_json::json!({"name": "gw", "kind": "gateway_offline"}));
    let mut other = rule(serde_json::json!({"name": "gw", "kind": "gateway_offline"}));
    other.project_id = Uuid::new_v4();
    let (mine_id, project) = (mine.id, mine.project_id);
    let cl = rule(serde_json::json!({"name": "cl", "kind": "cluster_degraded"}));
    e.set_rules(vec![mine, other, cl], 0, &mut out);
    e.observe_gateway(0, project, "ps-1", false, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing)]);
    assert_eq!(out[0].rule_id, mine_id);
    out.clear();
    e.observe_cluster(0, project, "main", false, &mut out);
    assert_eq!(states(&out), vec![(Inactive, Firing)]);
    assert_eq!(out[0].labels["cluster"], "main");
    out.clear();
    e.observe_cluster(1, Uuid::new_v4(), "main", true, &mut out);
    assert!(
        out.is_empty(),
        "another project's cluster is another cluster"
    );
}

#[test]
fn restored_firing_alert_does_not_fire_again_and_removed_rules_resolve() {
    let mut e = engine();
    let mut out = vec![];
    let r = rule(
        serde_json::json!({"name": "hi", "kind": "threshold", "tag": "t", "op": ">", "threshold": 1.0}),
    );
    let id = r.id;
    e.set_rules(vec![r], 0, &mut out);
    assert!(e.restore(id, "ps-1/pump-1/t", Firing, 0, Some(2.0), 0));
    e.observe(10, &reading("t", 3.0, 10), &mut out);
    assert!(out.is_empty());
    e.set_rules(vec![], 20, &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
    assert_eq!(out[0].rule_id, id);
}

#[test]
fn a_reading_reaches_only_the_rules_of_its_gateways_project() {
    let mut e = engine();
    let mut out = vec![];
    let q = Uuid::from_u128(9);
    e.set_gateways([("riverside", "ps-1", Uuid::nil()), ("riverside", "q-1", q)]);
    let spec = |name: &str, extra: serde_json::Value| {
        let mut j = serde_json::json!({"name": name, "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0});
        j.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        rule(j)
    };
    // Project nil's rules: any gateway, and one naming q's gateway.
    let any = spec("any", serde_json::json!({}));
    let named = spec("named", serde_json::json!({"gateway": "q-1"}));
    let rate = rule(
        serde_json::json!({"name": "rate", "kind": "rate", "tag": "level", "max_rate_per_sec": 1.0}),
    );
    let quiet = rule(
        serde_json::json!({"name": "quiet", "kind": "absence", "tag": "level", "absent_secs": 10}),
    );
    let dev = rule(serde_json::json!({"name": "dev", "kind": "device_down"}));
    let mut theirs = spec("theirs", serde_json::json!({}));
    theirs.project_id = q;
    let theirs_id = theirs.id;
    e.set_rules(vec![any, named, rate, quiet, dev, theirs], 0, &mut out);
    let at = |gateway, value, ts_ms| Reading {
        gateway,
        ..reading("level", value, ts_ms)
    };
    e.observe(0, &at("q-1", 7.0, 0), &mut out);
    e.observe(1_000, &at("q-1", 70.0, 1_000), &mut out);
    e.observe(2_000, &at("unknown", 70.0, 2_000), &mut out);
    e.tick(60_000, &mut out);
    let fired: Vec<Uuid> = out.iter().map(|t| t.rule_id).collect();
    assert_eq!(fired, vec![theirs_id], "only q's own rule saw q's readings");
    assert_eq!(e.gateway_project("riverside", "q-1"), Some(q));
    assert_eq!(e.gateway_project("riverside", "unknown"), None);
    assert_eq!(e.gateway_project("lakeside", "q-1"), None);
    // The map can change under a remembered gateway.
    e.set_gateways([("riverside", "q-1", Uuid::nil())]);
    out.clear();
    e.observe(61_000, &at("q-1", 7.0, 61_000), &mut out);
    assert!(out.iter().any(|t| t.rule_name == "any"), "{out:?}");
}

#[test]
fn a_data_gap_fires_once_per_gap_and_resolves_on_its_own() {
    let mut e = engine();
    let mut out = vec![];
    e.set_rules(
        vec![
            rule(serde_json::json!({"name": "Lost", "kind": "data_gap"})),
            rule(serde_json::json!({"name": "Lost ps-2", "kind": "data_gap", "gateway": "ps-2"})),
        ],
        0,
        &mut out,
    );
    e.observe_gap(
        1_000,
        Uuid::nil(),
        "ps-1",
        (100, 149),
        "not-retained",
        &mut out,
    );
    assert_eq!(
        states(&out),
        vec![(Inactive, Firing)],
        "only the rule of ps-1's gateway"
    );
    let t = &out[0];
    assert_eq!(t.labels["gateway"], "ps-1");
    assert_eq!(t.labels["seq_from"], "100");
    assert_eq!(t.labels["seq_to"], "149");
    assert_eq!(t.labels["reason"], "not-retained");
    assert!(!t.labels.contains_key("device"));
    assert_eq!(
        t.summary,
        "readings of ps-1 lost: seq 100..149 (not-retained)"
    );
    out.clear();
    // The same gap again changes nothing; another gap is another alert;
    // another project's gap reaches no rule.
    e.observe_gap(
        2_000,
        Uuid::nil(),
        "ps-1",
        (100, 149),
        "not-retained",
        &mut out,
    );
    assert!(out.is_empty());
    e.observe_gap(
        3_000,
        LAKESIDE,
        "ps-1",
        (1, 9),
        "agent-unreachable",
        &mut out,
    );
    assert!(out.is_empty());
    e.observe_gap(
        4_000,
        Uuid::nil(),
        "ps-1",
        (150, 150),
        "agent-unreachable",
        &mut out,
    );
    assert_eq!(states(&out), vec![(Inactive, Firing)]);
    out.clear();
    let hold = super::DATA_GAP_FIRING_SECS * 1000;
    e.tick(1_000 + hold - 1, &mut out);
    assert!(out.is_empty(), "resolved early");
    e.tick(1_000 + hold, &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
    assert_eq!(out[0].labels["seq_from"], "100");
    out.clear();
    e.tick(4_000 + hold, &mut out);
    assert_eq!(states(&out), vec![(Firing, Resolved)]);
    assert!(e.active().is_empty(), "resolved gaps are forgotten");
}
