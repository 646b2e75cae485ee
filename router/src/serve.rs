//! Accept loop shared by the proxy and admin listeners: HTTP/1.1 and h2c
//! (prior knowledge) on one port, upgrades allowed, and a graceful stop that
//! closes the listener at once and lets open requests finish until the grace
//! deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Body of every response the router sends: an upstream's streamed body or
/// a small one of its own.
pub type RespBody = BoxBody<Bytes, hyper::Error>;

/// A complete small body.
pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Longest time a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Serves `listener` until `stop` turns true, then drains for up to `grace`.
pub async fn serve<H, Fut>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) where
    H: Fn(Request<Incoming>, Conn) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request headers (slowloris) is cut
    // off instead of holding a connection forever.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(error) => {
            tracing::error!(listener = name, %error, "listener has no local address");
            return;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn { peer, local };
                    let h = handler.clone();
                    let svc = service_fn(move |req| {
                        let h = h.clone();
                        async move { Ok::<_, Infallible>(h(req, conn).await) }
                    });
                    let c = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let fut = graceful.watch(c);
                    tokio::spawn(async move {
                        if let Err(error) = fut.await {
                            tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
                        }
                    });
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
    drop(listener);
    tracing::info!(listener = name, addr = %local, grace = %humantime::format_duration(grace), "stopped accepting; draining");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!(listener = name, "all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(listener = name, "grace period over; closing remaining connections"),
    }
}
