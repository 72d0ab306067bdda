//! `weir-api`: serve the control-plane API, or check the audit chain.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    /// Recompute the hash chain; exits 1 and names the first broken entry.
    Verify,
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
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = weir_api::db::connect(&cli.config.database_url, 2)
                .await
                .context("connecting to the database")?;
            match audit::verify(&db).await? {
                audit::Verdict::Intact { entries } => {
                    println!("audit chain intact: {entries} entries");
                    Ok(())
                }
                audit::Verdict::Broken { seq, reason } => {
                    println!("audit chain BROKEN at entry {seq}: {reason}");
                    std::process::exit(1);
                }
            }
        }
    }
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
