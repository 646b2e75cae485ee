//! The event loop: turns socket reads, timer expiries, health verdicts and
//! signals into state-machine events, and carries out the actions that come
//! back through the adapters in `net`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::check::{self, CheckConfig};
use crate::cli::Cli;
use crate::net::NetError;
use crate::net::garp::Garp;
use crate::net::link::Link;
use crate::net::socket::{Destinations, VrrpSocket};
use crate::packet::{self, Advert, DropCounts};
use crate::state::{Action, Config, Event, Machine, State};
use crate::vip::{Vip, VipError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("--vip: {0}")]
    Vip(#[from] VipError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("--peer {0}: only IPv4 peers are supported so far")]
    Ipv6Peer(IpAddr),
    #[error("--check-url: {0}")]
    Check(#[from] reqwest::Error),
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

struct Io {
    vrid: u8,
    vip: Vip,
    vip_v4: Ipv4Addr,
    interval: Duration,
    link: Link,
    socket: VrrpSocket,
    garp: Garp,
}

impl Io {
    async fn carry_out(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let advert =
                        Advert { vrid: self.vrid, priority, interval: self.interval, addresses: vec![self.vip.addr] };
                    match self.socket.send(&advert).await {
                        Ok(()) => tracing::trace!(priority, "advert sent"),
                        Err(error) => tracing::warn!(priority, %error, "advert not sent"),
                    }
                }
                Action::AddVip => match self.link.add(&self.vip).await {
                    Ok(added) => tracing::info!(vip = %self.vip.addr, interface = %self.link.name, added, "VIP held"),
                    Err(error) => tracing::error!(vip = %self.vip.addr, %error, "could not add the VIP"),
                },
                Action::RemoveVip => match self.link.remove(&self.vip).await {
                    Ok(removed) => {
                        tracing::info!(vip = %self.vip.addr, interface = %self.link.name, removed, "VIP released")
                    }
                    Err(error) => tracing::error!(vip = %self.vip.addr, %error, "could not remove the VIP"),
                },
                Action::SendGratuitousArp => self.garp.burst(self.vip_v4),
                Action::ArmTimer { .. } | Action::DisarmTimer => {}
            }
        }
    }
}

/// Runs until SIGTERM or SIGINT, then leaves cleanly (priority 0, VIP removed).
pub async fn run(cli: Cli) -> Result<(), DaemonError> {
    let vip: Vip = cli.vip.parse()?;
    let IpAddr::V4(vip_v4) = vip.addr else { return Err(VipError::Ipv6(vip.addr).into()) };
    let destinations = if cli.peers.is_empty() {
        Destinations::Multicast
    } else {
        let mut v4 = Vec::new();
        for p in &cli.peers {
            match p {
                IpAddr::V4(a) => v4.push(*a),
                IpAddr::V6(_) => return Err(DaemonError::Ipv6Peer(*p)),
            }
        }
        Destinations::Unicast(v4)
    };
    let link = Link::open(&cli.interface, &vip).await?;
    let socket = VrrpSocket::open(&cli.interface, link.index, link.primary, destinations)?;
    let garp = Garp::open(link.index, link.mac)?;
    let mut health = match &cli.check_url {
        Some(url) => Some(check::spawn(CheckConfig {
            url: url.clone(),
            interval: cli.check_interval,
            fall: cli.check_fall,
            rise: cli.check_rise,
        })?),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tracing::info!(
        interface = %link.name, primary = %link.primary, vip = %vip.addr, vrid = cli.vrid, priority = cli.priority,
        advert_interval = ?cli.advert_interval, preempt = !cli.no_preempt, peers = ?cli.peers,
        check_url = ?cli.check_url, "vipd starting"
    );

    let config = Config {
        priority: cli.priority,
        advert_interval: cli.advert_interval,
        preempt: !cli.no_preempt,
        primary: IpAddr::V4(link.primary),
    };
    let mut machine = Machine::new(config, health.is_none());
    let io = Io { vrid: cli.vrid, vip, vip_v4, interval: cli.advert_interval, link, socket, garp };
    let origin = Instant::now();
    let mut drops = DropCounts::default();
    // Peers already warned about for a VIP list that differs from ours.
    let mut mismatched = std::collections::HashSet::new();
    let mut buf = vec![0u8; 2048];

    step(&mut machine, &io, origin, Event::Startup).await;
    loop {
        let timer = async {
            match machine.deadline() {
                Some(at) => tokio::time::sleep_until(origin + at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            () = timer => Event::Timer,
            r = io.socket.recv(&mut buf) => match r {
                Ok(n) => match packet::decode_ipv4(&buf[..n], cli.vrid) {
                    Ok(rx) if io.socket.is_own(rx.source) => continue,
                    Ok(rx) => {
                        if !rx.advert.addresses.contains(&io.vip.addr) && mismatched.insert(rx.source) {
                            tracing::warn!(
                                source = %rx.source, addresses = ?rx.advert.addresses, vip = %io.vip.addr,
                                "advert for our VRID does not list our VIP: check the peer's configuration"
                            );
                        }
                        tracing::trace!(source = %rx.source, priority = rx.advert.priority, "advert received");
                        Event::Advert { from: rx.source, priority: rx.advert.priority, interval: rx.advert.interval }
                    }
                    Err(reason) => {
                        let count = drops.count(reason);
                        // Other groups on the segment are normal; anything else
                        // is a misconfigured or hostile sender, warned about
                        // at counts 1, 2, 4, 8... so a flood cannot flood the log.
                        if reason != packet::Drop::Vrid && count.is_power_of_two() {
                            tracing::warn!(reason = reason.name(), count, total = drops.total(), "packet dropped");
                        } else {
                            tracing::debug!(reason = reason.name(), count, total = drops.total(), "packet dropped");
                        }
                        continue;
                    }
                },
                Err(error) => {
                    // E.g. the interface went away: do not spin on the error.
                    tracing::warn!(%error, "receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            Some(healthy) = recv_health(&mut health) => Event::Health(healthy),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        step(&mut machine, &io, origin, event).await;
    }
    tracing::info!("shutting down");
    step(&mut machine, &io, origin, Event::Shutdown).await;
    let counts: Vec<(&str, u64)> = packet::Drop::ALL.iter().map(|r| (r.name(), drops.get(*r))).collect();
    tracing::info!(dropped = ?counts, "stopped");
    Ok(())
}

async fn recv_health(rx: &mut Option<mpsc::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn step(machine: &mut Machine, io: &Io, origin: Instant, event: Event) {
    let before = machine.state();
    let now = origin.elapsed();
    let actions = machine.handle(now, event.clone());
    let after = machine.state();
    if before != after {
        tracing::info!(from = ?before, to = ?after, ?event, "state changed");
    }
    // Routine steps (a backup hearing the master, a master's periodic
    // advert) at trace; anything else at debug.
    let routine = matches!(event, Event::Timer if after == State::Master)
        || matches!(event, Event::Advert { .. } if after == State::Backup && before == State::Backup);
    if routine {
        tracing::trace!(?event, ?actions, "step");
    } else {
        tracing::debug!(?event, ?actions, "step");
    }
    io.carry_out(actions).await;
}
