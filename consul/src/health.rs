//! Health: instances with their checks, and checks by state.

use crate::blocking::{QueryOptions, Response};
use crate::client::{Client, segment};
use crate::error::Error;
use crate::types::{HealthCheck, ServiceEntry};

impl Client {
    /// `GET /v1/health/service/:name`: every instance of a service with its
    /// node and all checks that apply to it. `passing_only` asks Consul to
    /// filter to instances whose checks all pass.
    pub async fn health_service(
        &self,
        name: &str,
        passing_only: bool,
        opts: &QueryOptions,
    ) -> Result<Response<Vec<ServiceEntry>>, Error> {
        let path = format!("v1/health/service/{}", segment(name)?);
        let extra = if passing_only { vec![("passing", "1".to_string())] } else { vec![] };
        self.get(&path, &extra, opts).await
    }

    /// `GET /v1/health/state/any`: every check in the datacenter. Blocking on
    /// it wakes on any check status change anywhere, which tells a watcher
    /// which services to re-read.
    pub async fn health_state_any(&self, opts: &QueryOptions) -> Result<Response<Vec<HealthCheck>>, Error> {
        self.get("v1/health/state/any", &[], opts).await
    }

    /// `GET /v1/health/node/:node`: the node's own checks and those of every
    /// service on it. Read together with the node's catalog entry, it gives a
    /// consistent view of one node without reading the whole datacenter.
    pub async fn health_node(&self, node: &str, opts: &QueryOptions) -> Result<Response<Vec<HealthCheck>>, Error> {
        let path = format!("v1/health/node/{}", segment(node)?);
        self.get(&path, &[], opts).await
    }
}
