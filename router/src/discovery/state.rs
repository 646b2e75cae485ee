//! The coordinator's memory, as a pure state machine: changes read by the
//! watches go in ([`Event`]), which nodes to start or stop following come
//! out, and [`State::ready`] says when the caches are complete enough to
//! publish. Kept free of I/O so the rules (the first table waits for every
//! node; a node that left takes its services with it; an older checks read
//! never overwrites a newer one) are unit-tested.

use std::collections::{BTreeMap, BTreeSet};

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

/// Bounds on what Consul data the router keeps (`--max-tag-bytes`,
/// `--max-overrides-bytes`): any container can set its service's tags, so
/// their size is attacker input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub tag_bytes: usize,
    pub overrides_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { tag_bytes: 4096, overrides_bytes: 512 * 1024 }
    }
}

#[derive(Debug, Default)]
pub struct State {
    limits: Limits,
    /// What was skipped from Consul's data, by source: unusable node names,
    /// oversized tags and overrides. Built into the published problems.
    problems: BTreeMap<String, String>,
    catalog: Catalog,
    followed: BTreeSet<String>,
    /// Followed nodes not read yet.
    unread: BTreeSet<String>,
    have_nodes: bool,
    have_checks: bool,
    overrides: Option<String>,
}

impl State {
    pub fn new(limits: Limits) -> Self {
        State { limits, ..State::default() }
    }

    /// Consul data skipped, `(source, why)`.
    pub fn problems(&self) -> impl Iterator<Item = (&String, &String)> + Clone {
        self.problems.iter()
    }

    /// Forgets the problems of `node` (its name and its services').
    fn clear_node_problems(&mut self, node: &str) {
        let prefix = node_source(node);
        self.problems.retain(|k, _| !k.starts_with(&prefix));
    }

    pub fn apply(&mut self, ev: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match ev {
            Event::Nodes(nodes) => {
                self.have_nodes = true;
                // A node whose name cannot be part of its own URL (`.`,
                // `..`) is not followed: it could never be read, and waiting
                // for it would hold every other change back.
                self.problems.retain(|k, _| !k.starts_with("node ") || k.contains(", service "));
                let (nodes, unusable): (Vec<Node>, Vec<Node>) =
                    nodes.into_iter().partition(|n| consul::usable_in_path(&n.name));
                for n in unusable {
                    let why = "Consul accepts this node name but it cannot be part of a URL path; \
                               its services are not routed until it is renamed";
                    self.problems.insert(node_source(&n.name), why.to_string());
                }
                let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
                let gone: Vec<String> = self.followed.difference(&names).cloned().collect();
                for name in gone {
                    self.followed.remove(&name);
                    self.catalog.nodes.remove(&name);
                    self.unread.remove(&name);
                    self.clear_node_problems(&name);
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
                if !self.catalog.nodes.contains_key(&name) {
                    return actions;
                }
                self.clear_node_problems(&name);
                let mut services: Vec<_> =
                    node.as_ref().map(|n| n.services.values().cloned().collect()).unwrap_or_default();
                for svc in &mut services {
                    self.bound_tags(&name, svc);
                }
                let Some(state) = self.catalog.nodes.get_mut(&name) else { return actions };
                self.unread.remove(&name);
                if let Some(n) = node {
                    state.address = n.node.address;
                }
                state.services = services;
                if checks_index >= state.checks_index {
                    state.checks = checks;
                    state.checks_index = checks_index;
                }
            }
            Event::Checks(checks, index) => {
                self.have_checks = true;
                self.catalog.apply_all_checks(checks, index);
            }
            Event::Overrides(text) => {
                const SOURCE: &str = "overrides";
                if text.len() > self.limits.overrides_bytes {
                    let why = format!(
                        "{} bytes, more than --max-overrides-bytes ({}); the last accepted overrides stay",
                        text.len(),
                        self.limits.overrides_bytes
                    );
                    self.problems.insert(SOURCE.to_string(), why);
                    self.overrides.get_or_insert_with(String::new);
                } else {
                    self.problems.remove(SOURCE);
                    self.overrides = Some(text);
                }
            }
        }
        actions
    }

    /// Drops the tags of `svc` longer than the limit, each a problem naming
    /// the service (by its size, not its text: the text is what is too big).
    fn bound_tags(&mut self, node: &str, svc: &mut consul::CatalogService) {
        let max = self.limits.tag_bytes;
        if svc.tags.iter().all(|t| t.len() <= max) {
            return;
        }
        let long: Vec<usize> = svc.tags.iter().map(String::len).filter(|&n| n > max).collect();
        svc.tags.retain(|t| t.len() <= max);
        svc.tags.shrink_to_fit();
        let source = format!("{}, service {:?} (id {:?})", node_source(node), svc.service, svc.id);
        let why = format!("tags of {long:?} bytes are longer than --max-tag-bytes ({max}); skipped");
        self.problems.insert(source, why);
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

/// How problems about a node are named.
fn node_source(node: &str) -> String {
    format!("node {node:?}")
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

    fn problem_sources(s: &State) -> Vec<String> {
        s.problems().map(|(k, _)| k.clone()).collect()
    }

    #[test]
    fn nodes_named_dot_are_skipped_not_waited_for() {
        let mut s = State::default();
        let acts = s.apply(Event::Nodes(vec![node("."), node(".."), node("a")]));
        assert_eq!(acts, [Action::Follow("a".into())]);
        s.apply(Event::Checks(vec![], 1));
        s.apply(Event::Overrides(String::new()));
        s.apply(node_read("a", &["a1"], vec![], 1));
        assert!(s.ready(), "the unusable nodes do not hold the table back");
        assert_eq!(ids(&s), ["a1"]);
        assert_eq!(problem_sources(&s), ["node \".\"", "node \"..\""]);
        // Renamed away: the problems go.
        s.apply(Event::Nodes(vec![node("a")]));
        assert!(problem_sources(&s).is_empty());
    }

    #[test]
    fn long_tags_are_dropped_with_a_problem_naming_the_service() {
        let mut s = State::new(Limits { tag_bytes: 300, overrides_bytes: 1024 });
        s.apply(Event::Nodes(vec![node("a")]));
        let mut read = node_read("a", &["a1", "a2"], vec![], 1);
        if let Event::Node { node: Some(n), .. } = &mut read {
            let svc = n.services.get_mut("a1").expect("a1");
            svc.tags.push(format!("urlprefix-/{}", "x".repeat(100_000)));
        }
        s.apply(read);
        let problems: Vec<(String, String)> = s.problems().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].0.contains("\"a1\""), "{problems:?}");
        assert!(problems[0].1.len() < 200, "the problem does not carry the tag: {problems:?}");
        // The short tag of the same service stays; nothing long is kept.
        assert_eq!(ids(&s), ["a1", "a2"]);
        let kept: usize = s.instances("urlprefix-").iter().flat_map(|i| &i.tags).map(String::len).sum();
        assert!(kept < 100, "{kept} bytes of tags kept");
        // Fixed: the problem goes.
        s.apply(node_read("a", &["a1"], vec![], 2));
        assert!(problem_sources(&s).is_empty());
    }

    #[test]
    fn overrides_over_the_limit_keep_the_last_accepted() {
        let mut s = State::new(Limits { tag_bytes: 300, overrides_bytes: 1024 });
        s.apply(Event::Overrides("route del a".into()));
        s.apply(Event::Overrides("x".repeat(2000)));
        assert_eq!(s.overrides(), "route del a");
        assert_eq!(problem_sources(&s), ["overrides"]);
        s.apply(Event::Overrides("route del b".into()));
        assert_eq!(s.overrides(), "route del b");
        assert!(problem_sources(&s).is_empty());
        // Too large from the start: empty overrides, ready anyway.
        let mut s = State::new(Limits { tag_bytes: 300, overrides_bytes: 1024 });
        s.apply(Event::Overrides("x".repeat(2000)));
        assert_eq!(s.overrides(), "");
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
