//! The override language (fabio's), read from a Consul KV value: operators
//! add, remove and re-weight routes by hand on top of what the tags say.
//!
//! ```text
//! route add SVC SRC DST [weight W] [tags "a,b"] [opts "k=v k=v"]
//! route del SVC [SRC [DST]]
//! route del SVC tags "a,b"
//! route del tags "a,b"
//! route weight SVC SRC weight W [tags "a,b"]
//! route weight SRC weight W tags "a,b"
//! ```
//!
//! This module only parses; [`super::table`] applies the commands in order.
//! Each line stands alone, so one bad line is reported with its number and the
//! others still apply.

use http::Uri;

use super::options::{self, Parsed};
use super::tag::{self, Source};

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Add { service: String, source: Source, dst: Uri, tags: Vec<String>, parsed: Box<Parsed> },
    Del(Del),
    Weight { service: Option<String>, source: Source, weight: f64, tags: Vec<String> },
}

/// Which targets a `route del` removes.
#[derive(Debug, Clone, PartialEq)]
pub enum Del {
    /// Every target of the service, on every route.
    Service(String),
    /// The service's targets on one route.
    Route { service: String, source: Source },
    /// One target of the service on one route.
    Target { service: String, source: Source, dst: Uri },
    /// Targets (of the service, or of any service) carrying all the tags.
    Tags { service: Option<String>, tags: Vec<String> },
}

/// Parses the whole text: `(line number, command or error)` for every line
/// that is not blank or a `#` comment. Line numbers start at 1.
pub fn parse(text: &str) -> Vec<(usize, Result<Command, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map(|(i, l)| (i + 1, line(l)))
        .collect()
}

/// Parses one non-blank line.
pub fn line(line: &str) -> Result<Command, String> {
    let words = split(line)?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["route", "add", svc, src, dst, rest @ ..] => {
            let kw = keywords(rest, &["weight", "tags", "opts"])?;
            let mut parsed = match kw.opts {
                Some(o) => options::parse(o.split_ascii_whitespace())?,
                None => Parsed::default(),
            };
            if kw.weight.is_some() {
                parsed.weight = kw.weight;
            }
            let dst = dst_url(dst)?;
            if dst.scheme_str() == Some("tcp") {
                parsed.opts.proto = options::Proto::Tcp;
            }
            Ok(Command::Add {
                service: service(svc)?,
                source: tag::source(src)?,
                dst,
                tags: kw.tags.unwrap_or_default(),
                parsed: Box::new(parsed),
            })
        }
        ["route", "del", "tags", tags] => Ok(Command::Del(Del::Tags { service: None, tags: tag_list(tags)? })),
        ["route", "del", svc, "tags", tags] => {
            Ok(Command::Del(Del::Tags { service: Some(service(svc)?), tags: tag_list(tags)? }))
        }
        ["route", "del", svc] => Ok(Command::Del(Del::Service(service(svc)?))),
        ["route", "del", svc, src] => {
            Ok(Command::Del(Del::Route { service: service(svc)?, source: tag::source(src)? }))
        }
        ["route", "del", svc, src, dst] => {
            Ok(Command::Del(Del::Target { service: service(svc)?, source: tag::source(src)?, dst: dst_url(dst)? }))
        }
        ["route", "weight", src, "weight", rest @ ..] => {
            let kw = keywords(&with_weight(rest), &["weight", "tags"])?;
            let tags = kw.tags.unwrap_or_default();
            if tags.is_empty() {
                return Err("route weight without a service needs tags \"...\"".to_string());
            }
            Ok(Command::Weight { service: None, source: tag::source(src)?, weight: required_weight(kw.weight)?, tags })
        }
        ["route", "weight", svc, src, rest @ ..] => {
            if rest.first() != Some(&"weight") {
                return Err("expected: route weight SVC SRC weight W [tags \"a,b\"]".to_string());
            }
            let kw = keywords(rest, &["weight", "tags"])?;
            Ok(Command::Weight {
                service: Some(service(svc)?),
                source: tag::source(src)?,
                weight: required_weight(kw.weight)?,
                tags: kw.tags.unwrap_or_default(),
            })
        }
        ["route", "add", ..] => Err("expected: route add SVC SRC DST [weight W] [tags \"a,b\"] [opts \"k=v\"]".into()),
        ["route", "del", ..] => Err("expected: route del SVC [SRC [DST]] or route del [SVC] tags \"a,b\"".into()),
        ["route", "weight", ..] => Err("expected: route weight [SVC] SRC weight W [tags \"a,b\"]".into()),
        ["route", other, ..] => Err(format!("unknown command 'route {other}' (add, del, weight)")),
        _ => Err("a line must start with 'route add', 'route del' or 'route weight'".to_string()),
    }
}

/// `rest` after `route weight SRC weight`: puts the consumed keyword back so
/// both forms share [`keywords`].
fn with_weight<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    std::iter::once("weight").chain(rest.iter().copied()).collect()
}

fn required_weight(w: Option<f64>) -> Result<f64, String> {
    w.ok_or_else(|| "missing weight W".to_string())
}

#[derive(Default)]
struct Keywords<'a> {
    weight: Option<f64>,
    tags: Option<Vec<String>>,
    opts: Option<&'a str>,
}

/// Reads `keyword value` pairs in any order, each at most once.
fn keywords<'a>(mut rest: &[&'a str], allowed: &[&str]) -> Result<Keywords<'a>, String> {
    let mut kw = Keywords::default();
    while let [key, tail @ ..] = rest {
        if !allowed.contains(key) {
            return Err(format!("unexpected '{key}' (allowed here: {})", allowed.join(", ")));
        }
        let [value, tail @ ..] = tail else {
            return Err(format!("'{key}' needs a value"));
        };
        let dup = match *key {
            "weight" => kw.weight.replace(options::weight(value)?).is_some(),
            "tags" => kw.tags.replace(tag_list(value)?).is_some(),
            _ => kw.opts.replace(value).is_some(),
        };
        if dup {
            return Err(format!("'{key}' given twice"));
        }
        rest = tail;
    }
    Ok(kw)
}

fn service(name: &str) -> Result<String, String> {
    // Consul service names never contain '/'; one here is a SRC in the wrong place.
    if name.is_empty() || name.contains('/') {
        return Err(format!("'{name}' is not a service name"));
    }
    Ok(name.to_string())
}

fn tag_list(s: &str) -> Result<Vec<String>, String> {
    let tags: Vec<String> = s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    if tags.is_empty() { Err("tags \"...\" is empty".to_string()) } else { Ok(tags) }
}

fn dst_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("DST '{s}' is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.host().is_empty() => Ok(uri),
        // A TCP target names its port and nothing else.
        (Some("tcp"), Some(a))
            if !a.host().is_empty()
                && a.port_u16().is_some_and(|p| p != 0)
                && matches!(uri.path(), "" | "/")
                && uri.query().is_none() =>
        {
            Ok(uri)
        }
        (Some("tcp"), _) => Err(format!("DST '{s}' must be tcp://ADDR:PORT")),
        _ => Err(format!("DST '{s}' must be an http:// or https:// URL with a host, or tcp://ADDR:PORT")),
    }
}

/// Splits on whitespace; `"..."` is one word (without the quotes) and may
/// contain spaces.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(ch) => word.push(ch),
                    None => return Err("unterminated quote".to_string()),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("a closing quote must be followed by a space".to_string());
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                if ch == '"' {
                    return Err("a quote may only start a word".to_string());
                }
                word.push(ch);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(host: &str, path: &str) -> Source {
        Source { host: host.into(), path: path.into() }
    }

    fn ok(l: &str) -> Command {
        line(l).unwrap_or_else(|e| panic!("{l}: {e}"))
    }

    fn err(l: &str) -> String {
        match line(l) {
            Ok(c) => panic!("{l} parsed: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn add_minimal() {
        let Command::Add { service, source, dst, tags, parsed } = ok("route add web example.com/ http://10.0.0.1:80/")
        else {
            panic!()
        };
        assert_eq!(service, "web");
        assert_eq!(source, src("example.com", "/"));
        assert_eq!(dst, "http://10.0.0.1:80/");
        assert!(tags.is_empty());
        assert_eq!(*parsed, Parsed::default());
    }

    #[test]
    fn add_with_everything_in_any_order() {
        let l =
            r#"route add api /v1 https://10.0.0.2:8443/ opts "strip=/v1 tlsskipverify=true" tags "a, b" weight 0.3"#;
        let Command::Add { tags, parsed, dst, .. } = ok(l) else { panic!() };
        assert_eq!(tags, vec!["a", "b"]);
        assert_eq!(parsed.weight, Some(0.3));
        assert_eq!(parsed.opts.strip.as_deref(), Some("/v1"));
        assert!(parsed.opts.tls_skip_verify);
        assert_eq!(dst.scheme_str(), Some("https"));
    }

    #[test]
    fn add_tcp_route() {
        let Command::Add { source, dst, parsed, .. } =
            ok(r#"route add db :5432 tcp://10.0.0.3:5432 opts "pxyproto=v2""#)
        else {
            panic!()
        };
        assert_eq!(source, src(":5432", "/"));
        assert_eq!(dst.scheme_str(), Some("tcp"));
        assert_eq!(dst.port_u16(), Some(5432));
        assert_eq!(parsed.opts.proto, options::Proto::Tcp, "a tcp:// DST makes a TCP route");
        assert_eq!(parsed.opts.pxyproto, Some(crate::proxy_protocol::Version::V2));
        for bad in ["tcp://10.0.0.3", "tcp://10.0.0.3:0", "tcp://10.0.0.3:5/x", "tcp://:5"] {
            assert!(err(&format!("route add db :5432 {bad}")).contains("DST"), "{bad}");
        }
        assert!(err("route add db :0 tcp://10.0.0.3:1").contains("port"));
    }

    #[test]
    fn add_weight_keyword_beats_opts_weight() {
        let Command::Add { parsed, .. } = ok(r#"route add a / http://h:1/ opts "weight=0.1" weight 0.2"#) else {
            panic!()
        };
        assert_eq!(parsed.weight, Some(0.2));
    }

    #[test]
    fn add_errors() {
        assert!(err("route add web /").contains("expected"));
        assert!(err("route add web / 10.0.0.1:80").contains("http"));
        assert!(err("route add web / ftp://h/").contains("http"));
        assert!(err("route add web / http://h/ weight 2").contains("weight"));
        assert!(err("route add web / http://h/ weight").contains("needs a value"));
        assert!(err("route add web / http://h/ weight 0.1 weight 0.2").contains("twice"));
        assert!(err("route add web / http://h/ colour blue").contains("unexpected"));
        assert!(err(r#"route add web / http://h/ opts "proto=gopher""#).contains("proto"));
        assert!(err(r#"route add web / http://h/ tags """#).contains("empty"));
        assert!(err("route add /web / http://h/").contains("service"));
    }

    #[test]
    fn del_forms() {
        assert_eq!(ok("route del web"), Command::Del(Del::Service("web".into())));
        assert_eq!(
            ok("route del web a.com/x"),
            Command::Del(Del::Route { service: "web".into(), source: src("a.com", "/x") })
        );
        assert_eq!(
            ok("route del web /x http://h:1/"),
            Command::Del(Del::Target {
                service: "web".into(),
                source: src("", "/x"),
                dst: "http://h:1/".parse().unwrap()
            })
        );
        assert_eq!(
            ok(r#"route del web tags "a,b""#),
            Command::Del(Del::Tags { service: Some("web".into()), tags: vec!["a".into(), "b".into()] })
        );
        assert_eq!(ok(r#"route del tags "a""#), Command::Del(Del::Tags { service: None, tags: vec!["a".into()] }));
        assert!(err("route del").contains("expected"));
        assert!(err("route del web / http://h/ extra").contains("expected"));
        assert!(err("route del web bad!src").contains("host"));
    }

    #[test]
    fn weight_forms() {
        assert_eq!(
            ok(r#"route weight svc-b www.kjca.dev/auth/ weight 0.05 tags "version-15,dc-fra""#),
            Command::Weight {
                service: Some("svc-b".into()),
                source: src("www.kjca.dev", "/auth/"),
                weight: 0.05,
                tags: vec!["version-15".into(), "dc-fra".into()],
            }
        );
        assert_eq!(
            ok("route weight web / weight 0.5"),
            Command::Weight { service: Some("web".into()), source: src("", "/"), weight: 0.5, tags: vec![] }
        );
        assert_eq!(
            ok(r#"route weight / weight 0.1 tags "canary""#),
            Command::Weight { service: None, source: src("", "/"), weight: 0.1, tags: vec!["canary".into()] }
        );
        assert!(err("route weight / weight 0.1").contains("needs tags"));
        assert!(err("route weight web / 0.5").contains("expected"));
        assert!(err("route weight web / weight").contains("needs a value"));
        assert!(err("route weight web / weight 1.1").contains("weight"));
        assert!(err(r#"route weight web / weight 0.1 opts "strip=/""#).contains("unexpected"));
        assert!(err("route weight").contains("expected"));
    }

    #[test]
    fn not_route_commands() {
        assert!(err("rout add a / http://h/").contains("must start"));
        assert!(err("route move a").contains("unknown command"));
        assert!(err(r#"route add a / http://h/ tags "a"#).contains("unterminated"));
        assert!(err(r#"route add a / http://h/ tags "a"b"#).contains("closing quote"));
        assert!(err(r#"route add a / http://h/ tags a"b""#).contains("quote"));
    }

    #[test]
    fn whole_text_numbers_lines_and_skips_comments() {
        let text = "# overrides\n\nroute del web\n   \n  # indented comment\nroute bogus\r\nroute del api\n";
        let got = parse(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (3, Ok(Command::Del(Del::Service("web".into())))));
        assert_eq!(got[1].0, 6);
        assert!(got[1].1.is_err());
        assert_eq!(got[2], (7, Ok(Command::Del(Del::Service("api".into())))));
        assert!(parse("").is_empty());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn lineish() -> impl Strategy<Value = String> {
            let word = prop::sample::select(vec![
                "route",
                "add",
                "del",
                "weight",
                "svc",
                "a.com/",
                "/p",
                "http://10.0.0.1:80/",
                "tags",
                "\"",
                "\"a,b\"",
                "opts",
                "\"strip=/p\"",
                "0.5",
                "-1",
                "NaN",
                "1e309",
                " ",
                "\t",
                "\n",
                "#",
                "\\",
                "'",
                "\u{e9}",
                "\0",
            ]);
            prop::collection::vec(word, 0..14).prop_map(|w| w.join(" "))
        }

        proptest! {
            #![proptest_config(crate::routes::proptest_config(5000))]

            #[test]
            fn any_text_parses_line_by_line(text in prop_oneof![lineish(), any::<String>()]) {
                let lines = parse(&text);
                prop_assert!(lines.len() <= text.lines().count());
            }
        }
    }
}
