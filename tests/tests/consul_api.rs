//! The `consul` crate against a real Consul agent.

use std::time::{Duration, Instant};

use consul::{
    CheckRegistration, CheckStatus, QueryOptions, ServiceRegistration, SessionBehavior, SessionRequest, Step,
    TtlStatus, WatchIndex,
};
use integration_tests::{ConsulAgent, wait_until};

fn web(id: &str, port: u16) -> ServiceRegistration {
    ServiceRegistration {
        id: id.into(),
        name: "web".into(),
        tags: vec!["urlprefix-web.example.com/".into(), "v1".into()],
        address: "127.0.0.1".into(),
        port: Some(port),
        meta: [("owner".to_string(), "test".to_string())].into(),
        checks: vec![],
    }
}

#[tokio::test]
async fn registered_service_appears_in_health_and_deregistration_removes_it() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    c.register_service(&web("web-1", 8080)).await.expect("register");

    let entries = c.health_service("web", false, &QueryOptions::default()).await.expect("health").value;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.service.id, "web-1");
    assert_eq!(e.service.port, 8080);
    assert_eq!(e.service.tags, vec!["urlprefix-web.example.com/", "v1"]);
    assert_eq!(e.service.meta.get("owner").map(String::as_str), Some("test"));
    assert_eq!(e.node.name, agent.node_name());
    assert!(e.all_checks_passing(), "only the node's serf check, passing: {:?}", e.checks);

    let services = c.agent_services().await.expect("agent services");
    assert!(services.contains_key("web-1"));
    let catalog = c.catalog_services(&QueryOptions::default()).await.expect("catalog").value;
    assert!(catalog.get("web").is_some_and(|t| t.contains(&"v1".to_string())));

    c.deregister_service("web-1").await.expect("deregister");
    let entries = c.health_service("web", false, &QueryOptions::default()).await.expect("health").value;
    assert!(entries.is_empty(), "deregistered: {entries:?}");
    assert!(!c.agent_services().await.expect("agent services").contains_key("web-1"));
}

#[tokio::test]
async fn blocking_query_returns_soon_after_a_change_and_not_before() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    c.register_service(&web("web-1", 8080)).await.expect("register");
    let first = c.health_service("web", false, &QueryOptions::default()).await.expect("health");
    let mut idx = WatchIndex::new();
    assert_eq!(idx.advance(first.index), Step::Changed);

    // Nothing changes: the query is held for the whole wait.
    let t = Instant::now();
    let held = c
        .health_service("web", false, &QueryOptions::blocking(idx.get(), Duration::from_millis(600)))
        .await
        .expect("held query");
    let held_for = t.elapsed();
    assert!(held_for >= Duration::from_millis(550), "returned early after {held_for:?}");
    assert_eq!(idx.advance(held.index), Step::Unchanged, "index unchanged without a change");

    // A change 300 ms into a 10 s wait wakes the query at once.
    let changer = {
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let changed_at = Instant::now();
            c.register_service(&web("web-2", 8081)).await.expect("register second");
            changed_at
        })
    };
    let woke = c
        .health_service("web", false, &QueryOptions::blocking(idx.get(), Duration::from_secs(10)))
        .await
        .expect("blocking query");
    let returned_at = Instant::now();
    let changed_at = changer.await.expect("changer task");
    assert!(returned_at >= changed_at, "returned before the change");
    let lag = returned_at - changed_at;
    assert!(lag < Duration::from_millis(100), "returned {lag:?} after the change");
    assert_eq!(idx.advance(woke.index), Step::Changed);
    assert_eq!(woke.value.len(), 2);
}

#[tokio::test]
async fn kv_round_trip() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    let missing = c.kv_get("router/config", &QueryOptions::default()).await.expect("get missing");
    assert!(missing.value.is_none());
    assert!(missing.index > 0, "404 still carries an index to block on");

    let text = "route add web / http://127.0.0.1:8080/\nroute del other\n";
    assert!(c.kv_put("router/config", text).await.expect("put"));
    let got = c.kv_get("router/config", &QueryOptions::default()).await.expect("get").value.expect("present");
    assert_eq!(got.key, "router/config");
    assert_eq!(got.value, text.as_bytes());

    c.kv_put("router/other key", "x").await.expect("put 2");
    let keys: Vec<String> =
        c.kv_list("router/", &QueryOptions::default()).await.expect("list").value.into_iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["router/config", "router/other key"]);

    c.kv_delete("router/config").await.expect("delete");
    assert!(c.kv_get("router/config", &QueryOptions::default()).await.expect("get").value.is_none());
}

#[tokio::test]
async fn kv_check_and_set_refuses_a_stale_index() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    let get = || async { c.kv_get("acme/k", &QueryOptions::default()).await.expect("get").value };
    assert!(c.kv_cas("acme/k", 0, "first").await.expect("cas create"), "index 0 creates a missing key");
    assert!(!c.kv_cas("acme/k", 0, "second").await.expect("cas create again"), "index 0 never overwrites");
    let seen = get().await.expect("present");
    assert_eq!(seen.value, b"first");
    assert!(c.kv_cas("acme/k", seen.modify_index, "updated").await.expect("cas"));
    assert!(!c.kv_cas("acme/k", seen.modify_index, "stale").await.expect("stale cas"), "the index moved on");
    assert_eq!(get().await.expect("present").value, b"updated");
}

fn session(name: &str) -> SessionRequest {
    SessionRequest {
        name: name.into(),
        ttl: Duration::from_secs(10),
        lock_delay: Duration::ZERO,
        behavior: SessionBehavior::Release,
    }
}

#[tokio::test]
async fn kv_lock_is_held_by_one_session_and_freed_when_it_ends() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    let a = c.session_create(&session("node a")).await.expect("session a");
    let b = c.session_create(&session("node b")).await.expect("session b");
    assert_ne!(a, b);

    assert!(c.kv_acquire("acme/lock/x", &a, "a").await.expect("a acquires"));
    assert!(!c.kv_acquire("acme/lock/x", &b, "b").await.expect("b tries"), "a holds the lock");
    let held = c.kv_get("acme/lock/x", &QueryOptions::default()).await.expect("get").value.expect("key");
    assert_eq!(held.session.as_deref(), Some(a.as_str()));
    assert_eq!(held.value, b"a");
    assert!(c.kv_acquire("acme/lock/x", &a, "a again").await.expect("re-acquire"), "the holder may acquire again");

    // Only the holder can release.
    assert!(!c.kv_release("acme/lock/x", &b, "").await.expect("b releases"));
    assert!(c.kv_release("acme/lock/x", &a, "done").await.expect("a releases"));
    let free = c.kv_get("acme/lock/x", &QueryOptions::default()).await.expect("get").value.expect("key kept");
    assert_eq!(free.session, None);
    assert_eq!(free.value, b"done", "release keeps the key (Behavior release)");
    assert!(c.kv_acquire("acme/lock/x", &b, "b").await.expect("b acquires"));

    // A holder that ends (here destroyed; a dead node's session expires the
    // same way) frees its locks, and renewing it says it is gone.
    assert!(c.session_renew(&b).await.expect("renew b"));
    c.session_destroy(&b).await.expect("destroy b");
    assert!(!c.session_renew(&b).await.expect("renew destroyed"), "a destroyed session cannot be renewed");
    let freed = c.kv_get("acme/lock/x", &QueryOptions::default()).await.expect("get").value.expect("key");
    assert_eq!(freed.session, None);
    assert!(c.kv_acquire("acme/lock/x", &a, "a").await.expect("a takes over"));
    c.session_destroy(&a).await.expect("destroy a");

    // A lock with a session that does not exist is refused, not granted.
    let err = c.kv_acquire("acme/lock/y", &b, "").await.expect_err("invalid session");
    assert_eq!(err.status(), Some(500), "{err}");
}

#[tokio::test]
async fn ttl_check_flips_to_critical_and_back() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    let mut reg = web("web-ttl", 8080);
    reg.checks = vec![CheckRegistration {
        check_id: "web-ttl:health".into(),
        name: "container health".into(),
        ttl: "30s".into(),
        status: "passing".into(),
        ..Default::default()
    }];
    c.register_service(&reg).await.expect("register");
    let status = |c: consul::Client| async move {
        let e = c.health_service("web", false, &QueryOptions::default()).await.ok()?.value;
        e.first()?.checks.iter().find(|k| k.check_id == "web-ttl:health").map(|k| (k.status, k.output.clone()))
    };
    assert_eq!(status(c.clone()).await.map(|s| s.0), Some(CheckStatus::Passing));
    let passing = c.health_service("web", true, &QueryOptions::default()).await.expect("passing").value;
    assert_eq!(passing.len(), 1);

    c.ttl_check("web-ttl:health", TtlStatus::Fail, "container unhealthy").await.expect("fail");
    let (st, out) = status(c.clone()).await.expect("check present");
    assert_eq!(st, CheckStatus::Critical);
    assert_eq!(out, "container unhealthy");
    let passing = c.health_service("web", true, &QueryOptions::default()).await.expect("passing").value;
    assert!(passing.is_empty(), "a critical instance is not passing");
    let any = c.health_state_any(&QueryOptions::default()).await.expect("state any").value;
    assert!(any.iter().any(|k| k.check_id == "web-ttl:health" && k.status == CheckStatus::Critical));

    c.ttl_check("web-ttl:health", TtlStatus::Pass, "").await.expect("pass");
    assert_eq!(status(c.clone()).await.map(|s| s.0), Some(CheckStatus::Passing));
}

#[tokio::test]
async fn bad_requests_name_the_endpoint_and_status() {
    let agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    // A TTL update for a check that does not exist.
    let err = c.ttl_check("no-such-check", TtlStatus::Pass, "").await.expect_err("unknown check");
    let msg = err.to_string();
    assert!(msg.contains("PUT /v1/agent/check/pass/no-such-check"), "{msg}");
    assert!(err.status().is_some_and(|s| s >= 400), "{msg}");
    // A registration Consul refuses (two kinds of check at once).
    let mut reg = web("bad", 1);
    reg.checks = vec![CheckRegistration {
        ttl: "10s".into(),
        tcp: "127.0.0.1:1".into(),
        interval: "1s".into(),
        ..Default::default()
    }];
    let err = c.register_service(&reg).await.expect_err("invalid check");
    assert!(err.to_string().contains("PUT /v1/agent/service/register"), "{err}");
}

#[tokio::test]
async fn unreachable_consul_is_a_clear_error_not_a_hang() {
    let port = integration_tests::free_port();
    let c = consul::Client::new(&format!("http://127.0.0.1:{port}")).expect("client");
    let t = Instant::now();
    let err = c
        .health_service("web", false, &QueryOptions::blocking(5, Duration::from_secs(60)))
        .await
        .expect_err("nothing listens there");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(err.is_unreachable(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("GET /v1/health/service/web") && msg.contains("unreachable"), "{msg}");
}

#[tokio::test]
async fn agent_restart_loses_dev_state_and_comes_back() {
    let mut agent = ConsulAgent::start().await.expect("consul starts");
    let c = agent.client();
    c.register_service(&web("web-1", 8080)).await.expect("register");
    agent.restart().await.expect("restart");
    let back = wait_until(Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.agent_services().await.ok() }
    })
    .await
    .expect("agent answers after restart");
    assert!(!back.contains_key("web-1"), "dev mode starts empty");
    assert_eq!(c.agent_node_name().await.expect("self"), agent.node_name());
}

/// `Config::fallbacks` against two real agents: not before the base address
/// answered once; then a blocking read whose agent is killed under it is
/// answered by the fallback (not an error after the wait), requests go to
/// the fallback while the base address refuses connections, and back to the
/// base as soon as it answers again.
#[tokio::test]
async fn requests_fall_back_while_the_agent_is_dead_and_return_when_it_answers() {
    let mut a = ConsulAgent::start().await.expect("consul a starts");
    let b = ConsulAgent::start().await.expect("consul b starts");
    // A base that never answered: no fallback (a daemon started before its
    // agent waits for it).
    let refused = format!("http://127.0.0.1:{}", integration_tests::free_port());
    let early =
        consul::Client::with_config(consul::Config::new(refused).fallbacks(vec![b.http_addr()])).expect("client");
    let err = early.kv_get("k", &QueryOptions::default()).await.expect_err("the base never answered");
    assert!(err.is_unreachable(), "{err}");
    let c =
        consul::Client::with_config(consul::Config::new(a.http_addr()).fallbacks(vec![b.http_addr()])).expect("client");
    let value = |r: &consul::Response<Option<consul::KvPair>>| {
        r.value.as_ref().map(|p| String::from_utf8_lossy(&p.value).into_owned())
    };
    a.client().kv_put("k", "from a").await.expect("put a");
    let from_a = c.kv_get("k", &QueryOptions::default()).await.expect("read a");
    assert_eq!(value(&from_a).as_deref(), Some("from a"));
    assert_eq!(c.answering(), c.address());

    // B's index for the key must pass A's, so B answers the blocking read
    // at once rather than wait for a change (both are single-server
    // clusters here; in one cluster the indexes are the same raft indexes).
    let mut n = 0;
    loop {
        n += 1;
        let r = b.client().kv_put("k", format!("from b {n}")).await.expect("put b");
        assert!(r);
        let idx = b.client().kv_get("k", &QueryOptions::default()).await.expect("read b").index;
        if idx > from_a.index {
            break;
        }
    }
    let reader = c.clone();
    let index = from_a.index;
    let read =
        tokio::spawn(
            async move { reader.kv_get("k", &QueryOptions::stale_blocking(index, Duration::from_secs(30))).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    a.stop();
    let r = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered by the fallback, not after the wait")
        .expect("read task")
        .expect("no error: the fallback answered");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(value(&r), Some(format!("from b {n}")));
    assert_eq!(c.answering().as_str(), format!("{}/", b.http_addr()));

    // At a fallback a blocking read waits about a second, not its 30 s, so
    // it comes back to the base address soon after that one returns.
    let t = Instant::now();
    let again = c.kv_get("k", &QueryOptions::stale_blocking(r.index, Duration::from_secs(30))).await.expect("fallback");
    assert!(t.elapsed() < Duration::from_secs(3), "a read at a fallback waits ~1 s: {:?}", t.elapsed());
    assert_eq!(again.index, r.index, "nothing changed");

    // Refused: reads and writes go to the fallback.
    assert!(c.kv_put("w", "written").await.expect("write through the fallback"));
    let w = b.client().kv_get("w", &QueryOptions::default()).await.expect("read b");
    assert_eq!(value(&w).as_deref(), Some("written"));

    // The base answers again (a dev agent, empty after its restart): the
    // next request is its.
    a.restart().await.expect("consul a restarts");
    let back = c.kv_get("k", &QueryOptions::default()).await.expect("read a again");
    assert_eq!(value(&back), None, "answered by the restarted, empty agent");
    assert_eq!(c.answering(), c.address());
}
