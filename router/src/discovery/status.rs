//! What the rest of the router reads from discovery: the published snapshot
//! (table + problems + overrides, swapped atomically so the proxy never takes
//! a lock) and how well Consul is heard (watches, the liveness probe, the
//! leader as the answering server sees it) for `/health/consul`,
//! `/api/status` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use crate::routes::{Problem, Table};

/// One published routing state. Immutable; replaced as a whole.
pub struct Snapshot {
    pub table: Table,
    pub problems: Vec<Problem>,
    /// The overrides text the table was built with (shown by the UI).
    pub overrides: String,
    /// Healthy routed instances the table was built from.
    pub instances: usize,
    /// Unix time of the build in milliseconds; 0 for the initial empty state.
    pub built_unix_ms: u64,
}

impl Snapshot {
    pub fn empty() -> Self {
        Snapshot {
            table: Table::empty(),
            problems: Vec::new(),
            overrides: String::new(),
            instances: 0,
            built_unix_ms: 0,
        }
    }
}

/// Shared between discovery (writer) and the proxy and admin (readers).
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub status: Status,
    /// The page answered to unrouted requests (`--no-route-html-key`);
    /// empty: a plain-text line instead.
    pub no_route_html: ArcSwap<String>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            status: Status::default(),
            no_route_html: ArcSwap::from_pointee(String::new()),
        })
    }
}

/// Counters and flags describing the Consul watches.
pub struct Status {
    loaded: AtomicBool,
    failing: AtomicUsize,
    errors: AtomicU64,
    last_error: ArcSwapOption<String>,
    /// The liveness probe's verdict: the agent answered recently.
    reachable: AtomicBool,
    /// Unix ms when an answer last showed a leader with recent contact
    /// (0: never).
    leader_seen_unix_ms: AtomicU64,
    /// `X-Consul-LastContact` of the most recent answer.
    last_contact_ms: AtomicU64,
    /// Bumped when the probe finds the agent gone silent: watches abandon
    /// their in-flight blocking reads, which could otherwise hang until
    /// twice `--consul-wait`.
    lost: watch::Sender<u64>,
    /// Bumped when the probe sees the leader it last saw replaced (or gone):
    /// watches abandon their in-flight blocking reads and send them again,
    /// because a read the agent forwarded to that leader stays parked there
    /// (see `watch.rs`).
    leader_lost: watch::Sender<u64>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            loaded: AtomicBool::new(false),
            failing: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            reachable: AtomicBool::new(true),
            leader_seen_unix_ms: AtomicU64::new(0),
            last_contact_ms: AtomicU64::new(0),
            lost: watch::Sender::new(0),
            leader_lost: watch::Sender::new(0),
        }
    }
}

impl Status {
    /// True once a table built from Consul has been published.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// How many watches are failing right now (0 = all alive).
    pub fn failing(&self) -> usize {
        self.failing.load(Ordering::Acquire)
    }

    /// Failed Consul reads since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The most recent Consul error, for `/health`.
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.last_error.load_full()
    }

    pub(crate) fn record_error(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_error.store(Some(Arc::new(msg)));
    }

    /// Whether the liveness probe last found the agent answering.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Records the probe's verdict; a change to unreachable tells every
    /// watch to abandon its read.
    pub(crate) fn set_reachable(&self, reachable: bool) {
        let was = self.reachable.swap(reachable, Ordering::AcqRel);
        if was && !reachable {
            self.lost.send_modify(|n| *n += 1);
        }
    }

    /// Notified each time the agent is found silent.
    pub(crate) fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    /// Tells every watch that the leader the probe saw is gone.
    pub(crate) fn lose_leader(&self) {
        self.leader_lost.send_modify(|n| *n += 1);
    }

    /// Notified each time the probe sees the leader replaced or gone.
    pub(crate) fn leader_lost(&self) -> watch::Receiver<u64> {
        self.leader_lost.subscribe()
    }

    /// Records an answer's view of the leader.
    pub(crate) fn record_view(&self, fresh: bool, last_contact_ms: u64) {
        self.last_contact_ms.store(last_contact_ms, Ordering::Relaxed);
        if fresh {
            self.saw_leader();
        }
    }

    /// An answer (or the probe) showed a leader in contact just now.
    pub(crate) fn saw_leader(&self) {
        self.leader_seen_unix_ms.store(unix_ms(), Ordering::Release);
    }

    /// Why this router's view of Consul cannot be trusted right now, for
    /// `/health/consul` (see [`consul_problem`]).
    pub fn consul_problem(&self, max_stale: Duration) -> Option<String> {
        consul_problem(self.reachable(), self.failing(), self.leader_seen_ago(), max_stale)
    }

    /// `X-Consul-LastContact` of the most recent answer, in milliseconds.
    pub fn last_contact_ms(&self) -> u64 {
        self.last_contact_ms.load(Ordering::Relaxed)
    }

    /// How long ago an answer last showed a leader in recent contact; `None`
    /// before the first.
    pub fn leader_seen_ago(&self) -> Option<Duration> {
        match self.leader_seen_unix_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_millis(unix_ms().saturating_sub(at))),
        }
    }

    pub(crate) fn mark_failing(&self, failing: bool) {
        if failing {
            self.failing.fetch_add(1, Ordering::AcqRel);
        } else {
            self.failing.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The rule behind `/health/consul`: the agent answers the liveness probe,
/// no watch is failing, and a leader was seen within `max_stale`. A leader
/// election (seconds with `raft_multiplier = 1`) stays inside `max_stale`, so
/// it fails no node; a node whose Consul is cut off fails alone.
pub fn consul_problem(
    reachable: bool,
    failing: usize,
    leader_seen_ago: Option<Duration>,
    max_stale: Duration,
) -> Option<String> {
    if !reachable {
        return Some("the Consul agent does not answer".into());
    }
    if failing > 0 {
        return Some(format!("{failing} Consul watch(es) failing"));
    }
    match leader_seen_ago {
        None => Some("no Consul leader seen yet".into()),
        Some(ago) if ago > max_stale => {
            Some(format!("no Consul leader in contact for {}", humantime::format_duration(round_ms(ago))))
        }
        Some(_) => None,
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn consul_is_trusted_only_while_reachable_alive_and_led_recently() {
        let recent = Some(Duration::from_secs(1));
        assert_eq!(consul_problem(true, 0, recent, MAX), None);
        assert_eq!(consul_problem(true, 0, Some(MAX), MAX), None, "an election shorter than max_stale is fine");
        assert!(consul_problem(false, 0, recent, MAX).is_some_and(|p| p.contains("does not answer")));
        assert!(consul_problem(true, 2, recent, MAX).is_some_and(|p| p.contains("2 Consul watch")));
        assert!(consul_problem(true, 0, None, MAX).is_some_and(|p| p.contains("no Consul leader seen yet")));
        let p = consul_problem(true, 0, Some(Duration::from_millis(12_345)), MAX);
        assert_eq!(p.as_deref(), Some("no Consul leader in contact for 12s 345ms"));
    }

    #[test]
    fn losing_the_agent_wakes_the_watches_once() {
        let s = Status::default();
        let mut lost = s.lost();
        s.set_reachable(true);
        assert!(!lost.has_changed().unwrap_or(true), "reachable again is no news");
        s.set_reachable(false);
        assert!(lost.has_changed().unwrap_or(false));
        lost.mark_unchanged();
        s.set_reachable(false);
        assert!(!lost.has_changed().unwrap_or(true), "still unreachable: not told again");
        assert!(!s.reachable());
    }
}
