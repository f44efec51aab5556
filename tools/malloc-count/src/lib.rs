//! Counts every call that allocates from the C heap (`malloc`, `calloc`, `realloc`,
//! `memalign`, `aligned_alloc`, `posix_memalign`, `valloc`, `pvalloc`), by whichever code makes
//! it: TensorFlow Lite's C++ (`operator new` ends in `malloc`), Rust's `System` allocator, libc.
//!
//! Each wrapper bumps one atomic and forwards to glibc's own entry points (`__libc_malloc`,
//! ...), which never call back into these symbols, so there is no recursion and no lock. Two
//! ways to use it:
//!
//! - `LD_PRELOAD=target/release/libmalloc_count.so edgewatch bench ...`: the dynamic linker
//!   puts these definitions ahead of glibc's for the whole process; `edgewatch bench` finds
//!   [`edgewatch_malloc_count`] with `dlsym(RTLD_DEFAULT, ...)` and prints mallocs per frame.
//! - compiled into a test binary (`#[path]` module, as `tests/zero_alloc.rs` does): the
//!   executable's definitions win over glibc's for every library it loads, no preload needed.
//!
//! `free` is forwarded uncounted: releasing memory is not what the frame loop must avoid, and
//! a pointer from any of the allocators above is a glibc heap pointer either way.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

static CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(count: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
}

const EINVAL: c_int = 22;
const ENOMEM: c_int = 12;
/// Page size for `valloc`: 4 KiB on every target edgewatch ships for (x86-64, aarch64 and
/// armv7 Raspberry Pi OS kernels).
const PAGE: usize = 4096;

#[inline]
fn count() {
    CALLS.fetch_add(1, Relaxed);
}

/// Allocation calls counted so far in this process (every thread).
#[no_mangle]
pub extern "C" fn edgewatch_malloc_count() -> u64 {
    CALLS.load(Relaxed)
}

/// Counted `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    count();
    // SAFETY: same contract as malloc, which the caller upholds.
    unsafe { __libc_malloc(size) }
}

/// Counted `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    count();
    // SAFETY: same contract as calloc.
    unsafe { __libc_calloc(n, size) }
}

/// Counted `realloc` (a shrink or grow may move the block, so it counts as an allocation).
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    count();
    // SAFETY: `ptr` came from this heap (every allocator here is glibc's), as realloc requires.
    unsafe { __libc_realloc(ptr, size) }
}

/// Uncounted `free`.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: `ptr` came from glibc's heap or is null, as free requires.
    unsafe { __libc_free(ptr) }
}

/// Counted `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    count();
    // SAFETY: same contract as memalign.
    unsafe { __libc_memalign(align, size) }
}

/// Counted `aligned_alloc` (glibc implements it as memalign).
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    count();
    // SAFETY: same contract as memalign.
    unsafe { __libc_memalign(align, size) }
}

/// Counted `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    count();
    // SAFETY: a page-aligned memalign.
    unsafe { __libc_memalign(PAGE, size) }
}

/// Counted `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    count();
    let Some(rounded) = size.max(1).checked_next_multiple_of(PAGE) else {
        return core::ptr::null_mut();
    };
    // SAFETY: a page-aligned memalign.
    unsafe { __libc_memalign(PAGE, rounded) }
}

/// Counted `posix_memalign`, with its argument checks (a power of two, a multiple of the
/// pointer size).
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    count();
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return EINVAL;
    }
    // SAFETY: a valid alignment, checked above.
    let p = unsafe { __libc_memalign(align, size) };
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer, as posix_memalign requires.
    unsafe { *out = p };
    0
}
