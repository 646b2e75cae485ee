//! Routing by Host and path through the real router, with routes from real
//! Consul tags: exact, wildcard and host-less hosts, longest prefix, strip,
//! host=dst, redirect, the forwarded headers, and the admin endpoints.

use std::time::Duration;

use integration_tests::ConsulAgent;
use integration_tests::router::{Backend, Router, register};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn routes_by_host_and_path_with_the_tag_grammar() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    let apiv2 = Backend::start("apiv2").await;
    let wild = Backend::start("wild").await;
    let any = Backend::start("any").await;
    let dst = Backend::start("dst").await;
    register(&c, "web1", "web", web.port(), &["urlprefix-app.example.com/"]).await;
    register(&c, "api1", "api", api.port(), &["urlprefix-app.example.com/api strip=/api"]).await;
    register(&c, "apiv2-1", "apiv2", apiv2.port(), &["urlprefix-app.example.com/api/v2"]).await;
    register(&c, "wild1", "wild", wild.port(), &["urlprefix-*.example.com/"]).await;
    register(&c, "any1", "any", any.port(), &["urlprefix-/"]).await;
    register(&c, "dst1", "dst", dst.port(), &["urlprefix-dst.example.com/ host=dst"]).await;
    register(
        &c,
        "redir1",
        "redir",
        web.port(),
        &["urlprefix-old.example.com/ redirect=301,http://new.example.com$path"],
    )
    .await;
    register(&c, "pre1", "pre", web.port(), &["urlprefix-pre.example.com/ prepend=/v2"]).await;
    register(&c, "allow1", "allowed", web.port(), &["urlprefix-allow.example.com/ allow=ip:127.0.0.0/8"]).await;
    register(&c, "deny1", "denied", web.port(), &["urlprefix-deny.example.com/ allow=ip:10.0.0.0/8"]).await;
    // A malformed tag is skipped and reported; the other tags still route.
    register(&c, "bad1", "bad", web.port(), &["urlprefix-bad.example.com/ weight=lots"]).await;
    let router = Router::start(&consul, &[]).await;
    // Every registration is in the first table.
    let all = integration_tests::wait_until(T, || async {
        let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.ok()?.text().await.ok()?;
        text.lines().any(|l| l == "router_routes 10").then_some(())
    })
    .await;
    assert!(all.is_some(), "10 routes loaded: {}", router.admin_json("/api/routes").await);

    // Exact host; case and the default port of the Host header are ignored.
    let (s, v) = router.fetch("app.example.com", "/hello?x=1").await;
    assert_eq!((s, v["name"].as_str()), (200, Some("web")));
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["query"], "x=1");
    assert_eq!(router.fetch("APP.Example.com:80", "/").await.1["name"], "web");

    // Longest prefix wins; strip= removes the route's prefix.
    let (_, v) = router.fetch("app.example.com", "/api/users").await;
    assert_eq!((v["name"].as_str(), v["path"].as_str()), (Some("api"), Some("/users")));
    let (_, v) = router.fetch("app.example.com", "/api/v2/users").await;
    assert_eq!((v["name"].as_str(), v["path"].as_str()), (Some("apiv2"), Some("/api/v2/users")));

    // Wildcard host, then the host-less fallback.
    assert_eq!(router.fetch("shop.example.com", "/").await.1["name"], "wild");
    assert_eq!(router.fetch("a.b.example.com", "/").await.1["name"], "wild");
    assert_eq!(router.fetch("other.org", "/x").await.1["name"], "any");

    // host=dst sends the target's address as Host; by default the client's Host is kept.
    let (_, v) = router.fetch("dst.example.com", "/").await;
    assert_eq!(v["headers"]["host"], format!("127.0.0.1:{}", dst.port()));
    let (_, v) = router.fetch("app.example.com", "/").await;
    assert_eq!(v["headers"]["host"], "app.example.com");

    // redirect=CODE,URL with $path.
    let r = router.get("old.example.com", "/a/b?c=1").await.expect("answer");
    assert_eq!(r.status().as_u16(), 301);
    assert_eq!(r.headers()["location"], "http://new.example.com/a/b?c=1");

    // prepend= and allow=/deny= (ip:CIDR); the client is 127.0.0.1.
    assert_eq!(router.fetch("pre.example.com", "/x").await.1["path"], "/v2/x");
    assert_eq!(router.fetch("allow.example.com", "/").await.0, 200);
    assert_eq!(router.fetch("deny.example.com", "/").await.0, 403);
    let problems = router.admin_json("/api/problems").await;
    assert!(
        problems.as_array().is_some_and(|p| p.iter().any(|p| p["source"].as_str().is_some_and(|s| s.contains("bad")))),
        "the bad tag is reported: {problems}"
    );

    // Forwarded headers added, hop-by-hop ones removed.
    let r = router
        .http
        .get(format!("http://{}/h", router.proxy))
        .header("host", "app.example.com")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "1")
        .header("x-forwarded-for", "10.9.9.9")
        .send()
        .await
        .expect("answer");
    let v: serde_json::Value = r.json().await.expect("json");
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "app.example.com");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], router.proxy.port().to_string());
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["forwarded"], "for=127.0.0.1;proto=http;host=\"app.example.com\"");
    assert!(h.get("x-secret").is_none(), "a header named in Connection is hop-by-hop: {h}");

    // Admin: the routes as a JSON array, metrics, the page.
    let routes = router.admin_json("/api/routes").await;
    let list = routes.as_array().expect("/api/routes is an array");
    let api_route = list.iter().find(|r| r["service"] == "api").expect("api route listed");
    assert_eq!(api_route["host"], "app.example.com");
    assert_eq!(api_route["path"], "/api");
    assert_eq!(api_route["target"], format!("http://127.0.0.1:{}/", api.port()));
    assert_eq!(api_route["weight"], 1.0);
    assert_eq!(api_route["options"]["strip"], "/api");
    let metrics = router.http.get(format!("http://{}/metrics", router.admin)).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("router_requests_total{service=\"api\",route=\"app.example.com/api\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("router_routes 10"), "{text}");
    assert!(text.contains("router_table_problems 1"), "{text}");
    assert!(text.contains("router_table_age_seconds "), "{text}");
    let page = router.http.get(format!("http://{}/", router.admin)).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<html") && html.contains("setInterval") && !html.contains("src=\"http"),
        "self-contained page"
    );
}
