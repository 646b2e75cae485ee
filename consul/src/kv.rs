//! The KV store: configuration such as the router's overrides.

use serde::Deserialize;

use crate::blocking::{QueryOptions, Response};
use crate::client::{Client, key_path};
use crate::error::Error;
use crate::types::KvPair;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPair {
    key: String,
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    modify_index: u64,
}

fn decode(endpoint: &str, raw: RawPair) -> Result<KvPair, Error> {
    use base64::Engine;
    let value = match raw.value {
        None => Vec::new(),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|e| Error::Base64 { endpoint: endpoint.to_string(), reason: e.to_string() })?,
    };
    Ok(KvPair { key: raw.key, value, flags: raw.flags, modify_index: raw.modify_index })
}

impl Client {
    /// `GET /v1/kv/:key`: the entry, or `None` when the key does not exist
    /// (with an index to block on until it does).
    pub async fn kv_get(&self, key: &str, opts: &QueryOptions) -> Result<Response<Option<KvPair>>, Error> {
        let path = format!("v1/kv/{}", key_path(key)?);
        let r = self.get_opt::<Vec<RawPair>>(&path, &[], opts).await?;
        let endpoint = format!("GET /{path}");
        r.try_map(|pairs| pairs.and_then(|v| v.into_iter().next()).map(|raw| decode(&endpoint, raw)).transpose())
    }

    /// `GET /v1/kv/:prefix?recurse`: every entry under a prefix.
    pub async fn kv_list(&self, prefix: &str, opts: &QueryOptions) -> Result<Response<Vec<KvPair>>, Error> {
        let path = format!("v1/kv/{}", key_path(prefix)?);
        let r = self.get_opt::<Vec<RawPair>>(&path, &[("recurse", String::new())], opts).await?;
        let endpoint = format!("GET /{path}");
        r.try_map(|pairs| pairs.unwrap_or_default().into_iter().map(|raw| decode(&endpoint, raw)).collect())
    }

    /// `PUT /v1/kv/:key`: stores a value; Consul answers whether it did.
    pub async fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<bool, Error> {
        let path = format!("v1/kv/{}", key_path(key)?);
        let body = self.put_raw(&path, value.into()).await?;
        Ok(body.trim() == "true")
    }

    /// `DELETE /v1/kv/:key`.
    pub async fn kv_delete(&self, key: &str) -> Result<(), Error> {
        self.delete(&format!("v1/kv/{}", key_path(key)?), &[]).await
    }
}
