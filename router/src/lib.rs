//! router as a library: the pure routing core is shared by the daemon
//! (main.rs) and the benchmarks, which cannot reach into a binary crate.

pub mod access;
pub mod acme;
pub mod client_hello;
pub mod proxy_protocol;
pub mod routes;
