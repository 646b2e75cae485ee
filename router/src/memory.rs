//! Hands freed heap memory back to the kernel after a table rebuild.
//!
//! Building a table for 10,000 routes allocates about as much again in
//! temporaries, and the old table is freed only once the new one is
//! published. glibc keeps those freed pages mapped (only the top of the heap
//! shrinks by itself), so the router's RSS would stay at the peak of its
//! largest rebuild; `malloc_trim` releases every free page, wherever it is.

/// Returns the heap's free pages to the kernel. Walks the heap, so it costs
/// milliseconds with a large table: run it off the async workers, after
/// publishing, never on the request path.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only inspects and releases glibc's own free
        // lists, under glibc's arena locks; it takes no pointers from us.
        unsafe { libc::malloc_trim(0) };
    });
}
