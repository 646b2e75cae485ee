//! Accept loop shared by the proxy and admin listeners, and the hyper
//! connection service they fall back to: HTTP/1.1 and h2c (prior knowledge)
//! on one port, upgrades allowed. A graceful stop closes the listener at once
//! and lets open connections finish what they are doing until the grace
//! deadline: each connection holds a [`Drain`], and the listener waits until
//! every one is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Body of every response the router sends: an upstream's streamed body or
/// a small one of its own.
pub type RespBody = BoxBody<Bytes, hyper::Error>;

/// A complete small body.
pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Longest time the admin listener gives a client to send a request's
/// headers (the proxy's is `--header-timeout`).
pub const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounds on a request head: more bytes or more header lines are answered
/// 431 (`--max-header-bytes`, `--max-headers`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub bytes: usize,
    pub headers: usize,
}

impl HeadLimits {
    /// The admin listener's (and the flags' defaults).
    pub const DEFAULT: HeadLimits = HeadLimits { bytes: 64 * 1024, headers: 100 };
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The request came over TLS (a `--tls-addr` listener): forwarded as
    /// `proto=https`, and what `hsts=` and `--https-redirect` look at.
    pub tls: bool,
}

/// Held by each open connection: tells it when to stop taking requests, and
/// keeps the listener's drain waiting while it lives.
pub struct Drain {
    stop: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
}

impl Drain {
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the listener is stopping.
    pub async fn stopped(&mut self) {
        drop(self.stop.wait_for(|s| *s).await);
    }
}

/// How many accept loops are running: the router's `/health` needs every
/// proxy listener's.
#[derive(Debug, Default)]
pub struct Accepting(AtomicUsize);

impl Accepting {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn enter(self: Arc<Self>) -> AcceptGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        AcceptGuard(self)
    }
}

/// Counts one accept loop while it lives (a panic included).
struct AcceptGuard(Arc<Accepting>);

impl Drop for AcceptGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `listener` until `stop` turns true, then drains for up to `grace`.
/// `on_conn` runs each accepted connection to its end; `accepting` counts
/// this loop while it accepts.
pub async fn serve<H, Fut>(
    name: &'static str,
    listener: TcpListener,
    on_conn: H,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    accepting: Arc<Accepting>,
) where
    H: Fn(TcpStream, Conn, Drain) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(error) => {
            tracing::error!(listener = name, %error, "listener has no local address");
            return;
        }
    };
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let guard = accepting.enter();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let drain = Drain { stop: stop.clone(), _open: open_tx.clone() };
                    tokio::spawn(on_conn(stream, Conn { peer, local, tls: false }, drain));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little
                    // instead of spinning on the error.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { drop(stop.wait_for(|s| *s).await) } => break,
        }
    }
    drop(guard);
    drop(listener);
    drop(open_tx);
    tracing::info!(listener = name, addr = %local, grace = %humantime::format_duration(grace), "stopped accepting; draining");
    tokio::select! {
        _ = open_rx.recv() => tracing::info!(listener = name, "all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(listener = name, "grace period over; closing remaining connections"),
    }
}

/// Serves one connection with hyper (HTTP/1.1 or h2c, upgrades allowed),
/// calling `handler` per request; a client gets `header_timeout` for each
/// request head. On stop, hyper finishes the requests in flight and closes.
pub async fn hyper_conn<I, H, Fut>(
    io: I,
    conn: Conn,
    handler: H,
    mut drain: Drain,
    header_timeout: Duration,
    limits: HeadLimits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Conn) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request headers (slowloris) is cut
    // off instead of holding a connection forever.
    // hyper's read buffer must be at least 8 KiB; its 431 for a larger head
    // matches the fast path's.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(limits.bytes.max(8192))
        .max_headers(limits.headers);
    builder.http2().timer(TokioTimer::new());
    let svc = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req, conn).await) }
    });
    let c = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(c);
    let result = tokio::select! {
        r = c.as_mut() => r,
        _ = drain.stopped() => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(peer = %conn.peer, %error, "connection ended with an error");
    }
}
