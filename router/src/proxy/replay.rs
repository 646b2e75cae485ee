//! A streamed request body that can be sent again while none of it has been
//! sent: the hyper path's client takes the body by value and drops it when
//! an attempt fails (a refused connect, a pooled connection found closed), so
//! without this a POST could never go to another target. The proxy keeps the
//! body in a [`Held`] and lends each attempt a [`Lease`]; once a frame has
//! been handed to the upstream the body is spent and only an attempt that
//! needs no body again may follow.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::client::UpBody;

#[derive(Default)]
struct Slot {
    body: Option<UpBody>,
    /// A frame has been taken out: what is left is not the whole body.
    started: bool,
}

/// The request body between attempts.
pub struct Held(Arc<Mutex<Slot>>);

impl Held {
    pub fn new(body: UpBody) -> Held {
        Held(Arc::new(Mutex::new(Slot { body: Some(body), started: false })))
    }

    /// The body for one attempt.
    pub fn lease(&self) -> UpBody {
        Lease(self.0.clone()).boxed()
    }

    /// Nothing of the body has been sent: another attempt can send it whole.
    pub fn replayable(&self) -> bool {
        !lock(&self.0).started
    }
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Lease(Arc<Mutex<Slot>>);

impl Body for Lease {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut slot = lock(&self.0);
        let Some(body) = slot.body.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(_)) = &polled {
            slot.started = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0).body.as_ref().map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn body(s: &'static str) -> UpBody {
        Full::new(Bytes::from_static(s.as_bytes())).map_err(|never| match never {}).boxed()
    }

    #[tokio::test]
    async fn a_lease_dropped_unread_leaves_the_body_whole() {
        let held = Held::new(body("payload"));
        let lease = held.lease();
        assert_eq!(lease.size_hint().exact(), Some(7), "the length goes upstream as Content-Length");
        drop(lease);
        assert!(held.replayable());
        let got = held.lease().collect().await.expect("the body").to_bytes();
        assert_eq!(&got[..], b"payload");
        assert!(!held.replayable(), "sent once: spent");
    }
}
