//! The proxy: finds the route for a request in the published table (one
//! atomic load, no lock), applies the route's options, and forwards to one of
//! its targets over a pooled keep-alive client, streaming bodies both ways.
//!
//! Outcomes docs/router.md fixes: no route 404, client refused by `allow`/`deny`
//! 403, every tried target failed 502, no response headers within the upstream
//! timeout 504. An idempotent request without a body whose connect fails is
//! retried once on another target, so one dead instance costs no GET.

mod client;
pub mod fast;
mod framing;
mod headers;
mod tunnel;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};

use crate::cli::Strategy;
use crate::discovery::Shared;
use crate::metrics::Metrics;
use crate::routes::{HostHeader, Route};
use crate::serve::{Conn, RespBody, full};
use client::UpBody;
pub use client::Upstreams;
use headers::ClientInfo;

pub struct Proxy {
    pub shared: Arc<Shared>,
    pub upstreams: Upstreams,
    pub strategy: Strategy,
    pub upstream_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// Idle upstream connections of the fast path.
    pub pool: fast::Pool,
    pub connect_timeout: Duration,
    /// How long a client has for each request head, idle time included.
    pub header_timeout: Duration,
    pub head_limits: crate::serve::HeadLimits,
    /// Repeated upstream warnings, by upstream: a dead one under load
    /// would otherwise write a line per request.
    pub warnings: crate::ratelimit::Limiter,
}

/// Attempts per request: the first target and one retry elsewhere.
const MAX_ATTEMPTS: usize = 2;

fn idempotent(m: &Method) -> bool {
    idempotent_name(m.as_str())
}

/// Methods whose request may be sent twice (RFC 9110 section 9.2.2).
fn idempotent_name(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

/// The bodies of the proxy's own 502 and 504: they say what happened, not
/// which address failed how (that goes to the log and the metrics, never to
/// a client who could map the network behind the router with it).
pub(crate) const BAD_GATEWAY_TEXT: &str = "no upstream answered\n";
pub(crate) const GATEWAY_TIMEOUT_TEXT: &str = "the upstream did not answer in time\n";

fn text(status: StatusCode, msg: String) -> Response<RespBody> {
    let mut r = Response::new(full(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A refusal after which the connection closes: what follows on it cannot
/// be told apart from the refused message.
fn closing(status: StatusCode, msg: String) -> Response<RespBody> {
    let mut r = text(status, msg);
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn empty_body() -> UpBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

impl Proxy {
    /// Whether a warning about `target` is logged now (rate-limited, see
    /// [`crate::ratelimit`]); `Some(n)` with how many were left out.
    fn may_warn(&self, target: &http::Uri) -> Option<u64> {
        self.warnings.allow(target.authority().map_or("", |a| a.as_str()))
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Conn) -> Response<RespBody> {
        // An HTTP/1 upgrade keeps the connection with hyper (see
        // `fast::serve_conn`); when it does not happen, the connection ends
        // after the answer rather than let hyper's parser read the next head.
        let upgrade_asked = req.version() != Version::HTTP_2 && headers::upgrade_protocol(req.headers()).is_some();
        let mut resp = self.handle_request(req, conn).await;
        if upgrade_asked && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn handle_request(&self, req: Request<Incoming>, conn: Conn) -> Response<RespBody> {
        let started = Instant::now();
        // The fast path checks every head it hands over; hyper reads heads
        // itself only on an h2c connection, and any HTTP/1 one that reaches
        // here anyway meets the same rules.
        if matches!(req.version(), Version::HTTP_10 | Version::HTTP_11) {
            let target = req.uri().to_string();
            let headers = req.headers().iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            if let Err(why) = framing::check_request(req.version() == Version::HTTP_11, &target, headers) {
                tracing::debug!(error = %why, "request refused");
                self.metrics.observe_unrouted(why.status(), started.elapsed());
                let status = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST);
                return closing(status, format!("{why}\n"));
            }
        }
        let snapshot = self.shared.snapshot.load_full();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_string();
        let Some(route) = snapshot.table.lookup(&host, req.uri().path()) else {
            let resp = text(StatusCode::NOT_FOUND, format!("no route for {host}{}\n", req.uri().path()));
            self.metrics.observe_unrouted(resp.status().as_u16(), started.elapsed());
            return resp;
        };
        let resp = self.forward(route, req, conn, host).await;
        route.stats.observe(resp.status().as_u16(), started.elapsed());
        resp
    }

    async fn forward(&self, route: &Route, mut req: Request<Incoming>, conn: Conn, host: String) -> Response<RespBody> {
        let opts = &route.opts;
        if !opts.allows(conn.peer.ip()) {
            return text(StatusCode::FORBIDDEN, format!("{} may not use this route\n", conn.peer.ip()));
        }
        if let Some(r) = &opts.redirect {
            let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::FOUND);
            let mut resp = text(status, String::new());
            match HeaderValue::from_str(&r.location(pq)) {
                Ok(loc) => {
                    resp.headers_mut().insert(header::LOCATION, loc);
                }
                Err(_) => return text(StatusCode::BAD_GATEWAY, "redirect target is not a valid header\n".into()),
            }
            return resp;
        }

        let upgrade = headers::upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let retryable = idempotent(&parts.method) && body.is_end_stream() && upgrade.is_none();
        // Set when reading the client's body fails (a malformed chunked
        // body): that is the client's fault, 400, not the upstream's.
        let client_body_failed = Arc::new(AtomicBool::new(false));
        let failed = client_body_failed.clone();
        let mut body = Some(
            body.map_err(move |e| {
                failed.store(true, Ordering::Relaxed);
                e
            })
            .boxed(),
        );
        let path = headers::rewrite_path(parts.uri.path(), opts.strip.as_deref(), opts.prepend.as_deref());
        let client_info = ClientInfo { ip: conn.peer.ip(), host: &host, local_port: conn.local.port() };
        let mut headers_out = std::mem::take(&mut parts.headers);
        headers::remove_hop_by_hop(&mut headers_out, upgrade.as_ref());
        headers::add_forwarded(&mut headers_out, &client_info);
        let upstream = self.upstreams.for_route(opts.tls_skip_verify);

        let mut tried: Vec<usize> = Vec::with_capacity(MAX_ATTEMPTS);
        // Built only when an attempt fails: a successful request allocates no message.
        let mut last_error: Cow<'static, str> = Cow::Borrowed("the route has no target with a weight above 0");
        while tried.len() < MAX_ATTEMPTS {
            let Some((idx, target)) = route.pick(self.strategy, &tried) else { break };
            tried.push(idx);
            let uri = match headers::upstream_uri(&target.url, &path, parts.uri.query()) {
                Ok(u) => u,
                Err(e) => {
                    last_error = format!("bad upstream URI for {}: {e}", target.url).into();
                    if retryable {
                        continue;
                    }
                    break;
                }
            };
            let mut out = Request::new(body.take().unwrap_or_else(empty_body));
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.version_mut() = Version::HTTP_11;
            // Only a retryable request with another attempt and another
            // target left may need the headers again.
            let may_retry = retryable && tried.len() < MAX_ATTEMPTS && tried.len() < route.targets.len();
            *out.headers_mut() = if may_retry { headers_out.clone() } else { std::mem::take(&mut headers_out) };
            let host_out: &str = match &opts.host {
                HostHeader::Keep => &host,
                HostHeader::Dst => target.url.authority().map(|a| a.as_str()).unwrap_or_default(),
                HostHeader::Name(n) => n,
            };
            match HeaderValue::from_str(host_out) {
                Ok(v) if !host_out.is_empty() => {
                    out.headers_mut().insert(header::HOST, v);
                }
                _ => {
                    out.headers_mut().remove(header::HOST);
                }
            }
            // Kept to mark the connection unusable if its response is bad.
            let captured = hyper_util::client::legacy::connect::capture_connection(&mut out);
            match tokio::time::timeout(self.upstream_timeout, upstream.request(out)).await {
                Err(_) => {
                    if let Some(suppressed) = self.may_warn(&target.url) {
                        tracing::warn!(route = %RouteName(route), target = %target.url, timeout = ?self.upstream_timeout, suppressed, "upstream timed out");
                    }
                    return text(StatusCode::GATEWAY_TIMEOUT, GATEWAY_TIMEOUT_TEXT.into());
                }
                Ok(Err(_)) if client_body_failed.load(Ordering::Relaxed) => {
                    tracing::debug!(route = %RouteName(route), "malformed request body");
                    return closing(StatusCode::BAD_REQUEST, "malformed request body\n".into());
                }
                Ok(Err(e)) => {
                    let connect = e.is_connect();
                    last_error = format!("{}: {}", target.url, error_chain(&e)).into();
                    if let Some(suppressed) = self.may_warn(&target.url) {
                        tracing::warn!(route = %RouteName(route), target = %target.url, error = %last_error, connect, suppressed, "upstream failed");
                    }
                    if connect && retryable {
                        continue;
                    }
                    break;
                }
                Ok(Ok(resp))
                    if let Err(why) = framing::check_response(
                        resp.headers().iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
                    ) =>
                {
                    // The connection is never used again: what follows this
                    // head on it cannot be trusted to be the next response.
                    if let Some(c) = captured.connection_metadata().as_ref() {
                        c.poison();
                    }
                    drop(resp);
                    last_error = format!("{}: ambiguous response head: {why}", target.url).into();
                    if let Some(suppressed) = self.may_warn(&target.url) {
                        tracing::warn!(route = %RouteName(route), target = %target.url, error = %last_error, suppressed, "upstream failed");
                    }
                    break;
                }
                Ok(Ok(mut resp)) => {
                    let up_upgrade = headers::upgrade_protocol(resp.headers());
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_up) = client_upgrade
                    {
                        let upstream_up = hyper::upgrade::on(&mut resp);
                        tunnel::spawn(client_up, upstream_up, RouteName(route).to_string());
                        headers::remove_hop_by_hop(resp.headers_mut(), up_upgrade.as_ref());
                        return resp.map(|b| b.boxed());
                    }
                    headers::remove_hop_by_hop(resp.headers_mut(), None);
                    return resp.map(|b| b.boxed());
                }
            }
        }
        tracing::debug!(route = %RouteName(route), error = %last_error, "answering 502");
        text(StatusCode::BAD_GATEWAY, BAD_GATEWAY_TEXT.into())
    }
}

/// `host/path`, the route's name in logs and metrics, formatted only when used.
struct RouteName<'a>(&'a Route);

impl std::fmt::Display for RouteName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0.host, self.0.path)
    }
}

/// The error with its causes, which is where hyper-util puts "connection
/// refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
