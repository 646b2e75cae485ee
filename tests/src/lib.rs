//! Test harness for the integration tests: real components, started on free
//! ports in temporary directories, and stopped when their handle drops.
//!
//! - [`consul::ConsulAgent`]: a real `consul agent -dev` (in-memory state),
//!   waited on until it has a leader and its own node in the catalog.
//! - [`process::Daemon`]: one of this project's binaries (router, registrar,
//!   vipd) started with flags, its output captured to a file that is printed
//!   when a test fails.
//! - [`docker`]: a busybox image built locally (nothing can be pulled),
//!   containers and networks labelled `edge-test`, removed on drop.
//! - [`kube_api::KubeApiServer`]: a stand-in Kubernetes API server for pods
//!   (list/watch wire format, 410 Expired, selectors); no real one can be
//!   installed on these machines.
//! - [`router`]: a router daemon on free ports, loopback backends that
//!   answer with what they received, and Consul registration helpers.
//! - [`netns::Topology`]: hosts on a bridge in network namespaces, and
//!   [`vrrp`]: vipd, keepalived, HTTP servers and injected VRRP packets on it.
//! - [`edge::EdgeCluster`]: the whole edge on such a topology (three nodes
//!   with a Consul server, router and vipd each, a worker, a client) and a
//!   [`edge::Poller`] that measures what a client sees.
//!
//! Every child runs in its own process group and gets `SIGKILL` from the
//! kernel if the test process dies (`PR_SET_PDEATHSIG`), so even a test
//! killed by a timeout leaves nothing running.

pub mod certs;
pub mod consul;
pub mod docker;
pub mod echo;
pub mod edge;
pub mod kube_api;
pub mod netns;
pub mod ports;
pub mod process;
pub mod router;
pub mod vrrp;
pub mod wait;

pub use consul::ConsulAgent;
pub use kube_api::KubeApiServer;
pub use ports::free_port;
pub use process::{Daemon, bin_path};
pub use wait::wait_until;

/// Why a harness component could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotReady(String),
    #[error("binary {0} not found: build it first (`cargo build --workspace`, which scripts/test.sh does)")]
    MissingBinary(String),
}
