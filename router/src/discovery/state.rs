//! The coordinator's memory, as a pure state machine: changes read by the
//! watches go in ([`Event`]), which nodes to start or stop following come
//! out, and [`State::ready`] says when the caches are complete enough to
//! publish. Kept free of I/O so the rules (the first table waits for every
//! node; a node that left takes its services with it; an older checks read
//! never overwrites a newer one) are unit-tested.

use std::collections::BTreeSet;

use consul::{CatalogNode, HealthCheck, Node};

use super::model::Catalog;
use crate::routes::Instance;

/// A change read by one watch.
#[derive(Debug)]
pub enum Event {
    Nodes(Vec<Node>),
    Node { name: String, node: Option<CatalogNode>, checks: Vec<HealthCheck>, checks_index: u64 },
    Checks(Vec<HealthCheck>, u64),
    Overrides(String),
}

/// What the coordinator must do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Follow(String),
    Unfollow(String),
}

#[derive(Debug, Default)]
pub struct State {
    catalog: Catalog,
    followed: BTreeSet<String>,
    /// Followed nodes not read yet.
    unread: BTreeSet<String>,
    have_nodes: bool,
    have_checks: bool,
    overrides: Option<String>,
}

impl State {
    pub fn apply(&mut self, ev: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match ev {
            Event::Nodes(nodes) => {
                self.have_nodes = true;
                let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
                let gone: Vec<String> = self.followed.difference(&names).cloned().collect();
                for name in gone {
                    self.followed.remove(&name);
                    self.catalog.nodes.remove(&name);
                    self.unread.remove(&name);
                    actions.push(Action::Unfollow(name));
                }
                for n in nodes {
                    if self.followed.insert(n.name.clone()) {
                        self.unread.insert(n.name.clone());
                        actions.push(Action::Follow(n.name.clone()));
                    }
                    self.catalog.nodes.entry(n.name).or_default().address = n.address;
                }
            }
            Event::Node { name, node, checks, checks_index } => {
                let Some(state) = self.catalog.nodes.get_mut(&name) else { return actions };
                self.unread.remove(&name);
                match node {
                    Some(n) => {
                        state.address = n.node.address;
                        state.services = n.services.into_values().collect();
                    }
                    None => state.services.clear(),
                }
                if checks_index >= state.checks_index {
                    state.checks = checks;
                    state.checks_index = checks_index;
                }
            }
            Event::Checks(checks, index) => {
                self.have_checks = true;
                self.catalog.apply_all_checks(checks, index);
            }
            Event::Overrides(text) => self.overrides = Some(text),
        }
        actions
    }

    /// Every watch has answered at least once and every followed node has
    /// been read: a table built now is complete.
    pub fn ready(&self) -> bool {
        self.have_nodes && self.have_checks && self.overrides.is_some() && self.unread.is_empty()
    }

    pub fn instances(&self, prefix: &str) -> Vec<Instance> {
        self.catalog.instances(prefix)
    }

    pub fn overrides(&self) -> &str {
        self.overrides.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use consul::{CatalogService, CheckStatus};

    use super::*;
    use crate::discovery::model::tests::check;

    fn node(name: &str) -> Node {
        Node { name: name.into(), address: format!("10.0.0.{}", name.len()), ..Default::default() }
    }

    fn node_read(name: &str, services: &[&str], checks: Vec<HealthCheck>, checks_index: u64) -> Event {
        let services = services
            .iter()
            .map(|id| {
                let s = CatalogService {
                    id: id.to_string(),
                    service: "web".into(),
                    tags: vec!["urlprefix-/".into()],
                    port: 80,
                    ..Default::default()
                };
                (id.to_string(), s)
            })
            .collect();
        Event::Node { name: name.into(), node: Some(CatalogNode { node: node(name), services }), checks, checks_index }
    }

    fn ids(s: &State) -> Vec<String> {
        s.instances("urlprefix-").into_iter().map(|i| i.id).collect()
    }

    #[test]
    fn the_first_table_waits_for_every_watch_and_node() {
        let mut s = State::default();
        assert!(!s.ready());
        assert_eq!(
            s.apply(Event::Nodes(vec![node("a"), node("b")])),
            [Action::Follow("a".into()), Action::Follow("b".into())]
        );
        s.apply(Event::Checks(vec![], 1));
        s.apply(Event::Overrides(String::new()));
        assert!(!s.ready(), "nodes a and b not read yet");
        s.apply(node_read("a", &["a1"], vec![], 1));
        assert!(!s.ready(), "node b not read yet");
        s.apply(node_read("b", &["b1"], vec![], 1));
        assert!(s.ready());
        assert_eq!(ids(&s), ["a1", "b1"]);
    }

    #[test]
    fn overrides_and_checks_are_required_too() {
        let mut s = State::default();
        s.apply(Event::Nodes(vec![]));
        s.apply(Event::Checks(vec![], 1));
        assert!(!s.ready());
        s.apply(Event::Overrides("route del x".into()));
        assert!(s.ready());
        assert_eq!(s.overrides(), "route del x");
    }

    #[test]
    fn a_node_that_leaves_is_unfollowed_with_its_services() {
        let mut s = State::default();
        s.apply(Event::Nodes(vec![node("a"), node("b")]));
        s.apply(node_read("a", &["a1"], vec![], 1));
        s.apply(node_read("b", &["b1"], vec![], 1));
        assert_eq!(s.apply(Event::Nodes(vec![node("b")])), [Action::Unfollow("a".into())]);
        assert_eq!(ids(&s), ["b1"]);
        // A late read of the departed node is ignored.
        s.apply(node_read("a", &["a1"], vec![], 2));
        assert_eq!(ids(&s), ["b1"]);
        // The same node list again changes nothing.
        assert!(s.apply(Event::Nodes(vec![node("b")])).is_empty());
    }

    #[test]
    fn a_node_that_is_gone_from_the_catalog_has_no_services() {
        let mut s = State::default();
        s.apply(Event::Nodes(vec![node("a")]));
        s.apply(node_read("a", &["a1"], vec![], 1));
        s.apply(Event::Node { name: "a".into(), node: None, checks: vec![], checks_index: 2 });
        assert!(ids(&s).is_empty());
    }

    #[test]
    fn checks_from_the_newer_read_win() {
        let mut s = State::default();
        s.apply(Event::Nodes(vec![node("a")]));
        s.apply(node_read("a", &["a1"], vec![check("a", "a1", CheckStatus::Critical)], 10));
        assert!(ids(&s).is_empty());
        // An older datacenter-wide read (index 5) still saw it passing.
        s.apply(Event::Checks(vec![], 5));
        assert!(ids(&s).is_empty());
        // A newer one sees it passing now.
        s.apply(Event::Checks(vec![], 11));
        assert_eq!(ids(&s), ["a1"]);
        // An older per-node read does not bring the failure back.
        s.apply(node_read("a", &["a1"], vec![check("a", "a1", CheckStatus::Critical)], 9));
        assert_eq!(ids(&s), ["a1"]);
    }
}
