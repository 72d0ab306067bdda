//! weir-operator: reconciles Tenants, MqttClusters and EdgeGateways.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use weir_operator::context::{Context, OperatorConfig, UrlTemplate};
use weir_operator::leader::{run_as_leader, LeaseSettings};
use weir_operator::metrics::Metrics;
use weir_operator::server::{router, Health};

#[derive(Parser, Debug)]
#[command(
    name = "weir-operator",
    version,
    about = "Kubernetes operator for Weir tenants, EMQX clusters and edge gateways"
)]
struct Args {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "WEIR_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Elect a leader through a Lease so only one replica reconciles.
    #[arg(long, env = "WEIR_OPERATOR_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// The operator's own namespace: of the leader Lease and of its
    /// ServiceAccount (`--service-account`).
    #[arg(long, env = "WEIR_OPERATOR_NAMESPACE", default_value = "weir-system")]
    lease_namespace: String,
    /// The operator's own ServiceAccount (in WEIR_OPERATOR_NAMESPACE): every
    /// tenant namespace gets a RoleBinding of `--secrets-cluster-role` to it,
    /// the operator's only access to Secrets.
    #[arg(
        long,
        env = "WEIR_OPERATOR_SERVICE_ACCOUNT",
        default_value = "weir-operator"
    )]
    service_account: String,
    /// ClusterRole with the Secret verbs the operator needs, bound in each
    /// tenant namespace (the chart's `operator.secretsClusterRole`).
    #[arg(
        long,
        env = "WEIR_OPERATOR_SECRETS_CLUSTER_ROLE",
        default_value = "weir-operator-secrets"
    )]
    secrets_cluster_role: String,
    #[arg(
        long,
        env = "WEIR_OPERATOR_LEASE_NAME",
        default_value = "weir-operator"
    )]
    lease_name: String,
    /// This replica's identity in the Lease (the chart passes the pod name).
    #[arg(long, env = "WEIR_OPERATOR_IDENTITY")]
    identity: Option<String>,
    /// Reconciles running at once per controller.
    #[arg(long, env = "WEIR_OPERATOR_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Namespace of weir-api; its pods may reach tenant brokers.
    #[arg(long, env = "WEIR_API_NAMESPACE", default_value = "weir-system")]
    api_namespace: String,
    /// JWKS URL EMQX verifies client JWTs against, when a cluster names none.
    #[arg(
        long,
        env = "WEIR_DEFAULT_JWKS_URL",
        default_value = "http://weir-api.weir-system.svc:8080/api/v1/jwks.json"
    )]
    default_jwks_url: String,
    /// Base URL of weir-api as in-cluster agents reach it: they enroll there
    /// with their gateway's token and fetch config and MQTT credentials. A
    /// plain http:// URL makes the operator start them with --insecure-http
    /// (and say so in an Event on each such gateway).
    #[arg(
        long,
        env = "WEIR_API_URL",
        default_value = "http://weir-api.weir-system.svc:8080"
    )]
    api_url: String,
    /// Image repository of weir-agent for in-cluster gateways.
    #[arg(
        long,
        env = "WEIR_AGENT_IMAGE",
        default_value = "ghcr.io/weir-dev/weir-agent"
    )]
    agent_image: String,
    /// Default tag of the agent and historian images.
    #[arg(long, env = "WEIR_AGENT_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    agent_version: String,
    /// Image repository of the historian.
    #[arg(
        long,
        env = "WEIR_HISTORIAN_IMAGE",
        default_value = "ghcr.io/weir-dev/weir-historian"
    )]
    historian_image: String,
    /// Days a signed config bundle stays valid (re-signed with a quarter left).
    #[arg(long, env = "WEIR_BUNDLE_VALIDITY_DAYS", default_value_t = 30)]
    bundle_validity_days: i64,
    /// cert-manager ClusterIssuer that issues missing listener TLS Secrets.
    #[arg(long, env = "WEIR_CERT_ISSUER", default_value = "weir-ca")]
    cert_issuer: String,
    /// Seconds between MqttCluster status writes that only refresh connection counts.
    #[arg(long, env = "WEIR_STATUS_REFRESH_SECS", default_value_t = 60)]
    status_refresh_secs: u64,
    /// Seconds one rollout step may wait for a node before the cluster is
    /// reported Degraded (RolloutTimedOut).
    #[arg(long, env = "WEIR_ROLLOUT_TIMEOUT_SECS", default_value_t = 900)]
    rollout_timeout_secs: u64,
    /// Where each EMQX node's HTTP API is, when not at its pod's DNS name
    /// (`http://{pod}.{service}.{namespace}.svc:18083`): a URL with
    /// `{pod}`, `{service}`, `{namespace}` and `{cluster}` filled in per node,
    /// for an operator run outside the cluster network.
    #[arg(long, env = "WEIR_EMQX_URL_TEMPLATE")]
    emqx_url_template: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "WEIR_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    // Built with the rest of the workspace, rustls has two crypto providers
    // and would panic at the first TLS connection rather than pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = router(Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    tracing::info!(listen = %args.listen, "serving /healthz /readyz /metrics");

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes cluster: set KUBECONFIG or run in a pod with a service account")?;
    client
        .apiserver_version()
        .await
        .context("the Kubernetes API server did not answer")?;
    ready.store(true, Ordering::Relaxed);

    let config = OperatorConfig {
        api_namespace: args.api_namespace,
        default_jwks_url: args.default_jwks_url,
        api_url: args.api_url,
        agent_image: args.agent_image,
        agent_version: args.agent_version,
        historian_image: args.historian_image,
        bundle_validity_days: args.bundle_validity_days,
        cert_issuer: args.cert_issuer,
        status_refresh_secs: args.status_refresh_secs,
        rollout_timeout_secs: args.rollout_timeout_secs,
        service_account: args.service_account,
        operator_namespace: args.lease_namespace.clone(),
        secrets_role: args.secrets_cluster_role,
    };
    if weir_operator::edge_gateway::builders::api_is_plain_http(&config.api_url) {
        tracing::warn!(
            api_url = %config.api_url,
            "in-cluster agents reach the api over plain HTTP and are started with --insecure-http: \
             enrollment tokens and broker credentials cross the cluster network unencrypted; \
             set --api-url (WEIR_API_URL) to an https:// URL to avoid it"
        );
    }
    let mut ctx = Context::new(client.clone(), config, metrics.clone());
    if let Some(template) = args.emqx_url_template {
        tracing::info!(template = %template, "EMQX API reached through a URL template");
        ctx = ctx.with_emqx_locator(Arc::new(UrlTemplate(template)));
    }
    let ctx = Arc::new(ctx);
    let concurrency = args.concurrency;
    if args.leader_election {
        let identity = args
            .identity
            .unwrap_or_else(|| format!("weir-operator-{}", std::process::id()));
        let settings = LeaseSettings {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity,
            duration: 15,
            grace: 5,
        };
        run_as_leader(client, settings, &metrics, || {
            weir_operator::controllers::run(ctx, concurrency)
        })
        .await?;
    } else {
        weir_operator::controllers::run(ctx, concurrency).await;
    }
    tracing::info!("controllers stopped");
    Ok(())
}
