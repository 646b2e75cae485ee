//! The gRPC backend of `router/bench/grpc.sh`: HTTP/2 cleartext (prior
//! knowledge) on 127.0.0.1:PORT, every call answered with its request's
//! bytes (one length-prefixed message in, the same message out) and
//! `grpc-status: 0` in the trailers. On one thread, so it can be pinned to a
//! core beside the proxies; small and fast, so the proxies in front of it
//! are what the benchmark measures (a grpcio server would be the
//! bottleneck). The tests use real grpcio peers instead (tests/grpc/peer.py).
//!
//! Usage: grpc_echo PORT

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn echo(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let message = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(message).with_trailers(async move { Some(Ok(trailers)) }).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(50051);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let _ = h2.serve_connection(TokioIo::new(stream), service_fn(echo)).await;
        });
    }
}
