//! The router against real Consul state changes: failing and passing checks,
//! an instance without checks, KV overrides with one bad line, and a Consul
//! outage and restart that never cost a route while Consul is gone.

use std::time::Duration;

use consul::TtlStatus;
use integration_tests::router::{Backend, Router, register, register_with, ttl_check};
use integration_tests::{ConsulAgent, wait_until};

const T: Duration = Duration::from_secs(10);

/// The instance IDs `/api/routes` lists for `service`, sorted.
async fn routed(router: &Router, service: &str) -> Vec<String> {
    let routes = router.admin_json("/api/routes").await;
    let mut ids: Vec<String> = routes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["service"] == service)
                .filter_map(|r| r["instance"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn wait_routed(router: &Router, service: &str, want: &[&str]) {
    let got = wait_until(T, || async { (routed(router, service).await == want).then_some(()) }).await;
    assert!(got.is_some(), "{service}: wanted {want:?}, routed {:?}", routed(router, service).await);
}

#[tokio::test]
async fn checks_decide_which_instances_are_routed() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let with_check = Backend::start("checked").await;
    let without = Backend::start("unchecked").await;
    let critical = Backend::start("critical").await;
    let tags = ["urlprefix-app.example.com/"];
    register_with(&c, "web-checked", "web", with_check.port(), &tags, vec![ttl_check("passing")]).await;
    register(&c, "web-unchecked", "web", without.port(), &tags).await;
    register_with(&c, "web-critical", "web", critical.port(), &tags, vec![ttl_check("critical")]).await;
    let router = Router::start(&consul, &[]).await;

    // An instance without checks is routed; one whose check is critical is not.
    wait_routed(&router, "web", &["web-checked", "web-unchecked"]).await;

    // A failing check takes the instance out; only the other one answers.
    c.ttl_check("service:web-checked", TtlStatus::Fail, "test says fail").await.expect("ttl fail");
    wait_routed(&router, "web", &["web-unchecked"]).await;
    for _ in 0..5 {
        assert_eq!(router.fetch("app.example.com", "/").await.1["name"], "unchecked");
    }
    // Warning is not passing either.
    c.ttl_check("service:web-checked", TtlStatus::Warn, "").await.expect("ttl warn");
    c.ttl_check("service:web-critical", TtlStatus::Pass, "").await.expect("ttl pass");
    wait_routed(&router, "web", &["web-critical", "web-unchecked"]).await;

    // Passing again brings it back.
    c.ttl_check("service:web-checked", TtlStatus::Pass, "").await.expect("ttl pass");
    wait_routed(&router, "web", &["web-checked", "web-critical", "web-unchecked"]).await;

    // Maintenance mode (a critical check Consul adds) takes an instance out,
    // also one that has no checks of its own.
    let maintenance = |enable: bool| {
        let url = format!("{}/v1/agent/service/maintenance/web-unchecked?enable={enable}", consul.http_addr());
        async move { reqwest::Client::new().put(url).send().await.expect("maintenance call").status().is_success() }
    };
    assert!(maintenance(true).await);
    wait_routed(&router, "web", &["web-checked", "web-critical"]).await;
    assert!(maintenance(false).await);
    wait_routed(&router, "web", &["web-checked", "web-critical", "web-unchecked"]).await;

    // Deregistering removes the route entirely.
    for id in ["web-checked", "web-critical", "web-unchecked"] {
        c.deregister_service(id).await.expect("deregister");
    }
    router.wait_status("app.example.com", "/", 404, T).await;
}

#[tokio::test]
async fn overrides_apply_except_the_bad_line() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let c = consul.client();
    let extra = Backend::start("extra").await;
    let gone = Backend::start("gone").await;
    register(&c, "gone1", "gone", gone.port(), &["urlprefix-gone.example.com/"]).await;
    let router = Router::start(&consul, &["--overrides-key", "edge/router"]).await;
    router.wait_routed_to("gone.example.com", "/", "gone", T).await;

    let text = format!(
        "# operator overrides\nroute add extra extra.example.com/ http://127.0.0.1:{}/\nroute add broken\nroute del gone\n",
        extra.port()
    );
    assert!(c.kv_put("edge/router", text.clone()).await.expect("kv put"));
    router.wait_routed_to("extra.example.com", "/", "extra", T).await;
    router.wait_status("gone.example.com", "/", 404, T).await;

    let problems = router.admin_json("/api/problems").await;
    let list = problems.as_array().expect("problems array");
    assert_eq!(list.len(), 1, "{problems}");
    assert_eq!(list[0]["source"], "overrides line 3");
    let status = router.admin_json("/api/status").await;
    assert_eq!(status["overrides"], text);
    assert_eq!(status["overrides_key"], "edge/router");
    assert_eq!(status["problems"][0]["source"], "overrides line 3");

    // Deleting the key drops the overrides.
    c.kv_delete("edge/router").await.expect("kv delete");
    router.wait_routed_to("gone.example.com", "/", "gone", T).await;
    router.wait_status("extra.example.com", "/", 404, T).await;
}

#[tokio::test]
async fn consul_outage_keeps_routes_and_restart_recovers() {
    let mut consul = ConsulAgent::start().await.expect("consul starts");
    let web = Backend::start("web").await;
    let tags = ["urlprefix-app.example.com/"];
    register(&consul.client(), "web1", "web", web.port(), &tags).await;
    let router = Router::start(&consul, &["--consul-wait", "2s"]).await;
    router.wait_routed_to("app.example.com", "/", "web", T).await;

    router.wait_consul_healthy(T).await;
    consul.stop();
    // /health/consul reports Consul gone within about a second (the
    // liveness probe, not twice --consul-wait)...
    let started = std::time::Instant::now();
    let down = wait_until(T, || async { router.admin_text("/health/consul").await.filter(|(s, _)| *s == 503) }).await;
    let (_, why) = down.expect("/health/consul turns 503 while Consul is down");
    assert!(started.elapsed() < Duration::from_secs(3), "noticed after {:?}", started.elapsed());
    assert!(why.contains("does not answer") || why.contains("failing"), "{why}");
    // ...while /health stays 200 (this node can serve) and the proxy keeps
    // routing with the last good table.
    let (status, text) = router.health().await.expect("health answers");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("routing with the last good table"), "{text}");
    for _ in 0..10 {
        assert_eq!(router.fetch("app.example.com", "/").await.1["name"], "web");
    }
    let status = router.admin_json("/api/status").await;
    assert!(status["consul_problem"].is_string(), "{status}");
    assert!(status["consul_errors"].as_u64().unwrap_or(0) > 0);
    // The liveness probe finds the agent gone too (two misses, ~1 s).
    let unreachable = wait_until(T, || async {
        let s = router.admin_json("/api/status").await;
        (s["consul_reachable"] == false).then_some(())
    })
    .await;
    assert!(unreachable.is_some(), "the probe never found Consul gone");
    let metrics = router.admin_text("/metrics").await.expect("metrics").1;
    assert!(metrics.contains("router_consul_healthy 0\n"), "{metrics}");

    // Dev mode comes back empty: register again, as a registrar would.
    consul.restart().await.expect("consul restarts");
    let web2 = Backend::start("web2").await;
    register(&consul.client(), "web1", "web", web2.port(), &tags).await;
    router.wait_routed_to("app.example.com", "/", "web2", T).await;
    router.wait_healthy(T).await;
    router.wait_consul_healthy(T).await;
}
