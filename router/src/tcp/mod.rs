//! TCP routes at run time: one listener per port of the table's TCP routes
//! (already limited to `--tcp-ports` by discovery), opened when a route
//! appears and closed when its last route goes, while the connections it
//! accepted keep going (each runs in its own task, see [`conn`]).
//!
//! The table is read, not pushed: every [`POLL`] the manager compares the
//! published snapshot with the one it last saw (a pointer comparison), so
//! nothing in discovery has to know TCP listeners exist. A port that cannot
//! be bound (taken by another process) is logged once, shown as a problem
//! in `/api/problems` (see [`Unbound`]) and retried every [`BIND_RETRY`].
//!
//! On stop the listeners close at once and open connections get up to the
//! shutdown grace to end by themselves, as the HTTP listeners' do; those
//! still open then are closed with the process.

pub mod accept;
mod buf;
mod conn;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use router::routes::{Problem, Strategy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::discovery::{Shared, Snapshot};
pub use accept::ProxyIn;
pub use conn::passthrough;

/// How often the published table is looked at for new or gone ports.
pub const POLL: Duration = Duration::from_millis(50);
/// How often a port that could not be bound is tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// What every TCP connection needs.
pub struct Tcp {
    pub shared: Arc<Shared>,
    pub bind: IpAddr,
    pub strategy: Strategy,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub proxy_in: ProxyIn,
    /// Ports of routes that could not be listened on.
    pub unbound: Arc<Unbound>,
}

/// The TCP routes' ports that could not be listened on (taken by another
/// process, not permitted), with why: kept until the port opens or its
/// route goes, so an operator sees in `/api/problems` a route that cannot
/// be served, not only a line in the log.
#[derive(Debug, Default)]
pub struct Unbound(Mutex<BTreeMap<u16, String>>);

impl Unbound {
    fn set(&self, port: u16, why: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(port, why);
    }

    fn clear(&self, port: u16) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&port);
    }

    fn keep(&self, want: &BTreeSet<u16>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).retain(|p, _| want.contains(p));
    }

    /// One problem per port, in port order.
    pub fn problems(&self) -> Vec<Problem> {
        let ports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ports.iter().map(|(port, why)| Problem { source: format!("TCP route :{port}"), message: why.clone() }).collect()
    }
}

/// Keeps the listeners in step with the table until `stop`, then closes
/// them and waits up to `grace` for open connections.
pub async fn run(tcp: Arc<Tcp>, mut stop: watch::Receiver<bool>, grace: Duration) {
    let mut listeners: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
    let mut failed: BTreeMap<u16, Instant> = BTreeMap::new();
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut seen: Option<Arc<Snapshot>> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let snap = tcp.shared.snapshot.load_full();
        if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &snap)) && failed.is_empty() {
            continue;
        }
        let want: BTreeSet<u16> = snap.table.tcp_routes().iter().map(|r| r.port).collect();
        seen = Some(snap);
        listeners.retain(|&port, task| {
            let keep = want.contains(&port);
            if !keep {
                task.abort();
                tracing::info!(port, "TCP listener closed; its open connections continue");
            }
            keep
        });
        failed.retain(|port, _| want.contains(port));
        tcp.unbound.keep(&want);
        for port in want {
            if listeners.contains_key(&port) || failed.get(&port).is_some_and(|t| t.elapsed() < BIND_RETRY) {
                continue;
            }
            let addr = SocketAddr::new(tcp.bind, port);
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "TCP listener opened");
                    failed.remove(&port);
                    tcp.unbound.clear(port);
                    listeners.insert(port, tokio::spawn(accept_loop(tcp.clone(), l, port, open_tx.clone())));
                }
                Err(error) => {
                    if failed.insert(port, Instant::now()).is_none() {
                        tracing::warn!(%addr, %error, "cannot open a TCP route's port; retrying");
                    }
                    let every = humantime::format_duration(BIND_RETRY);
                    tcp.unbound.set(port, format!("cannot listen on {addr}: {error}; tried again every {every}"));
                }
            }
        }
    }
    for task in listeners.values() {
        task.abort();
    }
    drop(listeners);
    drop(open_tx);
    tokio::select! {
        _ = open_rx.recv() => tracing::info!("all TCP connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining TCP connections"),
    }
}

/// Accepts on one port until aborted; each connection gets its own task
/// holding `open` (the drain at shutdown waits for them).
async fn accept_loop(tcp: Arc<Tcp>, listener: TcpListener, port: u16, open: mpsc::Sender<()>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(conn::serve(tcp.clone(), stream, peer, port, open.clone()));
            }
            Err(error) => {
                tracing::warn!(port, %error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
