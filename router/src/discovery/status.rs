//! What the rest of the router reads from discovery: the published snapshot
//! (table + problems + overrides, swapped atomically so the proxy never takes
//! a lock) and the watch's health for `/health` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};

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
#[derive(Default)]
pub struct Status {
    loaded: AtomicBool,
    failing: AtomicUsize,
    errors: AtomicU64,
    last_error: ArcSwapOption<String>,
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

    pub(crate) fn mark_failing(&self, failing: bool) {
        if failing {
            self.failing.fetch_add(1, Ordering::AcqRel);
        } else {
            self.failing.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
