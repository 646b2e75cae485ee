//! The one set of rules that decides whether a request head can be read only
//! one way, called by both proxy paths (the fast path on its own parse, the
//! hyper path on hyper's) so both refuse the same requests the same way.
//!
//! Why refuse rather than guess: a proxy and the server behind it that read
//! a message's framing differently disagree about where the next request
//! starts, and the difference is a request the proxy never saw (request
//! smuggling). So anything RFC 9112 lets a recipient read two ways
//! (repeated or signed lengths, a length next to a transfer coding, a coding
//! other than a final `chunked`, bare CR or LF, control bytes) is answered
//! 400 and the connection closed, before any byte goes upstream.
//! Pure: bytes in, a verdict out.

/// Why a request is refused before anything is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request head")]
    Malformed,
    #[error("bare CR or LF in the head")]
    BareLineEnd,
    #[error("control byte in the head")]
    ControlByte,
    #[error("more than one Content-Length")]
    RepeatedLength,
    #[error("Content-Length is not a plain decimal number")]
    BadLength,
    #[error("Transfer-Encoding other than a final chunked")]
    BadTransferEncoding,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    EncodingOnHttp10,
    #[error("more than one Host header")]
    RepeatedHost,
    #[error("Host is not a valid host[:port]")]
    BadHost,
    #[error("the absolute request target names another host than Host")]
    HostMismatch,
    #[error("request target is neither origin-form nor an http(s) absolute URI")]
    BadTarget,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("too many header lines")]
    TooManyHeaders,
}

impl Refusal {
    /// The status the client gets (RFC 9110 15.5.1, RFC 6585 5).
    pub fn status(self) -> u16 {
        match self {
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => 431,
            _ => 400,
        }
    }

    pub fn reason(self) -> &'static str {
        match self.status() {
            431 => "Request Header Fields Too Large",
            _ => "Bad Request",
        }
    }
}

/// How a checked request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyFraming {
    pub content_length: Option<u64>,
    pub chunked: bool,
}

/// Checks a request's line and header fields (names and values as sent).
/// `http11` is false for HTTP/1.0. Does not look at line ends: see
/// [`check_raw_head`] for the bytes a parser may already have normalised.
pub fn check_request<'a>(
    http11: bool,
    target: &str,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<BodyFraming, Refusal> {
    let authority = target_authority(target)?;
    let mut framing = BodyFraming::default();
    let mut host: Option<&[u8]> = None;
    let mut te: Vec<&[u8]> = Vec::new();
    let mut saw_te = false;
    for (name, value) in headers {
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Refusal::ControlByte);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if framing.content_length.is_some() {
                return Err(Refusal::RepeatedLength);
            }
            framing.content_length = Some(decimal(value).ok_or(Refusal::BadLength)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            saw_te = true;
            te.extend(value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
        } else if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(Refusal::RepeatedHost);
            }
            let v = value.trim_ascii();
            if !valid_host(v) {
                return Err(Refusal::BadHost);
            }
            host = Some(v);
        }
    }
    if saw_te {
        if !http11 {
            return Err(Refusal::EncodingOnHttp10);
        }
        let chunked = |t: &[u8]| t.eq_ignore_ascii_case(b"chunked");
        let well_formed = te.iter().all(|t| !t.is_empty() && t.iter().all(|&b| is_tchar(b)));
        let final_chunked = te.last().is_some_and(|t| chunked(t));
        if !well_formed || !final_chunked || te.iter().filter(|t| chunked(t)).count() != 1 {
            return Err(Refusal::BadTransferEncoding);
        }
        if framing.content_length.is_some() {
            return Err(Refusal::LengthAndEncoding);
        }
        framing.chunked = true;
    }
    if let (Some(a), Some(h)) = (authority, host)
        && !a.as_bytes().eq_ignore_ascii_case(h)
    {
        return Err(Refusal::HostMismatch);
    }
    Ok(framing)
}

/// Checks an upstream response's header fields: one plain Content-Length
/// at most, never beside a Transfer-Encoding, no control bytes. A response
/// that fails is answered 502 and its connection is never used again: what
/// follows it on that connection cannot be trusted to be the next response.
pub fn check_response<'a>(headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Result<(), Refusal> {
    let (mut length, mut coding) = (false, false);
    for (name, value) in headers {
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Refusal::ControlByte);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if length {
                return Err(Refusal::RepeatedLength);
            }
            decimal(value.trim_ascii()).ok_or(Refusal::BadLength)?;
            length = true;
        }
        coding |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    if length && coding {
        return Err(Refusal::LengthAndEncoding);
    }
    Ok(())
}

/// The authority of an absolute-form target (`None` for origin-form and
/// `OPTIONS *`); authority-form (CONNECT) and anything else is refused: the
/// router is not a forward proxy.
fn target_authority(target: &str) -> Result<Option<&str>, Refusal> {
    if target.starts_with('/') || target == "*" {
        return Ok(None);
    }
    let lower = |n: usize| target.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(7).as_deref() == Some("http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &target[8..]
    } else {
        return Err(Refusal::BadTarget);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') || !valid_host(authority.as_bytes()) {
        return Err(Refusal::BadTarget);
    }
    Ok(Some(authority))
}

/// `uri-host [":" port]` (RFC 9110 7.2), the port 1-5 digits up to 65535;
/// empty is allowed (a request whose target has no authority).
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else { return false };
        let inner = &v[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match &v[close + 1..] {
            [] => (&v[..0], None),
            [b':', port @ ..] => (&v[..0], Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        }
    };
    let reg_name = host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && decimal(p).is_some_and(|n| n <= 65535));
    reg_name && port_ok
}

/// A Content-Length value: digits only (no sign, space or list), no overflow.
pub fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// RFC 9110 5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a complete head as received (request or response): every line
/// ends in CRLF, no bare CR or LF, no control bytes other than HTAB. A
/// parser that accepts a bare LF (httparse does) would otherwise read the
/// head differently from a strict server behind the router.
pub fn check_raw_head(head: &[u8]) -> Result<(), Refusal> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return Err(Refusal::BareLineEnd),
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err(Refusal::BareLineEnd),
            b'\r' | b'\n' | b'\t' => {}
            0..0x20 | 0x7f => return Err(Refusal::ControlByte),
            _ => {}
        }
        prev = b;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(http11: bool, target: &str, headers: &[(&str, &str)]) -> Result<BodyFraming, Refusal> {
        check_request(http11, target, headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check(true, "/a?b", &[("Host", "app.test")]), Ok(BodyFraming::default()));
        let f = check(true, "/", &[("host", "a:8080"), ("Content-Length", "12")]).unwrap();
        assert_eq!(f.content_length, Some(12));
        let f = check(true, "/", &[("host", "a"), ("transfer-encoding", "gzip, chunked")]).unwrap();
        assert!(f.chunked);
        assert!(check(true, "http://App.test/x", &[("Host", "app.test")]).is_ok());
        assert!(check(true, "http://app.test:81/x", &[]).is_ok());
        assert!(check(false, "/", &[]).is_ok(), "HTTP/1.0 needs no Host");
        assert!(check(true, "*", &[("host", "[::1]:80")]).is_ok());
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        use Refusal::*;
        for (headers, why) in [
            (vec![("content-length", "1"), ("Content-Length", "1")], RepeatedLength),
            (vec![("content-length", "1"), ("content-length", "2")], RepeatedLength),
            (vec![("content-length", "1, 1")], BadLength),
            (vec![("content-length", "+1")], BadLength),
            (vec![("content-length", "-1")], BadLength),
            (vec![("content-length", "1 2")], BadLength),
            (vec![("content-length", "0x10")], BadLength),
            (vec![("content-length", "99999999999999999999")], BadLength),
            (vec![("content-length", "")], BadLength),
            (vec![("content-length", "5"), ("transfer-encoding", "chunked")], LengthAndEncoding),
            (vec![("transfer-encoding", "chunked"), ("content-length", "5")], LengthAndEncoding),
            (vec![("transfer-encoding", "chunked, gzip")], BadTransferEncoding),
            (vec![("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], BadTransferEncoding),
            (vec![("transfer-encoding", "xchunked")], BadTransferEncoding),
            (vec![("transfer-encoding", "chunked\x0b")], ControlByte),
            (vec![("transfer-encoding", "\"chunked\"")], BadTransferEncoding),
            (vec![("transfer-encoding", "")], BadTransferEncoding),
            (vec![("transfer-encoding", "identity")], BadTransferEncoding),
            (vec![("x", "a\0b")], ControlByte),
        ] {
            assert_eq!(check(true, "/", &headers), Err(why), "{headers:?}");
        }
        assert_eq!(check(false, "/", &[("transfer-encoding", "chunked")]), Err(EncodingOnHttp10));
    }

    #[test]
    fn hosts_and_targets() {
        use Refusal::*;
        assert_eq!(check(true, "/", &[("host", "a"), ("host", "a")]), Err(RepeatedHost));
        for bad in ["a:", "a:x", "a:65536", "a:-1", "a b", "a:80:80x", "[::1", "[::1]x", "a/b", "a@b"] {
            assert_eq!(check(true, "/", &[("host", bad)]), Err(BadHost), "{bad}");
        }
        assert_eq!(check(true, "http://b/x", &[("host", "a")]), Err(HostMismatch));
        assert_eq!(check(true, "http://a:81/x", &[("host", "a")]), Err(HostMismatch));
        for bad in ["a:443", "ftp://a/", "http:///x", "http://u@a/", "x"] {
            assert_eq!(check(true, bad, &[("host", "a")]), Err(BadTarget), "{bad}");
        }
    }

    #[test]
    fn raw_heads() {
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), Err(Refusal::BareLineEnd));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), Err(Refusal::BareLineEnd));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nX: a\0\r\n\r\n"), Err(Refusal::ControlByte));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nX: a\tb\xff\r\n\r\n"), Ok(()));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nX: a\r"), Err(Refusal::BareLineEnd));
    }

    #[test]
    fn responses() {
        let check = |h: &[(&str, &str)]| check_response(h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        assert_eq!(check(&[("content-length", "5"), ("x", "y")]), Ok(()));
        assert_eq!(check(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(check(&[("content-length", "5"), ("content-length", "5")]), Err(Refusal::RepeatedLength));
        assert_eq!(
            check(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err(Refusal::LengthAndEncoding)
        );
        assert_eq!(check(&[("content-length", "x")]), Err(Refusal::BadLength));
    }

    #[test]
    fn statuses() {
        assert_eq!(Refusal::TooManyHeaders.status(), 431);
        assert_eq!(Refusal::HeadTooLarge.status(), 431);
        assert_eq!(Refusal::RepeatedLength.status(), 400);
    }
}
