//! Blocking queries: the index/wait protocol Consul uses for change
//! notification.
//!
//! A read sent with `?index=N&wait=W` returns as soon as the data's index
//! moves past `N`, or after `W` (plus up to W/16 of jitter Consul adds) with
//! the same data. The rules for what to send next are easy to get wrong, so
//! they live here, free of I/O, in [`WatchIndex`].

use std::time::Duration;

/// Options for one read.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Block until the index moves past this value; 0 returns at once.
    pub index: u64,
    /// How long Consul may hold the request; `None` uses Consul's default (5 min).
    pub wait: Option<Duration>,
    /// Allow any server to answer (no leader round trip), and answer without a leader.
    pub stale: bool,
}

impl QueryOptions {
    /// A blocking read after `index`, held at most `wait`.
    pub fn blocking(index: u64, wait: Duration) -> Self {
        QueryOptions { index, wait: Some(wait), stale: false }
    }

    /// A blocking read any server may answer from its own state: it survives
    /// a leader election (a follower answers at once instead of forwarding to
    /// a leader that may have vanished); judge freshness from
    /// [`Response::known_leader`] and [`Response::last_contact_ms`].
    pub fn stale_blocking(index: u64, wait: Duration) -> Self {
        QueryOptions { index, wait: Some(wait), stale: true }
    }

    /// Query-string pairs for these options.
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.index > 0 {
            p.push(("index", self.index.to_string()));
            if let Some(w) = self.wait {
                p.push(("wait", format!("{}ms", w.as_millis().max(1))));
            }
        }
        if self.stale {
            p.push(("stale", String::new()));
        }
        p
    }

    /// How long the HTTP request itself may take: Consul holds it up to
    /// `wait` plus `wait/16` of jitter, and we add slack for the answer.
    pub(crate) fn request_timeout(&self, base: Duration) -> Duration {
        match (self.index, self.wait) {
            (0, _) => base,
            (_, None) => Duration::from_secs(5 * 60) + Duration::from_secs(5 * 60) / 16 + base,
            (_, Some(w)) => w + w / 16 + base,
        }
    }
}

/// A value read from Consul with the metadata of the read.
#[derive(Debug, Clone)]
pub struct Response<T> {
    pub value: T,
    /// `X-Consul-Index`: pass it back as [`QueryOptions::index`] to block on changes.
    pub index: u64,
    /// `X-Consul-KnownLeader`: false when the answering server has no leader
    /// (the data may be stale; a router keeps its last good table then).
    pub known_leader: bool,
    /// `X-Consul-LastContact`: milliseconds since the server heard from the leader.
    pub last_contact_ms: u64,
}

impl<T> Response<T> {
    /// The same read's metadata with the value transformed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            value: f(self.value),
            index: self.index,
            known_leader: self.known_leader,
            last_contact_ms: self.last_contact_ms,
        }
    }

    /// [`map`](Self::map) with a transformation that can fail.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Response<U>, E> {
        let Response { value, index, known_leader, last_contact_ms } = self;
        Ok(Response { value: f(value)?, index, known_leader, last_contact_ms })
    }
}

/// The index to send on the next blocking read, maintained by Consul's rules:
/// - an index that goes backwards resets the watch to 0, so the next read
///   returns at once and re-reads everything; the answer that went backwards
///   is [`Step::Behind`], not data to use: it comes from a server behind the
///   one that gave the held index (a restarted one still catching up), or
///   from a cluster rebuilt with a lower index, which the re-read from 0
///   then follows;
/// - an index of 0 from Consul is taken as 1, so a read is never sent with
///   index 0 by accident, which would turn it into a busy loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchIndex(u64);

/// What one answer's index means for the data it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The data may have changed (the index moved, or this is the first read).
    Changed,
    /// Same index: nothing changed.
    Unchanged,
    /// The index went backwards: the watch is reset to 0 and the data is
    /// older than what the caller holds.
    Behind,
}

impl WatchIndex {
    pub fn new() -> Self {
        WatchIndex(0)
    }

    /// The index to send now.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Take the index of a response (see [`Step`]).
    pub fn advance(&mut self, returned: u64) -> Step {
        let prev = self.0;
        if returned < prev {
            self.0 = 0;
            return Step::Behind;
        }
        self.0 = returned.max(1);
        if prev == 0 || self.0 != prev { Step::Changed } else { Step::Unchanged }
    }

    /// Forget the index, so the next read returns at once (after an error).
    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_is_a_change() {
        let mut w = WatchIndex::new();
        assert_eq!(w.get(), 0);
        assert_eq!(w.advance(10), Step::Changed);
        assert_eq!(w.get(), 10);
    }

    #[test]
    fn same_index_is_no_change() {
        let mut w = WatchIndex::new();
        w.advance(10);
        assert_eq!(w.advance(10), Step::Unchanged);
        assert_eq!(w.get(), 10);
    }

    #[test]
    fn moving_forward_is_a_change() {
        let mut w = WatchIndex::new();
        w.advance(10);
        assert_eq!(w.advance(11), Step::Changed);
        assert_eq!(w.get(), 11);
    }

    #[test]
    fn going_backwards_resets_to_zero() {
        let mut w = WatchIndex::new();
        w.advance(10);
        assert_eq!(w.advance(3), Step::Behind);
        assert_eq!(w.get(), 0, "next read must not block");
    }

    #[test]
    fn zero_from_consul_becomes_one() {
        let mut w = WatchIndex::new();
        assert_eq!(w.advance(0), Step::Changed);
        assert_eq!(w.get(), 1);
        assert_eq!(w.advance(1), Step::Unchanged);
    }

    #[test]
    fn reset_forgets() {
        let mut w = WatchIndex::new();
        w.advance(10);
        w.reset();
        assert_eq!(w.get(), 0);
    }

    #[test]
    fn params_only_block_with_an_index() {
        let q = QueryOptions { index: 0, wait: Some(Duration::from_secs(1)), stale: false };
        assert!(q.params().is_empty());
        let q = QueryOptions::blocking(7, Duration::from_millis(1500));
        assert_eq!(q.params(), vec![("index", "7".into()), ("wait", "1500ms".into())]);
        let q = QueryOptions { stale: true, ..Default::default() };
        assert_eq!(q.params(), vec![("stale", String::new())]);
        let q = QueryOptions::stale_blocking(7, Duration::from_secs(1));
        assert_eq!(q.params(), vec![("index", "7".into()), ("wait", "1000ms".into()), ("stale", String::new())]);
    }

    #[test]
    fn request_timeout_covers_wait_and_jitter() {
        let base = Duration::from_secs(2);
        assert_eq!(QueryOptions::default().request_timeout(base), base);
        let q = QueryOptions::blocking(5, Duration::from_secs(16));
        assert_eq!(q.request_timeout(base), Duration::from_secs(16 + 1 + 2));
        let q = QueryOptions { index: 5, wait: None, stale: false };
        assert!(q.request_timeout(base) > Duration::from_secs(300));
    }
}
