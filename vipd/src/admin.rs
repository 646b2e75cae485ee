//! The admin listener (`--admin-addr`): `GET /status` (JSON) and
//! `GET /metrics` (Prometheus text) from the status the event loop keeps.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::status::Status;

/// How long a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub type Shared = Arc<Mutex<Status>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET\n");
    }
    // A poisoned lock only means a panic elsewhere; the value is still whole.
    let status = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match req.uri().path() {
        "/status" => match serde_json::to_vec(&status) {
            Ok(body) => reply(StatusCode::OK, "application/json", body),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("{e}\n")),
        },
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", status.metrics()),
        other => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("no page {other}\n")),
    }
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, shared: Shared) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = handle(&req, &shared);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
}
