//! Routes: from healthy instances' tags and the operator's overrides to an
//! immutable table that answers "where does this request go?".
//!
//! Pure: no I/O, no async. Discovery hands in [`Instance`]s and the overrides
//! text; the proxy asks the [`Table`] for a [`Route`] and the route for a
//! [`Target`]. Data flows `tag`/`options`/`overrides` (parsing) -> `table`
//! (assembly, weights, lookup) -> `pick` (one target per request).

pub mod options;
pub mod outlier;
pub mod overrides;
pub mod path;
pub mod pick;
pub mod stats;
pub mod table;
pub mod tag;
pub mod tcp;
pub mod vars;

pub use options::{HostHeader, Proto, Redirect, RouteOptions};
pub use pick::Strategy;
pub use table::{FastFacts, Problem, Route, Table, Target, request_host};
pub use tcp::{PortRanges, TcpRoute};
pub use vars::Vars;

/// One healthy instance as discovery sees it (already filtered: all checks passing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance {
    pub service: String,
    /// The Consul service ID.
    pub id: String,
    /// The service address, else the node's.
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
}

/// Property-test settings: `default_cases` unless `PROPTEST_CASES` says
/// otherwise (nightly-length runs), no regression files in the tree.
#[cfg(test)]
pub(crate) fn proptest_config(default_cases: u32) -> proptest::prelude::ProptestConfig {
    let mut c = proptest::prelude::ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c.failure_persistence = None;
    c
}

/// A fixed xorshift sequence for the randomised tests: reproducible
/// without a seed file. Each call gives a number below `n`.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}
