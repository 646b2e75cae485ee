//! ACME at run time: orders certificates for the names [`router::acme`]
//! picks, with the whole state in Consul KV so every edge node shares it.
//!
//! One loop per node, once a second: read the routing table and the
//! `state/` records, and for each name the plan says to order now, try the
//! name's lock with this node's session. The node that gets it orders
//! (account, order, challenge material in KV, validation, finalisation),
//! stores chain and key under `certs/<name>.pem` — a `consul:` store on
//! that directory serves them on every node — and records the outcome with
//! check-and-set. A node that dies mid-order stops renewing its session;
//! Consul invalidates it within about twice its TTL, the lock comes free
//! and the next node to look takes the name over.
//!
//! Challenges are answered by every node from KV ([`Acme::http01`],
//! [`Acme::tls_alpn01`]), so the CA may reach any of them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::cli::AcmeChallenge;
use arc_swap::ArcSwap;
use consul::{QueryOptions, SessionBehavior, SessionRequest};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use router::acme::domains::{self, DomainPatterns};
use router::acme::layout::Layout;
use router::acme::plan::{self, Action, Policy, Record};

mod http;

use crate::discovery::Shared;
use crate::tls::Tls;

/// Session TTL: the longest a dead node keeps a name locked is about twice this.
const SESSION_TTL: Duration = Duration::from_secs(10);
/// How often the loop looks at the table and the records.
const TICK: Duration = Duration::from_secs(1);

/// The configuration from the `--acme-*` flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub directory: String,
    pub email: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub layout: Layout,
    pub patterns: DomainPatterns,
    pub policy: Policy,
    pub challenge: AcmeChallenge,
    /// Names this node's session in Consul.
    pub node: String,
}

/// `router_acme_orders_total{result}`.
#[derive(Default)]
pub struct Orders {
    pub issued: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Acme {
    pub config: Config,
    consul: consul::Client,
    shared: Arc<Shared>,
    tls: Arc<Tls>,
    pub orders: Orders,
    /// The records last read, for `/api/certs`.
    pub records: ArcSwap<BTreeMap<String, Record>>,
    /// Names this node is ordering right now.
    busy: Mutex<HashSet<String>>,
    session: Mutex<Option<String>>,
}

/// Why an order failed: the CA's own words where it gave any.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("{0}")]
    Consul(#[from] consul::Error),
    #[error("{0}")]
    Other(String),
}

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Acme {
    pub fn new(config: Config, consul: consul::Client, shared: Arc<Shared>, tls: Arc<Tls>) -> Arc<Acme> {
        Arc::new(Acme {
            config,
            consul,
            shared,
            tls,
            orders: Orders::default(),
            records: ArcSwap::from_pointee(BTreeMap::new()),
            busy: Mutex::new(HashSet::new()),
            session: Mutex::new(None),
        })
    }

    /// The `--cert-source` store this module's certificates are served from.
    pub fn source(&self) -> crate::cli::CertSource {
        crate::cli::CertSource::Consul(self.config.layout.certs_dir())
    }

    /// Starts the ordering loop and the session keeper under the process's
    /// supervisor: either one that ends is logged with its reason and
    /// started again after a pause that grows to 30 s.
    pub fn spawn(self: &Arc<Self>, tasks: &mut kit::Supervisor) {
        let restart = || kit::OnEnd::Restart(kit::Backoff::new(Duration::from_millis(500), Duration::from_secs(30)));
        let this = self.clone();
        tasks.spawn("acme", restart(), move |_stop| {
            let this = this.clone();
            async move {
                this.run().await;
                Ok::<(), std::convert::Infallible>(())
            }
        });
        let this = self.clone();
        tasks.spawn("acme session", restart(), move |_stop| {
            let this = this.clone();
            async move {
                this.keep_session().await;
                Ok::<(), std::convert::Infallible>(())
            }
        });
    }

    /// Renews this node's session every third of its TTL; when Consul says
    /// it is gone (or it never was), forgets it so the next order creates one.
    async fn keep_session(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SESSION_TTL / 3).await;
            let id = self.session.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(id) = id else { continue };
            match self.consul.session_renew(&id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(session = %id, "ACME session expired; its locks are gone");
                    *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(error) => tracing::warn!(%error, "renewing the ACME session"),
            }
        }
    }

    async fn session(&self) -> Result<String, consul::Error> {
        if let Some(id) = self.session.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(id);
        }
        let id = self
            .consul
            .session_create(&SessionRequest {
                name: format!("router acme {}", self.config.node),
                ttl: SESSION_TTL,
                lock_delay: Duration::ZERO,
                behavior: SessionBehavior::Release,
            })
            .await?;
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        Ok(id)
    }

    /// Names under `--acme-domains` in the table, minus those another
    /// `--cert-source` store covers.
    fn wanted(&self) -> BTreeSet<String> {
        let snapshot = self.shared.snapshot.load();
        let store = self.tls.resolver.store.load();
        let ours = self.source().to_string();
        let mut exact = HashSet::new();
        let mut wild = HashSet::new();
        for (info, _) in store.certs().filter(|(i, _)| i.source != ours) {
            for san in &info.sans {
                match san.strip_prefix("*.") {
                    Some(parent) => wild.insert(parent.to_string()),
                    None => exact.insert(san.clone()),
                };
            }
        }
        let covered = |h: &str| exact.contains(h) || h.split_once('.').is_some_and(|(_, p)| wild.contains(p));
        domains::wanted(snapshot.table.routes().iter().map(|r| r.host.as_str()), &self.config.patterns, covered)
    }

    async fn run(self: Arc<Self>) {
        let prefix = self.config.layout.state_dir();
        loop {
            tokio::time::sleep(TICK).await;
            let wanted = self.wanted();
            let records = match self.consul.kv_list(&prefix, &QueryOptions::default()).await {
                Ok(r) => r.value,
                Err(error) => {
                    tracing::warn!(%error, "reading ACME state");
                    continue;
                }
            };
            let mut parsed = BTreeMap::new();
            for pair in records {
                let Some(name) = self.config.layout.name_of_state(&pair.key) else { continue };
                match serde_json::from_slice::<Record>(&pair.value) {
                    Ok(r) => {
                        parsed.insert(name.to_string(), r);
                    }
                    Err(error) => tracing::warn!(key = %pair.key, %error, "unreadable ACME record; ordering anew"),
                }
            }
            let now = now();
            for name in &wanted {
                if plan::next(parsed.get(name), now, &self.config.policy) != Action::Order {
                    continue;
                }
                if !self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone()) {
                    continue;
                }
                let this = self.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    this.try_order(&name).await;
                    this.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
                });
            }
            parsed.retain(|n, _| wanted.contains(n));
            self.records.store(Arc::new(parsed));
        }
    }

    /// Takes the name's lock and orders; another node holding it is not an error.
    async fn try_order(&self, name: &str) {
        let (Some(lock), Some(state_key)) = (self.config.layout.lock(name), self.config.layout.state(name)) else {
            return;
        };
        let session = match self.session().await {
            Ok(s) => s,
            Err(error) => return tracing::warn!(%error, "creating the ACME session"),
        };
        match self.consul.kv_acquire(&lock, &session, self.config.node.clone()).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => return tracing::warn!(%name, %error, "taking the ACME lock"),
        }
        // Under the lock, read again: another node may have just finished.
        let result = match self.consul.kv_get(&state_key, &QueryOptions::default()).await {
            Ok(r) => {
                let (prev, index) = match r.value {
                    Some(p) => (serde_json::from_slice::<Record>(&p.value).ok(), p.modify_index),
                    None => (None, 0),
                };
                if plan::next(prev.as_ref(), now(), &self.config.policy) == Action::Order {
                    self.order_locked(name, &session, &state_key, prev, index).await
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            tracing::warn!(%name, %error, "ACME state not written");
        }
        if let Err(error) = self.consul.kv_release(&lock, &session, "").await {
            tracing::warn!(%name, %error, "releasing the ACME lock");
        }
    }

    /// Orders `name` holding its lock; records the outcome with
    /// check-and-set (a CAS that fails means the lock was lost: the
    /// session expired and another node took over).
    async fn order_locked(
        &self,
        name: &str,
        session: &str,
        state_key: &str,
        prev: Option<Record>,
        index: u64,
    ) -> Result<(), consul::Error> {
        let started = plan::started(prev.as_ref(), now());
        if !self.consul.kv_cas(state_key, index, json(&started)).await? {
            tracing::info!(%name, "ACME state changed under us; leaving the name to the other node");
            return Ok(());
        }
        tracing::info!(%name, "ordering a certificate");
        let mut retry_after = None;
        let outcome = self.order(name, session, &mut retry_after).await;
        let retry_after = retry_after.and_then(|s| *s.lock().unwrap_or_else(|p| p.into_inner()));
        let record = match outcome {
            Ok(validity) => {
                self.orders.issued.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%name, not_after = validity.not_after, "certificate issued");
                plan::issued(validity)
            }
            Err(error) => {
                self.orders.failed.fetch_add(1, Ordering::Relaxed);
                let r = plan::failed(Some(&started), error.to_string(), retry_after, now(), &self.config.policy);
                tracing::warn!(%name, %error, ?retry_after, "ACME order failed");
                r
            }
        };
        let index = self.consul.kv_get(state_key, &QueryOptions::default()).await?.value.map_or(0, |p| p.modify_index);
        if !self.consul.kv_cas(state_key, index, json(&record)).await? {
            tracing::warn!(%name, "ACME state changed under us; outcome not recorded");
        }
        Ok(())
    }

    /// The shared account, through a client whose `Retry-After` slot the
    /// caller reads when the order fails.
    async fn account(&self, retry_after: &mut Option<Arc<Mutex<Option<Duration>>>>) -> Result<Account, OrderError> {
        let key = self.config.layout.account();
        let mut builder = || -> Result<instant_acme::AccountBuilder, OrderError> {
            let client = http::Http::new(self.config.ca_root.as_deref()).map_err(OrderError::Other)?;
            *retry_after = Some(client.retry_after.clone());
            Ok(Account::builder_with_http(Box::new(client)))
        };
        let stored = self.consul.kv_get(&key, &QueryOptions::default()).await?.value;
        if let Some(p) = &stored {
            let same_ca = serde_json::from_slice::<serde_json::Value>(&p.value)
                .ok()
                .is_some_and(|v| v.get("directory").and_then(|d| d.as_str()) == Some(self.config.directory.as_str()));
            if same_ca && let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&p.value) {
                return Ok(builder()?.from_credentials(creds).await?);
            }
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, creds) = builder()?
            .create(
                &NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false },
                self.config.directory.clone(),
                None,
            )
            .await?;
        let value = serde_json::to_vec(&creds).map_err(|e| OrderError::Other(e.to_string()))?;
        // Another node may have stored one meanwhile; either account works,
        // the first stored is kept for the next orders.
        self.consul.kv_cas(&key, stored.map_or(0, |p| p.modify_index), value).await?;
        Ok(account)
    }

    async fn order(
        &self,
        name: &str,
        session: &str,
        retry_after: &mut Option<Arc<Mutex<Option<Duration>>>>,
    ) -> Result<plan::Validity, OrderError> {
        let account = self.account(retry_after).await?;
        let ids = [Identifier::Dns(name.to_string())];
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        let mut cleanup = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let kind = match self.config.challenge {
                AcmeChallenge::Http01 => ChallengeType::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut ch = authz
                .challenge(kind.clone())
                .ok_or_else(|| OrderError::Other(format!("the CA offers no {kind:?} challenge for {name}")))?;
            let key_auth = ch.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    let key =
                        self.config.layout.http01(&ch.token).ok_or_else(|| {
                            OrderError::Other(format!("the CA's token {:?} is not base64url", ch.token))
                        })?;
                    self.consul.kv_put(&key, key_auth.as_str()).await?;
                    cleanup.push(key);
                }
                _ => {
                    let pem = alpn_certificate(name, key_auth.digest().as_ref())?;
                    let key = self.config.layout.tls_alpn01(name).ok_or_else(|| OrderError::Other(name.into()))?;
                    self.consul.kv_put(&key, pem).await?;
                    cleanup.push(key);
                }
            }
            ch.set_ready().await?;
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await;
        for key in &cleanup {
            let _ = self.consul.kv_delete(key).await;
        }
        let status = status?;
        if status != OrderStatus::Ready {
            return Err(OrderError::Other(order_error(&mut order, status).await));
        }
        let key_pem = order.finalize().await?;
        let chain = order.poll_certificate(&retry).await?;
        let validity = validity(&chain)?;
        let cert_key = self.config.layout.cert(name).ok_or_else(|| OrderError::Other(name.into()))?;
        // Stored only while this node's session lives: acquiring the key with
        // it fails once the session expired (another node may then be
        // ordering the same name), so two nodes never overwrite each other's
        // certificate. Released at once, with the same value.
        let pem = format!("{chain}{key_pem}");
        if !self.consul.kv_acquire(&cert_key, session, pem.as_str()).await? {
            return Err(OrderError::Other(format!("lost the ACME lock for {name} before storing its certificate")));
        }
        self.consul.kv_release(&cert_key, session, pem).await?;
        Ok(validity)
    }

    /// The HTTP-01 token of a plain request this router answers itself: a
    /// challenge path for a host under `--acme-domains`. Other hosts' challenge
    /// paths are proxied as usual (a backend may run its own ACME client).
    pub fn http01_token<'a>(&self, host: &str, path: &'a str) -> Option<&'a str> {
        let token = router::acme::layout::http01_token(path)?;
        self.config.patterns.matches(&crate::tls::store::host_name(host)).then_some(token)
    }

    /// The key authorization for an HTTP-01 token, from KV (`None`: unknown token).
    pub async fn http01(&self, token: &str) -> Result<Option<Vec<u8>>, consul::Error> {
        let Some(key) = self.config.layout.http01(token) else { return Ok(None) };
        Ok(self.consul.kv_get(&key, &QueryOptions::default()).await?.value.map(|p| p.value))
    }

    /// The `acme-tls/1` challenge certificate for a name (lower-case), from
    /// KV; names outside `--acme-domains` are not looked up.
    pub async fn tls_alpn01(&self, name: &str) -> Option<Vec<u8>> {
        if !self.config.patterns.matches(name) {
            return None;
        }
        let key = self.config.layout.tls_alpn01(name)?;
        match self.consul.kv_get(&key, &QueryOptions::default()).await {
            Ok(r) => r.value.map(|p| p.value),
            Err(error) => {
                tracing::warn!(%name, %error, "reading the TLS-ALPN-01 challenge");
                None
            }
        }
    }
}

fn json(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

/// What the CA said about a failed order: the order's error, else each
/// authorization's challenge errors.
async fn order_error(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &order.state().error {
        parts.push(e.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for ch in &authz.challenges {
            if let Some(e) = &ch.error {
                parts.push(e.to_string());
            }
        }
    }
    if parts.is_empty() { format!("order {status:?}") } else { parts.join("; ") }
}

/// The self-signed certificate RFC 8737 asks for: the name as its only SAN
/// and the key authorization's SHA-256 in the critical acmeIdentifier
/// extension. PEM, certificate then key.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<String, OrderError> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| OrderError::Other(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Other(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| OrderError::Other(e.to_string()))?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// The leaf's validity window.
fn validity(chain_pem: &str) -> Result<plan::Validity, OrderError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bad = |e: String| OrderError::Other(format!("the CA's certificate does not parse: {e}"));
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| bad("no CERTIFICATE block".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let (_, x509) = X509Certificate::from_der(&leaf).map_err(|e| bad(e.to_string()))?;
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok(plan::Validity {
        not_before: secs(x509.validity().not_before.timestamp()),
        not_after: secs(x509.validity().not_after.timestamp()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS-ALPN-01 certificate is one the TLS listener can serve, with
    /// the name as its SAN and the digest in a critical acmeIdentifier.
    #[test]
    fn alpn_certificate_is_servable_and_carries_the_digest() {
        let digest = [7u8; 32];
        let pem = alpn_certificate("www.example.com", &digest).unwrap();
        let tls = Tls::new(false, crate::cli::TlsVersion::V12).unwrap();
        tls.challenge_config(pem.as_bytes()).unwrap();
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        use x509_parser::prelude::{FromDer, X509Certificate};
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, x509) = X509Certificate::from_der(&der).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&digest));
        let v = validity(&pem).unwrap();
        assert!(v.not_after > v.not_before);
    }
}
