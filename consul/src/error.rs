//! Errors that say which Consul endpoint failed and how.

/// A failed call to Consul. Each variant names the endpoint (method and path)
/// so a log line alone tells which part of the API misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address given for Consul is not a usable base URL.
    #[error("invalid Consul address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },

    /// A name from the caller (a node, service, check or KV key, often read
    /// from Consul itself) that cannot be placed in a request URL.
    #[error("name {name:?} cannot be used in a Consul URL: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// No HTTP answer: connection refused, DNS failure, timeout.
    #[error("{endpoint}: Consul unreachable: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// Consul answered with a non-success status; `body` is its message
    /// (for example "No cluster leader" or "ACL not found").
    #[error("{endpoint}: {status} {body}")]
    Status { endpoint: String, status: u16, body: String },

    /// Consul answered 2xx but the body was not what the API documents.
    #[error("{endpoint}: unexpected response body: {source}")]
    Decode {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },

    /// A KV value that should have been base64 was not.
    #[error("{endpoint}: KV value is not valid base64: {reason}")]
    Base64 { endpoint: String, reason: String },
}

impl Error {
    /// The HTTP status Consul answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when Consul could not be reached at all (as opposed to answering
    /// with an error), which callers treat as "retry with backoff".
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Transport { .. })
    }

    /// True when the request got no answer within its time limit (the
    /// connection was made, or is still being made), as opposed to refused
    /// or broken.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Transport { source, .. } if source.is_timeout())
    }
}
