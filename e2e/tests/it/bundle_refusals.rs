//! Scenario 2: a config bundle signed by the wrong key, and an old bundle
//! replayed, are refused by a real agent and reported to the api (the
//! gateway's rollout shows why); the agent keeps running its last good
//! config and keeps publishing.
//!
//! The agent talks to the api through a small proxy of the test's own that
//! passes everything through, records the bundles the api serves, and, when
//! told, answers a config poll with a bundle of its choosing: the position an
//! attacker on the network (or a compromised mirror) would be in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::json;
use tokio::sync::Notify;
use weir_crds::bundle::{generate_key, sign, BundlePayload, SignedBundle};
use weir_crds::gateway::GatewayConfig;
use weir_crds::message::UplinkMessage;
use weir_e2e::api::{start_api, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{
    gateway_with_token, rollout, seed_project, simulated_spec, start_agent, wait_applied,
};
use weir_e2e::{broker, ApiClient};

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// The next config poll gets this instead of the api's answer.
    forged: Mutex<Option<SignedBundle>>,
    armed: Notify,
    /// Bundles the api served, in order.
    served: Mutex<Vec<SignedBundle>>,
}

impl Proxy {
    fn arm(&self, b: SignedBundle) {
        *self.forged.lock().unwrap() = Some(b);
        // Answer the poll that is waiting right now, if there is one.
        self.armed.notify_waiters();
    }

    fn take_forged(&self) -> Option<Response> {
        let b = self.forged.lock().unwrap().take()?;
        let mut r = Response::new(Body::from(serde_json::to_vec(&b).unwrap()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"forged\""));
        Some(r)
    }
}

async fn pass(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let is_config = req.method() == Method::GET && req.uri().path().ends_with("/config");
    let armed = p.armed.notified();
    tokio::pin!(armed);
    armed.as_mut().enable();
    if is_config {
        if let Some(r) = p.take_forged() {
            return r;
        }
    }
    let url = format!(
        "{}{}",
        p.upstream,
        req.uri()
            .path_and_query()
            .map(|x| x.as_str())
            .unwrap_or("/")
    );
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    headers.remove(header::HOST);
    let body = to_bytes(req.into_body(), 16 << 20).await.unwrap();
    let send = p
        .http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send();
    let resp = if is_config {
        tokio::select! {
            r = send => r,
            _ = &mut armed => match p.take_forged() {
                Some(r) => return r,
                None => return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).unwrap(),
            },
        }
    } else {
        send.await
    };
    let Ok(resp) = resp else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap();
    };
    let status = resp.status();
    let mut out = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if k != header::TRANSFER_ENCODING && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    if is_config && status == StatusCode::OK {
        if let Ok(b) = serde_json::from_slice::<SignedBundle>(&bytes) {
            p.served.lock().unwrap().push(b);
        }
    }
    out.body(Body::from(bytes)).unwrap()
}

/// Wait until the gateway's rollout reports a refusal containing `needle`.
async fn wait_refusal(admin: &ApiClient, base: &str, needle: &str) -> Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = rollout(admin, base, "filtration").await?;
        if r["last_error"].as_str().is_some_and(|e| e.contains(needle)) {
            return Ok(r);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no refusal mentioning {needle:?} reported; rollout: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Readings keep arriving from the gateway (the agent still runs): three
/// frames read after this call began. The event loop is not polled between
/// calls, so publishes from before (still queued for us) do not count.
async fn readings_flow(events: &mut rumqttc::EventLoop) -> Result<()> {
    let since = chrono::Utc::now().timestamp_millis();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while n < 3 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "readings stopped: {n} frames read since {since} ms"
        );
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            if !p.topic.starts_with("weir/riverside/filtration/") {
                continue;
            }
            if let Ok(msg) = serde_json::from_slice::<UplinkMessage>(&p.payload) {
                n += msg.frames.iter().filter(|f| f.timestamp >= since).count();
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_replayed_bundles_are_refused_and_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker().await;
    let (_api, api_url) = start_api(dir.path(), None).await?;
    let admin = ApiClient::login(&api_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, "riverside", "plant", &broker.url()).await?;

    let proxy = Arc::new(Proxy {
        upstream: api_url.clone(),
        http: reqwest::Client::new(),
        forged: Mutex::new(None),
        armed: Notify::new(),
        served: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().fallback(pass).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (client, mut events) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("e2e-watch", "127.0.0.1", broker.port),
        100,
    );
    client
        .subscribe("weir/riverside/#", rumqttc::QoS::AtMostOnce)
        .await?;

    let spec = simulated_spec(&["turbidity"], 200);
    let token = gateway_with_token(&admin, &base, "filtration", spec.clone()).await?;
    let _agent = start_agent(dir.path(), "filtration", &proxy_url, Some(&token))?;
    assert_eq!(
        wait_applied(&admin, &base, "filtration", Duration::from_secs(60)).await?,
        1
    );

    // A real change: version 2 from the api.
    let mut v2 = spec.clone();
    v2["devices"][0]["groups"][0]["intervalMs"] = json!(100);
    admin
        .ok(
            reqwest::Method::PATCH,
            &format!("{base}/gateways/filtration"),
            Some(json!({"spec": v2, "comment": "faster"})),
        )
        .await?;
    assert_eq!(
        wait_applied(&admin, &base, "filtration", Duration::from_secs(10)).await?,
        2
    );
    readings_flow(&mut events).await?;
    let v1 = proxy
        .served
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the api served version 1 through the proxy");

    // Version 3, signed by a key the gateway does not trust.
    let config: GatewayConfig = serde_json::from_value(json!({"devices": spec["devices"]}))?;
    let forged = sign(
        &BundlePayload::new(
            "riverside",
            "filtration",
            3,
            config,
            chrono::Utc::now(),
            chrono::Duration::days(1),
        ),
        &generate_key(),
    );
    proxy.arm(forged);
    let r = wait_refusal(&admin, &base, "trusts key").await?;
    assert_eq!(
        r["applied_version"], 2,
        "the refused bundle is not applied: {r}"
    );
    assert_eq!(r["online"], true, "{r}");
    readings_flow(&mut events).await?;

    // Version 1 again, genuinely signed by the api: a replay.
    proxy.arm(v1);
    let r = wait_refusal(&admin, &base, "not newer").await?;
    assert_eq!(
        r["applied_version"], 2,
        "the replayed bundle is not applied: {r}"
    );
    assert_eq!(r["online"], true, "{r}");
    readings_flow(&mut events).await?;

    // A genuine change still goes through, and clears the refusal.
    let mut v3 = v2.clone();
    v3["devices"][0]["groups"][0]["intervalMs"] = json!(200);
    admin
        .ok(
            reqwest::Method::PATCH,
            &format!("{base}/gateways/filtration"),
            Some(json!({"spec": v3, "comment": "back to 200 ms"})),
        )
        .await?;
    assert_eq!(
        wait_applied(&admin, &base, "filtration", Duration::from_secs(10)).await?,
        3
    );
    let r = rollout(&admin, &base, "filtration").await?;
    assert!(
        r["last_error"].is_null(),
        "the refusal clears once the good bundle runs: {r}"
    );
    Ok(())
}
