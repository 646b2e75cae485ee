//! HTTPS at the edge: TLS termination with rustls (ring), certificates
//! chosen by SNI from stores that are followed while the router runs.
//!
//! - [`cert`]: pairing files into bundles and checking them (pure);
//! - [`store`]: the immutable set and the SNI choice, rustls's resolver;
//! - [`sources`]: `dir:` and `consul:` stores feeding the set;
//! - [`redirect`]: the `--https-redirect` answer;
//! - [`hello`]: reading the ClientHello before deciding, and replaying it;
//! - here: the server configuration, the handshake of one connection and
//!   its outcome counters.
//!
//! A connection whose ClientHello names a TLS passthrough route is not
//! terminated: its bytes, the hello included, go to an instance of the
//! route (see `tcp::passthrough`). After a handshake the connection goes
//! where a plain one would: HTTP/1.1 to the fast path, `h2` (by ALPN) to
//! hyper.

pub mod cert;
pub mod hello;
pub mod redirect;
pub mod sources;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::proxy::Proxy;
use crate::serve::{Conn, Drain, hyper_conn};
use crate::tcp::Tcp;

use crate::cli::TlsVersion;
pub use redirect::HttpsRedirect;
pub use sources::Sources;
pub use store::{Resolver, Store};

/// How handshakes ended, by the `result` label of `router_tls_handshakes_total`.
#[derive(Default)]
pub struct Handshakes {
    /// Finished with a full handshake: the connection is served.
    pub ok: AtomicU64,
    /// Finished by resuming an earlier session (ticket or session id).
    pub resumed: AtomicU64,
    /// The first bytes were no ClientHello (garbage, plain HTTP, cut short).
    pub bad_hello: AtomicU64,
    /// No certificate covers the name in strict mode, or none is loaded.
    pub no_certificate: AtomicU64,
    /// Failed after the ClientHello (no common version or cipher, the
    /// client refused the certificate, the connection broke).
    pub failed: AtomicU64,
    /// Not finished within `--header-timeout`.
    pub timeout: AtomicU64,
    /// An ACME server's TLS-ALPN-01 validation, answered and closed.
    pub acme_challenge: AtomicU64,
    /// Not terminated: the ClientHello named a TLS passthrough route.
    pub passthrough: AtomicU64,
}

impl Handshakes {
    pub fn rows(&self) -> [(&'static str, u64); 8] {
        [
            ("ok", self.ok.load(Ordering::Relaxed)),
            ("resumed", self.resumed.load(Ordering::Relaxed)),
            ("bad_client_hello", self.bad_hello.load(Ordering::Relaxed)),
            ("no_certificate", self.no_certificate.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
            ("timeout", self.timeout.load(Ordering::Relaxed)),
            ("acme_challenge", self.acme_challenge.load(Ordering::Relaxed)),
            ("passthrough", self.passthrough.load(Ordering::Relaxed)),
        ]
    }
}

/// Everything a TLS listener and the admin pages need.
pub struct Tls {
    pub resolver: Arc<Resolver>,
    pub config: Arc<ServerConfig>,
    pub handshakes: Handshakes,
    /// Answers TLS-ALPN-01 challenges when ACME is on (set once at start).
    pub acme: arc_swap::ArcSwapOption<crate::autocert::Acme>,
}

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Sessions the server remembers for TLS 1.2 resumption by id; TLS 1.3
/// resumption uses stateless tickets.
const SESSION_CACHE: usize = 4096;

impl Tls {
    pub fn new(strict: bool, min: TlsVersion) -> Result<Tls, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(Resolver { store: ArcSwap::from_pointee(Store::default()), strict });
        let versions: &[&rustls::SupportedProtocolVersion] = match min {
            TlsVersion::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Tls {
            resolver,
            config: Arc::new(config),
            handshakes: Handshakes::default(),
            acme: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// A one-off configuration serving a TLS-ALPN-01 challenge certificate
    /// (PEM, certificate then key) with only `acme-tls/1` as ALPN.
    pub(crate) fn challenge_config(&self, pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
        let provider = self.provider();
        let key = provider.key_provider.load_private_key(key).map_err(|e| e.to_string())?;
        // Built without rustls's certificate checks: they refuse the
        // critical acmeIdentifier extension RFC 8737 requires.
        let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.config.crypto_provider().clone()
    }

    /// Runs the server side of the handshake by `deadline`. `None` when it
    /// did not finish; the outcome is counted either way, and the
    /// connection is simply closed (there is no one to answer in HTTP).
    pub async fn handshake<S>(&self, tcp: S, deadline: Instant) -> Option<(TlsStream<S>, bool)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let h = &self.handshakes;
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match tokio::time::timeout_at(deadline, acceptor).await {
            Err(_) => return count(&h.timeout),
            Ok(Err(_)) => return count(&h.bad_hello),
            Ok(Ok(s)) => s,
        };
        // An ACME server validating TLS-ALPN-01 offers only `acme-tls/1`:
        // it gets the challenge certificate from KV, and the connection
        // ends after the handshake (RFC 8737 §3).
        // Without ACME such a hello is served like any other.
        let alpn_challenge = start.client_hello().alpn().is_some_and(|mut a| a.any(|p| p == ACME_TLS_ALPN));
        if alpn_challenge && let Some(acme) = self.acme.load_full() {
            let pem = match start.client_hello().server_name() {
                Some(name) => acme.tls_alpn01(&name.to_ascii_lowercase()).await,
                None => None,
            };
            let config = match pem.map(|p| self.challenge_config(&p)) {
                Some(Ok(c)) => c,
                Some(Err(error)) => {
                    tracing::warn!(%error, "unusable TLS-ALPN-01 challenge certificate in KV");
                    return count(&h.no_certificate);
                }
                None => {
                    tracing::debug!("acme-tls/1 handshake for a name without a pending challenge");
                    return count(&h.no_certificate);
                }
            };
            return match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
                Ok(Ok(_)) => count(&h.acme_challenge),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "acme-tls/1 handshake failed");
                    count(&h.failed)
                }
                Err(_) => count(&h.timeout),
            };
        }
        // Strict refusal is decided here rather than inside the resolver, so
        // it is counted apart from other failures.
        let refused =
            self.resolver.store.load().choose(start.client_hello().server_name(), self.resolver.strict).is_none();
        if refused {
            return count(&h.no_certificate);
        }
        match tokio::time::timeout_at(deadline, start.into_stream(self.config.clone())).await {
            Err(_) => count(&h.timeout),
            Ok(Err(_)) => count(&h.failed),
            Ok(Ok(stream)) => {
                let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                if resumed { &h.resumed } else { &h.ok }.fetch_add(1, Ordering::Relaxed);
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                Some((stream, h2))
            }
        }
    }
}

fn count<T>(c: &AtomicU64) -> Option<T> {
    c.fetch_add(1, Ordering::Relaxed);
    None
}

/// Serves one connection of a TLS listener: the client's address (PROXY in,
/// before anything else), the ClientHello within `--header-timeout`, then
/// either passthrough to an instance or the handshake and HTTP/1.1 on the
/// fast path or `h2` on hyper, with the connection marked as TLS.
pub async fn serve_conn(
    tls: Arc<Tls>,
    proxy: Arc<Proxy>,
    tcp: Arc<Tcp>,
    mut stream: TcpStream,
    conn: Conn,
    drain: Drain,
) {
    let peer = conn.peer;
    let Some(from) = tcp.proxy_in.client(&mut stream, peer).await else { return };
    let mut conn = Conn { peer: from, ..conn };
    let deadline = Instant::now() + proxy.header_timeout;
    let Ok(first) = tokio::time::timeout_at(deadline, hello::read(&mut stream)).await else {
        count::<()>(&tls.handshakes.timeout);
        return;
    };
    if let Some(name) = &first.name
        && proxy.shared.snapshot.load().table.passthrough(name).is_some()
    {
        tls.handshakes.passthrough.fetch_add(1, Ordering::Relaxed);
        // Held like any connection of the listener: the drain waits for it.
        let _drain = drain;
        crate::tcp::passthrough(&tcp, stream, peer, from, conn.local, name, first.bytes).await;
        return;
    }
    let stream = hello::Replay::new(first.bytes, stream);
    let Some((stream, h2)) = tls.handshake(stream, deadline).await else { return };
    conn.tls = true;
    if h2 {
        let p = proxy.clone();
        let limits = proxy.head_limits;
        hyper_conn(stream, conn, move |req, c| p.clone().handle(req, c), drain, proxy.header_timeout, limits).await;
    } else {
        crate::proxy::fast::serve_conn(proxy, stream, conn, drain).await;
    }
}
