//! One request served by hyper, then the connection back to the fast path.
//!
//! Why: hyper's parser is lenient where the fast path is strict (it takes a
//! chunked coding over a Content-Length beside it, a repeated equal length,
//! a bare LF), and once it owned a connection it read every later head
//! itself. So a client could send one request hyper serves (a chunked body,
//! HTTP/1.0, a route only hyper serves) and then an ambiguous head the fast
//! path would have refused. Instead every HTTP/1 head on a connection is
//! parsed and checked by the fast path ([`super::head::parse_request`]);
//! when it leaves a request to hyper, hyper sees exactly that request's
//! bytes (the head and the body as the check framed it) and nothing after,
//! and once the response is written the connection returns to the fast
//! path with whatever followed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::Client;
use super::chunked::Chunked;
use crate::proxy::Proxy;
use crate::proxy::framing::BodyFraming;
use crate::serve::{Conn, RespBody};

/// Longest wait to end a connection hyper's request ended.
const SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the request hyper is reading ends.
#[derive(Debug, Clone, Copy)]
pub struct Boundary {
    /// Bytes of the head.
    pub head_len: usize,
    pub body: BodyFraming,
}

/// Which part of the request the next bytes belong to.
enum Part {
    /// No request boundary: the whole connection is hyper's (h2c, upgrades).
    Unbounded,
    Head(usize),
    Length(u64),
    Chunked(Chunked),
    /// The request is whole: hyper reads nothing more.
    Done,
}

/// The client connection as hyper sees it: first the bytes the fast path
/// read, then the socket; for one request, reads stop at its end (bytes
/// after it stay in `pending` for the fast path). Writes go straight through.
pub struct ClientIo<S> {
    stream: S,
    pending: BytesMut,
    part: Part,
    body: BodyFraming,
}

impl<S> ClientIo<S> {
    /// The whole connection, `buf` read first.
    pub fn whole(stream: S, buf: BytesMut) -> Self {
        ClientIo { stream, pending: buf, part: Part::Unbounded, body: BodyFraming::default() }
    }

    fn next_part(&mut self) {
        self.part = match self.part {
            Part::Head(0) if self.body.chunked => Part::Chunked(Chunked::default()),
            Part::Head(0) => match self.body.content_length {
                Some(n) if n > 0 => Part::Length(n),
                _ => Part::Done,
            },
            Part::Length(0) => Part::Done,
            Part::Chunked(ref c) if c.done() => Part::Done,
            _ => return,
        };
    }
}

impl<S: Client> AsyncRead for ClientIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Part::Unbounded = this.part {
            if this.pending.is_empty() {
                return Pin::new(&mut this.stream).poll_read(cx, out);
            }
            let n = this.pending.len().min(out.remaining());
            out.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        loop {
            this.next_part();
            if let Part::Done = this.part {
                // Nothing more for hyper; it is stopped once its response is
                // written (see `serve`), so it is never woken for this.
                return Poll::Pending;
            }
            if this.pending.is_empty() {
                this.pending.reserve(16 * 1024);
                let n = std::task::ready!(tokio_util_read(&mut this.stream, cx, &mut this.pending))?;
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            let avail = this.pending.len().min(out.remaining());
            let take = match &mut this.part {
                Part::Head(k) => {
                    let n = avail.min(*k);
                    *k -= n;
                    n
                }
                Part::Length(k) => {
                    let n = usize::try_from(*k).map_or(avail, |k| k.min(avail));
                    *k -= n as u64;
                    n
                }
                Part::Chunked(c) => c
                    .feed(&this.pending[..avail])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
                Part::Done | Part::Unbounded => 0,
            };
            if take > 0 {
                out.put_slice(&this.pending[..take]);
                this.pending.advance(take);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Reads from the socket into `buf`'s spare room.
fn tokio_util_read<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let mut rb = ReadBuf::uninit(spare);
    std::task::ready!(Pin::new(stream).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: `n` bytes of the spare capacity were just initialised by the read.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

impl<S: Client> AsyncWrite for ClientIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that says when hyper is done with it (dropped after its
/// last frame, or right after the head when it is empty).
struct Notify {
    inner: RespBody,
    _done: oneshot::Sender<()>,
}

impl Body for Notify {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a `Connection` header carries `token`.
fn connection_has(headers: &http::HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Serves the request at the front of `buf` with hyper; `Some` with the
/// connection and the bytes that followed the request when it may carry
/// another one, `None` when it has ended.
pub async fn serve<S: Client + Send + 'static>(
    proxy: Arc<Proxy>,
    stream: S,
    buf: BytesMut,
    boundary: Boundary,
    conn: Conn,
) -> Option<(S, BytesMut)> {
    let io = ClientIo { stream, pending: buf, part: Part::Head(boundary.head_len), body: boundary.body };
    let proxy_limits = proxy.head_limits;
    let keep_alive = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = oneshot::channel();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let keep = keep_alive.clone();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let keep = keep.clone();
        let done = done_tx.lock().ok().and_then(|mut d| d.take());
        // Boxed: hyper's poll_without_shutdown needs an Unpin service future.
        Box::pin(async move {
            // Persistence as RFC 9112 9.3 has it (hyper decides the same).
            let persistent = match req.version() {
                http::Version::HTTP_11 => !connection_has(req.headers(), "close"),
                _ => connection_has(req.headers(), "keep-alive") && !connection_has(req.headers(), "close"),
            };
            let resp = proxy.handle(req, conn).await;
            // hyper ends the connection after an HTTP/1.0 response (its body
            // may be delimited by the close) or one that says close. An
            // HTTP/2 instance's response (proto=h2c|grpc|grpcs) is written
            // as HTTP/1.1 and keeps the connection like one.
            let resp_keeps = resp.version() != http::Version::HTTP_10 && !connection_has(resp.headers(), "close");
            keep.store(persistent && resp_keeps, Ordering::Relaxed);
            let resp = match done {
                Some(d) => resp.map(|b| Notify { inner: b, _done: d }.boxed()),
                None => resp,
            };
            Ok::<_, std::convert::Infallible>(resp)
        })
    });
    let limits = proxy_limits;
    let mut c = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .max_buf_size(limits.bytes.max(8192))
        .max_headers(limits.headers)
        .serve_connection(TokioIo::new(io), svc);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| c.poll_without_shutdown(cx)) => break r,
            _ = &mut done_rx, if !stopping => {
                // The response is written (or its last frame is): hyper
                // ends the connection after it, without reading on.
                Pin::new(&mut c).graceful_shutdown();
                stopping = true;
            }
        }
    };
    if let Err(error) = &result {
        tracing::debug!(peer = %conn.peer, %error, "connection ended with an error");
    }
    let parts = c.into_parts();
    let mut io = parts.io.into_inner();
    if result.is_err() || !keep_alive.load(Ordering::Relaxed) || !matches!(io.part, Part::Done) {
        // Ended properly: over TLS that sends close_notify, without which a
        // client (OpenSSL) will not resume the session. Bounded, as a
        // client that reads nothing could hold the write forever.
        let _ = tokio::time::timeout(SHUTDOWN, tokio::io::AsyncWriteExt::shutdown(&mut io.stream)).await;
        return None;
    }
    let mut rest = BytesMut::from(&parts.read_buf[..]);
    rest.extend_from_slice(&io.pending);
    Some((io.stream, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn whole_reads_the_prefix_then_the_stream() {
        let (mut a, b) = pair().await;
        a.write_all(b" world").await.expect("write");
        drop(a);
        let mut io = ClientIo::whole(b, BytesMut::from(&b"hello"[..]));
        let mut s = String::new();
        io.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "hello world");
    }

    /// Reads what hyper would be given, until the boundary holds it back.
    async fn given(io: &mut ClientIo<TcpStream>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(50), io.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            out.extend(&buf[..n]);
        }
        out
    }

    #[tokio::test]
    async fn one_request_stops_at_its_end() {
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let (mut a, b) = pair().await;
        // Part in the fast path's buffer, part still on the socket.
        let mut buf = BytesMut::from(&head[..]);
        buf.extend_from_slice(&body[..4]);
        a.write_all(&body[4..]).await.expect("write");
        a.write_all(next).await.expect("write");
        let framing = BodyFraming { content_length: None, chunked: true };
        let mut io = ClientIo { stream: b, pending: buf, part: Part::Head(head.len()), body: framing };
        assert_eq!(given(&mut io).await, [&head[..], &body[..]].concat());
        assert!(matches!(io.part, Part::Done));
        // What follows stays for the fast path (some of it may still be on
        // the socket).
        let mut rest = io.pending.to_vec();
        let mut more = vec![0u8; next.len() - rest.len()];
        io.stream.read_exact(&mut more).await.expect("rest");
        rest.extend(more);
        assert_eq!(rest, next);

        let (mut a, b) = pair().await;
        a.write_all(b"hello!GET").await.expect("write");
        let framing = BodyFraming { content_length: Some(6), chunked: false };
        let mut io =
            ClientIo { stream: b, pending: BytesMut::from(&head[..]), part: Part::Head(head.len()), body: framing };
        assert_eq!(given(&mut io).await, [&head[..], b"hello!"].concat());
    }
}
