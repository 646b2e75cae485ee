//! kube's watcher events, turned into the sync loop's [`SourceEvent`]s.
//!
//! The watcher (re)lists as `Init`, `InitApply`… , `InitDone` after its
//! first start and after every 410 Expired or lost watch. Pods deleted
//! while the registrar was not watching simply do not appear in a relist,
//! so the relist is buffered and sent whole as a `Snapshot`: the sync loop
//! then reconciles and removes their entries. Between relists, each
//! `Apply` / `Delete` becomes an `Upsert` or a `Remove`. Pure, so the phase
//! handling is unit-tested without an API server.

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

use super::pod::{self, PodState};
use crate::source::SourceEvent;
use crate::workload::{SourceKind, Workload};

/// Per-watch state: the node whose pods count, and the relist in progress.
#[derive(Debug)]
pub struct Translator {
    node: String,
    relist: Option<Vec<Workload>>,
}

impl Translator {
    pub fn new(node: impl Into<String>) -> Self {
        Translator { node: node.into(), relist: None }
    }

    /// What the sync loop must hear about `event`, if anything.
    pub fn on_event(&mut self, event: Event<Pod>) -> Option<SourceEvent> {
        match event {
            Event::Init => {
                // A relist cut short by an error starts over: drop the partial one.
                self.relist = Some(Vec::new());
                None
            }
            Event::InitApply(p) => {
                if let PodState::Present(w) = self.translate(&p) {
                    // An InitApply without Init cannot come from kube's
                    // watcher; buffering anyway keeps such a pod.
                    self.relist.get_or_insert_with(Vec::new).push(*w);
                }
                None
            }
            Event::InitDone => {
                let workloads = self.relist.take().unwrap_or_default();
                tracing::info!(node = %self.node, pods = workloads.len(), "pod list complete; reconciling");
                Some(SourceEvent::Snapshot { source: SourceKind::Kubernetes, workloads })
            }
            Event::Apply(p) => Some(match self.translate(&p) {
                PodState::Present(w) => SourceEvent::Upsert(w),
                PodState::Absent { key, reason } => {
                    tracing::debug!(pod = ?p.metadata.name, namespace = ?p.metadata.namespace, ?reason, "pod not registrable");
                    SourceEvent::Remove { source: SourceKind::Kubernetes, key }
                }
            }),
            Event::Delete(p) => Some(SourceEvent::Remove { source: SourceKind::Kubernetes, key: pod::key(&p) }),
        }
    }

    fn translate(&self, p: &Pod) -> PodState {
        pod::translate(p, &self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, ip: Option<&str>) -> Pod {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "web", "ports": [{ "containerPort": 80 }] }] },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] }
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        serde_json::from_value(v).expect("pod")
    }

    fn snapshot_keys(ev: Option<SourceEvent>) -> Vec<String> {
        match ev {
            Some(SourceEvent::Snapshot { source: SourceKind::Kubernetes, workloads }) => {
                workloads.into_iter().map(|w| w.key).collect()
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    #[test]
    fn a_relist_is_sent_whole_on_init_done_without_unregistrable_pods() {
        let mut t = Translator::new("n1");
        assert_eq!(t.on_event(Event::Init), None);
        assert_eq!(t.on_event(Event::InitApply(pod("a", "n1", Some("10.0.0.1")))), None);
        assert_eq!(t.on_event(Event::InitApply(pod("no-ip", "n1", None))), None);
        assert_eq!(t.on_event(Event::InitApply(pod("foreign", "n2", Some("10.0.0.2")))), None);
        assert_eq!(t.on_event(Event::InitApply(pod("b", "n1", Some("10.0.0.3")))), None);
        assert_eq!(snapshot_keys(t.on_event(Event::InitDone)), ["uid-a", "uid-b"]);
    }

    #[test]
    fn an_empty_relist_is_still_a_snapshot_so_stale_entries_go() {
        let mut t = Translator::new("n1");
        t.on_event(Event::Init);
        assert!(snapshot_keys(t.on_event(Event::InitDone)).is_empty());
    }

    #[test]
    fn an_interrupted_relist_starts_over() {
        let mut t = Translator::new("n1");
        t.on_event(Event::Init);
        t.on_event(Event::InitApply(pod("gone", "n1", Some("10.0.0.1"))));
        t.on_event(Event::Init);
        t.on_event(Event::InitApply(pod("b", "n1", Some("10.0.0.3"))));
        assert_eq!(snapshot_keys(t.on_event(Event::InitDone)), ["uid-b"]);
        // The buffer is consumed: a second InitDone carries nothing old.
        t.on_event(Event::Init);
        assert!(snapshot_keys(t.on_event(Event::InitDone)).is_empty());
    }

    #[test]
    fn changes_between_relists_are_upserts_and_removes() {
        let mut t = Translator::new("n1");
        match t.on_event(Event::Apply(pod("a", "n1", Some("10.0.0.1")))) {
            Some(SourceEvent::Upsert(w)) => assert_eq!(w.key, "uid-a"),
            other => panic!("{other:?}"),
        }
        let remove = |key: &str| Some(SourceEvent::Remove { source: SourceKind::Kubernetes, key: key.into() });
        assert_eq!(t.on_event(Event::Apply(pod("a", "n1", None))), remove("uid-a"), "lost its IP");
        assert_eq!(t.on_event(Event::Apply(pod("a", "n2", Some("10.0.0.1")))), remove("uid-a"), "another node");
        assert_eq!(t.on_event(Event::Delete(pod("a", "n1", Some("10.0.0.1")))), remove("uid-a"));
        let mut finished = pod("a", "n1", Some("10.0.0.1"));
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(t.on_event(Event::Apply(finished)), remove("uid-a"));
    }
}
