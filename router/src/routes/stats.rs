//! Per-route request counters, owned by the route itself so the request path
//! reaches them through the `&Route` it already has: no map lookup, no lock,
//! no allocation per request. A table rebuild hands each unchanged route the
//! counters of its predecessor ([`crate::routes::Table::keep_stats`]), so
//! counts survive updates.
//!
//! Status codes get a few lazily claimed slots (most routes only ever see one
//! or two codes). The first slot holds its counters inline, so the usual
//! request (the route's usual status) touches no memory beyond the route's
//! own counters, which matters in a table of 10,000 routes, where each such
//! touch is a cache miss; further codes get counters on the heap, so an idle
//! route stays small. A slot is a `OnceLock`: reading it is one atomic load,
//! and the first request with a new code claims a free one; a route that
//! sees more distinct codes than there are slots chains another block the
//! same way.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Status slots per block: 200 plus a few error codes covers nearly every route.
const SLOTS: usize = 4;

/// Counters of one (route, status).
#[derive(Debug)]
pub struct Series {
    pub status: u16,
    count: AtomicU64,
    sum_us: AtomicU64,
    /// Per range, not cumulative: one atomic add per observation; readers
    /// accumulate.
    buckets: [AtomicU64; BUCKETS.len()],
}

impl Series {
    fn new(status: u16) -> Series {
        Series { status, count: AtomicU64::new(0), sum_us: AtomicU64::new(0), buckets: Default::default() }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// Observations per bucket of [`BUCKETS`] (not cumulative).
    pub fn buckets(&self) -> [u64; BUCKETS.len()] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    fn observe(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every status a route has answered with, and its counters.
#[derive(Debug, Default)]
pub struct RouteStats {
    first: OnceLock<Series>,
    slots: [OnceLock<Box<Series>>; SLOTS - 1],
    more: OnceLock<Box<RouteStats>>,
}

impl RouteStats {
    /// Records one request. Allocates only the first time the route sees
    /// `status` (and not at all for its first status).
    pub fn observe(&self, status: u16, elapsed: Duration) {
        // A free slot is claimed for this status, unless a concurrent
        // request claims it first (for its status or the same one).
        let s = self.first.get_or_init(|| Series::new(status));
        if s.status == status {
            s.observe(elapsed);
            return;
        }
        for slot in &self.slots {
            let s = slot.get_or_init(|| Box::new(Series::new(status)));
            if s.status == status {
                s.observe(elapsed);
                return;
            }
        }
        self.more.get_or_init(Box::default).observe(status, elapsed);
    }

    /// The series seen so far, in the order their statuses first appeared.
    pub fn series(&self) -> Vec<&Series> {
        let heap = self.slots.iter().filter_map(|s| s.get().map(|b| &**b));
        let mut out: Vec<&Series> = self.first.get().into_iter().chain(heap).collect();
        if let Some(more) = self.more.get() {
            out.extend(more.series());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(s: &RouteStats) -> Vec<(u16, u64)> {
        s.series().iter().map(|x| (x.status, x.count())).collect()
    }

    #[test]
    fn one_series_per_status_in_first_seen_order() {
        let s = RouteStats::default();
        s.observe(200, Duration::from_millis(1));
        s.observe(502, Duration::from_millis(1));
        s.observe(200, Duration::from_millis(1));
        assert_eq!(statuses(&s), vec![(200, 2), (502, 1)]);
    }

    #[test]
    fn more_statuses_than_slots_chain_blocks() {
        let s = RouteStats::default();
        let codes: Vec<u16> = (0..SLOTS as u16 * 2 + 1).map(|i| 200 + i).collect();
        for _ in 0..3 {
            for &c in &codes {
                s.observe(c, Duration::from_micros(10));
            }
        }
        assert_eq!(statuses(&s), codes.iter().map(|&c| (c, 3)).collect::<Vec<_>>());
    }

    #[test]
    fn buckets_sum_and_overflow() {
        let s = RouteStats::default();
        s.observe(200, Duration::from_millis(3));
        s.observe(200, Duration::from_millis(300));
        s.observe(200, Duration::from_secs(20));
        let series = &s.series()[0];
        assert_eq!(series.count(), 3);
        assert_eq!(series.sum(), Duration::from_millis(20_303));
        let b = series.buckets();
        assert_eq!(b[2], 1, "3 ms in (2.5 ms, 5 ms]");
        assert_eq!(b[8], 1, "300 ms in (250 ms, 500 ms]");
        assert_eq!(b.iter().sum::<u64>(), 2, "20 s is above every bucket: only in count");
    }

    #[test]
    fn concurrent_first_hits_make_one_series_per_status() {
        let s = std::sync::Arc::new(RouteStats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..1000u16 {
                        s.observe(200 + i % 7, Duration::from_micros(5));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("observer thread");
        }
        let mut got = statuses(&s);
        got.sort_unstable();
        let want: Vec<(u16, u64)> =
            (0..7u16).map(|c| (200 + c, 4 * (0..1000u16).filter(|i| i % 7 == c).count() as u64)).collect();
        assert_eq!(got, want);
    }
}
