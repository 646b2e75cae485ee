//! Certificates as a store hands them over: the naming rule that pairs files
//! (or KV keys) into bundles, and the checks that turn a bundle into a
//! certificate rustls can serve. Pure (no I/O, the clock passed in), so
//! every way a certificate can be bad is unit-tested.
//!
//! Why the checks are here and not left to the handshake: a certificate
//! that does not parse, whose key is not its own, or that has expired would
//! fail every handshake for its names. Skipping it with a problem that names
//! its source and key keeps the others serving (fabio #941: one bad
//! certificate stopped all loading) and tells the operator which one.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One certificate's files, as a store found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// `NAME` of `NAME.pem` or `NAME-cert.pem` + `NAME-key.pem`.
    pub name: String,
    /// The file or key holding the chain (for problems).
    pub origin: String,
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A bundle that could not be used, or a file that belongs to none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file or KV key.
    pub origin: String,
    pub message: String,
}

/// Pairs a source's entries (file names or KV keys below the prefix, with
/// their contents) by fabio's naming: `NAME-cert.pem` with `NAME-key.pem`,
/// else `NAME.pem` holding chain and key. Other names are not certificates
/// and are ignored (editor backups, a README); a key file without its
/// certificate is a problem. `origin` turns an entry name into what
/// problems show (the path, or the full key).
pub fn bundles(entries: &BTreeMap<String, Vec<u8>>, origin: impl Fn(&str) -> String) -> (Vec<Bundle>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (entry, data) in entries {
        let Some(stem) = entry.strip_suffix(".pem") else { continue };
        if stem.is_empty() {
            continue;
        }
        if let Some(name) = stem.strip_suffix("-cert") {
            match entries.get(&format!("{name}-key.pem")) {
                Some(key) => out.push(Bundle {
                    name: name.to_string(),
                    origin: origin(entry),
                    chain_pem: data.clone(),
                    key_pem: key.clone(),
                }),
                None => {
                    skipped.push(Skipped { origin: origin(entry), message: format!("no {name}-key.pem next to it") })
                }
            }
        } else if let Some(name) = stem.strip_suffix("-key") {
            if !entries.contains_key(&format!("{name}-cert.pem")) {
                skipped.push(Skipped { origin: origin(entry), message: format!("no {name}-cert.pem next to it") });
            }
        } else {
            out.push(Bundle {
                name: stem.to_string(),
                origin: origin(entry),
                chain_pem: data.clone(),
                key_pem: data.clone(),
            });
        }
    }
    (out, skipped)
}

/// What `/api/certs` shows about a certificate, read from its leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    pub name: String,
    /// DNS names from subjectAltName, lowercased; what SNI is matched on.
    pub sans: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// Serial number in upper-case hex (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// `dir:PATH` or `consul:PREFIX`.
    pub source: String,
    /// The file or KV key.
    pub origin: String,
}

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub info: Info,
    pub key: Arc<CertifiedKey>,
}

/// Checks a bundle: a chain that parses (leaf first), a private key that
/// the provider can use and that belongs to the leaf, at least one DNS name
/// in subjectAltName (names come from SANs, never from the file name or the
/// CN), and not expired at `now` (Unix seconds).
pub fn load(bundle: &Bundle, source: &str, provider: &CryptoProvider, now: i64) -> Result<Loaded, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bundle.chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate PEM does not parse: {e}"))?;
    let Some(leaf) = chain.first() else { return Err("no CERTIFICATE block".into()) };
    let key = PrivateKeyDer::from_pem_slice(&bundle.key_pem).map_err(|e| format!("no usable private key: {e}"))?;
    let (_, x509) = X509Certificate::from_der(leaf).map_err(|e| format!("certificate does not parse: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = x509.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if !d.is_empty() && !sans.contains(&d) {
                    sans.push(d);
                }
            }
        }
    }
    if sans.is_empty() {
        return Err("no DNS name in subjectAltName (names are taken from SANs only)".into());
    }
    let not_before = x509.validity().not_before.timestamp();
    let not_after = x509.validity().not_after.timestamp();
    if not_after < now {
        return Err(format!("expired at {} (Unix {not_after})", x509.validity().not_after));
    }
    let info = Info {
        name: bundle.name.clone(),
        sans,
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        serial: x509.raw_serial_as_string().replace(':', "").to_ascii_uppercase(),
        not_before,
        not_after,
        source: source.to_string(),
        origin: bundle.origin.clone(),
    };
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "the private key does not belong to the certificate".to_string(),
        e => format!("private key not usable: {e}"),
    })?;
    Ok(Loaded { info, key: Arc::new(key) })
}

#[cfg(test)]
pub(crate) mod tests;
