//! The registrar's Docker source against the real Docker engine and a real
//! Consul: conventions, addressing, health, removal, crash recovery, Consul
//! restarts and renames. Tests share the engine and run in parallel, so
//! each uses its own node name and container names and looks only at the
//! entries of its own containers.

use std::collections::BTreeMap;
use std::time::Duration;

use consul::{AgentService, CheckStatus};
use integration_tests::docker::{Container, Network, TestImage, unique};
use integration_tests::{ConsulAgent, Daemon, wait_until};

/// Long enough for a loaded 2-core machine, short against a 30 s default.
const WAIT: Duration = Duration::from_secs(15);

struct Setup {
    consul: ConsulAgent,
    image: TestImage,
    node: String,
}

async fn setup(test: &str) -> Setup {
    let image = TestImage::build().expect("test image builds");
    let consul = ConsulAgent::start().await.expect("consul starts");
    Setup { consul, image, node: unique(test) }
}

fn registrar(s: &Setup, node: &str, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = ["--consul-addr", &s.consul.http_addr(), "--node-name", node, "--host-ip", "127.0.0.1"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if !extra.contains(&"--resync") {
        args.extend(["--resync".to_string(), "2".to_string()]);
    }
    // Most containers here run `sleep` and accept no connection: register
    // them at once (waiting for ports is tested in router_deploy.rs).
    if !extra.contains(&"--ready-timeout") {
        args.extend(["--ready-timeout".to_string(), "0s".to_string()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    Daemon::spawn("registrar", &args, &[]).expect("registrar binary built (cargo build -p registrar --bins)")
}

/// The agent's entries registered by `node` for containers named with `prefix`.
async fn entries(s: &Setup, node: &str, prefix: &str) -> Option<BTreeMap<String, AgentService>> {
    let all = s.consul.client().agent_services().await.ok()?;
    Some(
        all.into_iter()
            .filter(|(_, svc)| {
                svc.meta.get("registrar-node").is_some_and(|n| n == node)
                    && svc.meta.get("container-name").is_some_and(|c| c.starts_with(prefix))
            })
            .collect(),
    )
}

/// Waits until the entries of `prefix`'s containers have exactly `ids`.
async fn wait_ids(s: &Setup, node: &str, prefix: &str, ids: &[String]) -> BTreeMap<String, AgentService> {
    let last = std::cell::RefCell::new(None);
    let mut want = ids.to_vec();
    want.sort();
    let got = wait_until(WAIT, || {
        let (last, want) = (&last, &want);
        async move {
            let e = entries(s, node, prefix).await?;
            let keys: Vec<String> = e.keys().cloned().collect();
            let done = &keys == want;
            *last.borrow_mut() = Some(keys);
            done.then_some(e)
        }
    })
    .await;
    got.unwrap_or_else(|| panic!("entries for {prefix}: want {ids:?}, last seen {last:?}"))
}

fn id(node: &str, container: &str, port: u16) -> String {
    format!("{node}:{container}:{port}")
}

#[tokio::test]
async fn env_and_label_conventions_with_published_port() {
    let s = setup("conv").await;
    let name = unique("conv");
    let c = Container::run(
        &name,
        &[
            "-p",
            "80",
            "-e",
            "SERVICE_NAME=from-env",
            "-e",
            r"SERVICE_TAGS=urlprefix-conv.local/,redirect=301\,https://x/",
            "-e",
            "SERVICE_REGION=eu",
            "-e",
            "SERVICE_CHECK_INTERVAL=not-a-duration",
            "-e",
            "SERVICE_CHECK_TCP=true",
            "-l",
            "SERVICE_NAME=from-label",
            "-l",
            "SERVICE_TEAM=edge",
            s.image.tag(),
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    )
    .expect("container runs");
    let r = registrar(&s, &s.node, &["--tags", "extra1,extra2"]);
    let e = wait_ids(&s, &s.node, &name, &[id(&s.node, &name, 80)]).await;
    let svc = &e[&id(&s.node, &name, 80)];
    assert_eq!(svc.service, "from-label");
    assert_eq!(svc.tags, ["urlprefix-conv.local/", "redirect=301,https://x/", "extra1", "extra2"]);
    assert_eq!(svc.address, "127.0.0.1");
    assert_eq!(svc.port, c.host_port(80).unwrap());
    assert_eq!((svc.meta["region"].as_str(), svc.meta["team"].as_str()), ("eu", "edge"));
    assert_eq!(svc.meta["registrar-source"], "docker");

    // The bad interval costs only itself: a warning naming the container and
    // the key, and the TCP check is registered (with the default interval).
    let warned =
        r.logs().lines().any(|l| l.contains("WARN") && l.contains(&name) && l.contains("SERVICE_CHECK_INTERVAL"));
    assert!(warned, "no warning naming {name} and SERVICE_CHECK_INTERVAL:\n{}", r.logs());
    let client = s.consul.client();
    let check_id = format!("service:{}", id(&s.node, &name, 80));
    let checks = client.health_state_any(&Default::default()).await.expect("health state").value;
    assert!(checks.iter().any(|c| c.check_id == check_id), "TCP check {check_id} not registered");
}

#[tokio::test]
async fn several_ports_published_versus_internal() {
    let s = setup("ports").await;
    let name = unique("ports");
    let c = Container::run(
        &name,
        &["-p", "80", "--expose", "8080", "-e", "SERVICE_8080_NAME=admin", s.image.tag(), "httpd", "-f", "-p", "80"],
    )
    .expect("container runs");
    let published_node = format!("{}-pub", s.node);
    let internal_node = format!("{}-int", s.node);
    let _published = registrar(&s, &published_node, &[]);
    let _internal = registrar(&s, &internal_node, &["--internal"]);

    // Published: only the published port, at the host address and port.
    let e = wait_ids(&s, &published_node, &name, &[id(&published_node, &name, 80)]).await;
    let svc = &e[&id(&published_node, &name, 80)];
    assert_eq!((svc.service.as_str(), svc.address.as_str()), ("edge-test-busybox", "127.0.0.1"));
    assert_eq!(svc.port, c.host_port(80).unwrap());

    // Internal: both ports, at the container's bridge IP and container ports.
    let ids = [id(&internal_node, &name, 80), id(&internal_node, &name, 8080)];
    let e = wait_ids(&s, &internal_node, &name, &ids).await;
    let ip = c.ip_on("bridge").unwrap();
    let http = &e[&ids[0]];
    assert_eq!((http.service.as_str(), http.address.as_str(), http.port), ("edge-test-busybox-80", ip.as_str(), 80));
    let admin = &e[&ids[1]];
    assert_eq!((admin.service.as_str(), admin.address.as_str(), admin.port), ("admin", ip.as_str(), 8080));
}

#[tokio::test]
async fn user_defined_network_registers_its_address() {
    let s = setup("net").await;
    let net = Network::create(&unique("net")).expect("network created");
    let name = unique("net");
    let c = Container::run(&name, &["--network", net.name(), "--expose", "80", s.image.tag(), "sleep", "600"])
        .expect("container runs");
    let r = registrar(&s, &s.node, &["--internal"]);
    let e = wait_ids(&s, &s.node, &name, &[id(&s.node, &name, 80)]).await;
    let ip = c.ip_on(net.name()).unwrap();
    assert!(!ip.is_empty());
    assert_eq!(e[&id(&s.node, &name, 80)].address, ip);

    // Also on the default bridge now: the network its mode names still wins.
    let changes = || r.logs().matches("workload changed").count();
    let before = changes();
    integration_tests::docker::docker(&["network", "connect", "bridge", c.id()]).unwrap();
    let seen = wait_until(WAIT, || async { (changes() > before).then_some(()) }).await;
    assert!(seen.is_some(), "registrar did not follow the network connect event");
    let e = entries(&s, &s.node, &name).await.unwrap();
    assert_eq!(e[&id(&s.node, &name, 80)].address, ip, "switched away from the network named by the mode");
}

#[tokio::test]
async fn host_network_registers_host_address_and_exposed_ports() {
    let s = setup("host").await;
    let name = unique("host");
    let _c = Container::run(&name, &["--network", "host", "--expose", "18081", s.image.tag(), "sleep", "600"])
        .expect("container runs");
    let _r = registrar(&s, &s.node, &[]);
    let e = wait_ids(&s, &s.node, &name, &[id(&s.node, &name, 18081)]).await;
    let svc = &e[&id(&s.node, &name, 18081)];
    assert_eq!((svc.address.as_str(), svc.port), ("127.0.0.1", 18081));
}

#[tokio::test]
async fn nothing_published_registers_nothing_and_network_connect_is_followed() {
    let s = setup("conn").await;
    let net = Network::create(&unique("conn")).expect("network created");
    let name = unique("conn");
    let c = Container::run(&name, &["--network", "none", "--expose", "80", s.image.tag(), "sleep", "600"])
        .expect("container runs");
    let r = registrar(&s, &s.node, &["--internal"]);
    // A container in `none` has no address: nothing to register, at debug.
    let logged = wait_until(WAIT, || async { r.logs().contains("nothing to register").then_some(()) }).await;
    assert!(logged.is_some(), "registrar did not note the container with nothing to register");
    assert!(entries(&s, &s.node, &name).await.unwrap().is_empty());
    // Disconnect from none and connect to a network: only network events fire.
    integration_tests::docker::docker(&["network", "disconnect", "none", c.id()]).unwrap();
    integration_tests::docker::docker(&["network", "connect", net.name(), c.id()]).unwrap();
    let e = wait_ids(&s, &s.node, &name, &[id(&s.node, &name, 80)]).await;
    assert_eq!(e[&id(&s.node, &name, 80)].address, c.ip_on(net.name()).unwrap());
}

#[tokio::test]
async fn healthcheck_flips_the_consul_check() {
    let s = setup("health").await;
    let name = unique("health");
    let _c = Container::run(
        &name,
        &[
            "--expose",
            "80",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "300ms",
            "--health-retries",
            "1",
            s.image.tag(),
            "sleep",
            "600",
        ],
    )
    .expect("container runs");
    let _r = registrar(&s, &s.node, &["--internal"]);
    let sid = id(&s.node, &name, 80);
    wait_ids(&s, &s.node, &name, std::slice::from_ref(&sid)).await;
    let check_id = format!("service:{sid}:health");
    let client = s.consul.client();
    let status = || {
        let (client, check_id) = (client.clone(), check_id.clone());
        async move {
            let checks = client.health_state_any(&Default::default()).await.ok()?.value;
            checks.into_iter().find(|c| c.check_id == check_id).map(|c| c.status)
        }
    };
    let until = |want: CheckStatus| {
        let status = &status;
        async move { wait_until(WAIT, || async { (status().await? == want).then_some(()) }).await }
    };
    assert!(until(CheckStatus::Critical).await.is_some(), "starting container is not critical");
    _c.exec(&["touch", "/tmp/ok"]).unwrap();
    assert!(until(CheckStatus::Passing).await.is_some(), "healthy container did not pass");
    _c.exec(&["rm", "/tmp/ok"]).unwrap();
    assert!(until(CheckStatus::Critical).await.is_some(), "unhealthy container did not go critical");
}

#[tokio::test]
async fn stop_kill_and_rm_remove_the_entry() {
    let s = setup("gone").await;
    let prefix = unique("gone");
    let names: Vec<String> = ["stop", "kill", "rm"].iter().map(|k| format!("{prefix}-{k}")).collect();
    let containers: Vec<Container> = names
        .iter()
        .map(|n| Container::run(n, &["--expose", "80", s.image.tag(), "sleep", "600"]).expect("container runs"))
        .collect();
    let _r = registrar(&s, &s.node, &["--internal"]);
    let mut ids: Vec<String> = names.iter().map(|n| id(&s.node, n, 80)).collect();
    wait_ids(&s, &s.node, &prefix, &ids).await;
    containers[0].stop().unwrap();
    ids.remove(0);
    wait_ids(&s, &s.node, &prefix, &ids).await;
    containers[1].kill().unwrap();
    ids.remove(0);
    wait_ids(&s, &s.node, &prefix, &ids).await;
    containers[2].remove().unwrap();
    wait_ids(&s, &s.node, &prefix, &[]).await;
}

#[tokio::test]
async fn sigkilled_registrar_leaves_no_stale_or_missing_entry_after_restart() {
    let s = setup("crash").await;
    let prefix = unique("crash");
    let run = |n: &str| Container::run(n, &["--expose", "80", s.image.tag(), "sleep", "600"]).expect("container runs");
    let (a, b, c) = (format!("{prefix}-a"), format!("{prefix}-b"), format!("{prefix}-c"));
    let ca = run(&a);
    let _cb = run(&b);
    let mut r = registrar(&s, &s.node, &["--internal"]);
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &a, 80), id(&s.node, &b, 80)]).await;

    r.kill();
    ca.remove().unwrap();
    let _cc = run(&c);
    // Nothing follows Docker while the registrar is down: the stale entry stays.
    assert!(entries(&s, &s.node, &prefix).await.unwrap().contains_key(&id(&s.node, &a, 80)));

    // With a 300 s resync, only the reconcile at start can fix both.
    let _r = registrar(&s, &s.node, &["--internal", "--resync", "300"]);
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &b, 80), id(&s.node, &c, 80)]).await;
}

#[tokio::test]
async fn consul_restart_gets_everything_back() {
    let mut s = setup("restart").await;
    let name = unique("restart");
    let _c = Container::run(&name, &["--expose", "80", "-e", "SERVICE_TAGS=a,b", s.image.tag(), "sleep", "600"])
        .expect("container runs");
    let _r = registrar(&s, &s.node, &["--internal", "--resync", "300"]);
    let sid = id(&s.node, &name, 80);
    let before = wait_ids(&s, &s.node, &name, std::slice::from_ref(&sid)).await;
    s.consul.restart().await.expect("consul restarts");
    // Dev mode comes back empty; with a 300 s resync only the lost-entry
    // detection can bring it back this fast.
    let after = wait_ids(&s, &s.node, &name, std::slice::from_ref(&sid)).await;
    assert_eq!(before[&sid], after[&sid]);
}

#[tokio::test]
async fn rename_replaces_the_entry() {
    let s = setup("rename").await;
    let name = unique("rename");
    let mut c = Container::run(&name, &["--expose", "80", s.image.tag(), "sleep", "600"]).expect("container runs");
    let _r = registrar(&s, &s.node, &["--internal"]);
    wait_ids(&s, &s.node, &name, &[id(&s.node, &name, 80)]).await;
    let renamed = format!("{name}-renamed");
    c.rename(&renamed).unwrap();
    let e = wait_ids(&s, &s.node, &name, &[id(&s.node, &renamed, 80)]).await;
    assert_eq!(e[&id(&s.node, &renamed, 80)].meta["container-name"], renamed);
}

#[tokio::test]
async fn consul_outage_loses_nothing() {
    let mut s = setup("down").await;
    let prefix = unique("down");
    let run = |n: &str| Container::run(n, &["--expose", "80", s.image.tag(), "sleep", "600"]).expect("container runs");
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let ca = run(&a);
    let r = registrar(&s, &s.node, &["--internal", "--resync", "300"]);
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &a, 80)]).await;

    s.consul.stop();
    ca.remove().unwrap();
    let _cb = run(&b);
    // The registrar saw the changes and could not tell Consul.
    let failed = wait_until(WAIT, || async { r.logs().contains("Consul call failed").then_some(()) }).await;
    assert!(failed.is_some(), "registrar never noticed Consul was down");
    s.consul.restart().await.expect("consul restarts");
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &b, 80)]).await;
}

/// A stand-in for the Docker socket that can go away and come back, as the
/// daemon does on a restart (the real daemon is shared with other tests).
struct DockerSocketProxy {
    path: std::path::PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DockerSocketProxy {
    fn new(dir: &std::path::Path) -> Self {
        DockerSocketProxy { path: dir.join("docker.sock"), task: None }
    }

    fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind proxy socket");
        self.task = Some(tokio::spawn(async move {
            // Owned here: aborting the accept loop drops every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerSocketProxy {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_going_away_is_survived_and_reconciled() {
    let s = setup("dockerd").await;
    let dir = tempfile::Builder::new().prefix("edge-docker-proxy-").tempdir().unwrap();
    let mut proxy = DockerSocketProxy::new(dir.path());
    proxy.up();
    let prefix = unique("dockerd");
    let run = |n: &str| Container::run(n, &["--expose", "80", s.image.tag(), "sleep", "600"]).expect("container runs");
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let ca = run(&a);
    let docker_host = format!("unix://{}", proxy.path.display());
    let mut r = registrar(&s, &s.node, &["--internal", "--resync", "300", "--docker-host", &docker_host]);
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &a, 80)]).await;

    proxy.down();
    let noticed = wait_until(WAIT, || async { r.logs().contains("Docker unavailable").then_some(()) }).await;
    assert!(noticed.is_some(), "registrar did not notice Docker going away");
    ca.remove().unwrap();
    let _cb = run(&b);
    assert!(r.wait_exit(Duration::from_millis(500)).is_none(), "registrar exited while Docker was away");
    proxy.up();
    // Reconnect -> relist -> reconcile: the stale entry goes, the new one comes.
    wait_ids(&s, &s.node, &prefix, &[id(&s.node, &b, 80)]).await;
}

#[tokio::test]
async fn a_container_is_registered_once_its_port_accepts_and_removed_at_its_stop_signal() {
    let s = setup("ready").await;
    let r = registrar(&s, &s.node, &["--ready-timeout", "10s"]);
    // Started after the listing: a container listed running is registered
    // at once (it is serving, or was started before the registrar).
    let up = wait_until(WAIT, || async { r.logs().contains("Docker connected").then_some(()) }).await;
    assert!(up.is_some(), "registrar did not connect to Docker:\n{}", r.logs());
    let name = unique("ready");
    // httpd listens two seconds after the start; busybox as PID 1 ignores
    // SIGTERM, so `docker stop -t 4` leaves it running for four seconds.
    let c = Container::run(&name, &["-p", "80", s.image.tag(), "sh", "-c", "sleep 2; exec httpd -f -p 80 -h /www"])
        .expect("container runs");
    let ip = c.ip_on("bridge").expect("bridge address");
    let sid = id(&s.node, &name, 80);
    let listed = wait_until(WAIT, || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        entries(&s, &s.node, &name).await.filter(|e| e.contains_key(&sid))
    })
    .await;
    assert!(listed.is_some(), "{sid} registered");
    let accepted = tokio::net::TcpStream::connect((ip.as_str(), 80)).await;
    assert!(accepted.is_ok(), "registered before its port accepted connections: {accepted:?}");

    let id = c.id().to_string();
    let stop = std::thread::spawn(move || integration_tests::docker::docker(&["stop", "-t", "4", &id]));
    let gone = wait_until(Duration::from_secs(3), || async {
        entries(&s, &s.node, &name).await.filter(|e| e.is_empty()).map(drop)
    })
    .await;
    assert!(gone.is_some(), "still registered 3 s after the stop signal");
    assert_eq!(c.inspect("{{.State.Running}}").expect("inspect"), "true", "removed before it exited");
    stop.join().expect("docker stop thread").expect("docker stop");
}
