//! The Docker source: lists running containers, then follows the event
//! stream, inspecting a container on every event that can change what it
//! registers (environment variables are not in events). Sends
//! [`SourceEvent`]s to the sync loop and owns no Consul state.
//!
//! The daemon going away (restart, upgrade) is routine: the session ends,
//! we reconnect with backoff, relist, and the new snapshot makes the sync
//! loop reconcile, so containers that stopped meanwhile are removed. The
//! event subscription starts one second before the listing, so nothing
//! between the two is missed; the overlap is replayed harmlessly, since
//! every event only triggers a fresh inspect.

mod convert;
pub mod host_ip;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use convert::Settings;

use crate::source::SourceEvent;
use crate::workload::SourceKind;
use consul::Backoff;

/// Why a Docker session ended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("docker {what}: {source}")]
    Docker {
        what: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("docker event stream ended")]
    StreamEnded,
}

fn docker_err(what: &'static str) -> impl FnOnce(bollard::errors::Error) -> Error {
    move |source| Error::Docker { what, source }
}

/// Runs until the sync loop goes away, reconnecting to `host` for ever.
pub async fn run(host: String, settings: Settings, tx: mpsc::Sender<SourceEvent>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match session(&host, &settings, &tx, &mut backoff).await {
            Ok(()) => return,
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(%error, docker_host = %host, retry_in = ?delay, "Docker unavailable; reconnecting");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One connection: snapshot, then events until the stream fails. `Ok`
/// only when the sync loop has stopped listening.
async fn session(
    host: &str,
    settings: &Settings,
    tx: &mpsc::Sender<SourceEvent>,
    backoff: &mut Backoff,
) -> Result<(), Error> {
    let docker = Docker::connect_with_host(host).map_err(docker_err("connect"))?;
    let docker = docker.negotiate_version().await.map_err(docker_err("version negotiation"))?;
    let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs().saturating_sub(1)).unwrap_or(0);

    let list = docker
        .list_containers(Some(ListContainersOptions { all: false, ..Default::default() }))
        .await
        .map_err(docker_err("list containers"))?;
    let mut workloads = Vec::new();
    for id in list.into_iter().filter_map(|c| c.id) {
        if let Some(w) = inspect(&docker, &id, settings).await? {
            workloads.push(w);
        }
    }
    info!(containers = workloads.len(), docker_host = %host, "Docker connected; running containers listed");
    if tx.send(SourceEvent::Snapshot { source: SourceKind::Docker, workloads }).await.is_err() {
        return Ok(());
    }
    backoff.reset();

    let filters = HashMap::from([("type".to_string(), vec!["container".to_string(), "network".to_string()])]);
    let mut events =
        docker.events(Some(EventsOptions { since: Some(since.to_string()), until: None, filters: Some(filters) }));
    while let Some(event) = events.next().await {
        let event = event.map_err(docker_err("event stream"))?;
        let Some(change) = classify(&event) else { continue };
        let msg = match change {
            Change::Gone(key) => SourceEvent::Remove { source: SourceKind::Docker, key },
            Change::Refresh(key) => match inspect(&docker, &key, settings).await? {
                Some(w) => SourceEvent::Upsert(Box::new(w)),
                None => SourceEvent::Remove { source: SourceKind::Docker, key },
            },
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
    }
    Err(Error::StreamEnded)
}

/// The workload of a running container; `None` when it is not running or
/// no longer exists.
async fn inspect(docker: &Docker, id: &str, settings: &Settings) -> Result<Option<crate::workload::Workload>, Error> {
    match docker.inspect_container(id, None).await {
        Ok(c) => Ok(convert::workload(&c, settings)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            debug!(container = id, "container vanished before inspect");
            Ok(None)
        }
        Err(source) => Err(Error::Docker { what: "inspect container", source }),
    }
}

/// What an event means for one container.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Look again: started, health flipped, renamed, network (dis)connected.
    Refresh(String),
    /// Stopped or removed.
    Gone(String),
}

fn classify(e: &EventMessage) -> Option<Change> {
    let action = e.action.as_deref()?;
    let actor = e.actor.as_ref()?;
    match e.typ? {
        EventMessageTypeEnum::CONTAINER => {
            let id = actor.id.clone()?;
            match action {
                "start" | "unpause" | "rename" => Some(Change::Refresh(id)),
                a if a.starts_with("health_status") => Some(Change::Refresh(id)),
                "die" | "destroy" => Some(Change::Gone(id)),
                _ => None,
            }
        }
        EventMessageTypeEnum::NETWORK if matches!(action, "connect" | "disconnect") => {
            actor.attributes.as_ref()?.get("container").cloned().map(Change::Refresh)
        }
        _ => None,
    }
}

#[cfg(test)]
mod classify_tests {
    use serde_json::json;

    use super::*;

    fn event(v: serde_json::Value) -> EventMessage {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_events() {
        let c = |action: &str| {
            classify(&event(json!({"Type": "container", "Action": action, "Actor": {"ID": "abc", "Attributes": {}}})))
        };
        for a in ["start", "rename", "health_status: healthy", "health_status: unhealthy", "unpause"] {
            assert_eq!(c(a), Some(Change::Refresh("abc".into())), "{a}");
        }
        for a in ["die", "destroy"] {
            assert_eq!(c(a), Some(Change::Gone("abc".into())), "{a}");
        }
        for a in ["create", "kill", "exec_start: sh", "attach"] {
            assert_eq!(c(a), None, "{a}");
        }
    }

    #[test]
    fn network_events_name_the_container() {
        let e = event(json!({"Type": "network", "Action": "connect",
            "Actor": {"ID": "net1", "Attributes": {"container": "abc", "name": "app-net", "type": "bridge"}}}));
        assert_eq!(classify(&e), Some(Change::Refresh("abc".into())));
        let e = event(json!({"Type": "network", "Action": "create", "Actor": {"ID": "net1", "Attributes": {}}}));
        assert_eq!(classify(&e), None);
    }
}
