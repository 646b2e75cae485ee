//! Property tests for the request head parser: hostile heads built from the
//! pieces smuggling is made of, and random bytes. Whatever the fast path
//! accepts, hyper (which serves the hand-offs) accepts too and frames the
//! same way; it never panics. Case counts: `PROPTEST_CASES` (see README).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::proxy::fast::one::Boundary;

pub fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c.failure_persistence = None;
    c
}

/// A request head from the pieces of smuggling attempts.
fn hostile_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "CONNECT", "OPTIONS", "G T"]);
    let target =
        prop::sample::select(vec!["/", "/a?b=1", "http://h/x", "http://H:80/", "h:80", "*", "/\x01", "//x", ""]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "http/1.1"]);
    let name = prop::sample::select(vec![
        "Host",
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Expect",
        "Upgrade",
        "X",
        " Transfer-Encoding",
        "Transfer-Encoding ",
        "Content-Length\x00",
    ]);
    let sep = prop::sample::select(vec![": ", ":", " : ", ":\t", ":  "]);
    let value = prop::sample::select(vec![
        "h",
        "h:80",
        "H:80",
        "h:8x",
        "h:",
        "[::1]:1",
        "5",
        "+5",
        "5, 5",
        "0",
        "05",
        " 5 ",
        "chunked",
        "Chunked",
        "xchunked",
        "chunked, identity",
        "gzip, chunked",
        "chunked,chunked",
        "close",
        "keep-alive",
        "Content-Length",
        "Transfer-Encoding, close",
        "upgrade",
        "a\x00b",
        "",
        "\x0b",
        "100-continue",
        "websocket",
        "\u{e9}",
    ]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r", " \r\n", "\r\n "]);
    let header = (name, sep, value, eol.clone()).prop_map(|(n, s, v, e)| format!("{n}{s}{v}{e}"));
    (method, target, version, eol.clone(), prop::collection::vec(header, 0..7), eol)
        .prop_map(|(m, t, v, e1, headers, end)| format!("{m} {t} {v}{e1}{}{end}", headers.concat()).into_bytes())
}

/// A request's Content-Length and whether it had a Transfer-Encoding.
type HyperView = (Option<String>, bool);

/// What hyper's server made of a head: None when it refused it.
fn hyper_reads(raw: &[u8]) -> Option<HyperView> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let seen: Arc<Mutex<Option<HyperView>>> = Arc::default();
        let log = seen.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let cl = req.headers().get("content-length").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            *log.lock().expect("log") = Some((cl, req.headers().contains_key("transfer-encoding")));
            async { Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new())) }
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        tokio::io::AsyncWriteExt::write_all(&mut client, raw).await.expect("write");
        drop(tokio::io::AsyncWriteExt::shutdown(&mut client).await);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
        seen.lock().expect("log").clone()
    })
}

/// The fast path's verdict: Some(boundary) when it takes the request or
/// hands exactly it to hyper; None when it refuses it or hands the whole
/// connection over (another protocol).
fn fast_reads(raw: &[u8]) -> Option<Boundary> {
    let mut storage = request_storage();
    match parse_request(raw, &mut storage, 100) {
        Parsed::Request(r) => Some(Boundary {
            head_len: r.len,
            body: BodyFraming { content_length: Some(r.content_length), chunked: false },
        }),
        Parsed::HandOff(HandOff::Request(b)) => Some(b),
        Parsed::HandOff(HandOff::Connection) | Parsed::Refuse(_) | Parsed::Partial => None,
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// Never a panic; whatever the fast path accepts, hyper accepts too and
    /// reads the same framing (so a hand-off cannot be read two ways).
    #[test]
    fn accepted_heads_are_read_the_same_by_hyper(raw in hostile_head()) {
        if let Some(b) = fast_reads(&raw) {
            // Bytes after the empty line are the next request's.
            let raw = &raw[..b.head_len];
            let hyper = hyper_reads(raw);
            prop_assert!(hyper.is_some(), "fast path accepts what hyper refuses: {:?}", String::from_utf8_lossy(raw));
            let (cl, te) = hyper.unwrap_or_default();
            prop_assert_eq!(te, b.body.chunked, "{:?}", String::from_utf8_lossy(raw));
            if !b.body.chunked {
                let ours = b.body.content_length.filter(|&n| n > 0);
                let theirs = cl.and_then(|v| v.parse::<u64>().ok()).filter(|&n| n > 0);
                prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(raw));
            }
            // And httparse agrees the head is complete where we say.
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let parsed = httparse::Request::new(&mut headers).parse(raw);
            prop_assert_eq!(parsed.ok(), Some(httparse::Status::Complete(raw.len())));
        }
    }

    /// Random bytes, and random bytes after a valid request line: no panic,
    /// and a verdict on any prefix.
    #[test]
    fn random_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300), line in any::<bool>()) {
        let mut raw = if line { b"POST / HTTP/1.1\r\n".to_vec() } else { Vec::new() };
        raw.extend(tail);
        for end in [raw.len() / 2, raw.len()] {
            let mut storage = request_storage();
            let _ = parse_request(&raw[..end], &mut storage, 100);
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let _ = parse_response(&raw[..end], &mut storage, false);
        }
    }
}
