//! Rate limits for repeated warnings, so that a dead upstream under load
//! (one warning per request) or a hostile client cannot fill the disk: per
//! key, the first `burst` events of each window are logged, the rest only
//! counted, and the next logged one says how many were left out.
//! The window logic is pure (time is passed in) and unit-tested.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One key's window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
}

impl Window {
    pub fn new(now: Instant) -> Self {
        Window { start: now, passed: 0, suppressed: 0 }
    }

    /// Records an event at `now`: `Some(n)` when it should be logged, `n`
    /// being how many were left out since the last logged one.
    pub fn event(&mut self, now: Instant, window: Duration, burst: u32) -> Option<u64> {
        if now.saturating_duration_since(self.start) >= window {
            self.start = now;
            self.passed = 0;
        }
        if self.passed < burst {
            self.passed += 1;
            return Some(std::mem::take(&mut self.suppressed));
        }
        self.suppressed += 1;
        None
    }
}

/// Windows by key, at most `MAX_KEYS` of them (keys such as an upstream's
/// address come from outside; past the bound they share one window).
pub struct Limiter {
    window: Duration,
    burst: u32,
    keys: Mutex<HashMap<String, Window>>,
}

const MAX_KEYS: usize = 1024;
const OVERFLOW: &str = "\u{0}other";

impl Limiter {
    pub fn new(window: Duration, burst: u32) -> Self {
        Limiter { window, burst, keys: Mutex::new(HashMap::new()) }
    }

    /// Whether to log an event for `key` now; `Some(suppressed)` if so.
    pub fn allow(&self, key: &str) -> Option<u64> {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &str, now: Instant) -> Option<u64> {
        let Ok(mut keys) = self.keys.lock() else { return Some(0) };
        if !keys.contains_key(key) {
            keys.retain(|_, w| now.saturating_duration_since(w.start) < self.window || w.suppressed > 0);
        }
        let key = if keys.len() >= MAX_KEYS && !keys.contains_key(key) { OVERFLOW } else { key };
        keys.entry(key.to_string()).or_insert_with(|| Window::new(now)).event(now, self.window, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn a_burst_then_counted_then_reported() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        assert_eq!(w.event(t0, W, 3), Some(0));
        assert_eq!(w.event(t0, W, 3), Some(0));
        assert_eq!(w.event(t0 + Duration::from_secs(1), W, 3), Some(0));
        for _ in 0..1000 {
            assert_eq!(w.event(t0 + Duration::from_secs(2), W, 3), None);
        }
        // The next window: the first event says how many were left out.
        assert_eq!(w.event(t0 + W, W, 3), Some(1000));
        assert_eq!(w.event(t0 + W, W, 3), Some(0));
    }

    #[test]
    fn keys_are_separate_and_bounded() {
        let l = Limiter::new(W, 1);
        let t0 = Instant::now();
        assert_eq!(l.allow_at("a", t0), Some(0));
        assert_eq!(l.allow_at("a", t0), None);
        assert_eq!(l.allow_at("b", t0), Some(0), "another key has its own window");
        for i in 0..5000 {
            l.allow_at(&format!("k{i}"), t0);
        }
        assert!(l.keys.lock().unwrap().len() <= MAX_KEYS + 1);
        assert_eq!(l.allow_at("a", t0 + W), Some(1));
    }

    #[test]
    fn a_flood_logs_a_bounded_number_of_lines() {
        let l = Limiter::new(W, 5);
        let t0 = Instant::now();
        // 100,000 events over 60 s: 5 per 10 s window are logged.
        let logged =
            (0..100_000u64).filter(|i| l.allow_at("upstream", t0 + Duration::from_micros(i * 600)).is_some()).count();
        assert_eq!(logged, 30);
    }
}
