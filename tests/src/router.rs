//! Shared by the router integration tests: real backends on loopback (small
//! hyper servers that answer with their name, the path and the headers they
//! received, echo upgraded connections, and can be slow or killed), a router
//! daemon on free ports waited on until healthy, and Consul helpers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{ConsulAgent, Daemon, free_port, wait_until};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A backend answering `{"name", "path", "query", "headers"}`; `/slow?ms=N`
/// waits N ms first; an upgrade request gets 101 and an echo of every byte.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
    /// Requests that reached the backend so far (counted on arrival,
    /// before any answer), so a test can wait for one instead of sleeping.
    arrived: watch::Receiver<u64>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::start_on(name, 0).await
    }

    /// On a given loopback port (0: any free one).
    pub async fn start_on(name: &str, port: u16) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let mut tasks = JoinSet::new();
        let n = name.to_string();
        let (count, arrived) = watch::channel(0u64);
        let count = Arc::new(count);
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (n, count) = (n.clone(), count.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        count.send_modify(|c| *c += 1);
                        answer(n.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend { name: name.to_string(), addr, tasks, arrived }
    }

    /// Requests that reached this backend so far.
    pub fn arrived(&self) -> u64 {
        *self.arrived.borrow()
    }

    /// Waits up to `timeout` until more than `seen` requests reached this backend.
    pub async fn wait_arrived(&self, seen: u64, timeout: Duration) {
        let mut arrived = self.arrived.clone();
        let got = tokio::time::timeout(timeout, arrived.wait_for(|n| *n > seen)).await;
        assert!(matches!(got, Ok(Ok(_))), "no request reached backend {} within {timeout:?}", self.name);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening and drops every open connection, like a crash.
    pub fn kill(&mut self) {
        self.tasks.abort_all();
    }
}

async fn answer(name: String, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .expect("static response");
        return Ok(resp);
    }
    if req.uri().path() == "/slow" {
        let ms = req.uri().query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = serde_json::json!({
        "name": name,
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "headers": headers,
    });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

/// The router daemon on free loopback ports.
pub struct Router {
    pub daemon: Daemon,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub http: reqwest::Client,
}

impl Router {
    /// Starts a router for `consul` and waits until `/health` answers 200.
    pub async fn start(consul: &ConsulAgent, extra: &[&str]) -> Router {
        let r = Router::spawn(consul, extra);
        r.wait_healthy(Duration::from_secs(15)).await;
        r
    }

    /// Starts a router without waiting.
    pub fn spawn(consul: &ConsulAgent, extra: &[&str]) -> Router {
        let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut args = vec![
            "--consul-addr".to_string(),
            consul.http_addr(),
            "--proxy-addr".into(),
            proxy.to_string(),
            "--admin-addr".into(),
            admin.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let daemon = Daemon::spawn("router", &args, &[]).expect("router binary built (cargo build -p router)");
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Router { daemon, proxy, admin, http }
    }

    pub async fn health(&self) -> Option<(u16, String)> {
        self.admin_text("/health").await
    }

    pub async fn wait_consul_healthy(&self, timeout: Duration) {
        let ok =
            wait_until(timeout, || async { self.admin_text("/health/consul").await.filter(|(s, _)| *s == 200) }).await;
        assert!(
            ok.is_some(),
            "router does not hear Consul after {timeout:?}: {:?}",
            self.admin_text("/health/consul").await
        );
    }

    /// Status and body of an admin page.
    pub async fn admin_text(&self, path: &str) -> Option<(u16, String)> {
        let r = self.http.get(format!("http://{}{path}", self.admin)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    pub async fn wait_healthy(&self, timeout: Duration) {
        let ok = wait_until(timeout, || async { self.health().await.filter(|(s, _)| *s == 200) }).await;
        assert!(ok.is_some(), "router not healthy after {timeout:?}: {:?}", self.health().await);
    }

    /// GET through the proxy with a Host header.
    pub async fn get(&self, host: &str, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http.get(format!("http://{}{}", self.proxy, path)).header("host", host).send().await
    }

    /// GET through the proxy; status and the backend's JSON (Null when the
    /// body is not JSON).
    pub async fn fetch(&self, host: &str, path: &str) -> (u16, serde_json::Value) {
        match self.get(host, path).await {
            Ok(r) => {
                let s = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                (s, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// Waits until `host`+`path` is answered by backend `name`.
    pub async fn wait_routed_to(&self, host: &str, path: &str, name: &str, timeout: Duration) {
        let got = wait_until(timeout, || async {
            let (s, v) = self.fetch(host, path).await;
            (s == 200 && v["name"] == name).then_some(())
        })
        .await;
        assert!(
            got.is_some(),
            "{host}{path} not routed to {name} within {timeout:?}: {:?}",
            self.fetch(host, path).await
        );
    }

    /// Waits until `host`+`path` answers `status`.
    pub async fn wait_status(&self, host: &str, path: &str, status: u16, timeout: Duration) {
        let got = wait_until(timeout, || async { (self.fetch(host, path).await.0 == status).then_some(()) }).await;
        assert!(
            got.is_some(),
            "{host}{path} did not answer {status} within {timeout:?}: {:?}",
            self.fetch(host, path).await
        );
    }

    /// The value of one series of `/metrics` (`name{labels}` as printed),
    /// 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.admin_text("/metrics").await.map(|(_, t)| t).unwrap_or_default();
        text.lines().filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).next().unwrap_or(0.0)
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(format!("http://{}{}", self.admin, path)).send().await.expect("admin answers");
        r.json().await.expect("admin JSON")
    }
}

/// Registers `id` of service `name` on 127.0.0.1:`port` with `tags`, no checks.
pub async fn register(client: &consul::Client, id: &str, name: &str, port: u16, tags: &[&str]) {
    register_with(client, id, name, port, tags, vec![]).await;
}

pub async fn register_with(
    client: &consul::Client,
    id: &str,
    name: &str,
    port: u16,
    tags: &[&str],
    checks: Vec<consul::CheckRegistration>,
) {
    let reg = consul::ServiceRegistration {
        id: id.into(),
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: "127.0.0.1".into(),
        port: Some(port),
        checks,
        ..Default::default()
    };
    client.register_service(&reg).await.expect("register in Consul");
}

/// A TTL check starting as `status` ("passing" or "critical").
pub fn ttl_check(status: &str) -> consul::CheckRegistration {
    consul::CheckRegistration { ttl: "60s".into(), status: status.into(), ..Default::default() }
}
