//! The sync rules without Docker, Kubernetes or Consul: events in, steps out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::workload::{Addressing, Port, Protocol, WorkloadName};

/// A workload of `source` keyed `key`, named `name`, exposing port 80 with
/// `env`; `health` as the source reports it.
fn workload(source: SourceKind, key: &str, name: &str, env: &[(&str, &str)], health: Option<bool>) -> Workload {
    let addr: IpAddr = "172.17.0.2".parse().expect("ip");
    Workload {
        source,
        key: key.into(),
        node: "node1".into(),
        name: match source {
            SourceKind::Docker => WorkloadName::Container { name: name.into() },
            SourceKind::Kubernetes => WorkloadName::Pod { namespace: "default".into(), name: name.into(), owner: None },
        },
        image: "web".into(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        metadata: BTreeMap::new(),
        ports: vec![Port { container_port: 80, protocol: Protocol::Tcp, published: None }],
        addresses: vec![addr],
        addressing: Addressing::Workload,
        health,
    }
}

fn docker(key: &str, name: &str) -> Workload {
    workload(SourceKind::Docker, key, name, &[], None)
}

fn upsert(w: Workload) -> SourceEvent {
    SourceEvent::Upsert(Box::new(w))
}

fn snapshot(source: SourceKind, workloads: Vec<Workload>) -> SourceEvent {
    SourceEvent::Snapshot { source, workloads }
}

fn remove(source: SourceKind, key: &str) -> SourceEvent {
    SourceEvent::Remove { source, key: key.into() }
}

fn ids(d: &Desired) -> Vec<String> {
    d.registrations().by_id.into_keys().collect()
}

/// Step kinds and IDs, and for registrations whose workload they came from.
fn summary(effect: Effect) -> Vec<String> {
    let Effect::Steps(steps) = effect else { return vec!["reconcile".into()] };
    steps
        .into_iter()
        .map(|s| match s {
            Step::Register(r) => format!("register {} from {}", r.id, r.meta["container-name"]),
            Step::Health { service_id, passing } => format!("health {service_id} {passing}"),
            Step::Deregister(id) => format!("deregister {id}"),
        })
        .collect()
}

#[test]
fn events_become_the_calls_for_that_workload() {
    let mut d = Desired::new(Options::default());
    assert_eq!(summary(d.apply(upsert(docker("k1", "web")))), ["register node1:web:80 from web"]);
    assert_eq!(summary(d.apply(upsert(docker("k1", "web")))), Vec::<String>::new(), "no change, no call");
    // Renamed: the new ID is registered before the old one goes.
    assert_eq!(
        summary(d.apply(upsert(docker("k1", "api")))),
        ["register node1:api:80 from api", "deregister node1:web:80"]
    );
    assert_eq!(summary(d.apply(remove(SourceKind::Docker, "k1"))), ["deregister node1:api:80"]);
    assert_eq!(summary(d.apply(remove(SourceKind::Docker, "k1"))), Vec::<String>::new(), "unknown: nothing");
    assert!(ids(&d).is_empty());
}

#[test]
fn a_health_flip_updates_the_check_in_place() {
    let mut d = Desired::new(Options::default());
    let w = |health| workload(SourceKind::Docker, "k1", "web", &[], Some(health));
    assert_eq!(summary(d.apply(upsert(w(false)))), ["register node1:web:80 from web"]);
    assert_eq!(d.ttl_checks(), [("service:node1:web:80:health".to_string(), false)]);
    assert_eq!(summary(d.apply(upsert(w(true)))), ["health node1:web:80 true"]);
    assert_eq!(d.ttl_checks(), [("service:node1:web:80:health".to_string(), true)]);
}

#[test]
fn a_snapshot_replaces_only_its_own_source_and_lists_it() {
    let mut d = Desired::new(Options::default());
    assert!(d.listed().is_empty());
    d.apply(upsert(docker("k1", "web")));
    d.apply(upsert(workload(SourceKind::Kubernetes, "uid-1", "pod-a", &[], None)));
    let effect = d.apply(snapshot(SourceKind::Docker, vec![docker("k2", "api")]));
    assert_eq!(effect, Effect::Reconcile);
    assert_eq!(ids(&d), ["node1:api:80", "node1:default:pod-a:80"], "docker's k1 gone, the pod kept");
    assert_eq!(d.listed().iter().copied().collect::<Vec<_>>(), [SourceKind::Docker]);
    d.apply(snapshot(SourceKind::Kubernetes, vec![]));
    assert_eq!(ids(&d), ["node1:api:80"]);
    assert_eq!(d.listed().len(), 2);
}

#[test]
fn on_an_id_clash_the_first_wins_on_the_event_path_too() {
    // Two containers named alike (a recreated container whose old copy's
    // events are late): the same service ID from two workloads.
    let mut d = Desired::new(Options::default());
    let first = workload(SourceKind::Docker, "a-old", "web", &[("SERVICE_TAGS", "first")], None);
    let second = workload(SourceKind::Docker, "b-new", "web", &[("SERVICE_TAGS", "second")], None);
    assert_eq!(summary(d.apply(upsert(first.clone()))), ["register node1:web:80 from web"]);
    // The later claimant registers nothing (it used to replace the first
    // one's entry until the next reconcile put it back: flapping).
    assert_eq!(summary(d.apply(upsert(second.clone()))), Vec::<String>::new());
    let wanted = d.registrations();
    assert_eq!(wanted.by_id["node1:web:80"].tags, ["first"]);
    assert_eq!(wanted.clashes, [Clash { service_id: "node1:web:80".into(), workload: "web".into() }]);
    // Its changes and its removal touch nothing either.
    let mut changed = second.clone();
    changed.env.insert("SERVICE_TAGS".into(), "third".into());
    assert_eq!(summary(d.apply(upsert(changed))), Vec::<String>::new());
    assert_eq!(summary(d.apply(remove(SourceKind::Docker, "b-new"))), Vec::<String>::new());
    assert_eq!(d.registrations().by_id["node1:web:80"].tags, ["first"]);
    // When the winner goes, the ID passes to the other claimant instead of
    // being deregistered.
    d.apply(upsert(second));
    let steps = match d.apply(remove(SourceKind::Docker, "a-old")) {
        Effect::Steps(s) => s,
        other => panic!("{other:?}"),
    };
    assert!(matches!(&steps[..], [Step::Register(r)] if r.id == "node1:web:80" && r.tags == ["second"]), "{steps:?}");
    assert!(d.registrations().clashes.is_empty());
}

#[test]
fn a_clash_loser_does_not_report_the_winners_health() {
    let mut d = Desired::new(Options::default());
    d.apply(upsert(workload(SourceKind::Docker, "a", "web", &[], Some(true))));
    d.apply(upsert(workload(SourceKind::Docker, "b", "web", &[], Some(false))));
    assert_eq!(d.ttl_checks(), [("service:node1:web:80:health".to_string(), true)]);
}

#[test]
fn the_event_path_and_a_reconcile_agree_after_any_sequence() {
    // Property: after any sequence of events, applying the event path's
    // steps to an agent gives the same entries as the full registrations.
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..300 {
        let mut d = Desired::new(Options::default());
        let mut agent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for _ in 0..20 {
            let key = ["a", "b", "c"][rng.random_range(0..3)];
            let name = ["web", "api"][rng.random_range(0..2)];
            let tag = ["x", "y"][rng.random_range(0..2)];
            let event = if rng.random_bool(0.3) {
                remove(SourceKind::Docker, key)
            } else {
                upsert(workload(SourceKind::Docker, key, name, &[("SERVICE_TAGS", tag)], None))
            };
            if let Effect::Steps(steps) = d.apply(event) {
                for s in steps {
                    match s {
                        Step::Register(r) => agent.insert(r.id, r.tags),
                        Step::Deregister(id) => agent.remove(&id),
                        Step::Health { .. } => None,
                    };
                }
            }
            let want: BTreeMap<String, Vec<String>> =
                d.registrations().by_id.into_iter().map(|(id, r)| (id, r.tags)).collect();
            assert_eq!(agent, want);
        }
    }
}
