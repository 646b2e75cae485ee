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
