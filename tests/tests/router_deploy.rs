//! Backends deployed under load without failed requests, through the real
//! parts: Docker containers (busybox `httpd` with a CGI script that answers
//! GET and POST), the registrar registering them from their `SERVICE_*`
//! variables, Consul, and the router. Clients send GETs and POSTs without
//! pause while every container of the service is replaced one by one
//! (`docker stop`), and while one is `docker kill`ed.
//!
//! What makes the rolling deploy lossless: the registrar registers a new
//! container only once its port accepts connections, and deregisters an old
//! one at its stop signal (before it exits); the router retries refused
//! connects for every method and unanswered GETs on another instance. The
//! containers start slowly (a second before `httpd` listens) and ignore
//! SIGTERM (busybox as PID 1), so `docker stop -t 1` kills them a second
//! after the stop signal, like an application that drains and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integration_tests::docker::{Container, TestImage, unique};
use integration_tests::router::Router;
use integration_tests::{ConsulAgent, Daemon, wait_until};
use tokio::task::JoinSet;

const REPLICAS: usize = 3;
const GET_CLIENTS: usize = 2;
const POST_CLIENTS: usize = 2;
const T: Duration = Duration::from_secs(20);

struct Deploy {
    image: TestImage,
    _consul: ConsulAgent,
    router: Router,
    _registrar: Daemon,
    node: String,
    host: String,
}

impl Deploy {
    async fn start() -> Deploy {
        let image = TestImage::build().expect("test image builds");
        let consul = ConsulAgent::start().await.expect("consul starts");
        let node = unique("deploy");
        let args: Vec<String> =
            ["--consul-addr", &consul.http_addr(), "--node-name", &node, "--host-ip", "127.0.0.1", "--resync", "2"]
                .iter()
                .map(|a| a.to_string())
                .collect();
        let registrar = Daemon::spawn("registrar", &args, &[]).expect("registrar built (cargo build -p registrar)");
        let router = Router::start(&consul, &[]).await;
        let host = format!("{node}.local");
        Deploy { image, _consul: consul, router, _registrar: registrar, node, host }
    }

    /// A container of the service that listens a second after it starts.
    fn container(&self, n: usize) -> Container {
        let name = format!("{}-{n}", self.node);
        let tags = format!("SERVICE_TAGS=urlprefix-{}/", self.host);
        let service = format!("SERVICE_NAME={}", self.node);
        let args = ["-p", "80", "-e", &service, "-e", &tags, self.image.tag()];
        let cmd = ["sh", "-c", "sleep 1; exec httpd -f -p 80 -h /www"];
        Container::run(&name, &[&args[..], &cmd[..]].concat()).expect("container runs")
    }

    /// The container names the router routes the service to, sorted.
    async fn routed(&self) -> Vec<String> {
        let routes = self.router.admin_json("/api/routes").await;
        let mut ids: Vec<String> = routes
            .as_array()
            .map(|a| a.iter().filter(|e| e["host"] == self.host.as_str()))
            .into_iter()
            .flatten()
            .filter_map(|e| e["instance"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    async fn wait_routed(&self, containers: &[&Container]) {
        let mut want: Vec<String> = containers.iter().map(|c| format!("{}:{}:80", self.node, c.name())).collect();
        want.sort();
        let got = wait_until(T, || async { (self.routed().await == want).then_some(()) }).await;
        assert!(got.is_some(), "routed {:?}, want {want:?}", self.routed().await);
    }
}

/// Requests sent and failed by the clients.
#[derive(Debug, Default)]
struct Tally {
    gets: u64,
    posts: u64,
    failed_gets: u64,
    failed_posts: u64,
    /// The first few failures, for the assertion message.
    examples: Vec<String>,
}

/// Clients sending GETs and POSTs back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: JoinSet<Tally>,
}

impl Load {
    fn start(router: &Router, host: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for i in 0..GET_CLIENTS + POST_CLIENTS {
            let post = i >= GET_CLIENTS;
            let (stop, http, host) = (stop.clone(), router.http.clone(), host.to_string());
            let url = format!("http://{}/cgi-bin/ok", router.proxy);
            clients.spawn(async move {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let req = if post { http.post(&url).body("payload=1") } else { http.get(&url) };
                    let outcome = match req.header("host", &host).send().await {
                        Ok(r) if r.status() == 200 => match r.text().await {
                            Ok(body) if body.starts_with("ok ") => Ok(()),
                            Ok(body) => Err(format!("200 with {body:?}")),
                            Err(e) => Err(format!("body: {e}")),
                        },
                        Ok(r) => Err(format!("{} {:?}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) => Err(format!("{e}")),
                    };
                    match (post, outcome) {
                        (false, Ok(())) => t.gets += 1,
                        (true, Ok(())) => t.posts += 1,
                        (post, Err(e)) => {
                            if post {
                                t.failed_posts += 1;
                            } else {
                                t.failed_gets += 1;
                            }
                            if t.examples.len() < 5 {
                                t.examples.push(format!("{}: {e}", if post { "POST" } else { "GET" }));
                            }
                        }
                    }
                }
                t
            });
        }
        Load { stop, clients }
    }

    async fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        while let Some(t) = self.clients.join_next().await {
            let t = t.expect("client task");
            all.gets += t.gets;
            all.posts += t.posts;
            all.failed_gets += t.failed_gets;
            all.failed_posts += t.failed_posts;
            all.examples.extend(t.examples);
        }
        all
    }
}

/// The service's first containers, routed, and clients under way.
async fn under_load(d: &Deploy) -> (Vec<Container>, Load) {
    let containers: Vec<Container> = (0..REPLICAS).map(|n| d.container(n)).collect();
    d.wait_routed(&containers.iter().collect::<Vec<_>>()).await;
    let load = Load::start(&d.router, &d.host);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (containers, load)
}

#[tokio::test]
async fn a_rolling_deploy_under_load_fails_no_request() {
    let d = Deploy::start().await;
    let (mut old, load) = under_load(&d).await;
    let mut new = Vec::new();
    for n in 0..REPLICAS {
        // Start the replacement; once it is routed, stop an old one.
        new.push(d.container(REPLICAS + n));
        let mut live: Vec<&Container> = old.iter().chain(new.iter()).collect();
        d.wait_routed(&live).await;
        let retiring = old.remove(0);
        retiring.stop().expect("docker stop");
        live = old.iter().chain(new.iter()).collect();
        d.wait_routed(&live).await;
        drop(retiring);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = load.finish().await;
    eprintln!("rolling deploy: {t:?}");
    assert!(t.gets > 100 && t.posts > 100, "load ran: {t:?}");
    assert_eq!((t.failed_gets, t.failed_posts), (0, 0), "{t:?}");
}

#[tokio::test]
async fn a_killed_container_fails_at_most_the_posts_in_flight_on_it() {
    let d = Deploy::start().await;
    let (mut containers, load) = under_load(&d).await;
    let killed = containers.remove(0);
    killed.kill().expect("docker kill");
    d.wait_routed(&containers.iter().collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = load.finish().await;
    eprintln!("kill: {t:?}");
    assert!(t.gets > 50 && t.posts > 50, "load ran: {t:?}");
    // A GET cut off mid-way is sent again; a POST is not, and each POST
    // client has at most one request in flight.
    assert_eq!(t.failed_gets, 0, "{t:?}");
    assert!(t.failed_posts <= POST_CLIENTS as u64, "{t:?}");
}
