//! `weir-api`: serve the control-plane API, or check the audit chain.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_api::secrets::MasterKey;
use weir_api::{audit, Config};

#[derive(Parser)]
#[command(name = "weir-api", version, about = "Weir control-plane API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exits 1 and names the first broken entry
    /// (2 when the checkpoint is refused or the chain cannot be read).
    Verify {
        /// A checkpoint from `audit checkpoint` (or the api): also report
        /// entries deleted or rewritten since it was taken.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print a signed checkpoint of the chain's head as JSON; keep it
    /// outside the database for `audit verify --checkpoint`.
    Checkpoint,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // rustls has two crypto providers in a workspace build: pick one before
    // any TLS client (OIDC, webhooks, the Kubernetes API) needs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Audit { command } => match audit_cmd(&cli.config, command).await {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("weir-api audit: {e:#}");
                std::process::exit(2);
            }
        },
    }
}

/// Run an audit subcommand; its exit code.
async fn audit_cmd(config: &Config, command: AuditCommand) -> anyhow::Result<i32> {
    let db = weir_api::db::connect(&config.database_url, 2)
        .await
        .context("connecting to the database")?;
    // Never generate a key here: a new key would only call every entry forged.
    let keys =
        MasterKey::resolve_existing(config.fleet.master_key.as_deref(), &config.database_url)?
            .map(|k| audit::keys::AuditKeys::derive(&k));
    match command {
        AuditCommand::Checkpoint => {
            let keys = keys.context(
                "signing a checkpoint needs the master key (WEIR_MASTER_KEY, or weir-master.key \
                 next to the SQLite database)",
            )?;
            let r = audit::verify_with(&db, Some(&keys), None).await?;
            if let Some((seq, reason)) = r.verdict.problem() {
                println!("audit chain BROKEN at entry {seq}: {reason}; no checkpoint taken");
                return Ok(1);
            }
            let cp = audit::Checkpoint::sign(&keys, r.head_seq, &r.head_hash, r.entries as i64);
            println!("{}", serde_json::to_string_pretty(&cp)?);
            Ok(0)
        }
        AuditCommand::Verify { checkpoint } => {
            let cp = match &checkpoint {
                Some(path) => Some(read_checkpoint(path)?),
                None => None,
            };
            let r = audit::verify_with(&db, keys.as_ref(), cp.as_ref())
                .await
                .map_err(|e| match (&checkpoint, e) {
                    (Some(p), e @ weir_api::ApiError::Validation(_)) => refused(p, e),
                    (_, e) => e.into(),
                })?;
            let legacy = match r.legacy_entries {
                0 => String::new(),
                n => format!(" ({n} written before the chain was keyed)"),
            };
            match r.verdict {
                audit::Verdict::Intact { entries } => {
                    println!("audit chain intact: {entries} entries{legacy}");
                    Ok(0)
                }
                audit::Verdict::Broken { seq, reason } => {
                    println!("audit chain BROKEN at entry {seq}: {reason}");
                    Ok(1)
                }
                v @ audit::Verdict::Truncated { .. } => {
                    let (_, reason) = v.problem().unwrap_or_default();
                    println!("audit chain {reason}");
                    Ok(1)
                }
            }
        }
    }
}

fn read_checkpoint(path: &std::path::Path) -> anyhow::Result<audit::Checkpoint> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    weir_api::extract::parse_json(&text).map_err(|e| refused(path, e))
}

/// A checkpoint that is malformed or whose signature does not verify.
fn refused(path: &std::path::Path, e: weir_api::ApiError) -> anyhow::Error {
    let why = match &e {
        weir_api::ApiError::Validation(f) | weir_api::ApiError::BadRequest { fields: f, .. } => f
            .iter()
            .map(|f| format!("{} {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    anyhow::anyhow!("checkpoint {} REFUSED: {why}", path.display())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let kube = config.kube_tenants;
    let running = weir_api::start(config).await?;
    tracing::info!(addr = %running.addr, "weir-api listening");
    weir_api::tenants_sync::spawn_if_available(running.state.clone(), kube).await;
    let addr: SocketAddr = running.addr;
    tokio::select! {
        _ = running.task => anyhow::bail!("server on {addr} stopped"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
