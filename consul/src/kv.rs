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
    #[serde(default)]
    session: Option<String>,
}

fn decode(endpoint: &str, raw: RawPair) -> Result<KvPair, Error> {
    use base64::Engine;
    let value = match raw.value {
        None => Vec::new(),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|e| Error::Base64 { endpoint: endpoint.to_string(), reason: e.to_string() })?,
    };
    Ok(KvPair { key: raw.key, value, flags: raw.flags, modify_index: raw.modify_index, session: raw.session })
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
        self.kv_put_query(key, &[], value.into()).await
    }

    /// `PUT /v1/kv/:key?cas=index`: stores a value only if the key's
    /// `ModifyIndex` is still `index` (0: only if the key does not exist).
    /// `false` means another writer came first; the caller re-reads and
    /// decides again instead of overwriting.
    pub async fn kv_cas(&self, key: &str, index: u64, value: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.kv_put_query(key, &[("cas", index.to_string())], value.into()).await
    }

    /// `PUT /v1/kv/:key?acquire=session`: takes the key's lock for
    /// `session` and stores `value`. `false` when another session holds
    /// it (or the lock-delay after a release has not passed yet).
    pub async fn kv_acquire(&self, key: &str, session: &str, value: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.kv_put_query(key, &[("acquire", session.to_string())], value.into()).await
    }

    /// `PUT /v1/kv/:key?release=session`: gives the lock back (keeping
    /// the key and storing `value`). `false` when `session` did not hold it.
    pub async fn kv_release(&self, key: &str, session: &str, value: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.kv_put_query(key, &[("release", session.to_string())], value.into()).await
    }

    async fn kv_put_query(&self, key: &str, query: &[(&str, String)], value: Vec<u8>) -> Result<bool, Error> {
        let path = format!("v1/kv/{}", key_path(key)?);
        let body = self.put_raw(&path, query, value).await?;
        Ok(body.trim() == "true")
    }

    /// `DELETE /v1/kv/:key`.
    pub async fn kv_delete(&self, key: &str) -> Result<(), Error> {
        self.delete(&format!("v1/kv/{}", key_path(key)?), &[]).await
    }
}
