//! gRPC through the real router (`proto=grpc`, h2c prior knowledge to the
//! instance), with routes from real Consul tags. The peers are HTTP/2 (hyper)
//! speaking gRPC's wire format: length-prefixed messages, `te: trailers`,
//! `grpc-status` trailers. All four call kinds (the bidirectional one only
//! works if nothing is buffered), a status in the trailers, the router's own
//! answers in gRPC form (no route 12, every instance failed 14, deadline 4),
//! recovery, 100 concurrent calls on one connection, and a stream that goes
//! on after its instance left Consul. And `proto=h2c` to a plain (non-gRPC)
//! HTTP/2 cleartext upstream: nginx with an HTTP/2-only port.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::router::{Router, register};
use integration_tests::{ConsulAgent, Daemon, free_port, wait_until};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const T: Duration = Duration::from_secs(15);

type Body = BoxBody<Bytes, Infallible>;

/// One gRPC message on the wire: uncompressed flag, length, payload.
fn msg(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

fn trailers(status: u8, message: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", status.to_string().parse().expect("value"));
    if let Some(m) = message {
        h.insert("grpc-message", m.parse().expect("value"));
    }
    h
}

/// A gRPC test server on 127.0.0.1 (a fixed port when given, to restart a
/// killed one in place).
struct GrpcServer {
    port: u16,
    tasks: JoinSet<()>,
}

impl GrpcServer {
    async fn start(name: &'static str, port: u16) -> GrpcServer {
        GrpcServer::listen(name, port, None).await
    }

    /// Serves HTTP/2 on `port`, behind TLS when `tls` is given (ALPN h2 required).
    async fn listen(name: &'static str, port: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> GrpcServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(name, req));
                    let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    let Some(acceptor) = tls else {
                        let _ = h2.serve_connection(TokioIo::new(s), svc).await;
                        return;
                    };
                    let Ok(tls) = acceptor.accept(s).await else { return };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let _ = h2.serve_connection(TokioIo::new(tls), svc).await;
                    }
                });
            }
        });
        GrpcServer { port, tasks }
    }

    /// The same service behind TLS, offering only ALPN h2 (a self-signed
    /// certificate made with openssl in `dir`).
    async fn start_tls(name: &'static str, dir: &std::path::Path) -> GrpcServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "certificate: {}", String::from_utf8_lossy(&out.stderr));
        let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).expect("cert");
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        GrpcServer::listen(name, 0, Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))).await
    }

    async fn kill(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Streams frames from a channel as a response body.
fn channel_body() -> (futures::channel::mpsc::UnboundedSender<Frame<Bytes>>, Body) {
    let (tx, rx) = futures::channel::mpsc::unbounded::<Frame<Bytes>>();
    (tx, BodyExt::boxed(StreamBody::new(rx.map(Ok::<_, Infallible>))))
}

async fn handle(name: &'static str, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let te_ok = req.headers().get("te").is_some_and(|v| v == "trailers");
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let (tx, out) = channel_body();
    let mut resp = Response::new(out);
    resp.headers_mut().insert("content-type", "application/grpc".parse().expect("value"));
    resp.headers_mut().insert("x-server", name.parse().expect("value"));
    if !te_ok {
        let _ = tx.unbounded_send(Frame::trailers(trailers(13, Some("te trailers missing"))));
        return Ok(resp);
    }
    match path.as_str() {
        // Echo the one request message.
        "/t.T/Unary" => {
            let all = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let _ = tx.unbounded_send(Frame::data(all));
            let _ = tx.unbounded_send(Frame::trailers(trailers(0, None)));
        }
        // Five messages, 150 ms apart.
        "/t.T/Server" => {
            tokio::spawn(async move {
                for i in 0..5u8 {
                    let _ = tx.unbounded_send(Frame::data(msg(&[b'0' + i])));
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                let _ = tx.unbounded_send(Frame::trailers(trailers(0, None)));
            });
        }
        // Counts the request bytes, answers once at the end.
        "/t.T/Client" => {
            let all = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let _ = tx.unbounded_send(Frame::data(msg(all.len().to_string().as_bytes())));
            let _ = tx.unbounded_send(Frame::trailers(trailers(0, None)));
        }
        // Each data frame back as it comes.
        "/t.T/Bidi" => {
            tokio::spawn(async move {
                while let Some(Ok(f)) = body.frame().await {
                    if let Ok(d) = f.into_data() {
                        let _ = tx.unbounded_send(Frame::data(d));
                    }
                }
                let _ = tx.unbounded_send(Frame::trailers(trailers(0, None)));
            });
        }
        "/t.T/Fail" => {
            let _ = tx.unbounded_send(Frame::trailers(trailers(5, Some("no such thing"))));
        }
        "/t.T/Slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = tx.unbounded_send(Frame::trailers(trailers(0, None)));
        }
        _ => {
            let _ = tx.unbounded_send(Frame::trailers(trailers(12, None)));
        }
    }
    Ok(resp)
}

/// An h2c (prior knowledge) client connection to the router.
async fn connect(router: &Router) -> hyper::client::conn::http2::SendRequest<Body> {
    let s = TcpStream::connect(router.proxy).await.expect("connects");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.expect("h2 handshake");
    tokio::spawn(conn);
    send
}

fn call(host: &str, method: &str, body: Body, timeout: Option<&str>) -> Request<Body> {
    let mut b = Request::post(format!("http://{host}/t.T/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        b = b.header("grpc-timeout", t);
    }
    b.body(body).expect("request")
}

fn full(b: Bytes) -> Body {
    Full::new(b).boxed()
}

/// Data frames and the gRPC status (from the trailers, or from the headers
/// of a trailers-only answer).
async fn finish(resp: Response<Incoming>) -> (Vec<Bytes>, String, HeaderMap) {
    let (parts, mut body) = resp.into_parts();
    assert_eq!(parts.status, 200, "gRPC answers are HTTP 200");
    let mut data = Vec::new();
    let mut status = parts.headers.get("grpc-status").map(|v| v.to_str().unwrap_or("").to_string());
    while let Some(f) = body.frame().await {
        let f = f.expect("frame");
        if let Some(t) = f.trailers_ref() {
            status = t.get("grpc-status").map(|v| v.to_str().unwrap_or("").to_string());
        }
        if let Ok(d) = f.into_data() {
            data.push(d);
        }
    }
    (data, status.unwrap_or_default(), parts.headers)
}

/// Waits until a unary call to `host` ends with `status`.
async fn wait_for_status(h2: &hyper::client::conn::http2::SendRequest<Body>, host: &str, status: &str) -> Option<()> {
    wait_until(T, || {
        let mut h2 = h2.clone();
        async move {
            let r = h2.send_request(call(host, "Unary", full(msg(b"hi")), None)).await.ok()?;
            (finish(r).await.1 == status).then_some(())
        }
    })
    .await
}

#[tokio::test]
async fn grpc_calls_pass_through_the_router() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let a = GrpcServer::start("a", 0).await;
    let b = GrpcServer::start("b", 0).await;
    let mut dead = GrpcServer::start("dead", 0).await;
    register(&c, "g-a", "greeter", a.port, &["urlprefix-grpc.example.com/ proto=grpc"]).await;
    register(&c, "g-b", "greeter", b.port, &["urlprefix-grpc.example.com/ proto=grpc"]).await;
    register(&c, "g-dead", "dead", dead.port, &["urlprefix-dead.example.com/ proto=grpc"]).await;
    let router = Router::start(&consul, &[]).await;
    let mut h2 = connect(&router).await;
    let ready = wait_for_status(&h2, "grpc.example.com", "0").await;
    assert!(ready.is_some(), "gRPC route serves: {}", router.admin_json("/api/routes").await);

    // Unary, spread over both instances.
    let mut servers = std::collections::BTreeSet::new();
    for i in 0..4u8 {
        let r = h2.send_request(call("grpc.example.com", "Unary", full(msg(&[i; 3])), None)).await.expect("answer");
        let (data, status, headers) = finish(r).await;
        assert_eq!((data.concat(), status.as_str()), (msg(&[i; 3]).to_vec(), "0"));
        servers.insert(headers["x-server"].to_str().unwrap_or("").to_string());
    }
    assert_eq!(servers.len(), 2, "both instances served: {servers:?}");

    // Server streaming: each message as it is sent, then the status.
    let r = h2.send_request(call("grpc.example.com", "Server", full(msg(b"")), None)).await.expect("answer");
    let (data, status, _) = finish(r).await;
    assert_eq!(data.concat(), [msg(b"0"), msg(b"1"), msg(b"2"), msg(b"3"), msg(b"4")].concat());
    assert_eq!(status, "0");

    // Client streaming: three messages, one answer.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Frame<Bytes>>();
    let body = BodyExt::boxed(StreamBody::new(rx.map(Ok::<_, Infallible>)));
    let pending = h2.send_request(call("grpc.example.com", "Client", body, None));
    for p in [b"ab".as_slice(), b"cd", b"ef"] {
        tx.unbounded_send(Frame::data(msg(p))).expect("send");
    }
    drop(tx);
    let (data, status, _) = finish(pending.await.expect("answer")).await;
    assert_eq!((data.concat(), status.as_str()), (msg(b"21").to_vec(), "0"));

    // Bidirectional: each answer arrives before the next message is sent,
    // which only works if nothing on the way buffers.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Frame<Bytes>>();
    let body = BodyExt::boxed(StreamBody::new(rx.map(Ok::<_, Infallible>)));
    tx.unbounded_send(Frame::data(msg(b"ping0"))).expect("send");
    let resp = h2.send_request(call("grpc.example.com", "Bidi", body, None)).await.expect("answer");
    let mut body = resp.into_body();
    for i in 0..3 {
        let f = tokio::time::timeout(T, body.frame()).await.expect("echo in time").expect("frame").expect("ok");
        assert_eq!(f.into_data().ok(), Some(msg(format!("ping{i}").as_bytes())));
        tx.unbounded_send(Frame::data(msg(format!("ping{}", i + 1).as_bytes()))).expect("send");
    }
    drop(tx);
    let mut status = None;
    while let Some(Ok(f)) = body.frame().await {
        if let Some(t) = f.trailers_ref() {
            status = t.get("grpc-status").cloned();
        }
    }
    assert_eq!(status.as_ref().map(|v| v.as_bytes()), Some(b"0".as_slice()), "bidi status in the trailers");

    // An upstream's status and message pass in the trailers.
    let r = h2.send_request(call("grpc.example.com", "Fail", full(msg(b"")), None)).await.expect("answer");
    assert_eq!(finish(r).await.1, "5");

    // The router's own answers, in gRPC form.
    let r = h2.send_request(call("nothing.example.com", "Unary", full(msg(b"")), None)).await.expect("answer");
    assert_eq!(finish(r).await.1, "12", "no route: UNIMPLEMENTED");
    let started = std::time::Instant::now();
    let r = h2.send_request(call("grpc.example.com", "Slow", full(msg(b"")), Some("300m"))).await.expect("answer");
    assert_eq!(finish(r).await.1, "4", "grpc-timeout passed: DEADLINE_EXCEEDED");
    assert!(started.elapsed() < Duration::from_secs(2), "the deadline was honoured: {:?}", started.elapsed());
    let dead_port = dead.port;
    dead.kill().await;
    let r = h2.send_request(call("dead.example.com", "Unary", full(msg(b"x")), None)).await.expect("answer");
    assert_eq!(finish(r).await.1, "14", "every instance failed: UNAVAILABLE");
    let _revived = GrpcServer::start("dead", dead_port).await;
    let r = h2.send_request(call("dead.example.com", "Unary", full(msg(b"x")), None)).await.expect("answer");
    assert_eq!(finish(r).await.1, "0", "recovered once the instance is back");

    // 100 concurrent calls on one client connection.
    let mut calls = JoinSet::new();
    for i in 0..100u32 {
        let mut h2 = h2.clone();
        calls.spawn(async move {
            let payload = i.to_be_bytes();
            let r = h2.send_request(call("grpc.example.com", "Unary", full(msg(&payload)), None)).await.ok()?;
            let (data, status, _) = finish(r).await;
            (status == "0" && data.concat() == msg(&payload).to_vec()).then_some(())
        });
    }
    let ok = calls.join_all().await.into_iter().filter(Option::is_some).count();
    assert_eq!(ok, 100, "every concurrent call answered");

    // A stream whose instances leave Consul goes on to its end.
    let r = h2.send_request(call("grpc.example.com", "Server", full(msg(b"")), None)).await.expect("answer");
    c.deregister_service("g-a").await.expect("deregister");
    c.deregister_service("g-b").await.expect("deregister");
    let gone = wait_for_status(&h2, "grpc.example.com", "12").await;
    assert!(gone.is_some(), "the route left with its instances");
    let (data, status, _) = finish(r).await;
    assert_eq!((data.len(), status.as_str()), (5, "0"), "the open stream finished");
}

#[tokio::test]
async fn grpcs_reaches_a_tls_instance_with_alpn_h2() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let dir = tempfile::Builder::new().prefix("edge-grpcs-").tempdir().expect("tempdir");
    let s = GrpcServer::start_tls("tls", dir.path()).await;
    register(&c, "s-1", "secure", s.port, &["urlprefix-grpcs.example.com/ proto=grpcs tlsskipverify=true"]).await;
    register(&c, "v-1", "verified", s.port, &["urlprefix-verified.example.com/ proto=grpcs"]).await;
    let router = Router::start(&consul, &[]).await;
    let h2 = connect(&router).await;
    let ready = wait_until(T, || {
        let mut h2 = h2.clone();
        async move {
            let r = h2.send_request(call("grpcs.example.com", "Unary", full(msg(b"tls")), None)).await.ok()?;
            let (data, status, _) = finish(r).await;
            (status == "0" && data.concat() == msg(b"tls").to_vec()).then_some(())
        }
    })
    .await;
    assert!(ready.is_some(), "grpcs route serves: {}", router.admin_json("/api/routes").await);
    let mut h2 = h2;
    let r = h2.send_request(call("grpcs.example.com", "Server", full(msg(b"")), None)).await.expect("answer");
    let (data, status, _) = finish(r).await;
    assert_eq!((data.len(), status.as_str()), (5, "0"), "a stream over TLS");
    // Without tlsskipverify the self-signed certificate is refused.
    let r = h2.send_request(call("verified.example.com", "Unary", full(msg(b"x")), None)).await.expect("answer");
    assert_eq!(finish(r).await.1, "14", "untrusted certificate: UNAVAILABLE");
}

/// nginx with an HTTP/2-only cleartext port (`listen ... http2`: prior
/// knowledge, no HTTP/1.1 there), answering with the protocol, method, URI,
/// X-Forwarded-Host and `:authority` it received (nginx refuses a request
/// whose Host differs from its `:authority`).
struct H2cNginx {
    port: u16,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl H2cNginx {
    async fn start() -> H2cNginx {
        let dir = tempfile::Builder::new().prefix("edge-h2c-nginx-").tempdir().expect("tempdir");
        let d = dir.path().display();
        let port = free_port();
        let conf = format!(
            "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log stderr info;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port} http2;
    location / {{ return 200 \"$server_protocol $request_method $request_uri host=$http_x_forwarded_host authority=$host\\n\"; }} }} }}
"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let mut cmd = std::process::Command::new("nginx");
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"));
        let daemon = Daemon::spawn_command("nginx-h2c", cmd).expect("nginx starts (scripts/install.sh)");
        let up = wait_until(T, || async { TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop) }).await;
        assert!(up.is_some(), "nginx listens: {}", daemon.logs());
        H2cNginx { port, _daemon: daemon, _dir: dir }
    }
}

#[tokio::test]
async fn h2c_reaches_a_plain_http2_upstream() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let nginx = H2cNginx::start().await;
    register(&c, "h2c-1", "h2c", nginx.port, &["urlprefix-h2c.test/ proto=h2c"]).await;
    register(&c, "plain-1", "plain", nginx.port, &["urlprefix-plain.test/"]).await;
    let router = Router::start(&consul, &[]).await;
    let text = |host: &'static str, path: &'static str| {
        let router = &router;
        async move {
            let r = router.get(host, path).await.map_err(|e| eprintln!("GET {host}{path}: {e:?}")).ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        }
    };
    let ready = wait_until(T, || async { text("h2c.test", "/x?y=1").await.filter(|(s, _)| *s == 200) }).await;
    assert!(ready.is_some(), "h2c route serves: {:?}", text("h2c.test", "/x?y=1").await);

    // HTTP/1.1 in, HTTP/2 to the upstream, the request as sent; the client
    // connection is kept for the next request (reqwest reuses it).
    let (_, body) = text("h2c.test", "/x?y=1").await.expect("answer");
    assert_eq!(body, "HTTP/2.0 GET /x?y=1 host=h2c.test authority=127.0.0.1\n");
    let r =
        router.http.post(format!("http://{}/form", router.proxy)).header("host", "h2c.test").body("a=1").send().await;
    let body = r.expect("answer").text().await.expect("body");
    assert_eq!(body, "HTTP/2.0 POST /form host=h2c.test authority=127.0.0.1\n");
    // HTTP/2 in (h2c prior knowledge), HTTP/2 out.
    let mut h2 = connect(&router).await;
    let req = Request::get("http://h2c.test/h2/in").body(full(Bytes::new())).expect("request");
    let resp = h2.send_request(req).await.expect("answer");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "HTTP/2.0 GET /h2/in host=h2c.test authority=127.0.0.1\n");
    // Without proto=h2c the router speaks HTTP/1.1, which that port refuses.
    let (status, _) = text("plain.test", "/").await.expect("answer");
    assert_eq!(status, 502, "an HTTP/2-only upstream needs proto=h2c");
}
