//! The event loop: turns socket reads, timer expiries, health verdicts and
//! signals into state-machine events, and carries out the actions that come
//! back through the adapters in `net`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit::StopWatch;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admin;
use crate::check::{self, CheckConfig};
use crate::cli::Cli;
use crate::inbox::Inbox;
use crate::net::NetError;
use crate::net::garp::Garp;
use crate::net::link::Link;
use crate::net::socket::{Destinations, VrrpSocket};
use crate::packet::Advert;
use crate::state::{Action, Config, Event, Machine, State};
use crate::status::{self, Status, Track};
use crate::vip::{Vip, VipError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("--vip: {0}")]
    Vip(#[from] VipError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("--peer {0}: only IPv4 peers are supported so far")]
    Ipv6Peer(IpAddr),
    #[error("--check-url/--track-url: {0}")]
    Check(#[from] reqwest::Error),
    #[error("{urls} --track-url but {weights} --track-weight: give one weight per URL, in order")]
    TrackWeights { urls: usize, weights: usize },
    #[error("--admin-addr {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin listener stopped")]
    AdminStopped,
    #[error("the health pollers of --check-url/--track-url stopped")]
    CheckEnded,
}

/// The adapters that carry out the state machine's actions (the link for
/// the VIP, the VRRP socket, gratuitous ARP) and what they send (VRID,
/// VIP, advert interval).
struct Adapters {
    vrid: u8,
    vip: Vip,
    vip_v4: Ipv4Addr,
    interval: Duration,
    link: Link,
    socket: VrrpSocket,
    garp: Garp,
    /// The gratuitous ARP burst under way, aborted when the VIP is given up,
    /// as keepalived sends none once it is not master: a node that was
    /// master for a moment (two nodes starting together) otherwise keeps
    /// announcing the VIP for the rest of its burst after stepping down, and
    /// a neighbour that takes a frame after the new master's keeps sending
    /// to the old MAC until it probes its ARP entry again (seconds). Suspected,
    /// not confirmed, behind 7.9 s of connect timeouts once in the edge
    /// cluster test (README, "The edge as a cluster").
    garp_burst: Option<tokio::task::AbortHandle>,
}

impl Adapters {
    /// Carries the actions out in order; returns how many adverts went out.
    async fn carry_out(&mut self, actions: Vec<Action>) -> u64 {
        let mut sent = 0;
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let advert =
                        Advert { vrid: self.vrid, priority, interval: self.interval, addresses: vec![self.vip.addr] };
                    match self.socket.send(&advert).await {
                        Ok(()) => {
                            sent += 1;
                            tracing::trace!(priority, "advert sent")
                        }
                        Err(error) => tracing::warn!(priority, %error, "advert not sent"),
                    }
                }
                Action::AddVip => match self.link.add(&self.vip).await {
                    Ok(added) => tracing::info!(vip = %self.vip.addr, interface = %self.link.name, added, "VIP held"),
                    Err(error) => tracing::error!(vip = %self.vip.addr, %error, "could not add the VIP"),
                },
                Action::RemoveVip => {
                    // A node giving the VIP up stops announcing it at once.
                    if let Some(burst) = self.garp_burst.take() {
                        burst.abort();
                    }
                    match self.link.remove(&self.vip).await {
                        Ok(removed) => {
                            tracing::info!(vip = %self.vip.addr, interface = %self.link.name, removed, "VIP released")
                        }
                        Err(error) => tracing::error!(vip = %self.vip.addr, %error, "could not remove the VIP"),
                    }
                }
                Action::SendGratuitousArp => {
                    if let Some(previous) = self.garp_burst.replace(self.garp.burst(self.vip_v4)) {
                        previous.abort();
                    }
                }
            }
        }
        sent
    }
}

/// Runs until `stop`, then leaves cleanly (priority 0, VIP removed); also
/// leaves, and fails, if the health pollers or the admin listener stop.
pub async fn run(cli: Cli, mut stop: StopWatch) -> Result<(), DaemonError> {
    let vip: Vip = cli.vip.parse()?;
    let IpAddr::V4(vip_v4) = vip.addr else { return Err(VipError::Ipv6(vip.addr).into()) };
    if cli.track_urls.len() != cli.track_weights.len() {
        return Err(DaemonError::TrackWeights { urls: cli.track_urls.len(), weights: cli.track_weights.len() });
    }
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
    let admin_listener = tokio::net::TcpListener::bind(cli.admin_addr)
        .await
        .map_err(|source| DaemonError::Admin { addr: cli.admin_addr, source })?;
    let checks = spawn_checks(&cli)?;
    tracing::info!(
        interface = %link.name, primary = %link.primary, vip = %vip.addr, vrid = cli.vrid, priority = cli.priority,
        advert_interval = ?cli.advert_interval, preempt = !cli.no_preempt, peers = ?cli.peers,
        check_url = ?cli.check_url, track_urls = ?cli.track_urls, track_weights = ?cli.track_weights,
        admin_addr = %cli.admin_addr, "vipd starting"
    );

    let config = Config {
        priority: cli.priority,
        advert_interval: cli.advert_interval,
        preempt: !cli.no_preempt,
        primary: IpAddr::V4(link.primary),
        track_weights: cli.track_weights.clone(),
    };
    let machine = Machine::new(config, cli.check_url.is_none());
    let shared: admin::Shared = Arc::new(Mutex::new(Status {
        interface: link.name.clone(),
        vip: vip.addr.to_string(),
        vrid: cli.vrid,
        state: status::state_name(machine.state()),
        configured_priority: cli.priority,
        priority: machine.priority(),
        check_url: cli.check_url.clone(),
        check_ok: machine.healthy(),
        tracks: cli
            .track_urls
            .iter()
            .zip(&cli.track_weights)
            .map(|(url, weight)| Track { url: url.clone(), weight: *weight, ok: true })
            .collect(),
        transitions: 0,
        adverts_sent: 0,
        adverts_received: 0,
        drops: Vec::new(),
    }));
    let mut admin_task = tokio::spawn(admin::serve(admin_listener, shared.clone()));
    let mut inbox = Inbox::new(cli.vrid, vip.addr, IpAddr::V4(link.primary));
    let adapters =
        Adapters { vrid: cli.vrid, vip, vip_v4, interval: cli.advert_interval, link, socket, garp, garp_burst: None };
    let mut lp = Loop { machine, adapters, origin: Instant::now(), shared };
    let mut checks = checks;
    let mut buf = vec![0u8; 2048];

    let has_checks = cli.check_url.is_some() || !cli.track_urls.is_empty();
    lp.step(Event::Startup).await;
    let end = loop {
        let timer = async {
            match lp.machine.deadline() {
                Some(at) => tokio::time::sleep_until(lp.origin + at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            () = timer => Event::Timer,
            r = lp.adapters.socket.recv(&mut buf) => match r {
                Ok(n) => {
                    let event = inbox.accept(&buf[..n]);
                    lp.received(&inbox);
                    match event {
                        Some(e) => e,
                        None => continue,
                    }
                }
                Err(error) => {
                    // E.g. the interface went away: do not spin on the error.
                    tracing::warn!(%error, "receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            event = checks.recv(), if has_checks => match event {
                Some(event) => event,
                None => break Err(DaemonError::CheckEnded),
            },
            r = &mut admin_task => {
                tracing::error!(result = ?r, "the admin listener stopped");
                break Err(DaemonError::AdminStopped);
            }
            () = stop.stopped() => break Ok(()),
        };
        lp.step(event).await;
    };
    tracing::info!("shutting down");
    lp.step(Event::Shutdown).await;
    admin_task.abort();
    let dropped = lp.shared.lock().map(|s| s.drops.clone()).unwrap_or_default();
    tracing::info!(?dropped, "stopped");
    end
}

/// Starts the `--check-url` poller and one per `--track-url`; their verdict
/// changes arrive as events on one channel.
fn spawn_checks(cli: &Cli) -> Result<mpsc::Receiver<Event>, DaemonError> {
    let (tx, rx) = mpsc::channel(16);
    let probe = |url: &String, initially| CheckConfig {
        url: url.clone(),
        interval: cli.check_interval,
        fall: cli.check_fall,
        rise: cli.check_rise,
        initially,
    };
    if let Some(url) = &cli.check_url {
        // Unhealthy until the router has answered: a node claims the VIP
        // only once it can serve.
        check::spawn(probe(url, false), tx.clone(), Event::Health)?;
    }
    for (index, url) in cli.track_urls.iter().enumerate() {
        // A track starts passing: it lowers a priority, it never keeps a
        // node out.
        check::spawn(probe(url, true), tx.clone(), move |ok| Event::Track { index, ok })?;
    }
    Ok(rx)
}

/// The state machine, the adapters that carry out its actions, and the
/// status the admin listener shows.
struct Loop {
    machine: Machine,
    adapters: Adapters,
    origin: Instant,
    shared: admin::Shared,
}

impl Loop {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts what the inbox saw.
    fn received(&self, inbox: &Inbox) {
        let mut s = self.status();
        s.adverts_received = inbox.received();
        s.set_drops(inbox.drops());
    }

    async fn step(&mut self, event: Event) {
        let before = self.machine.state();
        let now = self.origin.elapsed();
        let actions = self.machine.handle(now, event.clone());
        let after = self.machine.state();
        if before != after {
            tracing::info!(from = ?before, to = ?after, priority = self.machine.priority(), ?event, "state changed");
        }
        // Routine steps (a backup hearing the master, a master's periodic
        // advert) at trace; anything else at debug.
        let routine = matches!(event, Event::Timer if after == State::Master)
            || matches!(event, Event::Advert { .. } if after == State::Backup && before == State::Backup);
        if routine {
            tracing::trace!(?event, ?actions, deadline = ?self.machine.deadline(), "step");
        } else {
            tracing::debug!(?event, ?actions, deadline = ?self.machine.deadline(), "step");
        }
        let sent = self.adapters.carry_out(actions).await;
        let mut s = self.status();
        s.follow(&self.machine);
        s.adverts_sent += sent;
    }
}
