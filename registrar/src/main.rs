//! registrar: wires the sources to the sync loop (see lib.rs for the data
//! flow and cli.rs for the flags). Errors become exit codes only here.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kit::{StopWatch, Supervisor};
use registrar::cli::{Cli, Source};
use registrar::conventions::Options;
use registrar::{docker, kubernetes, sync};
use tokio::sync::mpsc;
use tracing::info;

/// How long the tasks get to finish after the stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    kit::log::init();
    let signals = kit::shutdown::Signals::install().context("installing the SIGTERM/SIGINT handlers")?;
    let node = match cli.node_name.clone().filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => hostname().context("no --node-name and the hostname is unreadable")?,
    };
    let consul = consul::Client::with_config(consul::Config::new(&cli.consul_addr).token(cli.consul_token.clone()))
        .context("Consul address")?;
    info!(node = %node, consul = %cli.consul_addr, source = ?cli.source, "registrar starting");

    // Sources -> one channel -> the sync loop. Each source is a sender. The
    // sync loop owns the desired state and each source its connection, so
    // none can be restarted alone: any of them ending stops the process
    // (non-zero), and the next start reconciles.
    let mut tasks = Supervisor::new();
    let (tx, rx) = mpsc::channel(1024);
    if matches!(cli.source, Source::Docker | Source::All) {
        let host_ip = match cli.host_ip {
            Some(ip) => ip,
            None => {
                let (ip, from) = docker::host_ip::detect(&consul)
                    .await
                    .context("cannot detect the host address for published ports: pass --host-ip")?;
                info!(host_ip = %ip, detected_from = from, "host address for published ports");
                ip
            }
        };
        let settings = docker::Settings { node: node.clone(), internal: cli.internal, host_ip };
        let (host, tx, ready_timeout) = (cli.docker_host.clone(), tx.clone(), cli.ready_timeout);
        tasks.spawn_essential("docker source", move |stop| {
            until_stopped(stop, async move {
                docker::run(host, settings, ready_timeout, tx).await;
                Ok(())
            })
        });
    }
    if matches!(cli.source, Source::Kubernetes | Source::All) {
        let (node, tx) = (node.clone(), tx.clone());
        tasks.spawn_essential("kubernetes source", move |stop| {
            until_stopped(stop, async move { kubernetes::run(node, tx).await.context("kubernetes source") })
        });
    }
    drop(tx);

    let config = sync::Config { node, options: Options { extra_tags: cli.tags.clone() }, resync: cli.resync };
    let sync = sync::SyncLoop::new(consul, config);
    tasks.spawn_essential("sync loop", move |stop| sync.run(rx, stop));

    tasks.run(signals, STOP_GRACE).await?;
    info!("stopped; registrations stay until the next start reconciles them");
    Ok(())
}

/// Runs a source until it ends or the process stops.
async fn until_stopped(mut stop: StopWatch, source: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        end = source => end,
        () = stop.stopped() => Ok(()),
    }
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("read /proc/sys/kernel/hostname")?;
    Ok(name.trim().to_string())
}
