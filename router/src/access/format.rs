//! Access log lines: the formats of `--access-log-format` (`common`,
//! `combined`, `json` or a template of `$field`s, fabio's field names) and
//! the record they are made from. Pure, so every format is unit-tested; the
//! writer thread (the parent module) does the formatting off the request
//! path.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One request, as the proxy saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: String,
    /// The request target as sent (path and query).
    pub uri: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub proto: &'static str,
    pub host: String,
    pub status: u16,
    /// Bytes of the response sent to the client (head and body on the
    /// fast path; the body's Content-Length on hyper's, None when unknown).
    pub bytes: Option<u64>,
    pub duration: Duration,
    /// The target's address, None when no upstream answered.
    pub upstream: Option<String>,
    /// `host/path` of the route, None when unrouted.
    pub route: Option<String>,
    pub service: Option<String>,
    pub request_id: Option<String>,
    /// Values of the request headers the format names, in
    /// [`Format::headers`] order (`None`: absent).
    pub headers: Vec<Option<String>>,
}

/// A template field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Text(String),
    RemoteAddr,
    RequestMethod,
    RequestUri,
    RequestProto,
    RequestHost,
    /// `METHOD URI PROTO`.
    Request,
    ResponseStatus,
    ResponseBodySize,
    ResponseTimeMs,
    ResponseTimeUs,
    TimeRfc3339,
    TimeCommon,
    TimeUnixMs,
    UpstreamAddr,
    UpstreamService,
    Route,
    RequestId,
    /// Index into [`Format::headers`].
    Header(usize),
}

/// A parsed `--access-log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json { headers: Vec<String> },
    Template { fields: Vec<Field>, headers: Vec<String> },
}

const COMMON: &str = "$remote_addr - - [$time_common] \"$request\" $response_status $response_body_size";
const COMBINED: &str = "$remote_addr - - [$time_common] \"$request\" $response_status $response_body_size \
                        \"$header.Referer\" \"$header.User-Agent\"";

impl Format {
    /// `common`, `combined`, `json` or a template such as
    /// `$remote_addr $request_method $request_uri $response_status`.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "common" => Format::parse(COMMON),
            "combined" => Format::parse(COMBINED),
            "json" => Ok(Format::Json { headers: Vec::new() }),
            template => template_fields(template),
        }
    }

    /// The request headers a record must carry, lower-cased.
    pub fn headers(&self) -> &[String] {
        match self {
            Format::Json { headers } | Format::Template { headers, .. } => headers,
        }
    }

    /// One line, with its newline.
    pub fn line(&self, r: &Record, out: &mut String) {
        match self {
            Format::Json { .. } => json(r, out),
            Format::Template { fields, .. } => {
                for f in fields {
                    field(f, r, out);
                }
            }
        }
        out.push('\n');
    }
}

fn template_fields(t: &str) -> Result<Format, String> {
    let mut fields = Vec::new();
    let mut headers: Vec<String> = Vec::new();
    let mut rest = t;
    while let Some(at) = rest.find('$') {
        if at > 0 {
            fields.push(Field::Text(rest[..at].to_string()));
        }
        rest = &rest[at..];
        let word =
            |s: &str, extra: &[u8]| s.bytes().take_while(|b| b.is_ascii_alphanumeric() || extra.contains(b)).count();
        let mut name_len = word(&rest[1..], b"_");
        if &rest[1..1 + name_len] == "header" && rest[1 + name_len..].starts_with('.') {
            name_len += 1 + word(&rest[2 + name_len..], b"_-");
        }
        let name = &rest[1..1 + name_len];
        let f = match name {
            "remote_addr" => Field::RemoteAddr,
            "request_method" => Field::RequestMethod,
            "request_uri" => Field::RequestUri,
            "request_proto" => Field::RequestProto,
            "request_host" => Field::RequestHost,
            "request" => Field::Request,
            "response_status" => Field::ResponseStatus,
            "response_body_size" => Field::ResponseBodySize,
            "response_time_ms" => Field::ResponseTimeMs,
            "response_time_us" => Field::ResponseTimeUs,
            "time_rfc3339" => Field::TimeRfc3339,
            "time_common" => Field::TimeCommon,
            "time_unix_ms" => Field::TimeUnixMs,
            "upstream_addr" => Field::UpstreamAddr,
            "upstream_service" => Field::UpstreamService,
            "route" => Field::Route,
            "request_id" => Field::RequestId,
            h if h.starts_with("header.") && h.len() > "header.".len() => {
                let h = h["header.".len()..].to_ascii_lowercase();
                let i = headers.iter().position(|x| *x == h).unwrap_or_else(|| {
                    headers.push(h);
                    headers.len() - 1
                });
                Field::Header(i)
            }
            other => return Err(format!("unknown access log field '${other}'")),
        };
        fields.push(f);
        rest = &rest[1 + name_len..];
    }
    if !rest.is_empty() {
        fields.push(Field::Text(rest.to_string()));
    }
    Ok(Format::Template { fields, headers })
}

fn dash(out: &mut String, v: Option<&str>) -> std::fmt::Result {
    out.write_str(v.filter(|v| !v.is_empty()).unwrap_or("-"))
}

fn field(f: &Field, r: &Record, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match f {
        Field::Text(t) => out.write_str(t),
        Field::RemoteAddr => write!(out, "{}", r.client),
        Field::RequestMethod => out.write_str(&r.method),
        Field::RequestUri => out.write_str(&r.uri),
        Field::RequestProto => out.write_str(r.proto),
        Field::RequestHost => dash(out, Some(&r.host)),
        Field::Request => write!(out, "{} {} {}", r.method, r.uri, r.proto),
        Field::ResponseStatus => write!(out, "{}", r.status),
        Field::ResponseBodySize => match r.bytes {
            Some(b) => write!(out, "{b}"),
            None => out.write_str("-"),
        },
        Field::ResponseTimeMs => write!(out, "{}", r.duration.as_millis()),
        Field::ResponseTimeUs => write!(out, "{}", r.duration.as_micros()),
        Field::TimeRfc3339 => write!(out, "{}", humantime::format_rfc3339_seconds(r.time)),
        Field::TimeCommon => time_common(r.time, out),
        Field::TimeUnixMs => write!(out, "{}", unix(r.time).as_millis()),
        Field::UpstreamAddr => dash(out, r.upstream.as_deref()),
        Field::UpstreamService => dash(out, r.service.as_deref()),
        Field::Route => dash(out, r.route.as_deref()),
        Field::RequestId => dash(out, r.request_id.as_deref()),
        Field::Header(i) => dash(out, r.headers.get(*i).and_then(|h| h.as_deref())),
    };
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `02/Dec/2026:04:55:30 +0000` (UTC).
fn time_common(t: SystemTime, out: &mut String) -> std::fmt::Result {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // "2026-12-02T04:55:30Z"
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<usize>().ok()).unwrap_or(0);
    let month = MONTHS.get(num(5, 7).wrapping_sub(1)).copied().unwrap_or("Jan");
    write!(out, "{}/{month}/{}:{} +0000", &s[8..10], &s[0..4], &s[11..19])
}

/// A JSON string, escaped.
fn js(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("null"),
        Some(v) => out.push_str(&serde_json::Value::from(v).to_string()),
    }
}

fn json(r: &Record, out: &mut String) {
    let _ = write!(
        out,
        "{{\"time\":\"{}\",\"client\":\"{}\",\"method\":",
        humantime::format_rfc3339_millis(r.time),
        r.client
    );
    js(out, Some(&r.method));
    out.push_str(",\"uri\":");
    js(out, Some(&r.uri));
    let _ = write!(out, ",\"proto\":\"{}\",\"host\":", r.proto);
    js(out, Some(&r.host));
    let _ = write!(out, ",\"status\":{},\"bytes\":", r.status);
    match r.bytes {
        Some(b) => _ = write!(out, "{b}"),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"duration_ms\":{:.3},\"upstream\":", r.duration.as_secs_f64() * 1000.0);
    js(out, r.upstream.as_deref());
    out.push_str(",\"route\":");
    js(out, r.route.as_deref());
    out.push_str(",\"service\":");
    js(out, r.service.as_deref());
    out.push_str(",\"request_id\":");
    js(out, r.request_id.as_deref());
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            client: "10.1.2.3".parse().unwrap(),
            method: "GET".into(),
            uri: "/a?b=\"c\"".into(),
            proto: "HTTP/1.1",
            host: "app.example.com".into(),
            status: 200,
            bytes: Some(123),
            duration: Duration::from_micros(1500),
            upstream: Some("127.0.0.1:8080".into()),
            route: Some("app.example.com/".into()),
            service: Some("web".into()),
            request_id: Some("id-1".into()),
            headers: vec![Some("http://ref/".into()), None],
        }
    }

    fn line(fmt: &str, r: &Record) -> String {
        let mut out = String::new();
        Format::parse(fmt).expect("format").line(r, &mut out);
        out
    }

    #[test]
    fn common_and_combined() {
        let r = record();
        assert_eq!(
            line("common", &r),
            "10.1.2.3 - - [18/Nov/2026:11:06:40 +0000] \"GET /a?b=\"c\" HTTP/1.1\" 200 123\n"
        );
        assert_eq!(Format::parse("combined").unwrap().headers(), ["referer", "user-agent"]);
        assert!(line("combined", &r).ends_with(" 200 123 \"http://ref/\" \"-\"\n"), "{}", line("combined", &r));
    }

    #[test]
    fn json_lines_carry_every_field_escaped() {
        let v: serde_json::Value = serde_json::from_str(&line("json", &record())).expect("valid JSON");
        assert_eq!(v["uri"], "/a?b=\"c\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 123);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream"], "127.0.0.1:8080");
        assert_eq!(v["route"], "app.example.com/");
        assert_eq!(v["service"], "web");
        assert_eq!(v["request_id"], "id-1");
        assert_eq!(v["client"], "10.1.2.3");
        assert_eq!(v["time"], "2026-11-18T11:06:40.000Z");
        let unrouted = Record { upstream: None, route: None, service: None, bytes: None, ..record() };
        let v: serde_json::Value = serde_json::from_str(&line("json", &unrouted)).expect("valid JSON");
        assert!(v["route"].is_null() && v["bytes"].is_null());
    }

    #[test]
    fn templates_use_fabios_field_names() {
        let r = record();
        let t = "$remote_addr|$request_method|$request_uri|$request_proto|$request_host|$response_status|\
                 $response_body_size|$response_time_ms|$response_time_us|$time_rfc3339|$time_unix_ms|\
                 $upstream_addr|$upstream_service|$route|$request_id|$header.Referer|$header.X-Missing";
        assert_eq!(
            line(t, &r),
            "10.1.2.3|GET|/a?b=\"c\"|HTTP/1.1|app.example.com|200|123|1|1500|2026-11-18T11:06:40Z|1795000000000|\
             127.0.0.1:8080|web|app.example.com/|id-1|http://ref/|-\n"
        );
        assert_eq!(line("no fields", &r), "no fields\n");
        assert_eq!(line("[$route]", &Record { route: None, ..r }), "[-]\n");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Format::parse("$remote_addr $nope").unwrap_err().contains("$nope"));
        assert!(Format::parse("$header.").is_err());
        assert!(Format::parse("costs $ 5").is_err(), "a lone $ is not guessed at");
    }
}
