//! The first bytes of a TLS connection, read before anything is decided:
//! enough to hold the whole ClientHello, whose server name says whether the
//! connection is passed through (the bytes go to an instance as they are)
//! or terminated (the same bytes are replayed into rustls by [`Replay`]).
//! rustls's own acceptor consumes what it reads, so it cannot be asked
//! first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use router::client_hello::{self, Error, MAX_BUFFER};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What was read: the bytes, and the server name when they hold a whole,
/// well-formed ClientHello that names one.
pub struct Hello {
    pub bytes: Vec<u8>,
    pub name: Option<String>,
}

/// Reads until the ClientHello is whole, is no ClientHello, or the client
/// stops sending (EOF or an error: what was read is still handed on, and
/// rustls says what is wrong with it). Never more than [`MAX_BUFFER`]
/// bytes; the caller bounds the time.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Hello {
    let mut bytes = Vec::with_capacity(2048);
    let mut need = 5;
    loop {
        while bytes.len() < need {
            // Reading past the hello is harmless (every byte read is handed
            // on) and saves a system call; `take` keeps the buffer within
            // MAX_BUFFER.
            if bytes.capacity() - bytes.len() < 512 {
                bytes.reserve(4096);
            }
            match (&mut *stream).take((MAX_BUFFER - bytes.len()) as u64).read_buf(&mut bytes).await {
                Ok(0) | Err(_) => return Hello { bytes, name: None },
                Ok(_) => {}
            }
        }
        match client_hello::server_name(&bytes) {
            Ok(name) => return Hello { bytes, name },
            Err(Error::Incomplete(more)) if more <= MAX_BUFFER => need = more,
            Err(error) => {
                tracing::debug!(%error, "first bytes are no ClientHello the router passes through");
                return Hello { bytes, name: None };
            }
        }
    }
}

/// A stream that first gives back bytes already read from it, then reads on.
/// Writes go straight through.
pub struct Replay<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(head: Vec<u8>, inner: S) -> Replay<S> {
        Replay { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.at);
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                // Replayed: the memory goes back for the connection's life.
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A hello arriving a few bytes at a time is read whole; what follows
    /// and was not read yet stays in the stream, and the replay gives back
    /// everything in order.
    #[tokio::test]
    async fn reads_exactly_the_hello_then_replays_it() {
        // A minimal hello: version, random, empty session, one suite, null
        // compression, no extensions; split over two records.
        let mut body = vec![3, 3];
        body.extend([9u8; 32]);
        body.extend([0, 0, 2, 0x13, 1, 1, 0]);
        let mut msg = vec![1, 0, 0, body.len() as u8];
        msg.extend(&body);
        let (a, b) = msg.split_at(10);
        let mut wire = Vec::new();
        for part in [a, b] {
            wire.extend([22, 3, 1, 0, part.len() as u8]);
            wire.extend(part);
        }
        let (mut client, mut server) = tokio::io::duplex(4096);
        let sent = wire.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(3) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"after").await.unwrap();
            client
        });
        let got = read(&mut server).await;
        assert!(got.bytes.starts_with(&wire), "the whole hello is read");
        assert_eq!(got.name, None);
        let _client = writer.await.unwrap();
        let mut replay = Replay::new(got.bytes, server);
        let mut all = vec![0u8; wire.len() + 5];
        replay.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[..wire.len()], &wire[..]);
        assert_eq!(&all[wire.len()..], b"after");
    }

    /// Garbage and EOF end the read with what was there.
    #[tokio::test]
    async fn garbage_and_eof() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let got = read(&mut server).await;
        assert!(got.bytes.starts_with(b"GET /"));
        assert_eq!(got.name, None);
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&[22, 3, 1, 0, 50, 1]).await.unwrap();
        drop(client);
        let got = read(&mut server).await;
        assert_eq!(got.bytes, [22, 3, 1, 0, 50, 1]);
        assert_eq!(got.name, None);
    }
}
