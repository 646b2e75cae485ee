//! How the router uses glibc's heap, so that its RSS follows its live data
//! rather than the peak of its rebuilds.
//!
//! Building a table for 10,000 routes allocates about as much again in
//! temporaries, and the old table is freed only once the new one is
//! published; while services register, that happens many times in a row.
//! Measured with 10,000 services registered into a running router
//! (`router/bench/load.sh`): live heap about 20 MB, RSS 51 MB with glibc's
//! defaults, 41 MB with the settings in [`tune`] plus the trim after each
//! publish.

/// Sets glibc's allocator up for this workload; call first thing in `main`.
///
/// - A fixed mmap threshold (128 KiB, glibc's initial value): by default
///   glibc raises the threshold each time a large mmapped block is freed, so
///   after the first rebuild the table's big arrays (megabytes each) come
///   from the heap and leave holes there when freed. Fixed, they stay mmapped
///   and go back to the kernel whole.
/// - At most two arenas: glibc gives every thread that contends for the heap
///   an arena of its own (up to 8 per core), each keeping its own free
///   pages. The proxy's fast path allocates nothing per request, so a second
///   arena is enough to keep the rest from contending.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the heap's free pages to the kernel (glibc keeps freed pages
/// mapped; only the top of the heap shrinks by itself). Walks the heap, so
/// it costs milliseconds with a large table: run it off the async workers,
/// after publishing, never on the request path.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only inspects and releases glibc's own free
        // lists, under glibc's arena locks; it takes no pointers from us.
        unsafe { libc::malloc_trim(0) };
    });
}
