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
//!
//! When a container is registered and removed around its start and stop is
//! [`ready`]'s business: after its ports accept connections (or its
//! HEALTHCHECK passes), and as soon as its stop signal is sent.

mod convert;
pub mod host_ip;
pub mod ready;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, info, warn};

pub use convert::Settings;

use crate::source::SourceEvent;
use crate::workload::{SourceKind, Workload};
use kit::Backoff;
use ready::Readiness;

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
/// A started container without a HEALTHCHECK is registered once its ports
/// accept connections, waiting at most `ready_timeout` (zero: at once).
pub async fn run(host: String, settings: Settings, ready_timeout: Duration, tx: mpsc::Sender<SourceEvent>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match session(&host, &settings, ready_timeout, &tx, &mut backoff).await {
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
    ready_timeout: Duration,
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
    let mut starts = Starts { bound: ready_timeout, ..Starts::default() };
    for id in list.into_iter().filter_map(|c| c.id) {
        if let Some(w) = inspect(&docker, &id, settings).await? {
            // Running when listed: serving already, or its own start's
            // events (replayed from `since`) are not ours to wait on again.
            starts.ready.insert(w.key.clone());
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
    loop {
        let msg = tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return Err(Error::StreamEnded) };
                let event = event.map_err(docker_err("event stream"))?;
                let Some(change) = classify(&event) else { continue };
                match starts.on_change(&docker, settings, change).await? {
                    Some(msg) => msg,
                    None => continue,
                }
            }
            Some(done) = starts.probes.join_next() => {
                // An aborted probe (the container went meanwhile) ends in a
                // JoinError and is forgotten.
                let Ok((key, readiness)) = done else { continue };
                match starts.on_probed(&docker, settings, key, readiness).await? {
                    Some(msg) => msg,
                    None => continue,
                }
            }
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
    }
}

/// The containers between start and registration, and those stopping.
#[derive(Default)]
struct Starts {
    bound: Duration,
    /// Probes under way, by container.
    probes: JoinSet<(String, Readiness)>,
    pending: HashMap<String, AbortHandle>,
    /// Registered (probed, or needing no probe, or listed running): later
    /// events register their changes at once.
    ready: HashSet<String>,
    /// Sent their stop signal: not registered again, whatever events follow
    /// (a health check still running), until they exit or start again.
    stopping: HashSet<String>,
}

impl Starts {
    async fn on_change(
        &mut self,
        docker: &Docker,
        settings: &Settings,
        change: Change,
    ) -> Result<Option<SourceEvent>, Error> {
        let gone = |key| Some(SourceEvent::Remove { source: SourceKind::Docker, key });
        match change {
            Change::Gone(key) => {
                self.forget(&key);
                self.stopping.remove(&key);
                Ok(gone(key))
            }
            Change::Killed { key, signal } => {
                let Some(c) = inspect_raw(docker, &key).await? else {
                    self.forget(&key);
                    return Ok(gone(key));
                };
                let stop_signal = c.config.as_ref().and_then(|c| c.stop_signal.as_deref());
                if !ready::stops(&signal, stop_signal) {
                    debug!(container = %key, signal, "signal is not a stop: stays registered");
                    return Ok(None);
                }
                info!(container = %key, signal, "container is stopping: deregistering before it exits");
                self.forget(&key);
                self.stopping.insert(key.clone());
                Ok(gone(key))
            }
            Change::Refresh { key, started } => {
                if started {
                    self.stopping.remove(&key);
                } else if self.stopping.contains(&key) {
                    return Ok(None);
                }
                let Some(w) = inspect(docker, &key, settings).await? else {
                    self.forget(&key);
                    return Ok(gone(key));
                };
                if self.pending.contains_key(&key) {
                    // Still probing: the probe's end registers what is current then.
                    return Ok(None);
                }
                // The first event of a container not yet registered (its
                // start, or the network connect just before it) probes it.
                if !self.ready.contains(&key) && ready::needs_probe(&w, self.bound) {
                    let addrs = ready::tcp_endpoints(&w);
                    let bound = self.bound;
                    let k = key.clone();
                    debug!(container = %key, ?addrs, "waiting for the ports to accept connections");
                    let handle = self.probes.spawn(async move { (k, ready::until_accepting(&addrs, bound).await) });
                    self.pending.insert(key, handle);
                    return Ok(None);
                }
                self.ready.insert(key);
                Ok(Some(SourceEvent::Upsert(Box::new(w))))
            }
        }
    }

    async fn on_probed(
        &mut self,
        docker: &Docker,
        settings: &Settings,
        key: String,
        readiness: Readiness,
    ) -> Result<Option<SourceEvent>, Error> {
        if self.pending.remove(&key).is_none() {
            return Ok(None);
        }
        if readiness == Readiness::TimedOut {
            warn!(container = %key, bound = ?self.bound, "ports did not accept connections in time; registering anyway");
        }
        self.ready.insert(key.clone());
        Ok(match inspect(docker, &key, settings).await? {
            Some(w) => Some(SourceEvent::Upsert(Box::new(w))),
            None => Some(SourceEvent::Remove { source: SourceKind::Docker, key }),
        })
    }

    fn forget(&mut self, key: &str) {
        self.ready.remove(key);
        if let Some(h) = self.pending.remove(key) {
            h.abort();
        }
    }
}

/// The workload of a running container; `None` when it is not running or
/// no longer exists.
async fn inspect(docker: &Docker, id: &str, settings: &Settings) -> Result<Option<Workload>, Error> {
    Ok(inspect_raw(docker, id).await?.and_then(|c| convert::workload(&c, settings)))
}

/// The inspect answer; `None` when the container no longer exists.
async fn inspect_raw(docker: &Docker, id: &str) -> Result<Option<ContainerInspectResponse>, Error> {
    match docker.inspect_container(id, None).await {
        Ok(c) => Ok(Some(c)),
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
    /// Look again: started (`started`), health flipped, renamed, network
    /// (dis)connected.
    Refresh { key: String, started: bool },
    /// Sent a signal: if it is the stop signal, it is about to go.
    Killed { key: String, signal: String },
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
                "start" => Some(Change::Refresh { key: id, started: true }),
                "unpause" | "rename" => Some(Change::Refresh { key: id, started: false }),
                a if a.starts_with("health_status") => Some(Change::Refresh { key: id, started: false }),
                "kill" => {
                    let signal = actor.attributes.as_ref().and_then(|a| a.get("signal")).cloned().unwrap_or_default();
                    Some(Change::Killed { key: id, signal })
                }
                "die" | "destroy" => Some(Change::Gone(id)),
                _ => None,
            }
        }
        EventMessageTypeEnum::NETWORK if matches!(action, "connect" | "disconnect") => {
            let key = actor.attributes.as_ref()?.get("container").cloned()?;
            Some(Change::Refresh { key, started: false })
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
        assert_eq!(c("start"), Some(Change::Refresh { key: "abc".into(), started: true }));
        for a in ["rename", "health_status: healthy", "health_status: unhealthy", "unpause"] {
            assert_eq!(c(a), Some(Change::Refresh { key: "abc".into(), started: false }), "{a}");
        }
        for a in ["die", "destroy"] {
            assert_eq!(c(a), Some(Change::Gone("abc".into())), "{a}");
        }
        for a in ["create", "exec_start: sh", "attach"] {
            assert_eq!(c(a), None, "{a}");
        }
        let kill = event(json!({"Type": "container", "Action": "kill",
            "Actor": {"ID": "abc", "Attributes": {"signal": "15", "name": "web"}}}));
        assert_eq!(classify(&kill), Some(Change::Killed { key: "abc".into(), signal: "15".into() }));
    }

    #[test]
    fn network_events_name_the_container() {
        let e = event(json!({"Type": "network", "Action": "connect",
            "Actor": {"ID": "net1", "Attributes": {"container": "abc", "name": "app-net", "type": "bridge"}}}));
        assert_eq!(classify(&e), Some(Change::Refresh { key: "abc".into(), started: false }));
        let e = event(json!({"Type": "network", "Action": "create", "Actor": {"ID": "net1", "Attributes": {}}}));
        assert_eq!(classify(&e), None);
    }
}
