use super::*;
use chrono::{TimeZone, Utc};
use http::{Request, Response};
use kube::client::Body;

fn row(status: Option<Value>) -> gateway::Model {
    let t = Utc.with_ymd_and_hms(2026, 12, 7, 1, 2, 3).unwrap();
    gateway::Model {
        id: Uuid::new_v4(),
        org_id: Uuid::new_v4(),
        project_id: Uuid::new_v4(),
        slug: "pump-1".into(),
        cluster_id: None,
        config_version: 2,
        bundle_version: 3,
        bundle_config_version: 2,
        bundle: None,
        bundle_expires: None,
        applied_version: Some(3),
        last_error: None,
        last_heartbeat: Some(t + chrono::Duration::milliseconds(456)),
        heartbeat_interval_s: 15,
        online: Some(true),
        status: status.map(|v| v.to_string()),
        readings_rate: None,
        created_at: t,
        updated_at: t,
    }
}

fn report() -> Value {
    json!({
        "appliedVersion": 3,
        "refused": {"version": 4, "reason": "signature does not verify", "at": "2026-12-07T01:00:00.5Z"},
        "devices": [
            {"name": "filter-bed-1", "state": "ok", "readings": 120},
            {"name": "clear-well", "state": "down", "lastError": "é".repeat(300), "readings": 0},
        ],
        "queueDepth": 17, "queueBytes": 2048, "droppedReadings": 2, "readingsOut": 99,
        "uptimeS": 60, "agentVersion": "0.1.0", "heartbeatIntervalS": 15,
    })
}

#[test]
fn the_patch_holds_the_heartbeat_fields_only() {
    let p = status_patch(&row(Some(report())));
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    for k in &keys {
        assert!(
            EdgeGatewayStatus::HEARTBEAT_FIELDS.contains(k),
            "{k} is the operator's"
        );
    }
    assert_eq!(keys.len(), EdgeGatewayStatus::HEARTBEAT_FIELDS.len(), "{p}");
    assert_eq!(p["online"], true);
    assert_eq!(p["appliedVersion"], 3);
    // Whole seconds, as kubectl's age column reads them.
    assert_eq!(p["lastHeartbeat"], "2026-12-07T01:02:03Z");
    assert_eq!(
        p["refused"],
        json!({"version": 4, "reason": "signature does not verify", "at": "2026-12-07T01:00:00Z"})
    );
    assert_eq!(
        p["devices"][0],
        json!({"name": "filter-bed-1", "state": "ok"})
    );
    assert_eq!(p["devices"][1]["state"], "down");
    // Cut to the CRD's maxLength, in characters.
    assert_eq!(
        p["devices"][1]["lastError"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        EdgeGatewayStatus::DEVICE_ERROR_LENGTH
    );
    assert_eq!(p["queueDepth"], 17);
    assert_eq!(p["droppedReadings"], 2);
    // What the CRD's schema reads back.
    let s: EdgeGatewayStatus = serde_json::from_value(p).unwrap();
    assert!(s.phase.is_none() && s.conditions.is_empty());
}

#[test]
fn before_a_report_and_offline_the_patch_says_so() {
    let mut g = row(None);
    g.online = Some(false);
    g.applied_version = None;
    let p = status_patch(&g);
    assert_eq!(
        p,
        json!({"online": false, "lastHeartbeat": "2026-12-07T01:02:03Z"})
    );
    // The refusal goes once the agent stops reporting it.
    let mut r = report();
    r.as_object_mut().unwrap().remove("refused");
    let p = status_patch(&row(Some(r)));
    assert!(p.get("refused").is_none());
}

#[test]
fn only_news_is_written_at_once_the_heartbeat_time_at_most_once_a_minute() {
    let t0 = Instant::now();
    let hb = Duration::from_secs(15);
    let first = status_patch(&row(Some(report())));
    assert!(decide(None, &first, t0, hb), "the first status is written");
    let last = (first.clone(), t0);
    assert!(!decide(Some(&last), &first, t0 + hb, hb), "nothing new");

    // A later heartbeat with a fuller queue: waits for the refresh.
    let mut later = first.clone();
    later["lastHeartbeat"] = json!("2026-12-07T01:02:18Z");
    later["queueDepth"] = json!(30);
    later["droppedReadings"] = json!(5);
    assert!(!decide(Some(&last), &later, t0 + hb, hb));
    assert!(!decide(
        Some(&last),
        &later,
        t0 + Duration::from_secs(59),
        hb
    ));
    assert!(decide(Some(&last), &later, t0 + REFRESH_FLOOR, hb));
    // A heartbeat interval longer than the floor is the refresh period.
    let slow = Duration::from_secs(120);
    assert!(!decide(
        Some(&last),
        &later,
        t0 + Duration::from_secs(90),
        slow
    ));
    assert!(decide(Some(&last), &later, t0 + slow, slow));

    // Anything else is news, written on the next heartbeat.
    for (field, value) in [
        ("online", json!(false)),
        ("appliedVersion", json!(4)),
        ("refused", Value::Null),
        (
            "devices",
            json!([{"name": "filter-bed-1", "state": "degraded", "lastError": "timeout"}]),
        ),
    ] {
        let mut news = later.clone();
        if value.is_null() {
            news.as_object_mut().unwrap().remove(field);
        } else {
            news[field] = value;
        }
        assert!(
            decide(Some(&last), &news, t0 + Duration::from_millis(10), hb),
            "{field}"
        );
    }
}

/// The writer's requests, answered by a test "API server".
async fn next_request(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
    status: u16,
) -> (http::Method, String, Option<String>, Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("a request");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let ct = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value =
        serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
    let reply = if status == 200 {
        json!({"apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway",
               "metadata": {"name": "pump-1", "namespace": "weir-riverside"},
               "spec": {}, "status": body["status"]})
    } else {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "boom", "reason": "InternalError", "code": status})
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    (method, uri, ct, body)
}

#[tokio::test]
async fn the_writer_applies_the_status_subresource_once_per_news() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let writer = Arc::new(Writer::default());
    let g = row(Some(report()));
    let target = Target {
        namespace: "weir-riverside".into(),
        name: "pump-1".into(),
    };
    let hb = Duration::from_secs(15);
    writer.offer(&client, g.id, target.clone(), status_patch(&g), hb);
    let (method, uri, ct, body) = next_request(&mut handle, 200).await;
    assert_eq!(method, http::Method::PATCH);
    assert!(
        uri.starts_with(
            "/apis/weir.dev/v1alpha1/namespaces/weir-riverside/edgegateways/pump-1/status?"
        ),
        "{uri}"
    );
    assert!(
        uri.contains("fieldManager=weir-api") && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(ct.as_deref(), Some("application/apply-patch+yaml"));
    assert_eq!(body["kind"], "EdgeGateway");
    assert_eq!(body["metadata"], json!({"name": "pump-1"}));
    assert_eq!(body["status"], status_patch(&g));
    assert!(body.get("spec").is_none(), "never applies the spec");

    // The same status, and one with only a newer heartbeat: no request.
    let mut g2 = g.clone();
    g2.last_heartbeat = g.last_heartbeat.map(|t| t + chrono::Duration::seconds(15));
    // Let the writer task record the answer first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!writer.wants(g.id, &status_patch(&g), hb));
    assert!(!writer.wants(g.id, &status_patch(&g2), hb));
    writer.offer(&client, g.id, target.clone(), status_patch(&g2), hb);

    // Offline is news: written (after the one-second gap).
    let mut off = g2.clone();
    off.online = Some(false);
    writer.offer(&client, g.id, target.clone(), status_patch(&off), hb);
    let (_, uri, _, body) = next_request(&mut handle, 200).await;
    assert!(uri.contains("/edgegateways/pump-1/status?"), "{uri}");
    assert_eq!(body["status"]["online"], false);
    assert_eq!(body["status"]["lastHeartbeat"], "2026-12-07T01:02:18Z");

    // A refused write backs off: no new write is wanted right after it.
    let mut back = off.clone();
    back.online = Some(true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    writer.offer(&client, g.id, target, status_patch(&back), hb);
    let (_, _, _, body) = next_request(&mut handle, 500).await;
    assert_eq!(body["status"]["online"], true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut other = back.clone();
    other.applied_version = Some(9);
    // Queued behind the retry, not written at once.
    assert!(writer.wants(g.id, &status_patch(&other), hb));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), handle.next_request())
            .await
            .is_err(),
        "no write during the backoff"
    );
}
