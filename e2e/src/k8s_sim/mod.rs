//! `weir-k8s-sim`: what a local control plane without nodes lacks for the
//! MqttCluster scenarios.
//!
//! - [`kubelet`]: marks the pods of MqttClusters Running and Ready (or stuck
//!   in `ImagePullBackOff` for a bad image) through the status subresource,
//!   as a kubelet would once the container started.
//! - [`emqx`]: EMQX 5's HTTP API, faked on loopback from its documented
//!   shapes and routed by path (`/{namespace}/{pod}/api/v5/...`), so that
//!   weir-operator started with `--emqx-url-template
//!   'http://ADDR/{namespace}/{pod}'` reaches each node. It answers from
//!   what the API server holds (ready pods, the API key Secret) and records
//!   every call for the scenario to assert on (`GET /_sim/calls`).

pub mod emqx;
pub mod kubelet;
pub mod state;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use weir_crds::MqttCluster;

/// Label every pod of an MqttCluster carries (see the operator's
/// `builders::selector_labels`).
pub const CLUSTER_LABEL: &str = weir_crds::names::labels::MQTT_CLUSTER;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "weir-k8s-sim",
    about = "Kubelet stand-in and EMQX 5 HTTP API fake for the local Kubernetes control plane"
)]
pub struct SimConfig {
    /// Address of the EMQX API fake and the control endpoints.
    #[arg(long, env = "WEIR_SIM_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A pod whose image contains this never starts (ImagePullBackOff).
    #[arg(long, env = "WEIR_SIM_BAD_IMAGE", default_value = "does-not-exist")]
    pub bad_image: String,
    /// Polls of `global_status` after which an evacuation has drained
    /// (changed at runtime by `POST /_sim/drain-after-polls/{n}`).
    #[arg(long, env = "WEIR_SIM_DRAIN_AFTER_POLLS", default_value_t = 2)]
    pub drain_after_polls: u32,
    /// `PUT /configs` bodies containing this are refused as EMQX refuses a bad setting.
    #[arg(long, env = "WEIR_SIM_REJECT_CONFIG", default_value = "reject_me")]
    pub reject_config: String,
    /// Milliseconds between a pod appearing and its container "starting".
    #[arg(long, env = "WEIR_SIM_READY_AFTER_MS", default_value_t = 300)]
    pub ready_after_ms: u64,
    /// The IP every started pod gets. Kubernetes' endpoint controllers refuse
    /// a loopback address (and a pod on no node), so the Services here have no
    /// endpoints; nothing connects through them.
    #[arg(long, env = "WEIR_SIM_POD_IP", default_value = "127.0.0.1")]
    pub pod_ip: String,
    /// Client connections each running node reports (fixed, so that the
    /// operator's status does not churn).
    #[arg(long, env = "WEIR_SIM_CONNECTIONS", default_value_t = 10)]
    pub connections: u64,
}

/// Everything the two halves share.
pub struct Sim {
    pub client: Client,
    pub config: SimConfig,
    /// Pods labelled [`CLUSTER_LABEL`], kept current by a watch.
    pub pods: Store<Pod>,
    pub clusters: Store<MqttCluster>,
    pub state: Mutex<state::SimState>,
    /// Pods (by uid) whose status write is scheduled.
    pub pending: Mutex<HashSet<String>>,
}

/// Start both watches and the HTTP server; prints `listening on http://ADDR`
/// on stdout once the server is bound, then runs until killed.
pub async fn run(config: SimConfig) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (clusters, cluster_writer) = reflector::store::<MqttCluster>();
    let sim = Arc::new(Sim {
        client: client.clone(),
        state: Mutex::new(state::SimState::new(config.drain_after_polls)),
        config: config.clone(),
        pods,
        clusters,
        pending: Mutex::default(),
    });

    let cluster_stream = watcher(Api::<MqttCluster>::all(client.clone()), Default::default())
        .default_backoff()
        .reflect(cluster_writer)
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(cluster_stream);
        while let Some(ev) = cluster_stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "watching MqttClusters");
            }
        }
    });

    let pod_stream = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(CLUSTER_LABEL),
    )
    .default_backoff()
    .reflect(pod_writer)
    .applied_objects();
    let kubelet_sim = sim.clone();
    tokio::spawn(async move {
        futures::pin_mut!(pod_stream);
        while let Some(ev) = pod_stream.next().await {
            match ev {
                Ok(pod) => kubelet::observe(&kubelet_sim, pod),
                Err(e) => tracing::warn!(error = %e, "watching pods"),
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    axum::serve(listener, emqx::router(sim)).await?;
    Ok(())
}
