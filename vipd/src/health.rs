//! Fall/rise counting of health probe results, pure: a verdict flips only
//! after `fall` failures or `rise` successes in a row, so one slow probe does
//! not move the VIP.

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
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.streak >= needed {
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
    use super::*;

    #[test]
    fn falls_after_fall_failures_in_a_row() {
        let mut t = Tracker::new(3, 2, true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert!(!t.healthy());
        assert_eq!(t.record(false), None, "no repeated verdict");
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut t = Tracker::new(2, 2, true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
    }

    #[test]
    fn rises_after_rise_successes_in_a_row() {
        let mut t = Tracker::new(1, 3, false);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert!(t.healthy());
    }

    #[test]
    fn zero_counts_mean_one() {
        let mut t = Tracker::new(0, 0, true);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), Some(true));
    }
}
