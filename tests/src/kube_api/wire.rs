//! The JSON shapes of the API server's replies that k8s-openapi has no
//! type for in the form the server sends them: watch event lines, bookmarks
//! (with `kind` and `apiVersion`, which kube's client requires) and `Status`
//! failures.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

pub(super) fn event_line(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub(super) fn bookmark_event(rv: u64) -> Value {
    json!({
        "type": "BOOKMARK",
        "object": { "kind": "Pod", "apiVersion": "v1", "metadata": { "resourceVersion": rv.to_string() } }
    })
}

/// A `Status` failure object, as the API server sends with every error.
pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

/// The answer to a resourceVersion older than the history: 410 Expired.
pub(super) fn expired(rv: u64, current: u64) -> Value {
    status(StatusCode::GONE, "Expired", &format!("too old resource version: {rv} ({current})"))
}
