//! A client of Mosquitto's dynamic-security plugin: it logs in with the
//! broker's dynamic-security admin login, subscribes to the plugin's
//! response topic, publishes `{"commands":[...]}` to its control topic and
//! waits for the answer carrying its correlation data. Every step has a
//! deadline: a broker without the plugin never answers, and that must end
//! in a clear refusal, never in a fallback to the admin login.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Transport};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::fleet::mqtt_probe::{ensure_crypto_provider, parse_broker_url};

pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// How long connecting, and then each exchange, may take.
pub const TIMEOUT: Duration = Duration::from_secs(4);

/// The admin login of a broker with the plugin.
#[derive(Clone)]
pub struct AdminLogin {
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{} as {}", self.url, self.username)
    }
}

/// One command's answer.
#[derive(Clone, Debug, Deserialize)]
pub struct Answer {
    pub command: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default, rename = "correlationData")]
    pub correlation: Option<String>,
}

impl Answer {
    /// Ok unless the plugin answered an error other than `tolerated`.
    pub fn ok_unless(&self, tolerated: &[&str]) -> Result<(), String> {
        match &self.error {
            Some(e) if !tolerated.contains(&e.as_str()) => Err(format!("{}: {e}", self.command)),
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct Responses {
    responses: Vec<Answer>,
}

/// An open admin connection; see the module doc.
pub struct Session {
    admin: AdminLogin,
    client: AsyncClient,
    events: EventLoop,
    id: String,
    seq: u32,
}

fn unavailable(admin: &AdminLogin, what: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!(
        "the broker's dynamic-security plugin ({admin:?}) cannot be used: {what}"
    ))
}

fn no_plugin(admin: &AdminLogin) -> ApiError {
    ApiError::Unavailable(format!(
        "the broker at {} did not answer on {CONTROL_TOPIC} within {} s: it has no \
         dynamic-security plugin, or '{}' is not its dynamic-security admin. Every gateway \
         gets its own broker login from that plugin (Mosquitto 2.0 or newer): add \
         `plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so` (or where your \
         distribution puts it) and `plugin_opt_config_file /var/lib/mosquitto/dynamic-security.json` \
         to mosquitto.conf, create that file with `mosquitto_ctrl dynsec init \
         /var/lib/mosquitto/dynamic-security.json ADMIN_USER`, restart Mosquitto, and store \
         ADMIN_USER and its password as the cluster's username and password",
        admin.url,
        TIMEOUT.as_secs(),
        admin.username
    ))
}

impl Session {
    /// Connect, log in and subscribe to the response topic.
    pub async fn open(admin: &AdminLogin) -> Result<Session, ApiError> {
        let (host, port, tls) = parse_broker_url(&admin.url).map_err(|e| unavailable(admin, e))?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let mut opts = MqttOptions::new(format!("weir-dynsec-{id}"), host, port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(true);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_credentials(&admin.username, &admin.password);
        if tls {
            ensure_crypto_provider();
            opts.set_transport(Transport::tls_with_default_config());
        }
        let (client, events) = AsyncClient::new(opts, 16);
        let mut s = Session {
            admin: admin.clone(),
            client,
            events,
            id,
            seq: 0,
        };
        let deadline = Instant::now() + TIMEOUT;
        let subscribed = tokio::time::timeout_at(deadline, s.subscribe()).await;
        match subscribed {
            Ok(r) => r.map(|_| s),
            Err(_) => Err(unavailable(
                admin,
                format!("no connection within {} s", TIMEOUT.as_secs()),
            )),
        }
    }

    async fn subscribe(&mut self) -> Result<(), ApiError> {
        loop {
            let ev = self
                .events
                .poll()
                .await
                .map_err(|e| unavailable(&self.admin, format!("connection failed: {e}")))?;
            match ev {
                Event::Incoming(Packet::ConnAck(ack)) => {
                    if ack.code != rumqttc::ConnectReturnCode::Success {
                        return Err(unavailable(
                            &self.admin,
                            format!("the broker refused the admin login: {:?}", ack.code),
                        ));
                    }
                    self.client
                        .try_subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce)
                        .map_err(|e| unavailable(&self.admin, e))?;
                }
                Event::Incoming(Packet::SubAck(ack)) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        return Err(unavailable(
                            &self.admin,
                            format!(
                                "'{}' may not read {RESPONSE_TOPIC}: it is not the broker's \
                                 dynamic-security admin",
                                self.admin.username
                            ),
                        ));
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// Send `commands` and return their answers, in order.
    pub async fn call(&mut self, mut commands: Vec<Value>) -> Result<Vec<Answer>, ApiError> {
        self.seq += 1;
        let tag = format!("weir-{}-{}", self.id, self.seq);
        for (i, c) in commands.iter_mut().enumerate() {
            c["correlationData"] = json!(format!("{tag}-{i}"));
        }
        let first = format!("{tag}-0");
        let body = json!({ "commands": commands }).to_string();
        self.client
            .try_publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, body.into_bytes())
            .map_err(|e| unavailable(&self.admin, e))?;
        let deadline = Instant::now() + TIMEOUT;
        let admin = self.admin.clone();
        let wait = async {
            loop {
                let ev = self
                    .events
                    .poll()
                    .await
                    .map_err(|e| unavailable(&admin, format!("connection lost: {e}")))?;
                let Event::Incoming(Packet::Publish(p)) = ev else {
                    continue;
                };
                if p.topic != RESPONSE_TOPIC {
                    continue;
                }
                // Other admin sessions (other api replicas) get their answers here too.
                let Ok(r) = serde_json::from_slice::<Responses>(&p.payload) else {
                    continue;
                };
                if r.responses
                    .first()
                    .is_some_and(|a| a.correlation.as_deref() == Some(first.as_str()))
                {
                    return Ok(r.responses);
                }
            }
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(r) => r,
            Err(_) => Err(no_plugin(&self.admin)),
        }
    }

    /// Disconnect (best effort: the answers are in already).
    pub async fn close(mut self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while self.events.poll().await.is_ok() {}
        })
        .await;
    }
}
