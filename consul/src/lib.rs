//! A typed async client for the parts of Consul's HTTP API v1 that the edge
//! daemons use: the local agent (services, checks), the catalog, health, KV
//! and sessions (KV locks with check-and-set writes).
//!
//! Every read can be a [blocking query](https://developer.hashicorp.com/consul/api-docs/features/blocking):
//! pass a [`QueryOptions`] with the last index seen and a wait time, get back a
//! [`Response`] carrying the value and the new index. [`WatchIndex`] keeps the
//! index the way Consul's documentation asks (reset when it goes backwards,
//! never zero), so callers cannot get that subtle part wrong.
//!
//! Errors ([`Error`]) name the endpoint and, for HTTP failures, the status and
//! Consul's own message: "GET /v1/health/service/web: 500 No cluster leader"
//! tells an operator what to fix.

mod agent;
mod blocking;
mod catalog;
mod client;
mod error;
mod health;
mod kv;
mod session;
mod types;

pub use agent::TtlStatus;
pub use blocking::{QueryOptions, Response, Step, WatchIndex};
pub use client::{Client, Config, usable_in_path};
pub use error::Error;
pub use session::{SessionBehavior, SessionRequest};
pub use types::{
    AgentService, CatalogNode, CatalogService, CheckRegistration, CheckStatus, HealthCheck, KvPair, Node, ServiceEntry,
    ServiceRegistration,
};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
