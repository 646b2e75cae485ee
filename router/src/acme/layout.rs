//! Where the ACME state lives in Consul KV, under `--acme-kv-prefix`
//! (default `router/acme`):
//!
//! | key                        | value                                           |
//! |----------------------------|-------------------------------------------------|
//! | `account`                  | account key (PKCS#8 PEM) and URL, JSON          |
//! | `certs/<name>.pem`         | chain then key, PEM: a `consul:` store's bundle |
//! | `state/<name>`             | [`Record`](super::plan::Record), JSON           |
//! | `locks/<name>`             | held with a session by the node ordering `name` |
//! | `http-01/<token>`          | the key authorization the CA fetches            |
//! | `tls-alpn-01/<name>`       | the `acme-tls/1` challenge certificate and key  |
//!
//! Names and tokens are checked before they become part of a key, so
//! neither a route host nor a request path can address another key.

use super::domains::dns_name;

/// The path HTTP-01 validation requests arrive on.
pub const HTTP01_PATH: &str = "/.well-known/acme-challenge/";

/// The keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// A prefix of `/`-separated segments; a trailing `/` is dropped. An
    /// empty prefix, an empty segment or a dot-segment is refused: each
    /// would put the state somewhere other than the operator meant.
    pub fn new(prefix: &str) -> Result<Layout, String> {
        let p = prefix.strip_suffix('/').unwrap_or(prefix);
        if p.is_empty() {
            return Err("the ACME KV prefix is empty".into());
        }
        if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(format!("the ACME KV prefix {prefix:?} has an empty or dot segment"));
        }
        Ok(Layout { prefix: p.to_string() })
    }

    pub fn account(&self) -> String {
        format!("{}/account", self.prefix)
    }

    /// The directory the certificates are kept in; a `consul:` store on it
    /// serves them on every node.
    pub fn certs_dir(&self) -> String {
        format!("{}/certs/", self.prefix)
    }

    /// `certs/<name>.pem`: the naming a `consul:` store on
    /// [`certs_dir`](Self::certs_dir) reads as one bundle (chain and key).
    /// The directory of the per-name records, listed by every node's loop.
    pub fn state_dir(&self) -> String {
        format!("{}/state/", self.prefix)
    }

    pub fn cert(&self, name: &str) -> Option<String> {
        self.keyed("certs", name).map(|k| k + ".pem")
    }

    pub fn state(&self, name: &str) -> Option<String> {
        self.keyed("state", name)
    }

    pub fn lock(&self, name: &str) -> Option<String> {
        self.keyed("locks", name)
    }

    pub fn tls_alpn01(&self, name: &str) -> Option<String> {
        self.keyed("tls-alpn-01", name)
    }

    /// The key for an HTTP-01 token (`None`: not a token an ACME server issues).
    pub fn http01(&self, token: &str) -> Option<String> {
        is_token(token).then(|| format!("{}/http-01/{token}", self.prefix))
    }

    /// The name a key under `state/` is about (`None` for other keys and
    /// for names that are not DNS names, which no node writes).
    pub fn name_of_state<'a>(&self, key: &'a str) -> Option<&'a str> {
        let name = key.strip_prefix(&self.prefix)?.strip_prefix("/state/")?;
        dns_name(name).is_ok().then_some(name)
    }

    fn keyed(&self, dir: &str, name: &str) -> Option<String> {
        dns_name(name).is_ok().then(|| format!("{}/{dir}/{name}", self.prefix))
    }
}

/// The token of an HTTP-01 validation request path, if it is one. RFC 8555
/// §8.3: the token is base64url (no padding); a CA's tokens carry at least
/// 128 bits, and anything above 256 characters is refused.
pub fn http01_token(path: &str) -> Option<&str> {
    path.strip_prefix(HTTP01_PATH).filter(|t| is_token(t))
}

fn is_token(t: &str) -> bool {
    (1..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn keys_under_the_prefix() {
        let l = Layout::new("router/acme/").unwrap();
        assert_eq!(l.account(), "router/acme/account");
        assert_eq!(l.certs_dir(), "router/acme/certs/");
        assert_eq!(l.state_dir(), "router/acme/state/");
        assert_eq!(l.cert("www.example.com").unwrap(), "router/acme/certs/www.example.com.pem");
        assert_eq!(l.state("www.example.com").unwrap(), "router/acme/state/www.example.com");
        assert_eq!(l.lock("www.example.com").unwrap(), "router/acme/locks/www.example.com");
        assert_eq!(l.tls_alpn01("www.example.com").unwrap(), "router/acme/tls-alpn-01/www.example.com");
        assert_eq!(
            l.http01("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0").unwrap(),
            "router/acme/http-01/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
        );
        assert_eq!(l.name_of_state("router/acme/state/www.example.com"), Some("www.example.com"));
        assert_eq!(l.name_of_state("router/acme/certs/www.example.com.pem"), None);
        assert_eq!(l.name_of_state("router/acme/state/../account"), None);
        assert_eq!(l.name_of_state("other/state/www.example.com"), None);
    }

    #[test]
    fn names_and_tokens_cannot_escape_their_directory() {
        let l = Layout::new("router/acme").unwrap();
        for bad in ["", ".", "..", "a/b.com", "../account", "*.example.com", "x"] {
            assert_eq!(l.cert(bad), None, "{bad:?}");
            assert_eq!(l.lock(bad), None, "{bad:?}");
        }
        for bad in ["", "..", "a/b", "a.b", "a%2Fb", "a b", &"a".repeat(257)] {
            assert_eq!(l.http01(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in ["", "/", "a//b", "/a", "a/./b", "a/.."] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http01_request_paths() {
        assert_eq!(http01_token("/.well-known/acme-challenge/abc_-09"), Some("abc_-09"));
        for p in [
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/a/b",
            "/.well-known/acme-challenge/a?x",
            "/.well-known/acme-challenge/..",
            "/.well-known/other/abc",
            "/x/.well-known/acme-challenge/abc",
        ] {
            assert_eq!(http01_token(p), None, "{p:?}");
        }
    }

    proptest! {
        #![proptest_config(crate::routes::proptest_config(3000))]

        /// Whatever the request path, a key it yields is exactly one
        /// segment under `http-01/`.
        #[test]
        fn http01_keys_stay_in_their_directory(path in "/\\.well-known/acme-challenge/[ -~]{0,40}") {
            let l = Layout::new("router/acme").unwrap();
            if let Some(key) = http01_token(&path).and_then(|t| l.http01(t)) {
                let rest = key.strip_prefix("router/acme/http-01/").unwrap();
                prop_assert!(!rest.is_empty() && !rest.contains('/') && !rest.contains('.'));
            }
        }
    }
}
