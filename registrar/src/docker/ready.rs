//! When a container is ready to be registered, and when it must leave.
//!
//! Registered too early (at `start`, before the application listens), a
//! container gets requests it refuses; deregistered too late (at `die`, after
//! it stopped accepting), it gets requests it can no longer serve. So:
//!
//! - A container with a Docker HEALTHCHECK is registered with a critical
//!   registrar-owned check until Docker says `healthy` (routers route only
//!   passing instances); one without is registered once each of its TCP
//!   ports accepts a connection at the container's own address, waiting
//!   at most `--ready-timeout` (then it is registered anyway, with a
//!   warning: a port the registrar cannot reach must not hide a container).
//! - `docker stop` first sends the container's stop signal (a `kill` event
//!   with that signal, registrator #685); the container is taken out of
//!   Consul then, while it finishes its in-flight requests, not at `die`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::workload::{Protocol, Workload};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// How often a port that refuses is tried again.
const POLL: Duration = Duration::from_millis(25);

/// Where the workload's TCP ports are probed: its own address and the
/// container port, even when the host port is what gets registered, since
/// Docker's userland proxy accepts on a published port whether or not the
/// application listens behind it. (A container's address on a bridge
/// network is reachable from its host, where the registrar runs.)
pub fn tcp_endpoints(w: &Workload) -> Vec<SocketAddr> {
    let Some(ip) = w.preferred_address() else { return Vec::new() };
    w.ports.iter().filter(|p| p.protocol == Protocol::Tcp).map(|p| SocketAddr::new(ip, p.container_port)).collect()
}

/// Whether the container has to be probed before it is registered.
pub fn needs_probe(w: &Workload, bound: Duration) -> bool {
    w.health.is_none() && !bound.is_zero() && !tcp_endpoints(w).is_empty()
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Every port accepted a connection.
    Accepting,
    /// The bound passed first.
    TimedOut,
}

/// Waits until every address accepts a TCP connection, at most `bound`.
pub async fn until_accepting(addrs: &[SocketAddr], bound: Duration) -> Readiness {
    let deadline = Instant::now() + bound;
    for addr in addrs {
        loop {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => break,
                Err(_) => return Readiness::TimedOut,
                Ok(Err(_)) if Instant::now() + POLL >= deadline => return Readiness::TimedOut,
                Ok(Err(_)) => tokio::time::sleep(POLL).await,
            }
        }
    }
    Readiness::Accepting
}

/// A signal's number from a `kill` event attribute (`15`) or a container's
/// `StopSignal` (`SIGTERM`, `TERM`, `15`); None for one not known here.
pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    // Linux numbering: containers are Linux processes whatever the client.
    let name = s.strip_prefix("SIG").unwrap_or(s);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => SIGKILL,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => SIGTERM,
        "WINCH" => 28,
        "PWR" => 30,
        _ => return None,
    })
}

/// Whether a `kill` event with `signal` starts the container's stop: its
/// stop signal (SIGTERM unless the image or `--stop-signal` says otherwise)
/// or SIGKILL. Other signals (SIGHUP to reload, SIGUSR1...) leave it be.
pub fn stops(signal: &str, stop_signal: Option<&str>) -> bool {
    let Some(sent) = signal_number(signal) else { return false };
    let stop = stop_signal.filter(|s| !s.is_empty()).and_then(signal_number).unwrap_or(SIGTERM);
    sent == stop || sent == SIGKILL
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_stop_signal_and_sigkill_stop_others_do_not() {
        assert!(stops("15", None));
        assert!(stops("15", Some("")));
        assert!(stops("9", None));
        assert!(stops("3", Some("SIGQUIT")));
        assert!(stops("3", Some("QUIT")));
        assert!(stops("3", Some("3")));
        assert!(!stops("15", Some("SIGQUIT")), "TERM is not this container's stop signal");
        assert!(!stops("1", None), "SIGHUP reloads");
        assert!(!stops("10", None));
        assert!(!stops("", None));
        assert!(!stops("TERMINATE", None));
    }

    #[tokio::test]
    async fn a_probe_waits_for_the_port_and_gives_up_at_the_bound() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        assert_eq!(until_accepting(&[addr], Duration::from_millis(100)).await, Readiness::TimedOut);
        let probe = tokio::spawn(async move { until_accepting(&[addr], Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!probe.is_finished(), "nothing listens yet");
        let _l = TcpListener::bind(addr).await.expect("bind again");
        assert_eq!(probe.await.expect("probe"), Readiness::Accepting);
    }
}
