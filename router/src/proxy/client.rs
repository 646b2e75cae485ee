//! The upstream client: one pooled keep-alive connection pool per TLS policy
//! (verify certificates, or skip for routes with `tlsskipverify=true`),
//! speaking HTTP/1.1 to plain and TLS targets alike.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::builderstates::WantsSchemes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Body type sent upstream: the client's streamed body, or empty on a retry.
pub type UpBody = BoxBody<Bytes, hyper::Error>;
pub type HttpClient = Client<HttpsConnector<HttpConnector>, UpBody>;

/// The two pools.
#[derive(Clone)]
pub struct Upstreams {
    pub verify: HttpClient,
    pub skip_verify: HttpClient,
    /// HTTP/2 only (`proto=grpc|grpcs|h2c`): prior knowledge without TLS,
    /// ALPN h2 with it; one multiplexed connection per target carries all
    /// its streams.
    pub h2_verify: HttpClient,
    pub h2_skip_verify: HttpClient,
}

impl Upstreams {
    pub fn new(connect_timeout: Duration) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifying = || -> Result<HttpsConnectorBuilder<WantsSchemes>, rustls::Error> {
            Ok(match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(%error, "no system CA certificates; https targets will fail unless tlsskipverify=true");
                    let config = ClientConfig::builder_with_provider(provider.clone())
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth();
                    HttpsConnectorBuilder::new().with_tls_config(config)
                }
            })
        };
        let skipping = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider.signature_verification_algorithms)))
            .with_no_client_auth();
        Ok(Upstreams {
            verify: client(verifying()?, connect_timeout, false),
            skip_verify: client(HttpsConnectorBuilder::new().with_tls_config(skipping.clone()), connect_timeout, false),
            h2_verify: client(verifying()?, connect_timeout, true),
            h2_skip_verify: client(HttpsConnectorBuilder::new().with_tls_config(skipping), connect_timeout, true),
        })
    }

    pub fn for_route(&self, http2: bool, tls_skip_verify: bool) -> &HttpClient {
        match (http2, tls_skip_verify) {
            (false, false) => &self.verify,
            (false, true) => &self.skip_verify,
            (true, false) => &self.h2_verify,
            (true, true) => &self.h2_skip_verify,
        }
    }
}

fn client(tls: HttpsConnectorBuilder<WantsSchemes>, connect_timeout: Duration, http2: bool) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = tls.https_or_http();
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(Duration::from_secs(90)).pool_max_idle_per_host(256);
    if http2 {
        builder.http2_only(true).timer(hyper_util::rt::TokioTimer::new());
        builder.build(tls.enable_http2().wrap_connector(http))
    } else {
        builder.build(tls.enable_http1().wrap_connector(http))
    }
}

/// Certificate "verification" for `tlsskipverify=true` routes: any
/// certificate is accepted; handshake signatures are still checked so the
/// session is at least bound to the presented key.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
