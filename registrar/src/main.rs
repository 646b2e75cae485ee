//! registrar: wires the sources to the sync loop (see lib.rs for the data
//! flow and cli.rs for the flags). Errors become exit codes only here.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use registrar::cli::{Cli, Source};
use registrar::conventions::Options;
use registrar::{docker, kubernetes, sync};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let node = match cli.node_name.clone().filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => hostname().context("no --node-name and the hostname is unreadable")?,
    };
    let consul = consul::Client::with_config(consul::Config::new(&cli.consul_addr).token(cli.consul_token.clone()))
        .context("Consul address")?;
    info!(node = %node, consul = %cli.consul_addr, source = ?cli.source, "registrar starting");

    // Sources -> one channel -> the sync loop. Each source is a sender.
    let (tx, rx) = mpsc::channel(1024);
    let mut sources = JoinSet::new();
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
        sources.spawn(async move {
            docker::run(host, settings, ready_timeout, tx).await;
            Ok::<_, anyhow::Error>(())
        });
    }
    if matches!(cli.source, Source::Kubernetes | Source::All) {
        let (node, tx) = (node.clone(), tx.clone());
        sources.spawn(async move { kubernetes::run(node, tx).await.context("kubernetes source") });
    }
    drop(tx);

    let config = sync::Config {
        node,
        options: Options { extra_tags: cli.tags.clone() },
        resync: Duration::from_secs(cli.resync.max(1)),
    };
    let sync = tokio::spawn(sync::Sync::new(consul, config).run(rx));

    tokio::select! {
        Some(done) = sources.join_next() => {
            let result = done.context("source task panicked")?;
            if let Err(e) = &result {
                error!(error = %format!("{e:#}"), "a workload source stopped");
            }
            result?;
        }
        _ = sync => {}
        _ = shutdown() => info!("stopping; registrations stay until the next start reconciles them"),
    }
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("read /proc/sys/kernel/hostname")?;
    Ok(name.trim().to_string())
}
