//! The tag grammar (fabio's): `<prefix>[host[:port]][/path] [opt=value ...]`.
//!
//! A service announces its routes in its own Consul tags, so the tag is user
//! input arriving from the network: every rule is checked here, once, and a
//! tag that breaks one is rejected with a message saying which, so the table
//! builder can skip just that tag. The `host/path` part has the same form as
//! the SRC of an override line and is parsed by [`source`] for both.
//! docs/router.md ("Tag grammar") is the contract.

use super::options::{self, Parsed};
use super::vars::Vars;

/// A route source: which requests a route takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// Lower-cased, as written otherwise (a `:port` kept): `""` for any
    /// host, `example.com`, `example.com:8080`, or a glob such as
    /// `*.example.com` or `*:80`.
    pub host: String,
    /// Starts with `/`; case kept.
    pub path: String,
}

/// A parsed route tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRoute {
    pub source: Source,
    pub parsed: Parsed,
}

/// Parses one tag. `None` when the tag does not carry the prefix (an ordinary
/// tag, not a route); `Some(Err)` when it does but is malformed. Whitespace
/// around the tag and after the prefix is ignored, and variables in the
/// host and path are expanded from `vars` (before the host is lower-cased).
pub fn parse(tag: &str, prefix: &str, vars: &Vars) -> Option<Result<TagRoute, String>> {
    let rest = tag.trim().strip_prefix(prefix)?;
    let mut words = rest.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Some(Err("no host/path after the prefix".to_string()));
    };
    Some(source_with(first, vars).and_then(|source| Ok(TagRoute { source, parsed: options::parse(words)? })))
}

/// Parses `[host[:port]][/path]` without variables (an override's SRC).
pub fn source(s: &str) -> Result<Source, String> {
    source_with(s, &Vars::default())
}

/// Parses `[host[:port]][/path]`, expanding variables in both parts. Without
/// a `/` the whole is the host and the path is `/` (`1.1.1.1:999`).
fn source_with(s: &str, vars: &Vars) -> Result<Source, String> {
    let (host, path) = match s.find('/') {
        Some(slash) => s.split_at(slash),
        None => (s, "/"),
    };
    let host = vars.expand(host);
    let path = vars.expand(path);
    // `$y` alone expands to nothing: the path is still the root.
    let path = if path.is_empty() { "/" } else { &path };
    if !path.starts_with('/') {
        return Err(format!("path '{path}' does not start with '/'"));
    }
    let host = host_pattern(&host)?;
    if host.starts_with(':') && path != "/" {
        return Err(format!("a TCP route (':PORT') has no path, not '{path}'"));
    }
    Ok(Source { host, path: path_prefix(path)? })
}

/// Checks a route host and lower-cases it: a name, an IP address (IPv6 in
/// brackets) or a glob whose `*` matches any run of characters, each with an
/// optional `:port`.
fn host_pattern(host: &str) -> Result<String, String> {
    let lowered = host.to_ascii_lowercase();
    if lowered.is_empty() {
        return Ok(lowered);
    }
    let (name, port) = split_port(&lowered).ok_or_else(|| format!("host '{host}' has a bad port"))?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        // `:PORT`: a TCP route (see [`super::tcp`]).
        return match port {
            Some(port) if lowered.starts_with(':') => Ok(format!(":{port}")),
            _ => Err(format!("'{host}' has no host")),
        };
    }
    if name.starts_with('[') {
        // An IPv6 literal, as it appears in a Host header.
        let ok = name.ends_with(']') && name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
        return if ok { Ok(lowered) } else { Err(format!("host '{host}' is not a bracketed IPv6 address")) };
    }
    let chars_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b));
    if !chars_ok || name.contains("..") || name.starts_with('.') {
        return Err(format!(
            "host '{host}' is not a host name, an IP address or a glob like *.example.com ('*' is the only wildcard)"
        ));
    }
    Ok(match port {
        Some(port) => format!("{name}:{port}"),
        None => name.to_string(),
    })
}

/// `name[:port]` -> (name, port); None when the port is not 1-65535.
pub fn split_port(host: &str) -> Option<(&str, Option<&str>)> {
    let colon = match host.strip_prefix('[') {
        Some(_) => host.find(']').and_then(|end| host[end..].find(':').map(|c| end + c)),
        None => host.rfind(':'),
    };
    let Some(colon) = colon else { return Some((host, None)) };
    let port = &host[colon + 1..];
    let ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (ok && port.parse::<u16>().is_ok_and(|p| p > 0)).then_some((&host[..colon], Some(port)))
}

fn path_prefix(path: &str) -> Result<String, String> {
    // '?' and '#' never reach the matcher (it sees the path without query), so
    // a prefix containing them could never match.
    if path.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#') {
        Ok(path.to_string())
    } else {
        Err(format!("path '{path}' has characters a request path cannot carry ('?', '#', control)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::options::{HostHeader, Proto};

    const P: &str = "urlprefix-";

    fn ok(tag: &str) -> TagRoute {
        match parse(tag, P, &Vars { datacenter: "dc1".into() }) {
            Some(Ok(r)) => r,
            other => panic!("{tag}: {other:?}"),
        }
    }

    fn err(tag: &str) -> String {
        match parse(tag, P, &Vars::default()) {
            Some(Err(e)) => e,
            other => panic!("{tag}: {other:?}"),
        }
    }

    fn src(host: &str, path: &str) -> Source {
        Source { host: host.into(), path: path.into() }
    }

    #[test]
    fn other_tags_are_not_routes() {
        let v = Vars::default();
        assert_eq!(parse("production", P, &v), None);
        assert_eq!(parse("URLPREFIX-/", P, &v), None, "the prefix is case-sensitive");
        assert!(parse("lb-/x", "lb-", &v).is_some(), "the prefix is configurable");
    }

    #[test]
    fn whitespace_around_the_tag_and_after_the_prefix_is_trimmed() {
        assert_eq!(ok(" urlprefix- /foo").source, src("", "/foo"));
        assert_eq!(ok("\turlprefix-a.com/x strip=/x \n").source, src("a.com", "/x"));
        assert_eq!(ok(" urlprefix-  /foo  strip=/foo ").parsed.opts.strip.as_deref(), Some("/foo"));
    }

    #[test]
    fn a_route_without_slash_is_a_host_with_the_root_path() {
        assert_eq!(ok("urlprefix-1.1.1.1:999").source, src("1.1.1.1:999", "/"));
        assert_eq!(ok("urlprefix-example.com").source, src("example.com", "/"));
        assert_eq!(ok("urlprefix-Example.com proto=https").source, src("example.com", "/"));
        assert_eq!(ok("urlprefix-exa mple.com/").source, src("exa", "/"), "'mple.com/' is an (unknown) option");
    }

    #[test]
    fn hosts_keep_their_port_and_may_be_globs() {
        assert_eq!(ok("urlprefix-example.com:8080/").source, src("example.com:8080", "/"));
        assert_eq!(ok("urlprefix-xyz.com:80/").source, src("xyz.com:80", "/"));
        assert_eq!(ok("urlprefix-*:80/").source, src("*:80", "/"));
        assert_eq!(ok("urlprefix-*/").source, src("*", "/"));
        assert_eq!(ok("urlprefix-a.*.com/").source, src("a.*.com", "/"));
        assert_eq!(ok("urlprefix-*abc.com/").source, src("*abc.com", "/"));
        assert_eq!(ok("urlprefix-[::1]:8080/").source, src("[::1]:8080", "/"));
    }

    #[test]
    fn variables_expand_before_the_host_is_lower_cased() {
        assert_eq!(ok("urlprefix-$DC.Example.com/").source, src("dc1.example.com", "/"));
        assert_eq!(ok("urlprefix-api.${DC}.com/$DC/x").source, src("api.dc1.com", "/dc1/x"));
        assert_eq!(ok("urlprefix-$x/$y").source, src("", "/"), "unknown variables are empty");
        assert_eq!(ok("urlprefix-/a$y").source, src("", "/a"));
    }

    #[test]
    fn host_and_path_forms() {
        assert_eq!(ok("urlprefix-/").source, src("", "/"));
        assert_eq!(ok("urlprefix-/api/v1").source, src("", "/api/v1"));
        assert_eq!(ok("urlprefix-example.com/").source, src("example.com", "/"));
        assert_eq!(ok("urlprefix-Example.COM/Api").source, src("example.com", "/Api"), "host lowered, path kept");
        assert_eq!(ok("urlprefix-*.example.com/x").source, src("*.example.com", "/x"));
        assert_eq!(ok("urlprefix-example.com./").source, src("example.com", "/"), "trailing dot dropped");
        assert_eq!(ok("urlprefix-my_host-1/").source, src("my_host-1", "/"));
        assert_eq!(ok("urlprefix-[::1]/").source, src("[::1]", "/"));
        assert_eq!(ok("urlprefix-10.0.0.1/").source, src("10.0.0.1", "/"));
        assert_eq!(ok("urlprefix-:5000 proto=tcp").source, src(":5000", "/"), "a TCP route");
    }

    #[test]
    fn options_follow_the_source() {
        let r = ok("urlprefix-a.example.com/api strip=/api proto=https  weight=0.1 custom=1");
        assert_eq!(r.source, src("a.example.com", "/api"));
        assert_eq!(r.parsed.opts.strip.as_deref(), Some("/api"));
        assert_eq!(r.parsed.opts.proto, Proto::Https);
        assert_eq!(r.parsed.weight, Some(0.1));
        assert_eq!(r.parsed.opts.unknown, vec![("custom".to_string(), "1".to_string())]);
        assert_eq!(ok("urlprefix-/ host=dst").parsed.opts.host, HostHeader::Dst);
    }

    #[test]
    fn malformed_tags() {
        assert!(err("urlprefix-").contains("no host/path"));
        assert!(err("urlprefix-   ").contains("no host/path"));
        assert!(err("urlprefix-:0 proto=tcp").contains("port"));
        assert!(err("urlprefix-:70000 proto=tcp").contains("port"));
        assert!(err("urlprefix-:30/x proto=tcp").contains("TCP"));
        assert!(err("urlprefix-example.com:0/").contains("port"));
        assert!(err("urlprefix-example.com:65536/").contains("port"));
        assert!(err("urlprefix-example.com:/").contains("port"));
        assert!(err("urlprefix-example.com:*/").contains("port"));
        assert!(err("urlprefix-a..b/").contains("host"));
        assert!(err("urlprefix-a?.com/").contains("only wildcard"));
        assert!(err("urlprefix-{a,b}.com/").contains("only wildcard"));
        assert!(err("urlprefix-ex!ample.com/").contains("host"));
        assert!(err("urlprefix-[zz]/").contains("IPv6"));
        assert!(err("urlprefix-*.[::1]/").contains("host"));
        assert!(err("urlprefix-/a?b").contains("path"));
        assert!(err("urlprefix-/a#b").contains("path"));
        assert!(err("urlprefix-/é").contains("path"));
        assert!(err("urlprefix-/ weight=2").contains("weight"));
        assert!(err("urlprefix-/ allow=ip:1.2.3.4/99").contains("prefix length"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Tags from the grammar's own pieces, shuffled and broken.
        fn tagish() -> impl Strategy<Value = String> {
            let word = prop::sample::select(vec![
                "urlprefix-",
                "a.com",
                "*.a.com",
                "[::1]",
                "/",
                "/p",
                "//",
                "?",
                "=",
                " ",
                "\t",
                "strip=",
                "prepend=",
                "host=",
                "proto=",
                "https",
                "allow=",
                "deny=",
                "ip:10.0.0.0/8",
                "redirect=",
                "301,",
                "http://x/$path",
                "weight=",
                "0.5",
                "tlsskipverify=",
                "true",
                ":80",
                "\u{e9}",
                "\0",
                "%",
                ",",
                "register=",
                "$DC",
                "${",
                "*",
                " ",
            ]);
            prop::collection::vec(word, 0..12).prop_map(|w| w.concat())
        }

        proptest! {
            #![proptest_config(crate::routes::proptest_config(5000))]

            #[test]
            fn any_tag_parses_or_says_why(tag in prop_oneof![tagish(), any::<String>()]) {
                let vars = Vars { datacenter: "dc1".into() };
                let _ = parse(&tag, P, &vars);
                let _ = parse(&format!("{P}{tag}"), P, &vars);
                let _ = source(&tag);
            }
        }
    }
}
