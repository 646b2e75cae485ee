//! A test Kubernetes API server for pods: a stand-in for a real API server,
//! which cannot be installed on these machines.
//!
//! It speaks the real wire format of the parts a pod watcher uses, so the
//! registrar's Kubernetes source runs unchanged against it through kube's
//! client and runtime watcher:
//!
//! - `GET /api/v1/pods` and `GET /api/v1/namespaces/{ns}/pods`: a `PodList`
//!   with `metadata.resourceVersion`, honouring `resourceVersion`,
//!   `resourceVersionMatch` (`NotOlderThan`, `Exact`), `limit` and
//!   `continue` (pages of a consistent snapshot), `fieldSelector`
//!   (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`
//!   with `=`, `==`, `!=`) and equality-based `labelSelector`.
//! - The same paths with `watch=true` (or `1`): newline-delimited JSON
//!   `WatchEvent`s (`ADDED`, `MODIFIED`, `DELETED`, and `BOOKMARK` when
//!   `allowWatchBookmarks=true`) starting after `resourceVersion`,
//!   closed after `timeoutSeconds`. A filtered watch sees an object that
//!   stops matching as `DELETED` and one that starts matching as `ADDED`,
//!   as the real server does.
//! - An expired `resourceVersion` answers like the real server: a watch gets
//!   an `ERROR` event carrying a `Status` with reason `Expired`, code 410;
//!   an `Exact` list or a stale `continue` token gets HTTP 410 with that
//!   `Status`. Either makes a client relist.
//! - `sendInitialEvents=true` (streaming lists): the current pods as `ADDED`,
//!   then a `BOOKMARK` annotated `k8s.io/initial-events-end`.
//! - `GET /version`, `/api` and a single pod by name, for clients that ask.
//!
//! Pods are k8s-openapi's [`Pod`], serialized by it, so their JSON is the
//! API reference's. Resource versions are one counter for the whole server
//! (as etcd's revision is for a cluster), and a change history lets a watch
//! resume and a paged list read one snapshot.
//!
//! The test drives the server with methods: add, modify and delete pods,
//! expire the history, drop every watch connection, send bookmarks, and
//! read the log of requests it served.

use std::collections::{BTreeMap, VecDeque};
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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::HarnessError;

type Body = BoxBody<Bytes, Infallible>;

/// A running test API server on a loopback port; stops when dropped.
pub struct KubeApiServer {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    task: JoinHandle<()>,
}

impl KubeApiServer {
    /// Binds a free loopback port and serves until dropped. Must be called
    /// inside a tokio runtime.
    pub async fn start() -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| HarnessError::Io { what: "bind test kube api".into(), source })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Io { what: "local_addr".into(), source })?;
        let store = Arc::new(Mutex::new(Store::default()));
        let task = tokio::spawn(serve(listener, store.clone(), addr));
        Ok(KubeApiServer { addr, store, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials),
    /// for `KUBECONFIG`: clients then find the server the standard way.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: edge-test\n  cluster:\n    server: {}\n\
             users:\n- name: edge-test\n  user: {{}}\ncontexts:\n- name: edge-test\n  context:\n    \
             cluster: edge-test\n    user: edge-test\n    namespace: default\ncurrent-context: edge-test\n",
            self.url()
        )
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock only happens in a failing test; the
        // data is still usable for its report.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a pod (namespace from its metadata, `default` if unset);
    /// fills `uid` and `creationTimestamp` when missing. Returns its
    /// resourceVersion. Replaces a pod of the same name, as a `MODIFIED`.
    pub fn add_pod(&self, pod: Pod) -> String {
        self.store().put(pod)
    }

    /// Changes a pod in place (`MODIFIED`); `None` if it does not exist.
    pub fn modify_pod(&self, namespace: &str, name: &str, f: impl FnOnce(&mut Pod)) -> Option<String> {
        let mut store = self.store();
        let mut pod = store.pods.get(&(namespace.to_string(), name.to_string()))?.clone();
        f(&mut pod);
        Some(store.put(pod))
    }

    /// Deletes a pod (`DELETED`); `false` if it did not exist.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.store().delete(namespace, name)
    }

    /// The stored pod, as a client would read it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.store().pods.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> String {
        self.store().rv.to_string()
    }

    /// Forgets the change history, as a compaction does: every watch or
    /// paged list from an older resourceVersion now gets 410 Expired.
    pub fn expire_history(&self) {
        self.store().expire();
    }

    /// Closes every open watch stream (clients reconnect from their last
    /// resourceVersion).
    pub fn drop_watches(&self) -> usize {
        let mut store = self.store();
        let n = store.watchers.len();
        store.watchers.clear();
        n
    }

    /// Simulates changes a client misses: closes every watch, applies `f`
    /// with no watcher connected, then expires the history, all under one
    /// lock so no client can watch in between. A client that reconnects
    /// gets 410 and must relist to see what `f` did.
    pub fn change_while_disconnected(&self, f: impl FnOnce(&mut Edits<'_>)) {
        let mut store = self.store();
        store.watchers.clear();
        f(&mut Edits { store: &mut store });
        store.expire();
    }

    /// Sends a `BOOKMARK` with the current resourceVersion to every watch
    /// that allowed bookmarks; returns how many got it.
    pub fn bookmark(&self) -> usize {
        let mut store = self.store();
        let line = event_line(&bookmark_event(store.rv));
        store.watchers.retain(|w| !w.bookmarks || w.tx.send(line.clone()).is_ok());
        store.watchers.iter().filter(|w| w.bookmarks).count()
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        let mut store = self.store();
        store.watchers.retain(|w| !w.tx.is_closed());
        store.watchers.len()
    }

    /// Every request served so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.store().requests.clone()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.store().watchers.clear();
    }
}

/// Pod edits applied by [`KubeApiServer::change_while_disconnected`].
pub struct Edits<'a> {
    store: &'a mut Store,
}

impl Edits<'_> {
    pub fn add_pod(&mut self, pod: Pod) -> String {
        self.store.put(pod)
    }

    pub fn modify_pod(&mut self, namespace: &str, name: &str, f: impl FnOnce(&mut Pod)) -> Option<String> {
        let mut pod = self.store.pods.get(&(namespace.to_string(), name.to_string()))?.clone();
        f(&mut pod);
        Some(self.store.put(pod))
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) -> bool {
        self.store.delete(namespace, name)
    }
}

type Key = (String, String);

/// One change: the object before and after (`None` when absent).
#[derive(Clone)]
struct Change {
    rv: u64,
    old: Option<Pod>,
    new: Option<Pod>,
}

struct Watcher {
    filter: Filter,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// The server's state. `history` holds every change after `compacted`:
/// a watch or snapshot from a resourceVersion `>= compacted` can be served.
#[derive(Default)]
struct Store {
    rv: u64,
    compacted: u64,
    pods: BTreeMap<Key, Pod>,
    history: VecDeque<Change>,
    watchers: Vec<Watcher>,
    requests: Vec<String>,
}

impl Store {
    fn put(&mut self, mut pod: Pod) -> String {
        self.rv += 1;
        let meta = &mut pod.metadata;
        let namespace = meta.namespace.get_or_insert_with(|| "default".into()).clone();
        let name = meta.name.clone().unwrap_or_default();
        meta.resource_version = Some(self.rv.to_string());
        let key = (namespace, name);
        let old = self.pods.get(&key).cloned();
        if let Some(prev) = &old {
            meta.uid = prev.metadata.uid.clone();
            meta.creation_timestamp = prev.metadata.creation_timestamp.clone();
        }
        meta.uid.get_or_insert_with(|| format!("{:08x}-0000-4000-8000-{:012x}", self.rv, self.rv));
        if meta.creation_timestamp.is_none() {
            meta.creation_timestamp = now();
        }
        self.pods.insert(key, pod.clone());
        self.record(Change { rv: self.rv, old, new: Some(pod) });
        self.rv.to_string()
    }

    fn delete(&mut self, namespace: &str, name: &str) -> bool {
        let Some(old) = self.pods.remove(&(namespace.to_string(), name.to_string())) else {
            return false;
        };
        self.rv += 1;
        self.record(Change { rv: self.rv, old: Some(old), new: None });
        true
    }

    fn record(&mut self, change: Change) {
        self.broadcast(&change);
        self.history.push_back(change);
    }

    fn broadcast(&mut self, change: &Change) {
        self.watchers.retain(|w| match w.filter.event(change) {
            Some(line) => w.tx.send(line).is_ok(),
            None => !w.tx.is_closed(),
        });
    }

    /// A compaction: the revision moves on (in a real cluster other objects
    /// keep it moving) and nothing before it can be replayed.
    fn expire(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.history.clear();
    }

    /// The pods as they were at `rv`, undoing later changes; `None` when
    /// that is before the history.
    fn snapshot_at(&self, rv: u64) -> Option<BTreeMap<Key, Pod>> {
        if rv < self.compacted || rv > self.rv {
            return None;
        }
        let mut pods = self.pods.clone();
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            let Some(obj) = change.old.as_ref().or(change.new.as_ref()) else { continue };
            let key = key_of(obj);
            match &change.old {
                Some(old) => pods.insert(key, old.clone()),
                None => pods.remove(&key),
            };
        }
        Some(pods)
    }
}

/// The wall clock as an API `Time` (whole seconds, as the server writes it).
fn now() -> Option<Time> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok().map(Time)
}

fn key_of(pod: &Pod) -> Key {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// One requirement of a field or label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// What a list or watch is restricted to: the namespace in the path and the
/// selectors in the query.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filter {
    namespace: Option<String>,
    fields: Vec<Requirement>,
    labels: Vec<Requirement>,
}

const FIELDS: [&str; 4] = ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"];

impl Filter {
    fn parse(namespace: Option<String>, fields: Option<&str>, labels: Option<&str>) -> Result<Self, String> {
        let mut filter = Filter { namespace, ..Filter::default() };
        for term in fields.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            let req = parse_requirement(term).ok_or_else(|| format!("invalid field selector: {term:?}"))?;
            match &req {
                Requirement::Equals(f, _) | Requirement::NotEquals(f, _) if FIELDS.contains(&f.as_str()) => {}
                _ => return Err(format!("field label not supported: {term}")),
            }
            filter.fields.push(req);
        }
        for term in labels.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            filter
                .labels
                .push(parse_requirement(term).ok_or_else(|| format!("unable to parse requirement: {term:?}"))?);
        }
        Ok(filter)
    }

    fn matches(&self, pod: &Pod) -> bool {
        let meta = &pod.metadata;
        if self.namespace.as_ref().is_some_and(|ns| meta.namespace.as_ref() != Some(ns)) {
            return false;
        }
        let field = |name: &str| -> String {
            match name {
                "metadata.name" => meta.name.clone(),
                "metadata.namespace" => meta.namespace.clone(),
                "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                _ => pod.status.as_ref().and_then(|s| s.phase.clone()),
            }
            .unwrap_or_default()
        };
        let fields_ok = self.fields.iter().all(|r| match r {
            Requirement::Equals(f, v) => field(f) == *v,
            Requirement::NotEquals(f, v) => field(f) != *v,
            _ => false,
        });
        let labels = meta.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k));
        fields_ok
            && self.labels.iter().all(|r| match r {
                Requirement::Equals(k, v) => label(k) == Some(v),
                Requirement::NotEquals(k, v) => label(k) != Some(v),
                Requirement::Exists(k) => label(k).is_some(),
                Requirement::NotExists(k) => label(k).is_none(),
            })
    }

    /// The watch event `change` means for a watcher with this filter.
    fn event(&self, change: &Change) -> Option<Bytes> {
        let old = change.old.as_ref().filter(|p| self.matches(p));
        let new = change.new.as_ref().filter(|p| self.matches(p));
        let (kind, obj) = match (old, new) {
            (None, Some(new)) => ("ADDED", new.clone()),
            (Some(_), Some(new)) => ("MODIFIED", new.clone()),
            // Stops matching (or is deleted): its last state, at the
            // change's version.
            (Some(old), None) => {
                let mut obj = change.new.clone().unwrap_or_else(|| old.clone());
                obj.metadata.resource_version = Some(change.rv.to_string());
                ("DELETED", obj)
            }
            (None, None) => return None,
        };
        Some(event_line(&json!({ "type": kind, "object": obj })))
    }
}

fn parse_requirement(term: &str) -> Option<Requirement> {
    let term = term.trim();
    let valid = |s: &str| !s.is_empty() && !s.contains([' ', '(', ')', '=', '!']);
    if let Some((k, v)) = term.split_once("!=") {
        return (valid(k) && !v.contains('=')).then(|| Requirement::NotEquals(k.into(), v.into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return (valid(k) && !v.contains('=')).then(|| Requirement::Equals(k.into(), v.into()));
    }
    if let Some(k) = term.strip_prefix('!') {
        return valid(k).then(|| Requirement::NotExists(k.into()));
    }
    valid(term).then(|| Requirement::Exists(term.into()))
}

fn event_line(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_event(rv: u64) -> Value {
    json!({
        "type": "BOOKMARK",
        "object": { "kind": "Pod", "apiVersion": "v1", "metadata": { "resourceVersion": rv.to_string() } }
    })
}

/// A `Status` failure object, as the API server sends with every error.
fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

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

fn expired(rv: u64, current: u64) -> Value {
    status(StatusCode::GONE, "Expired", &format!("too old resource version: {rv} ({current})"))
}

async fn serve(listener: TcpListener, store: Arc<Mutex<Store>>, addr: SocketAddr) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, name: &str, node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some([("app".to_string(), name.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
            status: None,
        }
    }

    fn names(pods: &BTreeMap<Key, Pod>) -> Vec<String> {
        pods.keys().map(|(_, n)| n.clone()).collect()
    }

    #[test]
    fn selectors_parse_and_reject_like_the_api_server() {
        let f = Filter::parse(None, Some("spec.nodeName=n1,status.phase!=Failed"), Some("app==web,!canary,tier"))
            .expect("valid");
        assert_eq!(
            f.fields,
            vec![
                Requirement::Equals("spec.nodeName".into(), "n1".into()),
                Requirement::NotEquals("status.phase".into(), "Failed".into()),
            ]
        );
        assert_eq!(
            f.labels,
            vec![
                Requirement::Equals("app".into(), "web".into()),
                Requirement::NotExists("canary".into()),
                Requirement::Exists("tier".into()),
            ]
        );
        assert!(Filter::parse(None, Some("spec.hostname=x"), None).is_err());
        assert!(Filter::parse(None, Some("spec.nodeName"), None).is_err());
        assert!(Filter::parse(None, None, Some("a=b=c")).is_err());
    }

    #[test]
    fn filter_matches_namespace_node_and_labels() {
        let p = pod("ns1", "web", "n1");
        assert!(Filter::parse(Some("ns1".into()), Some("spec.nodeName=n1"), Some("app=web")).unwrap().matches(&p));
        assert!(!Filter::parse(Some("ns2".into()), None, None).unwrap().matches(&p));
        assert!(!Filter::parse(None, Some("spec.nodeName=n2"), None).unwrap().matches(&p));
        assert!(!Filter::parse(None, None, Some("app!=web")).unwrap().matches(&p));
        assert!(Filter::parse(None, Some("metadata.name==web,metadata.namespace=ns1"), None).unwrap().matches(&p));
    }

    #[test]
    fn filtered_watch_sees_leaving_as_deleted_and_entering_as_added() {
        let f = Filter::parse(None, Some("spec.nodeName=n1"), None).unwrap();
        let on = |n| Some(pod("ns", "p", n));
        let kind = |c: &Change| {
            f.event(c).map(|l| serde_json::from_slice::<Value>(&l).unwrap()["type"].as_str().unwrap().to_string())
        };
        assert_eq!(kind(&Change { rv: 2, old: on("n2"), new: on("n1") }).as_deref(), Some("ADDED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: on("n1") }).as_deref(), Some("MODIFIED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: on("n2") }).as_deref(), Some("DELETED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: None }).as_deref(), Some("DELETED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n2"), new: on("n2") }), None);
    }

    #[test]
    fn snapshots_undo_later_changes_until_compaction() {
        let mut s = Store::default();
        s.put(pod("ns", "a", "n1")); // 1
        s.put(pod("ns", "b", "n1")); // 2
        s.delete("ns", "a"); // 3
        s.put(pod("ns", "c", "n1")); // 4
        assert_eq!(names(&s.snapshot_at(1).unwrap()), ["a"]);
        assert_eq!(names(&s.snapshot_at(2).unwrap()), ["a", "b"]);
        assert_eq!(names(&s.snapshot_at(3).unwrap()), ["b"]);
        assert_eq!(names(&s.snapshot_at(4).unwrap()), ["b", "c"]);
        assert!(s.snapshot_at(5).is_none(), "the future is not served");
        s.expire();
        assert!(s.snapshot_at(4).is_none(), "compacted");
        assert_eq!(names(&s.snapshot_at(s.rv).unwrap()), ["b", "c"]);
    }

    #[test]
    fn modify_keeps_identity_and_bumps_the_version() {
        let mut s = Store::default();
        s.put(pod("ns", "a", "n1"));
        let uid = s.pods[&("ns".to_string(), "a".to_string())].metadata.uid.clone();
        assert!(uid.is_some());
        s.put(pod("ns", "a", "n1"));
        let p = &s.pods[&("ns".to_string(), "a".to_string())];
        assert_eq!(p.metadata.uid, uid);
        assert_eq!(p.metadata.resource_version.as_deref(), Some("2"));
    }
}
