//! Per name: order now, or wait until when. The record each node reads
//! from KV (`state/<name>`) decides; the Consul lock then makes sure only
//! one node acts on an "order now".
//!
//! - No certificate yet: order.
//! - A certificate: renew `--acme-renew-before` ahead of its expiry; when
//!   that is not shorter than the certificate's whole lifetime (a CA
//!   issuing short-lived certificates), in its last third instead, so a
//!   fresh certificate is not re-ordered at once, forever.
//! - A failed order: retry after a delay doubling per consecutive failure
//!   from `retry_min` up to `retry_max`, and never before the CA's
//!   `Retry-After`. The certificate already served (if any) stays served.
//! - An order in progress (`pending`): order — the lock decides; it is
//!   free only when the node that was ordering let go or died.
//!
//! Times are Unix seconds, as stored in KV; all arithmetic saturates, so a
//! hostile `Retry-After` or a record from the far future cannot overflow.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The flags that shape the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub renew_before: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

/// Where the ordering of one name stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Order {
    /// Nothing in progress.
    Idle,
    /// A node holds the lock and is ordering since `since`; `attempts`
    /// orders failed in a row before this one (so the backoff keeps growing).
    Pending {
        since: u64,
        #[serde(default)]
        attempts: u32,
    },
    /// The last `attempts` orders failed; the next may start at `retry_at`.
    Failed { error: String, attempts: u32, retry_at: u64 },
}

/// The KV record of one name (`state/<name>`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The certificate stored under `certs/<name>.pem`, if any.
    pub cert: Option<Validity>,
    pub order: Order,
}

/// What to do about a name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try to take the name's lock and order.
    Order,
    /// Nothing before this time.
    WaitUntil(u64),
}

/// The state `/api/certs` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    Valid,
    Pending,
    Failed,
}

/// When a certificate should be renewed.
pub fn renew_at(v: Validity, policy: &Policy) -> u64 {
    let lifetime = v.not_after.saturating_sub(v.not_before);
    let before = policy.renew_before.as_secs();
    let margin = if before < lifetime { before } else { lifetime / 3 };
    v.not_after.saturating_sub(margin)
}

/// The delay after the `attempts`-th consecutive failure (1 for the first).
pub fn retry_delay(attempts: u32, policy: &Policy) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    policy.retry_min.saturating_mul(1 << doublings).min(policy.retry_max.max(policy.retry_min))
}

/// What to do about a name (`None`: no record in KV yet).
pub fn next(record: Option<&Record>, now: u64, policy: &Policy) -> Action {
    let Some(r) = record else { return Action::Order };
    match (&r.order, r.cert) {
        (Order::Failed { retry_at, .. }, _) if now < *retry_at => Action::WaitUntil(*retry_at),
        (Order::Failed { .. } | Order::Pending { .. }, _) | (Order::Idle, None) => Action::Order,
        (Order::Idle, Some(v)) => {
            let at = renew_at(v, policy);
            if now >= at { Action::Order } else { Action::WaitUntil(at) }
        }
    }
}

/// The record once this node holds the lock and starts ordering.
pub fn started(prev: Option<&Record>, now: u64) -> Record {
    Record { cert: prev.and_then(|r| r.cert), order: Order::Pending { since: now, attempts: failures(prev) } }
}

/// Failed orders in a row so far.
fn failures(r: Option<&Record>) -> u32 {
    match r.map(|r| &r.order) {
        Some(Order::Failed { attempts, .. } | Order::Pending { attempts, .. }) => *attempts,
        _ => 0,
    }
}

/// The record after a failed order: the certificate served so far stays,
/// the attempt count grows, the retry waits for the later of the backoff
/// and the CA's `Retry-After`.
pub fn failed(
    prev: Option<&Record>,
    error: String,
    retry_after: Option<Duration>,
    now: u64,
    policy: &Policy,
) -> Record {
    let attempts = failures(prev).saturating_add(1);
    let wait = retry_delay(attempts, policy).max(retry_after.unwrap_or_default());
    Record {
        cert: prev.and_then(|r| r.cert),
        order: Order::Failed { error, attempts, retry_at: now.saturating_add(wait.as_secs()) },
    }
}

/// A `Retry-After` header's wait (RFC 9110 §10.2.3): delay seconds or an
/// HTTP date (a date in the past: no wait). `None` for anything else.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The record after a certificate was issued and stored.
pub fn issued(cert: Validity) -> Record {
    Record { cert: Some(cert), order: Order::Idle }
}

/// The state shown for a record, with the CA's error when failed.
pub fn shown(record: Option<&Record>, now: u64) -> (Shown, Option<&str>) {
    match record.map(|r| (&r.order, r.cert)) {
        Some((Order::Failed { error, .. }, _)) => (Shown::Failed, Some(error)),
        Some((Order::Idle, Some(v))) if now < v.not_after => (Shown::Valid, None),
        _ => (Shown::Pending, None),
    }
}

#[cfg(test)]
mod tests;
