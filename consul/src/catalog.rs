//! The catalog: which services exist and with which tags.

use std::collections::BTreeMap;

use crate::blocking::{QueryOptions, Response};
use crate::client::Client;
use crate::error::Error;

impl Client {
    /// `GET /v1/catalog/services`: every service name with the union of its
    /// instances' tags. Blocking on it wakes on any registration change.
    pub async fn catalog_services(
        &self,
        opts: &QueryOptions,
    ) -> Result<Response<BTreeMap<String, Vec<String>>>, Error> {
        let r = self.get::<BTreeMap<String, Option<Vec<String>>>>("v1/catalog/services", &[], opts).await?;
        Ok(Response {
            value: r.value.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
            index: r.index,
            known_leader: r.known_leader,
            last_contact_ms: r.last_contact_ms,
        })
    }
}
