//! Route options: the `key=value` words after a route's host/path, in a tag
//! (`urlprefix-/api strip=/api`) or in an override's `opts "..."`.
//!
//! Parsing is strict about the options it knows (a bad value rejects the whole
//! route, so a typo never silently widens access or sends traffic elsewhere) and
//! lenient about the ones it does not: fabio has options we do not implement
//! (`auth=`, `register=`), and a route carrying one must still work, so unknown
//! options are kept and shown in the API rather than rejected.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::proxy_protocol::Version;

/// Scheme used to reach the targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Http,
    Https,
    /// A TCP route (`:PORT` source): bytes, not requests.
    Tcp,
    /// gRPC: HTTP/2 without TLS, prior knowledge.
    Grpc,
    /// gRPC over TLS: HTTP/2 with ALPN h2.
    Grpcs,
    /// Any HTTP/2 cleartext upstream, prior knowledge.
    H2c,
}

impl Proto {
    pub fn scheme(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
            Proto::Tcp => "tcp",
            Proto::Grpc | Proto::H2c => "http",
            Proto::Grpcs => "https",
        }
    }

    /// The upstream speaks HTTP/2 only.
    pub fn http2(self) -> bool {
        matches!(self, Proto::Grpc | Proto::Grpcs | Proto::H2c)
    }
}

/// What the proxy sends as the upstream request's Host header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "name")]
pub enum HostHeader {
    /// The client's Host header, unchanged (fabio's default).
    #[default]
    Keep,
    /// The target's `address:port` (`host=dst`), for backends that check Host.
    Dst,
    /// A fixed name (`host=NAME`).
    Name(String),
}

/// `redirect=CODE,URL`: answer with a redirect instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub code: u16,
    /// May contain `$host` and `$path` (see [`Redirect::location`]).
    pub url: String,
}

impl Redirect {
    /// The Location for a request (fabio's rules): `$host` is the request
    /// host (port-normalised); `$path` is `path` (the request path after
    /// `strip=`/`prepend=`, percent-encoding as sent) followed by the query,
    /// unless the destination has its own, and a `/` right before `$path`
    /// is not doubled. Without `$path` the destination is used as written
    /// (a missing path becomes `/`) and the request's query is dropped.
    pub fn location(&self, host: &str, path: &str, query: Option<&str>) -> String {
        let mut url = if self.url.contains("$path") {
            let own_query = self.url.contains('?');
            let mut with_query = path.to_string();
            if let Some(q) = query.filter(|q| !q.is_empty() && !own_query) {
                with_query.push('?');
                with_query.push_str(q);
            }
            self.url.replacen("/$path", "$path", 1).replacen("$path", &with_query, 1)
        } else {
            let mut url = self.url.clone();
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            if !url[after_scheme..].contains('/') {
                match url[after_scheme..].find('?') {
                    Some(q) => url.insert(after_scheme + q, '/'),
                    None => url.push('/'),
                }
            }
            url
        };
        if url.contains("$host") {
            url = url.replacen("$host", host, 1);
        }
        url
    }
}

/// Whether a redirect's Location points at the request itself: the same
/// scheme, host (lower-cased, the scheme's default port dropped) and path.
/// Such a redirect would loop, so the lookup skips it (fabio).
pub fn redirect_loops(location: &str, scheme: &str, host: &str, path: &str) -> bool {
    let Some((loc_scheme, rest)) = location.split_once("://") else { return false };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (loc_host, rest) = rest.split_at(end);
    let loc_path = match rest.find(['?', '#']) {
        Some(q) => &rest[..q],
        None => rest,
    };
    let loc_path = if loc_path.is_empty() { "/" } else { loc_path };
    let default_port = if loc_scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
    let loc_host = loc_host.strip_suffix(default_port).unwrap_or(loc_host);
    loc_scheme.eq_ignore_ascii_case(scheme) && loc_host.eq_ignore_ascii_case(host) && loc_path == path
}

/// One `ip:` entry of `allow=`/`deny=`: an address block. A bare address is a
/// block of one (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.len, 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.len, 128),
            _ => false,
        }
    }
}

/// A client connecting over IPv6 to a dual-stack socket shows up as
/// `::ffff:a.b.c.d`; it must match IPv4 rules.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(net: u128, ip: u128, len: u8, bits: u8) -> bool {
    if len == 0 {
        return true;
    }
    let shift = u32::from(bits - len);
    (net >> shift) == (ip >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("'{s}' is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(l) if l <= max => l,
                _ => return Err(format!("'{s}' has a bad prefix length (0..={max})")),
            },
        };
        Ok(Cidr { addr: canonical(addr), len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything a route can be told besides where it goes. `weight=` is not here:
/// it belongs to the targets (see [`Parsed::weight`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteOptions {
    /// Removed from the front of the request path before proxying.
    pub strip: Option<String>,
    /// Put in front of the (stripped) request path.
    pub prepend: Option<String>,
    pub proto: Proto,
    pub tls_skip_verify: bool,
    pub host: HostHeader,
    pub redirect: Option<Redirect>,
    /// `hsts=SECONDS`: responses to requests that came over TLS carry
    /// `Strict-Transport-Security: max-age=SECONDS`.
    pub hsts: Option<u32>,
    /// When non-empty, only clients inside one of these blocks are served.
    pub allow: Vec<Cidr>,
    /// Clients inside one of these blocks are refused (checked after `allow`).
    pub deny: Vec<Cidr>,
    /// `pxyproto=`: a PROXY protocol header sent to the target before the
    /// client's bytes (TCP routes).
    pub pxyproto: Option<Version>,
    /// Options this router does not know, kept for display.
    pub unknown: Vec<(String, String)>,
}

impl RouteOptions {
    /// Whether a client may use the route: inside some `allow` block when any
    /// is given, and inside no `deny` block.
    pub fn allows(&self, client: std::net::IpAddr) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|c| c.contains(client));
        allowed && !self.deny.iter().any(|c| c.contains(client))
    }

    /// Whether the route has `allow=` or `deny=` rules at all.
    pub fn restricts(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    /// fabio's check: the peer and every element of the `X-Forwarded-For`
    /// values must pass (any element may be the real client, so none is
    /// trusted over the others). An element that is not an address is
    /// skipped, as fabio does: the peer still has to pass.
    pub fn allows_forwarded<'v>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'v [u8]>) -> bool {
        if !self.allows(peer) {
            return false;
        }
        xff.into_iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .filter_map(|e| std::str::from_utf8(e.trim_ascii()).ok()?.parse::<IpAddr>().ok())
            .all(|ip| self.allows(ip))
    }

    /// The options that belong to each target rather than to the route:
    /// `strip=`, `prepend=`, `proto=`, `tlsskipverify=` and `host=` (two
    /// instances on one route may each send their own Host header).
    pub fn same_route_options(&self, other: &RouteOptions) -> bool {
        self.redirect == other.redirect && self.allow == other.allow && self.deny == other.deny
    }

    /// No option changes the request: no `strip=`, `prepend=` or `host=`.
    pub fn untouched(&self) -> bool {
        self.strip.is_none() && self.prepend.is_none() && self.host == HostHeader::Keep
    }
}

/// The result of parsing an option list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub opts: RouteOptions,
    /// `weight=`: the share of the route's traffic for the targets this tag or
    /// line produces, in total.
    pub weight: Option<f64>,
    /// Options that were ignored (the route still applies), e.g. a redirect
    /// with a code outside 300-399: each becomes a problem of the route.
    pub ignored: Vec<String>,
}

/// Parses `key=value` words (already split on whitespace). The first bad
/// value is the error; later duplicates of a key override earlier ones.
pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    for word in words {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "strip" => p.opts.strip = Some(path_value(key, value)?),
            "prepend" => p.opts.prepend = Some(path_value(key, value)?),
            "proto" => {
                p.opts.proto = match value {
                    "http" => Proto::Http,
                    "https" => Proto::Https,
                    "tcp" => Proto::Tcp,
                    "grpc" => Proto::Grpc,
                    "grpcs" => Proto::Grpcs,
                    "h2c" => Proto::H2c,
                    _ => return Err(format!("proto must be http, https, tcp, grpc, grpcs or h2c, not '{value}'")),
                }
            }
            // TLS passthrough by SNI (docs/router.md): another spelling of
            // `proto=tcp`, which on a host source means the same.
            "tls" => match value {
                "passthrough" => p.opts.proto = Proto::Tcp,
                _ => return Err(format!("tls must be passthrough, not '{value}'")),
            },
            "tlsskipverify" => {
                p.opts.tls_skip_verify = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("tlsskipverify must be true or false, not '{value}'")),
                }
            }
            "host" => {
                p.opts.host = match value {
                    "" => return Err("host= needs 'dst' or a host name".to_string()),
                    "dst" => HostHeader::Dst,
                    name if name.bytes().all(|b| b.is_ascii_graphic()) => HostHeader::Name(name.to_string()),
                    _ => return Err(format!("host='{value}' is not a host name")),
                }
            }
            "pxyproto" => {
                p.opts.pxyproto = match value {
                    // fabio's `pxyproto=true` is version 1.
                    "true" | "v1" => Some(Version::V1),
                    "v2" => Some(Version::V2),
                    "false" => None,
                    _ => return Err(format!("pxyproto must be v1, v2, true (v1) or false, not '{value}'")),
                }
            }
            "redirect" => match redirect(value)? {
                Ok(r) => p.opts.redirect = Some(r),
                Err(why) => p.ignored.push(why),
            },
            "hsts" => match value.parse::<u32>() {
                Ok(secs) if value.bytes().all(|b| b.is_ascii_digit()) => p.opts.hsts = Some(secs),
                _ => return Err(format!("hsts must be a number of seconds, not {value:?}")),
            },
            "weight" => p.weight = Some(weight(value)?),
            "allow" => p.opts.allow = cidrs(key, value)?,
            "deny" => p.opts.deny = cidrs(key, value)?,
            _ => {
                p.opts.unknown.retain(|(k, _)| k != key);
                p.opts.unknown.push((key.to_string(), value.to_string()));
            }
        }
    }
    Ok(p)
}

fn path_value(key: &str, value: &str) -> Result<String, String> {
    if value.starts_with('/') && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_string())
    } else {
        Err(format!("{key}= must be a path starting with '/', not '{value}'"))
    }
}

/// Parses a weight (`weight=0.25`, `weight 0.25`): a share between 0 and 1.
pub fn weight(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(w) if (0.0..=1.0).contains(&w) => Ok(w),
        _ => Err(format!("weight must be a number from 0 to 1, not '{value}'")),
    }
}

/// `CODE,URL`. The outer error rejects the route (no comma, a URL that no
/// header can carry); the inner one is fabio's: a code that is not a number
/// from 300 to 399 ignores the option, and the route proxies instead.
fn redirect(value: &str) -> Result<Result<Redirect, String>, String> {
    let Some((code, url)) = value.split_once(',') else {
        return Err(format!("redirect must be CODE,URL, not '{value}'"));
    };
    if url.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("redirect URL '{url}' is empty or has spaces or control characters"));
    }
    Ok(match code.parse::<u16>() {
        Ok(code @ 300..=399) => Ok(Redirect { code, url: url.to_string() }),
        _ => Err(format!("redirect code must be a number from 300 to 399, not '{code}'; redirect ignored")),
    })
}

fn cidrs(key: &str, value: &str) -> Result<Vec<Cidr>, String> {
    value
        .split(',')
        .map(|item| match item.strip_prefix("ip:") {
            Some(block) => block.parse::<Cidr>(),
            None => Err(format!("{key}= entries must look like ip:10.0.0.0/8, not '{item}'")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Parsed {
        parse(s.split_whitespace()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse(s.split_whitespace()) {
            Ok(p) => panic!("{s} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(ok(""), Parsed::default());
        assert_eq!(RouteOptions::default().proto, Proto::Http);
        assert_eq!(RouteOptions::default().host, HostHeader::Keep);
    }

    #[test]
    fn hsts_takes_seconds() {
        assert_eq!(ok("hsts=31536000").opts.hsts, Some(31_536_000));
        assert_eq!(ok("hsts=0").opts.hsts, Some(0));
        for bad in ["hsts=", "hsts=-1", "hsts=+5", "hsts=1y", "hsts=99999999999"] {
            assert!(err(bad).contains("hsts"), "{bad}");
        }
    }

    #[test]
    fn known_options() {
        let p = ok("strip=/api prepend=/v1 proto=https tlsskipverify=true host=dst weight=0.25");
        assert_eq!(p.opts.strip.as_deref(), Some("/api"));
        assert_eq!(p.opts.prepend.as_deref(), Some("/v1"));
        assert_eq!(p.opts.proto, Proto::Https);
        assert!(p.opts.tls_skip_verify);
        assert_eq!(p.opts.host, HostHeader::Dst);
        assert_eq!(p.weight, Some(0.25));
        assert!(p.opts.unknown.is_empty());
        assert_eq!(ok("host=backend.internal").opts.host, HostHeader::Name("backend.internal".into()));
        assert!(!ok("tlsskipverify=false").opts.tls_skip_verify);
        assert_eq!(ok("proto=http").opts.proto, Proto::Http);
        assert_eq!(ok("proto=tcp").opts.proto, Proto::Tcp);
        assert_eq!(ok("tls=passthrough").opts.proto, Proto::Tcp);
        assert_eq!(ok("tls=passthrough proto=http").opts.proto, Proto::Http, "the later one wins");
        assert!(err("tls=terminate").contains("passthrough"));
        assert_eq!(ok("proto=grpc").opts.proto, Proto::Grpc);
        assert_eq!(ok("proto=grpcs").opts.proto.scheme(), "https");
        assert!(ok("proto=h2c").opts.proto.http2() && !ok("proto=https").opts.proto.http2());
        assert_eq!(ok("pxyproto=true").opts.pxyproto, Some(Version::V1), "fabio's true is v1");
        assert_eq!(ok("pxyproto=v1").opts.pxyproto, Some(Version::V1));
        assert_eq!(ok("pxyproto=v2").opts.pxyproto, Some(Version::V2));
        assert_eq!(ok("pxyproto=v2 pxyproto=false").opts.pxyproto, None);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(err("strip=api").contains("strip="));
        assert!(err("strip=").contains("strip="));
        assert!(err("prepend=x").contains("prepend="));
        assert!(err("proto=udp").contains("proto"));
        assert!(err("pxyproto=v3").contains("pxyproto"));
        assert!(err("tlsskipverify=yes").contains("tlsskipverify"));
        assert!(err("host=").contains("host="));
        assert!(err("weight=1.5").contains("weight"));
        assert!(err("weight=-0.1").contains("weight"));
        assert!(err("weight=abc").contains("weight"));
        assert!(err("weight=NaN").contains("weight"));
        assert!(err("weight=").contains("weight"));
    }

    #[test]
    fn weight_bounds_are_inclusive() {
        assert_eq!(ok("weight=0").weight, Some(0.0));
        assert_eq!(ok("weight=1").weight, Some(1.0));
        assert_eq!(ok("weight=.5").weight, Some(0.5));
    }

    #[test]
    fn unknown_options_are_kept_last_wins() {
        let p = ok("auth=basic register=x auth=none flag");
        assert_eq!(
            p.opts.unknown,
            vec![("register".into(), "x".into()), ("auth".into(), "none".into()), ("flag".into(), "".into())]
        );
    }

    #[test]
    fn later_duplicate_overrides() {
        assert_eq!(ok("strip=/a strip=/b").opts.strip.as_deref(), Some("/b"));
    }

    #[test]
    fn redirect_codes_from_300_to_399() {
        for code in [300, 301, 302, 303, 307, 308, 399] {
            let r = ok(&format!("redirect={code},https://example.com$path")).opts.redirect.unwrap();
            assert_eq!(r.code, code);
        }
        assert!(err("redirect=301").contains("CODE,URL"));
        assert!(err("redirect=301,").contains("URL"));
    }

    #[test]
    fn a_redirect_code_outside_300_to_399_is_ignored_and_reported() {
        for bad in ["redirect=200,https://x", "redirect=400,https://x", "redirect=abc,https://x", "redirect=,https://x"]
        {
            let p = ok(&format!("strip=/a {bad}"));
            assert_eq!(p.opts.redirect, None, "{bad}: the route proxies");
            assert_eq!(p.opts.strip.as_deref(), Some("/a"), "{bad}: the other options stay");
            assert_eq!(p.ignored.len(), 1, "{bad}");
            assert!(p.ignored[0].contains("300 to 399"), "{bad}");
        }
    }

    fn loc(url: &str, host: &str, path: &str, query: Option<&str>) -> String {
        Redirect { code: 301, url: url.into() }.location(host, path, query)
    }

    #[test]
    fn redirect_location_host_and_path() {
        assert_eq!(loc("https://$host$path", "a.com", "/x/y", Some("q=1&r=%20")), "https://a.com/x/y?q=1&r=%20");
        assert_eq!(loc("https://new.com$path", "a.com", "/a%2Fb", None), "https://new.com/a%2Fb", "bytes kept");
        assert_eq!(loc("http://a.com/$path", "h", "/x", None), "http://a.com/x", "no doubled slash");
        assert_eq!(loc("http://a.com/$path", "h", "/", None), "http://a.com/");
        assert_eq!(loc("http://a.com/base/$path", "h", "/x", None), "http://a.com/base/x");
        assert_eq!(loc("http://a.com$path?own=1", "h", "/x", Some("q=1")), "http://a.com/x?own=1", "own query wins");
        assert_eq!(loc("http://a.com$path", "h", "/x", Some("")), "http://a.com/x");
        assert_eq!(loc("https://example.com/", "h", "/ignored", Some("q=1")), "https://example.com/", "query dropped");
        assert_eq!(loc("https://example.com", "h", "/ignored", None), "https://example.com/");
        assert_eq!(loc("https://$host/fixed", "b.com:8080", "/x", None), "https://b.com:8080/fixed");
    }

    #[test]
    fn a_redirect_to_the_request_itself_loops() {
        assert!(redirect_loops("http://a.com/x", "http", "a.com", "/x"));
        assert!(redirect_loops("HTTP://A.com:80/x?q", "http", "a.com", "/x"));
        assert!(redirect_loops("https://a.com:443/", "https", "a.com", "/"));
        assert!(redirect_loops("http://a.com", "http", "a.com", "/"));
        assert!(!redirect_loops("https://a.com/x", "http", "a.com", "/x"), "another scheme");
        assert!(!redirect_loops("http://b.com/x", "http", "a.com", "/x"), "another host");
        assert!(!redirect_loops("http://a.com/y", "http", "a.com", "/x"), "another path");
        assert!(!redirect_loops("http://a.com:81/x", "http", "a.com", "/x"), "another port");
        assert!(!redirect_loops("/relative", "http", "a.com", "/relative"));
    }

    #[test]
    fn allow_and_deny_see_every_forwarded_for_element() {
        let p = ok("allow=ip:10.0.0.0/8");
        let peer = ip("10.0.0.1");
        assert!(p.opts.allows_forwarded(peer, []));
        assert!(p.opts.allows_forwarded(peer, [&b"10.1.1.1, 10.2.2.2"[..]]));
        assert!(!p.opts.allows_forwarded(peer, [&b"10.1.1.1, 192.0.2.1"[..]]), "one outside is enough");
        assert!(!p.opts.allows_forwarded(peer, [&b"10.1.1.1"[..], &b"192.0.2.1"[..]]), "every header");
        assert!(p.opts.allows_forwarded(peer, [&b"unknown, 10.1.1.1"[..]]), "non-addresses are skipped");
        assert!(!p.opts.allows_forwarded(ip("192.0.2.1"), [&b"10.1.1.1"[..]]), "the peer must pass too");
        let d = ok("deny=ip:192.0.2.0/24");
        assert!(!d.opts.allows_forwarded(ip("10.0.0.1"), [&b" 192.0.2.9 "[..]]));
        assert!(d.opts.allows_forwarded(ip("10.0.0.1"), [&b"2001:db8::1"[..]]));
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("fe80::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("2001:db8::/129".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn allow_and_deny() {
        let open = RouteOptions::default();
        assert!(open.allows(ip("203.0.113.1")));

        let p = ok("allow=ip:10.0.0.0/8,ip:fd00::/8");
        assert!(p.opts.allows(ip("10.9.8.7")));
        assert!(p.opts.allows(ip("fd00::1")));
        assert!(!p.opts.allows(ip("192.168.1.1")));

        let p = ok("deny=ip:192.168.0.0/16");
        assert!(!p.opts.allows(ip("192.168.3.4")));
        assert!(p.opts.allows(ip("10.0.0.1")));

        // Both: inside allow and outside deny.
        let p = ok("allow=ip:10.0.0.0/8 deny=ip:10.1.0.0/16");
        assert!(p.opts.allows(ip("10.2.0.1")));
        assert!(!p.opts.allows(ip("10.1.0.1")));
        assert!(!p.opts.allows(ip("11.0.0.1")));
    }

    #[test]
    fn bad_cidrs_are_errors() {
        assert!(err("allow=10.0.0.0/8").contains("ip:"));
        assert!(err("allow=ip:10.0.0.0/8,").contains("ip:"));
        assert!(err("deny=ip:nonsense").contains("not an IP"));
        assert!(err("allow=ip:10.0.0.0/40").contains("prefix length"));
    }

    #[test]
    fn serializes_for_the_api() {
        let p = ok("allow=ip:10.0.0.0/8 host=dst proto=https redirect=301,https://x$path");
        let v = serde_json::to_value(&p.opts).unwrap();
        assert_eq!(v["allow"][0], "10.0.0.0/8");
        assert_eq!(v["proto"], "https");
        assert_eq!(v["host"]["mode"], "dst");
        assert_eq!(v["redirect"]["code"], 301);
        let named = serde_json::to_value(ok("host=a.b").opts).unwrap();
        assert_eq!(named["host"], serde_json::json!({"mode": "name", "name": "a.b"}));
    }
}
