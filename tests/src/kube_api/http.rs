//! HTTP: the API paths a pod watcher uses, answered from the store (lists
//! from a snapshot, watches as a chunked stream of event lines).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::selector::Filter;
use super::store::{Store, Watcher};
use super::wire::{bookmark_event, event_line, expired, status};

type Body = BoxBody<Bytes, Infallible>;

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = code;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

fn error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status(code, reason, message))
}

pub(super) async fn serve(listener: TcpListener, store: Arc<Mutex<Store>>, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let store = store.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(handle(req, &store, addr)) }
            });
            // A client hanging up mid-stream is normal for watches.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

fn handle(req: Request<Incoming>, store: &Mutex<Store>, addr: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    lock(store).requests.push(format!("{} {}", req.method(), req.uri()));
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "this test server only reads");
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-edge-test", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64",
            }),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string() }],
            }),
        ),
        ["api", "v1", "pods"] => pods(store, None, &query),
        ["api", "v1", "namespaces", ns, "pods"] => pods(store, Some(ns.to_string()), &query),
        ["api", "v1", "namespaces", ns, "pods", name] => {
            match lock(store).pods.get(&(ns.to_string(), name.to_string())) {
                Some(pod) => json_response(StatusCode::OK, &json!(pod)),
                None => error(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource"),
    }
}

fn pods(store: &Mutex<Store>, namespace: Option<String>, q: &BTreeMap<String, String>) -> Response<Body> {
    let filter = match Filter::parse(
        namespace,
        q.get("fieldSelector").map(String::as_str),
        q.get("labelSelector").map(String::as_str),
    ) {
        Ok(f) => f,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "BadRequest", &msg),
    };
    let rv = match q.get("resourceVersion").filter(|v| !v.is_empty()).map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(rv)) => Some(rv),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "BadRequest", "invalid resourceVersion"),
    };
    if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
        let params = WatchParams {
            rv,
            bookmarks: flag("allowWatchBookmarks"),
            initial_events: flag("sendInitialEvents"),
            timeout: q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs),
        };
        let not_older = q.get("resourceVersionMatch").is_some_and(|m| m == "NotOlderThan");
        if params.initial_events && !(params.bookmarks && not_older) {
            let msg = "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan";
            return error(StatusCode::BAD_REQUEST, "BadRequest", msg);
        }
        return watch(store, filter, params);
    }
    list(store, &filter, rv, q)
}

fn list(store: &Mutex<Store>, filter: &Filter, rv: Option<u64>, q: &BTreeMap<String, String>) -> Response<Body> {
    let store = lock(store);
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    // A continue token is "<snapshot rv>:<offset>": later pages read the
    // same snapshot as the first, or 410 once it is compacted away.
    let (at, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match token.split_once(':').and_then(|(r, o)| Some((r.parse().ok()?, o.parse().ok()?))) {
            Some(parsed) => parsed,
            None => return error(StatusCode::BAD_REQUEST, "BadRequest", "invalid continue token"),
        },
        None => match (rv, q.get("resourceVersionMatch").map(String::as_str)) {
            (Some(rv), Some("Exact")) => (rv, 0),
            // NotOlderThan / unset / "0": the newest state satisfies it.
            _ => (store.rv, 0),
        },
    };
    let Some(snapshot) = store.snapshot_at(at) else {
        return json_response(StatusCode::GONE, &expired(at, store.rv));
    };
    let matching: Vec<&Pod> = snapshot.values().filter(|p| filter.matches(p)).collect();
    let end = limit.map_or(matching.len(), |l| (offset + l).min(matching.len()));
    let items: Vec<&Pod> = matching.get(offset..end).unwrap_or_default().to_vec();
    let mut metadata = json!({ "resourceVersion": at.to_string() });
    if end < matching.len() {
        metadata["continue"] = json!(format!("{at}:{end}"));
        metadata["remainingItemCount"] = json!(matching.len() - end);
    }
    json_response(
        StatusCode::OK,
        &json!({ "kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items }),
    )
}

/// The query parameters of a watch.
struct WatchParams {
    rv: Option<u64>,
    bookmarks: bool,
    /// `sendInitialEvents=true` (a streaming list): the current objects as
    /// ADDED, then a BOOKMARK annotated `k8s.io/initial-events-end`.
    initial_events: bool,
    timeout: Option<Duration>,
}

fn watch(store: &Mutex<Store>, filter: Filter, params: WatchParams) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut store = lock(store);
        let from = if params.initial_events { None } else { params.rv.filter(|rv| *rv > 0) };
        match from {
            // "Any" / unset: the current objects as ADDED, then changes.
            None => {
                for pod in store.pods.values().filter(|p| filter.matches(p)) {
                    let _ = tx.send(event_line(&json!({ "type": "ADDED", "object": pod })));
                }
                if params.initial_events {
                    let mut end = bookmark_event(store.rv);
                    end["object"]["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
                    let _ = tx.send(event_line(&end));
                }
            }
            Some(rv) if rv < store.compacted => {
                // The real server answers 200 and an ERROR event, then ends.
                let _ = tx.send(event_line(&json!({ "type": "ERROR", "object": expired(rv, store.rv) })));
                drop(tx);
                return stream_response(rx, None);
            }
            Some(rv) => {
                for change in store.history.iter().filter(|c| c.rv > rv) {
                    if let Some(line) = filter.event(change) {
                        let _ = tx.send(line);
                    }
                }
            }
        }
        store.watchers.push(Watcher { filter, bookmarks: params.bookmarks, tx });
    }
    stream_response(rx, params.timeout)
}

fn stream_response(rx: mpsc::UnboundedReceiver<Bytes>, timeout: Option<Duration>) -> Response<Body> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let frames = futures::stream::unfold(rx, move |mut rx| async move {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        next.map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}
