//! The sync loop's memory, as a pure state type: source events go in, the
//! Consul steps they call for come out. Kept free of I/O so the rules are
//! unit-tested without Docker or a Kubernetes API:
//! - a snapshot replaces only its own source's workloads, and marks the
//!   source as listed (only listed sources' Consul entries may be removed);
//! - on a service-ID clash the first workload in key order wins, on the
//!   event path exactly as in a full reconcile (so an upsert of the loser
//!   registers nothing, and the removal of the winner hands the ID over);
//! - a workload with nothing to register is logged once, a skipped value
//!   once per appearance.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use consul::ServiceRegistration;
use tracing::{debug, warn};

use crate::conventions::{self, Options, Warning, health_check_id};
use crate::reconcile::{self, Step};
use crate::source::SourceEvent;
use crate::workload::{SourceKind, Workload};

/// A workload's identity in the state: its source and its key there.
pub type Key = (SourceKind, String);

/// One workload, the registrations made from it, and the values skipped
/// (kept so a warning is logged when it appears, not on every event).
#[derive(Debug)]
struct Tracked {
    workload: Workload,
    services: Vec<ServiceRegistration>,
    warnings: Vec<Warning>,
}

/// What the shell must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A snapshot arrived: list the agent and make it match
    /// [`Desired::registrations`].
    Reconcile,
    /// Apply these calls in order (possibly none).
    Steps(Vec<Step>),
}

/// A registration that lost a service-ID clash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub service_id: String,
    /// The losing workload, as named in service IDs.
    pub workload: String,
}

/// Every registration wanted, by ID, and the ones that lost a clash.
#[derive(Debug, Default)]
pub struct Wanted {
    pub by_id: BTreeMap<String, ServiceRegistration>,
    pub clashes: Vec<Clash>,
}

/// What this node's workloads want in Consul.
#[derive(Debug)]
pub struct Desired {
    options: Options,
    tracked: BTreeMap<Key, Tracked>,
    /// Sources that sent a snapshot: only their entries may be removed.
    listed: BTreeSet<SourceKind>,
    /// Workloads already logged as having nothing to register.
    quiet: HashSet<Key>,
}

impl Desired {
    pub fn new(options: Options) -> Self {
        Desired { options, tracked: BTreeMap::new(), listed: BTreeSet::new(), quiet: HashSet::new() }
    }

    pub fn listed(&self) -> &BTreeSet<SourceKind> {
        &self.listed
    }

    pub fn apply(&mut self, event: SourceEvent) -> Effect {
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
                    let tracked = plan(&self.options, &mut self.quiet, w, seen);
                    self.tracked.insert(key, tracked);
                }
                self.quiet.retain(|k| k.0 != source || self.tracked.contains_key(k));
                self.listed.insert(source);
                Effect::Reconcile
            }
            SourceEvent::Upsert(w) => {
                let key = (w.source, w.key.clone());
                let seen = self.tracked.get(&key).map_or(&[][..], |t| t.warnings.as_slice());
                let tracked = plan(&self.options, &mut self.quiet, *w, seen);
                debug!(workload = %tracked.workload.name, services = tracked.services.len(), "workload changed");
                self.replace(key, Some(tracked))
            }
            SourceEvent::Remove { source, key } => {
                let key = (source, key);
                self.quiet.remove(&key);
                self.replace(key, None)
            }
        }
    }

    /// Puts `new` in place of `key`'s workload and returns the calls that
    /// take the agent from the registrations wanted before to those wanted
    /// after, for the service IDs either one uses: clashes are settled the
    /// same way as in [`Desired::registrations`].
    fn replace(&mut self, key: Key, new: Option<Tracked>) -> Effect {
        let touched: BTreeSet<String> = self
            .tracked
            .get(&key)
            .into_iter()
            .chain(new.as_ref())
            .flat_map(|t| t.services.iter().map(|s| s.id.clone()))
            .collect();
        let before = self.registrations_of(&touched);
        match new {
            Some(t) => self.tracked.insert(key, t),
            None => self.tracked.remove(&key),
        };
        let after = self.registrations_of(&touched);
        Effect::Steps(reconcile::steps(&before, &after))
    }

    /// The winning registrations among `ids`, in ID order.
    fn registrations_of(&self, ids: &BTreeSet<String>) -> Vec<ServiceRegistration> {
        let mut by_id = BTreeMap::new();
        for reg in self.tracked.values().flat_map(|t| &t.services).filter(|r| ids.contains(&r.id)) {
            by_id.entry(reg.id.clone()).or_insert_with(|| reg.clone());
        }
        by_id.into_values().collect()
    }

    /// Every registration wanted, by ID; on a clash the first workload in
    /// key order wins and the others are listed in [`Wanted::clashes`].
    pub fn registrations(&self) -> Wanted {
        let mut wanted = Wanted::default();
        for t in self.tracked.values() {
            for reg in &t.services {
                if wanted.by_id.contains_key(&reg.id) {
                    wanted.clashes.push(Clash { service_id: reg.id.clone(), workload: t.workload.name.to_string() });
                } else {
                    wanted.by_id.insert(reg.id.clone(), reg.clone());
                }
            }
        }
        wanted
    }

    /// The registrar-owned TTL checks of the winning registrations and the
    /// status each should report (a clash's loser must not overwrite the
    /// winner's check, which has the same ID).
    pub fn ttl_checks(&self) -> Vec<(String, bool)> {
        self.registrations()
            .by_id
            .values()
            .filter_map(|reg| Some((health_check_id(&reg.id), reconcile::health_passing(reg)?)))
            .collect()
    }
}

/// The registrations of `w`, logging skipped values not among `seen`
/// (already logged), and once, a workload with nothing to register.
fn plan(options: &Options, quiet: &mut HashSet<Key>, w: Workload, seen: &[Warning]) -> Tracked {
    let plan = conventions::registrations(&w, options);
    for warning in plan.warnings.iter().filter(|warning| !seen.contains(warning)) {
        warn!(workload = %w.name, key = %warning.key, value = %warning.value, "{}", warning.problem);
    }
    let key = (w.source, w.key.clone());
    if plan.services.is_empty() {
        if quiet.insert(key) {
            debug!(workload = %w.name, source = %w.source, "nothing to register (no reachable port, or ignored)");
        }
    } else {
        quiet.remove(&key);
    }
    Tracked { workload: w, services: plan.services, warnings: plan.warnings }
}

#[cfg(test)]
mod tests;
