//! The fast path: plain HTTP/1.1 proxied within the client connection's own
//! task, with no per-request task, channel or header map.
//!
//! Why: behind hyper's server and pooled client a proxied request crossed
//! three tasks and built two header maps, and the router spent about twice
//! nginx's CPU per request. Here one task reads the client's head, parses it
//! in place (httparse), writes the upstream head straight into a buffer,
//! takes an idle upstream connection from [`pool::Pool`], and copies the
//! response back, passing bodies through unchanged.
//!
//! It takes only the common case (see [`head::parse_request`] and
//! [`Proxy::fast_route`]): a plain HTTP/1.1 request with a routed target
//! that is `http://IP:port`. Every HTTP/1 head is parsed and checked here
//! first ([`super::framing`]: an ambiguous one is refused). A request the
//! fast path does not serve (HTTP/1.0, chunked or `Expect` request bodies,
//! https or named targets, redirects, refusals, no route) is given alone to
//! hyper and [`Proxy::handle`], and the connection comes back afterwards
//! ([`one`]); only h2c and upgrades such as websocket leave the connection
//! to hyper for good. Both paths give the same answers: 400/431, 404/403,
//! 502/504, retries, forwarded headers, options.

mod chunked;
mod head;
mod one;
mod pool;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub use pool::Pool;

use super::answer::{self, Attempts, Failure, Replay, Verdict};
use super::framing::{BodyFraming, Refusal};
use super::{Proxy, find, headers};
use crate::routes::Route;
use crate::serve::{Conn, Drain, hyper_conn};
use chunked::Chunked;
use head::{Framing, HandOff, MAX_HEADERS, Parsed};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read buffer size; also the unit bodies are copied in.
const BUF: usize = 16 * 1024;
/// A response head and a body up to this size go out in one write.
const COALESCE: usize = 4 * 1024;

/// Serves one client connection: the fast path for as long as requests
/// qualify, then hyper.
pub async fn serve_conn<S: Client + Send + 'static>(proxy: Arc<Proxy>, mut stream: S, conn: Conn, mut drain: Drain) {
    let mut buf = BytesMut::with_capacity(BUF);
    // One timer for the connection's life, moved on for each request head.
    let head_timer = tokio::time::sleep(proxy.header_timeout);
    tokio::pin!(head_timer);
    let mut scratch = Scratch {
        client_ip: conn.peer.ip().to_string(),
        local_port: conn.local.port().to_string(),
        trusted: proxy.trusts(conn.peer.ip()),
        ..Scratch::default()
    };
    loop {
        match proxy.run(&mut stream, &mut buf, conn, &mut drain, &mut scratch, head_timer.as_mut()).await {
            End::Close => return,
            End::HandOff(HandOff::Request(boundary)) => {
                match one::serve(proxy.clone(), stream, std::mem::take(&mut buf), boundary, conn).await {
                    Some((s, rest)) => (stream, buf) = (s, rest),
                    None => return,
                }
            }
            End::HandOff(HandOff::Connection) => {
                let p = proxy.clone();
                let io = one::ClientIo::whole(stream, buf);
                let limits = proxy.head_limits;
                hyper_conn(io, conn, move |req, c| p.clone().handle(req, c), drain, proxy.header_timeout, limits).await;
                return;
            }
        }
    }
}

/// A client connection the fast path can serve: TCP, or TLS over it.
/// Writes are flushed at the end of each head and body piece, which costs
/// nothing on TCP and pushes out what TLS holds back in its buffer.
pub trait Client: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Client for T {}

/// How a connection leaves the fast path.
enum End {
    Close,
    HandOff(HandOff),
}

/// What is left to do after one exchange.
enum Next {
    /// The client may send another request; `usize` bytes of the read
    /// buffer (head and body) were this request's.
    KeepAlive(usize),
    Close,
    HandOff(HandOff),
}

/// Buffers reused by every request on a connection, and what the forwarding
/// headers say about it, formatted once.
#[derive(Default)]
struct Scratch {
    client_ip: String,
    local_port: String,
    /// The peer is in `--trusted-proxies`.
    trusted: bool,
    /// The head being written (upstream request, then client response).
    out: Vec<u8>,
    /// Bytes read from the upstream; allocated (and zeroed) once, then only
    /// grown for a large response head.
    up: Vec<u8>,
    /// How many bytes of `up` the response head read holds.
    filled: usize,
}

/// An upstream's response head, read: the body follows.
struct Answer {
    upstream: TcpStream,
    head: ResponseHead,
}

/// What [`read_response_head`] learnt of a final (non-1xx) response.
#[derive(Debug, Clone, Copy)]
struct ResponseHead {
    status: u16,
    framing: Framing,
    /// The connection may carry another request once the body is read.
    reusable: bool,
    /// Where the body starts in [`Scratch::up`].
    body_start: usize,
}

/// Where the client's request body is: decides whether it can be sent to
/// another target and whether the client connection can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientBody {
    /// Whole in the read buffer, or not yet read from the client: it can
    /// be sent again.
    Here,
    /// Read from the client and sent whole: it cannot be sent again, but
    /// the client connection can carry the next request.
    Sent,
    /// Partly read from the client: the client connection must close.
    Torn,
}

/// An attempt that got no response.
struct Failed {
    failure: Failure,
    body: ClientBody,
}

/// A response relayed whole; whether the client connection goes on.
#[derive(Debug, PartialEq, Eq)]
enum Relayed {
    KeepAlive,
    /// The client asked to close, or the response is delimited by the close.
    Close,
}

/// Either side of a response body broke off: the client connection closes.
struct BrokeOff;

impl From<std::io::Error> for BrokeOff {
    fn from(_: std::io::Error) -> Self {
        BrokeOff
    }
}

impl Proxy {
    async fn run<C: Client>(
        &self,
        stream: &mut C,
        buf: &mut BytesMut,
        conn: Conn,
        drain: &mut Drain,
        scratch: &mut Scratch,
        mut head_timer: Pin<&mut Sleep>,
    ) -> End {
        loop {
            // A client has --header-timeout for each request head, idle
            // time before it included (as hyper counts it): a connection
            // that sends nothing, or a head byte by byte (slowloris), is
            // closed. Moving the deadline later costs no timer-wheel work.
            head_timer.as_mut().reset(Instant::now() + self.header_timeout);
            if buf.is_empty() {
                // Idle between requests: a stop closes the connection now.
                if drain.stopping() {
                    return End::Close;
                }
                buf.reserve(BUF);
                tokio::select! {
                    r = stream.read_buf(buf) => match r {
                        Ok(0) | Err(_) => return End::Close,
                        Ok(_) => {}
                    },
                    _ = drain.stopped() => return End::Close,
                    _ = head_timer.as_mut() => return End::Close,
                }
            }
            loop {
                let mut storage = head::request_storage();
                let max_head = self.head_limits.bytes;
                match head::parse_request(buf, &mut storage, self.head_limits.headers) {
                    Parsed::HandOff(h) => return End::HandOff(h),
                    Parsed::Refuse(why) => return self.refuse(stream, why).await,
                    Parsed::Partial if buf.len() >= max_head => {
                        return self.refuse(stream, Refusal::HeadTooLarge).await;
                    }
                    Parsed::Request(req) if req.len > max_head => {
                        return self.refuse(stream, Refusal::HeadTooLarge).await;
                    }
                    Parsed::Partial => {}
                    Parsed::Request(req) => {
                        match self.exchange(stream, &buf[req.len..], &req, conn, scratch).await {
                            Next::KeepAlive(used) => {
                                buf.advance(used);
                                if drain.stopping() {
                                    return End::Close;
                                }
                            }
                            Next::Close => return End::Close,
                            Next::HandOff(h) => return End::HandOff(h),
                        }
                        break;
                    }
                }
                buf.reserve(BUF);
                tokio::select! {
                    r = stream.read_buf(buf) => match r {
                        Ok(n) if n > 0 => {}
                        _ => return End::Close,
                    },
                    _ = head_timer.as_mut() => return End::Close,
                }
            }
        }
    }

    /// Answers a head that is refused (see [`super::framing`]) and closes
    /// the connection: what follows it cannot be told apart from a body.
    async fn refuse<C: Client>(&self, stream: &mut C, why: Refusal) -> End {
        tracing::debug!(error = %why, "request refused");
        self.metrics.observe_unrouted(why.status(), Duration::ZERO);
        let _ = stream.write_all(refusal_response(why).as_bytes()).await;
        let _ = stream.shutdown().await;
        End::Close
    }

    /// The route for a request if the fast path can serve it; `path` is
    /// the request's (normalised) path.
    fn fast_route<'t>(
        &self,
        table: &'t crate::routes::Table,
        req: &head::Request<'_, '_>,
        path: &str,
        conn: Conn,
    ) -> Option<&'t Route> {
        // Plain-HTTP listener; the TLS one (another branch) passes its flag.
        let route = find::route(table, req.host, path, req.query, false)?;
        let f = &route.fast;
        let allowed = || {
            let xff = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| h.value);
            !route.opts.restricts() || route.opts.allows_forwarded(conn.peer.ip(), xff)
        };
        // Over TLS a route with `hsts=` adds a header: hyper's path does that.
        (f.plain && (f.untouched || allowed()) && !(conn.tls && route.opts.hsts.is_some())).then_some(route)
    }

    /// Proxies one request whose head is parsed; `rest` is what the read
    /// buffer holds after the head (the body's start, maybe more requests).
    async fn exchange<C: Client>(
        &self,
        client: &mut C,
        rest: &[u8],
        req: &head::Request<'_, '_>,
        conn: Conn,
        scratch: &mut Scratch,
    ) -> Next {
        let started = Instant::now();
        let wall = self.access_log.as_ref().map(|_| std::time::SystemTime::now());
        let request_id = self.request_id_header.as_deref().map(|name| {
            match req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
                Some(h) => RequestId::Carried(h.value),
                None => RequestId::Made(crate::access::request_id()),
            }
        });
        let log = |status: u16, bytes: Option<u64>, upstream: Option<SocketAddr>, route: &Route| {
            if let (Some(log), Some(time)) = (&self.access_log, wall) {
                log.log(fast_record(
                    req,
                    conn,
                    time,
                    started,
                    (status, bytes),
                    upstream,
                    route,
                    request_id.as_ref().map(RequestId::bytes),
                    &log.headers,
                ));
            }
        };
        // This one request goes to hyper (`Proxy::handle`).
        let hand_off = || {
            let body = BodyFraming { content_length: Some(req.content_length), chunked: false };
            Next::HandOff(HandOff::Request(one::Boundary { head_len: req.len, body }))
        };
        if !conn.tls
            && (self.https_redirect.as_ref().is_some_and(|r| r.applies(req.host, req.path))
                || self.acme.as_ref().is_some_and(|a| a.http01_token(req.host, req.path).is_some()))
        {
            return hand_off();
        }
        let snapshot = self.shared.snapshot.load_full();
        let req_path = find::request_path(req.path, self.path_normalize);
        let Some(route) = self.fast_route(&snapshot.table, req, &req_path, conn) else { return hand_off() };
        self.metrics.count_protocol(http::Version::HTTP_11, conn.tls);
        let body_in_buf = rest.len().min(usize::try_from(req.content_length).unwrap_or(usize::MAX));
        let body_left = req.content_length - body_in_buf as u64;
        let idempotent = answer::idempotent(req.method);
        let untouched = route.fast.untouched;

        let mut attempts = Attempts::default();
        let mut body = ClientBody::Here;
        while let Some((_, target)) = attempts.next(route, self.strategy) {
            // The usual route (one target, no options) is served from
            // `route.fast` without reading the target or the options.
            let (addr, root_path) = match route.fast.single {
                Some(single) => single,
                None => match target.addr {
                    Some(addr) => (addr, target.root_path),
                    None => break,
                },
            };
            // strip=, prepend= and host= are the target's own; an untouched
            // route's targets have none (and are not read).
            let topts = (!untouched).then_some(&*target.opts);
            let path = match topts {
                None => Cow::Borrowed(&*req_path),
                Some(o) => headers::rewrite_path(&req_path, o.strip.as_deref(), o.prepend.as_deref()),
            };
            let prefix = topts.and_then(|o| headers::stripped_prefix(&req_path, o.strip.as_deref()));
            scratch.out.clear();
            head::write_upstream(
                &mut scratch.out,
                req,
                &head::Upstream {
                    client_ip: &scratch.client_ip,
                    client_v6: conn.peer.is_ipv6(),
                    local_port: &scratch.local_port,
                    trusted: scratch.trusted,
                    prefix: prefix.unwrap_or_default(),
                    tls: conn.tls,
                    host: answer::upstream_host(route, req.host, target),
                    base: if root_path { "" } else { target.url.path().trim_end_matches('/') },
                    path: &path,
                },
            );
            if let (Some(RequestId::Made(id)), Some(name)) = (&request_id, &self.request_id_header) {
                add_header(&mut scratch.out, name, id.as_str());
            }
            scratch.out.extend_from_slice(&rest[..body_in_buf]);
            let failed = match self.attempt(client, addr, req, body_left, started, scratch).await {
                Ok(answer) => {
                    attempts.answered(route);
                    let status = answer.head.status;
                    route.stats.observe(status, started.elapsed());
                    let relayed = self.respond(client, answer, addr, req.close, scratch).await;
                    log(status, relayed.as_ref().ok().map(|(_, bytes)| *bytes), Some(addr), route);
                    return match relayed {
                        Ok((Relayed::KeepAlive, _)) => Next::KeepAlive(req.len + body_in_buf),
                        Ok((Relayed::Close, _)) => {
                            let _ = client.shutdown().await;
                            Next::Close
                        }
                        Err(BrokeOff) => Next::Close,
                    };
                }
                Err(failed) => failed,
            };
            body = failed.body;
            let replay = Replay { idempotent, body: body == ClientBody::Here };
            match attempts.failed(route, target, failed.failure, replay, &self.report()) {
                Verdict::Retry => {}
                Verdict::Answer(r) => {
                    log(r.status, None, None, route);
                    return self.answer_own(client, r, route, started, req, body_in_buf, body).await;
                }
            }
        }
        let r = attempts.give_up();
        log(r.status, None, None, route);
        self.answer_own(client, r, route, started, req, body_in_buf, body).await
    }

    /// Sends the request (head and body start in `scratch.out`, then `body_left`
    /// more bytes from the client) and reads the response head, forwarding
    /// informational (1xx) responses. On success: the upstream connection
    /// and the response head (`scratch.up` holds `scratch.filled` bytes read). On
    /// failure: how far it got, and where the client's body is.
    async fn attempt<C: Client>(
        &self,
        client: &mut C,
        addr: SocketAddr,
        req: &head::Request<'_, '_>,
        body_left: u64,
        started: Instant,
        scratch: &mut Scratch,
    ) -> Result<Answer, Failed> {
        let head_request = req.method == "HEAD";
        // A pooled connection the upstream closed just now fails before any
        // response byte. If sending failed, the request never reached the
        // application; if the connection closed after it was sent, it may
        // have, so only an idempotent request is sent again. Either way once,
        // on a new connection to the same target, and only while its body is
        // still here.
        let mut fresh_only = false;
        let resend_unanswered = answer::idempotent(req.method);
        let here = |failure| Failed { failure, body: ClientBody::Here };
        loop {
            let (mut up, reused) = match (!fresh_only).then(|| self.pool.take(addr)).flatten() {
                Some(s) => (s, true),
                None => match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        (s, false)
                    }
                    Ok(Err(e)) => return Err(here(Failure::Connect(e.to_string()))),
                    Err(_) => {
                        let msg =
                            format!("connect timed out after {}", humantime::format_duration(self.connect_timeout));
                        return Err(here(Failure::Connect(msg)));
                    }
                },
            };
            // One timer for sending and for the response head.
            let mut body = ClientBody::Here;
            let exchanged = tokio::time::timeout_at(started + self.upstream_timeout, async {
                up.write_all(&scratch.out).await.map_err(Stage::Send)?;
                if body_left > 0 {
                    body = ClientBody::Torn;
                    copy_exact(client, &mut up, body_left, &mut scratch.up).await.map_err(Stage::Send)?;
                    body = ClientBody::Sent;
                }
                read_response_head(&mut up, client, head_request, req.close, scratch).await.map_err(Stage::Head)
            })
            .await;
            let stale = reused && body_left == 0;
            let failure = match exchanged {
                Err(_) => Failure::Timeout(self.upstream_timeout),
                Ok(Ok(head)) => return Ok(Answer { upstream: up, head }),
                Ok(Err(Stage::Send(_))) if stale => {
                    fresh_only = true;
                    continue;
                }
                Ok(Err(Stage::Send(e))) if reused => Failure::Stale(format!("sending the request: {e}")),
                Ok(Err(Stage::Send(e))) => Failure::Unanswered(format!("sending the request: {e}")),
                Ok(Err(Stage::Head(HeadError::Closed))) if stale && resend_unanswered => {
                    fresh_only = true;
                    continue;
                }
                Ok(Err(Stage::Head(HeadError::Closed))) if reused => {
                    Failure::Stale("reused connection closed before a response".into())
                }
                Ok(Err(Stage::Head(HeadError::Closed))) => {
                    Failure::Unanswered("connection closed before a response".into())
                }
                Ok(Err(Stage::Head(HeadError::Io(e)))) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    if stale && resend_unanswered {
                        fresh_only = true;
                        continue;
                    }
                    if reused { Failure::Stale(e.to_string()) } else { Failure::Unanswered(e.to_string()) }
                }
                Ok(Err(Stage::Head(HeadError::Io(e)))) => Failure::Broken(e.to_string()),
                Ok(Err(Stage::Head(HeadError::Bad(e)))) => Failure::Broken(e),
            };
            return Err(Failed { failure, body });
        }
    }

    /// Sends the response head (in `scratch.out`) and the body to the client, and
    /// puts the upstream connection back in the pool when it is clean; with
    /// the bytes sent to the client.
    async fn respond<C: Client>(
        &self,
        client: &mut C,
        answer: Answer,
        addr: SocketAddr,
        client_close: bool,
        scratch: &mut Scratch,
    ) -> Result<(Relayed, u64), BrokeOff> {
        let Answer { upstream: mut up, head: ResponseHead { framing, reusable, body_start, .. } } = answer;
        // scratch.out holds the client head (written by read_response_head);
        // scratch.up[body_start..scratch.filled] the body bytes read with it.
        let avail = scratch.filled - body_start;
        let mut reusable = reusable;
        let close = client_close || framing == Framing::UntilClose;
        let (now, left): (usize, Option<Body>) = match framing {
            Framing::Empty => {
                reusable &= avail == 0;
                (0, None)
            }
            Framing::Length(n) => {
                let now = avail.min(usize::try_from(n).unwrap_or(usize::MAX));
                reusable &= avail <= now;
                (now, (n > now as u64).then_some(Body::Length(n - now as u64)))
            }
            Framing::Chunked => {
                let mut c = Chunked::default();
                let now = c.feed(&scratch.up[body_start..scratch.filled]).map_err(|e| {
                    if let Some(suppressed) = self.warnings.allow(&addr.to_string()) {
                        tracing::warn!(upstream = %addr, error = %e, suppressed, "bad chunked response");
                    }
                    BrokeOff
                })?;
                reusable &= now == avail;
                (now, (!c.done()).then_some(Body::Chunked(c)))
            }
            Framing::UntilClose => (avail, Some(Body::UntilClose)),
        };
        let mut sent = (scratch.out.len() + now) as u64;
        if now <= COALESCE {
            scratch.out.extend_from_slice(&scratch.up[body_start..body_start + now]);
            client.write_all(&scratch.out).await?;
        } else {
            client.write_all(&scratch.out).await?;
            client.write_all(&scratch.up[body_start..body_start + now]).await?;
        }
        client.flush().await?;
        match left {
            None => {}
            Some(Body::Length(n)) => {
                copy_exact(&mut up, client, n, &mut scratch.up).await?;
                sent += n;
            }
            Some(Body::Chunked(mut c)) => loop {
                let n = up.read(&mut scratch.up[..]).await?;
                if n == 0 {
                    return Err(BrokeOff);
                }
                let used = c.feed(&scratch.up[..n]).map_err(|e| {
                    if let Some(suppressed) = self.warnings.allow(&addr.to_string()) {
                        tracing::warn!(upstream = %addr, error = %e, suppressed, "bad chunked response");
                    }
                    BrokeOff
                })?;
                client.write_all(&scratch.up[..used]).await?;
                sent += used as u64;
                client.flush().await?;
                if c.done() {
                    reusable &= used == n;
                    break;
                }
            },
            Some(Body::UntilClose) => loop {
                let n = up.read(&mut scratch.up[..]).await?;
                if n == 0 {
                    break;
                }
                client.write_all(&scratch.up[..n]).await?;
                sent += n as u64;
                client.flush().await?;
            },
        }
        if reusable {
            self.pool.put(addr, up);
        }
        Ok((if close { Relayed::Close } else { Relayed::KeepAlive }, sent))
    }

    /// Answers with one of the proxy's own failure answers, counted in the
    /// route's metrics. The client connection stays open only if the
    /// request's body was read whole (in the buffer, or sent).
    #[allow(clippy::too_many_arguments)]
    async fn answer_own<C: Client>(
        &self,
        client: &mut C,
        r: answer::OwnAnswer,
        route: &Route,
        started: Instant,
        req: &head::Request<'_, '_>,
        body_in_buf: usize,
        body: ClientBody,
    ) -> Next {
        route.stats.observe(r.status, started.elapsed());
        let body_read = body_in_buf as u64 == req.content_length || body == ClientBody::Sent;
        let close = req.close || !body_read;
        let out = plain_response(r.status, r.reason, r.body, close);
        if client.write_all(out.as_bytes()).await.is_err() || client.flush().await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive(req.len + body_in_buf)
    }
}

/// The whole response to a refused head.
fn refusal_response(why: Refusal) -> String {
    plain_response(why.status(), why.reason(), &format!("{why}\n"), true)
}

/// A whole short text response of the proxy's own.
fn plain_response(status: u16, reason: &str, body: &str, close: bool) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    )
}

/// Adds a header line to a finished head (before its empty line).
fn add_header(out: &mut Vec<u8>, name: &str, value: &str) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// A request's ID (`--request-id-header`): the one it carries, or one made
/// here, which goes upstream with it.
enum RequestId<'b> {
    Carried(&'b [u8]),
    Made(crate::access::RequestId),
}

impl RequestId<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            RequestId::Carried(v) => v,
            RequestId::Made(id) => id.as_str().as_bytes(),
        }
    }
}

/// The access log's record of a request the fast path answered: copied
/// into the record's own buffer, no allocation.
#[allow(clippy::too_many_arguments)]
fn fast_record(
    req: &head::Request<'_, '_>,
    conn: Conn,
    time: std::time::SystemTime,
    started: Instant,
    (status, bytes): (u16, Option<u64>),
    upstream: Option<SocketAddr>,
    route: &Route,
    request_id: Option<&[u8]>,
    wanted: &[String],
) -> crate::access::Record {
    let header = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let arrival = crate::access::Arrival {
        time,
        client: conn.peer.ip(),
        proto: "HTTP/1.1",
        method: req.method.as_bytes(),
        path: req.path.as_bytes(),
        query: req.query.map(str::as_bytes),
        host: req.host.as_bytes(),
        request_id,
    };
    let mut r = crate::access::Record::arrived(arrival, wanted.iter().map(|n| header(n)));
    let upstream = upstream.map_or(crate::access::Upstream::None, crate::access::Upstream::Addr);
    r.routed(Some((&route.host, &route.path, &route.service)), upstream);
    r.status = status;
    r.bytes = bytes;
    r.duration = started.elapsed();
    r
}

/// What remains of a response body after the bytes read with its head.
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// Where an exchange with the upstream failed.
enum Stage {
    Send(std::io::Error),
    Head(HeadError),
}

enum HeadError {
    /// EOF before a complete head.
    Closed,
    Io(std::io::Error),
    Bad(String),
}

/// Reads the upstream's response head into `scratch.up`, forwarding 1xx
/// responses to the client, and writes the client's head into `scratch.out`
/// (with `Connection: close` when the client connection ends after it).
/// Returns what the proxy needs of the final response's head.
async fn read_response_head<C: Client>(
    up: &mut TcpStream,
    client: &mut C,
    head_request: bool,
    client_close: bool,
    scratch: &mut Scratch,
) -> Result<ResponseHead, HeadError> {
    let mut filled = 0;
    let mut seen_any = false;
    if scratch.up.len() < BUF {
        scratch.up.resize(BUF, 0);
    }
    loop {
        if filled == scratch.up.len() {
            if scratch.up.len() >= MAX_RESPONSE_HEAD {
                return Err(HeadError::Bad("response head too large".into()));
            }
            scratch.up.resize((scratch.up.len() * 2).max(BUF), 0);
        }
        let n = up.read(&mut scratch.up[filled..]).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if seen_any {
                HeadError::Bad("connection closed inside the response head".into())
            } else {
                HeadError::Closed
            });
        }
        seen_any = true;
        filled += n;
        // Heads are parsed from the start of scratch.up; 1xx heads are removed.
        loop {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let parsed = head::parse_response(&scratch.up[..filled], &mut storage, head_request)
                .map_err(|e| HeadError::Bad(e.to_string()))?;
            let Some(resp) = parsed else { break };
            scratch.out.clear();
            if (100..200).contains(&resp.status) {
                head::write_client(&mut scratch.out, &resp, false);
                let len = resp.len;
                client.write_all(&scratch.out).await.map_err(HeadError::Io)?;
                client.flush().await.map_err(HeadError::Io)?;
                scratch.up.copy_within(len..filled, 0);
                filled -= len;
                continue;
            }
            let close = client_close || resp.framing == Framing::UntilClose;
            head::write_client(&mut scratch.out, &resp, close);
            let r = ResponseHead {
                status: resp.status,
                framing: resp.framing,
                reusable: resp.reusable,
                body_start: resp.len,
            };
            scratch.filled = filled;
            return Ok(r);
        }
    }
}

/// Copies exactly `n` bytes from `from` to `to`.
async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    mut n: u64,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    scratch.resize(BUF, 0);
    while n > 0 {
        let want = usize::try_from(n).map_or(BUF, |n| n.min(BUF));
        let got = from.read(&mut scratch[..want]).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        to.write_all(&scratch[..got]).await?;
        to.flush().await?;
        n -= got as u64;
    }
    Ok(())
}

/// How long idle upstream connections are kept, and how often they are swept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
