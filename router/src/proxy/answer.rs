//! What the proxy answers, decided once for every path that forwards a
//! request (the fast path, the hyper path, and whatever joins them): the Host
//! sent upstream, which failed attempts are tried again on another target
//! (pingora's `RetryType`), what a failure does to the target's passive
//! health, and the proxy's own failure answers (502, 504, no target) with
//! their logs and metrics. A path only reports what happened
//! ([`Failure`]) and carries out the [`Verdict`].
//!
//! Failure answers name no upstream address and no OS error: those are for
//! the operator (the log line and `router_upstream_failures_total`), not for
//! the client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ratelimit::Limiter;
use crate::routes::{HostHeader, Route, Target};

/// Attempts per request at most: the first target and retries on others.
/// Every target of a route may be tried, up to this bound, so a deploy that
/// takes several instances down at once costs no request while one is left.
pub const MAX_ATTEMPTS: usize = 4;

/// Methods whose request may be sent twice (RFC 9110 section 9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

/// The Host header sent to `target`: the client's (a route without options
/// keeps it), the target's address (`host=dst`) or a fixed name, by the
/// target's own `host=` (options are per target, docs/router.md).
pub fn upstream_host<'a>(route: &'a Route, client_host: &'a str, target: &'a Target) -> &'a str {
    if route.fast.untouched {
        return client_host;
    }
    match &target.opts.host {
        HostHeader::Keep => client_host,
        HostHeader::Dst => target.url.authority().map(|a| a.as_str()).unwrap_or_default(),
        HostHeader::Name(n) => n,
    }
}

/// How far an attempt at one target got before it failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection: refused, unreachable, or the connect timed out. The
    /// request reached no application.
    Connect(String),
    /// Not sent: a reused connection was found closed before any byte of
    /// the request was written, or the request cannot be addressed to this
    /// target (its URL and the path make no valid URI). It reached no
    /// application.
    Unsent(String),
    /// The connection closed or was reset after the request was sent and
    /// before any byte of the response: the application may have acted on it.
    Unanswered(String),
    /// Like `Unanswered`, on a reused keep-alive connection: the upstream
    /// closed it as the request went out, which says nothing of its health.
    Stale(String),
    /// Anything else: a malformed or truncated response head, a read error
    /// other than a reset.
    Broken(String),
    /// No response head within `--upstream-timeout`.
    Timeout(Duration),
}

/// Whether a failed attempt may be repeated on another target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    /// Nothing reached an application: any method, while its body is still
    /// here to send again.
    Any,
    /// It may have reached one, no answer came: only an idempotent method.
    Idempotent,
    /// Never (a timeout: the request may still be running).
    Never,
}

impl Failure {
    pub fn retry_type(&self) -> RetryType {
        match self {
            Failure::Connect(_) | Failure::Unsent(_) => RetryType::Any,
            Failure::Unanswered(_) | Failure::Stale(_) => RetryType::Idempotent,
            Failure::Broken(_) | Failure::Timeout(_) => RetryType::Never,
        }
    }

    /// Counts against the target's passive health: it refused or dropped the
    /// connection. A slow answer or a malformed one is not that kind of
    /// outlier, and a kept-alive connection closed by the upstream is routine.
    fn ejects(&self) -> bool {
        matches!(self, Failure::Connect(_) | Failure::Unanswered(_))
    }

    fn kind(&self) -> FailureKind {
        match self {
            Failure::Connect(_) => FailureKind::Connect,
            Failure::Unsent(_) => FailureKind::Unsent,
            Failure::Unanswered(_) => FailureKind::Unanswered,
            Failure::Stale(_) => FailureKind::Stale,
            Failure::Broken(_) => FailureKind::Broken,
            Failure::Timeout(_) => FailureKind::Timeout,
        }
    }
}

/// What the request allows once an attempt failed.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// The method may be sent twice.
    pub idempotent: bool,
    /// The body (if any) can be sent again: none of it has been consumed.
    pub body: bool,
}

impl RetryType {
    pub fn allows(self, r: Replay) -> bool {
        r.body
            && match self {
                RetryType::Any => true,
                RetryType::Idempotent => r.idempotent,
                RetryType::Never => false,
            }
    }
}

/// What the path does after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pick another target ([`Attempts::next`]) and send again.
    Retry,
    /// Answer the client with this.
    Answer(OwnAnswer),
}

/// One of the proxy's own failure answers (502, 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnAnswer {
    pub status: u16,
    pub reason: &'static str,
    pub body: &'static str,
}

pub const BAD_GATEWAY: OwnAnswer = OwnAnswer { status: 502, reason: "Bad Gateway", body: "no upstream answered\n" };
pub const GATEWAY_TIMEOUT: OwnAnswer =
    OwnAnswer { status: 504, reason: "Gateway Timeout", body: "the upstream did not answer in time\n" };
pub const NO_TARGET: OwnAnswer =
    OwnAnswer { status: 502, reason: "Bad Gateway", body: "the route has no target with a weight above 0\n" };

/// The targets one request has tried, in order.
pub struct Attempts {
    tried: [usize; MAX_ATTEMPTS],
    n: usize,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts { tried: [usize::MAX; MAX_ATTEMPTS], n: 0 }
    }
}

impl Attempts {
    /// The next target to try: none tried yet, and not ejected unless every
    /// one left is. None when the bound is reached or no target is left.
    pub fn next<'r>(&mut self, route: &'r Route, strategy: crate::routes::Strategy) -> Option<(usize, &'r Target)> {
        if self.n == MAX_ATTEMPTS {
            return None;
        }
        let (i, t) = route.pick(strategy, &self.tried[..self.n])?;
        self.tried[self.n] = i;
        self.n += 1;
        Some((i, t))
    }

    /// Whether another attempt could follow the current one (a path copies
    /// what it would need to send again only then).
    pub fn more_possible(&self, route: &Route) -> bool {
        self.n < MAX_ATTEMPTS && self.n < route.targets.len()
    }

    /// An attempt at the last target [`Attempts::next`] gave got a response.
    pub fn answered(&self, route: &Route) {
        if let Some(h) = self.n.checked_sub(1).and_then(|i| route.health.get(self.tried[i])) {
            h.success();
        }
    }

    /// An attempt at the last target given failed: logs it (rate-limited
    /// per upstream), counts it, updates the target's passive health, and
    /// says what to do.
    pub fn failed(&self, route: &Route, target: &Target, failure: Failure, replay: Replay, to: &Report<'_>) -> Verdict {
        to.failures.count(failure.kind());
        let warn = || to.warnings.allow(target.url.authority().map_or("", |a| a.as_str()));
        if let Failure::Timeout(timeout) = failure {
            if let Some(suppressed) = warn() {
                tracing::warn!(route = %RouteName(route), target = %target.url, ?timeout, suppressed, "upstream timed out");
            }
            return Verdict::Answer(GATEWAY_TIMEOUT);
        }
        let retry = failure.retry_type().allows(replay) && self.more_possible(route);
        let kind = failure.kind().label();
        let (Failure::Connect(error)
        | Failure::Unsent(error)
        | Failure::Unanswered(error)
        | Failure::Stale(error)
        | Failure::Broken(error)) = &failure
        else {
            unreachable!("timeouts answered above")
        };
        if let Some(suppressed) = warn() {
            tracing::warn!(route = %RouteName(route), target = %target.url, %error, kind, retry, suppressed, "upstream failed");
        }
        if failure.ejects()
            && let Some(h) = self.n.checked_sub(1).and_then(|i| route.health.get(self.tried[i]))
            && let Some(period) = h.failure(Instant::now())
        {
            tracing::warn!(route = %RouteName(route), target = %target.url, ?period, "target ejected: refused or dropped connections in a row");
        }
        if retry {
            to.failures.retries.fetch_add(1, Ordering::Relaxed);
            return Verdict::Retry;
        }
        Verdict::Answer(BAD_GATEWAY)
    }

    /// The answer when no attempt could be made or every one failed.
    pub fn give_up(&self) -> OwnAnswer {
        if self.n == 0 { NO_TARGET } else { BAD_GATEWAY }
    }
}

/// Where failed attempts are reported: the counters, and the rate limit of
/// their warnings (a dead upstream under load fails every request).
pub struct Report<'a> {
    pub failures: &'a Failures,
    pub warnings: &'a Limiter,
}

/// Kinds of failed attempts, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Connect,
    Unsent,
    Unanswered,
    Stale,
    Broken,
    Timeout,
}

impl FailureKind {
    const ALL: [FailureKind; 6] = [
        FailureKind::Connect,
        FailureKind::Unsent,
        FailureKind::Unanswered,
        FailureKind::Stale,
        FailureKind::Broken,
        FailureKind::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Unsent => "unsent",
            FailureKind::Unanswered => "unanswered",
            FailureKind::Stale => "stale",
            FailureKind::Broken => "broken",
            FailureKind::Timeout => "timeout",
        }
    }
}

/// Counters of failed attempts and retries, for `/metrics`.
#[derive(Debug, Default)]
pub struct Failures {
    by_kind: [AtomicU64; FailureKind::ALL.len()],
    retries: AtomicU64,
}

impl Failures {
    fn count(&self, k: FailureKind) {
        self.by_kind[k as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `router_upstream_failures_total{kind}` and `router_retries_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP router_upstream_failures_total Failed attempts at a target, by how far they got.\n");
        out.push_str("# TYPE router_upstream_failures_total counter\n");
        for k in FailureKind::ALL {
            let n = self.by_kind[k as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "router_upstream_failures_total{{kind=\"{}\"}} {n}", k.label());
        }
        out.push_str("# HELP router_retries_total Requests sent again to another target after a failed attempt.\n");
        out.push_str("# TYPE router_retries_total counter\n");
        let _ = writeln!(out, "router_retries_total {}", self.retries.load(Ordering::Relaxed));
    }
}

/// `host/path`, the route's name in logs and metrics, formatted only when used.
pub struct RouteName<'a>(pub &'a Route);

impl std::fmt::Display for RouteName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0.host, self.0.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Strategy;
    use crate::routes::outlier::EJECT_AFTER;
    use crate::routes::{Instance, Table};

    fn table(n: usize, extra_tag: &str) -> Table {
        let inst: Vec<Instance> = (0..n)
            .map(|i| Instance {
                service: "web".into(),
                id: format!("w{i}"),
                address: "127.0.0.1".into(),
                port: 1000 + i as u16,
                tags: vec![format!("urlprefix-a.com/ {extra_tag}").trim().to_string()],
            })
            .collect();
        Table::build(&inst, "", "urlprefix-").0
    }

    const POST_WITH_BODY: Replay = Replay { idempotent: false, body: true };
    const GET: Replay = Replay { idempotent: true, body: true };
    const POST_BODY_GONE: Replay = Replay { idempotent: false, body: false };

    #[test]
    fn retry_rules() {
        let c = || Failure::Connect("refused".into());
        let rules = [
            (c(), POST_WITH_BODY, true),
            (c(), GET, true),
            (c(), POST_BODY_GONE, false),
            (Failure::Unsent("closed".into()), POST_WITH_BODY, true),
            (Failure::Unanswered("closed".into()), GET, true),
            (Failure::Unanswered("closed".into()), POST_WITH_BODY, false),
            (Failure::Stale("closed".into()), GET, true),
            (Failure::Stale("closed".into()), POST_WITH_BODY, false),
            (Failure::Broken("bad head".into()), GET, false),
            (Failure::Timeout(Duration::from_secs(1)), GET, false),
        ];
        for (f, replay, want) in rules {
            assert_eq!(f.retry_type().allows(replay), want, "{f:?} {replay:?}");
        }
    }

    #[test]
    fn every_target_is_tried_once_up_to_the_bound() {
        let t = table(6, "");
        let r = t.lookup("a.com", "/", false).expect("route");
        let failures = Failures::default();
        let warnings = Limiter::new(Duration::from_secs(1), 100);
        let m = Report { failures: &failures, warnings: &warnings };
        let mut a = Attempts::default();
        let mut seen = Vec::new();
        while let Some((i, target)) = a.next(r, Strategy::Rr) {
            seen.push(i);
            let v = a.failed(r, target, Failure::Connect("refused".into()), POST_WITH_BODY, &m);
            if v != Verdict::Retry {
                assert_eq!(v, Verdict::Answer(BAD_GATEWAY));
                break;
            }
        }
        assert_eq!(seen.len(), MAX_ATTEMPTS);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), MAX_ATTEMPTS, "no target twice");
        assert_eq!(failures.retries.load(Ordering::Relaxed), MAX_ATTEMPTS as u64 - 1);

        // Two targets: both tried, then 502.
        let t = table(2, "");
        let r = t.lookup("a.com", "/", false).expect("route");
        let mut a = Attempts::default();
        let (_, t0) = a.next(r, Strategy::Rr).expect("first");
        assert_eq!(a.failed(r, t0, Failure::Connect("x".into()), GET, &m), Verdict::Retry);
        let (_, t1) = a.next(r, Strategy::Rr).expect("second");
        assert_eq!(a.failed(r, t1, Failure::Connect("x".into()), GET, &m), Verdict::Answer(BAD_GATEWAY));
        assert!(a.next(r, Strategy::Rr).is_none());
    }

    #[test]
    fn timeouts_and_unusable_routes_answer_without_leaking_the_target() {
        let t = table(2, "");
        let r = t.lookup("a.com", "/", false).expect("route");
        let failures = Failures::default();
        let warnings = Limiter::new(Duration::from_secs(1), 100);
        let m = Report { failures: &failures, warnings: &warnings };
        let mut a = Attempts::default();
        let (_, t0) = a.next(r, Strategy::Rr).expect("first");
        let v = a.failed(r, t0, Failure::Timeout(Duration::from_millis(300)), GET, &m);
        assert_eq!(v, Verdict::Answer(GATEWAY_TIMEOUT));
        assert_eq!(Attempts::default().give_up(), NO_TARGET);
        for refusal in [BAD_GATEWAY, GATEWAY_TIMEOUT, NO_TARGET] {
            assert!(!refusal.body.contains("127.0.0.1") && !refusal.body.contains(':'), "{refusal:?}");
        }
        let mut out = String::new();
        failures.render(&mut out);
        assert!(out.contains("router_upstream_failures_total{kind=\"timeout\"} 1\n"), "{out}");
    }

    #[test]
    fn a_target_that_keeps_refusing_is_ejected_and_skipped() {
        let t = table(2, "");
        let r = t.lookup("a.com", "/", false).expect("route");
        let failures = Failures::default();
        let warnings = Limiter::new(Duration::from_secs(1), 100);
        let m = Report { failures: &failures, warnings: &warnings };
        // Fail target 0 EJECT_AFTER times (as the first attempt each time).
        let mut failures = 0;
        while failures < EJECT_AFTER {
            let mut a = Attempts::default();
            let (i, target) = a.next(r, Strategy::Rr).expect("target");
            if i == 0 {
                a.failed(r, target, Failure::Connect("refused".into()), GET, &m);
                failures += 1;
            } else {
                a.answered(r);
            }
        }
        for _ in 0..10 {
            let mut a = Attempts::default();
            assert_eq!(a.next(r, Strategy::Rr).map(|(i, _)| i), Some(1), "target 0 is ejected");
        }
        assert!(r.health[0].view(Instant::now()).ejected);
        // With target 1 excluded (tried), the ejected one is tried anyway.
        let mut a = Attempts::default();
        let (_, t1) = a.next(r, Strategy::Rr).expect("target 1");
        assert_eq!(a.failed(r, t1, Failure::Connect("refused".into()), GET, &m), Verdict::Retry);
        assert_eq!(a.next(r, Strategy::Rr).map(|(i, _)| i), Some(0));
    }

    #[test]
    fn upstream_host_follows_the_host_option() {
        let t = table(1, "");
        let r = t.lookup("a.com", "/", false).expect("route");
        assert_eq!(upstream_host(r, "a.com", &r.targets[0]), "a.com");
        let t = table(1, "host=dst");
        let r = t.lookup("a.com", "/", false).expect("route");
        assert_eq!(upstream_host(r, "a.com", &r.targets[0]), "127.0.0.1:1000");
        let t = table(1, "host=b.org");
        let r = t.lookup("a.com", "/", false).expect("route");
        assert_eq!(upstream_host(r, "a.com", &r.targets[0]), "b.org");
    }
}
