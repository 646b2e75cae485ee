//! Command-line flags (DESIGN.md contract); each also reads an environment
//! variable so the router can be configured from a unit file or a pod spec.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// How one instance is picked among a route's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Round robin, in proportion to weights.
    Rr,
    /// Random, in proportion to weights.
    Rnd,
}

/// HTTP router for services registered in Consul with `urlprefix-` tags.
#[derive(Debug, Clone, Parser)]
#[command(name = "router", version, about, long_about = None)]
pub struct Cli {
    /// Consul agent HTTP address.
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "http://127.0.0.1:8500")]
    pub consul_addr: String,

    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,

    /// Address the proxy listens on; repeat the flag (or comma-separate the
    /// variable) for several.
    #[arg(long, env = "ROUTER_PROXY_ADDR", default_value = "0.0.0.0:9999", value_delimiter = ',')]
    pub proxy_addr: Vec<SocketAddr>,

    /// Address of the admin listener (UI, /api/routes, /health, /metrics).
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "127.0.0.1:9998")]
    pub admin_addr: SocketAddr,

    /// Tag prefix that marks a route in a service's tags.
    #[arg(long, env = "ROUTER_TAG_PREFIX", default_value = "urlprefix-")]
    pub tag_prefix: String,

    /// Load-balancing strategy among a route's targets.
    #[arg(long, env = "ROUTER_STRATEGY", value_enum, default_value = "rr")]
    pub strategy: Strategy,

    /// Consul KV key holding route overrides (`route add|del|weight` lines).
    #[arg(long, env = "ROUTER_OVERRIDES_KEY", default_value = "router/config")]
    pub overrides_key: String,
}
