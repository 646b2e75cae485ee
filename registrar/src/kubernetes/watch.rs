//! The I/O adapter: kube's runtime watcher on this node's pods, feeding
//! [`Translator`] and sending what it says to the sync loop.
//!
//! The watcher is used with kube's default backoff, so an unreachable API
//! server, a lost watch or a 410 Expired never ends the source: it retries
//! and relists, and the relist's snapshot repairs anything missed.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::events::Translator;
use crate::source::SourceEvent;

/// Watches the pods scheduled on `node` until the sync loop hangs up.
pub async fn watch_pods(client: Client, node: String, tx: mpsc::Sender<SourceEvent>) {
    let api: Api<Pod> = Api::all(client);
    // The API server filters by node: a registrar never receives (or holds
    // in memory) the pods of the rest of the cluster.
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut translator = Translator::new(node.clone());
    tracing::info!(%node, "watching pods on this node");
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%node, %error, "pod watch failed; retrying with backoff");
                continue;
            }
        };
        if let Some(ev) = translator.on_event(event)
            && tx.send(ev).await.is_err()
        {
            tracing::debug!("sync loop stopped; pod watch ends");
            return;
        }
    }
}
