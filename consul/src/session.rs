//! Sessions: the lease behind a KV lock. A node that holds a lock keeps its
//! session alive by renewing it; when the node dies the session's TTL runs
//! out, Consul invalidates it and every lock it held is released, so another
//! node can take over the work the lock guarded.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Client, segment};
use crate::error::Error;

/// What Consul does with the keys a session holds when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionBehavior {
    /// The keys stay; only their lock is released.
    #[serde(rename = "release")]
    Release,
    /// The keys are deleted.
    #[serde(rename = "delete")]
    Delete,
}

/// A session to create (`PUT /v1/session/create`).
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// Shown in Consul's UI and API, e.g. "router acme <node>".
    pub name: String,
    /// Time after the last renewal when Consul invalidates the session.
    /// Consul accepts 10 s to 24 h; it may wait up to twice this long.
    pub ttl: Duration,
    /// Time after an invalidation during which the released locks cannot
    /// be taken again (Consul's default is 15 s; 0 allows an immediate
    /// takeover).
    pub lock_delay: Duration,
    pub behavior: SessionBehavior,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RawRequest<'a> {
    name: &'a str,
    #[serde(rename = "TTL")]
    ttl: String,
    lock_delay: String,
    behavior: SessionBehavior,
    /// No health checks: only the TTL decides whether the holder is alive,
    /// so a session does not depend on the agent's serf check.
    node_checks: [&'a str; 0],
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

impl Client {
    /// `PUT /v1/session/create`: a new session's ID.
    pub async fn session_create(&self, req: &SessionRequest) -> Result<String, Error> {
        let endpoint = "PUT /v1/session/create";
        let raw = RawRequest {
            name: &req.name,
            ttl: format!("{}s", req.ttl.as_secs()),
            lock_delay: format!("{}ms", req.lock_delay.as_millis()),
            behavior: req.behavior,
            node_checks: [],
        };
        let body = self.put_json("v1/session/create", &[], Some(&raw)).await?;
        let created: Created =
            serde_json::from_str(&body).map_err(|source| Error::Decode { endpoint: endpoint.to_string(), source })?;
        Ok(created.id)
    }

    /// `PUT /v1/session/renew/:id`: `false` when the session no longer
    /// exists (it expired or was destroyed: every lock it held is gone, and
    /// the holder must stop the work those locks guarded).
    pub async fn session_renew(&self, id: &str) -> Result<bool, Error> {
        match self.put_json::<()>(&format!("v1/session/renew/{}", segment(id)?), &[], None).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/session/destroy/:id`: ends the session and releases its locks.
    pub async fn session_destroy(&self, id: &str) -> Result<(), Error> {
        self.put_json::<()>(&format!("v1/session/destroy/{}", segment(id)?), &[], None).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_is_what_consul_documents() {
        let raw = RawRequest {
            name: "router acme",
            ttl: "15s".into(),
            lock_delay: "0ms".into(),
            behavior: SessionBehavior::Release,
            node_checks: [],
        };
        assert_eq!(
            serde_json::to_value(&raw).unwrap(),
            serde_json::json!({"Name": "router acme", "TTL": "15s", "LockDelay": "0ms", "Behavior": "release", "NodeChecks": []})
        );
    }
}
