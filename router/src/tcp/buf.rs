//! Copy buffers from a per-thread free list, so a new connection takes two
//! buffers from a `Vec` instead of two 16 KiB `malloc`s (and their `free`s,
//! which for blocks this size also coalesce chunks and consolidate glibc's
//! heap). Measured with `perf record -F 1500 -g` of the router under `wrk
//! -t1 -c64 -d5s -H 'Connection: close'` through a TCP route: glibc's
//! `_int_malloc`, `_int_free`, `malloc_consolidate` and `unlink_chunk`
//! together 1.27 us per connection before, 0.39 us after (what is left is
//! the task and tokio's socket registrations), of about 52-56 us sampled.
//!
//! Only buffers of the starting size go back (a buffer grown for a bulk
//! transfer is freed), at most [`KEEP`] per thread: a burst of connections
//! leaves at most `KEEP * BUF_START` (1 MiB) per worker thread behind.
//! A task may end on another worker than it began on; the buffer then goes
//! to that thread's list, which is as good.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use bytes::BytesMut;

/// Buffers kept per thread.
pub const KEEP: usize = 64;

/// The free buffers of one thread, all of capacity `size`, empty.
struct Free {
    bufs: Vec<BytesMut>,
    size: usize,
    keep: usize,
}

impl Free {
    fn take(&mut self) -> BytesMut {
        self.bufs.pop().unwrap_or_else(|| BytesMut::with_capacity(self.size))
    }

    fn give(&mut self, mut buf: BytesMut) {
        if self.bufs.len() < self.keep && buf.capacity() == self.size {
            buf.clear();
            self.bufs.push(buf);
        }
    }
}

thread_local! {
    static FREE: RefCell<Free> =
        const { RefCell::new(Free { bufs: Vec::new(), size: super::conn::BUF_START, keep: KEEP }) };
}

/// A copy buffer that goes back to the thread's free list when dropped.
pub struct Buf(BytesMut);

impl Buf {
    /// An empty buffer of `BUF_START` capacity (a new one if none is free).
    pub fn take() -> Buf {
        Buf(FREE.with(|f| f.borrow_mut().take()))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // `try_with`: a buffer dropped while the thread exits is just freed.
        let _ = FREE.try_with(|f| f.borrow_mut().give(buf));
    }
}

impl Deref for Buf {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn free_len() -> usize {
        FREE.with(|f| f.borrow().bufs.len())
    }

    #[test]
    fn buffers_go_back_and_are_reused() {
        let mut a = Buf::take();
        a.put_slice(b"hello");
        let ptr = a.as_ptr();
        let before = free_len();
        drop(a);
        assert_eq!(free_len(), before + 1);
        // The same block again, empty.
        let b = Buf::take();
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        assert_eq!(b.capacity(), super::super::conn::BUF_START);
    }

    #[test]
    fn bounded() {
        let mut free = Free { bufs: Vec::new(), size: 8, keep: 3 };
        let taken: Vec<BytesMut> = (0..10).map(|_| free.take()).collect();
        for buf in taken {
            free.give(buf);
        }
        assert_eq!(free.bufs.len(), 3);
        // The thread's own list keeps at most KEEP however many were out.
        let many: Vec<Buf> = (0..KEEP * 2).map(|_| Buf::take()).collect();
        drop(many);
        assert_eq!(free_len(), KEEP);
    }

    #[test]
    fn grown_buffers_are_not_kept() {
        let mut free = Free { bufs: Vec::new(), size: 8, keep: 3 };
        let mut buf = free.take();
        buf.reserve(1024);
        free.give(buf);
        assert!(free.bufs.is_empty());
        let mut buf = free.take();
        buf.put_slice(b"abc");
        free.give(buf);
        assert_eq!(free.bufs.len(), 1);
        assert!(free.take().is_empty());
    }
}
