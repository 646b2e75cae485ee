//! The HTTP client: base address, ACL token, timeouts, and the one place
//! where requests are sent and answers are turned into values or [`Error`]s.

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
            token: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }
}

/// A Consul API client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    request_timeout: Duration,
}

impl Client {
    /// A client for the agent at `address` with default timeouts.
    pub fn new(address: &str) -> Result<Self, Error> {
        Self::with_config(Config::new(address))
    }

    pub fn with_config(config: Config) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidAddress { addr: config.address.clone(), reason };
        // Accept "127.0.0.1:8500" as Consul's own CLI does.
        let addr =
            if config.address.contains("://") { config.address.clone() } else { format!("http://{}", config.address) };
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
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Client { http, base, token: config.token, request_timeout: config.request_timeout })
    }

    /// The agent's base URL.
    pub fn address(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> Result<RequestBuilder, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::InvalidAddress { addr: format!("{}{}", self.base, path), reason: e.to_string() })?;
        let mut req = self.http.request(method, url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        Ok(req)
    }

    /// Sends a request and returns the raw answer, with non-2xx statuses
    /// (other than those in `allow`) turned into [`Error::Status`].
    async fn send(
        &self,
        req: RequestBuilder,
        endpoint: &str,
        allow: &[StatusCode],
    ) -> Result<reqwest::Response, Error> {
        let resp = req.send().await.map_err(|source| Error::Transport { endpoint: endpoint.to_string(), source })?;
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
        let req = self
            .request(Method::GET, path, opts.request_timeout(self.request_timeout))?
            .query(&opts.params())
            .query(extra);
        let resp = self.send(req, &endpoint, &[StatusCode::NOT_FOUND]).await?;
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
        let mut req = self.request(Method::PUT, path, self.request_timeout)?.query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(req, &endpoint, &[]).await?;
        resp.text().await.map_err(|source| Error::Transport { endpoint, source })
    }

    /// A PUT with a raw body (KV values) and query parameters (`cas`,
    /// `acquire`, `release`).
    pub(crate) async fn put_raw(&self, path: &str, query: &[(&str, String)], body: Vec<u8>) -> Result<String, Error> {
        let endpoint = format!("PUT /{path}");
        let req = self.request(Method::PUT, path, self.request_timeout)?.query(query).body(body);
        let resp = self.send(req, &endpoint, &[]).await?;
        resp.text().await.map_err(|source| Error::Transport { endpoint, source })
    }

    pub(crate) async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<(), Error> {
        let endpoint = format!("DELETE /{path}");
        let req = self.request(Method::DELETE, path, self.request_timeout)?.query(query);
        self.send(req, &endpoint, &[]).await?;
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
