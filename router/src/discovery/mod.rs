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
//! - the overrides KV key, and the no-route page's key when one is set.
//!
//! Before any of that it reads the agent's datacenter (`agent/self`), the
//! value of `$DC` in tags, so no table is ever built with it unknown.
//!
//! A coordinator task owns the caches, merges bursts of changes for a few
//! milliseconds, rebuilds the table from the caches (no Consul round trip)
//! and swaps it in. A failed read changes nothing: each cache keeps its last
//! good state, so an outage or a leader loss never empties the table. Reads
//! are `stale` and judged by their freshness headers (watch.rs); a liveness
//! probe (probe.rs) finds a silent agent within about a second.

mod model;
mod probe;
mod state;
pub mod status;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consul::{QueryOptions, Response};
use kit::StopWatch;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::routes::{Instance, Problem, Table, Vars};
pub use state::Limits;
use state::{Action, Event, State};
pub use status::{Shared, Snapshot};
pub use watch::Timing;

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub tag_prefix: String,
    pub overrides_key: String,
    /// KV key of the HTML page for unrouted requests (`--no-route-html-key`);
    /// empty: none.
    pub no_route_html_key: String,
    pub timing: Timing,
    /// How long to wait for more changes before rebuilding.
    pub coalesce: Duration,
    pub limits: Limits,
    /// `--tcp-ports`: TCP routes on other ports are dropped with a problem.
    pub tcp_ports: router::routes::PortRanges,
}

/// Why discovery ended before the process stopped (its supervisor logs
/// this and starts it again; the published table stays meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("watch {watch} ended: {reason}")]
    WatchEnded { watch: String, reason: String },
}

/// Runs the watches and the coordinator until `stop`; the watches are the
/// coordinator's tasks, so they end with it (a restarted discovery does not
/// leave the old one's watches behind), and one that ends on its own ends
/// discovery with the reason.
pub async fn run(
    client: consul::Client,
    config: Config,
    shared: Arc<Shared>,
    stop: StopWatch,
) -> Result<(), DiscoveryError> {
    Coordinator::new(client, config, shared).run(stop).await
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
    /// Every watch task; aborted together when the coordinator ends.
    watches: JoinSet<String>,
    node_watches: BTreeMap<String, AbortHandle>,
    /// The problems last logged, so each is logged once.
    last_problems: BTreeSet<(String, String)>,
    /// A fingerprint of what the published table was built from: a wake-up
    /// that changes nothing that matters (a check's output, another node's
    /// index) does not rebuild or republish. A fingerprint rather than a
    /// copy: the copy of 10,000 instances held about 4 MB.
    last_input: Option<u128>,
    /// The values of tag variables (`$DC`).
    vars: Vars,
}

impl Coordinator {
    fn new(client: consul::Client, config: Config, shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let state = State::new(config.limits);
        Coordinator {
            client,
            config,
            shared,
            tx,
            rx,
            state,
            watches: JoinSet::new(),
            node_watches: BTreeMap::new(),
            last_problems: BTreeSet::new(),
            last_input: None,
            vars: Vars::default(),
        }
    }

    /// The agent's datacenter, asked until the agent answers (the router
    /// cannot route without its agent anyway). An answer that refuses
    /// (e.g. an ACL token without `agent:read`) leaves `$DC` empty, with a
    /// warning, rather than keep the router from routing.
    async fn read_datacenter(&mut self) {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.client.agent_self().await {
                Ok(r) => {
                    let dc = r.value.pointer("/Config/Datacenter").and_then(|v| v.as_str()).unwrap_or_default();
                    tracing::info!(datacenter = dc, "Consul agent's datacenter ($DC in tags)");
                    self.vars.datacenter = dc.to_string();
                    return;
                }
                Err(e @ consul::Error::Status { .. }) => {
                    tracing::warn!(error = %e, "cannot read the Consul agent's datacenter: $DC in tags expands to nothing");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the Consul agent's datacenter");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run(mut self, mut stop: StopWatch) -> Result<(), DiscoveryError> {
        self.read_datacenter().await;
        self.spawn_global_watches();
        loop {
            let ev = tokio::select! {
                Some(ev) = self.rx.recv() => ev,
                Some(ended) = self.watches.join_next() => {
                    self.watch_ended(ended)?;
                    continue;
                }
                () = stop.stopped() => return Ok(()),
            };
            self.apply(ev);
            let deadline = Instant::now() + MAX_COALESCE;
            while Instant::now() < deadline {
                match tokio::time::timeout(self.config.coalesce, self.rx.recv()).await {
                    Ok(Some(ev)) => self.apply(ev),
                    Ok(None) => return Ok(()),
                    Err(_) => break,
                }
            }
            if self.state.ready() {
                self.publish();
            }
        }
    }

    /// A watch task ended: fine if it was unfollowed (aborted), otherwise
    /// discovery cannot trust its caches any more.
    fn watch_ended(&mut self, ended: Result<String, tokio::task::JoinError>) -> Result<(), DiscoveryError> {
        match ended {
            Err(e) if e.is_cancelled() => Ok(()),
            Ok(watch) => Err(DiscoveryError::WatchEnded { watch, reason: "returned".into() }),
            Err(e) => Err(DiscoveryError::WatchEnded { watch: "a watch".into(), reason: e.to_string() }),
        }
    }

    fn spawn_global_watches(&mut self) {
        let probe = probe::run(self.client.clone(), self.shared.clone());
        self.watches.spawn(async move {
            probe.await;
            "liveness probe".to_string()
        });
        let c = self.client.clone();
        self.spawn_watch(
            "catalog/nodes".into(),
            move |o| {
                let c = c.clone();
                async move { c.catalog_nodes(&o).await }
            },
            |nodes, _| Event::Nodes(nodes),
        );
        let c = self.client.clone();
        self.spawn_watch(
            "health/state/any".into(),
            move |o| {
                let c = c.clone();
                async move { c.health_state_any(&o).await }
            },
            Event::Checks,
        );
        let c = self.client.clone();
        let key = self.config.overrides_key.clone();
        self.spawn_watch(
            format!("kv/{key}"),
            move |o| {
                let c = c.clone();
                let key = key.clone();
                async move { c.kv_get(&key, &o).await }
            },
            |pair, _| {
                Event::Overrides(pair.map(|p| String::from_utf8_lossy(&p.value).into_owned()).unwrap_or_default())
            },
        );
        if self.config.no_route_html_key.is_empty() {
            return;
        }
        let c = self.client.clone();
        let key = self.config.no_route_html_key.clone();
        let name = format!("kv/{key}");
        let shared = self.shared.clone();
        // The page does not change the table: stored as it arrives. Both
        // tasks are the coordinator's, like the watches.
        let (tx, mut rx) = mpsc::channel(4);
        self.watches.spawn(async move {
            while let Some(html) = rx.recv().await {
                shared.no_route_html.store(Arc::new(html));
            }
            "no-route page store".to_string()
        });
        let page = watch::run(
            name.clone(),
            self.config.timing,
            self.shared.clone(),
            tx,
            move |o| {
                let c = c.clone();
                let key = key.clone();
                async move { c.kv_get(&key, &o).await }
            },
            |pair, _| pair.map(|p| String::from_utf8_lossy(&p.value).into_owned()).unwrap_or_default(),
        );
        self.watches.spawn(async move {
            page.await;
            name
        });
    }

    /// Runs one watch (see `watch::run`) as the coordinator's task; it
    /// yields its name when it ends.
    fn spawn_watch<T, F, Fut>(
        &mut self,
        name: String,
        read: F,
        event: impl Fn(T, u64) -> Event + Send + 'static,
    ) -> AbortHandle
    where
        T: Send + 'static,
        F: FnMut(QueryOptions) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<T>, consul::Error>> + Send + 'static,
    {
        let watch = watch::run(name.clone(), self.config.timing, self.shared.clone(), self.tx.clone(), read, event);
        self.watches.spawn(async move {
            watch.await;
            name
        })
    }

    fn spawn_node_watch(&mut self, name: &str) -> AbortHandle {
        let c = self.client.clone();
        let node = name.to_string();
        let ev_node = name.to_string();
        self.spawn_watch(
            format!("catalog/node/{name}"),
            move |o| {
                let c = c.clone();
                let node = node.clone();
                async move {
                    let services = c.catalog_node(&node, &o).await?;
                    // As consistent as the read it pairs with (watch.rs).
                    let paired = QueryOptions { stale: o.stale, ..QueryOptions::default() };
                    let checks = c.health_node(&node, &paired).await?;
                    Ok(Response {
                        value: (services.value, checks.value, checks.index),
                        index: services.index,
                        known_leader: services.known_leader && checks.known_leader,
                        last_contact_ms: services.last_contact_ms.max(checks.last_contact_ms),
                    })
                }
            },
            move |(node, checks, checks_index), _| Event::Node { name: ev_node.clone(), node, checks, checks_index },
        )
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

    /// Logs each problem once, when it first appears (and says when one is
    /// gone): a rebuild repeats none, however many there are. Before, every
    /// change logged the whole list (100 services with a bad tag each wrote
    /// 5,150 lines while they registered).
    fn log_problems(&mut self, problems: &[Problem]) {
        let now: BTreeSet<(String, String)> = problems.iter().map(|p| (p.source.clone(), p.message.clone())).collect();
        for (source, problem) in now.difference(&self.last_problems) {
            tracing::warn!(source = %source, problem = %problem, "route skipped");
        }
        for (source, _) in self.last_problems.difference(&now) {
            tracing::info!(source = %source, "problem resolved");
        }
        self.last_problems = now;
    }

    fn publish(&mut self) {
        let started = Instant::now();
        let prefix = &self.config.tag_prefix;
        let instances = self.state.instances(prefix);
        let overrides = self.state.overrides().to_string();
        let input = fingerprint(&instances, &overrides, self.state.problems());
        if self.last_input == Some(input) {
            tracing::trace!("no routing-relevant change");
            return;
        }
        let (mut table, mut problems) = Table::build_with_vars(&instances, &overrides, prefix, &self.vars);
        problems.extend(table.restrict_tcp(&self.config.tcp_ports));
        table.keep_stats(&self.shared.snapshot.load().table);
        problems.extend(
            self.state.problems().map(|(source, message)| Problem { source: source.clone(), message: message.clone() }),
        );
        self.log_problems(&problems);
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
fn fingerprint<'a>(
    instances: &[Instance],
    overrides: &str,
    skipped: impl Iterator<Item = (&'a String, &'a String)> + Clone,
) -> u128 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let hash = |seed: u64| {
        let mut h = foldhash::quality::FixedState::with_seed(seed).build_hasher();
        instances.hash(&mut h);
        overrides.hash(&mut h);
        for p in skipped.clone() {
            p.hash(&mut h);
        }
        h.finish()
    };
    (u128::from(hash(0x9e37_79b9_7f4a_7c15)) << 64) | u128::from(hash(0xc2b2_ae3d_27d4_eb4f))
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    fn none() -> std::iter::Empty<(&'static String, &'static String)> {
        std::iter::empty()
    }

    #[test]
    fn any_change_of_input_changes_the_fingerprint() {
        let a = Instance {
            service: "web".into(),
            id: "w1".into(),
            address: "10.0.0.1".into(),
            port: 80,
            tags: vec!["urlprefix-a.com/".into()],
        };
        let base = fingerprint(std::slice::from_ref(&a), "", none());
        assert_eq!(base, fingerprint(std::slice::from_ref(&a.clone()), "", none()), "same input, same fingerprint");
        let mut b = a.clone();
        b.port = 81;
        let mut c = a.clone();
        c.tags.push("x".into());
        let mut d = a.clone();
        d.address = "10.0.0.2".into();
        for changed in [
            fingerprint(&[b], "", none()),
            fingerprint(&[c], "", none()),
            fingerprint(&[d], "", none()),
            fingerprint(std::slice::from_ref(&a), "route del web", none()),
            fingerprint(&[a.clone(), a.clone()], "", none()),
            fingerprint(&[], "", none()),
            fingerprint(std::slice::from_ref(&a), "", [(&"node \".\"".to_string(), &"x".to_string())].into_iter()),
        ] {
            assert_ne!(changed, base);
        }
    }
}
