//! What the alert tests share: their patience when polling, readings as an
//! agent sends them (and the gateways they come from: a reading of a gateway
//! the api does not know reaches no rule), and a webhook receiver that
//! records (and can fail) requests. Brokers and ports come from weir-testkit.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use weir_crds::message::{Frame, TagValue, UplinkMessage};

/// One frame with one numeric tag, as an agent's uplink carries it.
pub fn uplink(seq: u64, timestamp_ms: i64, tag: &str, value: f64) -> UplinkMessage {
    UplinkMessage {
        frames: vec![Frame {
            seq,
            timestamp: timestamp_ms,
            values: [(tag.to_string(), TagValue::Float(value))]
                .into_iter()
                .collect(),
            errors: Default::default(),
        }],
    }
}

/// Create gateways `names` (empty spec) in `org`/`project`: readings reach
/// the rules of their gateway's project only.
pub async fn gateways(
    app: &crate::common::TestApp,
    cred: &crate::common::Cred,
    org: &str,
    project: &str,
    names: &[&str],
) {
    for g in names {
        app.post_ok(
            &format!("/api/v1/orgs/{org}/projects/{project}/gateways"),
            cred,
            serde_json::json!({"name": g, "spec": {}}),
        )
        .await;
    }
}

/// Poll `f` until it holds; fail naming `what` after 30 s (the alert
/// tests' patience: evaluation passes and deliveries take a few seconds).
pub async fn until<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    weir_testkit::wait_until(Duration::from_secs(30), what, f).await
}

/// Wait until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_port(port: u16, what: &str) {
    until(what, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

#[derive(Default)]
pub struct Hook {
    pub fail_first: AtomicUsize,
    /// This many requests are answered only after 1.5 s.
    pub slow_first: AtomicUsize,
    pub requests: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Hook {
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    pub fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }
}

async fn hook_handler(State(h): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-weir-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    h.requests.lock().unwrap().push((sig, body.to_vec()));
    if h.slow_first.load(Ordering::SeqCst) > 0 {
        h.slow_first.fetch_sub(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if h.fail_first.load(Ordering::SeqCst) > 0 {
        h.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

pub async fn webhook_receiver(fail_first: usize) -> (Arc<Hook>, String) {
    let hook = Arc::new(Hook::default());
    hook.fail_first.store(fail_first, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook_handler))
        .with_state(hook.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (hook, format!("http://{addr}/hook"))
}

pub fn verify(secret: &str, sig: &str, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Hook {
    /// Every request carries a valid HMAC-SHA256 of its body under `secret`.
    pub fn all_signed_with(&self, secret: &str) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .all(|(sig, body)| verify(secret, sig, body))
    }

    /// (status, alertname, gateway-or-cluster label) of each alert in each notice.
    pub fn notices_about(&self) -> Vec<(String, String, String)> {
        let mut out = vec![];
        for b in self.bodies() {
            for a in b["alerts"].as_array().cloned().unwrap_or_default() {
                let l = &a["labels"];
                let who = l["gateway"]
                    .as_str()
                    .or(l["cluster"].as_str())
                    .unwrap_or("");
                out.push((
                    a["status"].as_str().unwrap_or("").to_string(),
                    l["alertname"].as_str().unwrap_or("").to_string(),
                    who.to_string(),
                ));
            }
        }
        out
    }

    pub fn has(&self, status: &str, alertname: &str) -> bool {
        self.notices()
            .iter()
            .any(|(s, n)| s == status && n == alertname)
    }

    /// (status, alertname) of each alert in each notice, in arrival order.
    pub fn notices(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for b in self.bodies() {
            for a in b["alerts"].as_array().cloned().unwrap_or_default() {
                out.push((
                    a["status"].as_str().unwrap_or("").to_string(),
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        out
    }
}
