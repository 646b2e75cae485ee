//! The certificate set new handshakes choose from: immutable once built,
//! swapped whole (arc-swap) when a store changes, so a handshake never sees
//! half an update and open connections keep the certificate they got.
//!
//! Choice by SNI: an exact name first, then a wildcard certificate
//! (`*.example.com` covers exactly one label, not `example.com` and not
//! `a.b.example.com`), then the default certificate. A client without SNI
//! (it asked for an IP literal) gets the default. In strict mode a name no
//! certificate covers is refused (fabio's `strictmatch`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::cert::{Info, Loaded};
use crate::routes::Problem;

/// One built certificate set.
#[derive(Default)]
pub struct Store {
    certs: Vec<Loaded>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
    /// Bundles skipped while building, naming source and file or key.
    pub problems: Vec<Problem>,
}

/// How a name was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    Wildcard,
    Default,
}

impl Store {
    /// Builds the set from each source's certificates, sources in flag
    /// order: on a name two certificates claim, the first one read wins.
    /// `default` names the default certificate (its bundle name); without
    /// it, or when no certificate has that name, the first loaded is the
    /// default (the latter is a problem).
    pub fn build(sources: impl IntoIterator<Item = Loaded>, default: Option<&str>, problems: Vec<Problem>) -> Store {
        let mut s = Store { problems, ..Store::default() };
        for loaded in sources {
            let idx = s.certs.len();
            for san in &loaded.info.sans {
                match san.strip_prefix("*.") {
                    Some(rest) => {
                        s.wildcard.entry(rest.to_string()).or_insert(idx);
                    }
                    None => {
                        s.exact.entry(san.clone()).or_insert(idx);
                    }
                }
            }
            s.certs.push(loaded);
        }
        s.default = match default {
            Some(name) => match s.certs.iter().position(|c| c.info.name == name) {
                Some(i) => Some(i),
                None => {
                    if !s.certs.is_empty() {
                        s.problems.push(Problem {
                            source: "--tls-default-cert".into(),
                            message: format!(
                                "no certificate named {name:?} is loaded; the first loaded is the default"
                            ),
                        });
                    }
                    (!s.certs.is_empty()).then_some(0)
                }
            },
            None => (!s.certs.is_empty()).then_some(0),
        };
        s
    }

    /// The certificate for a ClientHello's SNI (`None`: the client sent
    /// none), and how it matched; `None` when nothing may be served.
    pub fn choose(&self, sni: Option<&str>, strict: bool) -> Option<(&Loaded, Match)> {
        let Some(sni) = sni else { return self.default.map(|i| (&self.certs[i], Match::Default)) };
        let name = host_name(sni);
        if let Some(i) = self.covering(&name) {
            return Some(i);
        }
        if strict {
            return None;
        }
        self.default.map(|i| (&self.certs[i], Match::Default))
    }

    /// Exact or wildcard match for a lower-case name.
    fn covering(&self, name: &str) -> Option<(&Loaded, Match)> {
        if let Some(&i) = self.exact.get(name) {
            return Some((&self.certs[i], Match::Exact));
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(|&i| (&self.certs[i], Match::Wildcard))
    }

    /// Whether some certificate names `host` (a Host header, port allowed):
    /// what `--https-redirect` asks before sending a client to https.
    pub fn covers(&self, host: &str) -> bool {
        self.covering(&host_name(host)).is_some()
    }

    /// Each certificate with whether it is the default.
    pub fn certs(&self) -> impl Iterator<Item = (&Info, bool)> {
        self.certs.iter().enumerate().map(|(i, c)| (&c.info, self.default == Some(i)))
    }
}

/// A name as certificates list it: lower-case, without a `:port` (a Host
/// header's) or a trailing dot; allocates only when it must lower-case.
pub fn host_name(raw: &str) -> Cow<'_, str> {
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// rustls's view of the current set: every handshake loads the set once.
pub struct Resolver {
    pub store: ArcSwap<Store>,
    pub strict: bool,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("certs", &self.store.load().certs.len()).field("strict", &self.strict).finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().choose(hello.server_name(), self.strict).map(|(c, _)| c.key.clone())
    }
}

#[cfg(test)]
mod tests;
