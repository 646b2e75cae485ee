//! Passive health (outlier ejection): a target that refuses connections or
//! drops them unanswered several times in a row is skipped for a short
//! period that doubles each time it is ejected again, and then tried again.
//!
//! Why: between a backend dying and Consul saying so (a crash, a `docker
//! kill`, a node that vanished) every request picked for it pays a failed
//! attempt and a retry; after a few failures the router stops picking it.
//! Consul still rules: the state belongs to a route's target and is carried
//! across table rebuilds only while the instance stays in the table (see
//! [`crate::routes::Table::keep_stats`]), so an instance that Consul removes
//! and adds again (re-registered, health flipped) starts afresh, and when
//! every target of a route is ejected the proxy tries them anyway rather than
//! answering nothing (envoy's panic threshold).
//!
//! [`Outlier`] is the pure state machine, driven with explicit instants so
//! it is tested in virtual time; [`TargetHealth`] shares one between request
//! tasks, with an atomic flag that keeps the usual request (a healthy
//! target) away from the lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Failures in a row that eject a target.
pub const EJECT_AFTER: u32 = 3;
/// First ejection; each further one (without a success between) doubles it.
pub const EJECT_BASE: Duration = Duration::from_secs(1);
/// Longest ejection.
pub const EJECT_MAX: Duration = Duration::from_secs(30);

/// One target's passive-health state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outlier {
    /// Refusals and resets since the last success.
    consecutive: u32,
    /// Ejections since the last success (sets the next period's length).
    level: u32,
    /// Ejected until this instant.
    until: Option<Instant>,
}

impl Outlier {
    /// A refused or reset attempt at `now`. Returns the ejection period
    /// when this failure ejects the target: on reaching [`EJECT_AFTER`],
    /// and on every failure after that once the previous period has ended
    /// (the probe that readmitted it failed), each period twice the last.
    pub fn failure(&mut self, now: Instant) -> Option<Duration> {
        self.consecutive = self.consecutive.saturating_add(1);
        if self.consecutive < EJECT_AFTER || self.ejected(now) {
            return None;
        }
        let period = EJECT_BASE.saturating_mul(1u32 << self.level.min(16)).min(EJECT_MAX);
        self.level = self.level.saturating_add(1);
        self.until = Some(now + period);
        Some(period)
    }

    /// An attempt that got a response: the target is healthy again.
    pub fn success(&mut self) {
        *self = Outlier::default();
    }

    pub fn ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Whether there is anything to record on a success.
    fn clean(&self) -> bool {
        self.consecutive == 0 && self.level == 0
    }
}

/// What `/api/routes` shows of a target's passive health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthView {
    /// Skipped by the proxy until the period ends.
    pub ejected: bool,
    /// Milliseconds left of the ejection (0 when not ejected).
    pub ejected_for_ms: u64,
    /// Refusals and resets since the last success.
    pub failures: u32,
    /// Times the target was ejected while in the table.
    pub ejections: u64,
}

/// An [`Outlier`] shared by the request tasks of one route's target.
#[derive(Debug, Default)]
pub struct TargetHealth {
    state: Mutex<Outlier>,
    /// The state is not clean (failures counted or an ejection): only then
    /// do requests take the lock.
    troubled: AtomicBool,
    ejections: AtomicU64,
}

impl TargetHealth {
    /// Records a refused or reset attempt; the ejection period if it ejects.
    pub fn failure(&self, now: Instant) -> Option<Duration> {
        let mut s = self.lock();
        self.troubled.store(true, Ordering::Relaxed);
        let ejected = s.failure(now);
        if ejected.is_some() {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        ejected
    }

    /// Records an answered attempt: one atomic load for a healthy target.
    pub fn success(&self) {
        if !self.troubled.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.lock();
        if !s.clean() {
            s.success();
        }
        self.troubled.store(false, Ordering::Relaxed);
    }

    /// Whether the proxy should skip the target now. `now` is read only for
    /// a troubled target.
    pub fn ejected(&self, now: impl FnOnce() -> Instant) -> bool {
        self.troubled.load(Ordering::Relaxed) && self.lock().ejected(now())
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn view(&self, now: Instant) -> HealthView {
        let s = self.lock().clone();
        let left = s.until.map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        HealthView {
            ejected: s.ejected(now),
            ejected_for_ms: left.as_millis() as u64,
            failures: s.consecutive,
            ejections: self.ejections(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outlier> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn ejects_after_failures_in_a_row_and_a_success_forgives() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        assert_eq!(o.failure(t0), None);
        assert_eq!(o.failure(t0), None);
        o.success();
        assert_eq!(o.failure(t0), None);
        assert_eq!(o.failure(t0), None);
        assert_eq!(o.failure(t0), Some(EJECT_BASE), "third in a row");
        assert!(o.ejected(t0));
        assert!(o.ejected(t0 + secs(0.999)));
        assert!(!o.ejected(t0 + EJECT_BASE), "readmitted when the period ends");
    }

    #[test]
    fn a_failed_probe_ejects_again_for_twice_as_long_up_to_the_cap() {
        let mut now = Instant::now();
        let mut o = Outlier::default();
        for _ in 0..EJECT_AFTER - 1 {
            o.failure(now);
        }
        let mut periods = Vec::new();
        for _ in 0..8 {
            let p = o.failure(now).expect("ejects");
            periods.push(p.as_secs());
            // Failures reported while ejected (requests already under way)
            // do not extend it.
            assert_eq!(o.failure(now + p / 2), None);
            assert!(o.ejected(now + p / 2));
            now += p;
        }
        assert_eq!(periods, [1, 2, 4, 8, 16, 30, 30, 30]);
        // A success after readmission starts from the first period again.
        o.success();
        for _ in 0..EJECT_AFTER - 1 {
            assert_eq!(o.failure(now), None);
        }
        assert_eq!(o.failure(now), Some(EJECT_BASE));
    }

    #[test]
    fn shared_state_counts_ejections_and_shows_them() {
        let t0 = Instant::now();
        let h = TargetHealth::default();
        assert!(!h.ejected(|| unreachable!("a clean target reads no clock")));
        h.success();
        for _ in 0..EJECT_AFTER {
            h.failure(t0);
        }
        assert!(h.ejected(|| t0));
        assert_eq!(
            h.view(t0 + secs(0.25)),
            HealthView { ejected: true, ejected_for_ms: 750, failures: EJECT_AFTER, ejections: 1 }
        );
        assert!(!h.ejected(|| t0 + EJECT_BASE));
        h.success();
        assert!(!h.ejected(|| unreachable!("clean again")));
        assert_eq!(h.view(t0).ejections, 1, "the count stays");
        assert_eq!(h.view(t0).failures, 0);
    }
}
