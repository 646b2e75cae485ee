//! The source-neutral model of one workload (a Docker container or a
//! Kubernetes pod): everything the registration conventions need, and
//! nothing about where it came from. Sources (docker/, kubernetes/) fill a
//! [`Workload`]; `conventions` turns it into Consul registrations; the sync
//! loop never looks at Docker or Kubernetes types. Keeping the boundary
//! here is what lets both sources share one set of conventions and one
//! reconcile.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Which source a workload came from. Written into each registration's meta
/// (`registrar-source`) so a reconcile only touches the entries of sources
/// that have listed their workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Docker,
    Kubernetes,
}

impl SourceKind {
    /// The value stored in Consul meta.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Docker => "docker",
            SourceKind::Kubernetes => "kubernetes",
        }
    }

    /// The inverse of [`as_str`](Self::as_str), for entries read back from Consul.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "docker" => Some(SourceKind::Docker),
            "kubernetes" => Some(SourceKind::Kubernetes),
            _ => None,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a service ID after the node: `<container>` for Docker,
/// `<namespace>:<pod>` for Kubernetes. Also names the workload in warnings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadName {
    /// A container by name (without Docker's leading `/`).
    Container { name: String },
    /// A pod by namespace and name, and its controller (the
    /// ownerReference with `controller: true`, as `Kind/name`, e.g.
    /// `ReplicaSet/web-7d9f`) so an operator can tell from Consul alone
    /// which Deployment or DaemonSet an entry belongs to.
    Pod { namespace: String, name: String, owner: Option<String> },
}

impl fmt::Display for WorkloadName {
    /// The ID fragment: `web-1` or `default:web-7d9f`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadName::Container { name } => f.write_str(name),
            WorkloadName::Pod { namespace, name, .. } => write!(f, "{namespace}:{name}"),
        }
    }
}

/// Transport protocol of a port; UDP service IDs end in `:udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// A port published on the host (Docker `-p`, Kubernetes `hostPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Published {
    /// The host address it is bound to; `None` for all addresses
    /// (`0.0.0.0` / `::`), in which case the node's host address is used.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// One port a workload exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The port inside the workload: names the `SERVICE_<port>_*` keys and
    /// ends the service ID, whatever address is registered.
    pub container_port: u16,
    pub protocol: Protocol,
    /// Where it is published on the host, if it is.
    pub published: Option<Published>,
}

/// Which address and port to register for each [`Port`]; the source knows
/// how its workloads are reached, the conventions do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addressing {
    /// Register the workload's own address ([`Workload::addresses`]) and the
    /// container port: pods, Docker `--internal`, and host-network
    /// containers (whose own address is the host's).
    Workload,
    /// Register published ports only: their host IP (or `host` when bound to
    /// all addresses) and host port. Ports not published are skipped.
    Published { host: IpAddr },
}

/// What a source knows about one container or pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub source: SourceKind,
    /// Identity unique within the source and stable for the workload's
    /// life (Docker container ID, pod UID): the key of the sync loop's
    /// desired state, so a rename replaces rather than duplicates.
    pub key: String,
    /// Node name: first part of every service ID and the owner in meta.
    pub node: String,
    pub name: WorkloadName,
    /// Image reference as given (`registry:5000/team/web:1.2`); the default
    /// service name is derived from it.
    pub image: String,
    /// Environment variables (literal values only).
    pub env: BTreeMap<String, String>,
    /// The workload's key-value metadata: Docker labels, or pod
    /// annotations (not pod labels); they beat `env` for the same key.
    pub metadata: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    /// The workload's own IPs on the network it uses (container IP, pod
    /// IPs). IPv4 is preferred when both families are present.
    pub addresses: Vec<IpAddr>,
    pub addressing: Addressing,
    /// `None`: the workload has no health signal. `Some(ok)`: Docker
    /// HEALTHCHECK status (`healthy` => true, `starting`/`unhealthy` =>
    /// false) or the pod's Ready condition. The registrar then owns a TTL
    /// check per service that follows it.
    pub health: Option<bool>,
}

impl Workload {
    /// The address registered under [`Addressing::Workload`]: the first
    /// IPv4 address, else the first one (IPv6-only workloads).
    pub fn preferred_address(&self) -> Option<IpAddr> {
        self.addresses.iter().copied().find(IpAddr::is_ipv4).or_else(|| self.addresses.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(addresses: Vec<IpAddr>) -> Workload {
        Workload {
            source: SourceKind::Docker,
            key: "abc".into(),
            node: "n1".into(),
            name: WorkloadName::Container { name: "web".into() },
            image: "web".into(),
            env: BTreeMap::new(),
            metadata: BTreeMap::new(),
            ports: vec![],
            addresses,
            addressing: Addressing::Workload,
            health: None,
        }
    }

    #[test]
    fn ipv4_is_preferred_and_ipv6_only_is_used() {
        let v4: IpAddr = "10.0.0.2".parse().unwrap();
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(workload(vec![v6, v4]).preferred_address(), Some(v4));
        assert_eq!(workload(vec![v6]).preferred_address(), Some(v6));
        assert_eq!(workload(vec![]).preferred_address(), None);
    }

    #[test]
    fn workload_name_renders_as_id_fragment() {
        assert_eq!(WorkloadName::Container { name: "web".into() }.to_string(), "web");
        assert_eq!(
            WorkloadName::Pod { namespace: "default".into(), name: "web-1".into(), owner: None }.to_string(),
            "default:web-1"
        );
    }

    #[test]
    fn source_kind_round_trips() {
        for k in [SourceKind::Docker, SourceKind::Kubernetes] {
            assert_eq!(SourceKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SourceKind::parse("nomad"), None);
    }
}
