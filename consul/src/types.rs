//! The JSON shapes of Consul's API, typed. Fields Consul may send as `null`
//! (tags, meta) default to empty, so callers never meet an `Option` for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `PUT /v1/agent/service/register` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRegistration>,
}

/// A check registered with a service. Exactly one of `http`, `tcp`, `ttl`
/// should be set; Consul rejects the registration otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckRegistration {
    /// Defaults in Consul to `service:<service id>` (`:N` for the Nth check).
    #[serde(rename = "CheckID", default, skip_serializing_if = "String::is_empty")]
    pub check_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "HTTP", default, skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(rename = "TCP", default, skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// Duration string such as "30s".
    #[serde(rename = "TTL", default, skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
    #[serde(rename = "TLSSkipVerify", default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    /// Initial status: "passing", "warning" or "critical" (Consul's default).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// An entry of `GET /v1/agent/services`: what this agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub address: String,
}

/// A node as the catalog and health endpoints describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "Node")]
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default, deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
}

/// The service part of a health entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
}

/// `GET /v1/catalog/node/:node`: a node and its services by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogNode {
    pub node: Node,
    #[serde(default, deserialize_with = "null_default")]
    pub services: BTreeMap<String, CatalogService>,
}

/// Status of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
    /// Consul's "maintenance" and anything a newer Consul may add.
    #[serde(other)]
    Unknown,
}

/// A check as `health/service` and `health/state` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(default)]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    pub status: CheckStatus,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub output: String,
    /// Empty for node checks (which apply to every service on the node).
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub service_tags: Vec<String>,
    #[serde(default)]
    pub modify_index: u64,
}

/// An entry of `GET /v1/health/service/:name`: one instance with its node
/// and all checks that apply to it (its own and its node's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: CatalogService,
    #[serde(default, deserialize_with = "null_default")]
    pub checks: Vec<HealthCheck>,
}

impl ServiceEntry {
    /// True when every check passes (and so when there are none). Consul's
    /// maintenance modes are critical checks, so they count as failing.
    pub fn all_checks_passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == CheckStatus::Passing)
    }

    /// The address to reach the instance: the service's own, else its node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() { &self.node.address } else { &self.service.address }
    }
}

/// A KV entry, value decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub modify_index: u64,
    /// The session holding the key's lock, if any (see [`crate::Client::kv_acquire`]).
    pub session: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_entry_with_nulls_decodes() {
        let json = r#"[{"Node":{"ID":"x","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1","Meta":null},
            "Service":{"ID":"web1","Service":"web","Tags":null,"Address":"","Meta":null,"Port":80},
            "Checks":[{"Node":"n1","CheckID":"serfHealth","Name":"Serf","Status":"passing","ServiceID":"","ServiceTags":null},
                      {"Node":"n1","CheckID":"_node_maintenance","Name":"m","Status":"maintenance"}]}]"#;
        let e: Vec<ServiceEntry> = serde_json::from_str(json).unwrap();
        assert_eq!(e[0].service.tags, Vec::<String>::new());
        assert_eq!(e[0].address(), "10.0.0.1");
        assert_eq!(e[0].checks[1].status, CheckStatus::Unknown);
        assert!(!e[0].all_checks_passing());
    }

    #[test]
    fn catalog_node_decodes() {
        let json = r#"{"Node":{"ID":"x","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1","Meta":null},
            "Services":{"web1":{"ID":"web1","Service":"web","Tags":["urlprefix-/"],"Address":"","Port":80,"Meta":null}}}"#;
        let n: CatalogNode = serde_json::from_str(json).unwrap();
        assert_eq!(n.node.address, "10.0.0.1");
        assert_eq!(n.services["web1"].tags, vec!["urlprefix-/".to_string()]);
        let none: Option<CatalogNode> = serde_json::from_str("null").unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn no_checks_means_passing() {
        let e = ServiceEntry { node: Node::default(), service: CatalogService::default(), checks: vec![] };
        assert!(e.all_checks_passing());
    }

    #[test]
    fn registration_omits_empty_fields() {
        let r = ServiceRegistration { id: "a".into(), name: "b".into(), port: Some(80), ..Default::default() };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"ID":"a","Name":"b","Port":80}"#);
        let c = CheckRegistration { ttl: "30s".into(), ..Default::default() };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"TTL":"30s"}"#);
    }
}
