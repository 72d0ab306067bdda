//! weir-k8s-sim: kubelet stand-in and EMQX 5 HTTP API fake for the local
//! Kubernetes control plane of the e2e/k8s scenarios (see
//! `weir_e2e::k8s_sim`). Prints `listening on http://ADDR` on stdout; logs
//! go to stderr (`WEIR_LOG` sets the filter).

use clap::Parser;
use weir_e2e::k8s_sim::{run, SimConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Built with the rest of the workspace, rustls has two crypto providers
    // and picks neither on its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    run(SimConfig::parse()).await
}
