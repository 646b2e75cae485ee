//! The tag grammar (fabio's): `<prefix>[host]/[path] [opt=value ...]`.
//!
//! A service announces its routes in its own Consul tags, so the tag is user
//! input arriving from the network: every rule is checked here, once, and a
//! tag that breaks one is rejected with a message saying which, so the table
//! builder can skip just that tag. The `host/path` part has the same form as
//! the SRC of an override line and is parsed by [`source`] for both.

use super::options::{self, Parsed};

/// A route source: which requests a route takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// Lower-cased; `""` for any host; `*.example.com` for a wildcard.
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
/// tag, not a route); `Some(Err)` when it does but is malformed.
pub fn parse(tag: &str, prefix: &str) -> Option<Result<TagRoute, String>> {
    let rest = tag.strip_prefix(prefix)?;
    let mut words = rest.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Some(Err("no host/path after the prefix".to_string()));
    };
    Some(source(first).and_then(|source| Ok(TagRoute { source, parsed: options::parse(words)? })))
}

/// Parses `[host]/[path]`.
pub fn source(s: &str) -> Result<Source, String> {
    let Some(slash) = s.find('/') else {
        return Err(format!("'{s}' has no path: a route looks like [host]/[path]"));
    };
    let (host, path) = s.split_at(slash);
    Ok(Source { host: host_pattern(host)?, path: path_prefix(path)? })
}

fn host_pattern(host: &str) -> Result<String, String> {
    let mut lowered = host.to_ascii_lowercase();
    if lowered.ends_with('.') {
        lowered.pop();
    }
    let host = lowered.as_str();
    if host.is_empty() {
        return Ok(lowered);
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains(':') && !name.starts_with('[') {
        return Err(format!("host '{host}' carries a port; the Host header's port is ignored, leave it out"));
    }
    if name.starts_with('[') {
        // An IPv6 literal, as it appears in a Host header.
        let ok = name.ends_with(']')
            && name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()
            && !host.starts_with("*.");
        return if ok { Ok(lowered) } else { Err(format!("host '{host}' is not a bracketed IPv6 address")) };
    }
    let labels_ok = name
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if !labels_ok {
        return Err(format!("host '{host}' is not a host name or a wildcard like *.example.com"));
    }
    Ok(lowered)
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
        match parse(tag, P) {
            Some(Ok(r)) => r,
            other => panic!("{tag}: {other:?}"),
        }
    }

    fn err(tag: &str) -> String {
        match parse(tag, P) {
            Some(Err(e)) => e,
            other => panic!("{tag}: {other:?}"),
        }
    }

    fn src(host: &str, path: &str) -> Source {
        Source { host: host.into(), path: path.into() }
    }

    #[test]
    fn other_tags_are_not_routes() {
        assert_eq!(parse("production", P), None);
        assert_eq!(parse("URLPREFIX-/", P), None, "the prefix is case-sensitive");
        assert_eq!(parse(" urlprefix-/", P), None);
        assert!(parse("lb-/x", "lb-").is_some(), "the prefix is configurable");
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
        assert!(err("urlprefix-example.com").contains("no path"));
        assert!(err("urlprefix-:3000 proto=tcp").contains("no path"));
        assert!(err("urlprefix-example.com:8080/").contains("port"));
        assert!(err("urlprefix-exa mple.com/").contains("no path"));
        assert!(err("urlprefix-a..b/").contains("host"));
        assert!(err("urlprefix-*/").contains("host"));
        assert!(err("urlprefix-a.*.com/").contains("host"));
        assert!(err("urlprefix-*.*.com/").contains("host"));
        assert!(err("urlprefix-ex!ample.com/").contains("host"));
        assert!(err("urlprefix-[zz]/").contains("IPv6"));
        assert!(err("urlprefix-*.[::1]/").contains("IPv6"));
        assert!(err("urlprefix-/a?b").contains("path"));
        assert!(err("urlprefix-/a#b").contains("path"));
        assert!(err("urlprefix-/é").contains("path"));
        assert!(err("urlprefix-/ weight=2").contains("weight"));
        assert!(err("urlprefix-/ redirect=200,http://x").contains("redirect"));
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
            ]);
            prop::collection::vec(word, 0..12).prop_map(|w| w.concat())
        }

        proptest! {
            #![proptest_config(crate::routes::proptest_config(5000))]

            #[test]
            fn any_tag_parses_or_says_why(tag in prop_oneof![tagish(), any::<String>()]) {
                let _ = parse(&tag, P);
                let _ = parse(&format!("{P}{tag}"), P);
                let _ = source(&tag);
            }
        }
    }
}
