//! The seam between workload sources and the sync loop: every source
//! (docker/, kubernetes/) runs as its own task and sends [`SourceEvent`]s
//! into one channel; the sync loop is the only owner of desired state and
//! the only one that talks to Consul. `--source all` is just two senders.

use crate::workload::{SourceKind, Workload};

/// What a source tells the sync loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The complete set of the source's current workloads, after its first
    /// listing and after every reconnect or relist. Replaces everything the
    /// loop knew from this source and triggers a full reconcile, so entries
    /// of workloads that vanished meanwhile are removed. Until a source's
    /// first snapshot the loop leaves that source's Consul entries alone.
    Snapshot { source: SourceKind, workloads: Vec<Workload> },
    /// One workload appeared or changed (start, health flip, rename, network
    /// change, pod update): its whole current state.
    Upsert(Box<Workload>),
    /// A workload is gone (stop, die, destroy, pod deleted or not running):
    /// its [`Workload::key`].
    Remove { source: SourceKind, key: String },
}
