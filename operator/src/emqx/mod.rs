//! A small typed client of EMQX 5's HTTP API (port 18083), authenticated
//! with the API key the operator generates (basic auth, key:secret).
//!
//! Only what the operator needs: node membership and state, node
//! evacuation, removing departed nodes, and runtime configuration.
//! [`EmqxCluster`] talks to the cluster through whichever node answers, so
//! one pod going down never stalls reconciliation (emqx-operator #1025).

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// Why an EMQX call failed.
#[derive(Debug, thiserror::Error)]
pub enum EmqxError {
    #[error("EMQX at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("EMQX refused {what} with HTTP {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("EMQX answered {what} with a body we could not read: {message}")]
    BadResponse { what: String, message: String },
    #[error("no EMQX node answered (tried {tried} nodes)")]
    NoNodeAnswered { tried: usize },
    /// The feature is not in this EMQX edition (e.g. rebalancing in 5.8 open source).
    #[error("EMQX does not offer {0} (HTTP 404)")]
    NotAvailable(String),
}

/// One node as `GET /api/v5/nodes` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub node: String,
    /// `running` or `stopped`.
    pub node_status: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub live_connections: u64,
    #[serde(default)]
    pub role: Option<String>,
}

impl Node {
    pub fn running(&self) -> bool {
        self.node_status == "running"
    }
}

/// Body of `POST /api/v5/load_rebalance/{node}/evacuation/start`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvacuationRequest {
    pub conn_evict_rate: u32,
    pub sess_evict_rate: u32,
    /// Seconds to wait for clients to reconnect and take their sessions over.
    pub wait_takeover: u32,
    /// Nodes the remaining sessions move to.
    pub migrate_to: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvacuationStats {
    #[serde(default)]
    pub initial_connected: u64,
    #[serde(default)]
    pub current_connected: u64,
    #[serde(default)]
    pub initial_sessions: u64,
    #[serde(default)]
    pub current_sessions: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evacuation {
    pub node: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub stats: EvacuationStats,
}

impl Evacuation {
    /// Every connection and session has left the node.
    pub fn drained(&self) -> bool {
        self.stats.current_connected == 0 && self.stats.current_sessions == 0
    }
}

/// `GET /api/v5/load_rebalance/global_status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalStatus {
    #[serde(default)]
    pub evacuations: Vec<Evacuation>,
    #[serde(default)]
    pub rebalances: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: serde_json::Value,
}

/// Credentials of the API key the operator bootstraps into every node.
#[derive(Clone)]
pub struct ApiKey {
    pub key: String,
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches logs.
        f.debug_struct("ApiKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Client of one EMQX node's API.
#[derive(Clone, Debug)]
pub struct EmqxClient {
    base: String,
    key: ApiKey,
    http: reqwest::Client,
}

impl EmqxClient {
    /// `base` is e.g. `http://riverside-mqtt-0.riverside-mqtt-headless.weir-riverside.svc:18083`.
    pub fn new(http: reqwest::Client, base: impl Into<String>, key: ApiKey) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            key,
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v5{path}", self.base)
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, EmqxError> {
        let resp = req
            .basic_auth(&self.key.key, Some(&self.key.secret))
            .send()
            .await
            .map_err(|source| EmqxError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(EmqxError::NotAvailable(what.to_string()));
        }
        let text = resp.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => match b.message {
                serde_json::Value::String(s) => format!("{}: {s}", b.code),
                other => format!("{}: {other}", b.code),
            },
            Err(_) => text,
        };
        Err(EmqxError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        resp: reqwest::Response,
    ) -> Result<T, EmqxError> {
        resp.json().await.map_err(|e| EmqxError::BadResponse {
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// `GET /api/v5/nodes`: every node the cluster knows, with its state.
    pub async fn nodes(&self) -> Result<Vec<Node>, EmqxError> {
        let resp = self
            .send("GET /nodes", self.http.get(self.url("/nodes")))
            .await?;
        self.json("GET /nodes", resp).await
    }

    /// Start evacuating `node`: it stops taking connections and hands its
    /// clients and sessions to `req.migrate_to`.
    pub async fn start_evacuation(
        &self,
        node: &str,
        req: &EvacuationRequest,
    ) -> Result<(), EmqxError> {
        let what = "node evacuation";
        let path = format!("/load_rebalance/{node}/evacuation/start");
        self.send(what, self.http.post(self.url(&path)).json(req))
            .await?;
        Ok(())
    }

    /// Stop evacuating `node` (a scale-down was cancelled): it takes
    /// connections again.
    pub async fn stop_evacuation(&self, node: &str) -> Result<(), EmqxError> {
        let path = format!("/load_rebalance/{node}/evacuation/stop");
        self.send("stop node evacuation", self.http.post(self.url(&path)))
            .await?;
        Ok(())
    }

    /// `GET /api/v5/load_rebalance/global_status`.
    pub async fn rebalance_status(&self) -> Result<GlobalStatus, EmqxError> {
        let what = "node evacuation";
        let resp = self
            .send(
                what,
                self.http.get(self.url("/load_rebalance/global_status")),
            )
            .await?;
        self.json(what, resp).await
    }

    /// `DELETE /api/v5/cluster/{node}/force_leave`: drop a node that is gone
    /// for good (after scale-down), so no stopped ghost stays in the cluster.
    pub async fn force_leave(&self, node: &str) -> Result<(), EmqxError> {
        let path = format!("/cluster/{node}/force_leave");
        self.send("cluster force_leave", self.http.delete(self.url(&path)))
            .await?;
        Ok(())
    }

    /// `PUT /api/v5/configs?mode=merge` with HOCON text: change settings at
    /// runtime on every node, merged into the running configuration.
    pub async fn merge_config(&self, hocon: &str) -> Result<(), EmqxError> {
        self.send(
            "config update",
            self.http
                .put(self.url("/configs?mode=merge"))
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body(hocon.to_string()),
        )
        .await?;
        Ok(())
    }

    /// `POST /api/v5/configs_reset/{root}?conf_path=REST`: put one setting back
    /// to EMQX's default. A key removed from `spec.config` needs this: the
    /// value merged at runtime lives on in `cluster.hocon`, and leaving it out
    /// of `emqx.conf` does not undo it.
    pub async fn reset_config(&self, path: &str) -> Result<(), EmqxError> {
        let (root, rest) = path.split_once('.').unwrap_or((path, ""));
        let mut url =
            reqwest::Url::parse(&self.url(&format!("/configs_reset/{root}"))).map_err(|e| {
                EmqxError::BadResponse {
                    what: "config reset".into(),
                    message: e.to_string(),
                }
            })?;
        if !rest.is_empty() {
            url.query_pairs_mut().append_pair("conf_path", rest);
        }
        self.send("config reset", self.http.post(url)).await?;
        Ok(())
    }
}

/// The API of a cluster reached through any of its ready nodes.
#[derive(Clone, Debug)]
pub struct EmqxCluster {
    /// One client per ready node, tried in order.
    pub nodes: Vec<EmqxClient>,
}

impl EmqxCluster {
    /// Run `f` against each node until one answers. Errors that EMQX itself
    /// returned (refusals, missing features) are final; only unreachable
    /// nodes make us try the next one.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, EmqxError>
    where
        F: Fn(EmqxClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, EmqxError>>,
    {
        let mut last = None;
        for client in &self.nodes {
            match f(client.clone()).await {
                Err(e @ EmqxError::Unreachable { .. }) => {
                    tracing::debug!(node = client.base_url(), error = %e, "EMQX node did not answer, trying the next");
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.map_or(EmqxError::NoNodeAnswered { tried: 0 }, |_| {
            EmqxError::NoNodeAnswered {
                tried: self.nodes.len(),
            }
        }))
    }
}

/// Timeout for each EMQX call: the reconciler must not hang on a dead node.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client builds")
}
