//! Container inspect answers (in Docker's own JSON shape) -> workloads.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::{Settings, workload};
use crate::workload::{Addressing, Protocol, Published, Workload, WorkloadName};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn settings(internal: bool) -> Settings {
    Settings { node: "n1".into(), internal, host_ip: ip("192.0.2.10") }
}

/// A running container on the default bridge with port 80 published on
/// 0.0.0.0:32768 and [::]:32768, and 443 exposed only.
fn inspect() -> Value {
    json!({
        "Id": "c0ffee",
        "Name": "/web-1",
        "Image": "sha256:1234",
        "State": {"Status": "running", "Running": true},
        "Config": {
            "Image": "registry:5000/team/web:1.2",
            "Env": ["PATH=/bin", "SERVICE_NAME=app", "EMPTY=", "SERVICE_TAGS=a=b,c"],
            "Labels": {"SERVICE_TAGS": "from-label"},
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}
        },
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {
            "Ports": {
                "80/tcp": [{"HostIp": "::", "HostPort": "32769"}, {"HostIp": "0.0.0.0", "HostPort": "32768"}],
                "443/tcp": null
            },
            "Networks": {"bridge": {"NetworkID": "b1", "IPAddress": "172.17.0.2", "GlobalIPv6Address": ""}}
        }
    })
}

fn convert(v: Value, internal: bool) -> Option<Workload> {
    let c = serde_json::from_value(v).expect("inspect JSON decodes");
    workload(&c, &settings(internal))
}

fn ports(w: &Workload) -> Vec<(u16, Option<u16>)> {
    w.ports.iter().map(|p| (p.container_port, p.published.map(|p| p.host_port))).collect()
}

#[test]
fn published_mode_takes_the_ipv4_binding() {
    let w = convert(inspect(), false).unwrap();
    assert_eq!(w.key, "c0ffee");
    assert_eq!(w.node, "n1");
    assert_eq!(w.name, WorkloadName::Container { name: "web-1".into() });
    assert_eq!(w.image, "registry:5000/team/web:1.2");
    assert_eq!(
        (w.env["SERVICE_NAME"].as_str(), w.env["SERVICE_TAGS"].as_str(), w.env["EMPTY"].as_str()),
        ("app", "a=b,c", "")
    );
    assert_eq!(w.metadata["SERVICE_TAGS"], "from-label");
    assert_eq!(ports(&w), [(443, None), (80, Some(32768))]);
    assert_eq!(w.ports[1].published, Some(Published { host_ip: None, host_port: 32768 }));
    assert_eq!(w.addressing, Addressing::Published { host: ip("192.0.2.10") });
    assert_eq!(w.addresses, [ip("172.17.0.2")]);
    assert_eq!(w.health, None);
}

#[test]
fn a_binding_to_one_host_ip_keeps_it() {
    let mut v = inspect();
    v["NetworkSettings"]["Ports"]["80/tcp"] = json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}]);
    let w = convert(v, false).unwrap();
    assert_eq!(w.ports[1].published, Some(Published { host_ip: Some(ip("127.0.0.1")), host_port: 8080 }));
}

#[test]
fn internal_mode_takes_all_ports_and_the_bridge_address() {
    let w = convert(inspect(), true).unwrap();
    assert_eq!(ports(&w), [(80, None), (443, None)]);
    assert_eq!(w.addressing, Addressing::Workload);
    assert_eq!(w.addresses, [ip("172.17.0.2")]);
}

#[test]
fn user_defined_network_named_by_the_mode_wins() {
    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("app-net");
    v["NetworkSettings"]["Networks"] = json!({
        "aaa-other": {"NetworkID": "n0", "IPAddress": "10.9.0.2"},
        "app-net": {"NetworkID": "n1", "IPAddress": "10.1.0.2"}
    });
    assert_eq!(convert(v, true).unwrap().addresses, [ip("10.1.0.2")]);
}

#[test]
fn network_mode_by_id_is_found() {
    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("f00d");
    v["NetworkSettings"]["Networks"] = json!({
        "aaa": {"NetworkID": "beef", "IPAddress": "10.9.0.2"},
        "zzz": {"NetworkID": "f00d1234", "IPAddress": "10.1.0.2"}
    });
    assert_eq!(convert(v, true).unwrap().addresses, [ip("10.1.0.2")]);
}

#[test]
fn otherwise_the_first_network_by_name() {
    let mut v = inspect();
    v["NetworkSettings"]["Networks"] = json!({
        "zzz": {"NetworkID": "n2", "IPAddress": "10.2.0.2"},
        "mmm": {"NetworkID": "n1", "IPAddress": "10.1.0.2"}
    });
    assert_eq!(convert(v, true).unwrap().addresses, [ip("10.1.0.2")]);
}

#[test]
fn ipv6_only_container_has_only_its_ipv6_address() {
    let mut v = inspect();
    v["NetworkSettings"]["Networks"] =
        json!({"bridge": {"NetworkID": "b", "IPAddress": "", "GlobalIPv6Address": "fd00::2"}});
    assert_eq!(convert(v, true).unwrap().addresses, [ip("fd00::2")]);
}

#[test]
fn host_network_registers_host_address_and_exposed_ports() {
    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("host");
    v["NetworkSettings"] = json!({"Ports": {}, "Networks": {"host": {"NetworkID": "h", "IPAddress": ""}}});
    for internal in [false, true] {
        let w = convert(v.clone(), internal).unwrap();
        assert_eq!(ports(&w), [(80, None), (443, None)]);
        assert_eq!(w.addresses, [ip("192.0.2.10")]);
        assert_eq!(w.addressing, Addressing::Workload);
    }
}

#[test]
fn none_and_container_network_modes_have_nothing() {
    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("none");
    v["NetworkSettings"]["Networks"] = json!({"none": {"NetworkID": "x", "IPAddress": ""}});
    assert!(convert(v.clone(), true).unwrap().addresses.is_empty());
    // Connected to a network later: only a network event tells, and it counts.
    v["NetworkSettings"]["Networks"] = json!({"app": {"NetworkID": "a", "IPAddress": "10.5.0.2"}});
    assert_eq!(convert(v, true).unwrap().addresses, [ip("10.5.0.2")]);

    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("container:abc");
    let w = convert(v, false).unwrap();
    assert!(w.ports.is_empty() && w.addresses.is_empty());
}

#[test]
fn a_network_without_an_address_is_passed_over() {
    let mut v = inspect();
    v["HostConfig"]["NetworkMode"] = json!("gone");
    v["NetworkSettings"]["Networks"] = json!({
        "aaa": {"NetworkID": "a", "IPAddress": ""},
        "bbb": {"NetworkID": "b", "IPAddress": "10.6.0.2"}
    });
    assert_eq!(convert(v, true).unwrap().addresses, [ip("10.6.0.2")]);
}

#[test]
fn udp_is_kept_and_sctp_and_bad_keys_are_dropped() {
    let mut v = inspect();
    v["Config"]["ExposedPorts"] = json!({"53/udp": {}, "9/sctp": {}, "x/tcp": {}, "0/tcp": {}});
    v["NetworkSettings"]["Ports"] = json!({});
    let w = convert(v, true).unwrap();
    assert_eq!(w.ports.len(), 1);
    assert_eq!((w.ports[0].container_port, w.ports[0].protocol), (53, Protocol::Udp));
}

#[test]
fn health_status_maps_to_the_signal() {
    for (status, signal) in
        [("healthy", Some(true)), ("unhealthy", Some(false)), ("starting", Some(false)), ("none", None)]
    {
        let mut v = inspect();
        v["State"]["Health"] = json!({"Status": status, "FailingStreak": 0});
        assert_eq!(convert(v, false).unwrap().health, signal, "{status}");
    }
}

#[test]
fn stopped_containers_are_not_workloads() {
    let mut v = inspect();
    v["State"] = json!({"Status": "exited", "Running": false});
    assert_eq!(convert(v, false), None);
}

#[test]
fn missing_config_image_falls_back_to_image_id() {
    let mut v = inspect();
    v["Config"]["Image"] = Value::Null;
    assert_eq!(convert(v, false).unwrap().image, "sha256:1234");
}
