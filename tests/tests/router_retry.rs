//! Retries and passive health through the real router, on both proxy paths
//! (the fast path takes a plain request with a Content-Length body; a chunked
//! body or HTTP/1.0 goes through hyper): a refused connect is retried on
//! another instance for every method, a connection closed before any answer
//! only for idempotent methods, failure answers name no upstream, and an
//! instance that keeps refusing is ejected (shown in `/api/routes` and
//! `/metrics`) and readmitted once it answers again.

use std::time::Duration;

use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(10);

/// Waits until `/api/routes` lists `n` targets for `host`.
async fn wait_targets(router: &Router, host: &str, n: usize) {
    let got = wait_until(T, || async {
        let routes = router.admin_json("/api/routes").await;
        let count = routes.as_array().map(|a| a.iter().filter(|e| e["host"] == host).count());
        (count == Some(n)).then_some(())
    })
    .await;
    assert!(got.is_some(), "{host}: {n} targets not routed: {}", router.admin_json("/api/routes").await);
}

/// Sends raw request bytes on a new connection and returns the whole answer
/// (the request asks the router to close).
async fn raw(router: &Router, request: &str) -> String {
    let mut s = TcpStream::connect(router.proxy).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out)).await.expect("answer in time").expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn counter(router: &Router, series: &str) -> u64 {
    let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.expect("metrics");
    let text = text.text().await.expect("metrics text");
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// A backend that reads a request and closes the connection without a byte
/// of answer, as an instance going away does.
async fn closer() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_refused_connect_is_retried_on_another_instance_for_every_method_on_both_paths() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let good = Backend::start("good").await;
    // One route per path, each with its own refusing instance, so the
    // ejection of one does not hide the other path's retries.
    for (i, host) in ["fast.example.com", "hyper.example.com"].into_iter().enumerate() {
        let tag = format!("urlprefix-{host}/");
        register(&c, &format!("good{i}"), &format!("svc{i}"), good.port(), &[&tag]).await;
        register(&c, &format!("dead{i}"), &format!("svc{i}"), free_port(), &[&tag]).await;
    }
    let router = Router::start(&consul, &[]).await;
    wait_targets(&router, "fast.example.com", 2).await;
    wait_targets(&router, "hyper.example.com", 2).await;

    for i in 0..50 {
        let r = router
            .http
            .post(format!("http://{}/upload/{i}", router.proxy))
            .header("host", "fast.example.com")
            .body(format!("payload {i}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 200, "POST {i} (fast path)");
    }
    let fast_retries = counter(&router, "router_retries_total").await;
    assert!(fast_retries >= 1, "the refusing instance was picked at least once: {fast_retries}");

    for i in 0..30 {
        let req = format!(
            "POST /chunked/{i} HTTP/1.1\r\nHost: hyper.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7\r\npayload\r\n0\r\n\r\n"
        );
        let answer = raw(&router, &req).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "chunked POST {i} (hyper path): {answer}");
    }
    let retries = counter(&router, "router_retries_total").await;
    assert!(retries > fast_retries, "the hyper path retried too: {fast_retries} then {retries}");
    assert!(counter(&router, "router_upstream_failures_total{kind=\"connect\"}").await >= retries);
}

#[tokio::test]
async fn an_unanswered_request_is_retried_only_when_idempotent_and_the_502_names_no_upstream() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let good = Backend::start("good").await;
    let (closer_port, _closer) = closer().await;
    register(&c, "good", "svc", good.port(), &["urlprefix-get.example.com/", "urlprefix-old.example.com/"]).await;
    register(&c, "closer", "svc", closer_port, &["urlprefix-get.example.com/", "urlprefix-old.example.com/"]).await;
    register(&c, "only-closer", "lone", closer_port, &["urlprefix-lone.example.com/"]).await;
    let router = Router::start(&consul, &[]).await;
    wait_targets(&router, "get.example.com", 2).await;
    wait_targets(&router, "lone.example.com", 1).await;

    for i in 0..40 {
        let (status, v) = router.fetch("get.example.com", &format!("/{i}")).await;
        assert_eq!((status, v["name"].as_str()), (200, Some("good")), "GET {i} (fast path)");
    }
    for i in 0..20 {
        let answer = raw(&router, &format!("GET /old/{i} HTTP/1.0\r\nHost: old.example.com\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "HTTP/1.0 GET {i}: {answer}");
    }
    assert!(counter(&router, "router_upstream_failures_total{kind=\"unanswered\"}").await >= 2);

    // A POST the instance may have acted on is not sent again; the answer
    // says nothing of the upstream's address or the OS error.
    for path in ["fast", "hyper"] {
        let request = match path {
            "fast" => "POST /x HTTP/1.1\r\nHost: lone.example.com\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
            _ => {
                "POST /x HTTP/1.1\r\nHost: lone.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n"
            }
        };
        let answer = raw(&router, request).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{path}: {answer}");
        assert!(answer.ends_with("\r\n\r\nno upstream answered\n"), "{path}: {answer}");
        assert!(!answer.contains(&closer_port.to_string()), "{path}: {answer}");
    }
}

#[tokio::test]
async fn an_instance_that_keeps_refusing_is_ejected_shown_and_readmitted() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let good = Backend::start("good").await;
    let dead_port = free_port();
    register(&c, "good", "svc", good.port(), &["urlprefix-e.example.com/"]).await;
    register(&c, "flaky", "svc", dead_port, &["urlprefix-e.example.com/"]).await;
    let router = Router::start(&consul, &[]).await;
    wait_targets(&router, "e.example.com", 2).await;

    for i in 0..20 {
        assert_eq!(router.fetch("e.example.com", &format!("/{i}")).await.0, 200, "GET {i}");
    }
    let routes = router.admin_json("/api/routes").await;
    let flaky = routes.as_array().and_then(|a| a.iter().find(|e| e["instance"] == "flaky")).cloned();
    let health = flaky.map(|e| e["health"].clone()).unwrap_or_default();
    assert_eq!(health["ejected"], true, "{routes}");
    assert_eq!(health["ejections"], 1, "{routes}");
    let series = format!(
        "router_target_ejections_total{{service=\"svc\",route=\"e.example.com/\",target=\"http://127.0.0.1:{dead_port}/\"}}"
    );
    assert_eq!(counter(&router, &series).await, 1);
    assert_eq!(counter(&router, "router_targets_ejected").await, 1);

    // The instance comes back: once its ejection ends, it is tried and
    // answers, and it is healthy again.
    let _back = Backend::start_on("back", dead_port).await;
    let served = wait_until(T, || async {
        let (s, v) = router.fetch("e.example.com", "/").await;
        assert_eq!(s, 200);
        (v["name"] == "back").then_some(())
    })
    .await;
    assert!(served.is_some(), "readmitted after the ejection");
    let routes = router.admin_json("/api/routes").await;
    let flaky = routes.as_array().and_then(|a| a.iter().find(|e| e["instance"] == "flaky")).cloned();
    assert_eq!(flaky.map(|e| e["health"]["ejected"].clone()), Some(serde_json::Value::Bool(false)), "{routes}");
}
