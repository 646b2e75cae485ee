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

/// Scheme used to reach the targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Http,
    Https,
}

impl Proto {
    pub fn scheme(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
        }
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
    /// May contain `$path`, replaced by the request's path and query.
    pub url: String,
}

impl Redirect {
    /// The Location header for a request; `path_and_query` is the request's
    /// path with its query string, as the client sent it.
    pub fn location(&self, path_and_query: &str) -> String {
        self.url.replace("$path", path_and_query)
    }
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
    /// When non-empty, only clients inside one of these blocks are served.
    pub allow: Vec<Cidr>,
    /// Clients inside one of these blocks are refused (checked after `allow`).
    pub deny: Vec<Cidr>,
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
}

/// The result of parsing an option list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub opts: RouteOptions,
    /// `weight=`: the share of the route's traffic for the targets this tag or
    /// line produces, in total.
    pub weight: Option<f64>,
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
                    _ => return Err(format!("proto must be http or https, not '{value}'")),
                }
            }
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
            "redirect" => p.opts.redirect = Some(redirect(value)?),
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

fn redirect(value: &str) -> Result<Redirect, String> {
    let Some((code, url)) = value.split_once(',') else {
        return Err(format!("redirect must be CODE,URL, not '{value}'"));
    };
    let code = match code.parse::<u16>() {
        Ok(c @ (301 | 302 | 303 | 307 | 308)) => c,
        _ => return Err(format!("redirect code must be 301, 302, 303, 307 or 308, not '{code}'")),
    };
    if url.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("redirect URL '{url}' is empty or has spaces or control characters"));
    }
    Ok(Redirect { code, url: url.to_string() })
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
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(err("strip=api").contains("strip="));
        assert!(err("strip=").contains("strip="));
        assert!(err("prepend=x").contains("prepend="));
        assert!(err("proto=tcp").contains("proto"));
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
    fn redirect_codes_and_location() {
        for code in [301, 302, 303, 307, 308] {
            let r = ok(&format!("redirect={code},https://example.com$path")).opts.redirect.unwrap();
            assert_eq!(r.code, code);
        }
        for bad in ["redirect=200,https://x", "redirect=300,https://x", "redirect=abc,https://x"] {
            assert!(err(bad).contains("redirect code"), "{bad}");
        }
        assert!(err("redirect=301").contains("CODE,URL"));
        assert!(err("redirect=301,").contains("URL"));
        let r = ok("redirect=301,https://new.example.com$path").opts.redirect.unwrap();
        assert_eq!(r.location("/a/b?x=1"), "https://new.example.com/a/b?x=1");
        let fixed = ok("redirect=302,https://example.com/").opts.redirect.unwrap();
        assert_eq!(fixed.location("/ignored"), "https://example.com/");
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
