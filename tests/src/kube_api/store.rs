//! The server's state: pods, one resourceVersion counter, the change
//! history that lets a watch resume and a paged list read one snapshot, and
//! the open watches that every change is broadcast to.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;

use super::selector::Filter;

pub(super) type Key = (String, String);

/// One change: the object before and after (`None` when absent).
#[derive(Clone)]
pub(super) struct Change {
    pub(super) rv: u64,
    pub(super) old: Option<Pod>,
    pub(super) new: Option<Pod>,
}

pub(super) struct Watcher {
    pub(super) filter: Filter,
    pub(super) bookmarks: bool,
    pub(super) tx: mpsc::UnboundedSender<Bytes>,
}

/// The server's state. `history` holds every change after `compacted`:
/// a watch or snapshot from a resourceVersion `>= compacted` can be served.
#[derive(Default)]
pub(super) struct Store {
    pub(super) rv: u64,
    pub(super) compacted: u64,
    pub(super) pods: BTreeMap<Key, Pod>,
    pub(super) history: VecDeque<Change>,
    pub(super) watchers: Vec<Watcher>,
    pub(super) requests: Vec<String>,
}

impl Store {
    pub(super) fn put(&mut self, mut pod: Pod) -> String {
        self.rv += 1;
        let meta = &mut pod.metadata;
        let namespace = meta.namespace.get_or_insert_with(|| "default".into()).clone();
        let name = meta.name.clone().unwrap_or_default();
        meta.resource_version = Some(self.rv.to_string());
        let key = (namespace, name);
        let old = self.pods.get(&key).cloned();
        if let Some(prev) = &old {
            meta.uid = prev.metadata.uid.clone();
            meta.creation_timestamp = prev.metadata.creation_timestamp.clone();
        }
        meta.uid.get_or_insert_with(|| format!("{:08x}-0000-4000-8000-{:012x}", self.rv, self.rv));
        if meta.creation_timestamp.is_none() {
            meta.creation_timestamp = now();
        }
        self.pods.insert(key, pod.clone());
        self.record(Change { rv: self.rv, old, new: Some(pod) });
        self.rv.to_string()
    }

    pub(super) fn delete(&mut self, namespace: &str, name: &str) -> bool {
        let Some(old) = self.pods.remove(&(namespace.to_string(), name.to_string())) else {
            return false;
        };
        self.rv += 1;
        self.record(Change { rv: self.rv, old: Some(old), new: None });
        true
    }

    fn record(&mut self, change: Change) {
        self.broadcast(&change);
        self.history.push_back(change);
    }

    fn broadcast(&mut self, change: &Change) {
        self.watchers.retain(|w| match w.filter.event(change) {
            Some(line) => w.tx.send(line).is_ok(),
            None => !w.tx.is_closed(),
        });
    }

    /// A compaction: the revision moves on (in a real cluster other objects
    /// keep it moving) and nothing before it can be replayed.
    pub(super) fn expire(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.history.clear();
    }

    /// The pods as they were at `rv`, undoing later changes; `None` when
    /// that is before the history.
    pub(super) fn snapshot_at(&self, rv: u64) -> Option<BTreeMap<Key, Pod>> {
        if rv < self.compacted || rv > self.rv {
            return None;
        }
        let mut pods = self.pods.clone();
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            let Some(obj) = change.old.as_ref().or(change.new.as_ref()) else { continue };
            let key = key_of(obj);
            match &change.old {
                Some(old) => pods.insert(key, old.clone()),
                None => pods.remove(&key),
            };
        }
        Some(pods)
    }
}

/// The wall clock as an API `Time` (whole seconds, as the server writes it).
fn now() -> Option<Time> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok().map(Time)
}

pub(super) fn key_of(pod: &Pod) -> Key {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::test_pod as pod;

    fn names(pods: &BTreeMap<Key, Pod>) -> Vec<String> {
        pods.keys().map(|(_, n)| n.clone()).collect()
    }

    #[test]
    fn snapshots_undo_later_changes_until_compaction() {
        let mut s = Store::default();
        s.put(pod("ns", "a", "n1")); // 1
        s.put(pod("ns", "b", "n1")); // 2
        s.delete("ns", "a"); // 3
        s.put(pod("ns", "c", "n1")); // 4
        assert_eq!(names(&s.snapshot_at(1).unwrap()), ["a"]);
        assert_eq!(names(&s.snapshot_at(2).unwrap()), ["a", "b"]);
        assert_eq!(names(&s.snapshot_at(3).unwrap()), ["b"]);
        assert_eq!(names(&s.snapshot_at(4).unwrap()), ["b", "c"]);
        assert!(s.snapshot_at(5).is_none(), "the future is not served");
        s.expire();
        assert!(s.snapshot_at(4).is_none(), "compacted");
        assert_eq!(names(&s.snapshot_at(s.rv).unwrap()), ["b", "c"]);
    }

    #[test]
    fn modify_keeps_identity_and_bumps_the_version() {
        let mut s = Store::default();
        s.put(pod("ns", "a", "n1"));
        let uid = s.pods[&("ns".to_string(), "a".to_string())].metadata.uid.clone();
        assert!(uid.is_some());
        s.put(pod("ns", "a", "n1"));
        let p = &s.pods[&("ns".to_string(), "a".to_string())];
        assert_eq!(p.metadata.uid, uid);
        assert_eq!(p.metadata.resource_version.as_deref(), Some("2"));
    }
}
