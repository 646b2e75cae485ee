//! The admin listener: what operators and vipd look at. `/health` for
//! vipd's check, `/api/*` for scripts and the UI, `/metrics` for Prometheus,
//! `/` for people. Reads the same published snapshot as the proxy.

mod api;
mod prom;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::discovery::Shared;
use crate::metrics::Metrics;
use crate::serve::{Conn, RespBody, full};

/// The UI: one self-contained page (no external assets) polling the API.
const INDEX_HTML: &str = include_str!("index.html");

pub struct Admin {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub overrides_key: String,
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
            "/api/routes" => json(&api::routes(&self.shared.snapshot.load())),
            "/api/problems" => json(&self.shared.snapshot.load().problems),
            "/api/status" => json(&api::status(&self.shared, &self.overrides_key)),
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                prom::render(&self.shared, &self.metrics),
            ),
            "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
            other => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("no admin page {other}\n")),
        }
    }

    /// 200 only while a table from Consul is loaded and every watch is alive;
    /// the proxy keeps routing with the last good table either way, but a
    /// VIP should move to a router that hears Consul.
    fn health(&self) -> Response<RespBody> {
        let status = &self.shared.status;
        let routes = self.shared.snapshot.load().table.len();
        let plain = "text/plain; charset=utf-8";
        if !status.loaded() {
            let why = status.last_error().map(|e| format!(" (last error: {e})")).unwrap_or_default();
            return reply(StatusCode::SERVICE_UNAVAILABLE, plain, format!("no routing table from Consul yet{why}\n"));
        }
        if status.failing() > 0 {
            let why = status.last_error().map(|e| e.to_string()).unwrap_or_default();
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                plain,
                format!("Consul watch failing: {why}; still routing with the last good table ({routes} routes)\n"),
            );
        }
        reply(StatusCode::OK, plain, format!("ok: {routes} routes from Consul\n"))
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
        Admin { shared: Shared::new(), metrics: Arc::new(Metrics::default()), overrides_key: "router/config".into() }
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
    async fn health_follows_the_table_and_the_watch() {
        let a = admin();
        let r = a.health();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("no routing table from Consul yet"));
        load(&a, "");
        let r = a.health();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "ok: 1 routes from Consul\n");
        a.shared.status.record_error("catalog/nodes: unreachable".into());
        a.shared.status.mark_failing(true);
        let r = a.health();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(r).await;
        assert!(text.contains("catalog/nodes: unreachable") && text.contains("still routing"), "{text}");
        a.shared.status.mark_failing(false);
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
        let s = serde_json::to_value(api::status(&a.shared, &a.overrides_key)).unwrap_or_default();
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
        let text = prom::render(&a.shared, &a.metrics);
        assert!(text.contains("router_table_age_seconds -1\n"), "{text}");
        assert!(text.contains("router_consul_watch_up 1\n"));
        load(&a, "");
        a.shared.status.record_error("x".into());
        let text = prom::render(&a.shared, &a.metrics);
        assert!(text.contains("router_routes 1\n") && text.contains("router_consul_errors_total 1\n"), "{text}");
        assert!(text.contains("# TYPE router_consul_errors_total counter\n"));
    }
}
