//! The HTTP client the ACME account talks through: hyper-rustls, as
//! instant-acme's own, plus one thing its errors do not carry — the
//! `Retry-After` of a refused request (a rate limit, an overloaded CA), so a
//! failed order is not retried sooner than the CA asked.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub struct Http {
    inner: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    /// The longest `Retry-After` of an unsuccessful answer so far.
    pub retry_after: Arc<Mutex<Option<Duration>>>,
}

impl Http {
    /// Trusting the system's roots, or only `ca_root` (PEM) when given.
    pub fn new(ca_root: Option<&Path>) -> Result<Http, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match ca_root {
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("system CA certificates: {e}"))?,
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))? {
                    roots.add(cert.map_err(|e| format!("{}: {e}", path.display()))?).map_err(|e| e.to_string())?;
                }
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(Http {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            retry_after: Arc::new(Mutex::new(None)),
        })
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = fut.await.map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if !rsp.status().is_success()
                && let Some(wait) = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| router::acme::plan::retry_after(v, SystemTime::now()))
            {
                let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                *s = Some(s.map_or(wait, |old| old.max(wait)));
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A refused request's `Retry-After` is kept (the longest one); a
    /// successful answer's is not.
    #[tokio::test]
    async fn retry_after_of_refusals_is_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nRetry-After: 999\r\nContent-Length: 0\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0; 4096];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let dir = root_file();
        let http = Http::new(Some(&dir)).unwrap();
        let _ = std::fs::remove_file(&dir);
        for _ in 0..3 {
            let req = http::Request::builder()
                .uri(format!("http://{addr}/"))
                .header("connection", "close")
                .body(BodyWrapper::default())
                .unwrap();
            http.request(req).await.unwrap();
        }
        assert_eq!(*http.retry_after.lock().unwrap(), Some(Duration::from_secs(30)));
    }

    /// A root file (any certificate) so the test does not depend on the
    /// system's CA store.
    fn root_file() -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()]).unwrap().self_signed(&key).unwrap();
        let path = std::env::temp_dir().join(format!("edge-acme-root-{}.pem", std::process::id()));
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }
}
