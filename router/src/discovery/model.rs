//! What discovery knows about the catalog, and the one rule that turns it into
//! routable instances: an instance is routed only while every check that
//! applies to it passes (its own and its node's; maintenance is a critical
//! check), and an instance without checks is routed. Pure, so the rule is
//! tested without Consul.

use std::collections::BTreeMap;

use consul::{CatalogService, CheckStatus, HealthCheck};

use crate::routes::Instance;

/// One node as last read: its address, its services and the checks on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub address: String,
    pub services: Vec<CatalogService>,
    pub checks: Vec<HealthCheck>,
    /// Index of the read the checks come from, so an older datacenter-wide
    /// checks read never overwrites a newer per-node one.
    pub checks_index: u64,
}

/// The catalog as discovery sees it, by node name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub nodes: BTreeMap<String, NodeState>,
}

impl Catalog {
    /// Replaces every node's checks with those of a datacenter-wide read taken
    /// at `index`, except nodes read more recently on their own.
    pub fn apply_all_checks(&mut self, checks: Vec<HealthCheck>, index: u64) {
        let mut by_node: BTreeMap<String, Vec<HealthCheck>> = BTreeMap::new();
        for c in checks {
            by_node.entry(c.node.clone()).or_default().push(c);
        }
        for (name, node) in &mut self.nodes {
            if node.checks_index <= index {
                node.checks = by_node.remove(name).unwrap_or_default();
                node.checks_index = index;
            }
        }
    }

    /// Every healthy instance that carries at least one tag with `prefix`.
    pub fn instances(&self, prefix: &str) -> Vec<Instance> {
        let mut out = Vec::new();
        for node in self.nodes.values() {
            let node_ok = node.checks.iter().filter(|c| c.service_id.is_empty()).all(passing);
            if !node_ok {
                continue;
            }
            for svc in &node.services {
                if !svc.tags.iter().any(|t| t.trim_start().starts_with(prefix)) {
                    continue;
                }
                let ok = node.checks.iter().filter(|c| c.service_id == svc.id).all(passing);
                if !ok {
                    continue;
                }
                let address = if svc.address.is_empty() { node.address.clone() } else { svc.address.clone() };
                out.push(Instance {
                    service: svc.service.clone(),
                    id: svc.id.clone(),
                    address,
                    port: svc.port,
                    tags: svc.tags.clone(),
                });
            }
        }
        out
    }
}

fn passing(c: &HealthCheck) -> bool {
    c.status == CheckStatus::Passing
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn svc(id: &str, name: &str, addr: &str, tags: &[&str]) -> CatalogService {
        CatalogService {
            id: id.into(),
            service: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: addr.into(),
            port: 8080,
            meta: Default::default(),
        }
    }

    /// A check on `service_id` (empty: a node check), shared with `state`'s tests.
    pub(in crate::discovery) fn check(node: &str, service_id: &str, status: CheckStatus) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: format!("c-{service_id}"),
            name: String::new(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: service_id.into(),
            service_name: String::new(),
            service_tags: vec![],
            modify_index: 0,
        }
    }

    fn one_node(services: Vec<CatalogService>, checks: Vec<HealthCheck>) -> Catalog {
        let mut c = Catalog::default();
        c.nodes.insert("n1".into(), NodeState { address: "10.0.0.1".into(), services, checks, checks_index: 1 });
        c
    }

    fn ids(c: &Catalog) -> Vec<String> {
        c.instances("urlprefix-").into_iter().map(|i| i.id).collect()
    }

    #[test]
    fn instance_without_checks_is_routed() {
        let c = one_node(vec![svc("a", "web", "", &["urlprefix-/"])], vec![]);
        assert_eq!(ids(&c), ["a"]);
    }

    #[test]
    fn node_address_is_used_when_the_service_has_none() {
        let c = one_node(
            vec![svc("a", "web", "", &["urlprefix-/"]), svc("b", "web", "10.9.9.9", &["urlprefix-/"])],
            vec![],
        );
        let inst = c.instances("urlprefix-");
        assert_eq!(inst[0].address, "10.0.0.1");
        assert_eq!(inst[1].address, "10.9.9.9");
        assert_eq!(inst[0].port, 8080);
        assert_eq!(inst[0].service, "web");
    }

    #[test]
    fn services_without_the_prefix_are_ignored() {
        let c = one_node(vec![svc("a", "web", "", &["other"]), svc("b", "db", "", &[])], vec![]);
        assert!(ids(&c).is_empty());
    }

    #[test]
    fn a_failing_service_check_removes_only_that_instance() {
        let c = one_node(
            vec![svc("a", "web", "", &["urlprefix-/"]), svc("b", "web", "", &["urlprefix-/"])],
            vec![check("n1", "a", CheckStatus::Critical), check("n1", "b", CheckStatus::Passing)],
        );
        assert_eq!(ids(&c), ["b"]);
    }

    #[test]
    fn warning_and_maintenance_are_not_passing() {
        for status in [CheckStatus::Warning, CheckStatus::Unknown, CheckStatus::Critical] {
            let c = one_node(vec![svc("a", "web", "", &["urlprefix-/"])], vec![check("n1", "a", status)]);
            assert!(ids(&c).is_empty(), "{status:?}");
        }
    }

    #[test]
    fn a_failing_node_check_removes_every_instance_on_the_node() {
        let c = one_node(
            vec![svc("a", "web", "", &["urlprefix-/"]), svc("b", "api", "", &["urlprefix-/api"])],
            vec![check("n1", "", CheckStatus::Critical)],
        );
        assert!(ids(&c).is_empty());
    }

    #[test]
    fn all_checks_must_pass() {
        let c = one_node(
            vec![svc("a", "web", "", &["urlprefix-/"])],
            vec![check("n1", "a", CheckStatus::Passing), check("n1", "a", CheckStatus::Critical)],
        );
        assert!(ids(&c).is_empty());
    }

    #[test]
    fn datacenter_checks_apply_per_node_unless_older() {
        let mut c = one_node(vec![svc("a", "web", "", &["urlprefix-/"])], vec![]);
        c.nodes.insert(
            "n2".into(),
            NodeState {
                address: "10.0.0.2".into(),
                services: vec![svc("b", "web", "", &["urlprefix-/"])],
                checks: vec![],
                checks_index: 50,
            },
        );
        c.apply_all_checks(vec![check("n1", "a", CheckStatus::Critical), check("n2", "b", CheckStatus::Critical)], 10);
        assert_eq!(ids(&c), ["b"], "n2 was read at 50, after the datacenter read at 10");
        c.apply_all_checks(vec![check("n2", "b", CheckStatus::Critical)], 60);
        assert_eq!(ids(&c), ["a"], "n1 has no checks any more");
        c.apply_all_checks(vec![], 70);
        assert_eq!(ids(&c), ["a", "b"]);
    }
}
