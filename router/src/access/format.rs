//! Access log lines: the formats of `--access-log-format` (`common`,
//! `combined`, `json` or a template of `$field`s, fabio's field names) and
//! the record they are made from. Pure, so every format is unit-tested; the
//! writer thread (the parent module) does the formatting off the request
//! path.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;

/// Bytes of a record's text kept inside the record: a usual request's
/// method, URI, host, request ID, route and service fit, so queuing a
/// record allocates nothing.
const INLINE: usize = 256;
/// A field's bytes beyond this are cut (a record cannot grow without bound
/// however long the request's URI or headers are allowed to be).
const MAX_FIELD: usize = 16 * 1024;
/// Marks an absent field in [`Text::ends`].
const ABSENT: u32 = 1 << 31;

/// A record's variable-length fields, copied from the request into one
/// buffer (inline up to [`INLINE`] bytes): the request path copies bytes
/// instead of allocating a string per field, and the writer thread frees
/// nothing the request's thread allocated (glibc's arenas are shared by the
/// two, so that free would take a lock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Text {
    bytes: SmallVec<[u8; INLINE]>,
    /// Each field's end in `bytes`, with [`ABSENT`] set for a missing one.
    ends: SmallVec<[u32; 12]>,
}

impl Text {
    /// Appends one field made of `parts`, cut at [`MAX_FIELD`] bytes.
    fn put(&mut self, parts: &[&[u8]]) {
        let mut room = MAX_FIELD;
        for p in parts {
            let take = p.len().min(room);
            self.bytes.extend_from_slice(&p[..take]);
            room -= take;
        }
        self.ends.push(self.end());
    }

    fn put_opt(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.put(&[v]),
            None => self.ends.push(self.end() | ABSENT),
        }
    }

    /// Where the bytes end: never near [`ABSENT`], as a record holds a
    /// handful of fields of at most [`MAX_FIELD`] bytes.
    fn end(&self) -> u32 {
        u32::try_from(self.bytes.len()).unwrap_or(ABSENT - 1).min(ABSENT - 1)
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        if end & ABSENT != 0 {
            return None;
        }
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] & !ABSENT);
        self.bytes.get(start as usize..end as usize)
    }
}

/// What the access log knows of a request when it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub time: SystemTime,
    pub client: IpAddr,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub proto: &'static str,
    pub method: &'a [u8],
    /// The request target as sent: its path and, apart, its query.
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub host: &'a [u8],
    pub request_id: Option<&'a [u8]>,
}

/// The target that answered a request.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// None did (unrouted, or every attempt failed).
    None,
    Addr(SocketAddr),
    /// A target known by name (`host:port` of its URL).
    Named(&'a str),
}

/// One request, as the proxy saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: SystemTime,
    pub client: IpAddr,
    pub proto: &'static str,
    pub status: u16,
    /// Bytes of the response sent to the client (head and body on the
    /// fast path; the body's Content-Length on hyper's, None when unknown).
    pub bytes: Option<u64>,
    pub duration: Duration,
    /// The target that answered, when it is known by address (else the
    /// text holds its name, or none answered).
    upstream: Option<SocketAddr>,
    /// Method, URI, host, request ID, the headers the format names (in
    /// [`Format::headers`] order), then route, service and the upstream's
    /// name.
    text: Text,
    /// How many header fields `text` holds.
    headers: usize,
}

const METHOD: usize = 0;
const URI: usize = 1;
const HOST: usize = 2;
const REQUEST_ID: usize = 3;
const FIRST_HEADER: usize = 4;

impl Record {
    /// A record of what is known when a request arrives: the request's
    /// own fields and the values of the headers the format names
    /// (`headers`, in [`Format::headers`] order; None when absent).
    pub fn arrived<'h>(a: Arrival<'_>, headers: impl IntoIterator<Item = Option<&'h [u8]>>) -> Record {
        let mut text = Text::default();
        text.put(&[a.method]);
        match a.query {
            Some(q) => text.put(&[a.path, b"?", q]),
            None => text.put(&[a.path]),
        }
        text.put(&[a.host]);
        text.put_opt(a.request_id);
        let mut n = 0;
        for h in headers {
            text.put_opt(h);
            n += 1;
        }
        Record {
            time: a.time,
            client: a.client,
            proto: a.proto,
            status: 0,
            bytes: None,
            duration: Duration::ZERO,
            upstream: None,
            text,
            headers: n,
        }
    }

    /// The route that took the request (its host and path) and its
    /// service, None when unrouted; and the target that answered. Called
    /// once, after [`Record::arrived`].
    pub fn routed(&mut self, route: Option<(&str, &str, &str)>, upstream: Upstream<'_>) {
        match route {
            Some((host, path, service)) => {
                self.text.put(&[host.as_bytes(), path.as_bytes()]);
                self.text.put(&[service.as_bytes()]);
            }
            None => {
                self.text.put_opt(None);
                self.text.put_opt(None);
            }
        }
        match upstream {
            Upstream::Addr(a) => {
                self.upstream = Some(a);
                self.text.put_opt(None);
            }
            Upstream::Named(name) => self.text.put(&[name.as_bytes()]),
            Upstream::None => self.text.put_opt(None),
        }
    }

    fn get(&self, i: usize) -> Option<Cow<'_, str>> {
        self.text.get(i).map(String::from_utf8_lossy)
    }

    pub fn method(&self) -> Cow<'_, str> {
        self.get(METHOD).unwrap_or_default()
    }

    pub fn uri(&self) -> Cow<'_, str> {
        self.get(URI).unwrap_or_default()
    }

    pub fn host(&self) -> Cow<'_, str> {
        self.get(HOST).unwrap_or_default()
    }

    pub fn request_id(&self) -> Option<Cow<'_, str>> {
        self.get(REQUEST_ID)
    }

    /// The value of the `i`th header of [`Format::headers`].
    pub fn header(&self, i: usize) -> Option<Cow<'_, str>> {
        (i < self.headers).then(|| self.get(FIRST_HEADER + i)).flatten()
    }

    /// `host/path` of the route, None when unrouted.
    pub fn route(&self) -> Option<Cow<'_, str>> {
        self.get(FIRST_HEADER + self.headers)
    }

    pub fn service(&self) -> Option<Cow<'_, str>> {
        self.get(FIRST_HEADER + self.headers + 1)
    }

    fn write_upstream(&self, out: &mut String) -> std::fmt::Result {
        match self.upstream {
            Some(a) => write!(out, "{a}"),
            None => dash(out, self.get(FIRST_HEADER + self.headers + 2)),
        }
    }
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
        self.line_with(r, &mut Clock::default(), out);
    }

    /// One line, with its newline; `clock` keeps the time of day formatted
    /// for the second it was last asked for (lines come in by the
    /// thousand per second).
    pub fn line_with(&self, r: &Record, clock: &mut Clock, out: &mut String) {
        match self {
            Format::Json { .. } => json(r, clock, out),
            Format::Template { fields, .. } => {
                for f in fields {
                    field(f, r, clock, out);
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

fn dash(out: &mut String, v: Option<Cow<'_, str>>) -> std::fmt::Result {
    match v.as_deref() {
        Some(v) if !v.is_empty() => out.write_str(v),
        _ => out.write_str("-"),
    }
}

fn field(f: &Field, r: &Record, clock: &mut Clock, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match f {
        Field::Text(t) => out.write_str(t),
        Field::RemoteAddr => write!(out, "{}", r.client),
        Field::RequestMethod => out.write_str(&r.method()),
        Field::RequestUri => out.write_str(&r.uri()),
        Field::RequestProto => out.write_str(r.proto),
        Field::RequestHost => dash(out, Some(r.host())),
        Field::Request => write!(out, "{} {} {}", r.method(), r.uri(), r.proto),
        Field::ResponseStatus => write!(out, "{}", r.status),
        Field::ResponseBodySize => match r.bytes {
            Some(b) => write!(out, "{b}"),
            None => out.write_str("-"),
        },
        Field::ResponseTimeMs => write!(out, "{}", r.duration.as_millis()),
        Field::ResponseTimeUs => write!(out, "{}", r.duration.as_micros()),
        Field::TimeRfc3339 => out.write_str(&clock.at(r.time).rfc3339),
        Field::TimeCommon => out.write_str(&clock.at(r.time).common),
        Field::TimeUnixMs => write!(out, "{}", unix(r.time).as_millis()),
        Field::UpstreamAddr => r.write_upstream(out),
        Field::UpstreamService => dash(out, r.service()),
        Field::Route => dash(out, r.route()),
        Field::RequestId => dash(out, r.request_id()),
        Field::Header(i) => dash(out, r.header(*i)),
    };
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The time of day of one second, formatted once for every line of that
/// second.
#[derive(Debug, Default)]
pub struct Clock {
    /// Seconds since the epoch that `rfc3339` and `common` show; None
    /// before the first line.
    second: Option<u64>,
    /// `2026-12-02T04:55:30Z`.
    rfc3339: String,
    /// `02/Dec/2026:04:55:30 +0000` (UTC).
    common: String,
}

impl Clock {
    fn at(&mut self, t: SystemTime) -> &Clock {
        let second = unix(t).as_secs();
        if self.second != Some(second) {
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            self.second = Some(second);
            self.rfc3339.clear();
            let _ = write!(self.rfc3339, "{}", humantime::format_rfc3339_seconds(t));
            let s = &self.rfc3339;
            let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<usize>().ok()).unwrap_or(0);
            let month = MONTHS.get(num(5, 7).wrapping_sub(1)).copied().unwrap_or("Jan");
            self.common.clear();
            let part = |a: usize, b: usize| s.get(a..b).unwrap_or("?");
            let _ = write!(self.common, "{}/{month}/{}:{} +0000", part(8, 10), part(0, 4), part(11, 19));
        }
        self
    }
}

/// A JSON string, quoted and escaped (RFC 8259: `"`, `\` and control
/// characters), or `null`.
fn js(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(r: &Record, clock: &mut Clock, out: &mut String) {
    // Milliseconds: the cached second, then the fraction.
    let rfc = &clock.at(r.time).rfc3339;
    let millis = unix(r.time).subsec_millis();
    let _ = write!(
        out,
        "{{\"time\":\"{}.{millis:03}Z\",\"client\":\"{}\",\"method\":",
        rfc.trim_end_matches('Z'),
        r.client
    );
    js(out, Some(&r.method()));
    out.push_str(",\"uri\":");
    js(out, Some(&r.uri()));
    let _ = write!(out, ",\"proto\":\"{}\",\"host\":", r.proto);
    js(out, Some(&r.host()));
    let _ = write!(out, ",\"status\":{},\"bytes\":", r.status);
    match r.bytes {
        Some(b) => _ = write!(out, "{b}"),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"duration_ms\":{:.3},\"upstream\":", r.duration.as_secs_f64() * 1000.0);
    match (r.upstream, r.get(FIRST_HEADER + r.headers + 2)) {
        (Some(a), _) => _ = write!(out, "\"{a}\""),
        (None, name) => js(out, name.as_deref()),
    }
    out.push_str(",\"route\":");
    js(out, r.route().as_deref());
    out.push_str(",\"service\":");
    js(out, r.service().as_deref());
    out.push_str(",\"request_id\":");
    js(out, r.request_id().as_deref());
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival() -> Arrival<'static> {
        Arrival {
            time: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            client: "10.1.2.3".parse().unwrap(),
            proto: "HTTP/1.1",
            method: b"GET",
            path: b"/a",
            query: Some(b"b=\"c\""),
            host: b"app.example.com",
            request_id: Some(b"id-1"),
        }
    }

    /// A routed, answered record; `route` false leaves it unrouted.
    fn answered(a: Arrival<'_>, headers: &[Option<&[u8]>], route: bool) -> Record {
        let mut r = Record::arrived(a, headers.iter().copied());
        let upstream = if route { Upstream::Addr("127.0.0.1:8080".parse().unwrap()) } else { Upstream::None };
        r.routed(route.then_some(("app.example.com", "/", "web")), upstream);
        r.status = 200;
        r.bytes = Some(123);
        r.duration = Duration::from_micros(1500);
        r
    }

    fn record() -> Record {
        answered(arrival(), &[Some(b"http://ref/"), None], true)
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
        let unrouted = Record { bytes: None, ..answered(arrival(), &[], false) };
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
        assert_eq!(line("[$route]", &answered(arrival(), &[], false)), "[-]\n");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Format::parse("$remote_addr $nope").unwrap_err().contains("$nope"));
        assert!(Format::parse("$header.").is_err());
        assert!(Format::parse("costs $ 5").is_err(), "a lone $ is not guessed at");
    }

    #[test]
    fn fields_absent_empty_cut_and_not_utf8() {
        let a = Arrival { request_id: None, host: b"", path: b"/\xff", query: None, ..arrival() };
        let r = answered(a, &[None, Some(b"")], false);
        assert_eq!(r.request_id(), None);
        assert_eq!((r.header(0), r.header(1).as_deref(), r.header(2)), (None, Some(""), None));
        assert_eq!((r.route(), r.service()), (None, None));
        assert_eq!(line("$request_host|$request_id|$request_uri|$header.a|$header.b", &r), "-|-|/\u{fffd}|-|-\n");
        let long = vec![b'x'; 3 * MAX_FIELD];
        let r = answered(Arrival { path: &long, query: Some(&long), ..arrival() }, &[Some(&long)], true);
        assert_eq!(r.uri().len(), MAX_FIELD);
        assert_eq!(r.header(0).map(|h| h.len()), Some(MAX_FIELD));
        assert_eq!((r.host().as_ref(), r.service().as_deref()), ("app.example.com", Some("web")));
    }

    #[test]
    fn upstreams_by_name() {
        let mut r = Record::arrived(arrival(), []);
        r.routed(Some(("a.com", "/", "web")), Upstream::Named("backend.internal:8443"));
        assert_eq!(line("$upstream_addr $route", &r), "backend.internal:8443 a.com/\n");
        let v: serde_json::Value = serde_json::from_str(&line("json", &r)).expect("valid JSON");
        assert_eq!(v["upstream"], "backend.internal:8443");
    }

    #[test]
    fn a_usual_record_needs_no_allocation() {
        assert!(!record().text.bytes.spilled() && !record().text.ends.spilled());
        // The bound the backlog's memory is documented with.
        assert!(std::mem::size_of::<Record>() < 500, "{}", std::mem::size_of::<Record>());
    }

    #[test]
    fn the_clock_follows_the_seconds() {
        let mut clock = Clock::default();
        let f = Format::parse("$time_common $time_rfc3339").unwrap();
        let mut out = String::new();
        for (secs, want) in [
            (1_795_000_000, "18/Nov/2026:11:06:40 +0000 2026-11-18T11:06:40Z\n"),
            (1_795_000_000, "18/Nov/2026:11:06:40 +0000 2026-11-18T11:06:40Z\n"),
            (1_795_000_001, "18/Nov/2026:11:06:41 +0000 2026-11-18T11:06:41Z\n"),
            (0, "01/Jan/1970:00:00:00 +0000 1970-01-01T00:00:00Z\n"),
        ] {
            out.clear();
            let r = Record { time: UNIX_EPOCH + Duration::from_secs(secs), ..record() };
            f.line_with(&r, &mut clock, &mut out);
            assert_eq!(out, want);
        }
    }

    proptest::proptest! {
        /// Whatever bytes a client sends, a JSON line is one valid JSON
        /// object carrying them (invalid UTF-8 replaced), and a template
        /// line is one line when the bytes hold no line break.
        #[test]
        fn any_request_bytes_make_one_line(
            method in proptest::collection::vec(proptest::num::u8::ANY, 0..10),
            path in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            host in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            header in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
        ) {
            let a = Arrival { method: &method, path: &path, host: &host, query: None, ..arrival() };
            let r = answered(a, &[header.as_deref()], true);
            let mut out = String::new();
            Format::Json { headers: vec![] }.line(&r, &mut out);
            let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
            proptest::prop_assert_eq!(v["uri"].as_str(), Some(&*String::from_utf8_lossy(&path)));
            proptest::prop_assert_eq!(v["host"].as_str(), Some(&*String::from_utf8_lossy(&host)));
            proptest::prop_assert_eq!(out.matches('\n').count(), 1);
            let got = r.header(0).map(|h| h.into_owned());
            proptest::prop_assert_eq!(got, header.map(|h| String::from_utf8_lossy(&h).into_owned()));
        }
    }
}
