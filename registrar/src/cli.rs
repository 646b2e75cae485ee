//! Command-line flags (the contract in docs/registrar.md); each also reads an environment
//! variable so the registrar can run from a unit file or a DaemonSet.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kit::duration::{Bounds, between};

/// `--resync`: at least a second (a tighter loop would only load the
/// agent), at most a day; a bare number is seconds, as it always was.
const RESYNC: Bounds = between(Duration::from_secs(1), Duration::from_secs(86_400)).or_seconds();
/// `--ready-timeout`: zero registers at once; past an hour a container
/// that never listens has long been worth a warning.
const READY_TIMEOUT: Bounds = between(Duration::ZERO, Duration::from_secs(3600));

/// Where workloads are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    Docker,
    Kubernetes,
    /// Docker and Kubernetes side by side.
    All,
}

/// Registers this node's containers and pods in Consul from their
/// SERVICE_* environment variables, labels or annotations.
#[derive(Debug, Clone, Parser)]
#[command(name = "registrar", version, about, long_about = None)]
pub struct Cli {
    /// Consul agent HTTP address (the node's own agent).
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "http://127.0.0.1:8500")]
    pub consul_addr: String,

    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,

    /// Workload source.
    #[arg(long, env = "REGISTRAR_SOURCE", value_enum, default_value = "docker")]
    pub source: Source,

    /// Docker engine address.
    #[arg(long, env = "DOCKER_HOST", default_value = "unix:///var/run/docker.sock")]
    pub docker_host: String,

    /// Name of this node: the first part of every service ID, and the node
    /// whose pods are watched. Defaults to the hostname.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Register the container's own IP and port instead of published ports.
    #[arg(long, env = "REGISTRAR_INTERNAL")]
    pub internal: bool,

    /// Address to register for published ports (default: detected).
    #[arg(long, env = "REGISTRAR_HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Time between full reconciles with Consul (`30s`, `5m`; a bare
    /// number is seconds).
    #[arg(long, env = "REGISTRAR_RESYNC", default_value = "30s", value_parser = RESYNC)]
    pub resync: Duration,

    /// How long a started container without a HEALTHCHECK may take to
    /// accept connections on its ports before it is registered anyway
    /// (0: register at once).
    #[arg(long, env = "REGISTRAR_READY_TIMEOUT", default_value = "10s", value_parser = READY_TIMEOUT)]
    pub ready_timeout: Duration,

    /// Extra tags added to every service (comma-separated).
    #[arg(long, env = "REGISTRAR_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
}
