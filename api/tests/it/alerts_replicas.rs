//! Two api replicas on one PostgreSQL database share the alert work: they
//! split the tenants, only a tenant's owner reads its readings (so an
//! absence rule sees every reading of its series), a fleet event or a rule
//! change on one replica reaches the owner on the other, every alert is
//! notified once, and when the owner of a tenant goes away the other one
//! carries its firing alert on without notifying it again.
//!
//! Real Mosquitto, real PostgreSQL, a webhook receiver; the alert clock is
//! manual and shared by both replicas.

use crate::alerts_support;
use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alerts_support::{until, uplink, webhook_receiver};
use common::{Backend, Cred, TestApp};
use serde_json::{json, Value};
use uuid::Uuid;
use weir_api::alerts::{Clock, FleetEvent};
use weir_testkit::Mosquitto;

fn tweak(clock: &Clock, mqtt: u16, name: &str) -> impl FnOnce(&mut weir_api::Config) {
    let clock = clock.clone();
    let name = name.to_string();
    move |c| {
        c.alerts.clock = clock;
        c.alerts.eval_interval_ms = 20;
        c.alerts.retry_base_ms = 20;
        c.alerts.send_timeout_ms = 5_000;
        c.alerts.mqtt_url = Some(format!("mqtt://127.0.0.1:{mqtt}"));
        c.alerts.replica = Some(name);
        c.alerts.rebalance_interval_ms = 100;
    }
}

struct Tenant {
    org: String,
    project: Uuid,
    base: String,
}

async fn tenant(app: &TestApp, admin: &Cred, hook: &str) -> Tenant {
    let org = format!("r{}", &Uuid::new_v4().simple().to_string()[..10]);
    app.post_ok("/api/v1/orgs", admin, json!({"slug": org, "name": org}))
        .await;
    let p = app
        .post_ok(
            &format!("/api/v1/orgs/{org}/projects"),
            admin,
            json!({"slug": "north", "name": "North Plant"}),
        )
        .await;
    alerts_support::gateways(app, admin, &org, "north", &["ps-1", "ps-9"]).await;
    let base = format!("/api/v1/orgs/{org}/projects/north/alerts");
    app.post_ok(
        &format!("{base}/channels"),
        admin,
        json!({"name": "hook", "kind": "webhook", "url": hook, "group_by": ["alertname"],
               "group_wait_secs": 0, "group_interval_secs": 60, "repeat_interval_secs": 3600}),
    )
    .await;
    app.post_ok(
        &format!("{base}/rules"),
        admin,
        json!({"name": format!("Level high {org}"), "kind": "threshold", "tag": "level",
               "op": ">", "threshold": 5.0, "for_secs": 5}),
    )
    .await;
    Tenant {
        project: p["id"].as_str().unwrap().parse().unwrap(),
        base,
        org,
    }
}

fn owned(app: &TestApp) -> BTreeSet<String> {
    app.running.state.alerts.owned_tenants()
}

fn owns(app: &TestApp, t: &Tenant) -> bool {
    owned(app).contains(&t.org)
}

async fn active(app: &TestApp, admin: &Cred, t: &Tenant) -> Vec<Value> {
    app.get_ok(&format!("{}/active", t.base), admin)
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

struct Publisher {
    client: rumqttc::AsyncClient,
    clock: Clock,
}

impl Publisher {
    async fn new(port: u16, clock: &Clock) -> Publisher {
        let mut opts = rumqttc::MqttOptions::new("replicas-publisher", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 256);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        Publisher {
            client,
            clock: clock.clone(),
        }
    }

    async fn publish(&self, t: &Tenant, gateway: &str, device: &str, tag: &str, v: f64) {
        let msg = uplink(1, self.clock.now_ms(), tag, v);
        let topic = weir_crds::message::topic("weir", &t.org, gateway, device, "fast");
        self.client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&msg).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Publish until `owner` has processed one more message (the first
    /// publishes after a subscription may precede its SUBACK).
    async fn deliver(
        &self,
        owner: &TestApp,
        t: &Tenant,
        gateway: &str,
        device: &str,
        tag: &str,
        v: f64,
    ) {
        let alerts = &owner.running.state.alerts;
        let before = alerts.processed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.publish(t, gateway, device, tag, v).await;
            for _ in 0..25 {
                if alerts.processed() > before {
                    alerts.sync().await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a published reading never reached the tenant's owner"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_split_tenants_and_notify_once() {
    let mosq = Mosquitto::start().await;
    let mport = mosq.port;
    let (hook, url) = webhook_receiver(0).await;
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let a = TestApp::start_with(Backend::Postgres, tweak(&clock, mport, "a")).await;
    let admin = a.admin().await;
    let t1 = tenant(&a, &admin, &url).await;
    let t2 = tenant(&a, &admin, &url).await;
    // An absence rule on one of t1's series: it misfires if any of the
    // series' readings go to a replica that does not evaluate it.
    a.post_ok(
        &format!("{}/rules", t1.base),
        &admin,
        json!({"name": "Flow missing", "kind": "absence", "tag": "flow", "gateway": "ps-1",
               "device": "meter-1", "absent_secs": 30}),
    )
    .await;
    until("one replica alone owns both tenants", || async {
        owns(&a, &t1) && owns(&a, &t2)
    })
    .await;

    // A second replica joins: the tenants are divided, one each.
    let b = a.replica(tweak(&clock, mport, "b")).await;
    until("the two replicas split the tenants", || async {
        owned(&a).len() == 1 && owned(&b).len() == 1 && owned(&a).union(&owned(&b)).count() == 2
    })
    .await;
    for app in [&a, &b] {
        let m = metrics(app).await;
        assert_eq!(gauge(&m, "weir_api_alerts_replicas"), Some(2), "{m}");
        assert_eq!(gauge(&m, "weir_api_alerts_owned_tenants"), Some(1), "{m}");
    }
    let (own1, other1) = if owns(&a, &t1) { (&a, &b) } else { (&b, &a) };
    let (own2, other2) = if owns(&a, &t2) { (&a, &b) } else { (&b, &a) };
    assert!(!std::ptr::eq(own1, own2), "each replica owns one tenant");

    // t1's flow series reports every 10 s for a minute: only its owner
    // reads it, so the 30 s absence rule never goes pending.
    let p = Publisher::new(mport, &clock).await;
    let seen_by_other = other1.running.state.alerts.processed();
    for _ in 0..6 {
        clock.advance(Duration::from_secs(10));
        p.deliver(own1, &t1, "ps-1", "meter-1", "flow", 12.5).await;
        own1.running.state.alerts.wait_passes(2).await;
    }
    assert_eq!(
        other1.running.state.alerts.processed(),
        seen_by_other,
        "the replica that does not own t1 reads none of its readings"
    );
    assert!(
        active(&a, &admin, &t1).await.is_empty(),
        "no absence alert while the series reports"
    );

    // Both tenants breach their threshold; each alert is notified once.
    p.deliver(own1, &t1, "ps-1", "tank-1", "level", 7.0).await;
    p.deliver(own2, &t2, "ps-9", "tank-1", "level", 7.0).await;
    for t in [&t1, &t2] {
        until("the level alert is pending", || async {
            active(&b, &admin, t)
                .await
                .first()
                .is_some_and(|x| x["state"] == "pending")
        })
        .await;
    }
    clock.advance(Duration::from_secs(5));
    until("both level alerts notified", || async { hook.count() == 2 }).await;
    for app in [&a, &b] {
        app.running.state.alerts.wait_passes(5).await;
    }
    let mut got = hook.notices();
    got.sort();
    let mut want = vec![
        ("firing".to_string(), format!("Level high {}", t1.org)),
        ("firing".to_string(), format!("Level high {}", t2.org)),
    ];
    want.sort();
    assert_eq!(got, want, "one notice per alert, not one per replica");

    // A rule made through the replica that does not own t2, and a fleet
    // event seen there, reach t2's owner: one gateway-offline notice.
    other2
        .post_ok(
            &format!("{}/rules", t2.base),
            &admin,
            json!({"name": "Gateway offline", "kind": "gateway_offline", "for_secs": 0}),
        )
        .await;
    until("t2's owner loaded the new rule", || async {
        gauge(&metrics(own2).await, "weir_api_alerts_rules") == Some(2)
    })
    .await;
    other2
        .running
        .state
        .alerts
        .fleet_event(FleetEvent::GatewayOffline {
            project: t2.project,
            gateway: "ps-9".into(),
        })
        .await;
    until("the gateway-offline notice", || async { hook.count() == 3 }).await;
    assert_eq!(
        hook.notices()[2],
        ("firing".to_string(), "Gateway offline".to_string())
    );
    until(
        "both replicas inhibit the gateway's device alerts",
        || async {
            own2.running
                .state
                .alerts
                .gateway_offline(t2.project, "ps-9")
                && other2
                    .running
                    .state
                    .alerts
                    .gateway_offline(t2.project, "ps-9")
        },
    )
    .await;
    let st: Vec<String> = active(other2, &admin, &t2)
        .await
        .iter()
        .filter(|x| x["labels"]["alertname"] == format!("Level high {}", t2.org))
        .map(|x| x["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(st, vec!["inhibited".to_string()]);

    // t1's owner goes away; the other replica takes t1 over with its firing
    // alert and does not notify it again.
    let t1_on_a = std::ptr::eq(own1, &a);
    let (gone, survivor) = if t1_on_a { (a, b) } else { (b, a) };
    gone.running.state.alerts.shutdown();
    gone.running.task.abort();
    gone.running.state.db.clone().close().await.ok();
    until("the remaining replica takes both tenants", || async {
        owns(&survivor, &t1) && owns(&survivor, &t2)
    })
    .await;
    assert_eq!(
        gauge(&metrics(&survivor).await, "weir_api_alerts_replicas"),
        Some(1)
    );
    let level1 = format!("Level high {}", t1.org);
    let states: Vec<String> = active(&survivor, &admin, &t1)
        .await
        .iter()
        .filter(|x| x["labels"]["alertname"] == level1)
        .map(|x| x["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, vec!["firing".to_string()], "the alert kept firing");
    p.deliver(&survivor, &t1, "ps-1", "tank-1", "level", 8.0)
        .await;
    survivor.running.state.alerts.wait_passes(5).await;
    assert_eq!(hook.count(), 3, "no second notice after the take-over");

    // A minute on (the flow series still reporting) it clears: one
    // resolved notice.
    for _ in 0..6 {
        clock.advance(Duration::from_secs(10));
        p.deliver(&survivor, &t1, "ps-1", "meter-1", "flow", 12.5)
            .await;
        survivor.running.state.alerts.wait_passes(2).await;
    }
    p.deliver(&survivor, &t1, "ps-1", "tank-1", "level", 1.0)
        .await;
    until("the resolved notice", || async { hook.count() == 4 }).await;
    assert_eq!(hook.notices()[3], ("resolved".to_string(), level1.clone()));

    // The flow series falls silent: the absence rule fires, once.
    clock.advance(Duration::from_secs(30));
    until("the absence notice", || async { hook.count() == 5 }).await;
    assert_eq!(
        hook.notices()[4],
        ("firing".to_string(), "Flow missing".to_string())
    );
    survivor.running.state.alerts.wait_passes(10).await;
    assert_eq!(hook.count(), 5, "nothing else was sent");

    survivor.running.state.alerts.shutdown();
    survivor.stop().await;
    gone.db.drop_db().await;
}

/// A tenant given away while its notice is still being sent moves only
/// once that delivery is logged, so its new owner does not send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_moves_only_after_its_notices_are_logged() {
    let mosq = Mosquitto::start().await;
    let mport = mosq.port;
    let (hook, url) = webhook_receiver(0).await;
    hook.slow_first.store(2, Ordering::SeqCst);
    let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
    let a = TestApp::start_with(Backend::Postgres, tweak(&clock, mport, "a")).await;
    let admin = a.admin().await;
    let t1 = tenant(&a, &admin, &url).await;
    let t2 = tenant(&a, &admin, &url).await;
    until("one replica alone owns both tenants", || async {
        owns(&a, &t1) && owns(&a, &t2)
    })
    .await;
    // Both alerts fire; their notices hang at the receiver for 1.5 s.
    let alerts = &a.running.state.alerts;
    for t in [&t1, &t2] {
        alerts
            .ingest(
                &t.org,
                "ps-1",
                "tank-1",
                uplink(1, clock.now_ms(), "level", 7.0),
            )
            .await;
    }
    alerts.sync().await;
    clock.advance(Duration::from_secs(5));
    until("both notices on their way", || async { hook.count() == 2 }).await;

    // A second replica joins meanwhile and gets one tenant, later.
    let b = a.replica(tweak(&clock, mport, "b")).await;
    until("the two replicas split the tenants", || async {
        owned(&a).len() == 1 && owned(&b).len() == 1
    })
    .await;
    for app in [&a, &b] {
        app.running.state.alerts.wait_passes(10).await;
    }
    assert_eq!(
        hook.count(),
        2,
        "the tenant that moved was not notified again by its new owner"
    );
    b.running.state.alerts.shutdown();
    b.stop().await;
    a.running.state.alerts.shutdown();
    a.stop().await;
}

/// The ownership passes on their own, with three replicas and seven
/// tenants: fair shares, no tenant owned twice, none left over; a tenant
/// with notices in flight is held back; a replica that goes away is
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_divide_tenants_fairly() {
    use weir_api::alerts::replicas::Coordinator;
    let db = common::TestDb::new(Backend::Postgres).await;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let tenants: BTreeSet<String> = (0..7).map(|i| format!("plant-{i}")).collect();
    let mut cs: Vec<Coordinator> = (0..3).map(|_| Coordinator::new(&conn)).collect();
    let idle = |_: &str| false;

    // Passes until nothing moves: the first replica grabs everything, the
    // others join, extras are given away and picked up.
    let mut owned: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 3];
    for _ in 0..4 {
        for (c, o) in cs.iter_mut().zip(owned.iter_mut()) {
            *o = c.assign(&tenants, idle).await;
        }
    }
    let sizes: Vec<usize> = owned.iter().map(|o| o.len()).collect();
    assert!(sizes.iter().all(|n| *n <= 3), "fair share is 3: {sizes:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        7,
        "every tenant owned once: {owned:?}"
    );
    let all: BTreeSet<&String> = owned.iter().flatten().collect();
    assert_eq!(all.len(), 7);
    assert!(cs.iter().all(|c| c.replicas() == 3));

    // The third replica goes away (its connection closes): the other two
    // take its tenants, 4 and 3, once PostgreSQL has seen it go.
    drop(cs.pop());
    owned.pop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for (c, o) in cs.iter_mut().zip(owned.iter_mut()) {
            *o = c.assign(&tenants, idle).await;
        }
        let mut sizes: Vec<usize> = owned.iter().map(|o| o.len()).collect();
        sizes.sort();
        if sizes == vec![3, 4] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two replicas should own all seven tenants: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A new replica joins while the tenants of the one with four are busy:
    // one is given away (no longer evaluated there) but stays locked until
    // its notices are done.
    let big = if owned[0].len() == 4 { 0 } else { 1 };
    let busy_of = owned[big].clone();
    cs.push(Coordinator::new(&conn));
    assert!(
        cs[2].assign(&tenants, idle).await.is_empty(),
        "every tenant is still locked"
    );
    let kept = cs[big].assign(&tenants, |t| busy_of.contains(t)).await;
    assert_eq!(kept.len(), 3, "fair share of three replicas: {kept:?}");
    let given: Vec<&String> = busy_of.difference(&kept).collect();
    assert_eq!(given.len(), 1);
    let newcomer = cs[2].assign(&tenants, idle).await;
    assert!(
        newcomer.is_empty(),
        "the given-away tenant stays locked while busy: {newcomer:?}"
    );
    let _ = cs[big].assign(&tenants, idle).await;
    let newcomer = cs[2].assign(&tenants, idle).await;
    assert_eq!(
        newcomer.iter().collect::<Vec<_>>(),
        given,
        "released once idle, taken by the newcomer"
    );
    drop(cs);
    conn.close().await.ok();
    db.drop_db().await;
}
