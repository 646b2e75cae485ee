//! TLS passthrough by SNI through the real router and a real Consul: on one
//! `--tls-addr` listener, `openssl s_server` instances behind passthrough
//! hosts (exact and wildcard) show clients their own certificates, spread
//! round robin with a dead instance skipped, while other names, and hellos
//! without SNI, are terminated by the router with its certificate; raw TCP
//! backends check that the bytes arrive untouched (ClientHello included, cut
//! into records and segments), PROXY out (`pxyproto=v2`) and PROXY in
//! (`--proxy-protocol-from`) on the TLS listener, for passthrough and
//! terminated connections alike; hostile hellos (garbage,
//! truncated, oversized, stalled, a forged PROXY header) are closed while the
//! listener serves on; on SIGTERM an open passed-through connection finishes.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use integration_tests::certs::{SServer, self_signed, served};
use integration_tests::echo::Echo;
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(15);

/// A directory store holding one certificate for `sans`; its serial.
fn router_cert(dir: &std::path::Path, work: &std::path::Path, sans: &[&str]) -> String {
    let (mut chain, key, serial) = self_signed(work, sans[0], sans);
    chain.extend_from_slice(&key);
    std::fs::write(dir.join("router.pem"), chain).expect("write certificate");
    serial
}

/// A router with a TLS listener on a free port serving the `dir:` store
/// `certs`; the router and that port.
async fn start_router(consul: &ConsulAgent, certs: &std::path::Path, extra: &[&str]) -> (Router, u16) {
    let tls_port = free_port();
    let (addr, store) = (format!("127.0.0.1:{tls_port}"), format!("dir:{}", certs.display()));
    let mut args = vec!["--tls-addr", &addr, "--cert-source", &store];
    args.extend_from_slice(extra);
    (Router::start(consul, &args).await, tls_port)
}

/// A ClientHello built by hand (version, random, one suite, null
/// compression, SNI `name` when given), as handshake records carrying at
/// most `record` bytes each.
fn client_hello(name: Option<&str>, record: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(n) = name {
        let n = n.as_bytes();
        let entry_len = n.len() as u16 + 3;
        exts.extend([0, 0]);
        exts.extend((entry_len + 2).to_be_bytes());
        exts.extend(entry_len.to_be_bytes());
        exts.push(0);
        exts.extend((n.len() as u16).to_be_bytes());
        exts.extend(n);
    }
    let mut body = vec![3, 3];
    body.extend([0x5a; 32]);
    body.extend([0, 0, 2, 0xc0, 0x2f, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg.chunks(record).flat_map(|c| [&[22, 3, 1][..], &(c.len() as u16).to_be_bytes(), c].concat()).collect()
}

/// Connects from `from` (a loopback address), writes each of `segments`
/// apart (a pause between them, so they leave as separate TCP segments),
/// half-closes, and reads to the end: what came back (empty when the router
/// closed without passing anything on).
async fn send(port: u16, from: &str, segments: &[&[u8]]) -> (SocketAddr, Vec<u8>) {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{from}:0").parse().expect("addr")).expect("bind");
    let mut s = sock.connect(format!("127.0.0.1:{port}").parse().expect("addr")).await.expect("connect");
    let me = s.local_addr().expect("local addr");
    for seg in segments {
        // A write fails once the router has closed: the answer says the rest.
        if s.write_all(seg).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection still open after {T:?}");
    (me, out)
}

/// `curl -k` to `https://host:port/` resolved to loopback, with `Host:
/// host` (a Host with a port is routed by host:port): status and body.
async fn curl(port: u16, host: &str) -> (u16, String) {
    let host = host.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sk", "--http1.1", "-w", "\n%{http_code}", "--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(["-H", &format!("host: {host}")])
            .arg(format!("https://{host}:{port}/"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    })
    .await
    .expect("curl task")
}

/// A relay on a free loopback port standing for a load balancer: each
/// connection is made again from 127.0.0.3 to `port`, opening with a PROXY
/// v1 header that names `client`, then copied both ways.
async fn proxy_relay(port: u16, client: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let relay_port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let sock = TcpSocket::new_v4().expect("socket");
                sock.bind("127.0.0.3:0".parse().expect("addr")).expect("bind");
                let Ok(mut out) = sock.connect(format!("127.0.0.1:{port}").parse().expect("addr")).await else {
                    return;
                };
                let header = format!("PROXY TCP4 {client} 127.0.0.1 4000 {port}\r\n");
                if out.write_all(header.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (relay_port, task)
}

#[tokio::test]
async fn passthrough_beside_termination_spread_failover_and_wildcards() {
    let (certs, work) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mine = router_cert(certs.path(), work.path(), &["www.example.com", "other.example.com"]);
    let kube_a = SServer::start("kube-a", "api.example.com", &["api.example.com"]).await;
    let kube_b = SServer::start("kube-b", "api.example.com", &["api.example.com"]).await;
    let wild = SServer::start("wild", "x.pass.test", &["*.pass.test"]).await;
    let www = Backend::start("www").await;

    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    // Both spellings, and an instance that refuses every connection.
    register(&c, "kube-a", "kube", kube_a.port, &["urlprefix-api.example.com/ tls=passthrough"]).await;
    register(&c, "kube-b", "kube", kube_b.port, &["urlprefix-api.example.com/ proto=tcp"]).await;
    register(&c, "kube-dead", "kube", free_port(), &["urlprefix-api.example.com/ tls=passthrough"]).await;
    register(&c, "wild", "wild", wild.port, &["urlprefix-*.pass.test/ proto=tcp"]).await;
    // An HTTP glob over the passthrough host: the exact host comes first.
    register(&c, "www", "www", www.port(), &["urlprefix-www.example.com/", "urlprefix-*.example.com/"]).await;
    // SNI has no path: refused and reported.
    register(&c, "bad", "bad", 1, &["urlprefix-bad.example.com/v1 proto=tcp"]).await;
    let (router, tls_port) = start_router(&consul, certs.path(), &["--strategy", "rr"]).await;
    let kube = [kube_a.serial.clone(), kube_b.serial.clone()];
    let up = wait_until(T, || async { served(tls_port, Some("api.example.com")).await.filter(|s| kube.contains(s)) });
    assert!(
        up.await.is_some(),
        "api.example.com not passed through: {:?}",
        served(tls_port, Some("api.example.com")).await
    );

    // Every connection reaches a live instance with its own certificate,
    // and both serve (round robin; the dead one is skipped each time).
    let mut seen = Vec::new();
    for _ in 0..9 {
        let got = served(tls_port, Some("api.example.com")).await.expect("a handshake");
        assert!(kube.contains(&got), "{got} is not a kube instance's certificate");
        seen.push(got);
    }
    assert!(kube.iter().all(|k| seen.contains(k)), "both instances serve: {seen:?}");
    let failures = router.metric(r#"router_tcp_connect_failures_total{service="kube",route="api.example.com"}"#).await;
    assert!(failures >= 1.0, "the dead instance was tried and skipped: {failures}");

    // Wildcard passthrough, any depth.
    assert_eq!(served(tls_port, Some("x.pass.test")).await, Some(wild.serial.clone()));
    assert_eq!(served(tls_port, Some("a.b.pass.test")).await, Some(wild.serial.clone()));
    // Terminated on the same listener: an HTTP host, an HTTP glob, a name
    // without any route, no SNI at all.
    for sni in [Some("www.example.com"), Some("other.example.com"), Some("nothing.test"), None] {
        assert_eq!(served(tls_port, sni).await.as_deref(), Some(mine.as_str()), "{sni:?} terminated by the router");
    }
    // Whole TLS sessions: HTTP inside the passthrough reaches s_server; the
    // terminated host reaches its HTTP backend.
    let (status, body) = curl(tls_port, "api.example.com").await;
    assert!(status == 200 && body.contains("s_server"), "{status} {body}");
    let (status, body) = curl(tls_port, "www.example.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json")["name"], "www");

    // What the admin side shows.
    let routes = router.admin_json("/api/routes").await;
    let routes = routes.as_array().expect("array");
    let api: Vec<&serde_json::Value> = routes.iter().filter(|r| r["host"] == "api.example.com").collect();
    assert_eq!(api.len(), 3, "{api:?}");
    assert!(api.iter().all(|r| r["path"] == "" && r["target"].as_str().is_some_and(|t| t.starts_with("tcp://"))));
    assert!(routes.iter().any(|r| r["host"] == "*.pass.test" && r["service"] == "wild"));
    let problems = router.admin_json("/api/problems").await.to_string();
    assert!(problems.contains("a TLS passthrough route has no path"), "{problems}");
    let passed = router.metric(r#"router_tls_handshakes_total{result="passthrough"}"#).await;
    assert!(passed >= 13.0, "passthrough hellos counted: {passed}");
    let kube_conns = router.metric(r#"router_tcp_connections_total{service="kube",route="api.example.com"}"#).await;
    assert!(kube_conns >= 11.0, "{kube_conns}");
    let out = router.metric(r#"router_tcp_bytes_total{service="kube",route="api.example.com",direction="out"}"#).await;
    assert!(out > 1000.0, "certificates came back through the route: {out}");
    assert!(router.metric(r#"router_tls_handshakes_total{result="ok"}"#).await >= 5.0);
}

#[tokio::test]
async fn passthrough_bytes_untouched_proxy_protocol_and_hostile_hellos() {
    let (certs, work) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    router_cert(certs.path(), work.path(), &["router.test"]);
    let raw = Echo::start("raw", false).await;
    let db = Echo::start("db", true).await;
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    register(&c, "raw1", "raw", raw.port(), &["urlprefix-raw.example.com/ proto=tcp"]).await;
    register(&c, "db1", "db", db.port(), &["urlprefix-db.example.com/ tls=passthrough pxyproto=v2"]).await;
    let web = Backend::start("web").await;
    register(&c, "web1", "web", web.port(), &["urlprefix-web.example.com/"]).await;
    let extra = ["--proxy-protocol-from", "127.0.0.3/32", "--header-timeout", "1s"];
    let (mut router, tls_port) = start_router(&consul, certs.path(), &extra).await;
    let hello = client_hello(Some("raw.example.com"), 16384);
    let ready = wait_until(T, || async {
        let (_, got) = send(tls_port, "127.0.0.1", &[&hello]).await;
        got.starts_with(b"raw:").then_some(())
    });
    assert!(ready.await.is_some(), "raw.example.com passed through");

    // Cut into 7-byte records, sent 3 bytes a segment, then more bytes: all
    // arrive as sent.
    let cut = client_hello(Some("RAW.example.com."), 7);
    let mut stream = cut.clone();
    stream.extend_from_slice(b"\x17\x03\x03\x00\x04data");
    let segments: Vec<&[u8]> = stream.chunks(3).collect();
    let (_, got) = send(tls_port, "127.0.0.1", &segments).await;
    assert_eq!(got, [&b"raw:"[..], &stream].concat(), "bytes untouched, hello included");

    // PROXY out: the client's address before the hello.
    let db_hello = client_hello(Some("db.example.com"), 16384);
    let (me, got) = send(tls_port, "127.0.0.2", &[&db_hello]).await;
    assert_eq!(got, [format!("db:v2 127.0.0.2:{} ", me.port()).as_bytes(), &db_hello].concat());
    // PROXY in on the TLS listener, before the hello, from a trusted peer:
    // its client is the one PROXY out names.
    let forwarded = [&b"PROXY TCP4 192.0.2.7 192.0.2.8 4000 443\r\n"[..], &db_hello].concat();
    let (_, got) = send(tls_port, "127.0.0.3", &[&forwarded]).await;
    assert_eq!(got, [&b"db:v2 192.0.2.7:4000 "[..], &db_hello].concat());
    // PROXY in before a terminated handshake: the request is forwarded for
    // the client the header names.
    let (relay, relay_task) = proxy_relay(tls_port, "192.0.2.9").await;
    let (status, body) = curl(relay, "web.example.com").await;
    relay_task.abort();
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["headers"]["x-forwarded-for"], "192.0.2.9", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    // The same header from anyone else is no ClientHello: rustls answers
    // it (an alert) and closes, and the instance never hears of it.
    let bad_before = router.metric(r#"router_tls_handshakes_total{result="bad_client_hello"}"#).await;
    let (_, got) = send(tls_port, "127.0.0.2", &[&forwarded]).await;
    assert!(!got.starts_with(b"db:"), "forged PROXY header passed: {:?}", String::from_utf8_lossy(&got));
    // A trusted peer without a header is closed too.
    let (_, got) = send(tls_port, "127.0.0.3", &[&db_hello]).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    // Hostile hellos: none passes, none stops the listener.
    let mut oversized = client_hello(Some("raw.example.com"), 16384);
    oversized[6..9].copy_from_slice(&[0x7f, 0xff, 0xff]);
    let tiny_records = client_hello(Some("raw.example.com"), 1);
    let garbage: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let truncated = &hello[..hello.len() / 2];
    let two_names = client_hello(Some("raw.example.com\0\0\x0fraw.example.com"), 16384);
    for (what, bytes) in [
        ("garbage", &garbage[..]),
        ("truncated", truncated),
        ("oversized", &oversized[..]),
        ("1-byte records", &tiny_records[..]),
        ("mangled name", &two_names[..]),
        ("plain HTTP", b"GET / HTTP/1.1\r\nHost: raw.example.com\r\n\r\n"),
    ] {
        let (_, got) = send(tls_port, "127.0.0.1", &[bytes]).await;
        assert!(!got.starts_with(b"raw:") && !got.starts_with(b"HTTP/"), "{what}: {:?}", String::from_utf8_lossy(&got));
    }
    let bad_after = router.metric(r#"router_tls_handshakes_total{result="bad_client_hello"}"#).await;
    assert!(bad_after >= bad_before + 4.0, "counted: {bad_before} -> {bad_after}");

    // Half a hello, then silence: closed by --header-timeout.
    let started = std::time::Instant::now();
    let mut stall = TcpStream::connect(("127.0.0.1", tls_port)).await.expect("connect");
    stall.write_all(truncated).await.expect("send");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(T, stall.read_to_end(&mut rest)).await;
    assert!(ended.is_ok() && rest.is_empty(), "stalled hello closed without an answer");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
    assert!(router.metric(r#"router_tls_handshakes_total{result="timeout"}"#).await >= 1.0);

    // The listener still passes through.
    let (_, got) = send(tls_port, "127.0.0.1", &[&hello]).await;
    assert_eq!(got, [&b"raw:"[..], &hello].concat());
    let bytes_in =
        router.metric(r#"router_tcp_bytes_total{service="raw",route="raw.example.com",direction="in"}"#).await;
    assert!(bytes_in >= (2 * hello.len() + stream.len()) as f64, "{bytes_in}");

    // SIGTERM: the listener closes, a passed-through connection already open
    // goes on to its end, then the router exits.
    let series = r#"router_tcp_connections_total{service="raw",route="raw.example.com"}"#;
    let before = router.metric(series).await;
    let mut open = TcpStream::connect(("127.0.0.1", tls_port)).await.expect("connect");
    open.write_all(&hello).await.expect("send");
    let relayed = wait_until(T, || async { (router.metric(series).await > before).then_some(()) }).await;
    assert!(relayed.is_some(), "the connection reached the instance");
    router.daemon.signal(libc::SIGTERM);
    let closed = wait_until(T, || async { TcpStream::connect(("127.0.0.1", tls_port)).await.is_err().then_some(()) });
    assert!(closed.await.is_some(), "the TLS listener closed");
    open.write_all(b"late").await.expect("the open connection still takes bytes");
    open.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(T, open.read_to_end(&mut answer)).await.expect("answered").expect("read");
    assert_eq!(answer, [&b"raw:"[..], &hello, b"late"].concat());
    // Well before the 10 s grace: nothing else holds the process.
    let status = router.daemon.wait_exit(Duration::from_secs(5)).expect("router exits once its connections end");
    assert!(status.success(), "{status:?}");
}
