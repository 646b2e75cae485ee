//! The HTTP client: base address (and fallbacks), ACL token, timeouts, and
//! the one place where requests are sent and answers are turned into values
//! or [`Error`]s.
//!
//! Fallbacks: when the agent at the base address cannot be reached (the
//! connection is refused or cannot be made), or drops a read in flight
//! (its process died), the same request goes to each fallback address in
//! order, every time, so reads go back to the base address as soon as it
//! answers again. A request that timed out is not repeated (the caller's
//! wait decides), nor is a write that may have reached the agent. Only once
//! the base address has answered: fallbacks stand in for an agent that
//! died, not for one that has not started, so a daemon started before its
//! own agent waits for it (a returning edge node whose router read its
//! first table from the other servers took the VIP back while its own
//! Consul was still starting, and 2 of 9 returns then lost 24 and 104
//! requests). Blocking
//! indexes are raft indexes, the same on every server, so a blocking read
//! carries over to another server as it is. At a fallback a blocking read
//! waits at most [`FALLBACK_WAIT`], and one that gets no answer in time is
//! sent to the base address again: a fallback server that dies silently
//! (its node's link down) does not hold a read for the whole wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::blocking::{QueryOptions, Response};
use crate::error::Error;

/// How to reach Consul.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the agent, e.g. `http://127.0.0.1:8500`.
    pub address: String,
    /// Other agents or servers, asked in order when `address` cannot be
    /// reached (see the module doc).
    pub fallbacks: Vec<String>,
    /// ACL token sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// Time allowed for a TCP connect; short, so an unreachable Consul is
    /// reported quickly instead of hanging.
    pub connect_timeout: Duration,
    /// Time allowed for a non-blocking request, and the slack added on top
    /// of the wait time of a blocking one.
    pub request_timeout: Duration,
}

impl Config {
    pub fn new(address: impl Into<String>) -> Self {
        Config {
            address: address.into(),
            fallbacks: Vec::new(),
            token: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    pub fn fallbacks(mut self, fallbacks: Vec<String>) -> Self {
        self.fallbacks = fallbacks;
        self
    }
}

/// The longest wait of a blocking read sent to a fallback (and the slack
/// on top of it): see `get_opt`. A read parked at a fallback for the whole
/// wait would hang there if that server's node died silently (link down),
/// until the request timed out.
const FALLBACK_WAIT: Duration = Duration::from_secs(1);

/// Parses one Consul address into a base URL ending in `/`.
fn base_url(address: &str) -> Result<Url, Error> {
    let invalid = |reason: String| Error::InvalidAddress { addr: address.to_string(), reason };
    // Accept "127.0.0.1:8500" as Consul's own CLI does.
    let addr = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    let mut base = Url::parse(&addr).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?} is not http or https", base.scheme())));
    }
    if base.host().is_none() {
        return Err(invalid("no host".into()));
    }
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    Ok(base)
}

/// Whether a request that failed this way may go to the next address:
/// nothing reached the agent (connect), or a read lost its agent mid-way.
/// Never after a timeout: that is the caller's budget, spent.
fn try_next(error: &reqwest::Error, idempotent: bool) -> bool {
    !error.is_timeout() && (error.is_connect() || (idempotent && error.is_request()))
}

/// A Consul API client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The base address, then the fallbacks.
    bases: Arc<[Url]>,
    /// Which of `bases` answered last, so a change is logged once.
    answering: Arc<AtomicUsize>,
    /// Whether the base address has answered once (see the module doc).
    armed: Arc<AtomicBool>,
    token: Option<String>,
    request_timeout: Duration,
}

impl Client {
    /// A client for the agent at `address` with default timeouts.
    pub fn new(address: &str) -> Result<Self, Error> {
        Self::with_config(Config::new(address))
    }

    pub fn with_config(config: Config) -> Result<Self, Error> {
        let bases: Vec<Url> =
            std::iter::once(&config.address).chain(&config.fallbacks).map(|a| base_url(a)).collect::<Result<_, _>>()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::InvalidAddress { addr: config.address.clone(), reason: e.to_string() })?;
        Ok(Client {
            http,
            bases: bases.into(),
            answering: Arc::new(AtomicUsize::new(0)),
            armed: Arc::new(AtomicBool::new(false)),
            token: config.token,
            request_timeout: config.request_timeout,
        })
    }

    /// The agent's base URL.
    pub fn address(&self) -> &Url {
        &self.bases[0]
    }

    /// The address that answered the last request (the base address unless
    /// it could not be reached and a fallback answered).
    pub fn answering(&self) -> &Url {
        &self.bases[self.answering.load(Ordering::Relaxed).min(self.bases.len() - 1)]
    }

    /// The request to `path` at each address in turn: `build` adds the query
    /// and body.
    fn request(&self, base: &Url, method: Method, path: &str, timeout: Duration) -> Result<RequestBuilder, Error> {
        let url = base
            .join(path)
            .map_err(|e| Error::InvalidAddress { addr: format!("{base}{path}"), reason: e.to_string() })?;
        let mut req = self.http.request(method, url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        Ok(req)
    }

    /// Sends `method path` (`build` adds query and body) to the base address,
    /// then to each fallback while the failure allows it (see the module
    /// doc); returns the raw answer, with non-2xx statuses (other than those
    /// in `allow`) turned into [`Error::Status`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        timeout: impl Fn(bool) -> Duration,
        build: impl Fn(RequestBuilder, bool) -> RequestBuilder,
        allow: &[StatusCode],
    ) -> Result<reqwest::Response, Error> {
        let endpoint = format!("{method} /{path}");
        let idempotent = method == Method::GET;
        let mut tried = 0;
        let mut restarted = false;
        let resp = loop {
            let fallback = tried > 0;
            let req = build(self.request(&self.bases[tried], method.clone(), path, timeout(fallback))?, fallback);
            match req.send().await {
                Ok(resp) => break resp,
                // A short read at a fallback that got no answer: that server
                // died silently; start over at the base address, which may
                // be back.
                Err(source) if fallback && idempotent && source.is_timeout() && !restarted => {
                    tracing::debug!(address = %self.bases[tried], %endpoint, "no answer from the fallback; asking the base address again");
                    tried = 0;
                    restarted = true;
                }
                Err(source)
                    if tried + 1 < self.bases.len()
                        && self.armed.load(Ordering::Relaxed)
                        && try_next(&source, idempotent) =>
                {
                    tracing::debug!(address = %self.bases[tried], %endpoint, error = %source, "Consul unreachable; trying the next address");
                    tried += 1;
                }
                Err(source) => return Err(Error::Transport { endpoint, source }),
            }
        };
        if tried == 0 {
            self.armed.store(true, Ordering::Relaxed);
        }
        let was = self.answering.swap(tried, Ordering::Relaxed);
        if was != tried {
            if tried == 0 {
                tracing::info!(address = %self.bases[0], "Consul answers at its address again");
            } else {
                tracing::warn!(address = %self.bases[0], fallback = %self.bases[tried], "Consul does not answer at its address; using a fallback");
            }
        }
        let status = resp.status();
        if status.is_success() || allow.contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status { endpoint: endpoint.to_string(), status: status.as_u16(), body: body.trim().to_string() })
    }

    /// A read, blocking when `opts` says so. `None` when Consul answers 404
    /// (a missing KV key), still with the index so the caller can block on
    /// the key's creation.
    pub(crate) async fn get_opt<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, String)],
        opts: &QueryOptions,
    ) -> Result<Response<Option<T>>, Error> {
        let endpoint = format!("GET /{path}");
        // At a fallback a blocking read waits at most FALLBACK_WAIT, so it
        // returns to the base address soon after that answers again, and a
        // fallback that dies silently holds it ~2 s, not the full wait.
        let short = QueryOptions { wait: opts.wait.map(|w| w.min(FALLBACK_WAIT)), ..opts.clone() };
        let pick = |fallback: bool| if fallback { &short } else { opts };
        let (params, short_params) = (opts.params(), short.params());
        let timeout = |fallback: bool| {
            pick(fallback).request_timeout(if fallback { FALLBACK_WAIT } else { self.request_timeout })
        };
        let build =
            |r: RequestBuilder, fallback: bool| r.query(if fallback { &short_params } else { &params }).query(extra);
        let resp = self.send(Method::GET, path, timeout, build, &[StatusCode::NOT_FOUND]).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let index = header("X-Consul-Index").and_then(|v| v.parse().ok()).unwrap_or(0);
        let known_leader = header("X-Consul-KnownLeader").is_none_or(|v| v == "true");
        let last_contact_ms = header("X-Consul-LastContact").and_then(|v| v.parse().ok()).unwrap_or(0);
        let value = if resp.status() == StatusCode::NOT_FOUND {
            None
        } else {
            let bytes = resp.bytes().await.map_err(|source| Error::Transport { endpoint: endpoint.clone(), source })?;
            Some(serde_json::from_slice(&bytes).map_err(|source| Error::Decode { endpoint, source })?)
        };
        Ok(Response { value, index, known_leader, last_contact_ms })
    }

    /// A read where 404 is an error (an unknown endpoint, not a missing key).
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, String)],
        opts: &QueryOptions,
    ) -> Result<Response<T>, Error> {
        self.get_opt(path, extra, opts).await?.try_map(|value| {
            value.ok_or_else(|| Error::Status {
                endpoint: format!("GET /{path}"),
                status: 404,
                body: "not found".into(),
            })
        })
    }

    /// A PUT with an optional JSON body; the answer body is returned as text.
    pub(crate) async fn put_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<String, Error> {
        let endpoint = format!("PUT /{path}");
        let build = |r: RequestBuilder, _| {
            let r = r.query(query);
            match body {
                Some(b) => r.json(b),
                None => r,
            }
        };
        let resp = self.send(Method::PUT, path, |_| self.request_timeout, build, &[]).await?;
        resp.text().await.map_err(|source| Error::Transport { endpoint, source })
    }

    /// A PUT with a raw body (KV values) and query parameters (`cas`,
    /// `acquire`, `release`).
    pub(crate) async fn put_raw(&self, path: &str, query: &[(&str, String)], body: Vec<u8>) -> Result<String, Error> {
        let endpoint = format!("PUT /{path}");
        let resp = self
            .send(Method::PUT, path, |_| self.request_timeout, |r, _| r.query(query).body(body.clone()), &[])
            .await?;
        resp.text().await.map_err(|source| Error::Transport { endpoint, source })
    }

    pub(crate) async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<(), Error> {
        self.send(Method::DELETE, path, |_| self.request_timeout, |r, _| r.query(query), &[]).await?;
        Ok(())
    }

    /// The leader's address (`GET /v1/status/leader`); empty while there is none.
    pub async fn leader(&self) -> Result<String, Error> {
        Ok(self.get::<String>("v1/status/leader", &[], &QueryOptions::default()).await?.value)
    }
}

/// Percent-encodes one path segment (service names, check IDs with `:`).
/// A name that cannot be one segment is an error naming it: `.` and `..`
/// (Consul accepts a node named so) are dot-segments every URL parser
/// removes, even percent-encoded (`%2E`), so the request would go to
/// another endpoint; an empty name addresses the collection.
pub(crate) fn segment(s: &str) -> Result<String, Error> {
    if s.is_empty() {
        return Err(Error::InvalidName { name: s.to_string(), reason: "empty" });
    }
    key_segment(s)
}

/// Whether `name` can be one segment of a request path (see [`segment`]):
/// a caller that reads names from Consul skips the others with a problem.
pub fn usable_in_path(name: &str) -> bool {
    segment(name).is_ok()
}

/// One segment of a KV key: may be empty (`a//b`, or the root), never a
/// dot-segment.
fn key_segment(s: &str) -> Result<String, Error> {
    if s == "." || s == ".." {
        return Err(Error::InvalidName { name: s.to_string(), reason: "a dot-segment cannot be part of a URL path" });
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Percent-encodes a KV key, keeping its `/` separators.
pub(crate) fn key_path(key: &str) -> Result<String, Error> {
    Ok(key.split('/').map(key_segment).collect::<Result<Vec<_>, _>>()?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        assert_eq!(Client::new("http://127.0.0.1:8500").unwrap().address().as_str(), "http://127.0.0.1:8500/");
        assert_eq!(Client::new("127.0.0.1:8500").unwrap().address().as_str(), "http://127.0.0.1:8500/");
        assert_eq!(Client::new("http://consul:8500/prefix").unwrap().address().as_str(), "http://consul:8500/prefix/");
        assert!(matches!(Client::new("ftp://x"), Err(Error::InvalidAddress { .. })));
        assert!(matches!(Client::new("http://"), Err(Error::InvalidAddress { .. })));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("node:web:80").unwrap(), "node:web:80");
        assert_eq!(segment("a b/c?").unwrap(), "a%20b%2Fc%3F");
        assert_eq!(segment("a.b").unwrap(), "a.b");
        assert_eq!(segment("...").unwrap(), "...");
        for bad in ["", ".", ".."] {
            assert!(matches!(segment(bad), Err(Error::InvalidName { .. })), "{bad:?}");
        }
        assert_eq!(key_path("router/config").unwrap(), "router/config");
        assert_eq!(key_path("a b/c").unwrap(), "a%20b/c");
        assert_eq!(key_path("").unwrap(), "");
        assert!(key_path("a/../b").is_err());
        assert!(key_path("./a").is_err());
    }
}
