//! The proxy's fast path (plain HTTP/1.1 handled in the connection's own
//! task, upstream connections pooled by the router) against a raw backend
//! that writes its responses byte by byte: every body framing passes through
//! intact, upstream connections are reused, a pooled connection the backend
//! closed is replaced without the client noticing, pipelined requests are
//! answered in order, `Connection: close` is honoured, 1xx responses are
//! forwarded, and a connection that turns to an upgrade midway is handed to
//! hyper with nothing lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::ConsulAgent;
use integration_tests::router::{Router, register};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const T: Duration = Duration::from_secs(10);
const HOST: &str = "raw.example.com";

/// Body byte `i` of every generated body: a pattern that shows a lost,
/// repeated or shifted byte.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] ^ ((i / 36 % 2) as u8 * 0x20)).collect()
}

/// A backend that writes HTTP/1.1 by hand. Paths: `/len?n=N` (Content-Length),
/// `/chunked?n=N` (N bytes in uneven chunks plus a trailer), `/close?n=N` (no
/// length: the body ends when the connection closes), `/echo` (the request
/// body back), `/hints` (a 103 before the 200), `/short-lived` (answers, then
/// closes the connection 50 ms later, like a keep-alive timeout),
/// `/drop-second` (answered on a new connection; on a reused one the backend
/// reads the request and closes without a word, as when its keep-alive
/// timeout strikes just as the request arrives).
struct RawBackend {
    port: u16,
    connections: Arc<AtomicUsize>,
    _tasks: JoinSet<()>,
}

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve_raw(s));
            }
        });
        RawBackend { port, connections, _tasks: tasks }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request head; None at EOF.
async fn read_head<R: AsyncRead + Unpin>(s: &mut R) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

async fn serve_raw(mut s: TcpStream) {
    let mut served = 0;
    while let Some(head) = read_head(&mut s).await {
        let target = head.split(' ').nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let n: usize = query.strip_prefix("n=").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let head_request = head.starts_with("HEAD ");
        let ok = match path {
            "/len" => {
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nX-Framing: length\r\n\r\n").into_bytes();
                if !head_request {
                    out.extend(pattern(n));
                }
                s.write_all(&out).await
            }
            "/chunked" => {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n".to_vec();
                let data = pattern(n);
                let mut at = 0;
                let mut size = 1;
                while at < n {
                    let take = size.min(n - at);
                    out.extend(format!("{take:x};ext=1\r\n").into_bytes());
                    out.extend(&data[at..at + take]);
                    out.extend(b"\r\n");
                    at += take;
                    size = size * 3 + 7;
                }
                out.extend(b"0\r\nX-Sum: 42\r\n\r\n");
                // In two writes, split inside a chunk-size line.
                let cut = out.len() / 2;
                match s.write_all(&out[..cut]).await {
                    Ok(()) => s.write_all(&out[cut..]).await,
                    e => e,
                }
            }
            "/close" => {
                let mut out = b"HTTP/1.1 200 OK\r\nX-Framing: close\r\n\r\n".to_vec();
                out.extend(pattern(n));
                let _ = s.write_all(&out).await;
                return;
            }
            "/echo" => {
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                out.extend(&body);
                s.write_all(&out).await
            }
            "/hints" => {
                s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
            }
            "/drop-second" if served > 0 => return,
            "/short-lived" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            "/drop-second" => s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await,
            _ => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await,
        };
        served += 1;
        if ok.is_err() {
            return;
        }
    }
}

/// POST through the proxy to the raw backend.
async fn post(router: &Router, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let url = format!("http://{}{path}", router.proxy);
    router.http.post(url).header("host", HOST).body(body).send().await.expect("answer")
}

async fn setup() -> (ConsulAgent, RawBackend, Router) {
    setup_with(&[]).await
}

async fn setup_with(router_args: &[&str]) -> (ConsulAgent, RawBackend, Router) {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let backend = RawBackend::start().await;
    register(&consul.client(), "raw1", "raw", backend.port, &[&format!("urlprefix-{HOST}/")]).await;
    let router = Router::start(&consul, router_args).await;
    router.wait_status(HOST, "/len?n=1", 200, T).await;
    (consul, backend, router)
}

#[tokio::test]
async fn bodies_pass_through_in_every_framing() {
    let (_consul, backend, router) = setup().await;
    for n in [0, 1, 100, 5_000, 70_000, 1_000_000] {
        for path in ["/len", "/chunked", "/close"] {
            let r = router.get(HOST, &format!("{path}?n={n}")).await.expect("answer");
            assert_eq!(r.status().as_u16(), 200, "{path} {n}");
            let body = r.bytes().await.unwrap_or_else(|e| panic!("{path}?n={n}: body: {e}"));
            assert!(body[..] == pattern(n)[..], "{path}?n={n}: {} bytes back, differing", body.len());
        }
    }
    // HEAD: the length of the GET, no body.
    let r =
        router.http.head(format!("http://{}/len?n=77", router.proxy)).header("host", HOST).send().await.expect("HEAD");
    assert_eq!(r.headers()["content-length"], "77");
    assert!(r.bytes().await.expect("no body").is_empty());
    // Request bodies of every size come back whole.
    for n in [1, 16_000, 2_000_000] {
        let r = post(&router, "/echo", pattern(n)).await;
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.bytes().await.expect("body")[..] == pattern(n)[..], "echo of {n} bytes");
    }
    // Keep-alive to the backend: sequential requests share a connection.
    let before = backend.connections();
    for _ in 0..20 {
        assert_eq!(router.fetch(HOST, "/len?n=10").await.0, 200);
    }
    let used = backend.connections() - before;
    assert!(used <= 1, "20 sequential requests opened {used} upstream connections");
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    let (_consul, _backend, router) = setup().await;
    for i in 0..5 {
        let r = router.get(HOST, "/short-lived").await.expect("answer");
        assert_eq!(r.status().as_u16(), 200, "GET {i}");
        // The backend has closed the pooled connection by the next request.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // Not only retryable requests: a POST finds the closed connection too.
    let r = post(&router, "/short-lived", "x").await;
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_request_on_a_connection_closed_under_it_is_resent_if_idempotent() {
    let (_consul, backend, router) = setup().await;
    let before = backend.connections();
    for i in 0..4 {
        let r = router.get(HOST, "/drop-second").await.expect("answer");
        assert_eq!(r.status().as_u16(), 200, "GET {i}");
    }
    assert!(backend.connections() - before >= 4, "each GET after the first needed a new connection");
    // A POST may have been acted on before the close: not sent twice.
    assert_eq!(router.fetch(HOST, "/drop-second").await.0, 200, "pools a connection");
    let r = post(&router, "/drop-second", "x").await;
    assert_eq!(r.status().as_u16(), 502);
}

/// Reads one response (Content-Length framed) from a raw client connection.
async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let head = tokio::time::timeout(T, read_head(s)).await.expect("in time").expect("a response head");
    let len: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    tokio::time::timeout(T, s.read_exact(&mut body)).await.expect("in time").expect("the body");
    (head, body)
}

#[tokio::test]
async fn pipelined_requests_and_connection_close() {
    let (_consul, _backend, router) = setup().await;
    let mut s = TcpStream::connect(router.proxy).await.expect("connect");
    let req = |n: usize| format!("GET /len?n={n} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let post = format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello");
    s.write_all(format!("{}{}{}", req(3), post, req(7)).as_bytes()).await.expect("write");
    let (h1, b1) = read_response(&mut s).await;
    let (_, b2) = read_response(&mut s).await;
    let (_, b3) = read_response(&mut s).await;
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert_eq!((b1, b2, b3), (pattern(3), b"hello".to_vec(), pattern(7)));

    s.write_all(format!("GET /len?n=4 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (head, body) = read_response(&mut s).await;
    assert!(head.to_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, pattern(4));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(T, s.read_to_end(&mut rest)).await.expect("closed in time").expect("read");
    assert_eq!(n, 0, "the router closed the connection");
}

#[tokio::test]
async fn informational_responses_are_forwarded() {
    let (_consul, _backend, router) = setup().await;
    let mut s = TcpStream::connect(router.proxy).await.expect("connect");
    s.write_all(format!("GET /hints HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.expect("write");
    let early = tokio::time::timeout(T, read_head(&mut s)).await.expect("in time").expect("103");
    assert!(early.starts_with("HTTP/1.1 103"), "{early}");
    assert!(early.contains("</style.css>"), "{early}");
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn a_connection_that_turns_to_another_protocol_is_handed_over_intact() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let ws = integration_tests::router::Backend::start("ws").await;
    register(&consul.client(), "ws1", "ws", ws.port(), &["urlprefix-ws.example.com/"]).await;
    let router = Router::start(&consul, &[]).await;
    router.wait_routed_to("ws.example.com", "/", "ws", T).await;

    let mut s = TcpStream::connect(router.proxy).await.expect("connect");
    // A fast-path request, then (pipelined in the same write) an HTTP/1.0
    // request that only hyper serves, then an upgrade.
    s.write_all(
        b"GET /first HTTP/1.1\r\nHost: ws.example.com\r\n\r\n\
          GET /second HTTP/1.0\r\nHost: ws.example.com\r\nConnection: keep-alive\r\n\r\n",
    )
    .await
    .expect("write");
    for path in ["/first", "/second"] {
        let (head, body) = read_response(&mut s).await;
        assert!(head.contains(" 200 "), "{path}: {head}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["path"], path);
    }
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .expect("write");
    let head = tokio::time::timeout(T, read_head(&mut s)).await.expect("in time").expect("101");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    tokio::time::timeout(T, s.read_exact(&mut back)).await.expect("echo in time").expect("echo");
    assert_eq!(&back, b"ping");
}

/// Whether the router closes `s` within `within` (read returns EOF).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(within, s.read_to_end(&mut rest)).await, Ok(Ok(_)))
}

#[tokio::test]
async fn clients_get_the_header_timeout_for_each_head_idle_time_included() {
    let (_consul, _backend, router) = setup_with(&["--header-timeout", "400ms"]).await;
    let within = Duration::from_secs(3);
    // Connected and silent.
    let mut silent = TcpStream::connect(router.proxy).await.expect("connect");
    assert!(closed_within(&mut silent, within).await, "a silent connection is closed");
    // A head that never ends (slowloris).
    let mut slow = TcpStream::connect(router.proxy).await.expect("connect");
    slow.write_all(b"GET /len?n=1 HTTP/1.1\r\nHost: ").await.expect("write");
    assert!(closed_within(&mut slow, within).await, "an unfinished head is cut off");
    // Idle after a request on a kept-alive connection.
    let mut idle = TcpStream::connect(router.proxy).await.expect("connect");
    idle.write_all(format!("GET /len?n=2 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.expect("write");
    let (_, body) = read_response(&mut idle).await;
    assert_eq!(body, pattern(2));
    assert!(closed_within(&mut idle, within).await, "an idle kept-alive connection is closed");
    // A head sent in pieces within the time is served.
    let mut pieces = TcpStream::connect(router.proxy).await.expect("connect");
    for part in ["GET /len?n=3 HTTP/1.1\r\n", &format!("Host: {HOST}\r\n"), "\r\n"] {
        pieces.write_all(part.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (head, body) = read_response(&mut pieces).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, pattern(3));
    // ... and the timer starts again for the next head: the connection
    // stays open well past 400 ms from its start while requests come.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pieces.write_all(format!("GET /len?n=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.expect("write");
        assert_eq!(read_response(&mut pieces).await.1, pattern(1));
    }
}
