//! A pod, as the API server describes it, translated into the registrar's
//! source-neutral [`Workload`], or into the decision that nothing of it
//! may be in Consul. Pure: the watcher adapter feeds it pods and sends what
//! it returns to the sync loop, so every rule here is unit-tested on pod
//! JSON shaped like the API reference's.
//!
//! Readiness is carried as a health signal (`health: Some(ready)`), which
//! the conventions turn into a TTL check the registrar owns and keeps
//! refreshed, rather than registering and deregistering as readiness flips:
//! the entry stays visible in Consul (an operator sees a critical
//! `demo` instance and why, instead of a service that silently vanished),
//! the router still skips it because it routes only passing instances, a
//! flip is one TTL update instead of a re-registration, and when the
//! registrar itself dies the unrefreshed TTL turns critical, so traffic
//! stops rather than flowing to pods nobody watches any more.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::workload::{Addressing, Port, Protocol, Published, SourceKind, Workload, WorkloadName};

/// What the registrar should do about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// The pod runs here and has an address: register its ports (routed
    /// only while it is Ready, through the health signal).
    Present(Box<Workload>),
    /// Nothing of the pod may be in Consul (deleted, terminating, finished,
    /// no IP yet, or not on this node); `key` is its workload key.
    Absent { key: String, reason: Absence },
}

/// Why a pod has no registrations; logged, and pinned by the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// `metadata.deletionTimestamp` is set: it is shutting down.
    Terminating,
    /// Phase `Succeeded` or `Failed`: its containers will not run again.
    Finished,
    /// No `status.podIP(s)` yet (or none that parses).
    NoAddress,
    /// `spec.nodeName` is another node (or the pod is unscheduled).
    OtherNode,
}

/// The workload key of a pod: its UID, which survives every update and is
/// never reused, so a pod recreated under the same name is a new workload.
/// A pod without one (never, from a real API server) falls back to
/// `namespace/name`.
pub fn key(pod: &Pod) -> String {
    let m = &pod.metadata;
    match &m.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!("{}/{}", m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default()),
    }
}

/// Translates `pod` for the registrar of node `node`.
pub fn translate(pod: &Pod, node: &str) -> PodState {
    let key = key(pod);
    let absent = |reason| PodState::Absent { key: key.clone(), reason };
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.node_name.as_deref()) != Some(node) {
        return absent(Absence::OtherNode);
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return absent(Absence::Terminating);
    }
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return absent(Absence::Finished);
    }
    let addresses = addresses(pod);
    if addresses.is_empty() {
        return absent(Absence::NoAddress);
    }
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let image = containers
        .iter()
        .find(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
        .or(containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    PodState::Present(Box::new(Workload {
        source: SourceKind::Kubernetes,
        key,
        node: node.to_string(),
        name: WorkloadName::Pod {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            owner: owner(pod),
        },
        image,
        env: env(containers),
        metadata: pod.metadata.annotations.clone().unwrap_or_default(),
        ports: ports(pod, containers),
        addresses,
        addressing: Addressing::Workload,
        health: Some(is_ready(pod)),
    }))
}

/// The controlling owner (`ReplicaSet/web-7d9f`, `DaemonSet/agent`,
/// `Job/backup-29051`): the ownerReference marked `controller: true`; a pod
/// has at most one. Bare pods have none.
pub fn owner(pod: &Pod) -> Option<String> {
    let refs = pod.metadata.owner_references.as_deref()?;
    refs.iter().find(|r| r.controller == Some(true)).map(|r| format!("{}/{}", r.kind, r.name))
}

/// The pod's Ready condition; a pod that reports none is not ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `status.podIPs` in order (dual-stack: one per family), else the older
/// single `status.podIP`. Unparsable entries are skipped with a warning.
fn addresses(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> = match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|p| p.ip.as_str()).collect(),
        _ => status.pod_ip.as_deref().into_iter().collect(),
    };
    let mut out = Vec::new();
    for raw in listed.into_iter().filter(|s| !s.is_empty()) {
        match raw.parse::<IpAddr>() {
            Ok(ip) if !out.contains(&ip) => out.push(ip),
            Ok(_) => {}
            Err(_) => tracing::warn!(pod = ?pod.metadata.name, ip = raw, "pod IP does not parse; skipped"),
        }
    }
    out
}

/// Literal env values of all containers (values from `valueFrom` are not
/// known to the API and are ignored). The first container that sets a key
/// wins, so the pod's main container (listed first by convention) decides
/// `SERVICE_NAME` over a sidecar.
fn env(containers: &[Container]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in containers.iter().flat_map(|c| c.env.iter().flatten()) {
        if let Some(value) = &var.value {
            env.entry(var.name.clone()).or_insert_with(|| value.clone());
        }
    }
    env
}

/// `containers[].ports`, TCP and UDP (SCTP is skipped: Consul checks and
/// the router cannot use it), each once, in declaration order.
fn ports(pod: &Pod, containers: &[Container]) -> Vec<Port> {
    let mut out: Vec<Port> = Vec::new();
    for p in containers.iter().flat_map(|c| c.ports.iter().flatten()) {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(other) => {
                tracing::debug!(pod = ?pod.metadata.name, port = p.container_port, protocol = other, "port skipped");
                continue;
            }
        };
        let Ok(container_port) = u16::try_from(p.container_port) else {
            tracing::warn!(pod = ?pod.metadata.name, port = p.container_port, "containerPort out of range; skipped");
            continue;
        };
        let published = p
            .host_port
            .and_then(|hp| u16::try_from(hp).ok())
            .filter(|hp| *hp != 0)
            .map(|host_port| Published { host_ip: p.host_ip.as_deref().and_then(|ip| ip.parse().ok()), host_port });
        if !out.iter().any(|o| o.container_port == container_port && o.protocol == protocol) {
            out.push(Port { container_port, protocol, published });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const READY: &str = include_str!("testdata/pod-ready.json");
    const PENDING: &str = include_str!("testdata/pod-pending.json");

    fn fixture(src: &str, edit: impl FnOnce(&mut Value)) -> Pod {
        let mut v: Value = serde_json::from_str(src).expect("fixture is JSON");
        edit(&mut v);
        serde_json::from_value(v).expect("fixture is a Pod")
    }

    fn present(pod: &Pod) -> Workload {
        match translate(pod, "node-a") {
            PodState::Present(w) => *w,
            other => panic!("expected a workload, got {other:?}"),
        }
    }

    fn absence(pod: &Pod) -> Absence {
        match translate(pod, "node-a") {
            PodState::Absent { key, reason } => {
                assert_eq!(key, super::key(pod));
                reason
            }
            other => panic!("expected absent, got {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    #[test]
    fn ready_pod_becomes_a_workload() {
        let w = present(&fixture(READY, |_| {}));
        assert_eq!(w.source, SourceKind::Kubernetes);
        assert_eq!(w.key, "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918");
        assert_eq!(w.node, "node-a");
        assert_eq!(
            w.name,
            WorkloadName::Pod {
                namespace: "shop".into(),
                name: "demo-7d9f8b6c5d-x2v4k".into(),
                owner: Some("ReplicaSet/demo-7d9f8b6c5d".into()),
            }
        );
        assert_eq!(w.name.to_string(), "shop:demo-7d9f8b6c5d-x2v4k");
        assert_eq!(w.image, "registry.example.com:5000/team/demo:1.4.2");
        assert_eq!(w.addresses, vec![ip("10.244.1.17"), ip("fd00:10:244:1::11")]);
        assert_eq!(w.addressing, Addressing::Workload);
        assert_eq!(w.health, Some(true));
        assert_eq!(w.metadata.get("SERVICE_TAGS").map(String::as_str), Some("urlprefix-demo.example.com/"));
        assert_eq!(w.metadata.get("SERVICE_8080_NAME").map(String::as_str), Some("demo-api"));
    }

    #[test]
    fn env_takes_literal_values_and_the_first_container_wins() {
        let w = present(&fixture(READY, |_| {}));
        let env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [
                ("SERVICE_5353_NAME", "dns"),
                ("SERVICE_CHECK_HTTP", "/health"),
                ("SERVICE_NAME", "demo"),
                ("SERVICE_TAGS", "from-env"),
            ]
        );
        // Annotations beat env for the same key: both reach the
        // conventions, which apply that precedence (keys.rs).
        assert_eq!(w.metadata.get("SERVICE_TAGS").map(String::as_str), Some("urlprefix-demo.example.com/"));
        let plan = crate::conventions::registrations(&w, &crate::conventions::Options::default());
        assert!(!plan.services.is_empty(), "{plan:?}");
        for s in &plan.services {
            assert_eq!(s.tags, ["urlprefix-demo.example.com/"], "{}: the annotation's tags, not env's", s.id);
        }
    }

    #[test]
    fn ports_keep_tcp_and_udp_with_host_ports_and_skip_sctp() {
        let w = present(&fixture(READY, |_| {}));
        assert_eq!(
            w.ports,
            vec![
                Port { container_port: 80, protocol: Protocol::Tcp, published: None },
                Port { container_port: 8080, protocol: Protocol::Tcp, published: None },
                Port {
                    container_port: 5353,
                    protocol: Protocol::Udp,
                    published: Some(Published { host_ip: None, host_port: 5353 }),
                },
            ]
        );
    }

    #[test]
    fn duplicate_and_out_of_range_ports_are_dropped() {
        let pod = fixture(READY, |v| {
            v["spec"]["containers"][1]["ports"] = json!([
                { "containerPort": 80 },
                { "containerPort": 80, "protocol": "UDP", "hostPort": 53, "hostIP": "192.0.2.10" },
                { "containerPort": 70000 }
            ]);
        });
        let w = present(&pod);
        assert_eq!(
            w.ports,
            vec![
                Port { container_port: 80, protocol: Protocol::Tcp, published: None },
                Port { container_port: 8080, protocol: Protocol::Tcp, published: None },
                Port {
                    container_port: 80,
                    protocol: Protocol::Udp,
                    published: Some(Published { host_ip: Some(ip("192.0.2.10")), host_port: 53 }),
                },
            ]
        );
    }

    #[test]
    fn not_ready_pod_is_present_with_a_failing_health_signal() {
        let pod = fixture(READY, |v| v["status"]["conditions"][3]["status"] = json!("False"));
        assert_eq!(present(&pod).health, Some(false));
        let pod = fixture(READY, |v| v["status"]["conditions"] = json!([]));
        assert_eq!(present(&pod).health, Some(false), "no Ready condition is not ready");
        let pod = fixture(READY, |v| v["status"]["conditions"][3]["status"] = json!("Unknown"));
        assert_eq!(present(&pod).health, Some(false));
    }

    #[test]
    fn pending_pod_without_an_ip_is_absent_until_it_has_one() {
        let pending = fixture(PENDING, |_| {});
        assert_eq!(absence(&pending), Absence::NoAddress);
        let running = fixture(PENDING, |v| {
            v["status"]["phase"] = json!("Running");
            v["status"]["podIP"] = json!("10.244.1.5");
        });
        let w = present(&running);
        assert_eq!(w.addresses, vec![ip("10.244.1.5")], "the single podIP field when podIPs is absent");
        assert_eq!(w.health, Some(false));
        assert_eq!(w.image, "web");
    }

    #[test]
    fn ipv6_only_and_unparsable_ips() {
        let pod = fixture(READY, |v| {
            v["status"]["podIP"] = json!("fd00::11");
            v["status"]["podIPs"] = json!([{ "ip": "fd00::11" }]);
        });
        assert_eq!(present(&pod).addresses, vec![ip("fd00::11")]);
        let pod = fixture(READY, |v| {
            v["status"]["podIP"] = json!("not-an-ip");
            v["status"]["podIPs"] = json!([{ "ip": "not-an-ip" }]);
        });
        assert_eq!(absence(&pod), Absence::NoAddress);
        let pod = fixture(READY, |v| v["status"]["podIPs"] = json!([{ "ip": "bad" }, { "ip": "10.0.0.9" }]));
        assert_eq!(present(&pod).addresses, vec![ip("10.0.0.9")]);
    }

    #[test]
    fn terminating_finished_and_foreign_pods_are_absent() {
        let pod = fixture(READY, |v| {
            v["metadata"]["deletionTimestamp"] = json!("2025-03-01T11:00:00Z");
            v["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        });
        assert_eq!(absence(&pod), Absence::Terminating, "deregistered before the grace period ends");
        for phase in ["Succeeded", "Failed"] {
            let pod = fixture(READY, |v| v["status"]["phase"] = json!(phase));
            assert_eq!(absence(&pod), Absence::Finished, "{phase}");
        }
        let pod = fixture(READY, |v| v["spec"]["nodeName"] = json!("node-b"));
        assert_eq!(absence(&pod), Absence::OtherNode);
        let pod = fixture(READY, |v| v["spec"].as_object_mut().unwrap().remove("nodeName").map(drop).unwrap_or(()));
        assert_eq!(absence(&pod), Absence::OtherNode, "unscheduled");
        let pod = fixture(READY, |v| v["status"]["phase"] = json!("Unknown"));
        assert!(matches!(translate(&pod, "node-a"), PodState::Present(_)), "node lost contact: keep, TTL decides");
    }

    #[test]
    fn owner_is_the_controller_reference_only() {
        let pod = fixture(READY, |v| {
            v["metadata"]["ownerReferences"] = json!([
                { "apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "u1" },
                { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u2", "controller": true }
            ]);
        });
        assert_eq!(owner(&pod).as_deref(), Some("DaemonSet/agent"));
        let pod = fixture(READY, |v| v["metadata"]["ownerReferences"][0]["controller"] = json!(false));
        assert_eq!(owner(&pod), None);
        assert_eq!(owner(&fixture(PENDING, |_| {})), None, "a bare pod");
    }

    #[test]
    fn key_is_the_uid_else_namespace_and_name() {
        assert_eq!(key(&fixture(PENDING, |_| {})), "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f");
        let pod = fixture(PENDING, |v| v["metadata"].as_object_mut().unwrap().remove("uid").map(drop).unwrap_or(()));
        assert_eq!(key(&pod), "default/web");
    }

    /// The translation feeds the shared conventions as the issue asks:
    /// annotation beats env, port-specific beats generic, pod IDs.
    #[test]
    fn through_the_conventions_a_pod_gets_the_registrations_its_annotations_ask_for() {
        let w = present(&fixture(READY, |_| {}));
        let plan = crate::conventions::registrations(&w, &crate::conventions::Options::default());
        let got: Vec<String> = plan
            .services
            .iter()
            .map(|s| format!("{} {} {}:{} {:?}", s.id, s.name, s.address, s.port.unwrap_or_default(), s.tags))
            .collect();
        assert_eq!(
            got,
            [
                r#"node-a:shop:demo-7d9f8b6c5d-x2v4k:80 demo-80 10.244.1.17:80 ["urlprefix-demo.example.com/"]"#,
                r#"node-a:shop:demo-7d9f8b6c5d-x2v4k:5353:udp dns 10.244.1.17:5353 ["urlprefix-demo.example.com/"]"#,
                r#"node-a:shop:demo-7d9f8b6c5d-x2v4k:8080 demo-api 10.244.1.17:8080 ["urlprefix-demo.example.com/"]"#,
            ]
        );
        for s in &plan.services {
            assert_eq!(s.meta.get("pod-namespace").map(String::as_str), Some("shop"));
            assert_eq!(s.meta.get("pod-name").map(String::as_str), Some("demo-7d9f8b6c5d-x2v4k"));
            assert_eq!(s.meta.get("pod-owner").map(String::as_str), Some("ReplicaSet/demo-7d9f8b6c5d"));
            let ttl = s.checks.iter().find(|c| !c.ttl.is_empty()).expect("a registrar-owned TTL check for readiness");
            assert_eq!(ttl.status, "passing", "the pod is Ready");
        }
    }

    #[test]
    fn pod_without_containers_or_annotations_has_no_ports() {
        let pod = fixture(PENDING, |v| {
            v["status"]["podIP"] = json!("10.0.0.3");
            v["spec"]["containers"] = json!([]);
            v["metadata"].as_object_mut().unwrap().remove("annotations");
        });
        let w = present(&pod);
        assert!(w.ports.is_empty() && w.metadata.is_empty() && w.env.is_empty());
        assert_eq!(w.image, "");
    }
}
