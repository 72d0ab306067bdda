//! A bystander on the broker that sees what the agents and the historian
//! say about delivery: each gateway's latest [`UplinkState`], and the
//! replay requests and answers on `cmd/replay` and `cmd/replay/resp`. It
//! reconnects (and subscribes again) after the broker is killed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use weir_crds::message::{ReplayRequest, ReplayResponse, UplinkState};

/// What the watcher has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Latest uplink state per gateway.
    pub states: BTreeMap<String, UplinkState>,
    /// Replay requests per gateway, in arrival order.
    pub requests: BTreeMap<String, Vec<ReplayRequest>>,
    /// Replay answers per gateway, in arrival order.
    pub responses: BTreeMap<String, Vec<ReplayResponse>>,
}

pub struct UplinkWatch {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl UplinkWatch {
    /// Watch `{prefix}/{tenant}/+/cmd/...` on the broker at 127.0.0.1:`port`.
    pub fn start(port: u16, prefix: &str, tenant: &str) -> UplinkWatch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let id = format!("e2e-uplink-watch-{:08x}", rand::random::<u32>());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 100);
        let filters = [
            format!("{prefix}/{tenant}/+/cmd/uplink/state"),
            format!("{prefix}/{tenant}/+/cmd/replay"),
            format!("{prefix}/{tenant}/+/cmd/replay/resp"),
        ];
        let store = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    // A clean session: every (re)connect subscribes afresh.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = client.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        record(&store, &p.topic, &p.payload);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        UplinkWatch { seen, task }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("watch lock").clone()
    }

    /// Latest uplink state of `gateway`.
    pub fn state(&self, gateway: &str) -> Option<UplinkState> {
        self.seen
            .lock()
            .expect("watch lock")
            .states
            .get(gateway)
            .cloned()
    }
}

/// Frames the agent issued, distinct frames and rows in `readings`.
#[derive(Clone, Copy, Debug)]
pub struct Committed {
    pub issued: i64,
    pub frames: i64,
    pub rows: i64,
}

impl UplinkWatch {
    /// Wait until every frame `gateway`'s agent issued (by an uplink state
    /// stamped after `after_ms`, epoch milliseconds: send it after the
    /// traffic stopped) is in `readings` at `db_url`, and check each holds
    /// `tags` rows: nothing lost, nothing twice. Errors name what is off.
    pub async fn all_issued_committed(
        &self,
        db_url: &str,
        tenant: &str,
        gateway: &str,
        after_ms: i64,
        tags: i64,
        timeout: Duration,
    ) -> anyhow::Result<Committed> {
        let deadline = tokio::time::Instant::now() + timeout;
        let db = weir_testkit::postgres::connect(db_url).await;
        let c = loop {
            let state = self.state(gateway).filter(|s| s.timestamp > after_ms);
            let r = db
                .query_one(
                    "SELECT count(*), count(DISTINCT seq) FROM readings WHERE tenant = $1 AND gateway = $2",
                    &[&tenant, &gateway],
                )
                .await?;
            let (rows, frames): (i64, i64) = (r.get(0), r.get(1));
            if let Some(s) = &state {
                let issued = (s.next_seq - s.origin_seq) as i64;
                if frames == issued {
                    break Committed {
                        issued,
                        frames,
                        rows,
                    };
                }
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "not every frame reached PostgreSQL: {frames} distinct frames, {rows} rows; uplink state {state:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if c.rows != c.frames * tags {
            anyhow::bail!(
                "{} rows for {} frames of {tags} readings: some twice or missing",
                c.rows,
                c.frames
            );
        }
        Ok(c)
    }
}

impl Drop for UplinkWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(store: &Mutex<Seen>, topic: &str, payload: &[u8]) {
    let parts: Vec<&str> = topic.split('/').collect();
    // {prefix}/{tenant}/{gateway}/cmd/...
    let (Some(gateway), Some(rest)) = (parts.get(2), parts.get(4..)) else {
        return;
    };
    let gateway = gateway.to_string();
    let mut seen = store.lock().expect("watch lock");
    match rest {
        ["uplink", "state"] => {
            if let Ok(s) = serde_json::from_slice::<UplinkState>(payload) {
                seen.states.insert(gateway, s);
            }
        }
        ["replay"] => {
            if let Ok(r) = serde_json::from_slice::<ReplayRequest>(payload) {
                seen.requests.entry(gateway).or_default().push(r);
            }
        }
        ["replay", "resp"] => {
            if let Ok(r) = serde_json::from_slice::<ReplayResponse>(payload) {
                seen.responses.entry(gateway).or_default().push(r);
            }
        }
        _ => {}
    }
}
