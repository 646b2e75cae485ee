//! fabio's routing semantics through the real router and real Consul tags:
//! hosts with ports, glob hosts and their order, trimmed tags, routes
//! without `/`, `$DC`, per-target options, redirects with loop avoidance,
//! path normalisation, the forwarded headers, allow/deny over
//! X-Forwarded-For, trusted proxies and the no-route answer from Consul KV.
//! Raw requests are written by hand where a client library would normalise
//! the path itself.

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::ConsulAgent;
use integration_tests::router::{Backend, Router, register};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

/// Sends `GET target` with `headers` exactly as written; the status line,
/// the response headers (lower-cased names) and the body.
async fn raw(proxy: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    let mut req = format!("GET {target} HTTP/1.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut buf)).await.expect("answer in time").expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, hs, body.to_string())
}

/// The backend's JSON for a raw request.
async fn echo(proxy: SocketAddr, target: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, _, body) = raw(proxy, target, headers).await;
    assert_eq!(status, 200, "{target} {headers:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {body}"))
}

#[tokio::test]
async fn fabio_routing_semantics() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let names = [
        "any", "foo", "foo81", "xyz", "deep", "broad", "trim", "noslash", "dc", "hfoo", "hbar", "plain", "admin", "v2",
        "strip", "xff",
    ];
    let mut backends = Vec::new();
    for n in names {
        backends.push(Backend::start(n).await);
    }
    let port = |name: &str| backends.iter().find(|x| x.name == name).expect("backend").port();
    let routes: &[(&str, &[&str])] = &[
        ("any", &["urlprefix-/any"]),
        ("foo", &["urlprefix-foo.com/"]),
        ("foo81", &["urlprefix-foo.com:81/"]),
        ("xyz", &["urlprefix-xyz.com:80/"]),
        ("deep", &["urlprefix-*.a.glob.com/"]),
        ("broad", &["urlprefix-*.glob.com/api"]),
        ("trim", &["  urlprefix-  /trimmed  "]),
        ("noslash", &["urlprefix-NoSlash.com"]),
        ("dc", &["urlprefix-$DC.example.com/${DC}x"]),
        ("plain", &["urlprefix-r.com/", "urlprefix-bad.com/ redirect=200,http://x.com/"]),
        ("admin", &["urlprefix-/admin deny=ip:127.0.0.0/8"]),
        ("v2", &["urlprefix-/v2"]),
        ("strip", &["urlprefix-/api strip=/api"]),
        ("xff", &["urlprefix-xff.com/ allow=ip:127.0.0.0/8,ip:10.0.0.0/8"]),
    ];
    for (name, tags) in routes {
        register(&c, &format!("{name}-1"), name, port(name), tags).await;
    }
    // A redirect living beside the plain route for the same host, and one
    // that would point at the request itself.
    register(&c, "redir-1", "redir", port("plain"), &["urlprefix-r.com:80/ redirect=301,https://$host$path"]).await;
    register(&c, "loop-1", "loop", port("plain"), &["urlprefix-loop.com/ redirect=302,http://loop.com$path"]).await;
    // Two instances on one route, each with its own Host header.
    register(&c, "hfoo-1", "hosts", port("hfoo"), &["urlprefix-h.com/ host=foo.com"]).await;
    register(&c, "hbar-1", "hosts", port("hbar"), &["urlprefix-h.com/ host=bar.com"]).await;
    c.kv_put("test/noroute.html", "<html>nothing here</html>").await.expect("kv put");

    let router = Router::start(
        &consul,
        &["--no-route-status", "410", "--no-route-html-key", "test/noroute.html", "--trusted-proxies", "127.0.0.0/8"],
    )
    .await;
    let all = integration_tests::wait_until(T, || async {
        let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.ok()?.text().await.ok()?;
        text.lines().any(|l| l == "router_routes 18").then_some(())
    })
    .await;
    assert!(all.is_some(), "18 routes loaded: {}", router.admin_json("/api/routes").await);
    let p = router.proxy;
    let name = |v: serde_json::Value| v["name"].as_str().unwrap_or_default().to_string();

    // Hosts and ports: :80 dropped, any other port part of the host.
    assert_eq!(name(echo(p, "/", &[("host", "Foo.com")]).await), "foo");
    assert_eq!(name(echo(p, "/", &[("host", "foo.com:80")]).await), "foo");
    assert_eq!(name(echo(p, "/", &[("host", "foo.com:81")]).await), "foo81");
    assert_eq!(name(echo(p, "/any", &[("host", "foo.com:82")]).await), "any", "falls to the host-less routes");
    assert_eq!(name(echo(p, "/", &[("host", "xyz.com")]).await), "xyz", "a route host's :80 is dropped too");
    // Globs, most specific first even against a longer path.
    assert_eq!(name(echo(p, "/api/x", &[("host", "y.a.glob.com")]).await), "deep");
    assert_eq!(name(echo(p, "/", &[("host", ".a.glob.com")]).await), "deep");
    assert_eq!(name(echo(p, "/api/x", &[("host", "b.glob.com")]).await), "broad");

    // Tags: trimmed, without '/', $DC (the dev agent's datacenter is dc1).
    assert_eq!(name(echo(p, "/trimmed", &[("host", "x")]).await), "trim");
    assert_eq!(name(echo(p, "/anything", &[("host", "noslash.com")]).await), "noslash");
    assert_eq!(name(echo(p, "/dc1x", &[("host", "dc1.example.com")]).await), "dc");

    // Options per target: each instance sends its own Host.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let v = echo(p, "/", &[("host", "h.com")]).await;
        seen.insert(format!("{}={}", v["name"].as_str().unwrap_or_default(), v["headers"]["host"]));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["hbar=\"bar.com\"", "hfoo=\"foo.com\""]);

    // Redirects: beside the plain route, $host/$path with the query byte for
    // byte; a loop is skipped; a bad code proxies and is a problem.
    let (s, h, _) = raw(p, "/a%2Fb?x=%20&y", &[("host", "R.com")]).await;
    let location = h.iter().find(|(k, _)| k == "location").map(|(_, v)| v.as_str());
    assert_eq!((s, location), (301, Some("https://r.com/a/b?x=%20&y")));
    assert_eq!(name(echo(p, "/any", &[("host", "loop.com")]).await), "any", "the looping redirect is skipped");
    assert_eq!(name(echo(p, "/", &[("host", "bad.com")]).await), "plain");
    let problems = router.admin_json("/api/problems").await.to_string();
    assert!(problems.contains("300 to 399"), "{problems}");

    // Path normalisation: deny= on /admin cannot be dodged; the normalised
    // path is forwarded.
    for target in ["/admin", "/x/../admin", "//admin", "/x/..%2Fadmin", "/x/%2e%2e/admin"] {
        assert_eq!(raw(p, target, &[("host", "x")]).await.0, 403, "{target}");
    }
    let v = echo(p, "/api%2F..%2Fv2//users/", &[("host", "x")]).await;
    assert_eq!((name(v.clone()), v["path"].as_str()), ("v2".to_string(), Some("/v2/users/")));

    // X-Forwarded-Prefix with strip=; X-Forwarded-Port from the Host header.
    let v = echo(p, "/api/users", &[("host", "x")]).await;
    assert_eq!((v["path"].as_str(), v["headers"]["x-forwarded-prefix"].as_str()), (Some("/users"), Some("/api")));
    let v = echo(p, "/", &[("host", "foo.com:81")]).await;
    assert_eq!(v["headers"]["x-forwarded-port"], "81");

    // allow= checks every X-Forwarded-For element.
    assert_eq!(raw(p, "/", &[("host", "xff.com"), ("x-forwarded-for", "10.1.2.3")]).await.0, 200);
    assert_eq!(raw(p, "/", &[("host", "xff.com"), ("x-forwarded-for", "10.1.2.3, 192.0.2.1")]).await.0, 403);
    assert_eq!(
        raw(p, "/", &[("host", "xff.com"), ("x-forwarded-for", "10.1.2.3"), ("x-forwarded-for", "192.0.2.1")]).await.0,
        403
    );

    // The client (127.0.0.1) is a trusted proxy: its claims are kept.
    let v = echo(p, "/", &[("host", "foo.com"), ("x-forwarded-proto", "https"), ("x-real-ip", "203.0.113.9")]).await;
    assert_eq!(
        (v["headers"]["x-forwarded-proto"].as_str(), v["headers"]["x-real-ip"].as_str()),
        (Some("https"), Some("203.0.113.9"))
    );

    // No route: --no-route-status with the page from Consul KV.
    let (s, h, body) = raw(p, "/", &[("host", "nothing.org")]).await;
    assert_eq!((s, body.as_str()), (410, "<html>nothing here</html>"));
    assert!(h.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/html")), "{h:?}");
}

#[tokio::test]
async fn raw_paths_with_path_normalize_off() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let admin = Backend::start("admin").await;
    let any = Backend::start("any").await;
    register(&c, "admin-1", "admin", admin.port(), &["urlprefix-/admin"]).await;
    register(&c, "any-1", "any", any.port(), &["urlprefix-/"]).await;
    let router = Router::start(&consul, &["--path-normalize=false"]).await;
    router.wait_routed_to("x", "/admin", "admin", T).await;
    let v = echo(router.proxy, "/x/../admin//a", &[("host", "x")]).await;
    assert_eq!((v["name"].as_str(), v["path"].as_str()), (Some("any"), Some("/x/../admin//a")));
}

#[tokio::test]
async fn access_log_and_request_ids() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let web = Backend::start("web").await;
    register(&consul.client(), "web-1", "web", web.port(), &["urlprefix-log.com/"]).await;
    let dir = std::env::temp_dir().join(format!("edge-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let path_arg = path.to_string_lossy().into_owned();
    let router = Router::start(
        &consul,
        &["--access-log", &path_arg, "--access-log-format", "json", "--request-id-header", "X-Request-Id"],
    )
    .await;
    router.wait_routed_to("log.com", "/", "web", T).await;
    let p = router.proxy;

    // Fast path: an ID is made up and sent upstream; a client's is kept.
    let v = echo(p, "/made?x=1", &[("host", "log.com")]).await;
    let made = v["headers"]["x-request-id"].as_str().expect("an ID upstream").to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let v = echo(p, "/kept", &[("host", "log.com"), ("x-request-id", "client-id-7")]).await;
    assert_eq!(v["headers"]["x-request-id"], "client-id-7");
    // hyper's path: unrouted.
    assert_eq!(raw(p, "/none", &[("host", "nothing.org")]).await.0, 404);

    let lines = integration_tests::wait_until(T, || async {
        let text = std::fs::read_to_string(&path).ok()?;
        let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        lines.iter().any(|l| l["uri"] == "/none").then_some(lines)
    })
    .await
    .expect("the access log has the requests");
    let _ = std::fs::remove_dir_all(&dir);
    let of = |uri: &str| lines.iter().find(|l| l["uri"] == uri).unwrap_or_else(|| panic!("{uri} logged: {lines:?}"));
    let made_line = of("/made?x=1");
    assert_eq!(made_line["request_id"], made.as_str());
    assert_eq!(made_line["status"], 200);
    assert_eq!(made_line["method"], "GET");
    assert_eq!(made_line["client"], "127.0.0.1");
    assert_eq!(made_line["route"], "log.com/");
    assert_eq!(made_line["service"], "web");
    assert_eq!(made_line["upstream"], format!("127.0.0.1:{}", web.port()));
    assert!(made_line["bytes"].as_u64().is_some_and(|b| b > 0), "{made_line}");
    assert_eq!(of("/kept")["request_id"], "client-id-7");
    let none = of("/none");
    assert_eq!((none["status"].as_u64(), none["route"].is_null()), (Some(404), true));
    assert_eq!(none["request_id"].as_str().map(str::len), Some(36));
}
