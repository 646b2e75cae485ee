//! Idle keep-alive connections to upstreams, by address.
//!
//! A request takes a connection out and owns it until its response has been
//! read whole, then puts it back; nothing else drives a connection, so there
//! is no task per connection and no channel between the request and it. The
//! lock is held only to push or pop. A connection that the upstream closed
//! while it sat idle shows as readable in tokio's readiness (EOF), which is
//! checked without a system call before it is handed out; the race left (a
//! close arriving as the request is sent) is covered by the retry of
//! idempotent requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_per_host: usize,
    timeout: Duration,
}

impl Pool {
    pub fn new(max_per_host: usize, timeout: Duration) -> Pool {
        Pool { idle: Mutex::new(HashMap::new()), max_per_host, timeout }
    }

    /// An idle connection to `addr` that still looks open, newest first.
    pub fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let now = Instant::now();
        loop {
            let idle = {
                let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                map.get_mut(&addr)?.pop()?
            };
            // Dropped outside the lock: closing a socket is a system call.
            if now.duration_since(idle.since) < self.timeout && still_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream` for the next request to `addr`, unless enough are kept.
    pub fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(addr).or_default();
        if list.len() < self.max_per_host {
            list.push(Idle { stream, since: Instant::now() });
            return;
        }
        drop(map);
        drop(stream);
    }

    /// Closes connections idle longer than the timeout and forgets addresses
    /// with none left (targets that left the table).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            for list in map.values_mut() {
                let (old, fresh): (Vec<Idle>, Vec<Idle>) =
                    list.drain(..).partition(|i| now.duration_since(i.since) >= self.timeout);
                *list = fresh;
                expired.extend(old);
            }
            map.retain(|_, list| !list.is_empty());
        }
        drop(expired);
    }

    /// Idle connections held, for tests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

/// An idle HTTP/1.1 connection has nothing to read: readable means the
/// upstream closed it (or sent garbage). tokio's cached readiness (kept from
/// epoll, and cleared by the short read that ended the last response) answers
/// without a system call; only when it says readable does a read decide.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    if stream.poll_read_ready(&mut cx).is_pending() {
        return true;
    }
    matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = l.local_addr().expect("addr");
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.expect("connect"), s.expect("accept").0)
    }

    #[tokio::test]
    async fn reuses_open_connections_and_drops_closed_ones() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let pool = Pool::new(8, Duration::from_secs(60));
        assert!(pool.take(addr).is_none());

        let (open, _server_a) = pair(&l).await;
        let (closed, server_b) = pair(&l).await;
        pool.put(addr, open);
        pool.put(addr, closed);
        drop(server_b);
        // Let the reactor see the close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = pool.take(addr).expect("the open one");
        assert_eq!(pool.len(), 0, "the closed one was discarded on the way");
        drop(got);
    }

    #[tokio::test]
    async fn a_connection_with_unread_bytes_is_not_reused() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let pool = Pool::new(8, Duration::from_secs(60));
        let (c, mut s) = pair(&l).await;
        pool.put(addr, c);
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take(addr).is_none());
    }

    #[tokio::test]
    async fn keeps_at_most_max_per_host_and_sweeps_expired() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let pool = Pool::new(2, Duration::from_millis(100));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (c, s) = pair(&l).await;
            servers.push(s);
            pool.put(addr, c);
        }
        assert_eq!(pool.len(), 2);
        pool.sweep();
        assert_eq!(pool.len(), 2, "not expired yet");
        tokio::time::sleep(Duration::from_millis(150)).await;
        pool.sweep();
        assert_eq!(pool.len(), 0);
        assert!(pool.take(addr).is_none());
    }
}
