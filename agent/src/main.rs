//! `weir-agent`: run the edge agent, validate configs, make and sign bundles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_agent::config_loop::{peek_payload, run_config_loop, Gate};
use weir_agent::credentials::CredentialStore;
use weir_agent::enroll::{enroll, ApiClient};
use weir_agent::queue::FsyncPolicy;
use weir_agent::runtime::{Broker, Runtime, RuntimeOptions};
use weir_agent::server_url::check_server_url;
use weir_agent::state::{read_key, write_key, DataDir, Identity};
use weir_crds::bundle::{
    follow_rotations, sign, sign_rotation, verify, BundlePayload, Expectations, SignedBundle,
    TrustAnchor,
};
use weir_crds::gateway::validate::{validate_spec_value, FieldError};
use weir_crds::gateway::validate_config;

#[derive(Parser)]
#[command(
    name = "weir-agent",
    version,
    about = "Weir edge agent: devices → rules → disk queue → MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (enrolls on first start with --server and --token).
    Run(Box<RunArgs>),
    /// Check a gateway config (YAML/JSON config or EdgeGateway manifest).
    Validate { file: PathBuf },
    /// Make a config-signing key for air-gapped sites.
    Keygen {
        /// Where to write the secret key (mode 0600); the trust anchor goes to FILE.pub.json.
        #[arg(long, env = "WEIR_KEY_OUT", default_value = "weir-signing.key")]
        out: PathBuf,
    },
    /// Sign a config into a bundle (printed on stdout).
    Sign {
        #[arg(long, env = "WEIR_SIGNING_KEY")]
        key: PathBuf,
        #[arg(long, env = "WEIR_TENANT")]
        tenant: String,
        #[arg(long, env = "WEIR_GATEWAY")]
        gateway: String,
        /// Bundle version; must be higher than any the agent accepted.
        #[arg(long, env = "WEIR_BUNDLE_VERSION")]
        version: u64,
        /// Days until the bundle expires.
        #[arg(long, env = "WEIR_BUNDLE_VALID_DAYS", default_value_t = 365)]
        valid_days: i64,
        /// Hand over from this (currently trusted) key to --key.
        #[arg(long, env = "WEIR_ROTATE_FROM")]
        rotate_from: Option<PathBuf>,
        config: PathBuf,
    },
    /// Check a signed bundle as an agent that trusts --trust would: key
    /// rotations, signature, tenant, gateway, expiry and config (not the
    /// version, which depends on what the agent accepted before).
    Verify {
        /// The pinned key: a TrustAnchor JSON file (trust.json) or a base64 public key.
        #[arg(long)]
        trust: String,
        /// Tenant the bundle must be for (default: the one it names).
        #[arg(long)]
        tenant: Option<String>,
        /// Gateway the bundle must be for (default: the one it names).
        #[arg(long)]
        gateway: Option<String>,
        bundle: PathBuf,
    },
    /// OPC UA tools for setting up `opcUa` devices.
    Opcua {
        #[command(subcommand)]
        command: OpcuaCommand,
    },
}

#[derive(Subcommand)]
enum OpcuaCommand {
    /// Print a server's address space (node id, browse name, node class,
    /// data type) and its certificate's SHA-256 to pin in
    /// `serverCertificateSha256`.
    Browse(BrowseArgs),
}

#[derive(clap::Args)]
struct BrowseArgs {
    /// opc.tcp://host:port[/path]
    endpoint: String,
    /// Node to browse under (default: the Objects folder, i=85).
    #[arg(long, env = "WEIR_OPCUA_NODE")]
    node: Option<String>,
    /// Levels below the node to print.
    #[arg(long, env = "WEIR_OPCUA_DEPTH", default_value_t = 3)]
    depth: u32,
    /// none, basic256Sha256, aes128Sha256RsaOaep or aes256Sha256RsaPss.
    #[arg(long, env = "WEIR_OPCUA_SECURITY_POLICY", default_value = "none")]
    security_policy: String,
    /// none, sign or signAndEncrypt.
    #[arg(long, env = "WEIR_OPCUA_SECURITY_MODE", default_value = "none")]
    security_mode: String,
    /// Trust exactly the server certificate with this SHA-256 (hex).
    #[arg(long, env = "WEIR_OPCUA_SERVER_CERTIFICATE_SHA256")]
    server_certificate_sha256: Option<String>,
    /// Trust the certificate the server presents now (its SHA-256 is
    /// printed first: compare it with the server's before pinning it).
    #[arg(long, env = "WEIR_OPCUA_ACCEPT_SERVER_CERTIFICATE")]
    accept_server_certificate: bool,
    /// User name identity (the password from --password).
    #[arg(long, env = "WEIR_OPCUA_USERNAME")]
    username: Option<String>,
    #[arg(long, env = "WEIR_OPCUA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The agent's data dir: its OPC UA application certificate and trusted
    /// server certificates (`opcua/pki`).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-agent-data")]
    data_dir: PathBuf,
    #[arg(long, env = "WEIR_OPCUA_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u32,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Fleet api base URL (first start only, with --token).
    #[arg(long, env = "WEIR_SERVER")]
    server: Option<String>,
    /// Allow a plain http:// --server off this machine (loopback is always
    /// allowed). Tokens, keys and broker passwords then travel in clear.
    #[arg(long, env = "WEIR_INSECURE_HTTP")]
    insecure_http: bool,
    /// Bootstrap token from the console (first start only).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-agent-data")]
    data_dir: PathBuf,
    #[arg(long, env = "WEIR_METRICS_LISTEN", default_value = "127.0.0.1:9102")]
    metrics_listen: SocketAddr,
    /// Run this signed bundle without a server (air-gapped); re-read when it changes.
    #[arg(long, env = "WEIR_BUNDLE", requires = "trust")]
    bundle: Option<PathBuf>,
    /// Trust anchor for --bundle: a TrustAnchor JSON file (from keygen) or a base64 public key.
    #[arg(long, env = "WEIR_TRUST")]
    trust: Option<String>,
    /// Broker URL overriding the api's (mqtt://host:port or mqtts://host:port).
    #[arg(long, env = "WEIR_MQTT_URL")]
    mqtt_url: Option<String>,
    #[arg(long, env = "WEIR_MQTT_USERNAME")]
    mqtt_username: Option<String>,
    #[arg(long, env = "WEIR_MQTT_PASSWORD", hide_env_values = true)]
    mqtt_password: Option<String>,
    /// PEM file of CA certificates for an mqtts:// broker with a private CA.
    #[arg(long, env = "WEIR_MQTT_CA")]
    mqtt_ca: Option<PathBuf>,
    /// Tenant for topics and bundle checks in air-gapped runs (default: the bundle's).
    #[arg(long, env = "WEIR_TENANT")]
    tenant: Option<String>,
    /// Gateway for topics and bundle checks in air-gapped runs (default: the bundle's).
    #[arg(long, env = "WEIR_GATEWAY")]
    gateway: Option<String>,
    /// When queued data is fsynced: always, never, or an interval such as 1000ms.
    #[arg(long, env = "WEIR_FSYNC", default_value = "1000ms")]
    fsync: FsyncPolicy,
    /// MQTT messages awaiting PUBACK at most.
    #[arg(long, env = "WEIR_MQTT_INFLIGHT", default_value_t = 100)]
    inflight: u16,
    /// Seconds between status reports.
    #[arg(long, env = "WEIR_HEARTBEAT_S", default_value_t = 15)]
    heartbeat_s: u64,
    /// Device credentials for air-gapped sites: a JSON or YAML map of name
    /// to {kind: userPassword, username, password} or {kind: certificate,
    /// certificatePem, privateKeyPem}. Keep it mode 0600. Enrolled agents
    /// fetch credentials from the api and use this file only when the api
    /// cannot be reached and no stored copy exists.
    #[arg(long, env = "WEIR_AGENT_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// Seconds between re-checks of the running config's device credentials
    /// with the api (a replaced one is fetched, a deleted one dropped); they
    /// are also fetched at every config change. 0: only then.
    #[arg(long, env = "WEIR_CREDENTIALS_REFRESH_S", default_value_t = 300)]
    credentials_refresh_s: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Keygen { out } => keygen(&out),
        Command::Sign {
            key,
            tenant,
            gateway,
            version,
            valid_days,
            rotate_from,
            config,
        } => sign_cmd(
            &key,
            &tenant,
            &gateway,
            version,
            valid_days,
            rotate_from.as_deref(),
            &config,
        ),
        Command::Verify {
            trust,
            tenant,
            gateway,
            bundle,
        } => verify_cmd(&trust, tenant.as_deref(), gateway.as_deref(), &bundle),
        Command::Opcua {
            command: OpcuaCommand::Browse(args),
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(opcua_browse(args)),
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(*args)),
    }
}

/// A config file as the spec value the validator takes: an EdgeGateway
/// manifest's `spec`, or the config itself.
fn load_spec_value(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not YAML or JSON", path.display()))?;
    if v.get("kind").and_then(|k| k.as_str()) == Some("EdgeGateway") {
        return v
            .get("spec")
            .cloned()
            .context("EdgeGateway manifest has no spec");
    }
    Ok(v)
}

fn print_errors(path: &Path, errs: &[FieldError]) {
    for e in errs {
        eprintln!("{}: {e}", path.display());
    }
}

fn validate(path: &Path) -> anyhow::Result<()> {
    let v = load_spec_value(path)?;
    match validate_spec_value(&v) {
        Ok(spec) => {
            let tags = spec.config.tags().count();
            println!(
                "{}: valid ({} devices, {tags} tags, {} pipelines)",
                path.display(),
                spec.config.devices.len(),
                spec.config.pipelines.len()
            );
            Ok(())
        }
        Err(errs) => {
            print_errors(path, &errs);
            std::process::exit(1);
        }
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists; refusing to overwrite a signing key",
            out.display()
        );
    }
    let key = weir_crds::bundle::generate_key();
    write_key(out, &key)?;
    let anchor = TrustAnchor::from_key(&key.verifying_key());
    let pub_path = PathBuf::from(format!("{}.pub.json", out.display()));
    std::fs::write(&pub_path, serde_json::to_string_pretty(&anchor)?)?;
    eprintln!("secret key: {} (keep it off the gateway)", out.display());
    eprintln!(
        "trust anchor: {} (give it to the agent with --trust)",
        pub_path.display()
    );
    println!("{}", serde_json::to_string_pretty(&anchor)?);
    Ok(())
}

fn sign_cmd(
    key: &Path,
    tenant: &str,
    gateway: &str,
    version: u64,
    valid_days: i64,
    rotate_from: Option<&Path>,
    config: &Path,
) -> anyhow::Result<()> {
    let v = load_spec_value(config)?;
    let spec = match validate_spec_value(&v) {
        Ok(s) => s,
        Err(errs) => {
            print_errors(config, &errs);
            bail!("not signing an invalid config");
        }
    };
    let key = read_key(key)?;
    let payload = BundlePayload::new(
        tenant,
        gateway,
        version,
        spec.config,
        chrono::Utc::now(),
        chrono::Duration::days(valid_days),
    );
    let mut bundle = sign(&payload, &key);
    if let Some(old) = rotate_from {
        let old = read_key(old)?;
        bundle.rotation = Some(sign_rotation(&old, &key, chrono::Utc::now()));
    }
    println!("{}", serde_json::to_string_pretty(&bundle)?);
    Ok(())
}

fn verify_cmd(
    trust: &str,
    tenant: Option<&str>,
    gateway: Option<&str>,
    path: &Path,
) -> anyhow::Result<()> {
    let anchor = load_trust(trust)?;
    let bundle = read_bundle(path)?;
    let peek = peek_payload(&bundle);
    let tenant = tenant
        .map(str::to_string)
        .or_else(|| peek.as_ref().map(|p| p.tenant.clone()))
        .context("bundle names no tenant; pass --tenant")?;
    let gateway = gateway
        .map(str::to_string)
        .or_else(|| peek.as_ref().map(|p| p.gateway.clone()))
        .context("bundle names no gateway; pass --gateway")?;
    let refused = || format!("{} refused", path.display());
    let pinned = anchor.verifying_key()?;
    let key = follow_rotations(&bundle, &pinned)
        .with_context(refused)?
        .unwrap_or(pinned);
    let expect = Expectations {
        tenant: &tenant,
        gateway: &gateway,
        last_accepted: None,
        now: chrono::Utc::now(),
    };
    let payload = verify(&bundle, &key, &expect).with_context(refused)?;
    if let Err(errs) = validate_config(&payload.config) {
        print_errors(path, &errs);
        bail!("{}: the signed config does not validate", refused());
    }
    // The keys the bundle's rotations go through, oldest first.
    let links: Vec<_> = bundle
        .rotation_chain
        .iter()
        .chain(bundle.rotation.as_ref())
        .collect();
    let chain: Vec<&str> = links
        .first()
        .map(|r| r.old_key_id.as_str())
        .into_iter()
        .chain(links.iter().map(|r| r.new_key.key_id.as_str()))
        .collect();
    println!(
        "{}: valid for {tenant}/{gateway}, version {}, signed by {} (trusted {}), rotations [{}], expires {}",
        path.display(),
        payload.version,
        bundle.key_id,
        anchor.key_id,
        chain.join(" -> "),
        payload.expires.to_rfc3339(),
    );
    Ok(())
}

fn load_trust(arg: &str) -> anyhow::Result<TrustAnchor> {
    let text = match std::fs::read_to_string(arg) {
        Ok(t) => t,
        Err(_) => arg.to_string(),
    };
    if let Ok(a) = serde_json::from_str::<TrustAnchor>(&text) {
        a.verifying_key()?;
        return Ok(a);
    }
    let bytes = B64
        .decode(text.trim())
        .context("--trust is neither a TrustAnchor JSON file nor a base64 public key")?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--trust key must be 32 bytes"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)?;
    Ok(TrustAnchor::from_key(&key))
}

fn read_bundle(path: &Path) -> anyhow::Result<SignedBundle> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a signed bundle", path.display()))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    // Two rustls crypto providers are compiled in (via reqwest and rumqttc): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Before anything touches the disk or the network.
    if let Some(server) = &a.server {
        check_server_url("--server", server, a.insecure_http)?;
    }
    let dir = DataDir::open(&a.data_dir)?;
    let cancel = CancellationToken::new();
    let fsync = a.fsync;
    let (runtime, gate, api) = if let Some(bundle_path) = &a.bundle {
        // Air-gapped: the bundle file is the config source.
        let anchor = match dir.trust()? {
            // A rotation accepted earlier replaced the anchor given on the command line.
            Some(t) => t,
            None => {
                let t = load_trust(a.trust.as_deref().unwrap_or_default())?;
                dir.save_trust(&t)?;
                t
            }
        };
        let bundle = read_bundle(bundle_path)?;
        let peek = peek_payload(&bundle);
        let tenant = a
            .tenant
            .clone()
            .or_else(|| peek.as_ref().map(|p| p.tenant.clone()))
            .context("bundle names no tenant; pass --tenant")?;
        let gateway = a
            .gateway
            .clone()
            .or_else(|| peek.as_ref().map(|p| p.gateway.clone()))
            .context("bundle names no gateway; pass --gateway")?;
        let broker = Broker {
            urls: a.mqtt_url.clone().into_iter().collect(),
            client_id: format!("weir-agent-{tenant}-{gateway}"),
            username: a.mqtt_username.clone(),
            password: a.mqtt_password.clone(),
            ca_pem: read_ca(a.mqtt_ca.as_deref())?,
        };
        if broker.urls.is_empty() {
            tracing::warn!(
                "no --mqtt-url: readings are queued on disk until a broker is configured"
            );
        }
        let runtime = Runtime::start(RuntimeOptions {
            queue_dir: dir.queue_dir(),
            fsync,
            tenant: tenant.clone(),
            gateway: gateway.clone(),
            broker,
            inflight: a.inflight,
        })?;
        runtime.set_credentials(Arc::new(CredentialStore::new(
            &dir,
            None,
            a.credentials_file.clone(),
        )?));
        runtime.set_opcua_context(weir_agent::adapters::opcua::OpcUaContext {
            data_dir: Some(dir.path().to_path_buf()),
            // The runtime adds its credential store.
            credentials: None,
        });
        let mut gate = Gate::new(dir.clone(), anchor, &tenant, &gateway)?;
        let from_disk = gate.start_from_disk(&runtime).await.unwrap_or_else(|e| {
            tracing::warn!("last good bundle unusable: {e}");
            false
        });
        let same = peek
            .as_ref()
            .map(|p| Some(p.version) == gate.highest_version())
            .unwrap_or(false);
        let applied = if same {
            from_disk
        } else {
            gate.offer(&bundle, &runtime).await || from_disk
        };
        if !applied {
            let why = gate
                .refused
                .lock()
                .ok()
                .and_then(|r| r.as_ref().map(|r| r.reason.clone()))
                .unwrap_or_default();
            runtime.shutdown().await;
            bail!(
                "no config to run: {} was refused ({why}) and there is no last good bundle",
                bundle_path.display()
            );
        }
        // Watch the file: a technician may drop a new bundle in place.
        let path = bundle_path.clone();
        let r = runtime.clone();
        let c = cancel.clone();
        tokio::spawn(async move {
            let mut last = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            loop {
                tokio::select! {
                    _ = c.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let m = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                if m != last {
                    last = m;
                    match read_bundle(&path) {
                        Ok(b) => {
                            gate.offer(&b, &r).await;
                        }
                        Err(e) => tracing::warn!("bundle file changed but is unreadable: {e:#}"),
                    }
                }
            }
        });
        (runtime, None, None)
    } else {
        let (key, _) = dir.load_or_create_key()?;
        let identity = match dir.identity()? {
            Some(id) => id,
            None => {
                let (Some(server), Some(token)) = (&a.server, &a.token) else {
                    bail!("not enrolled yet: pass --server URL and --token TOKEN (or --bundle FILE --trust KEY for an air-gapped site)");
                };
                tracing::info!(%server, "enrolling");
                let resp = enroll(server, token, &key).await?;
                dir.save_trust(&resp.trust_anchor)?;
                let id = Identity {
                    agent_id: resp.agent_id,
                    tenant: resp.tenant,
                    gateway: resp.gateway,
                    server: server.clone(),
                    mqtt: resp.mqtt,
                };
                dir.save_identity(&id)?;
                tracing::info!(agent_id = %id.agent_id, tenant = %id.tenant, gateway = %id.gateway, "enrolled");
                id
            }
        };
        // An agent enrolled over plain HTTP keeps needing the flag: its
        // signed calls still fetch broker passwords from that server.
        check_server_url("the enrolled server", &identity.server, a.insecure_http)?;
        let anchor = dir
            .trust()?
            .context("enrolled but no trust anchor on disk")?;
        let ca_pem = read_ca(a.mqtt_ca.as_deref())?;
        let broker = Broker {
            ca_pem: ca_pem.clone(),
            ..broker_from(&identity.mqtt, &a)
        };
        let runtime = Runtime::start(RuntimeOptions {
            queue_dir: dir.queue_dir(),
            fsync,
            tenant: identity.tenant.clone(),
            gateway: identity.gateway.clone(),
            broker,
            inflight: a.inflight,
        })?;
        let api = Arc::new(ApiClient::new(&identity.server, &identity.agent_id, key));
        let store = Arc::new(CredentialStore::new(
            &dir,
            Some(api.clone()),
            a.credentials_file.clone(),
        )?);
        runtime.set_credentials(store.clone());
        if a.credentials_refresh_s > 0 {
            let every = Duration::from_secs(a.credentials_refresh_s);
            tokio::spawn(store.run_rechecks(every, cancel.clone()));
        }
        runtime.set_opcua_context(weir_agent::adapters::opcua::OpcUaContext {
            data_dir: Some(dir.path().to_path_buf()),
            // The runtime adds its credential store.
            credentials: None,
        });
        let mut gate = Gate::new(dir.clone(), anchor, &identity.tenant, &identity.gateway)?;
        if let Err(e) = gate.start_from_disk(&runtime).await {
            tracing::warn!("last good bundle unusable: {e}");
        }
        let refused = gate.refused.clone();
        tokio::spawn(run_config_loop(
            api.clone(),
            gate,
            runtime.clone(),
            cancel.clone(),
        ));
        let overrides = BrokerOverrides {
            url: a.mqtt_url.clone(),
            username: a.mqtt_username.clone(),
            password: a.mqtt_password.clone(),
            ca_pem,
        };
        tokio::spawn(credentials_loop(
            api.clone(),
            runtime.clone(),
            dir.clone(),
            identity,
            overrides,
            cancel.clone(),
        ));
        (runtime, Some(refused), Some(api))
    };
    if let (Some(api), Some(refused)) = (api, gate) {
        tokio::spawn(weir_agent::status::run_heartbeat(
            api,
            runtime.clone(),
            refused,
            Duration::from_secs(a.heartbeat_s.max(1)),
            cancel.clone(),
        ));
    }
    let metrics = tokio::spawn(weir_agent::metrics::serve(
        a.metrics_listen,
        runtime.clone(),
        cancel.clone(),
    ));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        r = metrics => {
            if let Ok(Err(e)) = r {
                tracing::error!("metrics server stopped: {e}");
            }
        }
    }
    cancel.cancel();
    runtime.shutdown().await;
    Ok(())
}

/// Broker settings given on the command line, which win over the api's.
#[derive(Clone)]
struct BrokerOverrides {
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ca_pem: Option<Vec<u8>>,
}

impl BrokerOverrides {
    fn apply(&self, m: &weir_crds::agent_api::MqttCredentials) -> Broker {
        Broker {
            urls: match &self.url {
                Some(u) => vec![u.clone()],
                None => m.urls.clone(),
            },
            client_id: m.client_id.clone(),
            username: self.username.clone().or_else(|| Some(m.username.clone())),
            password: self.password.clone().or_else(|| Some(m.password.clone())),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

fn broker_from(m: &weir_crds::agent_api::MqttCredentials, a: &RunArgs) -> Broker {
    BrokerOverrides {
        url: a.mqtt_url.clone(),
        username: a.mqtt_username.clone(),
        password: a.mqtt_password.clone(),
        ca_pem: None,
    }
    .apply(m)
}

fn read_ca(path: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| std::fs::read(p).with_context(|| format!("reading CA file {}", p.display())))
        .transpose()
}

/// Fetch fresh MQTT credentials (the api's JWT) before the current ones expire.
async fn credentials_loop(
    api: Arc<ApiClient>,
    runtime: Arc<Runtime>,
    dir: DataDir,
    mut identity: Identity,
    overrides: BrokerOverrides,
    cancel: CancellationToken,
) {
    loop {
        let left = (identity.mqtt.expires - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        // Renew at 80 % of the remaining life; retry every 10 s while failing.
        let wait = left.mul_f64(0.8).max(Duration::from_secs(10));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match api.mqtt_credentials().await {
            Ok(m) => {
                identity.mqtt = m;
                if let Err(e) = dir.save_identity(&identity) {
                    tracing::warn!("saving renewed credentials: {e}");
                }
                runtime.set_broker(overrides.apply(&identity.mqtt));
                tracing::info!(expires = %identity.mqtt.expires, "MQTT credentials renewed");
            }
            Err(e) => tracing::warn!("renewing MQTT credentials failed: {e}"),
        }
    }
}

/// A single user name and password given on the command line.
struct CliCredential(weir_crds::agent_api::DeviceCredential);

impl weir_agent::adapters::opcua::CredentialSource for CliCredential {
    fn get(&self, _name: &str) -> Option<weir_crds::agent_api::DeviceCredential> {
        Some(self.0.clone())
    }
}

async fn opcua_browse(a: BrowseArgs) -> anyhow::Result<()> {
    use weir_agent::adapters::opcua::{browse, CredentialSource};
    let mut settings: weir_crds::gateway::OpcUaSettings =
        serde_json::from_value(serde_json::json!({
            "endpoint": a.endpoint,
            "securityPolicy": a.security_policy,
            "securityMode": a.security_mode,
            "timeoutMs": a.timeout_ms,
            "serverCertificateSha256": a.server_certificate_sha256,
        }))
        .context("--security-policy must be none, basic256Sha256, aes128Sha256RsaOaep or aes256Sha256RsaPss; --security-mode none, sign or signAndEncrypt")?;
    let credentials: Option<Arc<dyn CredentialSource>> = match (&a.username, &a.password) {
        (Some(u), Some(p)) => {
            settings.credential = Some("cli".into());
            Some(Arc::new(CliCredential(
                weir_crds::agent_api::DeviceCredential::UserPassword {
                    username: u.clone(),
                    password: p.clone(),
                },
            )))
        }
        (Some(_), None) => bail!("--username needs --password (or WEIR_OPCUA_PASSWORD)"),
        _ => None,
    };
    let pki = weir_agent::adapters::opcua::session::Pki::new(&a.data_dir);
    let sha = browse::server_certificate(&pki, &settings)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    match &sha {
        Some(s) => println!("server certificate SHA-256: {s}"),
        None => println!("server certificate SHA-256: (the server sent none)"),
    }
    if a.accept_server_certificate && settings.server_certificate_sha256.is_none() {
        settings.server_certificate_sha256 = sha.clone();
    }
    let report = browse::browse(
        &a.data_dir,
        &settings,
        a.node.as_deref(),
        a.depth,
        credentials.as_ref(),
    )
    .await
    .map_err(|e| {
        if e.contains("is not trusted") {
            anyhow::anyhow!("{e} (or pass --accept-server-certificate after comparing the SHA-256 above with the server's)")
        } else {
            anyhow::anyhow!(e)
        }
    })?;
    for n in &report.nodes {
        let indent = "  ".repeat(n.depth as usize);
        let dt = n.data_type.as_deref().unwrap_or("");
        println!(
            "{indent}{}\t{}\t{}\t{dt}",
            n.node_id, n.browse_name, n.node_class
        );
    }
    if report.nodes.len() >= browse::MAX_NODES {
        println!(
            "(stopped at {} nodes: browse under a --node)",
            browse::MAX_NODES
        );
    }
    Ok(())
}
