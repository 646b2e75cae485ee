use super::*;

fn parse(raw: &str) -> Option<(String, String, Option<String>, u64, bool, usize)> {
    let mut storage = request_storage();
    match parse_request(raw.as_bytes(), &mut storage, 100) {
        Parsed::Request(r) => Some((
            r.method.to_string(),
            r.path.to_string(),
            r.query.map(str::to_string),
            r.content_length,
            r.close,
            r.len,
        )),
        Parsed::Partial => panic!("partial: {raw:?}"),
        Parsed::HandOff(_) => None,
        Parsed::Refuse(why) => panic!("refused ({why}): {raw:?}"),
    }
}

#[test]
fn plain_requests_are_taken() {
    let raw = "GET /a/b?x=1&y HTTP/1.1\r\nHost: App.Example.com:8080\r\nAccept: */*\r\n\r\n";
    assert_eq!(parse(raw), Some(("GET".into(), "/a/b".into(), Some("x=1&y".into()), 0, false, raw.len())));
    let raw = "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: keep-alive, close\r\n\r\nbody";
    assert_eq!(parse(raw), Some(("POST".into(), "/f".into(), None, 12, true, raw.len() - 4)));
}

#[test]
fn incomplete_heads_are_partial() {
    let mut storage = request_storage();
    assert!(matches!(parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut storage, 100), Parsed::Partial));
}

fn verdict(raw: &str) -> Result<bool, Refusal> {
    let mut storage = request_storage();
    match parse_request(raw.as_bytes(), &mut storage, 100) {
        Parsed::Request(_) => Ok(true),
        Parsed::HandOff(_) => Ok(false),
        Parsed::Partial => panic!("partial: {raw:?}"),
        Parsed::Refuse(why) => Err(why),
    }
}

#[test]
fn sound_but_unusual_requests_go_to_hyper() {
    for raw in [
        // other versions, forms and methods
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        // a body that needs decoding or a dialogue
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        // upgrades
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
    ] {
        assert_eq!(verdict(raw), Ok(false), "{raw:?}");
    }
}

#[test]
fn ambiguous_heads_are_refused() {
    use Refusal::*;
    for (raw, why) in [
        ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", BadTarget),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", RepeatedLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", BadLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", BadLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", LengthAndEncoding),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", BadTransferEncoding),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", EncodingOnHttp10),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", RepeatedHost),
        ("GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", BadHost),
        ("GET / HTTP/1.1\r\nHost: \u{e9}\r\n\r\n", BadHost),
        ("GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", HostMismatch),
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", BareLineEnd),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", BareLineEnd),
        ("GET / HTTP/1.1\r\nBad Header\r\n\r\n", Malformed),
        ("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", Malformed),
        ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Malformed),
        ("GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", Malformed),
        ("GET /\x01 HTTP/1.1\r\n\r\n", Malformed),
    ] {
        assert_eq!(verdict(raw), Err(why), "{raw:?}");
    }
}

#[test]
fn header_count_limit() {
    let head = |n: usize| {
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..n {
            raw.push_str(&format!("x-h{i}: v\r\n"));
        }
        raw + "\r\n"
    };
    // Past the fast path's own storage but within the limit: checked, then hyper.
    assert_eq!(verdict(&head(MAX_HEADERS + 1)), Ok(false));
    assert_eq!(verdict(&head(100)), Ok(false));
    assert_eq!(verdict(&head(101)), Err(Refusal::TooManyHeaders));
    let mut storage = request_storage();
    let raw = head(11);
    assert!(matches!(parse_request(raw.as_bytes(), &mut storage, 10), Parsed::Refuse(Refusal::TooManyHeaders)));
    // Checked on the large path too.
    let raw = format!("{}\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", head(80).trim_end());
    assert_eq!(verdict(&raw), Err(Refusal::RepeatedLength));
}

#[test]
fn connection_cannot_unframe_the_body() {
    // The request: Content-Length stays, so the body stays a body.
    let raw = "POST /public HTTP/1.1\r\nHost: app.test\r\nContent-Length: 60\r\nConnection: Content-Length, X-Real-Ip, Host\r\n\r\n";
    let out = upstream_head(raw, up("app.test", "", "/public"));
    assert!(out.contains("content-length: 60\r\n") || out.contains("Content-Length: 60\r\n"), "{out}");
}

fn upstream_head(raw: &str, up: Upstream<'_>) -> String {
    let mut storage = request_storage();
    let Parsed::Request(req) = parse_request(raw.as_bytes(), &mut storage, 100) else { panic!("not taken: {raw:?}") };
    let mut out = Vec::new();
    write_upstream(&mut out, &req, &up);
    String::from_utf8(out).expect("utf-8")
}

fn up(host: &'static str, base: &'static str, path: &'static str) -> Upstream<'static> {
    Upstream {
        client_ip: "10.1.2.3",
        client_v6: false,
        local_port: "9999",
        trusted: false,
        tls: false,
        prefix: "",
        host,
        base,
        path,
    }
}

#[test]
fn upstream_head_drops_hop_by_hop_and_adds_forwarding() {
    let raw = "GET /a?q=1 HTTP/1.1\r\nHost: app.example.com\r\nConnection: keep-alive, X-Secret\r\n\
               X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\n\
               Accept: */*\r\nX-Real-Ip: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\r\n";
    assert_eq!(
        upstream_head(raw, up("app.example.com", "", "/a")),
        "GET /a?q=1 HTTP/1.1\r\nhost: app.example.com\r\nAccept: */*\r\n\
         x-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: app.example.com\r\n\
         x-forwarded-port: 9999\r\nx-real-ip: 10.1.2.3\r\n\
         forwarded: for=10.1.2.3;proto=http;host=\"app.example.com\"\r\n\r\n"
    );
}

#[test]
fn forwarding_lists_are_appended_to() {
    let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\
               Forwarded: for=1.1.1.1\r\n\r\n";
    let head = upstream_head(raw, up("a", "", "/"));
    assert!(head.contains("\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n"), "{head}");
    assert!(head.contains("\r\nforwarded: for=1.1.1.1, for=10.1.2.3;proto=http;host=\"a\"\r\n"), "{head}");
    assert_eq!(head.matches("x-forwarded-for").count(), 1);
}

#[test]
fn upstream_head_rewrites_path_and_host() {
    let raw = "POST /api/users?x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";
    let head = upstream_head(raw, up("10.0.0.1:8080", "/base", "/users"));
    assert!(head.starts_with("POST /base/users?x HTTP/1.1\r\nhost: 10.0.0.1:8080\r\nContent-Length: 2\r\n"), "{head}");
    assert!(head.contains("x-forwarded-host: a\r\n"), "the client's host, not the one sent: {head}");
    // No Host to send, no Host header; no client Host, no X-Forwarded-Host.
    let head = upstream_head("GET / HTTP/1.1\r\n\r\n", up("", "", "/"));
    assert!(!head.contains("host:"), "{head}");
    assert!(head.contains("forwarded: for=10.1.2.3;proto=http\r\n"), "{head}");
}

/// Status, framing, reusable, head length, and the head written for the client.
type Summary = (u16, Framing, bool, usize, String);

fn response(raw: &str, head_request: bool) -> Result<Option<Summary>, BadResponse> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    Ok(parse_response(raw.as_bytes(), &mut storage, head_request)?.map(|r| {
        let mut out = Vec::new();
        write_client(&mut out, &r, false);
        (r.status, r.framing, r.reusable, r.len, String::from_utf8(out).expect("utf-8"))
    }))
}

#[test]
fn response_framing() {
    let f = |raw: &str, head: bool| response(raw, head).expect("valid").map(|r| (r.1, r.2)).expect("complete");
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false), (Framing::Length(5), true));
    assert_eq!(f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false), (Framing::Chunked, true));
    assert_eq!(f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false), (Framing::UntilClose, false));
    assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n", false), (Framing::UntilClose, false));
    assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true), (Framing::Empty, true));
    assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n", false), (Framing::Empty, true));
    assert_eq!(f("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false), (Framing::Empty, true));
    assert_eq!(f("HTTP/1.1 100 Continue\r\n\r\n", false), (Framing::Empty, true));
    assert_eq!(
        f("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false),
        (Framing::Length(1), false)
    );
    assert_eq!(f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false), (Framing::Length(1), false));
    assert_eq!(
        f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", false),
        (Framing::Length(1), true)
    );
}

#[test]
fn bad_responses() {
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).err(),
        Some(BadResponse::Framing(Refusal::RepeatedLength))
    );
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).err(),
        Some(BadResponse::Framing(Refusal::BadLength))
    );
    // Ambiguous or split heads: the connection is not trusted again.
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false).err(),
        Some(BadResponse::Framing(Refusal::RepeatedLength))
    );
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false).err(),
        Some(BadResponse::Framing(Refusal::LengthAndEncoding))
    );
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n", false).err(),
        Some(BadResponse::Framing(Refusal::BareLineEnd))
    );
    assert_eq!(
        response("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n", false)
            .map(|r| r.map(|r| r.4.to_ascii_lowercase().contains("content-length: 2"))),
        Ok(Some(true)),
        "a response's length survives Connection too"
    );
    assert_eq!(response("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).err(), Some(BadResponse::Switching));
    assert!(matches!(response("HTTP/1.1 2OO OK\r\n\r\n", false), Err(BadResponse::Parse(_))));
    assert_eq!(response("HTTP/1.1 200 OK\r\nContent-", false), Ok(None));
}

#[test]
fn client_head_keeps_end_to_end_headers_only() {
    let raw = "HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 1\r\n\
               Keep-Alive: timeout=5\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
    let (_, _, _, len, out) = response(raw, false).expect("valid").expect("complete");
    assert_eq!(len, raw.len());
    assert_eq!(
        out,
        "HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    );
    // Chunked passes through with its Transfer-Encoding.
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (_, _, _, _, out) = response(raw, false).expect("valid").expect("complete");
    assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}

#[test]
fn client_head_says_close_when_asked() {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let raw = b"HTTP/1.1 200 OK\r\n\r\n";
    let r = parse_response(raw, &mut storage, false).expect("valid").expect("complete");
    let mut out = Vec::new();
    write_client(&mut out, &r, true);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
}

#[test]
fn upstream_head_port_is_the_host_headers() {
    let raw = "GET / HTTP/1.1\r\nHost: app.example.com:8080\r\n\r\n";
    assert!(upstream_head(raw, up("app.example.com:8080", "", "/")).contains("x-forwarded-port: 8080\r\n"));
}

#[test]
fn upstream_head_keeps_a_trusted_proxys_claims_and_overwrites_others() {
    let raw = "GET / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\
               X-Real-Ip: 203.0.113.5\r\n\r\n";
    let trusted = upstream_head(raw, Upstream { trusted: true, ..up("a.com", "", "/") });
    assert!(trusted.contains("X-Forwarded-Proto: https\r\n"), "{trusted}");
    assert!(trusted.contains("X-Forwarded-Port: 443\r\n"), "{trusted}");
    assert!(trusted.contains("X-Real-Ip: 203.0.113.5\r\n"), "{trusted}");
    assert!(!trusted.contains("x-forwarded-proto: http\r\n"), "{trusted}");
    assert!(trusted.contains("x-forwarded-host: a.com\r\n"), "what it did not send is ours: {trusted}");
    let other = upstream_head(raw, up("a.com", "", "/"));
    assert!(!other.contains("https") && !other.contains("203.0.113.5"), "{other}");
    assert!(other.contains("x-forwarded-proto: http\r\nx-forwarded-host: a.com\r\nx-forwarded-port: 9999\r\n"));
}

#[test]
fn upstream_head_carries_the_stripped_prefix() {
    let raw = "GET /api/x HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-Prefix: /evil\r\n\r\n";
    let head = upstream_head(raw, Upstream { prefix: "/api", ..up("a.com", "", "/x") });
    assert!(head.starts_with("GET /x HTTP/1.1\r\n"));
    assert!(head.contains("x-forwarded-prefix: /api\r\n") && !head.contains("/evil"), "{head}");
    let head = upstream_head(raw, up("a.com", "", "/api/x"));
    assert!(head.contains("X-Forwarded-Prefix: /evil\r\n"), "passed on when nothing was stripped: {head}");
}
