//! gRPC through the hyper path: what is gRPC-specific about forwarding a
//! call (the `grpc-timeout` deadline, `te: trailers`) and the router's own
//! failures answered in gRPC form. A gRPC client cannot read an HTTP 404 or
//! 502; it reads `grpc-status`. So when the router itself answers a gRPC
//! request (no route, every target failed, timeout, refused), the answer is
//! a trailers-only response: HTTP 200 with `grpc-status` and `grpc-message`
//! in the headers and no body.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::serve::{RespBody, full};

/// Marks a response the router made itself (not an upstream's), so it can
/// be turned into gRPC form for a gRPC request.
#[derive(Debug, Clone, Copy)]
pub struct RouterMade;

/// Whether a request is a gRPC call (`content-type: application/grpc...`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct == "application/grpc" || ct.starts_with("application/grpc+") || ct.starts_with("application/grpc;")
    })
}

/// `grpc-timeout` (gRPC over HTTP/2): up to 8 digits and a unit, `H` hours,
/// `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n`
/// nanoseconds. None when absent or malformed (malformed is ignored, as
/// gRPC servers do, rather than guessed at).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status code for one of the router's own HTTP answers.
pub fn status_for(http: StatusCode) -> u8 {
    match http.as_u16() {
        404 => 12,       // UNIMPLEMENTED: no route for the method
        502 | 503 => 14, // UNAVAILABLE: no instance answered
        504 => 4,        // DEADLINE_EXCEEDED
        403 => 7,        // PERMISSION_DENIED
        400 | 431 => 13, // INTERNAL: the request could not be read
        _ => 2,          // UNKNOWN
    }
}

/// The router's own answer `resp` in gRPC form (trailers-only).
pub fn own_answer(resp: Response<RespBody>) -> Response<RespBody> {
    let code = status_for(resp.status());
    let message = resp.status().canonical_reason().unwrap_or("error").to_ascii_lowercase();
    let mut out = Response::new(full(""));
    let h = out.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    // Reason phrases are plain ASCII: nothing to percent-encode.
    if let Ok(v) = HeaderValue::from_str(&format!("router: {message}")) {
        h.insert("grpc-message", v);
    }
    if let Some(c) = resp.headers().get(header::CONNECTION) {
        h.insert(header::CONNECTION, c.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn grpc_timeouts() {
        assert_eq!(timeout(&with("grpc-timeout", "200m")), Some(Duration::from_millis(200)));
        assert_eq!(timeout(&with("grpc-timeout", "1H")), Some(Duration::from_secs(3600)));
        assert_eq!(timeout(&with("grpc-timeout", "3M")), Some(Duration::from_secs(180)));
        assert_eq!(timeout(&with("grpc-timeout", "5S")), Some(Duration::from_secs(5)));
        assert_eq!(timeout(&with("grpc-timeout", "99999999u")), Some(Duration::from_micros(99_999_999)));
        assert_eq!(timeout(&with("grpc-timeout", "7n")), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789m", "-1m", "1.5S", "10", "10s", " 1S", "1S "] {
            assert_eq!(timeout(&with("grpc-timeout", bad)), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&with("content-type", "application/grpc")));
        assert!(is_grpc(&with("content-type", "application/grpc+proto")));
        assert!(!is_grpc(&with("content-type", "application/grpc-web")));
        assert!(!is_grpc(&with("content-type", "application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn own_answers_in_grpc_form() {
        for (http, code) in [(404, "12"), (502, "14"), (504, "4"), (403, "7"), (400, "13"), (500, "2")] {
            let mut r = Response::new(full("x"));
            *r.status_mut() = StatusCode::from_u16(http).unwrap();
            let g = own_answer(r);
            assert_eq!(g.status(), StatusCode::OK);
            assert_eq!(g.headers()["grpc-status"], code, "{http}");
            assert_eq!(g.headers()["content-type"], "application/grpc");
        }
    }
}
