//! vipd: floats a virtual IP across router nodes with VRRPv3 (RFC 5798),
//! interoperable with keepalived, and gives it up while the local router's
//! health check fails. Flags: cli.rs. Pure core: state.rs, packet.rs,
//! health.rs, arp.rs, inbox.rs, status.rs; I/O: net/, check.rs, admin.rs;
//! the loop joining them: daemon.rs.

mod admin;
mod arp;
mod check;
mod cli;
mod daemon;
mod health;
mod inbox;
mod net;
mod packet;
mod state;
mod status;
mod vip;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    daemon::run(cli).await?;
    Ok(())
}
