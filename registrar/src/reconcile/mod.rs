//! The pure diff between what this node's workloads want in Consul and what
//! the local agent holds. No I/O: the sync loop fetches `agent/services`,
//! calls [`diff`], and applies the result.
//!
//! Ownership is by meta, not by ID shape: an entry is ours when its
//! `registrar-node` is this node and its `registrar-source` is a source
//! that has listed its workloads. So entries registered by hand, by
//! another node's registrar, or by a source still starting up are never
//! touched, and a restarted registrar removes exactly its own stale ones.

mod incremental;

use std::collections::{BTreeMap, BTreeSet};

use consul::{AgentService, ServiceRegistration};

use crate::conventions::{META_NODE, META_SOURCE};
use crate::workload::SourceKind;

pub use incremental::{Step, health_passing, steps};

/// What to change on the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Missing or different: register (Consul replaces by ID).
    pub register: Vec<ServiceRegistration>,
    /// Ours, but no longer wanted: deregister by ID.
    pub deregister: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.register.is_empty() && self.deregister.is_empty()
    }
}

/// True when `svc` was registered by this node's registrar for one of the
/// `listed` sources.
pub fn owned(svc: &AgentService, node: &str, listed: &BTreeSet<SourceKind>) -> bool {
    svc.meta.get(META_NODE).is_some_and(|n| n == node)
        && svc.meta.get(META_SOURCE).and_then(|s| SourceKind::parse(s)).is_some_and(|s| listed.contains(&s))
}

/// True when the agent's entry is what `want` would register. The
/// fingerprint in meta covers the checks, which `agent/services` omits.
pub fn matches(want: &ServiceRegistration, have: &AgentService) -> bool {
    want.name == have.service
        && want.tags == have.tags
        && want.address == have.address
        && want.port.unwrap_or(0) == have.port
        && want.meta == have.meta
}

/// The changes that make `actual` (all of the agent's services, by ID)
/// hold exactly `desired` among the entries this registrar owns.
pub fn diff(
    desired: &BTreeMap<String, ServiceRegistration>,
    actual: &BTreeMap<String, AgentService>,
    node: &str,
    listed: &BTreeSet<SourceKind>,
) -> Diff {
    let register = desired
        .iter()
        .filter(|(id, want)| actual.get(*id).is_none_or(|have| !matches(want, have)))
        .map(|(_, want)| want.clone())
        .collect();
    let deregister = actual
        .iter()
        .filter(|(id, have)| !desired.contains_key(*id) && owned(have, node, listed))
        .map(|(id, _)| id.clone())
        .collect();
    Diff { register, deregister }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(node: &str, source: &str) -> BTreeMap<String, String> {
        [(META_NODE.to_string(), node.to_string()), (META_SOURCE.to_string(), source.to_string())].into()
    }

    fn want(id: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            name: "web".into(),
            tags: vec!["a".into(), "b".into()],
            address: "10.0.0.2".into(),
            port: Some(80),
            meta: meta("n1", "docker"),
            checks: vec![],
        }
    }

    fn have(w: &ServiceRegistration) -> AgentService {
        AgentService {
            id: w.id.clone(),
            service: w.name.clone(),
            tags: w.tags.clone(),
            meta: w.meta.clone(),
            port: w.port.unwrap_or(0),
            address: w.address.clone(),
        }
    }

    fn docker() -> BTreeSet<SourceKind> {
        [SourceKind::Docker].into()
    }

    fn by_id<T: Clone>(items: &[(&str, T)]) -> BTreeMap<String, T> {
        items.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn in_sync_is_empty() {
        let w = want("n1:web:80");
        let d = diff(&by_id(&[("n1:web:80", w.clone())]), &by_id(&[("n1:web:80", have(&w))]), "n1", &docker());
        assert!(d.is_empty());
    }

    #[test]
    fn missing_is_registered() {
        let w = want("n1:web:80");
        let d = diff(&by_id(&[("n1:web:80", w.clone())]), &BTreeMap::new(), "n1", &docker());
        assert_eq!(d.register, [w]);
        assert!(d.deregister.is_empty());
    }

    #[test]
    fn stale_owned_entry_is_deregistered() {
        let w = want("n1:old:80");
        let d = diff(&BTreeMap::new(), &by_id(&[("n1:old:80", have(&w))]), "n1", &docker());
        assert_eq!(d.deregister, ["n1:old:80"]);
    }

    #[test]
    fn foreign_entries_are_left_alone() {
        let mut other_node = have(&want("n2:web:80"));
        other_node.meta = meta("n2", "docker");
        let mut by_hand = have(&want("consul"));
        by_hand.meta.clear();
        let mut unknown_source = have(&want("n1:x:80"));
        unknown_source.meta = meta("n1", "nomad");
        let actual = by_id(&[("n2:web:80", other_node), ("consul", by_hand), ("n1:x:80", unknown_source)]);
        assert!(diff(&BTreeMap::new(), &actual, "n1", &docker()).is_empty());
    }

    #[test]
    fn sources_not_yet_listed_keep_their_entries() {
        let mut pod = have(&want("n1:default:api:80"));
        pod.meta = meta("n1", "kubernetes");
        let actual = by_id(&[("n1:default:api:80", pod)]);
        assert!(diff(&BTreeMap::new(), &actual, "n1", &docker()).is_empty());
        let both = [SourceKind::Docker, SourceKind::Kubernetes].into();
        assert_eq!(diff(&BTreeMap::new(), &actual, "n1", &both).deregister, ["n1:default:api:80"]);
    }

    #[test]
    fn every_field_that_matters_triggers_a_reregistration() {
        let w = want("n1:web:80");
        let changes: Vec<fn(&mut AgentService)> = vec![
            |h| h.service = "other".into(),
            |h| h.tags.reverse(),
            |h| h.tags.push("c".into()),
            |h| h.address = "10.0.0.3".into(),
            |h| h.port = 81,
            |h| {
                h.meta.insert("registrar-hash".into(), "0".into());
            },
        ];
        for change in changes {
            let mut h = have(&w);
            change(&mut h);
            let d = diff(&by_id(&[("n1:web:80", w.clone())]), &by_id(&[("n1:web:80", h.clone())]), "n1", &docker());
            assert_eq!(d.register, std::slice::from_ref(&w), "{h:?}");
            assert!(d.deregister.is_empty());
        }
    }

    #[test]
    fn an_unowned_entry_with_our_id_is_overwritten_not_removed() {
        let w = want("n1:web:80");
        let mut h = have(&w);
        h.meta.clear();
        let d = diff(&by_id(&[("n1:web:80", w.clone())]), &by_id(&[("n1:web:80", h)]), "n1", &docker());
        assert_eq!(d, Diff { register: vec![w], deregister: vec![] });
    }

    #[test]
    fn mixed_changes() {
        let keep = want("n1:keep:80");
        let new = want("n1:new:80");
        let gone = want("n1:gone:80");
        let desired = by_id(&[("n1:keep:80", keep.clone()), ("n1:new:80", new.clone())]);
        let actual = by_id(&[("n1:keep:80", have(&keep)), ("n1:gone:80", have(&gone))]);
        let d = diff(&desired, &actual, "n1", &docker());
        assert_eq!(d.register, [new]);
        assert_eq!(d.deregister, ["n1:gone:80"]);
    }
}
