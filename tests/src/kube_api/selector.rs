//! Field and label selectors, and what a change looks like to a watch
//! filtered by them (an object leaving the selection is `DELETED` for it).

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::store::Change;
use super::wire::event_line;

/// One requirement of a field or label selector.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// What a list or watch is restricted to: the namespace in the path and the
/// selectors in the query.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Filter {
    namespace: Option<String>,
    fields: Vec<Requirement>,
    labels: Vec<Requirement>,
}

const FIELDS: [&str; 4] = ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"];

impl Filter {
    pub(super) fn parse(namespace: Option<String>, fields: Option<&str>, labels: Option<&str>) -> Result<Self, String> {
        let mut filter = Filter { namespace, ..Filter::default() };
        for term in fields.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            let req = parse_requirement(term).ok_or_else(|| format!("invalid field selector: {term:?}"))?;
            match &req {
                Requirement::Equals(f, _) | Requirement::NotEquals(f, _) if FIELDS.contains(&f.as_str()) => {}
                _ => return Err(format!("field label not supported: {term}")),
            }
            filter.fields.push(req);
        }
        for term in labels.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            filter
                .labels
                .push(parse_requirement(term).ok_or_else(|| format!("unable to parse requirement: {term:?}"))?);
        }
        Ok(filter)
    }

    pub(super) fn matches(&self, pod: &Pod) -> bool {
        let meta = &pod.metadata;
        if self.namespace.as_ref().is_some_and(|ns| meta.namespace.as_ref() != Some(ns)) {
            return false;
        }
        let field = |name: &str| -> String {
            match name {
                "metadata.name" => meta.name.clone(),
                "metadata.namespace" => meta.namespace.clone(),
                "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                _ => pod.status.as_ref().and_then(|s| s.phase.clone()),
            }
            .unwrap_or_default()
        };
        let fields_ok = self.fields.iter().all(|r| match r {
            Requirement::Equals(f, v) => field(f) == *v,
            Requirement::NotEquals(f, v) => field(f) != *v,
            _ => false,
        });
        let labels = meta.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k));
        fields_ok
            && self.labels.iter().all(|r| match r {
                Requirement::Equals(k, v) => label(k) == Some(v),
                Requirement::NotEquals(k, v) => label(k) != Some(v),
                Requirement::Exists(k) => label(k).is_some(),
                Requirement::NotExists(k) => label(k).is_none(),
            })
    }

    /// The watch event `change` means for a watcher with this filter.
    pub(super) fn event(&self, change: &Change) -> Option<Bytes> {
        let old = change.old.as_ref().filter(|p| self.matches(p));
        let new = change.new.as_ref().filter(|p| self.matches(p));
        let (kind, obj) = match (old, new) {
            (None, Some(new)) => ("ADDED", new.clone()),
            (Some(_), Some(new)) => ("MODIFIED", new.clone()),
            // Stops matching (or is deleted): its last state, at the
            // change's version.
            (Some(old), None) => {
                let mut obj = change.new.clone().unwrap_or_else(|| old.clone());
                obj.metadata.resource_version = Some(change.rv.to_string());
                ("DELETED", obj)
            }
            (None, None) => return None,
        };
        Some(event_line(&json!({ "type": kind, "object": obj })))
    }
}

fn parse_requirement(term: &str) -> Option<Requirement> {
    let term = term.trim();
    let valid = |s: &str| !s.is_empty() && !s.contains([' ', '(', ')', '=', '!']);
    if let Some((k, v)) = term.split_once("!=") {
        return (valid(k) && !v.contains('=')).then(|| Requirement::NotEquals(k.into(), v.into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return (valid(k) && !v.contains('=')).then(|| Requirement::Equals(k.into(), v.into()));
    }
    if let Some(k) = term.strip_prefix('!') {
        return valid(k).then(|| Requirement::NotExists(k.into()));
    }
    valid(term).then(|| Requirement::Exists(term.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_api::test_pod as pod;
    use serde_json::Value;

    #[test]
    fn selectors_parse_and_reject_like_the_api_server() {
        let f = Filter::parse(None, Some("spec.nodeName=n1,status.phase!=Failed"), Some("app==web,!canary,tier"))
            .expect("valid");
        assert_eq!(
            f.fields,
            vec![
                Requirement::Equals("spec.nodeName".into(), "n1".into()),
                Requirement::NotEquals("status.phase".into(), "Failed".into()),
            ]
        );
        assert_eq!(
            f.labels,
            vec![
                Requirement::Equals("app".into(), "web".into()),
                Requirement::NotExists("canary".into()),
                Requirement::Exists("tier".into()),
            ]
        );
        assert!(Filter::parse(None, Some("spec.hostname=x"), None).is_err());
        assert!(Filter::parse(None, Some("spec.nodeName"), None).is_err());
        assert!(Filter::parse(None, None, Some("a=b=c")).is_err());
    }

    #[test]
    fn filter_matches_namespace_node_and_labels() {
        let p = pod("ns1", "web", "n1");
        assert!(Filter::parse(Some("ns1".into()), Some("spec.nodeName=n1"), Some("app=web")).unwrap().matches(&p));
        assert!(!Filter::parse(Some("ns2".into()), None, None).unwrap().matches(&p));
        assert!(!Filter::parse(None, Some("spec.nodeName=n2"), None).unwrap().matches(&p));
        assert!(!Filter::parse(None, None, Some("app!=web")).unwrap().matches(&p));
        assert!(Filter::parse(None, Some("metadata.name==web,metadata.namespace=ns1"), None).unwrap().matches(&p));
    }

    #[test]
    fn filtered_watch_sees_leaving_as_deleted_and_entering_as_added() {
        let f = Filter::parse(None, Some("spec.nodeName=n1"), None).unwrap();
        let on = |n| Some(pod("ns", "p", n));
        let kind = |c: &Change| {
            f.event(c).map(|l| serde_json::from_slice::<Value>(&l).unwrap()["type"].as_str().unwrap().to_string())
        };
        assert_eq!(kind(&Change { rv: 2, old: on("n2"), new: on("n1") }).as_deref(), Some("ADDED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: on("n1") }).as_deref(), Some("MODIFIED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: on("n2") }).as_deref(), Some("DELETED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n1"), new: None }).as_deref(), Some("DELETED"));
        assert_eq!(kind(&Change { rv: 2, old: on("n2"), new: on("n2") }), None);
    }
}
