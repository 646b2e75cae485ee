//! registrar: registers this node's containers and pods in Consul from their
//! SERVICE_* conventions, and reconciles so Consul never keeps a stale entry.
//!
//! Data flows one way through the modules:
//! sources (`docker`, `kubernetes`) -> [`source::SourceEvent`] carrying a
//! [`workload::Workload`] -> `conventions` (desired registrations) ->
//! `reconcile` (diff against the agent) -> `sync` (the loop that talks to
//! Consul).

pub mod cli;
pub mod conventions;
pub mod docker;
pub mod kubernetes;
pub mod reconcile;
pub mod source;
pub mod sync;
pub mod workload;
