//! The sync loop: the one owner of desired state and the only code that
//! talks to Consul. Sources feed it [`SourceEvent`]s; it turns workloads
//! into registrations (conventions) and keeps the local agent matching
//! them (reconcile).
//!
//! - Events are applied at once (register, deregister, TTL update), so a
//!   container start reaches Consul within one inspect and one PUT.
//! - A full reconcile (`agent/services` vs desired, see `reconcile`) runs
//!   on every source snapshot (start, Docker reconnect, Kubernetes relist),
//!   every `--resync`, and whenever the agent lost our entries.
//! - Agent restarts: a dev agent or one that lost its data dir comes back
//!   empty. Every second we list the agent's service IDs; one of ours
//!   missing means the agent forgot us, and we reconcile at once.
//! - Consul down: any failed call marks a reconcile as owed and retries it
//!   with backoff. Events keep updating desired state meanwhile, so when
//!   Consul returns the first reconcile makes it exactly right.
//! - Health: registrar-owned TTL checks are refreshed every third of their
//!   TTL and updated at once when a workload's health signal flips.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use consul::{ServiceRegistration, TtlStatus};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{debug, info, warn};

use crate::conventions::{self, HEALTH_TTL_SECS, Options, Warning, health_check_id};
use crate::reconcile::{self, Step};
use crate::source::SourceEvent;
use crate::workload::{SourceKind, Workload};
use consul::Backoff;

/// How often the agent is checked for entries it lost.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub options: Options,
    /// `--resync`: period of the full reconcile.
    pub resync: Duration,
}

/// One workload, the registrations made from it, and the values skipped
/// (kept so a warning is logged when it appears, not on every event).
struct Tracked {
    workload: Workload,
    services: Vec<ServiceRegistration>,
    warnings: Vec<Warning>,
}

type Key = (SourceKind, String);

pub struct Sync {
    consul: consul::Client,
    config: Config,
    tracked: BTreeMap<Key, Tracked>,
    /// Sources that sent a snapshot: only their entries may be removed.
    listed: BTreeSet<SourceKind>,
    /// A Consul call failed: a full reconcile is owed, at this instant
    /// (backoff); per-event calls pause until it succeeds.
    owed: Option<Instant>,
    backoff: Backoff,
    /// Workloads already logged as having nothing to register.
    quiet: HashSet<Key>,
}

impl Sync {
    pub fn new(consul: consul::Client, config: Config) -> Self {
        Sync {
            consul,
            config,
            tracked: BTreeMap::new(),
            listed: BTreeSet::new(),
            owed: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            quiet: HashSet::new(),
        }
    }

    /// Runs until every source has hung up.
    pub async fn run(mut self, mut events: mpsc::Receiver<SourceEvent>) {
        let now = Instant::now();
        let mut resync = interval_at(now + self.config.resync, self.config.resync);
        let mut presence = interval_at(now + PRESENCE_INTERVAL, PRESENCE_INTERVAL);
        let ttl_period = Duration::from_secs(HEALTH_TTL_SECS / 3);
        let mut ttl = interval_at(now + ttl_period, ttl_period);
        for t in [&mut resync, &mut presence, &mut ttl] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            let retry_at = self.owed.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return,
                },
                _ = sleep_until(retry_at), if self.owed.is_some() => self.reconcile("retry").await,
                _ = resync.tick() => self.reconcile("resync").await,
                _ = presence.tick(), if self.owed.is_none() => self.check_presence().await,
                _ = ttl.tick(), if self.owed.is_none() => self.refresh_ttls().await,
            }
        }
    }

    async fn handle(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Snapshot { source, workloads } => {
                let mut previous: BTreeMap<Key, Vec<Warning>> = BTreeMap::new();
                self.tracked.retain(|k, t| {
                    if k.0 == source {
                        previous.insert(k.clone(), std::mem::take(&mut t.warnings));
                    }
                    k.0 != source
                });
                for w in workloads {
                    let key = (source, w.key.clone());
                    let seen = previous.get(&key).map_or(&[][..], Vec::as_slice);
                    let tracked = plan(&self.config.options, &mut self.quiet, w, seen);
                    self.tracked.insert(key, tracked);
                }
                self.quiet.retain(|k| k.0 != source || self.tracked.contains_key(k));
                self.listed.insert(source);
                self.reconcile("snapshot").await;
            }
            SourceEvent::Upsert(w) => {
                let key = (w.source, w.key.clone());
                let seen = self.tracked.get(&key).map_or(&[][..], |t| t.warnings.as_slice());
                let tracked = plan(&self.config.options, &mut self.quiet, *w, seen);
                debug!(workload = %tracked.workload.instance, services = tracked.services.len(), "workload changed");
                let services = tracked.services.clone();
                let old = self.tracked.insert(key, tracked);
                if self.owed.is_none() {
                    self.apply_change(old, &services).await;
                }
            }
            SourceEvent::Remove { source, key } => {
                let key = (source, key);
                self.quiet.remove(&key);
                if let Some(old) = self.tracked.remove(&key)
                    && self.owed.is_none()
                {
                    self.apply_change(Some(old), &[]).await;
                }
            }
        }
    }

    /// Brings the agent from `old`'s registrations to `new`: registers what
    /// is new or changed, updates health TTLs in place, removes the rest.
    async fn apply_change(&mut self, old: Option<Tracked>, new: &[ServiceRegistration]) {
        let old = old.map(|t| t.services).unwrap_or_default();
        for step in reconcile::steps(&old, new) {
            match step {
                Step::Register(reg) => match self.consul.register_service(&reg).await {
                    Ok(()) => {
                        info!(service_id = %reg.id, service = %reg.name, address = %reg.address, port = ?reg.port, "registered")
                    }
                    Err(error) => return self.failed("register", &reg.id, &error),
                },
                Step::Health { service_id, passing } => {
                    let status = if passing { TtlStatus::Pass } else { TtlStatus::Fail };
                    if let Err(error) = self.consul.ttl_check(&health_check_id(&service_id), status, "").await {
                        return self.failed("update health check", &service_id, &error);
                    }
                    info!(service_id = %service_id, healthy = passing, "health check updated");
                }
                Step::Deregister(id) => match self.consul.deregister_service(&id).await {
                    Ok(()) => info!(service_id = %id, "deregistered"),
                    Err(error) => return self.failed("deregister", &id, &error),
                },
            }
        }
    }

    /// Every registration we want, by ID; on a clash the first wins (and
    /// with `report`, the clash is logged).
    fn desired(&self, report: bool) -> BTreeMap<String, ServiceRegistration> {
        let mut desired = BTreeMap::new();
        for t in self.tracked.values() {
            for reg in &t.services {
                if desired.contains_key(&reg.id) {
                    if report {
                        warn!(service_id = %reg.id, workload = %t.workload.instance, "service ID already used by another workload; skipped");
                    }
                } else {
                    desired.insert(reg.id.clone(), reg.clone());
                }
            }
        }
        desired
    }

    /// Makes the agent hold exactly the desired entries among ours.
    async fn reconcile(&mut self, why: &'static str) {
        let actual = match self.consul.agent_services().await {
            Ok(a) => a,
            Err(error) => return self.failed("list agent services", why, &error),
        };
        let diff = reconcile::diff(&self.desired(true), &actual, &self.config.node, &self.listed);
        if !diff.is_empty() {
            info!(
                reason = why,
                register = diff.register.len(),
                deregister = diff.deregister.len(),
                "reconciling with Consul"
            );
        }
        for reg in &diff.register {
            if let Err(error) = self.consul.register_service(reg).await {
                return self.failed("register", &reg.id, &error);
            }
            info!(service_id = %reg.id, service = %reg.name, address = %reg.address, port = ?reg.port, "registered");
        }
        for id in &diff.deregister {
            if let Err(error) = self.consul.deregister_service(id).await {
                return self.failed("deregister", id, &error);
            }
            info!(service_id = %id, "deregistered stale entry");
        }
        if self.owed.take().is_some() {
            info!(reason = why, "Consul in sync again");
        }
        self.backoff.reset();
        debug!(reason = why, services = actual.len(), "reconciled");
        self.refresh_ttls().await;
    }

    /// Reconciles when the agent lost any entry we registered.
    async fn check_presence(&mut self) {
        let actual = match self.consul.agent_services().await {
            Ok(a) => a,
            Err(error) => return self.failed("list agent services", "presence", &error),
        };
        let missing = self.desired(false).keys().filter(|id| !actual.contains_key(*id)).count();
        if missing > 0 {
            warn!(missing, "Consul agent lost our entries (agent restarted?); reconciling");
            self.reconcile("agent lost entries").await;
        }
    }

    /// Re-asserts every registrar-owned TTL check before it expires.
    async fn refresh_ttls(&mut self) {
        let checks: Vec<(String, TtlStatus)> = self
            .tracked
            .values()
            .flat_map(|t| t.services.iter())
            .filter_map(|reg| {
                let status = if reconcile::health_passing(reg)? { TtlStatus::Pass } else { TtlStatus::Fail };
                Some((health_check_id(&reg.id), status))
            })
            .collect();
        for (check_id, status) in checks {
            if let Err(error) = self.consul.ttl_check(&check_id, status, "").await {
                return self.failed("refresh health check", &check_id, &error);
            }
        }
    }

    /// Records a failed Consul call: a full reconcile is owed after backoff.
    fn failed(&mut self, what: &str, subject: &str, error: &consul::Error) {
        let delay = self.backoff.next_delay();
        warn!(operation = what, subject, %error, retry_in = ?delay, "Consul call failed; will reconcile");
        self.owed = Some(Instant::now() + delay);
    }
}

/// The registrations of `w`, logging skipped values not among `seen`
/// (already logged), and once, a workload with nothing to register.
fn plan(options: &Options, quiet: &mut HashSet<Key>, w: Workload, seen: &[Warning]) -> Tracked {
    let plan = conventions::registrations(&w, options);
    for warning in plan.warnings.iter().filter(|warning| !seen.contains(warning)) {
        warn!(workload = %w.instance, key = %warning.key, value = %warning.value, "{}", warning.problem);
    }
    let key = (w.source, w.key.clone());
    if plan.services.is_empty() {
        if quiet.insert(key) {
            debug!(workload = %w.instance, source = %w.source, "nothing to register (no reachable port, or ignored)");
        }
    } else {
        quiet.remove(&key);
    }
    Tracked { workload: w, services: plan.services, warnings: plan.warnings }
}
