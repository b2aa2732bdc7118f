//! Memory that a burst of work leaves behind, handed back to the kernel once it is over.
//!
//! glibc's allocator keeps what it got for a burst (a thousand agents connecting, a hundred
//! pages re-read at once, an argon2 hash) after it is freed. Two of its habits did it here:
//! after a large block is freed it raises its mmap and trim thresholds to that size, so the
//! next 19 MiB argon2 buffer came from a heap that then kept it; and it returns only the top
//! of each heap to the kernel, so a few live allocations between freed ones pin the rest.
//! Measured in the benchmark: idle at 15 MiB before the load, 88 MiB after it with 10 MiB in
//! use; with both settled, 22–26 MiB.

const THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's thresholds at their defaults, so that large blocks are mapped on their own and
/// freed heap tops are returned at once; called once, as the server starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks() {
    // SAFETY: mallopt takes plain integers and only changes glibc's settings, under its lock.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
    }
}

/// Hands every whole free page of every arena back to the kernel; a few milliseconds at most.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own free lists, under the
    // arenas' locks, as free() does.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's among them) return freed memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
