//! One connection on a TCP route: the client's address (PROXY in), a target
//! (every instance tried once before giving up, each within
//! `--connect-timeout`), the PROXY header out (`pxyproto=`), then bytes
//! copied both ways with half-close kept: when one side ends its sending,
//! the other side's write half is shut, and the other direction goes on.
//! The connection ends when both directions have ended, on an error, or
//! after `--tcp-idle-timeout` with no byte either way.
//!
//! A TLS passthrough connection ([`passthrough`]) is the same from the
//! target on: its route is chosen by the ClientHello's server name, and the
//! hello already read goes first (after the PROXY header).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use router::proxy_protocol;
use router::routes::tcp::TcpStats;
use router::routes::{Target, TcpRoute};
use smallvec::SmallVec;
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::Tcp;
use super::buf::Buf;

/// Copy buffer per direction to start with: HAProxy's size. Most relayed
/// connections are short or mostly idle (an API server's watches), so a
/// connection costs 32 KiB of buffers, not 128, and a new connection
/// allocates less. Read into without zeroing it first (`read_buf` fills
/// spare capacity): zeroing the buffers for every connection was once the
/// router's largest own cost per new connection.
pub(super) const BUF_START: usize = 16 * 1024;
/// A direction whose read filled its whole buffer (a bulk transfer) grows
/// its buffer to this, once: fewer, larger reads and writes.
const BUF_BULK: usize = 64 * 1024;

pub async fn serve(tcp: Arc<Tcp>, mut client: TcpStream, peer: SocketAddr, port: u16, _open: mpsc::Sender<()>) {
    let Some(from) = tcp.proxy_in.client(&mut client, peer).await else { return };
    let ends = Ends { client, peer, from, local: SocketAddr::new(tcp.bind, port) };
    relay(&tcp, ends, Which::Port(port), Vec::new()).await;
}

/// A connection on a `--tls-addr` listener (bound to `listener`) whose
/// ClientHello (`hello`, all bytes read so far) names a passthrough route:
/// `from` is the client (PROXY in already read by the listener), `peer` the
/// connection's own peer.
pub async fn passthrough(
    tcp: &Tcp,
    client: TcpStream,
    peer: SocketAddr,
    from: SocketAddr,
    listener: SocketAddr,
    sni: &str,
    hello: Vec<u8>,
) {
    relay(tcp, Ends { client, peer, from, local: listener }, Which::Sni(sni), hello).await;
}

/// The client side of a connection: its stream, its peer, the client's
/// address (the PROXY header's, else the peer), and the router's address
/// should the socket not tell its own (the listener's).
struct Ends {
    client: TcpStream,
    peer: SocketAddr,
    from: SocketAddr,
    local: SocketAddr,
}

/// How the route is found in the table: a TCP route by port, a passthrough
/// route by server name. Shown as the route's source in logs.
#[derive(Clone, Copy)]
enum Which<'a> {
    Port(u16),
    Sni(&'a str),
}

impl std::fmt::Display for Which<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Which::Port(p) => write!(f, ":{p}"),
            Which::Sni(name) => f.write_str(name),
        }
    }
}

/// Connects to the route's target, sends the PROXY header and `first`, then
/// copies both ways.
async fn relay(tcp: &Tcp, ends: Ends, which: Which<'_>, first: Vec<u8>) {
    let Ends { client, peer, from, local } = ends;
    // The snapshot is held only until connected: a long connection must not
    // keep an old table alive.
    let snap = tcp.shared.snapshot.load_full();
    let route = match which {
        Which::Port(port) => snap.table.tcp_route(port),
        Which::Sni(name) => snap.table.passthrough(name),
    };
    let Some(route) = route else {
        tracing::debug!(route = %which, %from, "no TCP route for this connection any more; closed");
        return;
    };
    let stats = route.stats.clone();
    let Some((mut upstream, target)) = connect(tcp, route, &stats).await else {
        TcpStats::add(&stats.unserved, 1);
        tracing::warn!(route = %which, %from, "no target of the TCP route could be reached; client closed");
        return;
    };
    TcpStats::add(&stats.connections, 1);
    // Header and hello in one write: one segment where they fit. The local
    // address is asked for only when a header needs it.
    let mut head = match target.opts.pxyproto {
        Some(version) => proxy_protocol::encode(version, from, client.local_addr().unwrap_or(local)),
        None => Vec::new(),
    };
    head.extend_from_slice(&first);
    // The target's name (for the log line below) is made only when there is
    // a first write that can fail: a plain TCP route's connection allocates
    // no string for it.
    let name = (!head.is_empty()).then(|| target_name(target));
    drop(snap);
    if let Some(target) = name {
        if let Err(error) = upstream.write_all(&head).await {
            tracing::debug!(route = %which, %target, %error, "sending the first bytes to the target failed");
            return;
        }
        TcpStats::add(&stats.bytes_in, first.len() as u64);
    }
    match pump(client, upstream, &stats, tcp.idle_timeout).await {
        Ok(Ended::Done) => tracing::trace!(route = %which, %from, "TCP connection ended"),
        Ok(Ended::Idle) => tracing::debug!(route = %which, %from, "TCP connection idle too long; closed"),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => tracing::warn!(
            route = %which,
            %peer,
            "PROXY header from a peer not in --proxy-protocol-from; connection closed"
        ),
        Err(error) => tracing::debug!(route = %which, %from, %error, "TCP connection ended with an error"),
    }
}

/// A target's `address:port`, for logs.
fn target_name(target: &Target) -> String {
    target.url.authority().map(|a| a.to_string()).unwrap_or_default()
}

/// Connects to a target, trying each at most once; the connection and the
/// target it is to.
async fn connect<'r>(tcp: &Tcp, route: &'r TcpRoute, stats: &TcpStats) -> Option<(TcpStream, &'r Target)> {
    // The targets tried so far, on the stack for up to 8 (a heap allocation
    // per connection otherwise).
    let mut tried = SmallVec::<[usize; 8]>::new();
    while let Some((i, target)) = route.pick(tcp.strategy, &tried) {
        tried.push(i);
        let attempt = match target.addr {
            Some(addr) => tokio::time::timeout(tcp.connect_timeout, TcpStream::connect(addr)).await,
            None => {
                let host = target.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
                let port = target.url.port_u16().unwrap_or_default();
                tokio::time::timeout(tcp.connect_timeout, TcpStream::connect((host, port))).await
            }
        };
        match attempt {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some((s, target));
            }
            Ok(Err(error)) => {
                tracing::warn!(target = %target_name(target), %error, "TCP target refused; trying the next")
            }
            Err(_) => {
                tracing::warn!(target = %target_name(target), "TCP target did not accept in time; trying the next")
            }
        }
        TcpStats::add(&stats.connect_failures, 1);
    }
    None
}

enum Ended {
    Done,
    Idle,
}

/// Both directions run in this one task, so the streams are split by
/// borrowing (`split`), not `into_split`, which puts each stream in an `Arc`:
/// two allocations per connection fewer. Borrowed halves do nothing when
/// dropped; the streams close when this returns. With the tried targets on
/// the stack and no target name made (see [`connect`], [`relay`]), `malloc`
/// calls per relayed connection went from 6.3 to 2.3 (counted with a `perf
/// probe` on glibc's `malloc` under `wrk -H 'Connection: close'`).
async fn pump(mut client: TcpStream, mut upstream: TcpStream, stats: &TcpStats, idle: Duration) -> io::Result<Ended> {
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let clock = Clock::new();
    let ended = AtomicBool::new(false);
    let both = async {
        tokio::try_join!(
            copy(cr, uw, &stats.bytes_in, &clock, &ended, true),
            copy(ur, cw, &stats.bytes_out, &clock, &ended, false)
        )
    };
    tokio::select! {
        r = both => r.map(|_| Ended::Done),
        _ = clock.idle_for(idle) => Ok(Ended::Idle),
    }
}

/// Copies until EOF, then shuts the write half (half-close), unless the
/// other direction `ended` already: then both sockets are closed right
/// after, and the close sends the same FIN without a `shutdown` call (one
/// system call less per connection; both receive queues are empty, so the
/// close is no reset). From a client
/// (`refuse_proxy_header`), bytes that open with a PROXY signature are never
/// forwarded: a peer not in `--proxy-protocol-from` cannot pass its own idea
/// of the client's address to a backend that reads one (the few bytes that
/// could still become a signature are held back until they cannot).
///
/// A server that answers and closes (HTTP/1.0, `Connection: close`, most
/// short request/response protocols) sends its last bytes and its FIN
/// together. When the runtime already knows the peer has closed, the end is
/// read with the bytes ([`read_known_end`]) and the bytes go out with
/// `MSG_MORE` ([`send_before_fin`]), so the FIN that follows leaves in the
/// same segment: the client gets bytes and end in one packet and answers
/// both with one ACK, two segments fewer per connection, as HAProxy does.
async fn copy(
    mut r: ReadHalf<'_>,
    mut w: WriteHalf<'_>,
    count: &AtomicU64,
    clock: &Clock,
    ended: &AtomicBool,
    mut refuse_proxy_header: bool,
) -> io::Result<()> {
    let mut buf = Buf::take();
    loop {
        // Appends after any bytes held back below.
        let n = r.read_buf(&mut *buf).await?;
        clock.touch();
        let filled = n > 0 && buf.len() == buf.capacity();
        let eof = n == 0 || read_known_end(&r, &mut buf)?;
        if n > 0 && refuse_proxy_header {
            match proxy_protocol::starts_with_signature(&buf) {
                // Held back until more bytes decide; at the end they cannot
                // become a signature any more and go on.
                None if !eof => continue,
                None => refuse_proxy_header = false,
                Some(true) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, "PROXY header")),
                Some(false) => refuse_proxy_header = false,
            }
        }
        if !buf.is_empty() {
            let sent = if eof { send_before_fin(&w, &buf)? } else { 0 };
            w.write_all(&buf[sent..]).await?;
            TcpStats::add(count, buf.len() as u64);
            // Keeps the capacity for the next read.
            buf.clear();
            if filled && buf.capacity() < BUF_BULK {
                buf.reserve(BUF_BULK);
            }
        }
        if eof {
            if !ended.swap(true, Ordering::Relaxed) {
                w.shutdown().await?;
            }
            return Ok(());
        }
    }
}

/// After a read that returned bytes: whether the peer's end came with them.
/// Asks the socket only when the runtime has seen the peer close
/// (`EPOLLRDHUP`) or the socket may hold more (tokio clears its readiness
/// after a short read), so it costs no system call when neither is so; the
/// bytes read meanwhile are appended to `buf` (up to its capacity).
fn read_known_end(r: &ReadHalf<'_>, buf: &mut BytesMut) -> io::Result<bool> {
    while buf.len() < buf.capacity() {
        match r.try_read_buf(buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Sends what the socket takes of `bytes` at once, with `MSG_MORE`: the
/// kernel holds them until the FIN (a `shutdown` or the close, right after)
/// and sends both in one segment. The count sent; 0 when the runtime does
/// not know the socket to be writable (the caller writes the rest as usual,
/// and a write without `MSG_MORE` sends anything held).
fn send_before_fin(w: &WriteHalf<'_>, bytes: &[u8]) -> io::Result<usize> {
    let stream = w.as_ref();
    let send = || SockRef::from(stream).send_with_flags(bytes, libc::MSG_MORE | libc::MSG_NOSIGNAL);
    match stream.try_io(Interest::WRITABLE, send) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        r => r,
    }
}

/// When the connection last moved a byte, for the idle timeout.
struct Clock {
    start: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let due = Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle;
            let now = self.start.elapsed();
            if now >= due {
                return;
            }
            tokio::time::sleep(due - now).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pair;
    use std::os::fd::AsRawFd;

    /// Segments the socket has received (`tcpi_segs_in`), SYN-ACK included.
    fn segments_in(s: &TcpStream) -> u32 {
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` is a writable tcp_info of `len` bytes, the fd is open.
        let rc = unsafe {
            libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
        };
        assert_eq!(rc, 0, "getsockopt(TCP_INFO): {}", io::Error::last_os_error());
        info.tcpi_segs_in
    }

    /// client <-> (router) <-> server, the relay running until both ends close.
    async fn relayed() -> (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<Ended>>) {
        let (client, router_client) = pair().await;
        let (router_upstream, server) = pair().await;
        let relay = tokio::spawn(async move {
            let stats = TcpStats::default();
            pump(router_client, router_upstream, &stats, Duration::from_secs(30)).await
        });
        (client, server, relay)
    }

    #[tokio::test]
    async fn a_server_answering_and_closing_reaches_the_client_in_one_segment() {
        let (mut client, server, relay) = relayed().await;
        // The server's answer and FIN in one segment, as from a server that
        // writes its last bytes and closes at once.
        let sent = SockRef::from(&server).send_with_flags(b"answer", libc::MSG_MORE | libc::MSG_NOSIGNAL).unwrap();
        assert_eq!(sent, 6);
        SockRef::from(&server).shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        // SYN-ACK, then the answer with the FIN: two, not three.
        assert_eq!(segments_in(&client), 2, "the answer and the FIN came in separate segments");
        // The other direction still goes (half-close), then both end.
        client.write_all(b"late").await.unwrap();
        client.shutdown().await.unwrap();
        let mut server = server;
        let mut late = Vec::new();
        server.read_to_end(&mut late).await.unwrap();
        assert_eq!(late, b"late");
        assert!(matches!(relay.await.unwrap(), Ok(Ended::Done)));
    }

    #[tokio::test]
    async fn bytes_that_could_still_open_a_proxy_header_go_on_at_the_end() {
        let (mut client, mut server, relay) = relayed().await;
        client.write_all(b"PROX").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"PROX");
        server.shutdown().await.unwrap();
        assert!(matches!(relay.await.unwrap(), Ok(Ended::Done)));
    }

    #[tokio::test]
    async fn a_proxy_header_from_the_client_is_refused() {
        let (mut client, mut server, relay) = relayed().await;
        client.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET /").await.unwrap();
        let err = relay.await.unwrap().err().expect("a PROXY header must end the relay");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "forwarded: {got:?}");
    }

    #[tokio::test]
    async fn a_large_answer_with_its_end_arrives_whole() {
        let (mut client, mut server, relay) = relayed().await;
        let answer: Vec<u8> = (0..3 * BUF_BULK).map(|i| (i % 251) as u8).collect();
        let expect = answer.clone();
        let writer = tokio::spawn(async move {
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            server
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == expect, "{} bytes of {}", got.len(), expect.len());
        client.shutdown().await.unwrap();
        drop(writer.await.unwrap());
        assert!(matches!(relay.await.unwrap(), Ok(Ended::Done)));
    }
}
