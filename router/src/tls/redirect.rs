//! `--https-redirect`: a plain-HTTP request for a host some certificate
//! covers is sent to the same URL over https with a 308 (which, unlike 301,
//! keeps the method and body). ACME HTTP-01 challenges stay on plain HTTP:
//! a certificate authority checks them there, also while a certificate is
//! being renewed.

use std::sync::Arc;

use super::Resolver;

use router::acme::layout::HTTP01_PATH as ACME_CHALLENGE;

pub struct HttpsRedirect {
    pub resolver: Arc<Resolver>,
    /// Port of the first `--tls-addr`.
    pub port: u16,
}

impl HttpsRedirect {
    /// Whether a plain request for `host` (the Host header) and `path` is
    /// redirected: a certificate names the host, and it is no ACME challenge.
    pub fn applies(&self, host: &str, path: &str) -> bool {
        !path.starts_with(ACME_CHALLENGE) && self.resolver.store.load().covers(host)
    }

    pub fn location(&self, host: &str, path_and_query: &str) -> String {
        location(host, path_and_query, self.port)
    }
}

/// `https://HOST[:PORT]PATH?QUERY`: the Host header's name without its
/// port, and the TLS listener's port unless it is 443.
pub fn location(host: &str, path_and_query: &str, port: u16) -> String {
    let name = super::store::host_name(host);
    match port {
        443 => format!("https://{name}{path_and_query}"),
        p => format!("https://{name}:{p}{path_and_query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_drops_the_plain_port_and_adds_the_tls_one() {
        assert_eq!(location("app.example.com:8080", "/a?b=1", 443), "https://app.example.com/a?b=1");
        assert_eq!(location("App.Example.com", "/", 8443), "https://app.example.com:8443/");
        assert_eq!(location("app.example.com.", "/x", 443), "https://app.example.com/x");
    }
}
