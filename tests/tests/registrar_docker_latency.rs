//! Container start -> entry in Consul -> routable through the router, with
//! the real Docker engine, Consul, registrar and router. The clock starts at
//! Docker's own `start` event (its `timeNano`), so Docker's container setup
//! is not counted against the registrar; `docker start` issued -> Consul is
//! printed too. Baseline measured in the same run: a service registered
//! directly in Consul -> routable (the router's share alone), so the
//! registrar's share reads as the difference.
//!
//! Prints the figures; asserts only that every container is registered and
//! routed. The README records measured values.
//!
//! Reproduce: `cargo build -p registrar -p router --bins && cargo nextest run
//! -p integration-tests -E 'binary(registrar_docker_latency)' --no-capture`
//! (add `--release` to both for release figures).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::docker::{Container, TestImage, docker, unique};
use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, Daemon};

const SAMPLES: usize = 7;
const GIVE_UP: Duration = Duration::from_secs(10);

fn unix_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

fn ms(nanos: i128) -> f64 {
    nanos as f64 / 1e6
}

fn summary(label: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "{label:<46} median {median:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms   (n={})",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
    median
}

/// Docker's timestamp of the container's `start` event, in Unix nanoseconds.
fn start_event_nanos(c: &Container, since_secs: i128) -> i128 {
    let until = unix_nanos() / 1_000_000_000 + 1;
    let out = docker(&[
        "events",
        "--since",
        &since_secs.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={}", c.id()),
        "--filter",
        "event=start",
        "--format",
        "{{.TimeNano}}",
    ])
    .expect("docker events");
    out.lines().last().and_then(|l| l.trim().parse().ok()).expect("a start event")
}

#[tokio::test]
async fn container_start_to_consul_and_to_router() {
    let image = TestImage::build().expect("test image builds");
    let consul = ConsulAgent::start().await.expect("consul starts");
    let node = unique("lat");
    let args: Vec<String> = ["--consul-addr", &consul.http_addr(), "--node-name", &node, "--host-ip", "127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let registrar = Daemon::spawn("registrar", &args, &[("RUST_LOG", "info")]).expect("registrar built");
    let router = Router::start(&consul, &[]).await;
    let client = consul.client();
    // The registrar is up once it has listed Docker.
    let up = integration_tests::wait_until(GIVE_UP, || async {
        registrar.logs().contains("Docker connected").then_some(())
    });
    assert!(up.await.is_some(), "registrar did not connect to Docker");

    // Baseline: direct registration -> routable.
    let backend = Backend::start("direct").await;
    let mut direct = Vec::new();
    for i in 0..SAMPLES {
        let host = format!("direct{i}-{node}.local");
        let t0 = Instant::now();
        register(
            &client,
            &format!("direct-{i}"),
            &format!("direct-{i}"),
            backend.port(),
            &[&format!("urlprefix-{host}/")],
        )
        .await;
        loop {
            if router.get(&host, "/").await.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(t0.elapsed() < GIVE_UP, "direct registration {i} never routed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        direct.push(t0.elapsed().as_secs_f64() * 1e3);
    }

    let (mut to_consul, mut to_router, mut cli_to_consul) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let name = format!("{node}-{i}");
        let host = format!("c{i}-{node}.local");
        let tags = format!("SERVICE_TAGS=urlprefix-{host}/");
        let c =
            Container::create(&name, &["-p", "80", "-e", &tags, image.tag(), "httpd", "-f", "-p", "80", "-h", "/www"])
                .expect("container created");
        let id = format!("{node}:{name}:80");
        let since = unix_nanos() / 1_000_000_000 - 1;
        let issued = unix_nanos();
        c.start().expect("container starts");
        let (mut in_consul, mut routed) = (None, None);
        while in_consul.is_none() || routed.is_none() {
            if in_consul.is_none() && client.agent_services().await.is_ok_and(|s| s.contains_key(&id)) {
                in_consul = Some(unix_nanos());
            }
            if routed.is_none() && router.get(&host, "/").await.is_ok_and(|r| r.status() == 200) {
                routed = Some(unix_nanos());
            }
            assert!(
                ms(unix_nanos() - issued) < GIVE_UP.as_secs_f64() * 1e3,
                "container {i}: consul {in_consul:?} router {routed:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let started = start_event_nanos(&c, since);
        let (in_consul, routed) = (in_consul.unwrap_or_default(), routed.unwrap_or_default());
        to_consul.push(ms(in_consul - started));
        to_router.push(ms(routed.max(in_consul) - started));
        cli_to_consul.push(ms(in_consul - issued));
        c.remove().expect("container removed");
    }
    println!();
    let base = summary("baseline: register in Consul -> routable", direct);
    summary("`docker start` issued -> in Consul", cli_to_consul);
    let consul_ms = summary("container start event -> in Consul", to_consul);
    let routed_ms = summary("container start event -> routable via router", to_router);
    println!(
        "registrar's share (start -> in Consul) {consul_ms:.1} ms; start -> routable is {:.2}x the direct-registration baseline",
        routed_ms / base
    );
}
