//! TCP routes through the real router with routes from real Consul tags:
//! spread over three instances, a killed instance costs no failed connect,
//! half-close, a port outside --tcp-ports refused and reported, a removed
//! route closes its listener while an open connection goes on; PROXY
//! protocol v1 and v2 out (a backend parses the header) and in (trusted and
//! untrusted peers, on TCP routes and on the HTTP listener).

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::echo::Echo;
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(15);

/// Connects (from `from`, when given), sends `data`, half-closes, and reads
/// the answer to the end. Err when the connection cannot be made; the answer
/// is empty when the far end closed without one.
async fn exchange(port: u16, from: Option<&str>, data: &[u8]) -> std::io::Result<String> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut s = match from {
        Some(ip) => {
            let sock = TcpSocket::new_v4()?;
            sock.bind(format!("{ip}:0").parse().expect("addr"))?;
            sock.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    s.write_all(data).await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    // A reset after a refusal counts as "no answer".
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).to_string())
}

async fn metric(router: &Router, line_start: &str) -> Option<u64> {
    let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn tcp_route_spreads_fails_over_half_closes_and_follows_the_table() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let port = free_port();
    let outside = free_port();
    let mut echoes = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let e = Echo::start(name, false).await;
        let tag = format!("urlprefix-:{port} proto=tcp");
        register(&c, &format!("echo-{i}"), "echo", e.port(), &[tag.as_str()]).await;
        echoes.push(e);
    }
    let stray = format!("urlprefix-:{outside} proto=tcp");
    register(&c, "stray-1", "stray", echoes[0].port(), &[stray.as_str()]).await;
    let ports = format!("{port},{}-{}", port.saturating_add(1), port.saturating_add(1));
    // One thread (tokio's current-thread scheduler, what a router pinned to
    // one core gets by default); the other tests run the multi-thread one.
    let router = Router::start(&consul, &["--tcp-bind", "127.0.0.1", "--tcp-ports", &ports, "--threads", "1"]).await;

    // The listener opens once the table has the route and its three targets.
    let ready = wait_until(T, || async {
        let v = router.admin_json("/api/routes").await;
        let n = v.as_array()?.iter().filter(|r| r["host"] == format!(":{port}")).count();
        (n == 3).then_some(())?;
        exchange(port, None, b"ping").await.ok().filter(|a| a.ends_with(":ping"))
    })
    .await;
    assert!(ready.is_some(), "TCP route serves: {}", router.admin_json("/api/routes").await);

    // Spread: round robin over the three instances; half-close: every answer
    // comes after the client ended its sending.
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..30 {
        let a = exchange(port, None, format!("m{i}").as_bytes()).await.expect("connects");
        let (name, data) = a.split_once(':').expect("name:data");
        assert_eq!(data, format!("m{i}"), "the bytes came back after the half-close");
        *counts.entry(name.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "every instance served: {counts:?}");
    assert!(counts.values().all(|&n| n >= 8), "spread: {counts:?}");

    // A bulk transfer both ways (its buffers grow past their first size
    // mid-stream) arrives whole and in order.
    let bulk: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let a = exchange(port, None, &bulk).await.expect("connects");
    let (_, data) = a.split_once(':').expect("name:data");
    assert!(data.as_bytes() == bulk.as_slice(), "3 MB came back whole: {} bytes", data.len());

    // A port outside --tcp-ports is never opened, and is a problem.
    assert!(TcpStream::connect(("127.0.0.1", outside)).await.is_err(), "port outside --tcp-ports refused");
    let problems = router.admin_json("/api/problems").await.to_string();
    assert!(problems.contains(&format!("route :{outside}")) && problems.contains("--tcp-ports"), "{problems}");

    // One instance dies (still in Consul): every client is still served.
    echoes[1].kill().await;
    for i in 0..12 {
        let a = exchange(port, None, format!("k{i}").as_bytes()).await.expect("connects");
        assert!(a == format!("a:k{i}") || a == format!("c:k{i}"), "served by a live instance: {a:?}");
    }
    let failures =
        metric(&router, &format!("router_tcp_connect_failures_total{{service=\"echo\",route=\":{port}\"}}")).await;
    assert!(failures.unwrap_or(0) >= 1, "the refused connects are counted: {failures:?}");
    let conns = metric(&router, &format!("router_tcp_connections_total{{service=\"echo\",route=\":{port}\"}}")).await;
    assert!(conns.unwrap_or(0) >= 43, "connections counted: {conns:?}");

    // The route goes away: the listener closes, an open connection goes on.
    let mut open = TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    open.write_all(b"before").await.expect("writes");
    for i in 0..3 {
        c.deregister_service(&format!("echo-{i}")).await.expect("deregister");
    }
    let closed = wait_until(T, || async { TcpStream::connect(("127.0.0.1", port)).await.is_err().then_some(()) }).await;
    assert!(closed.is_some(), "listener closed when the route went away");
    open.write_all(b"+after").await.expect("the open connection still takes bytes");
    open.shutdown().await.expect("half-close");
    let mut out = String::new();
    open.read_to_string(&mut out).await.expect("answer");
    assert!(out.ends_with(":before+after"), "the open connection finished: {out:?}");
}

#[tokio::test]
async fn proxy_protocol_out_and_in() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let (p1, p2) = (free_port(), free_port());
    let v1 = Echo::start("one", true).await;
    let v2 = Echo::start("two", true).await;
    let web = Backend::start("web").await;
    let t1 = format!("urlprefix-:{p1} proto=tcp pxyproto=true");
    let t2 = format!("urlprefix-:{p2} proto=tcp pxyproto=v2");
    register(&c, "one-1", "one", v1.port(), &[t1.as_str()]).await;
    register(&c, "two-1", "two", v2.port(), &[t2.as_str()]).await;
    register(&c, "web-1", "web", web.port(), &["urlprefix-/"]).await;
    let ports = format!("{p1},{p2}");
    let router = Router::start(
        &consul,
        &[
            "--tcp-bind",
            "127.0.0.1",
            "--tcp-ports",
            &ports,
            "--proxy-protocol-from",
            "127.0.0.2/32",
            "--proxy-protocol-timeout",
            "1s",
            "--tcp-idle-timeout",
            "700ms",
        ],
    )
    .await;
    let ready = wait_until(T, || async {
        let a = exchange(p1, None, b"x").await.ok()?;
        let b = exchange(p2, None, b"x").await.ok()?;
        (a.starts_with("one:") && b.starts_with("two:")).then_some(())
    })
    .await;
    assert!(ready.is_some(), "both TCP routes serve");

    // Out: the backend reads the client's own address in either version.
    for (port, want) in [(p1, "one:v1 127.0.0.3:"), (p2, "two:v2 127.0.0.3:")] {
        let a = exchange(port, Some("127.0.0.3"), b"data").await.expect("connects");
        assert!(a.starts_with(want) && a.ends_with(" data"), "{a:?}");
    }

    // In, from a trusted peer: the header's address goes on to the backend.
    let mut v2_header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2_header.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
    v2_header.extend_from_slice(&999u16.to_be_bytes());
    v2_header.extend_from_slice(&p2.to_be_bytes());
    v2_header.extend_from_slice(b"data");
    let cases = [
        (
            p1,
            format!("PROXY TCP4 203.0.113.7 127.0.0.1 4242 {p1}\r\ndata").into_bytes(),
            "one:v1 203.0.113.7:4242 data",
        ),
        (p2, v2_header.clone(), "two:v2 198.51.100.9:999 data"),
        (p1, v2_header, "one:v1 198.51.100.9:999 data"),
    ];
    for (port, sent, want) in cases {
        assert_eq!(exchange(port, Some("127.0.0.2"), &sent).await.expect("connects"), want);
    }
    // A trusted peer without a header is closed unserved.
    assert_eq!(exchange(p1, Some("127.0.0.2"), b"no header here").await.expect("connects"), "");

    // A forged header from an untrusted peer is refused (never reaches the backend).
    let forged = format!("PROXY TCP4 203.0.113.7 127.0.0.1 4242 {p1}\r\ndata");
    assert_eq!(exchange(p1, Some("127.0.0.3"), forged.as_bytes()).await.expect("connects"), "");
    // Bytes that only begin like a signature pass.
    let a = exchange(p1, Some("127.0.0.3"), b"PROXIMA").await.expect("connects");
    assert!(a.ends_with(" PROXIMA"), "{a:?}");

    // --tcp-idle-timeout: a connection where nothing moves is closed.
    let started = std::time::Instant::now();
    let mut idle = TcpStream::connect(("127.0.0.1", p1)).await.expect("connects");
    let mut out = Vec::new();
    let ended = tokio::time::timeout(T, idle.read_to_end(&mut out)).await;
    let took = started.elapsed();
    assert!(ended.is_ok(), "idle connection closed");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(10),
        "closed after the idle time: {took:?}"
    );

    // The HTTP listener: a trusted peer's header sets X-Forwarded-For; from
    // anyone else a PROXY line is a bad request, never forwarded.
    let http = |from: &'static str, head: String| {
        let proxy = router.proxy;
        async move {
            let sock = TcpSocket::new_v4().expect("socket");
            sock.bind(format!("{from}:0").parse().expect("addr")).expect("bind");
            let mut s = sock.connect(proxy).await.expect("connects");
            s.write_all(head.as_bytes()).await.expect("writes");
            let mut out = String::new();
            let _ = tokio::time::timeout(T, s.read_to_string(&mut out)).await;
            out
        }
    };
    let req = "GET /x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n";
    let out = http("127.0.0.2", format!("PROXY TCP4 203.0.113.8 127.0.0.1 5555 80\r\n{req}")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"x-forwarded-for\":\"203.0.113.8\""), "the header's client is forwarded: {out}");
    let out = http("127.0.0.3", format!("PROXY TCP4 203.0.113.8 127.0.0.1 5555 80\r\n{req}")).await;
    assert!(out.starts_with("HTTP/1.1 400"), "forged header on the HTTP listener: {out}");
    let out = http("127.0.0.2", req.to_string()).await;
    assert_eq!(out, "", "trusted peer without a header: closed");
}

#[tokio::test]
async fn a_tcp_port_in_use_is_a_problem_until_it_frees() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let e = Echo::start("a", false).await;
    // Another process (here: the test) holds the route's port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let tag = format!("urlprefix-:{port} proto=tcp");
    register(&consul.client(), "echo-1", "echo", e.port(), &[tag.as_str()]).await;
    let ports = port.to_string();
    let router = Router::start(&consul, &["--tcp-bind", "127.0.0.1", "--tcp-ports", &ports]).await;
    let source = format!("TCP route :{port}");
    let shown = wait_until(T, || async {
        let v = router.admin_json("/api/problems").await;
        v.as_array()?.iter().find(|p| p["source"] == source.as_str()).map(|p| p["message"].to_string())
    })
    .await;
    let all = router.admin_json("/api/problems").await;
    let message = shown.unwrap_or_else(|| panic!("no problem for :{port}: {all}"));
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("in use"), "{message}");
    assert!(router.admin_json("/api/status").await["problems"].to_string().contains(&source));

    // The port frees: the listener opens (within the 5 s retry) and the
    // problem goes.
    drop(taken);
    let served = wait_until(T, || async { exchange(port, None, b"hi").await.ok().filter(|a| a == "a:hi") }).await;
    assert!(served.is_some(), "the route serves once its port is free");
    let problems = router.admin_json("/api/problems").await.to_string();
    assert!(!problems.contains(&source), "the problem went with the cause: {problems}");
}

#[tokio::test]
async fn sigterm_stops_tcp_listeners_and_drains_connections_within_the_grace() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let e = Echo::start("a", false).await;
    let port = free_port();
    let tag = format!("urlprefix-:{port} proto=tcp");
    register(&consul.client(), "echo-1", "echo", e.port(), &[tag.as_str()]).await;
    let ports = port.to_string();
    let args = ["--tcp-bind", "127.0.0.1", "--tcp-ports", &ports, "--shutdown-grace", "3s"];
    let mut router = Router::start(&consul, &args).await;
    let ready = wait_until(T, || async { exchange(port, None, b"x").await.ok().filter(|a| a == "a:x") }).await;
    assert!(ready.is_some(), "TCP route serves");

    // Two connections open at SIGTERM: one ends by itself, one never does.
    let mut ends = TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    let mut stays = TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    ends.write_all(b"before").await.expect("writes");
    stays.write_all(b"held").await.expect("writes");
    // Both are past the router (the echo server has them) before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = std::time::Instant::now();
    router.daemon.signal(libc::SIGTERM);

    // The listener stops accepting at once ...
    let closed = wait_until(T, || async { TcpStream::connect(("127.0.0.1", port)).await.is_err().then_some(()) }).await;
    assert!(closed.is_some(), "the TCP listener closed on SIGTERM");
    assert!(signalled.elapsed() < Duration::from_secs(2), "closed at once: {:?}", signalled.elapsed());
    // ... an open connection goes on to its end ...
    ends.write_all(b"+after").await.expect("the open connection still takes bytes");
    ends.shutdown().await.expect("half-close");
    let mut out = String::new();
    tokio::time::timeout(T, ends.read_to_string(&mut out)).await.expect("answer in time").expect("answer");
    assert_eq!(out, "a:before+after", "the open connection was served to its end");
    // ... and one still open at the end of the grace is closed with the process.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, stays.read_to_end(&mut rest)).await.expect("closed within the grace");
    let status = router.daemon.wait_exit(T).expect("router exits");
    let took = signalled.elapsed();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(7), "exit after the grace: {took:?}");
    assert!(router.daemon.logs().contains("grace period over; closing remaining TCP connections"));
}
