//! Request smuggling and malformed input against the real router, on both
//! proxy paths, with a raw backend that logs every request it parses, byte
//! for byte. The invariant checked in every case: the backend never parses a
//! request the router did not see and route as such (no `/admin` behind an
//! `allow=` the client fails, no request without the router's
//! `x-forwarded-for`), and what it receives is exactly what the router framed.
//!
//! Both paths: `fast.test` is served by the fast path (a plain route to an
//! IP target); `hyper.test` routes to a named target (`localhost`), which
//! only the hyper path serves. The fast path reads the first head of every
//! connection, so each hostile head is sent twice: first on a fresh
//! connection, then after a request to `hyper.test` on the same connection,
//! when hyper reads the heads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::router::Router;
use integration_tests::{ConsulAgent, wait_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const T: Duration = Duration::from_secs(10);

/// One request as the backend parsed it.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A backend that parses HTTP/1.1 as a lenient server would (a chunked
/// Transfer-Encoding wins, else the first Content-Length) and logs each
/// request. `/resp/KIND` answers with a deliberately bad response head.
struct RawBackend {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    _tasks: JoinSet<()>,
}

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            let mut n = 0;
            while let Ok((s, _)) = listener.accept().await {
                n += 1;
                conns.spawn(serve(s, n, log.clone()));
            }
        });
        RawBackend { port, seen, _tasks: tasks }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("log"))
    }
}

async fn read_line<R: AsyncRead + Unpin>(s: &mut R) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        line.push(b[0]);
    }
    Some(line)
}

async fn serve(mut s: TcpStream, conn: usize, log: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let mut head = Vec::new();
        loop {
            let Some(line) = read_line(&mut s).await else { return };
            let end = line == b"\r\n" || line == b"\n";
            head.extend(line);
            if end {
                break;
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut body = Vec::new();
        if header(&head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let Some(line) = read_line(&mut s).await else { return };
                let size = String::from_utf8_lossy(&line);
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
                if size == 0 {
                    // Trailers up to the empty line.
                    while read_line(&mut s).await.is_some_and(|l| l != b"\r\n") {}
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                if s.read_exact(&mut chunk).await.is_err() {
                    return;
                }
                body.extend(&chunk[..size]);
            }
        } else if let Some(n) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let seen = Seen { conn, head, body };
        let target = seen.target().to_string();
        log.lock().expect("log").push(seen);
        let out = match target.as_str() {
            "/resp/two-lengths" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok".to_string(),
            "/resp/length-and-chunked" => {
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string()
            }
            // A response with a second one smuggled behind a bare LF.
            "/resp/split" => {
                "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhijack!".to_string()
            }
            // A body that ends when the connection does.
            "/resp/until-close" => "HTTP/1.0 200 OK\r\n\r\nuntil close".to_string(),
            t => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nseen {t}", t.len() + 5),
        };
        if s.write_all(out.as_bytes()).await.is_err() || target == "/resp/until-close" {
            return;
        }
    }
}

struct Setup {
    _consul: ConsulAgent,
    backend: RawBackend,
    router: Router,
}

async fn setup(extra: &[&str]) -> Setup {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let backend = RawBackend::start().await;
    let c = consul.client();
    for (id, host, address) in [("fast", "fast.test", "127.0.0.1"), ("hyper", "hyper.test", "localhost")] {
        let reg = consul::ServiceRegistration {
            id: id.into(),
            name: id.into(),
            tags: vec![format!("urlprefix-{host}/"), format!("urlprefix-{host}/admin allow=ip:10.0.0.0/8")],
            address: address.into(),
            port: Some(backend.port),
            ..Default::default()
        };
        c.register_service(&reg).await.expect("register");
    }
    let router = Router::start(&consul, extra).await;
    for host in ["fast.test", "hyper.test"] {
        let ok = wait_until(T, || async { (router.fetch(host, "/ready").await.0 == 200).then_some(()) }).await;
        assert!(ok.is_some(), "{host} not routed");
    }
    // Both admin routes refuse a direct request from 127.0.0.1.
    for host in ["fast.test", "hyper.test"] {
        assert_eq!(router.fetch(host, "/admin").await.0, 403);
    }
    backend.take();
    Setup { _consul: consul, backend, router }
}

/// Sends `raw` on a new connection and reads until the router closes it or
/// 700 ms pass in silence.
async fn send(router: &Router, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(router.proxy).await.expect("connect");
    s.write_all(raw).await.expect("write");
    read_all(&mut s).await
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status lines of every response in `text`.
fn statuses(text: &str) -> Vec<u16> {
    text.split("HTTP/1.1 ").skip(1).filter_map(|r| r.get(..3)?.parse().ok()).collect()
}

/// How a path meets a hostile head: on a fresh connection (the fast path
/// reads it) or after a request hyper served on the same connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Fast,
    Hyper,
}

const PRIME: &[u8] = b"GET /prime HTTP/1.1\r\nHost: hyper.test\r\n\r\n";

impl Path {
    fn host(self) -> &'static str {
        match self {
            Path::Fast => "fast.test",
            Path::Hyper => "hyper.test",
        }
    }

    /// The bytes to send: the hyper path first gets a request only it
    /// serves, so the hostile head is read by hyper.
    fn wrap(self, raw: &[u8]) -> Vec<u8> {
        match self {
            Path::Fast => raw.to_vec(),
            Path::Hyper => [PRIME, raw].concat(),
        }
    }

    /// Statuses after the priming request.
    fn answers(self, text: &str) -> Vec<u16> {
        let all = statuses(text);
        match self {
            Path::Fast => all,
            Path::Hyper => {
                assert_eq!(all.first(), Some(&200), "priming request: {text}");
                all[1..].to_vec()
            }
        }
    }

    /// Requests the backend saw after the priming one.
    fn seen(self, mut seen: Vec<Seen>) -> Vec<Seen> {
        if self == Path::Hyper {
            assert_eq!(seen.first().map(Seen::target), Some("/prime"), "{seen:?}");
            seen.remove(0);
        }
        seen
    }
}

/// The invariant of every case: each request the backend parsed came
/// through the router (forwarding headers set by it, the client's address)
/// and is not a route the client may not use.
fn assert_routed(seen: &[Seen], case: &str) {
    for s in seen {
        assert_ne!(s.target(), "/admin", "{case}: smuggled past allow=: {s:?}");
        assert!(!s.target().starts_with("/smuggled"), "{case}: smuggled request parsed: {s:?}");
        assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"), "{case}: not the router's request: {s:?}");
        assert_eq!(s.header("x-real-ip"), Some("127.0.0.1"), "{case}: forged X-Real-Ip: {s:?}");
    }
}

/// A head that must be refused: 400 (or `status`), the connection closed,
/// nothing reaches the backend. Err says what happened instead.
async fn refused(st: &Setup, path: Path, case: &str, raw: &str, status: u16) -> Result<(), String> {
    let raw = raw.replace("{H}", path.host());
    let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
    let answers = path.answers(&text);
    let seen = path.seen(st.backend.take());
    assert_routed(&seen, case);
    let closed = text.to_ascii_lowercase().contains("connection: close");
    if answers != [status] || !seen.is_empty() || !closed {
        let targets: Vec<&str> = seen.iter().map(Seen::target).collect();
        return Err(format!("{case} on {path:?}: answers {answers:?}, backend parsed {targets:?}, closed: {closed}"));
    }
    Ok(())
}

async fn assert_refused(st: &Setup, path: Path, case: &str, raw: &str, status: u16) {
    if let Err(e) = refused(st, path, case, raw, status).await {
        panic!("{e}");
    }
}

// The issue's request, byte for byte: the body is 60 bytes.
const ISSUE_BODY: &str = "GET /admin HTTP/1.1\r\nHost: app.test\r\nX-Real-Ip: 10.1.2.3\r\n\r\n";

#[tokio::test]
async fn connection_cannot_unframe_a_request() {
    assert_eq!(ISSUE_BODY.len(), 58 + 2);
    let st = setup(&[]).await;
    for path in [Path::Fast, Path::Hyper] {
        let h = path.host();
        // The issue's request, twice on one connection, with a victim's
        // request behind it.
        let body = ISSUE_BODY.replace("app.test", h);
        let attack = format!(
            "POST /public HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\nConnection: Content-Length\r\n\r\n{body}",
            body.len()
        );
        let victim = format!("GET /victim HTTP/1.1\r\nHost: {h}\r\nCookie: secret=1\r\nConnection: close\r\n\r\n");
        let text = send(&st.router, &path.wrap(format!("{attack}{attack}{victim}").as_bytes())).await;
        let seen = path.seen(st.backend.take());
        assert_routed(&seen, "issue request");
        let answers = path.answers(&text);
        // Forwarded with its body as a body: two POSTs and the victim's GET,
        // each answered with its own response.
        assert_eq!(answers, vec![200, 200, 200], "{path:?}: {text:?}");
        let targets: Vec<&str> = seen.iter().map(Seen::target).collect();
        assert_eq!(targets, ["/public", "/public", "/victim"], "{path:?}");
        for s in &seen[..2] {
            assert_eq!(s.body, body.as_bytes(), "{path:?}: body byte for byte");
            assert_eq!(s.header("content-length"), Some(body.len().to_string().as_str()));
        }
        assert!(seen[2].body.is_empty());
        assert!(text.contains("seen /victim"), "the victim gets its own answer: {text}");
        assert!(!text.contains("seen /admin"));

        // Connection naming the forwarding headers and Host: they stay, set
        // by the router.
        let raw = format!(
            "GET /named HTTP/1.1\r\nHost: {h}\r\nX-Forwarded-For: 10.9.9.9\r\nX-Real-Ip: 10.9.9.9\r\nForwarded: for=10.9.9.9\r\nConnection: Host, X-Forwarded-For, X-Real-Ip, Forwarded, X-Forwarded-Host, close\r\n\r\n"
        );
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![200], "{path:?}: {text}");
        let seen = path.seen(st.backend.take());
        assert_eq!(seen.len(), 1);
        let s = &seen[0];
        assert_eq!(s.header("host"), Some(h));
        assert_eq!(s.header("x-forwarded-for"), Some("10.9.9.9, 127.0.0.1"), "{s:?}");
        assert_eq!(s.header("x-real-ip"), Some("127.0.0.1"));
        assert_eq!(s.header("x-forwarded-host"), Some(h));
        assert!(s.header("forwarded").is_some_and(|f| f.starts_with("for=10.9.9.9, for=127.0.0.1")), "{s:?}");

        // A chunked request naming Transfer-Encoding in Connection: read as
        // chunked by the router, forwarded with its body as a body.
        let inner = format!("GET /admin HTTP/1.1\r\nHost: {h}\r\nX-Real-Ip: 10.1.2.3\r\n\r\n");
        let raw = format!(
            "POST /chunked HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n\
             {:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        );
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![200], "{path:?}: {text}");
        let seen = path.seen(st.backend.take());
        assert_routed(&seen, "chunked + Connection: Transfer-Encoding");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(String::from_utf8_lossy(&seen[0].body).starts_with("GET /admin"), "{seen:?}");
        assert_eq!(seen[0].body, inner.as_bytes());
    }
}

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let st = setup(&[]).await;
    let cases: &[(&str, &str)] = &[
        // CL.TE and TE.CL
        (
            "CL.TE",
            "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n",
        ),
        (
            "TE.CL",
            "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2d\r\nGET /smuggled HTTP/1.1\r\nHost: {H}\r\nX: 12345\r\n\r\n\r\n0\r\n\r\n",
        ),
        // TE.TE: a coding one parser reads as chunked and another not
        (
            "TE.TE xchunked",
            "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE.TE chunked, identity",
            "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE.TE two lines",
            "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE.TE chunked twice",
            "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        ("TE.TE quoted", "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"),
        (
            "TE.TE space before colon",
            "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE.TE obs-fold",
            "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        ("TE.TE vertical tab", "POST / HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n"),
        ("TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        // lengths
        ("two equal lengths", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        ("two lengths", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"),
        ("length list", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3, 3\r\n\r\nabc"),
        ("signed length", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: +3\r\n\r\nabc"),
        ("spaced length", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 1 2\r\n\r\nabc"),
        ("hex length", "POST / HTTP/1.1\r\nHost: {H}\r\nContent-Length: 0x3\r\n\r\nabc"),
        // line ends and bytes
        ("bare LF", "POST / HTTP/1.1\r\nHost: {H}\nContent-Length: 3\r\n\r\nabc"),
        ("bare CR", "POST / HTTP/1.1\r\nHost: {H}\rContent-Length: 3\r\n\r\nabc"),
        ("NUL in a value", "GET / HTTP/1.1\r\nHost: {H}\r\nX: a\0b\r\n\r\n"),
        ("control byte in a value", "GET / HTTP/1.1\r\nHost: {H}\r\nX: a\x01b\r\n\r\n"),
        ("DEL in a value", "GET / HTTP/1.1\r\nHost: {H}\r\nX: a\x7fb\r\n\r\n"),
        ("control byte in the target", "GET /a\x01b HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("NUL in a name", "GET / HTTP/1.1\r\nHost: {H}\r\nX\0Y: 1\r\n\r\n"),
        // Host and targets (RFC 9112 3.2, 3.2.3)
        ("two Hosts", "GET / HTTP/1.1\r\nHost: {H}\r\nHost: other.test\r\n\r\n"),
        ("two equal Hosts", "GET / HTTP/1.1\r\nHost: {H}\r\nHost: {H}\r\n\r\n"),
        ("Host with a bad port", "GET / HTTP/1.1\r\nHost: {H}:80x\r\n\r\n"),
        ("Host with a port too large", "GET / HTTP/1.1\r\nHost: {H}:65536\r\n\r\n"),
        ("Host with a path", "GET / HTTP/1.1\r\nHost: {H}/admin\r\n\r\n"),
        ("absolute URI naming another host", "GET http://other.test/ HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("absolute URI with userinfo", "GET http://u@{H}/ HTTP/1.1\r\nHost: {H}\r\n\r\n"),
        ("authority-form", "CONNECT {H}:80 HTTP/1.1\r\nHost: {H}:80\r\n\r\n"),
        ("other scheme", "GET ftp://{H}/ HTTP/1.1\r\nHost: {H}\r\n\r\n"),
    ];
    // Every case is tried; the failures are listed together.
    let mut failed = Vec::new();
    for path in [Path::Fast, Path::Hyper] {
        for (case, raw) in cases {
            if let Err(e) = refused(&st, path, case, raw, 400).await {
                failed.push(e);
            }
        }
    }
    assert!(failed.is_empty(), "{} of {} cases not refused:\n{}", failed.len(), cases.len() * 2, failed.join("\n"));
}

#[tokio::test]
async fn sound_unusual_requests_are_forwarded_as_one_request() {
    let st = setup(&[]).await;
    for path in [Path::Fast, Path::Hyper] {
        let h = path.host();
        // Absolute-form that agrees with Host: forwarded in origin form.
        let raw = format!("GET http://{h}/abs?q=1 HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![200], "{path:?}: {text}");
        let seen = path.seen(st.backend.take());
        assert_routed(&seen, "absolute-form");
        assert_eq!(seen.iter().map(Seen::target).collect::<Vec<_>>(), ["/abs?q=1"]);
        // A final chunked coding after another: one request, its body decoded.
        let raw = format!(
            "POST /gz HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![200], "{path:?}: {text}");
        let seen = path.seen(st.backend.take());
        assert_routed(&seen, "gzip, chunked");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, b"abc");
        // A malformed chunked body: 400, not 502, and the connection closed.
        let raw = format!(
            "POST /bad-chunks HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        );
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![400], "{path:?}: {text}");
        let seen = path.seen(st.backend.take());
        assert_routed(&seen, "malformed chunked body");
        assert!(seen.iter().all(|s| !s.body.starts_with(b"zz")), "{seen:?}");
    }
}

#[tokio::test]
async fn heads_are_bounded() {
    let st = setup(&["--max-header-bytes", "16384", "--max-headers", "40", "--header-timeout", "1s"]).await;
    let big = "a".repeat(20_000);
    let many: String = (0..41).map(|i| format!("X-H{i}: v\r\n")).collect();
    let within: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    for path in [Path::Fast, Path::Hyper] {
        assert_refused(&st, path, "huge head", &format!("GET / HTTP/1.1\r\nHost: {{H}}\r\nX: {big}\r\n\r\n"), 431)
            .await;
        assert_refused(&st, path, "too many headers", &format!("GET / HTTP/1.1\r\nHost: {{H}}\r\n{many}\r\n"), 431)
            .await;
        // Within the limits: served.
        let h = path.host();
        let raw = format!("GET /within HTTP/1.1\r\nHost: {h}\r\n{within}Connection: close\r\n\r\n");
        let text = send(&st.router, &path.wrap(raw.as_bytes())).await;
        assert_eq!(path.answers(&text), vec![200], "{path:?}: {text}");
        assert_routed(&path.seen(st.backend.take()), "within limits");

        // Slowloris: a head sent a byte at a time is cut off at the header
        // timeout, and nothing reaches the backend.
        let mut s = TcpStream::connect(st.router.proxy).await.expect("connect");
        if path == Path::Hyper {
            s.write_all(PRIME).await.expect("prime");
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.expect("primed");
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        let started = std::time::Instant::now();
        let slow = format!("GET /slow HTTP/1.1\r\nHost: {h}\r\nX: {}\r\n\r\n", "s".repeat(40));
        let mut closed = false;
        for b in slow.bytes() {
            if s.write_all(&[b]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0u8; 1024];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
                closed = true;
                break;
            }
        }
        assert!(closed, "{path:?}: slow head not cut off");
        assert!(started.elapsed() < Duration::from_secs(4), "{path:?}: cut off after {:?}", started.elapsed());
        let seen = path.seen(st.backend.take());
        assert!(seen.is_empty(), "{path:?}: {seen:?}");
    }
}

#[tokio::test]
async fn pipelines_mixing_both_paths() {
    let st = setup(&[]).await;
    // Fast, hyper, fast with a body, hyper with a chunked body, HTTP/1.0:
    // answered in order, each parsed once by the backend.
    let raw = "GET /p1 HTTP/1.1\r\nHost: fast.test\r\n\r\n\
               GET /p2 HTTP/1.1\r\nHost: hyper.test\r\n\r\n\
               POST /p3 HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 5\r\n\r\nhello\
               POST /p4 HTTP/1.1\r\nHost: hyper.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n\
               GET /p5 HTTP/1.1\r\nHost: fast.test\r\nConnection: close\r\n\r\n";
    let text = send(&st.router, raw.as_bytes()).await;
    assert_eq!(statuses(&text), vec![200; 5], "{text}");
    for p in ["/p1", "/p2", "/p3", "/p4", "/p5"] {
        assert!(text.contains(&format!("seen {p}")), "{p}: {text}");
    }
    let seen = st.backend.take();
    assert_routed(&seen, "pipeline");
    assert_eq!(seen.iter().map(Seen::target).collect::<Vec<_>>(), ["/p1", "/p2", "/p3", "/p4", "/p5"]);
    assert_eq!(seen[2].body, b"hello");
    assert_eq!(seen[3].body, b"world");

    // An upgrade the backend declines leaves hyper holding the connection:
    // it ends after the answer, so hyper's parser never reads what follows.
    let raw = "GET /ws HTTP/1.1\r\nHost: fast.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
               POST /x HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
               GET /smuggled HTTP/1.1\r\nHost: fast.test\r\n\r\n";
    let text = send(&st.router, raw.as_bytes()).await;
    assert_eq!(statuses(&text), vec![200], "{text}");
    let seen = st.backend.take();
    assert_routed(&seen, "declined upgrade");
    assert_eq!(seen.iter().map(Seen::target).collect::<Vec<_>>(), ["/ws"]);

    // A hostile head in the middle of a pipeline, on each path: the ones
    // before it are answered, it is refused, the connection closes, and
    // nothing behind it is parsed.
    for first in ["fast.test", "hyper.test"] {
        let raw = format!(
            "GET /before HTTP/1.1\r\nHost: {first}\r\n\r\n\
             POST /x HTTP/1.1\r\nHost: {first}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: fast.test\r\n\r\n"
        );
        let text = send(&st.router, raw.as_bytes()).await;
        assert_eq!(statuses(&text), vec![200, 400], "{first}: {text}");
        let seen = st.backend.take();
        assert_routed(&seen, "pipeline with a hostile head");
        assert_eq!(seen.iter().map(Seen::target).collect::<Vec<_>>(), ["/before"], "{first}");
    }
}

#[tokio::test]
async fn ambiguous_responses_are_not_passed_on_and_their_connection_is_dropped() {
    let st = setup(&[]).await;
    for host in ["fast.test", "hyper.test"] {
        // A sound response without a length first, twice on one client connection.
        for _ in 0..2 {
            let r = st.router.get(host, "/resp/until-close").await.expect("answer");
            assert_eq!(r.status().as_u16(), 200);
            let body = tokio::time::timeout(Duration::from_secs(3), r.text()).await;
            assert_eq!(body.ok().and_then(Result::ok).as_deref(), Some("until close"), "{host}");
        }
        st.backend.take();
        for kind in ["two-lengths", "length-and-chunked", "split"] {
            // Twice: the second request must not meet what the first
            // response left on the upstream connection.
            for _ in 0..2 {
                let r = st.router.get(host, &format!("/resp/{kind}")).await.expect("answer");
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                assert!(!body.contains("hijack"), "{host} {kind}: {body}");
                if host == "fast.test" || kind != "split" {
                    assert_eq!(status, 502, "{host} {kind}: {body}");
                    assert!(
                        !body.contains("127.0.0.1") && !body.contains("localhost"),
                        "502 names the upstream: {body}"
                    );
                }
            }
            let (s, v) = st.router.fetch(host, "/after").await;
            assert_eq!(s, 200, "{host} after {kind}: {v}");
            let seen = st.backend.take();
            // Each bad response arrived on a connection nothing else used.
            let bad: Vec<usize> = seen.iter().filter(|s| s.target().starts_with("/resp/")).map(|s| s.conn).collect();
            let after = seen.iter().find(|s| s.target() == "/after").map(|s| s.conn);
            assert!(after.is_some_and(|c| !bad.contains(&c)), "{host} {kind}: {seen:?}");
            assert_eq!(bad.len(), 2, "{host} {kind}: {seen:?}");
            assert_ne!(bad[0], bad[1], "{host} {kind}: a connection reused after a bad response");
        }
    }
}
