//! The local vipd as the router's page shows it (`--vipd-addr`): its
//! `/status` JSON fetched on each request with a short timeout, relayed as
//! is, or the reason it could not be read. The browser cannot be expected to
//! reach vipd's loopback admin address itself.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one read of vipd's status may take.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Largest status body accepted.
const MAX_BODY: usize = 64 * 1024;

pub struct Vipd {
    uri: http::Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Vipd {
    pub fn new(addr: SocketAddr) -> Self {
        let uri = format!("http://{addr}/status")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1:9997/status"));
        Vipd { uri, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// vipd's `/status`, or why it could not be read.
    pub async fn status(&self) -> Result<serde_json::Value, String> {
        let read = async {
            let resp = self.client.get(self.uri.clone()).await.map_err(|e| format!("vipd at {}: {e}", self.uri))?;
            if !resp.status().is_success() {
                return Err(format!("vipd at {} answered {}", self.uri, resp.status()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("vipd at {}: {e}", self.uri))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("vipd at {}: not JSON: {e}", self.uri))
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(format!("vipd at {}: no answer within {TIMEOUT:?}", self.uri)))
    }
}
