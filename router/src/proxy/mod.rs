//! The proxy: finds the route for a request in the published table (one
//! atomic load, no lock), applies the route's options, and forwards to one of
//! its targets over a pooled keep-alive client, streaming bodies both ways.
//!
//! Outcomes docs/router.md fixes: no route `--no-route-status` (404), client refused by `allow`/`deny`
//! 403, every tried target failed 502, no response headers within the upstream
//! timeout 504. What each failed attempt means (retry elsewhere or answer) is
//! decided in [`answer`], shared by this path and the fast path.

pub mod answer;
mod client;
pub mod fast;
mod find;
mod framing;
pub mod grpc;
mod headers;
mod replay;
mod tunnel;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::discovery::Shared;
use crate::metrics::Metrics;
use crate::routes::options::Cidr;
use crate::routes::{Route, Strategy, request_host};
use crate::serve::{Conn, RespBody, full};
use answer::{Attempts, Failure, OwnAnswer, Replay, RouteName, Verdict};
pub use client::Upstreams;
use headers::ClientInfo;
use replay::Held;

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
    /// The process's stop: upgraded connections (tunnels), which outlive
    /// the request that opened them, end with it.
    pub stop: kit::StopWatch,
    /// Normalise request paths before routing (`--path-normalize`).
    pub path_normalize: bool,
    /// Peers whose `X-Forwarded-Proto/-Port/-Host` and `X-Real-Ip` are kept
    /// (`--trusted-proxies`).
    pub trusted_proxies: Vec<Cidr>,
    /// The answer to a request no route takes (`--no-route-status`).
    pub no_route_status: StatusCode,
    /// `--access-log`; None when off.
    pub access_log: Option<crate::access::AccessLog>,
    /// `--request-id-header`, lower-cased.
    pub request_id_header: Option<String>,
    /// `--https-redirect`, when given.
    pub https_redirect: Option<crate::tls::HttpsRedirect>,
    /// Answers ACME HTTP-01 challenges on plain HTTP when ACME is on.
    pub acme: Option<Arc<crate::autocert::Acme>>,
}

impl Proxy {
    fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

fn text(status: StatusCode, msg: impl Into<bytes::Bytes>) -> Response<RespBody> {
    let mut r = Response::new(full(msg));
    *r.status_mut() = status;
    r.extensions_mut().insert(grpc::RouterMade);
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

fn own_answer(r: OwnAnswer) -> Response<RespBody> {
    text(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY), r.body)
}

/// What a failed request of the upstream client means for a retry.
fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    let error = error_chain(e);
    if e.is_connect() {
        return Failure::Connect(error);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_canceled() {
                return Failure::Unsent(error);
            }
            if h.is_incomplete_message() {
                return Failure::Unanswered(error);
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return Failure::Unanswered(error);
        }
        cur = c.source();
    }
    Failure::Broken(error)
}

impl Proxy {
    /// Where failed attempts are counted and logged.
    fn report(&self) -> answer::Report<'_> {
        answer::Report { failures: &self.metrics.failures, warnings: &self.warnings }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Conn) -> Response<RespBody> {
        // An HTTP/1 upgrade keeps the connection with hyper (see
        // `fast::serve_conn`); when it does not happen, the connection ends
        // after the answer rather than let hyper's parser read the next head.
        let upgrade_asked = req.version() != Version::HTTP_2 && headers::upgrade_protocol(req.headers()).is_some();
        let grpc_call = grpc::is_grpc(req.headers());
        let mut resp = self.handle_request(req, conn).await;
        if grpc_call && resp.extensions().get::<grpc::RouterMade>().is_some() {
            resp = grpc::own_answer(resp);
        }
        if upgrade_asked && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn handle_request(&self, mut req: Request<Incoming>, conn: Conn) -> Response<RespBody> {
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
        let request_id = self.request_id_header.as_deref().map(|name| ensure_request_id(req.headers_mut(), name));
        let logged = self.access_log.as_ref().map(|log| access_record(&req, conn, request_id, &log.headers));
        let mut upstream = None;
        let (resp, route) = self.route_and_forward(req, conn, started, &mut upstream).await;
        if let (Some(log), Some(mut r)) = (&self.access_log, logged) {
            r.status = resp.status().as_u16();
            r.bytes = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            r.duration = started.elapsed();
            let upstream = upstream.as_deref().map_or(crate::access::Upstream::None, crate::access::Upstream::Named);
            r.routed(route.as_ref().map(|(name, service)| (name.as_str(), "", service.as_str())), upstream);
            log.log(r);
        }
        resp
    }

    /// The route's answer, and the route's name and service (for the
    /// access log, only when it is on).
    async fn route_and_forward(
        &self,
        req: Request<Incoming>,
        conn: Conn,
        started: Instant,
        upstream: &mut Option<String>,
    ) -> (Response<RespBody>, Option<(String, String)>) {
        let snapshot = self.shared.snapshot.load_full();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_string();
        let tls = conn.tls;
        self.metrics.count_protocol(req.version(), tls);
        if !tls
            && let Some(acme) = &self.acme
            && let Some(token) = acme.http01_token(&host, req.uri().path())
        {
            let resp = match acme.http01(token).await {
                Ok(Some(key_auth)) => {
                    let mut r = Response::new(full(key_auth));
                    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                    r
                }
                Ok(None) => text(StatusCode::NOT_FOUND, "no such ACME challenge\n"),
                Err(error) => {
                    tracing::warn!(%error, "reading an HTTP-01 challenge");
                    text(StatusCode::SERVICE_UNAVAILABLE, "ACME state unreadable\n")
                }
            };
            self.metrics.observe_unrouted(resp.status().as_u16(), started.elapsed());
            return (resp, None);
        }
        if !tls
            && let Some(r) = &self.https_redirect
            && r.applies(&host, req.uri().path())
        {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let mut resp = text(StatusCode::PERMANENT_REDIRECT, String::new());
            if let Ok(loc) = HeaderValue::from_str(&r.location(&host, pq)) {
                resp.headers_mut().insert(header::LOCATION, loc);
                return (resp, None);
            }
        }
        let path = find::request_path(req.uri().path(), self.path_normalize).into_owned();
        let Some(route) = find::route(&snapshot.table, &host, &path, req.uri().query(), tls) else {
            let resp = self.no_route(&host, &path);
            self.metrics.observe_unrouted(resp.status().as_u16(), started.elapsed());
            return (resp, None);
        };
        let mut resp = self.forward(route, req, conn, host, &path, tls, upstream).await;
        route.stats.observe(resp.status().as_u16(), started.elapsed());
        if tls
            && let Some(secs) = route.opts.hsts
            && let Ok(v) = HeaderValue::try_from(format!("max-age={secs}"))
        {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
        }
        let named = self.access_log.as_ref().map(|_| (RouteName(route).to_string(), route.service.clone()));
        (resp, named)
    }

    /// The answer when no route takes a request: `--no-route-status`, with
    /// the HTML page from `--no-route-html-key` when there is one.
    fn no_route(&self, host: &str, path: &str) -> Response<RespBody> {
        match self.shared.no_route_html.load().as_str() {
            "" => text(self.no_route_status, format!("no route for {host}{path}\n")),
            html => {
                let mut r = Response::new(full(html.to_string()));
                *r.status_mut() = self.no_route_status;
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                r
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        route: &Route,
        mut req: Request<Incoming>,
        conn: Conn,
        host: String,
        path: &str,
        tls: bool,
        upstream_used: &mut Option<String>,
    ) -> Response<RespBody> {
        let opts = &route.opts;
        let xff = req.headers().get_all("x-forwarded-for").iter().map(|v| v.as_bytes());
        if opts.restricts() && !opts.allows_forwarded(conn.peer.ip(), xff) {
            return text(StatusCode::FORBIDDEN, format!("{} may not use this route\n", conn.peer.ip()));
        }
        if let Some((code, location)) = find::redirect(route, &request_host(&host, tls), path, req.uri().query()) {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
            let mut resp = text(status, String::new());
            match HeaderValue::from_str(&location) {
                Ok(loc) => {
                    resp.headers_mut().insert(header::LOCATION, loc);
                }
                Err(_) => return text(StatusCode::BAD_GATEWAY, "redirect target is not a valid header\n"),
            }
            return resp;
        }

        let upgrade = headers::upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let idempotent = answer::idempotent(parts.method.as_str());
        let empty = body.is_end_stream();
        // Set when reading the client's body fails (a malformed chunked
        // body): that is the client's fault, 400, not the upstream's.
        let client_body_failed = Arc::new(AtomicBool::new(false));
        let failed = client_body_failed.clone();
        let body = Held::new(
            body.map_err(move |e| {
                failed.store(true, Ordering::Relaxed);
                e
            })
            .boxed(),
        );
        let client_info = ClientInfo {
            ip: conn.peer.ip(),
            host: &host,
            local_port: conn.local.port(),
            trusted: self.trusts(conn.peer.ip()),
            tls: conn.tls,
        };
        // gRPC's deadline bounds the wait for the response head as well.
        let head_timeout =
            grpc::timeout(&parts.headers).map_or(self.upstream_timeout, |t| t.min(self.upstream_timeout));
        let wants_trailers = headers::te_trailers(&parts.headers);
        let mut headers_out = std::mem::take(&mut parts.headers);
        headers::remove_hop_by_hop(&mut headers_out, upgrade.as_ref());
        headers::add_forwarded(&mut headers_out, &client_info);

        let mut attempts = Attempts::default();
        while let Some((_, target)) = attempts.next(route, self.strategy) {
            let replay = || Replay { idempotent, body: empty || body.replayable() };
            // strip=, prepend=, host= and tlsskipverify= are the target's own.
            let topts = &target.opts;
            let up_path = headers::rewrite_path(path, topts.strip.as_deref(), topts.prepend.as_deref());
            let http2 = topts.proto.http2();
            let upstream = self.upstreams.for_route(http2, topts.tls_skip_verify);
            let uri = match headers::upstream_uri(&target.url, &up_path, parts.uri.query()) {
                Ok(u) => u,
                Err(e) => {
                    let failure = Failure::Unsent(format!("bad upstream URI: {e}"));
                    match attempts.failed(route, target, failure, replay(), &self.report()) {
                        Verdict::Retry => continue,
                        Verdict::Answer(r) => return own_answer(r),
                    }
                }
            };
            let mut out = Request::new(body.lease());
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.version_mut() = if http2 { Version::HTTP_2 } else { Version::HTTP_11 };
            // Only a request that may be sent again needs the headers again.
            *out.headers_mut() =
                if attempts.more_possible(route) { headers_out.clone() } else { std::mem::take(&mut headers_out) };
            headers::set_forwarded_prefix(out.headers_mut(), headers::stripped_prefix(path, topts.strip.as_deref()));
            if http2 && wants_trailers {
                // The one TE value HTTP/2 allows; gRPC servers require it.
                out.headers_mut().insert(header::TE, HeaderValue::from_static("trailers"));
            }
            // Over HTTP/2 the URI's authority (the target's address: the
            // pooled client connects by it) is sent as `:authority`, and a
            // Host that differs makes the request malformed (RFC 9113
            // 8.3.1; nginx answers 400). The client's host still reaches the
            // instance in X-Forwarded-Host and Forwarded's `host=`.
            let host_out = if http2 { "" } else { answer::upstream_host(route, &host, target) };
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
            let failure = match tokio::time::timeout(head_timeout, upstream.request(out)).await {
                Err(_) => Failure::Timeout(head_timeout),
                Ok(Err(_)) if client_body_failed.load(Ordering::Relaxed) => {
                    tracing::debug!(route = %RouteName(route), "malformed request body");
                    return closing(StatusCode::BAD_REQUEST, "malformed request body\n".into());
                }
                Ok(Err(e)) => classify(&e),
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
                    Failure::Broken(format!("ambiguous response head: {why}"))
                }
                Ok(Ok(mut resp)) => {
                    attempts.answered(route);
                    if self.access_log.is_some() {
                        *upstream_used = target.url.authority().map(|a| a.to_string());
                    }
                    let up_upgrade = headers::upgrade_protocol(resp.headers());
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_up) = client_upgrade
                    {
                        let upstream_up = hyper::upgrade::on(&mut resp);
                        tunnel::spawn(client_up, upstream_up, RouteName(route).to_string(), self.stop.clone());
                        headers::remove_hop_by_hop(resp.headers_mut(), up_upgrade.as_ref());
                        return resp.map(|b| b.boxed());
                    }
                    headers::remove_hop_by_hop(resp.headers_mut(), None);
                    return resp.map(|b| b.boxed());
                }
            };
            match attempts.failed(route, target, failure, replay(), &self.report()) {
                Verdict::Retry => {}
                Verdict::Answer(r) => return own_answer(r),
            }
        }
        own_answer(attempts.give_up())
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

/// The request's ID from header `name`, which is added (a fresh UUID) when
/// the request has none, so the upstream sees it too.
fn ensure_request_id(headers: &mut http::HeaderMap, name: &str) -> String {
    if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
        return v.to_string();
    }
    let id = crate::access::request_id();
    if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(id.as_str())) {
        headers.insert(n, v);
    }
    id.as_str().to_string()
}

/// What the access log needs of a request on hyper's path, taken before it
/// is forwarded; the answer's fields are filled in after.
fn access_record(
    req: &Request<Incoming>,
    conn: Conn,
    request_id: Option<String>,
    wanted: &[String],
) -> crate::access::Record {
    let h = req.headers();
    // The URI as sent; all of it when it has no path (authority form).
    let whole;
    let path = match req.uri().path_and_query() {
        Some(pq) => pq.as_str(),
        None => {
            whole = req.uri().to_string();
            &whole
        }
    };
    let arrival = crate::access::Arrival {
        time: std::time::SystemTime::now(),
        client: conn.peer.ip(),
        proto: match req.version() {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        },
        method: req.method().as_str().as_bytes(),
        path: path.as_bytes(),
        query: None,
        // HTTP/2 carries the host in the :authority pseudo-header.
        host: h
            .get(header::HOST)
            .map_or_else(|| req.uri().authority().map_or(&b""[..], |a| a.as_str().as_bytes()), |v| v.as_bytes()),
        request_id: request_id.as_deref().map(str::as_bytes),
    };
    crate::access::Record::arrived(arrival, wanted.iter().map(|n| h.get(n.as_str()).map(|v| v.as_bytes())))
}
