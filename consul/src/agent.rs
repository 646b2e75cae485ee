//! The local agent: register and deregister services, report TTL checks,
//! list what the agent holds. A registrar talks only to its node's agent.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::blocking::{QueryOptions, Response};
use crate::client::{Client, segment};
use crate::error::Error;
use crate::types::{AgentService, ServiceRegistration};

/// What to report on a TTL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlStatus {
    Pass,
    Warn,
    Fail,
}

impl Client {
    /// Registers (or replaces, by ID) a service with its checks on the agent.
    pub async fn register_service(&self, reg: &ServiceRegistration) -> Result<(), Error> {
        self.put_json("v1/agent/service/register", &[], Some(reg)).await.map(drop)
    }

    /// Removes a service and its checks from the agent.
    pub async fn deregister_service(&self, service_id: &str) -> Result<(), Error> {
        let path = format!("v1/agent/service/deregister/{}", segment(service_id)?);
        self.put_json::<()>(&path, &[], None).await.map(drop)
    }

    /// The services this agent holds, by ID (`GET /v1/agent/services`).
    pub async fn agent_services(&self) -> Result<BTreeMap<String, AgentService>, Error> {
        Ok(self.get("v1/agent/services", &[], &QueryOptions::default()).await?.value)
    }

    /// Reports a TTL check's status, with an optional note shown in the UI.
    pub async fn ttl_check(&self, check_id: &str, status: TtlStatus, note: &str) -> Result<(), Error> {
        let verb = match status {
            TtlStatus::Pass => "pass",
            TtlStatus::Warn => "warn",
            TtlStatus::Fail => "fail",
        };
        let path = format!("v1/agent/check/{verb}/{}", segment(check_id)?);
        let q = if note.is_empty() { vec![] } else { vec![("note", note.to_string())] };
        self.put_json::<()>(&path, &q, None).await.map(drop)
    }

    /// `GET /v1/agent/self`: the agent's configuration and member record,
    /// as raw JSON (its shape changes between Consul versions).
    pub async fn agent_self(&self) -> Result<Response<Value>, Error> {
        self.get("v1/agent/self", &[], &QueryOptions::default()).await
    }

    /// The agent's node name, from `agent/self`.
    pub async fn agent_node_name(&self) -> Result<String, Error> {
        let v = self.agent_self().await?.value;
        v.pointer("/Config/NodeName").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| Error::Status {
            endpoint: "GET /v1/agent/self".into(),
            status: 200,
            body: "no Config.NodeName in answer".into(),
        })
    }
}
