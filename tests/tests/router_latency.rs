//! Register -> routed latency: the time from the registration request to the
//! first request the proxy routes to the new instance, with an empty catalog
//! and with 1,000 routed services in it (fabio needs about 620 ms there, as it
//! re-reads every service on every change). Discovery re-reads only the node
//! that changed, so the 1,000 services are measured twice: spread over 20
//! nodes (50 each, registered in the catalog as external nodes) and all on
//! one node (the worst case: Consul serializes ~0.9 MB per read of that node).
//! The baseline measured in the same run is the registration call itself
//! (Consul accepting the write; for an agent registration this includes the
//! agent's sync to the catalog): the difference is the router's share.
//! Prints the figures; the bound asserted is generous (machines vary); the
//! README records measured values.
//!
//! Reproduce: `cargo build -p router && cargo nextest run -p integration-tests
//! -E 'binary(router_latency)' --no-capture` (add `--release` to both for
//! release figures).

use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, free_port, wait_until};

const SAMPLES: usize = 7;

/// Where a service is registered: on the agent's own node, or in the catalog
/// on an external node (`PUT /v1/catalog/register`), as for services on
/// other machines.
#[derive(Clone, Copy)]
enum Place<'a> {
    Agent,
    Node(&'a str),
}

async fn register_at(consul: &ConsulAgent, http: &reqwest::Client, place: Place<'_>, id: &str, port: u16, tag: &str) {
    match place {
        Place::Agent => register(&consul.client(), id, id, port, &[tag]).await,
        Place::Node(node) => {
            let body = serde_json::json!({
                "Node": node, "Address": "127.0.0.1",
                "Service": {"ID": id, "Service": id, "Tags": [tag], "Address": "127.0.0.1", "Port": port},
            });
            let r = http
                .put(format!("{}/v1/catalog/register", consul.http_addr()))
                .json(&body)
                .send()
                .await
                .expect("catalog register");
            assert!(r.status().is_success(), "catalog register: {}", r.status());
        }
    }
}

/// Registers a fresh service `SAMPLES` times at `place` and measures each time
/// until the proxy answers from it. Returns the sorted samples (and prints
/// them with the registration call's own duration as the baseline).
async fn measure(consul: &ConsulAgent, router: &Router, place: Place<'_>, label: &str) -> Vec<Duration> {
    let backend = Backend::start("fresh").await;
    let mut samples = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..SAMPLES {
        let host = format!("fresh{i}.example.com");
        let tag = format!("urlprefix-{host}/");
        let started = Instant::now();
        register_at(consul, &router.http, place, &format!("fresh{i}"), backend.port(), &tag).await;
        baseline.push(started.elapsed());
        loop {
            let (s, _) = router.fetch(&host, "/").await;
            if s == 200 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{host} never routed");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    baseline.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (median, base) = (samples[SAMPLES / 2], baseline[SAMPLES / 2]);
    println!(
        "register->routed [{label}]: median {:.1} ms (min {:.1}, max {:.1}) over {SAMPLES} registrations; \
         baseline, the registration call itself: median {:.1} ms; ratio {:.1}x",
        ms(median),
        ms(samples[0]),
        ms(samples[SAMPLES - 1]),
        ms(base),
        median.as_secs_f64() / base.as_secs_f64().max(1e-6),
    );
    samples
}

#[tokio::test]
async fn register_to_routed_with_an_empty_catalog() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let router = Router::start(&consul, &[]).await;
    let samples = measure(&consul, &router, Place::Agent, "empty catalog").await;
    assert!(samples[SAMPLES / 2] < Duration::from_secs(1), "median {:?}", samples[SAMPLES / 2]);
}

/// Registers 1,000 routed services (their targets need not answer: only the
/// new one is requested) on `nodes` external nodes, or on the agent (0), and
/// starts a router that has loaded them.
async fn catalog_of_1000(consul: &ConsulAgent, nodes: usize) -> Router {
    let http = reqwest::Client::new();
    let port = free_port();
    futures::stream::iter(0..1000)
        .for_each_concurrent(16, |i| {
            let http = http.clone();
            async move {
                let node = format!("ext-{}", i % nodes.max(1));
                let place = if nodes == 0 { Place::Agent } else { Place::Node(&node) };
                register_at(consul, &http, place, &format!("svc{i}"), port, &format!("urlprefix-svc{i}.example.com/"))
                    .await;
            }
        })
        .await;
    let router = Router::start(consul, &[]).await;
    let loaded = wait_until(Duration::from_secs(30), || async {
        let text = router.http.get(format!("http://{}/metrics", router.admin)).send().await.ok()?.text().await.ok()?;
        text.lines().any(|l| l == "router_routes 1000").then_some(())
    })
    .await;
    assert!(loaded.is_some(), "1,000 routes loaded");
    router
}

#[tokio::test]
async fn register_to_routed_with_1000_services_on_20_nodes() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let router = catalog_of_1000(&consul, 20).await;
    let samples = measure(&consul, &router, Place::Node("ext-0"), "1,000 services on 20 nodes").await;
    assert!(samples[SAMPLES / 2] < Duration::from_secs(1), "median {:?}", samples[SAMPLES / 2]);
}

#[tokio::test]
async fn register_to_routed_with_1000_services_on_one_node() {
    let consul = ConsulAgent::start().await.expect("consul starts");
    let router = catalog_of_1000(&consul, 0).await;
    let samples = measure(&consul, &router, Place::Agent, "1,000 services on one node").await;
    assert!(samples[SAMPLES / 2] < Duration::from_secs(1), "median {:?}", samples[SAMPLES / 2]);
}
