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

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    kit::log::init();
    let signals = kit::shutdown::Signals::install().context("installing the SIGTERM/SIGINT handlers")?;
    // One essential task: the VRRP loop (it owns the health poller and
    // ends with an error if that stops). Its end stops the process.
    let mut tasks = kit::Supervisor::new();
    tasks.spawn_essential("vrrp", move |stop| daemon::run(cli, stop));
    // The loop's own leaving (priority 0, VIP removed) takes milliseconds.
    tasks.run(signals, Duration::from_secs(5)).await?;
    Ok(())
}
