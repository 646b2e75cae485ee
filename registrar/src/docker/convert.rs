//! A Docker container inspect answer -> a [`Workload`]: which ports, which
//! address. Pure, so every network shape is unit-tested without a daemon.
//!
//! - Default (published ports): each port published on the host registers
//!   the binding's host IP (or the node's host address when bound to all
//!   addresses) and the host port; unpublished ports are not reachable
//!   from other nodes and are skipped.
//! - `--internal`: the container's own IP and the container port, on the
//!   network it actually uses: the one its network mode names (user-defined
//!   networks), `bridge` for the default mode, else the alphabetically first
//!   network it is attached to (deterministic across restarts).
//! - `--network host`: the host address and the exposed ports.
//! - `--network none` (until connected to a network) / `container:<id>`:
//!   nothing of its own to register.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, EndpointSettings, HealthStatusEnum, PortBinding};

use crate::workload::{Addressing, Port, Protocol, Published, SourceKind, Workload, WorkloadName};

/// How this registrar registers containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub node: String,
    /// `--internal`
    pub internal: bool,
    /// The node's address for published ports and host-network containers.
    pub host_ip: IpAddr,
}

/// The workload of a running container; `None` when it is not running
/// (or the answer lacks an ID, which a daemon never sends).
pub fn workload(c: &ContainerInspectResponse, s: &Settings) -> Option<Workload> {
    let key = c.id.clone()?;
    let state = c.state.as_ref()?;
    if state.running != Some(true) {
        return None;
    }
    let config = c.config.clone().unwrap_or_default();
    let name = c.name.as_deref().unwrap_or(&key).trim_start_matches('/').to_string();
    let env = config
        .env
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let labels = config.labels.unwrap_or_default().into_iter().collect();
    let health = match state.health.as_ref().and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => Some(true),
        Some(HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY) => Some(false),
        _ => None,
    };
    let mode = c.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_else(|| "default".into());
    let settings = c.network_settings.clone().unwrap_or_default();
    let networks: BTreeMap<String, EndpointSettings> = settings.networks.unwrap_or_default().into_iter().collect();
    let mut exposed: Vec<Port> =
        config.exposed_ports.unwrap_or_default().iter().filter_map(|k| unpublished(k)).collect();
    exposed.sort();
    let port_map: BTreeMap<String, Option<Vec<PortBinding>>> = settings.ports.unwrap_or_default().into_iter().collect();

    let (ports, addresses, addressing) = if mode == "host" {
        (exposed, vec![s.host_ip], Addressing::Workload)
    } else if mode.starts_with("container:") {
        (vec![], vec![], Addressing::Workload)
    } else if s.internal {
        let mut ports = exposed;
        ports.extend(port_map.keys().filter_map(|k| unpublished(k)));
        ports.sort();
        ports.dedup();
        let addresses = chosen_network(&mode, &networks).map(endpoint_addresses).unwrap_or_default();
        (ports, addresses, Addressing::Workload)
    } else {
        let ports = port_map.iter().filter_map(|(k, b)| published(k, b.as_deref().unwrap_or_default())).collect();
        let addresses = chosen_network(&mode, &networks).map(endpoint_addresses).unwrap_or_default();
        (ports, addresses, Addressing::Published { host: s.host_ip })
    };
    Some(Workload {
        source: SourceKind::Docker,
        key,
        node: s.node.clone(),
        name: WorkloadName::Container { name },
        image: config.image.or_else(|| c.image.clone()).unwrap_or_default(),
        env,
        metadata: labels,
        ports,
        addresses,
        addressing,
        health,
    })
}

/// The network the container's traffic uses (see the module doc); only
/// networks where it has an address count, so a container started with
/// `--network none` and connected to a network later uses that one.
fn chosen_network<'a>(mode: &str, networks: &'a BTreeMap<String, EndpointSettings>) -> Option<&'a EndpointSettings> {
    let usable = |e: &&EndpointSettings| !endpoint_addresses(e).is_empty();
    let named = match mode {
        "default" | "bridge" => networks.get("bridge"),
        // A network mode may also name the network by ID.
        name => networks
            .get(name)
            .or_else(|| networks.values().find(|e| e.network_id.as_deref().is_some_and(|id| id.starts_with(name)))),
    };
    named.filter(usable).or_else(|| networks.values().find(usable))
}

fn endpoint_addresses(e: &EndpointSettings) -> Vec<IpAddr> {
    [e.ip_address.as_deref(), e.global_ipv6_address.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// `80/tcp` -> port and protocol; other protocols (sctp) are not registered.
fn parse_port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok().filter(|p| *p != 0)?, protocol))
}

fn unpublished(key: &str) -> Option<Port> {
    let (container_port, protocol) = parse_port_key(key)?;
    Some(Port { container_port, protocol, published: None })
}

/// A port with its host binding: the first IPv4 binding, else the first
/// (Docker lists `0.0.0.0` and `::` bindings of one port separately).
fn published(key: &str, bindings: &[PortBinding]) -> Option<Port> {
    let (container_port, protocol) = parse_port_key(key)?;
    let parse = |b: &PortBinding| -> Option<(bool, Published)> {
        let host_port = b.host_port.as_deref()?.parse().ok().filter(|p| *p != 0)?;
        let raw = b.host_ip.as_deref().unwrap_or("");
        let ip = raw.parse::<IpAddr>().ok();
        let v4 = raw.is_empty() || ip.is_some_and(|ip| ip.is_ipv4());
        Some((v4, Published { host_ip: ip.filter(|ip| !ip.is_unspecified()), host_port }))
    };
    let all: Vec<(bool, Published)> = bindings.iter().filter_map(parse).collect();
    let chosen = all.iter().find(|(v4, _)| *v4).or(all.first()).map(|(_, p)| *p);
    Some(Port { container_port, protocol, published: chosen })
}

#[cfg(test)]
mod tests;
