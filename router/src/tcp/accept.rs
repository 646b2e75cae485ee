//! PROXY protocol in (`--proxy-protocol-from`): a connection from a listed
//! peer (a load balancer in front of the router) must open with a PROXY
//! header, and the address it carries is the client's for everything after
//! (X-Forwarded-For, `allow=`/`deny=`, logs, PROXY out). Exactly the header's
//! bytes are read, so the stream that follows is handed on untouched.
//! Generic over the stream so any listener can use it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use router::proxy_protocol::{self, Header};
use router::routes::options::Cidr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Who must send a PROXY header, and how long they have.
#[derive(Debug, Clone)]
pub struct ProxyIn {
    pub trusted: Vec<Cidr>,
    pub timeout: Duration,
}

impl ProxyIn {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }

    /// The client's address: `peer` itself, or for a trusted peer the source
    /// its PROXY header names (the peer's own address for `LOCAL`/`UNKNOWN`
    /// headers, a balancer's health check). None: no valid header in time,
    /// close the connection.
    pub async fn client<S: AsyncRead + Unpin>(&self, stream: &mut S, peer: SocketAddr) -> Option<SocketAddr> {
        if !self.trusts(peer.ip()) {
            return Some(peer);
        }
        match tokio::time::timeout(self.timeout, read_header(stream)).await {
            Ok(Ok(h)) => Some(h.source.unwrap_or(peer)),
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "connection without a valid PROXY header closed");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, timeout = ?self.timeout, "no PROXY header in time; connection closed");
                None
            }
        }
    }
}

/// Reads exactly one header's bytes (the decoder says how many more it needs;
/// a v1 line is read a byte at a time so nothing after its CRLF is taken).
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Header> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match proxy_protocol::decode(&buf) {
            Ok((h, _)) => return Ok(h),
            Err(proxy_protocol::Error::Incomplete(more)) => {
                let start = buf.len();
                buf.resize(start + more, 0);
                stream.read_exact(&mut buf[start..]).await?;
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_only_the_header() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\nGET / HTTP/1.1\r\n").await.unwrap();
        let pin = ProxyIn { trusted: vec!["127.0.0.0/8".parse().unwrap()], timeout: Duration::from_secs(1) };
        let peer: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(pin.client(&mut b, peer).await, Some("192.0.2.1:1000".parse().unwrap()));
        let mut rest = [0u8; 16];
        b.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n");
        // An untrusted peer is not read from.
        let other: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert_eq!(pin.client(&mut b, other).await, Some(other));
        // A trusted peer without a header is closed, and so is a silent one.
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(pin.client(&mut b, peer).await, None);
        let (_a, mut silent) = tokio::io::duplex(64);
        let quick = ProxyIn { timeout: Duration::from_millis(50), ..pin };
        assert_eq!(quick.client(&mut silent, peer).await, None);
    }
}
