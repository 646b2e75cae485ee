//! Fall/rise counting of probe results, pure: a verdict flips only after
//! `fall` failures or `rise` successes in a row, so one slow probe does not
//! move the VIP. A refused connection is the exception: nothing listens on
//! the port, so the router is gone (a crash, a kill) and waiting for `fall`
//! probes would only add `fall` x interval to the outage; it fails the
//! verdict at once. A timeout or an error status stays ambiguous (a loaded
//! router, a slow answer) and is counted.

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Passed,
    /// An error status, a timeout, a reset: counted towards `fall`.
    Failed,
    /// Connection refused: nothing listens, fail at once.
    Refused,
}

/// Consecutive-result counter behind the health verdict.
#[derive(Debug, Clone)]
pub struct Tracker {
    fall: u32,
    rise: u32,
    healthy: bool,
    streak: u32,
}

impl Tracker {
    /// Starts with `healthy` as the verdict; `fall` and `rise` below 1 count as 1.
    pub fn new(fall: u32, rise: u32, healthy: bool) -> Self {
        Tracker { fall: fall.max(1), rise: rise.max(1), healthy, streak: 0 }
    }

    #[cfg(test)]
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe result; returns the new verdict when it changes.
    pub fn record(&mut self, probe: Probe) -> Option<bool> {
        let ok = probe == Probe::Passed;
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.streak >= needed || (self.healthy && probe == Probe::Refused) {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Probe::{Failed, Passed, Refused};
    use super::*;

    #[test]
    fn falls_after_fall_failures_in_a_row() {
        let mut t = Tracker::new(3, 2, true);
        assert_eq!(t.record(Failed), None);
        assert_eq!(t.record(Failed), None);
        assert_eq!(t.record(Failed), Some(false));
        assert!(!t.healthy());
        assert_eq!(t.record(Failed), None, "no repeated verdict");
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut t = Tracker::new(2, 2, true);
        assert_eq!(t.record(Failed), None);
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Failed), None);
        assert_eq!(t.record(Failed), Some(false));
    }

    #[test]
    fn rises_after_rise_successes_in_a_row() {
        let mut t = Tracker::new(1, 3, false);
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Failed), None);
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Passed), Some(true));
        assert!(t.healthy());
    }

    #[test]
    fn zero_counts_mean_one() {
        let mut t = Tracker::new(0, 0, true);
        assert_eq!(t.record(Failed), Some(false));
        assert_eq!(t.record(Passed), Some(true));
    }

    #[test]
    fn a_refused_connection_fails_at_once_and_counts_as_a_failure_after() {
        let mut t = Tracker::new(3, 2, true);
        assert_eq!(t.record(Refused), Some(false), "nothing listens: no fall count");
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Refused), None, "while unhealthy it breaks the rise streak");
        assert_eq!(t.record(Passed), None);
        assert_eq!(t.record(Passed), Some(true));
        assert_eq!(t.record(Failed), None, "an ambiguous failure still needs the fall count");
    }
}
