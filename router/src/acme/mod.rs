//! Automatic certificates (ACME): the decisions, free of I/O.
//!
//! Every edge node shares one Consul, so the whole ACME state lives in its
//! KV store ([`layout`]): any node can answer a challenge, a session lock
//! lets exactly one node order a name at a time, and every node serves
//! the result. What is decided here, and tested exhaustively:
//!
//! - [`domains`]: which route hosts may be ordered (`--acme-domains`);
//! - [`plan`]: per name, whether to order now, when to renew, how long to
//!   wait after a failure (doubling, never sooner than the CA's
//!   `Retry-After`);
//! - [`layout`]: where each piece of state lives under `--acme-kv-prefix`.

pub mod domains;
pub mod layout;
pub mod plan;
