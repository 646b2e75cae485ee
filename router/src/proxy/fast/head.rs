//! Message heads on the fast path, as bytes: which requests the fast path
//! takes, the request head sent upstream and the response head sent back.
//! Pure (no I/O) so every rule is unit-tested.
//!
//! Every request head is checked against the shared framing rules
//! ([`framing`]) before anything else: one that can be read two ways is
//! refused. Of the rest, the fast path takes plain HTTP/1.1 requests: no
//! `Transfer-Encoding`, no `Expect`, no upgrade, an origin-form target.
//! Others go to hyper, one request at a time (or the whole connection for
//! h2c and upgrades).

use std::io::Write;
use std::mem::MaybeUninit;

use super::one::Boundary;
use crate::proxy::framing::{self, BodyFraming, Refusal, decimal};
use crate::proxy::headers::{
    HOP_BY_HOP, KEPT_FROM_TRUSTED, forwarded_port, is_end_to_end, proto, write_forwarded_elem,
};

/// Header lines a head may have on the fast path; more go to hyper (which
/// allows 100).
pub const MAX_HEADERS: usize = 64;

/// Headers the proxy sets itself; a client's copies are replaced (the
/// single-valued ones) or appended to (the lists).
const SET_BY_PROXY: [&str; 7] =
    ["host", "x-forwarded-for", "forwarded", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip"];

/// A request the fast path takes.
#[derive(Debug)]
pub struct Request<'b, 'h> {
    pub method: &'b str,
    pub path: &'b str,
    pub query: Option<&'b str>,
    /// The Host header, `""` when absent.
    pub host: &'b str,
    pub content_length: u64,
    /// The client sent `Connection: close`.
    pub close: bool,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, including the final empty line.
    pub len: usize,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed<'b, 'h> {
    /// A complete head the fast path takes.
    Request(Request<'b, 'h>),
    /// Not a complete head yet.
    Partial,
    /// A sound head for hyper: another version (h2c), a chunked or
    /// `Expect` body, an upgrade, an absolute-form target, many headers.
    HandOff(HandOff),
    /// A head that can be read more than one way, or too many headers:
    /// answered with the refusal's status and the connection closed.
    Refuse(Refusal),
}

/// What hyper is given.
#[derive(Debug, Clone, Copy)]
pub enum HandOff {
    /// The connection for good: HTTP/2 (h2c) or an upgrade.
    Connection,
    /// This one request (checked here); then the connection comes back.
    Request(Boundary),
}

/// Room for a request's header lines, left uninitialised: the parser writes
/// what it uses, so a request does not pay for zeroing all of it.
pub fn request_storage<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses and checks a request head. `max_headers` is the configured limit
/// of header lines; a head with more than `storage` holds (but within the
/// limit) is checked in a heap buffer and handed to hyper.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [MaybeUninit<httparse::Header<'b>>],
    max_headers: usize,
) -> Parsed<'b, 'h> {
    let slots = max_headers.min(storage.len());
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut storage[..slots]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) if max_headers > slots => return check_large(buf, max_headers),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refuse(Refusal::TooManyHeaders),
        // Not HTTP/1.x: the HTTP/2 preface (h2c) or a version hyper answers.
        Err(httparse::Error::Version) => return Parsed::HandOff(HandOff::Connection),
        Err(_) => return Parsed::Refuse(Refusal::Malformed),
    };
    let body = match check(&req, &buf[..len]) {
        Ok(body) => body,
        Err(r) => return Parsed::Refuse(r),
    };
    let hyper = Parsed::HandOff(match wants_upgrade(req.headers) {
        true => HandOff::Connection,
        false => HandOff::Request(Boundary { head_len: len, body }),
    });
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return hyper;
    };
    if method == "CONNECT" || !target.starts_with('/') {
        return hyper;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut host = None;
    let mut content_length = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            // What hyper's HeaderValue::to_str accepts, so both paths see
            // the same host.
            match std::str::from_utf8(h.value) {
                Ok(v) if v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) => host = Some(v),
                _ => return hyper,
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = decimal(h.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return hyper;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        }
    }
    Parsed::Request(Request {
        method,
        path,
        query,
        host: host.unwrap_or(""),
        content_length: content_length.unwrap_or(0),
        close,
        headers: req.headers,
        len,
    })
}

/// The shared framing rules ([`framing`]) on a parsed head and its bytes.
fn check(req: &httparse::Request<'_, '_>, head: &[u8]) -> Result<BodyFraming, Refusal> {
    framing::check_raw_head(head)?;
    let headers = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    framing::check_request(req.version == Some(1), req.path.unwrap_or(""), headers)
}

/// An `Upgrade` header or `Connection: upgrade`: the connection becomes
/// something else, so hyper keeps it.
fn wants_upgrade(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            || (h.name.eq_ignore_ascii_case("connection")
                && tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"upgrade")))
    })
}

/// A head with more header lines than the fast path's storage: checked with
/// room for `max_headers`, then left to hyper.
fn check_large(buf: &[u8], max_headers: usize) -> Parsed<'static, 'static> {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => match check(&req, &buf[..len]) {
            Ok(_) if wants_upgrade(req.headers) => Parsed::HandOff(HandOff::Connection),
            Ok(body) => Parsed::HandOff(HandOff::Request(Boundary { head_len: len, body })),
            Err(r) => Parsed::Refuse(r),
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Refuse(Refusal::TooManyHeaders),
        Err(httparse::Error::Version) => Parsed::HandOff(HandOff::Connection),
        Err(_) => Parsed::Refuse(Refusal::Malformed),
    }
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

/// Which of a message's headers are hop-by-hop: the fixed ones, and those
/// its `Connection` headers name. Whether it has a `Connection` header at all
/// is found once per message, so the usual message (none) costs no second
/// pass over its headers per header.
struct HopByHop<'h, 'b> {
    headers: &'h [httparse::Header<'b>],
    connection: bool,
}

impl<'h, 'b> HopByHop<'h, 'b> {
    fn of(headers: &'h [httparse::Header<'b>]) -> Self {
        let connection = headers.iter().any(|h| h.name.eq_ignore_ascii_case("connection"));
        HopByHop { headers, connection }
    }

    fn contains(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || (self.connection
                && !is_end_to_end(name)
                && self
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                    .flat_map(|h| tokens(h.value))
                    .any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

/// Everything besides the request that shapes the upstream head.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// The client's address, formatted.
    pub client_ip: &'a str,
    pub client_v6: bool,
    /// The port of the listener the request came in on, formatted
    /// (`X-Forwarded-Port` when the Host header has no port).
    pub local_port: &'a str,
    /// The peer is in `--trusted-proxies`: its `X-Forwarded-Proto`, `-Port`,
    /// `-Host` and `X-Real-Ip` are passed on instead of ours.
    pub trusted: bool,
    /// `X-Forwarded-Prefix`: what `strip=` removed; `""` when nothing.
    pub prefix: &'a str,
    /// The request came over TLS.
    pub tls: bool,
    /// The Host header to send; `""` sends none.
    pub host: &'a str,
    /// The target's own path, without its trailing `/`.
    pub base: &'a str,
    /// The request path after `strip=` and `prepend=`.
    pub path: &'a str,
}

/// Writes the head sent to the upstream into `out`: the request line with
/// the rewritten path, the client's end-to-end headers, and the proxy's own
/// (Host, `X-Forwarded-*`, `Forwarded`, `X-Real-Ip`; the same values the
/// hyper path sets, see `headers::add_forwarded`).
pub fn write_upstream(out: &mut Vec<u8>, req: &Request<'_, '_>, up: &Upstream<'_>) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(up.base.as_bytes());
    out.extend_from_slice(up.path.as_bytes());
    if up.base.is_empty() && up.path.is_empty() {
        out.push(b'/');
    }
    if let Some(q) = req.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !up.host.is_empty() {
        header(out, "host", up.host.as_bytes());
    }
    // Whether earlier hops' lists are there, to be continued below.
    let mut xff = false;
    let mut fwd = false;
    let hop = HopByHop::of(req.headers);
    // Which of KEPT_FROM_TRUSTED a trusted peer sent (and so are passed on).
    let mut kept = [false; KEPT_FROM_TRUSTED.len()];
    for h in req.headers {
        if up.trusted
            && let Some(i) = KEPT_FROM_TRUSTED.iter().position(|k| h.name.eq_ignore_ascii_case(k))
        {
            kept[i] = true;
            header(out, h.name, h.value);
            continue;
        }
        if !up.prefix.is_empty() && h.name.eq_ignore_ascii_case("x-forwarded-prefix") {
            continue;
        }
        if SET_BY_PROXY.iter().any(|s| h.name.eq_ignore_ascii_case(s)) || hop.contains(h.name) {
            xff |= h.name.eq_ignore_ascii_case("x-forwarded-for");
            fwd |= h.name.eq_ignore_ascii_case("forwarded");
            continue;
        }
        header(out, h.name, h.value);
    }
    // The lists: earlier hops' values (every line, in order), then ours.
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff {
        previous(out, req.headers, "x-forwarded-for");
    }
    out.extend_from_slice(up.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    // In KEPT_FROM_TRUSTED's order.
    let ours = [
        proto(up.tls).as_bytes(),
        req.host.as_bytes(),
        forwarded_port(req.host, up.local_port).as_bytes(),
        up.client_ip.as_bytes(),
    ];
    for ((name, value), kept) in KEPT_FROM_TRUSTED.iter().zip(ours).zip(kept) {
        if !kept && !value.is_empty() {
            header(out, name, value);
        }
    }
    if !up.prefix.is_empty() {
        header(out, "x-forwarded-prefix", up.prefix.as_bytes());
    }
    out.extend_from_slice(b"forwarded: ");
    if fwd {
        previous(out, req.headers, "forwarded");
    }
    write_forwarded_elem(out, up.client_ip, up.client_v6, up.tls, req.host);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes the non-empty values of every `name` line followed by `, `.
fn previous(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], name: &str) {
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        let v = h.value.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How the body of a response ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, 1xx, 204, 304.
    Empty,
    Length(u64),
    /// Chunked, passed on as it is; [`super::chunked`] finds the end.
    Chunked,
    /// Until the upstream closes; the client connection closes too.
    UntilClose,
}

/// A parsed upstream response head.
#[derive(Debug)]
pub struct Response<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    pub framing: Framing,
    /// The upstream connection can carry another request after this body.
    pub reusable: bool,
    pub len: usize,
}

/// Why a response head cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("ambiguous response head: {0}")]
    Framing(Refusal),
    #[error("unexpected 101 Switching Protocols")]
    Switching,
}

/// Parses an upstream response head; `Ok(None)` while incomplete.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [httparse::Header<'b>],
    head_request: bool,
) -> Result<Option<Response<'b, 'h>>, BadResponse> {
    let mut resp = httparse::Response::new(storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Parse(e)),
    };
    framing::check_raw_head(&buf[..len]).map_err(BadResponse::Framing)?;
    framing::check_response(resp.headers.iter().map(|h| (h.name.as_bytes(), h.value))).map_err(BadResponse::Framing)?;
    let status = resp.code.unwrap_or(0);
    if status == 101 {
        return Err(BadResponse::Switching);
    }
    let mut reusable = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = decimal(h.value.trim_ascii());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the final coding counts: chunked must be last.
            chunked = tokens(h.value).last().map(|t| t.eq_ignore_ascii_case(b"chunked")).or(chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    reusable = true;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        reusable = false;
    }
    Ok(Some(Response { status, reason: resp.reason.unwrap_or(""), headers: resp.headers, framing, reusable, len }))
}

/// Writes the head sent to the client: the upstream's status and
/// end-to-end headers; `Transfer-Encoding` stays when the chunked body is
/// passed on; `Connection: close` when the client connection ends after it.
pub fn write_client(out: &mut Vec<u8>, resp: &Response<'_, '_>, close: bool) {
    let _ = write!(out, "HTTP/1.1 {} ", resp.status);
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let hop = HopByHop::of(resp.headers);
    for h in resp.headers {
        let keep_te = resp.framing == Framing::Chunked && h.name.eq_ignore_ascii_case("transfer-encoding");
        if !keep_te && hop.contains(h.name) {
            continue;
        }
        header(out, h.name, h.value);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
pub(super) mod props;
#[cfg(test)]
mod tests;
