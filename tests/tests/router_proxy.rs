//! The proxy's outcomes through the real router: 404 without a route, 502
//! when every target fails, 504 on an upstream timeout, a retry that makes a
//! dead instance cost no GET, websocket upgrades, HTTP/2 (h2c) inbound, and a
//! SIGTERM that lets an in-flight request finish.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn not_found_bad_gateway_and_gateway_timeout() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let web = Backend::start("web").await;
    register(&c, "web1", "web", web.port(), &["urlprefix-app.example.com/"]).await;
    // Nothing listens on this port.
    register(&c, "dead1", "dead", free_port(), &["urlprefix-dead.example.com/"]).await;
    let router = Router::start(&consul, &["--upstream-timeout", "300ms"]).await;
    router.wait_routed_to("app.example.com", "/", "web", T).await;

    assert_eq!(router.fetch("nothing.example.org", "/").await.0, 404);
    assert_eq!(router.fetch("app.example.com", "/slow?ms=5000").await.0, 504);
    assert_eq!(router.fetch("dead.example.com", "/").await.0, 502);
    let r = router
        .http
        .post(format!("http://{}/upload", router.proxy))
        .header("host", "dead.example.com")
        .body("payload")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 502);
    // Statuses are counted.
    let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("status=\"504\"") && text.contains("status=\"502\"") && text.contains("status=\"404\""));
}

#[tokio::test]
async fn a_dead_instance_costs_no_get() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let mut backends = Vec::new();
    for i in 1..=3 {
        let b = Backend::start(&format!("b{i}")).await;
        register(&c, &format!("three{i}"), "three", b.port(), &["urlprefix-three.example.com/"]).await;
        backends.push(b);
    }
    let router = Router::start(&consul, &[]).await;
    let all = wait_until(T, || async {
        let resp = router.admin_json("/api/routes").await;
        (resp.as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    assert!(all.is_some(), "three targets routed");
    // Warm the pool so the dead instance also has kept-alive connections.
    for _ in 0..6 {
        assert_eq!(router.fetch("three.example.com", "/").await.0, 200);
    }
    // Killed without telling Consul: the router learns nothing, only the
    // connect fails.
    backends[1].kill();
    for i in 0..30 {
        let (s, v) = router.fetch("three.example.com", &format!("/{i}")).await;
        assert_eq!(s, 200, "GET {i} failed: {v}");
        assert_ne!(v["name"], "b2");
    }
}

#[tokio::test]
async fn websocket_upgrade_echoes_through_the_router() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let ws = Backend::start("ws").await;
    register(&consul.client(), "ws1", "ws", ws.port(), &["urlprefix-ws.example.com/"]).await;
    let router = Router::start(&consul, &[]).await;
    router.wait_routed_to("ws.example.com", "/", "ws", T).await;

    let mut s = TcpStream::connect(router.proxy).await.expect("connect to the proxy");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut byte)).await.expect("answer in time").expect("read");
        assert!(n == 1, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // A masked websocket text frame "hello", then another: both come back.
    for msg in [&b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"[..], b"second message"] {
        s.write_all(msg).await.expect("write frame");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(T, s.read_exact(&mut back)).await.expect("echo in time").expect("read echo");
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn http2_prior_knowledge_inbound() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let web = Backend::start("web").await;
    register(&consul.client(), "web1", "web", web.port(), &["urlprefix-app.example.com/"]).await;
    let router = Router::start(&consul, &[]).await;
    router.wait_routed_to("app.example.com", "/", "web", T).await;

    let stream = TcpStream::connect(router.proxy).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req =
        hyper::Request::builder().uri("http://app.example.com/over-h2").body(Empty::<Bytes>::new()).expect("request");
    let resp = send.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["name"], "web");
    assert_eq!(v["path"], "/over-h2");
    assert_eq!(v["headers"]["host"], "app.example.com");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let web = Backend::start("web").await;
    register(&consul.client(), "web1", "web", web.port(), &["urlprefix-app.example.com/"]).await;
    let mut router = Router::start(&consul, &["--shutdown-grace", "5s"]).await;
    router.wait_routed_to("app.example.com", "/", "web", T).await;

    let url = format!("http://{}/slow?ms=1000", router.proxy);
    let http = router.http.clone();
    let seen = web.arrived();
    let in_flight = tokio::spawn(async move { http.get(url).header("host", "app.example.com").send().await });
    // The signal goes once the request is at the backend (in flight).
    web.wait_arrived(seen, T).await;
    router.daemon.signal(libc::SIGTERM);
    let resp = in_flight.await.expect("task").expect("in-flight request answered");
    assert_eq!(resp.status().as_u16(), 200);
    let status = router.daemon.wait_exit(Duration::from_secs(10)).expect("router exits");
    assert!(status.success(), "exit status {status}");
    assert!(TcpStream::connect(router.proxy).await.is_err(), "listener closed");
}
