//! The conventions end to end: one workload in, registrations out.

use std::net::IpAddr;

use super::*;
use crate::workload::{Published, SourceKind};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(p: u16) -> Port {
    Port { container_port: p, protocol: Protocol::Tcp, published: None }
}

fn published(p: u16, host_port: u16) -> Port {
    Port { container_port: p, protocol: Protocol::Tcp, published: Some(Published { host_ip: None, host_port }) }
}

fn container(env: &[(&str, &str)], labels: &[(&str, &str)], ports: Vec<Port>) -> Workload {
    let map = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Workload {
        source: SourceKind::Docker,
        key: "c0ffee".into(),
        node: "node1".into(),
        name: WorkloadName::Container { name: "web-1".into() },
        image: "registry:5000/team/web:1.2".into(),
        env: map(env),
        metadata: map(labels),
        ports,
        addresses: vec![ip("172.17.0.2")],
        addressing: Addressing::Workload,
        health: None,
    }
}

fn plan(w: &Workload) -> Plan {
    registrations(w, &Options::default())
}

fn one(w: &Workload) -> ServiceRegistration {
    let p = plan(w);
    assert_eq!(p.services.len(), 1, "{p:?}");
    p.services.into_iter().next().unwrap()
}

#[test]
fn defaults_from_image_and_container() {
    let s = one(&container(&[], &[], vec![port(80)]));
    assert_eq!(s.id, "node1:web-1:80");
    assert_eq!(s.name, "web");
    assert_eq!((s.address.as_str(), s.port), ("172.17.0.2", Some(80)));
    assert!(s.tags.is_empty() && s.checks.is_empty());
    assert_eq!(s.meta[META_NODE], "node1");
    assert_eq!(s.meta[META_SOURCE], "docker");
    assert_eq!(s.meta["container-name"], "web-1");
    assert_eq!(s.meta[META_HASH].len(), 16);
}

#[test]
fn name_and_tags_from_env_and_labels() {
    let w = container(
        &[("SERVICE_NAME", "env-name"), ("SERVICE_TAGS", "a,b")],
        &[("SERVICE_NAME", "app"), ("other.label", "x")],
        vec![port(80)],
    );
    let s = one(&w);
    assert_eq!(s.name, "app");
    assert_eq!(s.tags, ["a", "b"]);
}

#[test]
fn extra_tags_follow_the_workload_tags() {
    let w = container(&[("SERVICE_TAGS", r"urlprefix-/x redirect=301\,https://y/,b")], &[], vec![port(80)]);
    let p = registrations(&w, &Options { extra_tags: vec!["edge".into(), "b".into()] });
    assert_eq!(p.services[0].tags, ["urlprefix-/x redirect=301,https://y/", "b", "edge"]);
}

#[test]
fn several_ports_get_suffixed_names_unless_named_per_port() {
    let w = container(&[("SERVICE_NAME", "app"), ("SERVICE_443_NAME", "app-tls")], &[], vec![port(80), port(443)]);
    let p = plan(&w);
    let names: Vec<_> = p.services.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect();
    assert_eq!(names, [("node1:web-1:80", "app-80"), ("node1:web-1:443", "app-tls")]);
}

#[test]
fn several_ports_default_name_is_suffixed_too() {
    let p = plan(&container(&[], &[], vec![port(8080), port(80)]));
    let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web-80", "web-8080"]);
}

#[test]
fn per_port_tags_replace_generic_tags() {
    let w = container(&[("SERVICE_TAGS", "g"), ("SERVICE_81_TAGS", "p1,p2")], &[], vec![port(80), port(81)]);
    let p = plan(&w);
    assert_eq!(p.services[0].tags, ["g"]);
    assert_eq!(p.services[1].tags, ["p1", "p2"]);
}

#[test]
fn udp_ports_have_udp_ids() {
    let mut w = container(&[], &[], vec![]);
    w.ports = vec![Port { container_port: 53, protocol: Protocol::Udp, published: None }, port(53)];
    let ids: Vec<_> = plan(&w).services.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["node1:web-1:53", "node1:web-1:53:udp"]);
}

#[test]
fn ignore_generic_and_per_port() {
    assert!(plan(&container(&[("SERVICE_IGNORE", "true")], &[], vec![port(80)])).services.is_empty());
    let w = container(&[("SERVICE_81_IGNORE", "1")], &[], vec![port(80), port(81)]);
    let ids: Vec<_> = plan(&w).services.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["node1:web-1:80"]);
    // A port can opt back in under a generic ignore.
    let w = container(&[("SERVICE_IGNORE", "1"), ("SERVICE_81_IGNORE", "false")], &[], vec![port(80), port(81)]);
    let ids: Vec<_> = plan(&w).services.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["node1:web-1:81"]);
    // A label can un-ignore what env ignored.
    assert_eq!(
        plan(&container(&[("SERVICE_IGNORE", "1")], &[("SERVICE_IGNORE", "false")], vec![port(80)])).services.len(),
        1
    );
}

#[test]
fn other_keys_become_meta_with_port_override() {
    let w = container(
        &[("SERVICE_REGION", "eu"), ("SERVICE_80_REGION", "us"), ("SERVICE_TEAM", "core")],
        &[("SERVICE_TEAM", "edge")],
        vec![port(80), port(81)],
    );
    let p = plan(&w);
    assert_eq!(p.services[0].meta["region"], "us");
    assert_eq!(p.services[1].meta["region"], "eu");
    assert_eq!(p.services[0].meta["team"], "edge");
    assert!(!p.services[0].meta.contains_key("name"));
}

#[test]
fn invalid_meta_keys_warn_with_workload_and_key() {
    let w = container(
        &[("SERVICE_a.b", "x"), ("SERVICE_REGISTRAR-NODE", "evil"), ("SERVICE_OK", "y")],
        &[],
        vec![port(80)],
    );
    let p = plan(&w);
    assert_eq!(p.services[0].meta[META_NODE], "node1");
    assert_eq!(p.services[0].meta["ok"], "y");
    assert_eq!(p.warnings.len(), 2);
    assert!(p.warnings.iter().all(|w| w.workload == "web-1"));
    assert!(p.warnings[0].to_string().starts_with("web-1: SERVICE_"));
}

#[test]
fn service_id_override() {
    assert_eq!(one(&container(&[("SERVICE_ID", "custom")], &[], vec![port(80)])).id, "custom");
    let w = container(&[("SERVICE_ID", "custom"), ("SERVICE_81_ID", "mine")], &[], vec![port(80), port(81)]);
    let ids: Vec<_> = plan(&w).services.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["custom:80", "mine"]);
}

#[test]
fn published_ports_use_host_address_and_port() {
    let mut w = container(&[], &[], vec![published(80, 32768), port(81)]);
    w.addressing = Addressing::Published { host: ip("192.0.2.10") };
    let s = one(&w);
    assert_eq!((s.id.as_str(), s.name.as_str()), ("node1:web-1:80", "web"));
    assert_eq!((s.address.as_str(), s.port), ("192.0.2.10", Some(32768)));
}

#[test]
fn published_on_a_specific_host_ip_uses_it() {
    let mut w = container(&[], &[], vec![]);
    w.ports = vec![Port {
        container_port: 80,
        protocol: Protocol::Tcp,
        published: Some(Published { host_ip: Some(ip("127.0.0.1")), host_port: 8080 }),
    }];
    w.addressing = Addressing::Published { host: ip("192.0.2.10") };
    assert_eq!(one(&w).address, "127.0.0.1");
    w.ports[0].published = Some(Published { host_ip: Some(ip("0.0.0.0")), host_port: 8080 });
    assert_eq!(one(&w).address, "192.0.2.10");
}

#[test]
fn nothing_to_register() {
    let mut w = container(&[], &[], vec![port(80)]);
    w.addressing = Addressing::Published { host: ip("192.0.2.10") };
    assert_eq!(plan(&w), Plan::default());
    let mut w = container(&[], &[], vec![port(80)]);
    w.addresses.clear();
    assert_eq!(plan(&w), Plan::default());
    assert_eq!(plan(&container(&[], &[], vec![])), Plan::default());
}

#[test]
fn ipv6_only_registers_ipv6() {
    let mut w = container(&[("SERVICE_CHECK_TCP", "1")], &[], vec![port(80)]);
    w.addresses = vec![ip("fd00::2")];
    let s = one(&w);
    assert_eq!(s.address, "fd00::2");
    assert_eq!(s.checks[0].tcp, "[fd00::2]:80");
}

#[test]
fn health_signal_adds_an_owned_ttl_check() {
    let mut w = container(&[("SERVICE_CHECK_HTTP", "/h")], &[], vec![port(80)]);
    w.health = Some(false);
    let s = one(&w);
    assert_eq!(s.checks.len(), 2);
    assert_eq!(s.checks[1].check_id, health_check_id(&s.id));
    assert_eq!(s.checks[1].status, "critical");
}

#[test]
fn fingerprint_ignores_health_state_but_not_checks() {
    let mut w = container(&[], &[], vec![port(80)]);
    w.health = Some(false);
    let sick = one(&w);
    w.health = Some(true);
    let well = one(&w);
    assert_eq!(sick.meta[META_HASH], well.meta[META_HASH]);
    w.env.insert("SERVICE_CHECK_INTERVAL".into(), "5s".into());
    w.env.insert("SERVICE_CHECK_TCP".into(), "1".into());
    assert_ne!(one(&w).meta[META_HASH], well.meta[META_HASH]);
    w.health = None;
    let no_signal = one(&w);
    w.env.insert("SERVICE_CHECK_INTERVAL".into(), "6s".into());
    assert_ne!(one(&w).meta[META_HASH], no_signal.meta[META_HASH]);
}

#[test]
fn bad_values_cost_only_their_key() {
    let w = container(
        &[
            ("SERVICE_NAME", "app"),
            ("SERVICE_CHECK_HTTP", "/h"),
            ("SERVICE_CHECK_INTERVAL", "soon"),
            ("SERVICE_70000_NAME", "x"),
        ],
        &[],
        vec![port(80)],
    );
    let p = plan(&w);
    assert_eq!(p.services[0].name, "app");
    assert_eq!(p.services[0].checks[0].interval, "10s");
    let keys: Vec<_> = p.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["SERVICE_70000_NAME", "SERVICE_CHECK_INTERVAL"]);
}

#[test]
fn a_warning_for_a_generic_key_is_reported_once_for_several_ports() {
    let w = container(&[("SERVICE_CHECK_TCP", "1"), ("SERVICE_CHECK_TIMEOUT", "x")], &[], vec![port(80), port(81)]);
    assert_eq!(plan(&w).warnings.len(), 1);
}

#[test]
fn pods_carry_namespace_and_name() {
    let mut w = container(&[], &[("SERVICE_NAME", "api")], vec![port(8080)]);
    w.source = SourceKind::Kubernetes;
    w.name = WorkloadName::Pod {
        namespace: "prod".into(),
        name: "api-7d9f".into(),
        owner: Some("ReplicaSet/api-7d9f".into()),
    };
    w.health = Some(true);
    let s = one(&w);
    assert_eq!(s.id, "node1:prod:api-7d9f:8080");
    assert_eq!(s.meta[META_SOURCE], "kubernetes");
    assert_eq!((s.meta["pod-namespace"].as_str(), s.meta["pod-name"].as_str()), ("prod", "api-7d9f"));
    assert_eq!(s.meta["pod-owner"], "ReplicaSet/api-7d9f");
    assert_eq!(s.checks[0].name, "kubernetes health");
}

#[test]
fn duplicate_ports_register_once() {
    let p = plan(&container(&[], &[], vec![port(80), port(80)]));
    assert_eq!(p.services.len(), 1);
    assert_eq!(p.services[0].name, "web");
}

#[test]
fn meta_map_is_the_only_user_data_in_meta() {
    let s = one(&container(&[], &[], vec![port(80)]));
    let keys: Vec<_> = s.meta.keys().map(String::as_str).collect();
    assert_eq!(keys, ["container-name", META_HASH, META_NODE, META_SOURCE]);
}
