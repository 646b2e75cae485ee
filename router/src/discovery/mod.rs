//! Discovery: follows Consul with blocking queries and publishes a routing
//! table whenever something that matters changed.
//!
//! The cost of one change must not grow with the catalog the way fabio's
//! does (it re-reads every service on every change), and the number of
//! blocking queries must stay under Consul's `http_max_conns_per_client`
//! (200), so discovery watches per node, not per service:
//! - `catalog/nodes` gives the nodes to follow;
//! - per node, `catalog/node/<node>` wakes on that node's registrations and
//!   is read together with `health/node/<node>` (one consistent view of the
//!   node, so a new instance is never routed before its checks are known);
//! - `health/state/any` wakes on any check change anywhere;
//! - the overrides KV key.
//!
//! A coordinator task owns the caches, merges bursts of changes for a few
//! milliseconds, rebuilds the table from the caches (no Consul round trip)
//! and swaps it in. A failed read changes nothing: each cache keeps its last
//! good state, so an outage or a leader loss never empties the table.

mod model;
mod state;
pub mod status;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consul::{QueryOptions, Response};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::routes::{Instance, Table};
use state::{Action, Event, State};
pub use status::{Shared, Snapshot};
pub use watch::Timing;

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub tag_prefix: String,
    pub overrides_key: String,
    pub timing: Timing,
    /// How long to wait for more changes before rebuilding.
    pub coalesce: Duration,
}

/// Starts the watches and the coordinator; they run until the process ends.
pub fn spawn(client: consul::Client, config: Config, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(Coordinator::new(client, config, shared).run())
}

/// Upper bound on merging: a steady stream of changes still publishes.
const MAX_COALESCE: Duration = Duration::from_millis(50);

struct Coordinator {
    client: consul::Client,
    config: Config,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    state: State,
    node_watches: BTreeMap<String, JoinHandle<()>>,
    last_problems: Vec<String>,
    /// A fingerprint of what the published table was built from: a wake-up
    /// that changes nothing that matters (a check's output, another node's
    /// index) does not rebuild or republish. A fingerprint rather than a
    /// copy: the copy of 10,000 instances held about 4 MB.
    last_input: Option<u128>,
}

impl Coordinator {
    fn new(client: consul::Client, config: Config, shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        Coordinator {
            client,
            config,
            shared,
            tx,
            rx,
            state: State::default(),
            node_watches: BTreeMap::new(),
            last_problems: Vec::new(),
            last_input: None,
        }
    }

    async fn run(mut self) {
        self.spawn_global_watches();
        while let Some(ev) = self.rx.recv().await {
            self.apply(ev);
            let deadline = Instant::now() + MAX_COALESCE;
            while Instant::now() < deadline {
                match tokio::time::timeout(self.config.coalesce, self.rx.recv()).await {
                    Ok(Some(ev)) => self.apply(ev),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if self.state.ready() {
                self.publish();
            }
        }
    }

    fn spawn_global_watches(&self) {
        let t = self.config.timing;
        let c = self.client.clone();
        tokio::spawn(watch::run(
            "catalog/nodes".into(),
            t,
            self.shared.clone(),
            self.tx.clone(),
            move |o| {
                let c = c.clone();
                async move { c.catalog_nodes(&o).await }
            },
            |nodes, _| Event::Nodes(nodes),
        ));
        let c = self.client.clone();
        tokio::spawn(watch::run(
            "health/state/any".into(),
            t,
            self.shared.clone(),
            self.tx.clone(),
            move |o| {
                let c = c.clone();
                async move { c.health_state_any(&o).await }
            },
            Event::Checks,
        ));
        let c = self.client.clone();
        let key = self.config.overrides_key.clone();
        tokio::spawn(watch::run(
            format!("kv/{key}"),
            t,
            self.shared.clone(),
            self.tx.clone(),
            move |o| {
                let c = c.clone();
                let key = key.clone();
                async move { c.kv_get(&key, &o).await }
            },
            |pair, _| {
                Event::Overrides(pair.map(|p| String::from_utf8_lossy(&p.value).into_owned()).unwrap_or_default())
            },
        ));
    }

    fn spawn_node_watch(&self, name: &str) -> JoinHandle<()> {
        let c = self.client.clone();
        let node = name.to_string();
        let ev_node = name.to_string();
        tokio::spawn(watch::run(
            format!("catalog/node/{name}"),
            self.config.timing,
            self.shared.clone(),
            self.tx.clone(),
            move |o| {
                let c = c.clone();
                let node = node.clone();
                async move {
                    let services = c.catalog_node(&node, &o).await?;
                    let checks = c.health_node(&node, &QueryOptions::default()).await?;
                    Ok(Response {
                        value: (services.value, checks.value, checks.index),
                        index: services.index,
                        known_leader: services.known_leader && checks.known_leader,
                        last_contact_ms: services.last_contact_ms,
                    })
                }
            },
            move |(node, checks, checks_index), _| Event::Node { name: ev_node.clone(), node, checks, checks_index },
        ))
    }

    fn apply(&mut self, ev: Event) {
        for action in self.state.apply(ev) {
            match action {
                Action::Follow(name) => {
                    tracing::debug!(node = %name, "following node");
                    let h = self.spawn_node_watch(&name);
                    self.node_watches.insert(name, h);
                }
                Action::Unfollow(name) => {
                    tracing::info!(node = %name, "node left the catalog");
                    if let Some(h) = self.node_watches.remove(&name) {
                        h.abort();
                    }
                }
            }
        }
    }

    fn publish(&mut self) {
        let started = Instant::now();
        let prefix = &self.config.tag_prefix;
        let instances = self.state.instances(prefix);
        let overrides = self.state.overrides().to_string();
        let input = fingerprint(&instances, &overrides);
        if self.last_input == Some(input) {
            tracing::trace!("no routing-relevant change");
            return;
        }
        let (mut table, problems) = Table::build(&instances, &overrides, prefix);
        table.keep_stats(&self.shared.snapshot.load().table);
        let shown: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.source, p.message)).collect();
        if shown != self.last_problems {
            for p in &problems {
                tracing::warn!(source = %p.source, problem = %p.message, "route skipped");
            }
            self.last_problems = shown;
        }
        let routes = table.len();
        let n = instances.len();
        self.shared.snapshot.store(Arc::new(Snapshot {
            table,
            problems,
            overrides,
            instances: n,
            built_unix_ms: status::unix_ms(),
        }));
        self.shared.status.set_loaded();
        self.last_input = Some(input);
        crate::memory::release_free();
        tracing::debug!(routes, instances = n, build_us = started.elapsed().as_micros() as u64, "table published");
    }
}

/// 128 bits that change whenever the instances or the overrides do (two
/// 64-bit hashes with different seeds; a collision would only delay one
/// rebuild until the next change).
fn fingerprint(instances: &[Instance], overrides: &str) -> u128 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let hash = |seed: u64| {
        let mut h = foldhash::quality::FixedState::with_seed(seed).build_hasher();
        instances.hash(&mut h);
        overrides.hash(&mut h);
        h.finish()
    };
    (u128::from(hash(0x9e37_79b9_7f4a_7c15)) << 64) | u128::from(hash(0xc2b2_ae3d_27d4_eb4f))
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn any_change_of_input_changes_the_fingerprint() {
        let a = Instance {
            service: "web".into(),
            id: "w1".into(),
            address: "10.0.0.1".into(),
            port: 80,
            tags: vec!["urlprefix-a.com/".into()],
        };
        let base = fingerprint(std::slice::from_ref(&a), "");
        assert_eq!(base, fingerprint(std::slice::from_ref(&a.clone()), ""), "same input, same fingerprint");
        let mut b = a.clone();
        b.port = 81;
        let mut c = a.clone();
        c.tags.push("x".into());
        let mut d = a.clone();
        d.address = "10.0.0.2".into();
        for changed in [
            fingerprint(&[b], ""),
            fingerprint(&[c], ""),
            fingerprint(&[d], ""),
            fingerprint(std::slice::from_ref(&a), "route del web"),
            fingerprint(&[a.clone(), a.clone()], ""),
            fingerprint(&[], ""),
        ] {
            assert_ne!(changed, base);
        }
    }
}
