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
//!
//! Layout: `store` (pods, versions, history, watchers), `selector` (field
//! and label selectors, what a change means to a filtered watch), `http`
//! (paths, list, watch streams), `wire` (event lines, bookmarks, `Status`).

mod http;
mod selector;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::HarnessError;
use store::Store;

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
        let task = tokio::spawn(http::serve(listener, store.clone(), addr));
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
        let line = wire::event_line(&wire::bookmark_event(store.rv));
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

/// A pod for this module's unit tests.
#[cfg(test)]
fn test_pod(ns: &str, name: &str, node: &str) -> Pod {
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
