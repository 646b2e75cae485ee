//! The catalog: which services exist and with which tags.

use std::collections::BTreeMap;

use crate::blocking::{QueryOptions, Response};
use crate::client::{Client, segment};
use crate::error::Error;
use crate::types::{CatalogNode, Node};

impl Client {
    /// `GET /v1/catalog/services`: every service name with the union of its
    /// instances' tags. Blocking on it wakes on any registration change.
    pub async fn catalog_services(
        &self,
        opts: &QueryOptions,
    ) -> Result<Response<BTreeMap<String, Vec<String>>>, Error> {
        let r = self.get::<BTreeMap<String, Option<Vec<String>>>>("v1/catalog/services", &[], opts).await?;
        Ok(r.map(|services| services.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()))
    }

    /// `GET /v1/catalog/nodes`: every node. Blocking on it wakes when a node
    /// joins or leaves (not on service changes).
    pub async fn catalog_nodes(&self, opts: &QueryOptions) -> Result<Response<Vec<Node>>, Error> {
        self.get("v1/catalog/nodes", &[], opts).await
    }

    /// `GET /v1/catalog/node/:node`: one node with the services registered on
    /// it; `None` when the node is unknown. Blocking on it wakes only on that
    /// node's registration changes, so a watcher that follows each node
    /// re-reads one node's services per change instead of the whole catalog.
    pub async fn catalog_node(&self, node: &str, opts: &QueryOptions) -> Result<Response<Option<CatalogNode>>, Error> {
        let path = format!("v1/catalog/node/{}", segment(node)?);
        let r = self.get_opt::<Option<CatalogNode>>(&path, &[], opts).await?;
        Ok(r.map(Option::flatten))
    }
}
