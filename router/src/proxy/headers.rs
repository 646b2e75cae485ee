//! Header and URI rewriting between client and upstream, kept free of I/O so
//! every rule is unit-tested: hop-by-hop headers (RFC 9110 section 7.6.1) are
//! dropped, the client's identity is passed on in `X-Forwarded-*`,
//! `Forwarded` (RFC 7239) and `X-Real-Ip`, and the path is rewritten by the
//! route's `strip=` and `prepend=` options.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus the non-standard `Proxy-Connection` that some clients still send.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that frame or route the message, or that the proxy vouches for:
/// never hop-by-hop, even when a `Connection` header names them. Dropping
/// `Content-Length` because `Connection: Content-Length` asked would forward
/// the body without its length, and the server behind would read it as the
/// next request (request smuggling); dropping a forwarding header would let
/// the client hide who it is.
pub const NEVER_HOP_BY_HOP: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];

/// Whether `name` is one of [`NEVER_HOP_BY_HOP`].
pub fn is_end_to_end(name: &str) -> bool {
    NEVER_HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The protocol a request asks to switch to (`Connection: upgrade` plus
/// `Upgrade: X`), e.g. `websocket`.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks { headers.get(header::UPGRADE).cloned() } else { None }
}

/// Drops hop-by-hop headers and those the `Connection` header names. When
/// `upgrade` is set the message is a protocol switch, and `Connection:
/// upgrade` plus `Upgrade` are put back so the next hop sees the request.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !is_end_to_end(n.as_str()))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
}

/// Whether the client's `TE` names `trailers` (it can take trailers; gRPC
/// clients always say so).
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers")))
}

/// Who asked, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct ClientInfo<'a> {
    pub ip: IpAddr,
    /// The Host the client sent (with any port), empty if none.
    pub host: &'a str,
    /// Port of the listener the request came in on.
    pub local_port: u16,
    /// The peer is one of `--trusted-proxies`: its `X-Forwarded-Proto`,
    /// `-Port`, `-Host` and `X-Real-Ip` are kept.
    pub trusted: bool,
    /// The request came over TLS.
    pub tls: bool,
}

/// The port the client connected to, as `X-Forwarded-Port` carries it: the
/// Host header's port when it has one, else the listener's.
pub fn forwarded_port<'a>(host: &'a str, local_port: &'a str) -> &'a str {
    match crate::routes::tag::split_port(host) {
        Some((_, Some(port))) => port,
        _ => local_port,
    }
}

/// The client-claimed headers a trusted proxy's values are kept for.
pub const KEPT_FROM_TRUSTED: [&str; 4] = ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip"];

/// Adds the client's identity. `X-Forwarded-For` and `Forwarded` are lists
/// each proxy appends to. The single-valued ones are overwritten: the router
/// is the edge, so a value that arrives with the request came from the client
/// itself and must not let it claim another address or scheme; only a peer
/// in `--trusted-proxies` (a load balancer in front) keeps its own.
pub fn add_forwarded(headers: &mut HeaderMap, client: &ClientInfo<'_>) {
    let ip = client.ip.to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip.clone(),
    };
    set(headers, "x-forwarded-for", &xff);
    let local_port = client.local_port.to_string();
    let ours = [
        ("x-forwarded-proto", proto(client.tls)),
        ("x-forwarded-host", client.host),
        ("x-forwarded-port", forwarded_port(client.host, &local_port)),
        ("x-real-ip", &ip),
    ];
    for (name, value) in ours {
        if client.trusted && headers.contains_key(name) {
            continue;
        }
        if value.is_empty() {
            headers.remove(name);
        } else {
            set(headers, name, value);
        }
    }
    let mut elem = Vec::with_capacity(64);
    write_forwarded_elem(&mut elem, &ip, client.ip.is_ipv6(), client.tls, client.host);
    let elem = String::from_utf8_lossy(&elem);
    let fwd = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {elem}"),
        _ => elem.into_owned(),
    };
    set(headers, header::FORWARDED.as_str(), &fwd);
}

/// The scheme the client used, as `X-Forwarded-Proto` and `proto=` say it.
pub fn proto(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// This proxy's element of the `Forwarded` list (RFC 7239):
/// `for=IP;proto=http[s][;host="HOST"]`, an IPv6 address quoted in brackets.
pub fn write_forwarded_elem(out: &mut Vec<u8>, ip: &str, v6: bool, tls: bool, host: &str) {
    if v6 {
        out.extend_from_slice(b"for=\"[");
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(b"for=");
        out.extend_from_slice(ip.as_bytes());
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto(tls).as_bytes());
    if !host.is_empty() {
        out.extend_from_slice(b";host=\"");
        out.extend(host.bytes().filter(|b| !matches!(b, b'"' | b'\\')));
        out.push(b'"');
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// What `strip` leaves of `path` when it applies: a leading prefix, only on
/// a segment boundary.
fn strip_path<'a>(path: &'a str, strip: Option<&str>) -> Option<&'a str> {
    let s = strip.map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty())?;
    let rest = path.strip_prefix(s)?;
    match rest {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// The `strip=` value when it applies to `path`, for `X-Forwarded-Prefix`.
pub fn stripped_prefix<'s>(path: &str, strip: Option<&'s str>) -> Option<&'s str> {
    strip_path(path, strip).and(strip)
}

/// Sets `X-Forwarded-Prefix` to the stripped prefix, if any.
pub fn set_forwarded_prefix(headers: &mut HeaderMap, prefix: Option<&str>) {
    if let Some(prefix) = prefix {
        set(headers, "x-forwarded-prefix", prefix);
    }
}

/// The request path after the route's options: `strip` removes a leading
/// prefix (only on a segment boundary), `prepend` adds one.
pub fn rewrite_path<'a>(path: &'a str, strip: Option<&str>, prepend: Option<&str>) -> Cow<'a, str> {
    let p: &'a str = strip_path(path, strip).unwrap_or(path);
    match prepend.map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty()) {
        Some(pre) if pre.starts_with('/') => Cow::Owned(format!("{pre}{p}")),
        Some(pre) => Cow::Owned(format!("/{pre}{p}")),
        None => Cow::Borrowed(p),
    }
}

/// The upstream URI: the target's scheme and authority, the target's own
/// path (if any) followed by the rewritten request path, and the query.
pub fn upstream_uri(target: &Uri, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let base = target.path().trim_end_matches('/');
    let mut pq = format!("{base}{path}");
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = target.scheme().cloned();
    parts.authority = target.authority().cloned();
    parts.path_and_query = Some(PathAndQuery::try_from(pq)?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn connection_cannot_remove_framing_or_forwarding_headers() {
        let mut h = map(&[
            ("connection", "Content-Length, host, X-Forwarded-For, forwarded, x-real-ip, x-secret"),
            ("content-length", "60"),
            ("host", "app.test"),
            ("x-forwarded-for", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
            ("x-secret", "1"),
        ]);
        remove_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 5, "{h:?}");
        assert_eq!(h["content-length"], "60");
        assert!(!h.contains_key("x-secret"));
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        let proto = upgrade_protocol(&h);
        assert_eq!(proto.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        remove_hop_by_hop(&mut h, proto.as_ref());
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "k");
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        assert!(upgrade_protocol(&map(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_protocol(&map(&[("connection", "keep-alive, upgrade"), ("upgrade", "h2c")])).is_some());
    }

    fn client(ip: &str) -> ClientInfo<'static> {
        ClientInfo {
            ip: ip.parse().unwrap(),
            host: "app.example.com:8080",
            local_port: 9999,
            trusted: false,
            tls: false,
        }
    }

    #[test]
    fn forwarded_headers_are_added() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &client("10.1.2.3"));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example.com:8080");
        assert_eq!(h["x-forwarded-port"], "8080", "the Host header's port");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        assert_eq!(h["forwarded"], "for=10.1.2.3;proto=http;host=\"app.example.com:8080\"");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &ClientInfo { host: "app.example.com", ..client("10.1.2.3") });
        assert_eq!(h["x-forwarded-port"], "9999", "the listener's port without one");
    }

    #[test]
    fn forwarded_lists_are_appended_and_client_claims_overwritten() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        add_forwarded(&mut h, &client("::1"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "http", "the client cannot claim https");
        assert_eq!(h["x-real-ip"], "::1", "the client cannot claim another address");
        assert_eq!(h["forwarded"], "for=1.1.1.1, for=\"[::1]\";proto=http;host=\"app.example.com:8080\"");
    }

    #[test]
    fn a_trusted_proxy_keeps_its_forwarded_values() {
        let sent = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-host", "lb.example.com"),
            ("x-real-ip", "203.0.113.5"),
            ("x-forwarded-for", "203.0.113.5"),
        ];
        let mut h = map(&sent);
        add_forwarded(&mut h, &ClientInfo { trusted: true, ..client("10.0.0.2") });
        for (name, value) in &sent[..4] {
            assert_eq!(h[*name], *value, "{name} kept");
        }
        assert_eq!(h["x-forwarded-for"], "203.0.113.5, 10.0.0.2", "the list still grows");
        let mut h = map(&[("x-forwarded-proto", "https")]);
        add_forwarded(&mut h, &ClientInfo { trusted: true, ..client("10.0.0.2") });
        assert_eq!(h["x-real-ip"], "10.0.0.2", "what it did not send is ours");
        assert_eq!(h["x-forwarded-host"], "app.example.com:8080");
        let mut h = map(&sent);
        add_forwarded(&mut h, &client("10.0.0.2"));
        assert_eq!(h["x-forwarded-proto"], "http", "an untrusted peer's claims are overwritten");
        assert_eq!(h["x-real-ip"], "10.0.0.2");
    }

    #[test]
    fn forwarded_prefix_only_when_strip_applies() {
        assert_eq!(stripped_prefix("/api/users", Some("/api")), Some("/api"));
        assert_eq!(stripped_prefix("/apix", Some("/api")), None);
        assert_eq!(stripped_prefix("/x", None), None);
        let mut h = HeaderMap::new();
        set_forwarded_prefix(&mut h, stripped_prefix("/api", Some("/api/")));
        assert_eq!(h["x-forwarded-prefix"], "/api/");
    }

    #[test]
    fn strip_and_prepend() {
        assert_eq!(rewrite_path("/api/users", Some("/api"), None), "/users");
        assert_eq!(rewrite_path("/api", Some("/api"), None), "/");
        assert_eq!(rewrite_path("/api/", Some("/api/"), None), "/");
        assert_eq!(rewrite_path("/apix/users", Some("/api"), None), "/apix/users", "segment boundary only");
        assert_eq!(rewrite_path("/other", Some("/api"), None), "/other");
        assert_eq!(rewrite_path("/users", None, Some("/v2")), "/v2/users");
        assert_eq!(rewrite_path("/users", None, Some("v2/")), "/v2/users");
        assert_eq!(rewrite_path("/api/users", Some("/api"), Some("/v2")), "/v2/users");
        assert_eq!(rewrite_path("/x", None, None), "/x");
    }

    #[test]
    fn upstream_uri_joins_target_and_path() {
        let t: Uri = "http://10.0.0.1:8080/".parse().unwrap();
        assert_eq!(upstream_uri(&t, "/a/b", Some("x=1")).unwrap().to_string(), "http://10.0.0.1:8080/a/b?x=1");
        let t: Uri = "https://10.0.0.1:8443/base/".parse().unwrap();
        assert_eq!(upstream_uri(&t, "/a", None).unwrap().to_string(), "https://10.0.0.1:8443/base/a");
        let t: Uri = "http://h:1".parse().unwrap();
        assert_eq!(upstream_uri(&t, "/", None).unwrap().to_string(), "http://h:1/");
    }
}
