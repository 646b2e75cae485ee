//! Free TCP ports on loopback.

use std::net::TcpListener;

/// A port that was free a moment ago: the kernel picks it for a listener we
/// close at once. Another process may take it before we use it; callers that
/// start servers on it retry with a new one when binding fails.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel hands out an ephemeral port on 127.0.0.1")
}
