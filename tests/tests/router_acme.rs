//! Automatic certificates: real routers sharing one real Consul, ordering
//! from a real ACME server (Pebble), which validates HTTP-01 and
//! TLS-ALPN-01 against the routers' own listeners on loopback. Pebble
//! resolves every name through `pebble-challtestsrv`'s DNS, which answers
//! 127.0.0.1 (or what a test sets), so no validation leaves the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::router::{Backend, Router, register};
use integration_tests::{ConsulAgent, Daemon, free_port, wait_until};

/// Long enough for an order on a loaded machine, short for a test.
const ISSUE: Duration = Duration::from_secs(60);

/// Pebble and its DNS stand-in.
struct Pebble {
    daemons: Vec<Daemon>,
    dir: tempfile::TempDir,
    directory: String,
    port: u16,
    mgmt: u16,
    dns: u16,
    dns_mgmt: u16,
    /// Lifetime of issued certificates, seconds (Pebble's default: 5 years).
    validity: Option<u64>,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("command runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Pebble {
    /// Ports and Pebble's own TLS certificate (its directory is https
    /// only): what the routers need before Pebble, which in turn needs the
    /// routers' ports, is started.
    fn prepare() -> Pebble {
        let dir = tempfile::Builder::new().prefix("edge-pebble-").tempdir().expect("tempdir");
        let ssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir.path()));
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        ssl(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=edge test CA"],
        ]
        .concat());
        ssl(&[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=pebble"]].concat());
        std::fs::write(dir.path().join("ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
        ssl(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial"]
            .into_iter()
            .chain(["-out", "cert.pem", "-days", "2", "-extfile", "ext"])
            .collect::<Vec<_>>());
        let port = free_port();
        Pebble {
            daemons: Vec::new(),
            dir,
            directory: format!("https://127.0.0.1:{port}/dir"),
            port,
            mgmt: free_port(),
            dns: free_port(),
            dns_mgmt: free_port(),
            validity: None,
        }
    }

    /// Starts Pebble validating on 127.0.0.1:`http_port` (HTTP-01) and
    /// 127.0.0.1:`tls_port` (TLS-ALPN-01), with `env` (e.g.
    /// `PEBBLE_VA_ALWAYS_INVALID`).
    async fn start(&mut self, http_port: u16, tls_port: u16, env: &[(&str, &str)]) {
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.mgmt),
            "certificate": self.dir.path().join("cert.pem"),
            "privateKey": self.dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(secs) = self.validity {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let mut c = Command::new("pebble-challtestsrv");
        c.args(["-dns01", &format!("127.0.0.1:{}", self.dns), "-management", &format!("127.0.0.1:{}", self.dns_mgmt)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
        self.daemons.push(Daemon::spawn_command("pebble-challtestsrv", c).expect("pebble-challtestsrv installed"));
        let mut c = Command::new("pebble");
        c.arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{}", self.dns))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        for (k, v) in env {
            c.env(k, v);
        }
        self.daemons.push(Daemon::spawn_command("pebble", c).expect("pebble installed"));
        let up = wait_until(Duration::from_secs(15), || async { self.root().await }).await;
        assert!(up.is_some(), "pebble did not start: {}", self.logs());
    }

    fn logs(&self) -> String {
        self.daemons.iter().map(|d| d.logs()).collect::<Vec<_>>().join("\n")
    }

    /// The CA of Pebble's TLS certificate: the router's `--acme-ca-root`.
    fn tls_root(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root Pebble issues under, from its management port.
    async fn root(&self) -> Option<String> {
        let url = format!("https://127.0.0.1:{}/roots/0", self.mgmt);
        let out = tokio::task::spawn_blocking(move || Command::new("curl").args(["-sfk", &url]).output().ok())
            .await
            .ok()??;
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && pem.contains("BEGIN CERTIFICATE")).then_some(pem)
    }

    /// Makes `host` resolve to `ip` for Pebble's validation.
    fn set_a(&self, host: &str, ip: &str) {
        let body = serde_json::json!({"host": format!("{host}."), "addresses": [ip]}).to_string();
        run(Command::new("curl").args(["-sf", "-d", &body, &format!("http://127.0.0.1:{}/add-a", self.dns_mgmt)]));
    }
}

/// A router with ACME on, its TLS listener on `tls_port`.
fn acme_router(consul: &ConsulAgent, pebble_dir: &str, root: &Path, tls_port: u16, extra: &[&str]) -> Router {
    let tls = format!("127.0.0.1:{tls_port}");
    let root = root.to_string_lossy().into_owned();
    let mut args = vec![
        "--tls-addr",
        &tls,
        "--acme-directory",
        pebble_dir,
        "--acme-agree-tos",
        "--acme-email",
        "ops@example.com",
        "--acme-ca-root",
        &root,
        "--acme-domains",
        "*.example.com,example.org",
        "--acme-retry-min",
        "1s",
        "--acme-retry-max",
        "2s",
    ];
    args.extend_from_slice(extra);
    Router::spawn(consul, &args)
}

/// The chain `port` serves for `sni` and whether it verifies against `root`.
async fn served(port: u16, sni: &str, root: &str) -> Option<(String, bool)> {
    let sni = sni.to_string();
    let root_file = tempfile::NamedTempFile::new().ok()?;
    std::fs::write(root_file.path(), root).ok()?;
    tokio::task::spawn_blocking(move || {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", &sni, "-showcerts"])
            .args(["-CAfile", &root_file.path().to_string_lossy(), "-verify_hostname", &sni])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let issuer = text.lines().find(|l| l.trim_start().starts_with("i:"))?.to_string();
        Some((issuer, text.contains("Verify return code: 0 (ok)")))
    })
    .await
    .ok()
    .flatten()
}

async fn orders(r: &Router, result: &str) -> u64 {
    let text = r.http.get(format!("http://{}/metrics", r.admin)).send().await.expect("metrics").text().await.unwrap();
    let line = format!("router_acme_orders_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The `acme` object `/api/certs` shows for `name`.
async fn acme_state(r: &Router, name: &str) -> serde_json::Value {
    let certs = r.admin_json("/api/certs").await;
    certs
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .map_or(serde_json::Value::Null, |c| c["acme"].clone())
}

/// Waits until `/api/certs` shows `name` in `state` (each router reads the
/// records once a second).
async fn wait_state(r: &Router, name: &str, state: &str) -> serde_json::Value {
    let got = wait_until(Duration::from_secs(10), || async {
        let s = acme_state(r, name).await;
        (s["state"] == state).then_some(s)
    })
    .await;
    match got {
        Some(s) => s,
        None => panic!("{name} not {state}: {}", acme_state(r, name).await),
    }
}

/// Waits until `port` serves `name` a certificate verifying against Pebble's root.
async fn wait_issued(port: u16, name: &str, root: &str) {
    let ok = wait_until(ISSUE, || async { served(port, name, root).await.filter(|(_, ok)| *ok) }).await;
    assert!(ok.is_some(), "{name} not served a verifying certificate on {port}: {:?}", served(port, name, root).await);
}

/// A route for `hosts` to a fresh backend.
async fn route(consul: &ConsulAgent, id: &str, hosts: &[&str]) -> Backend {
    let backend = Backend::start(id).await;
    let tags: Vec<String> = hosts.iter().map(|h| format!("urlprefix-{h}/")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    register(&consul.client(), id, id, backend.port(), &tags).await;
    backend
}

#[tokio::test]
async fn two_routers_order_once_over_http01_and_both_serve_it() {
    let consul = ConsulAgent::start().await.expect("consul");
    let mut pebble = Pebble::prepare();
    let (tls_a, tls_b) = (free_port(), free_port());
    let a = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls_a, &[]);
    let b = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls_b, &[]);
    a.wait_healthy(Duration::from_secs(15)).await;
    b.wait_healthy(Duration::from_secs(15)).await;
    // Validation reaches router A only; whichever router orders, the
    // challenge is answered from KV.
    pebble.start(a.proxy.port(), tls_a, &[]).await;
    let root = pebble.root().await.expect("pebble root");

    let _web = route(&consul, "web", &["www.example.com", "other.net", "*.example.com"]).await;
    wait_issued(tls_a, "www.example.com", &root).await;
    wait_issued(tls_b, "www.example.com", &root).await;
    let (issuer, _) = served(tls_b, "www.example.com", &root).await.expect("served");
    assert!(issuer.contains("Pebble"), "issued by Pebble: {issuer}");

    // Exactly one order, by one of the two.
    let total = orders(&a, "issued").await + orders(&b, "issued").await;
    assert_eq!(total, 1, "one order for one name across both routers");
    assert_eq!(orders(&a, "failed").await + orders(&b, "failed").await, 0);
    for r in [&a, &b] {
        wait_state(r, "www.example.com", "valid").await;
    }
    // Outside --acme-domains, and the wildcard route host: never ordered.
    let kv = consul.client();
    let keys: Vec<String> = kv
        .kv_list("router/acme/state/", &consul::QueryOptions::default())
        .await
        .expect("kv")
        .value
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys, ["router/acme/state/www.example.com"]);
    assert_eq!(acme_state(&a, "other.net").await, serde_json::Value::Null);

    // Challenge paths: answered by the router for names under
    // --acme-domains (an unknown token is a 404 from the router, never
    // proxied), proxied as usual for other hosts.
    let r = a.get("www.example.com", "/.well-known/acme-challenge/unknownToken").await.expect("get");
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no such ACME challenge"));
    let (status, body) = a.fetch("other.net", "/.well-known/acme-challenge/unknownToken").await;
    assert_eq!((status, body["name"].as_str()), (200, Some("web")), "proxied to the backend");
}

#[tokio::test]
async fn tls_alpn01_is_answered_on_the_tls_listener() {
    let consul = ConsulAgent::start().await.expect("consul");
    let mut pebble = Pebble::prepare();
    let tls = free_port();
    let r = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls, &["--acme-challenge", "tls-alpn-01"]);
    r.wait_healthy(Duration::from_secs(15)).await;
    // HTTP-01 would reach a closed port: only TLS-ALPN-01 can pass.
    pebble.start(free_port(), tls, &[]).await;
    let root = pebble.root().await.expect("pebble root");
    let _web = route(&consul, "web", &["example.org"]).await;
    wait_issued(tls, "example.org", &root).await;
    assert_eq!(orders(&r, "issued").await, 1);
    let text = r.http.get(format!("http://{}/metrics", r.admin)).send().await.expect("metrics").text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("router_tls_handshakes_total{result=\"acme_challenge\"}") && !l.ends_with(" 0")),
        "the validation handshakes were counted"
    );
}

#[tokio::test]
async fn a_failing_name_is_shown_and_retried_without_blocking_others() {
    let consul = ConsulAgent::start().await.expect("consul");
    let mut pebble = Pebble::prepare();
    let tls = free_port();
    let r = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls, &[]);
    r.wait_healthy(Duration::from_secs(15)).await;
    pebble.start(r.proxy.port(), tls, &[]).await;
    // Pebble validates bad.example.com at an address nothing listens on.
    pebble.set_a("bad.example.com", "127.0.0.2");
    let root = pebble.root().await.expect("pebble root");
    let _web = route(&consul, "web", &["bad.example.com", "good.example.com"]).await;

    wait_issued(tls, "good.example.com", &root).await;
    let failed = wait_state(&r, "bad.example.com", "failed").await;
    let error = failed["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("connection") || error.contains("127.0.0.2"), "the CA's error is shown: {error}");
    // Retried with backoff (1 s doubling to 2 s here): more attempts follow.
    let retried = wait_until(ISSUE, || async { (orders(&r, "failed").await >= 3).then_some(()) }).await;
    assert!(retried.is_some(), "retried: {} failed orders", orders(&r, "failed").await);
    wait_state(&r, "good.example.com", "valid").await;
    let record = consul
        .client()
        .kv_get("router/acme/state/bad.example.com", &consul::QueryOptions::default())
        .await
        .expect("kv")
        .value
        .expect("record");
    let record: serde_json::Value = serde_json::from_slice(&record.value).expect("json");
    assert!(record["order"]["attempts"].as_u64().unwrap_or(0) >= 2 || record["order"]["status"] == "pending");
    r.wait_healthy(Duration::from_secs(5)).await;
}

/// A loopback TCP relay Pebble validates through: it holds each connection
/// until `open` is set, then relays it to the first router in `to` that
/// accepts — so a validation can be kept waiting while the test kills the
/// ordering router, and is then answered by a surviving one.
async fn relay(to: Vec<std::net::SocketAddr>, open: tokio::sync::watch::Receiver<bool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let to = to.clone();
            let mut open = open.clone();
            tokio::spawn(async move {
                let _ = open.wait_for(|o| *o).await;
                for addr in to {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn the_other_router_completes_an_order_when_the_ordering_one_dies() {
    let consul = ConsulAgent::start().await.expect("consul");
    let mut pebble = Pebble::prepare();
    let (tls_a, tls_b) = (free_port(), free_port());
    let mut a = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls_a, &[]);
    let mut b = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls_b, &[]);
    a.wait_healthy(Duration::from_secs(15)).await;
    b.wait_healthy(Duration::from_secs(15)).await;
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let via = relay(vec![a.proxy, b.proxy], open_rx).await;
    pebble.start(via, free_port(), &[]).await;
    let root = pebble.root().await.expect("pebble root");
    let _web = route(&consul, "web", &["slow.example.com"]).await;

    // Wait for a router to hold the lock with the validation held up.
    let kv = consul.client();
    let holder = wait_until(ISSUE, || async {
        let lock = kv.kv_get("router/acme/locks/slow.example.com", &consul::QueryOptions::default()).await.ok()?;
        lock.value.filter(|p| p.session.is_some()).map(|p| String::from_utf8_lossy(&p.value).into_owned())
    })
    .await
    .expect("a router took the lock");
    let (dead, survivor, survivor_tls) = if holder.ends_with(&a.admin.to_string()) {
        (&mut a, &b, tls_b)
    } else {
        assert!(holder.ends_with(&b.admin.to_string()), "lock value names a router: {holder}");
        (&mut b, &a, tls_a)
    };
    dead.daemon.kill();
    let _ = open_tx.send(true);

    // Its session expires (TTL 10 s, Consul may take twice that), the
    // survivor takes the name over and completes it.
    wait_issued(survivor_tls, "slow.example.com", &root).await;
    assert_eq!(orders(survivor, "issued").await, 1);
    wait_state(survivor, "slow.example.com", "valid").await;
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_before_it_expires() {
    let consul = ConsulAgent::start().await.expect("consul");
    let mut pebble = Pebble::prepare();
    pebble.validity = Some(20);
    let tls = free_port();
    let r = acme_router(&consul, &pebble.directory, &pebble.tls_root(), tls, &["--acme-renew-before", "8s"]);
    r.wait_healthy(Duration::from_secs(15)).await;
    pebble.start(r.proxy.port(), tls, &[]).await;
    let root = pebble.root().await.expect("pebble root");
    let _web = route(&consul, "web", &["short.example.com"]).await;
    wait_issued(tls, "short.example.com", &root).await;

    let cert = |certs: serde_json::Value| {
        certs
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "short.example.com" && c["serial"].is_string())
            .cloned()
    };
    let first = cert(r.admin_json("/api/certs").await).expect("served");
    let not_after = first["not_after"].as_i64().expect("not_after");
    // Every handshake succeeds and verifies until a new certificate is
    // served, and that happens before the first one expires.
    let mut handshakes = 0;
    let renewed = loop {
        let (_, ok) = served(tls, "short.example.com", &root).await.expect("handshake");
        assert!(ok, "a handshake failed or did not verify after {handshakes} good ones");
        handshakes += 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(now < not_after, "not renewed before expiry");
        let current = cert(r.admin_json("/api/certs").await).expect("served");
        if current["serial"] != first["serial"] {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(renewed["not_after"].as_i64() > Some(not_after));
    assert_eq!(orders(&r, "issued").await, 2);
    assert_eq!(orders(&r, "failed").await, 0);
}
