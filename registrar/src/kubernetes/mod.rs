//! The Kubernetes source: one registrar per node (a DaemonSet) watches the
//! pods scheduled on its node and feeds them to the sync loop as
//! source-neutral workloads.
//!
//! - `pod`: a pod -> a [`Workload`](crate::workload::Workload) or "must not
//!   be in Consul" (pure; readiness policy documented there).
//! - `events`: kube watcher phases -> snapshots, upserts, removes (pure).
//! - `watch`: the watcher itself (I/O).
//!
//! The client is configured the standard way (`Client::try_default`): a
//! kubeconfig from `KUBECONFIG` or `~/.kube/config`, else the in-cluster
//! service account. Tests point `KUBECONFIG` at a stand-in API server.

pub mod events;
pub mod pod;
mod watch;

use tokio::sync::mpsc;

use crate::source::SourceEvent;

/// Why the Kubernetes source could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Config(#[source] kube::Error),
}

/// Connects to the API server and watches `node`'s pods, sending to `tx`
/// until the receiver is dropped. Fails only when there is no client
/// configuration; an unreachable API server is retried with backoff.
pub async fn run(node: String, tx: mpsc::Sender<SourceEvent>) -> Result<(), Error> {
    let client = kube::Client::try_default().await.map_err(Error::Config)?;
    watch::watch_pods(client, node, tx).await;
    Ok(())
}
