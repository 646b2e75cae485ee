//! The admin listener: what operators and vipd look at. `/health` for
//! vipd's check ("this node can serve"), `/health/consul` for vipd's weighted
//! tracking ("this node hears Consul"), `/api/*` for scripts and the UI,
//! `/metrics` for Prometheus, `/` for people. Reads the same published
//! snapshot as the proxy.

mod api;
mod prom;
mod vip;

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::discovery::Shared;
use crate::metrics::Metrics;
use crate::serve::{Accepting, Conn, RespBody, full};
pub use vip::Vipd;

/// The UI: one self-contained page (no external assets) polling the API.
const INDEX_HTML: &str = include_str!("index.html");

pub struct Admin {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub overrides_key: String,
    /// `--consul-max-stale`: the rule behind `/health/consul`.
    pub consul_max_stale: Duration,
    /// How many proxy listeners there are, and how many accept right now.
    pub proxy_listeners: usize,
    pub accepting: Arc<Accepting>,
    /// `--vipd-addr`.
    pub vipd: Option<Vipd>,
    /// The TLS listeners' certificates and counters, when there are any.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// TCP routes' ports that could not be listened on (problems).
    pub tcp_unbound: Arc<crate::tcp::Unbound>,
    /// The supervisor's view of the router's long-lived tasks.
    pub tasks: Arc<kit::Health>,
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Response<RespBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl Admin {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, _conn: Conn) -> Response<RespBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET\n");
        }
        match req.uri().path() {
            "/health" => self.health(),
            "/health/consul" => self.health_consul(),
            "/api/routes" => json(&api::routes(&self.shared.snapshot.load())),
            "/api/problems" => json(&api::problems(&self.shared, self.tls.as_deref(), &self.tcp_unbound)),
            "/api/status" => {
                let vip = match &self.vipd {
                    Some(v) => Some(v.status().await),
                    None => None,
                };
                json(&api::status(
                    &self.shared,
                    &self.overrides_key,
                    self.consul_max_stale,
                    vip,
                    self.tls.as_deref(),
                    &self.tcp_unbound,
                ))
            }
            "/api/certs" => match &self.tls {
                Some(t) => json(&api::certs(&t.resolver.store.load(), t.acme.load().as_deref())),
                None => json(&[(); 0]),
            },
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                prom::render(&self.shared, &self.metrics, self.consul_max_stale, self.tls.as_deref()),
            ),
            "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
            other => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("no admin page {other}\n")),
        }
    }

    /// "This node can serve": 200 while a routing table from Consul is
    /// loaded and every proxy listener accepts. Consul's state does not
    /// enter: during a leader election every router keeps routing with its
    /// last good table, and a failing `/health` on every node at once would
    /// make every vipd give the VIP up (issue 10). `/health/consul` says
    /// whether this node hears Consul.
    fn health(&self) -> Response<RespBody> {
        let status = &self.shared.status;
        let routes = self.shared.snapshot.load().table.len();
        let plain = "text/plain; charset=utf-8";
        // A dead task (discovery) leaves a frozen table: not healthy, even
        // while its supervisor restarts it.
        if let Some((task, reason)) = self.tasks.down().into_iter().next() {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                plain,
                format!(
                    "task {task} is not running ({reason}); still routing with the last good table ({routes} routes)\n"
                ),
            );
        }
        if !status.loaded() {
            let why = status.last_error().map(|e| format!(" (last error: {e})")).unwrap_or_default();
            return reply(StatusCode::SERVICE_UNAVAILABLE, plain, format!("no routing table from Consul yet{why}\n"));
        }
        let accepting = self.accepting.count();
        if accepting < self.proxy_listeners {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                plain,
                format!("{accepting} of {} proxy listeners accept\n", self.proxy_listeners),
            );
        }
        let consul = match status.consul_problem(self.consul_max_stale) {
            None => "ok".to_string(),
            Some(p) => format!("{p} (routing with the last good table)"),
        };
        reply(StatusCode::OK, plain, format!("ok: {routes} routes; Consul: {consul}\n"))
    }

    /// "This node hears Consul": 200 while the agent answers, no watch fails
    /// and a leader was seen within `--consul-max-stale`.
    fn health_consul(&self) -> Response<RespBody> {
        let plain = "text/plain; charset=utf-8";
        match self.shared.status.consul_problem(self.consul_max_stale) {
            None => reply(StatusCode::OK, plain, "ok: Consul answers with a leader in contact\n"),
            Some(p) => {
                let last = self.shared.status.last_error().map(|e| format!(" (last error: {e})")).unwrap_or_default();
                reply(StatusCode::SERVICE_UNAVAILABLE, plain, format!("{p}{last}\n"))
            }
        }
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Response<RespBody> {
    match serde_json::to_vec(v) {
        Ok(b) => reply(StatusCode::OK, "application/json", b),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::discovery::Snapshot;
    use crate::routes::{Instance, Table};

    fn admin() -> Admin {
        Admin {
            shared: Shared::new(),
            metrics: Arc::new(Metrics::default()),
            overrides_key: "router/config".into(),
            consul_max_stale: Duration::from_secs(10),
            proxy_listeners: 0,
            accepting: Arc::new(Accepting::default()),
            vipd: None,
            tls: None,
            tcp_unbound: Arc::default(),
            tasks: Arc::default(),
        }
    }

    async fn body(r: Response<RespBody>) -> String {
        let bytes = r.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn load(a: &Admin, overrides: &str) {
        let inst = Instance {
            service: "web".into(),
            id: "web1".into(),
            address: "10.0.0.1".into(),
            port: 8080,
            tags: vec!["urlprefix-app.example.com/api strip=/api".into(), "urlprefix-bad weight=x".into()],
        };
        let (table, problems) = Table::build(&[inst], overrides, "urlprefix-");
        a.shared.snapshot.store(Arc::new(Snapshot {
            table,
            problems,
            overrides: overrides.into(),
            instances: 1,
            built_unix_ms: crate::discovery::status::unix_ms(),
        }));
        a.shared.status.set_loaded();
    }

    #[tokio::test]
    async fn health_means_this_node_can_serve_and_consul_is_reported_apart() {
        let a = admin();
        let r = a.health();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("no routing table from Consul yet"));
        load(&a, "");
        a.shared.status.saw_leader();
        let r = a.health();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "ok: 1 routes; Consul: ok\n");
        assert_eq!(a.health_consul().status(), StatusCode::OK);

        // A failing watch (every router at once, in an election) no longer
        // fails /health: the node still routes with its last good table.
        a.shared.status.record_error("catalog/nodes: unreachable".into());
        a.shared.status.mark_failing(true);
        let r = a.health();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).await.contains("1 Consul watch(es) failing (routing with the last good table)"));
        let r = a.health_consul();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("catalog/nodes: unreachable"));
        a.shared.status.mark_failing(false);
        a.shared.status.set_reachable(false);
        assert_eq!(a.health().status(), StatusCode::OK);
        assert_eq!(a.health_consul().status(), StatusCode::SERVICE_UNAVAILABLE);
        a.shared.status.set_reachable(true);
        assert_eq!(a.health_consul().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn health_fails_while_a_proxy_listener_does_not_accept() {
        let mut a = admin();
        load(&a, "");
        a.proxy_listeners = 2;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let accepting = a.accepting.clone();
        let server = tokio::spawn(crate::serve::serve(
            "proxy",
            listener,
            |_stream, _conn, _drain| async {},
            stop_rx,
            Duration::ZERO,
            accepting,
        ));
        while a.accepting.count() < 1 {
            tokio::task::yield_now().await;
        }
        let r = a.health();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, "1 of 2 proxy listeners accept\n");
        a.proxy_listeners = 1;
        assert_eq!(a.health().status(), StatusCode::OK);
        let _ = stop_tx.send(true);
        let _ = server.await;
        assert_eq!(a.accepting.count(), 0, "a stopped accept loop no longer counts");
        assert_eq!(a.health().status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn health_fails_while_a_supervised_task_is_down() {
        let a = admin();
        load(&a, "");
        a.tasks.set("discovery", Some("panicked: boom".into()));
        let r = a.health();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(r).await;
        assert!(text.contains("task discovery is not running (panicked: boom)"), "{text}");
        a.tasks.set("discovery", None);
        assert_eq!(a.health().status(), StatusCode::OK);
    }

    #[test]
    fn routes_are_one_entry_per_target_and_status_shows_problems() {
        let a = admin();
        load(&a, "route add extra extra.example.com/ http://10.0.0.9:80/\nroute nonsense\n");
        let snap = a.shared.snapshot.load();
        let v = serde_json::to_value(api::routes(&snap)).unwrap_or_default();
        let list = v.as_array().cloned().unwrap_or_default();
        assert_eq!(list.len(), 2, "{v}");
        let web = list.iter().find(|r| r["service"] == "web").cloned().unwrap_or_default();
        assert_eq!(web["host"], "app.example.com");
        assert_eq!(web["path"], "/api");
        assert_eq!(web["target"], "http://10.0.0.1:8080/");
        assert_eq!(web["instance"], "web1");
        assert_eq!(web["weight"], 1.0);
        assert_eq!(web["options"]["strip"], "/api");
        let s = serde_json::to_value(api::status(
            &a.shared,
            &a.overrides_key,
            a.consul_max_stale,
            None,
            None,
            &a.tcp_unbound,
        ))
        .unwrap_or_default();
        assert_eq!(s["loaded"], true);
        assert_eq!(s["watch_alive"], true);
        assert_eq!(s["routes"], 2);
        assert_eq!(s["overrides_key"], "router/config");
        let sources: Vec<&str> =
            s["problems"].as_array().into_iter().flatten().filter_map(|p| p["source"].as_str()).collect();
        assert!(sources.iter().any(|p| p.contains("overrides line 2")), "{sources:?}");
        assert!(sources.iter().any(|p| p.contains("web")), "the bad tag names its service: {sources:?}");
    }

    #[test]
    fn metrics_expose_table_and_consul_gauges() {
        let a = admin();
        let text = prom::render(&a.shared, &a.metrics, a.consul_max_stale, None);
        assert!(text.contains("router_table_age_seconds -1\n"), "{text}");
        assert!(text.contains("router_consul_watch_up 1\n"));
        assert!(text.contains("router_consul_reachable 1\n"));
        assert!(text.contains("router_consul_healthy 0\n"), "no leader seen yet: {text}");
        load(&a, "");
        a.shared.status.record_error("x".into());
        a.shared.status.saw_leader();
        let text = prom::render(&a.shared, &a.metrics, a.consul_max_stale, None);
        assert!(text.contains("router_consul_healthy 1\n"), "{text}");
        assert!(text.contains("router_routes 1\n") && text.contains("router_consul_errors_total 1\n"), "{text}");
        assert!(text.contains("# TYPE router_consul_errors_total counter\n"));
    }
}
