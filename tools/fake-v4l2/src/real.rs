//! The C library's own definitions of the functions the fake intercepts, found with
//! `dlsym(RTLD_NEXT, ...)`: "the next definition after this object", which is glibc's both when
//! this code is a preloaded shared object and when it is compiled into an executable.
//!
//! Never call `libc::open`, `libc::close`, `libc::mmap`, ... from the fake itself: those names
//! resolve to the fake's own definitions and would recurse. Each pointer is resolved once and
//! cached in an atomic (no lock, no allocation), eagerly from a constructor (see
//! [`resolve_all`]) and lazily as a fallback for calls that come before it.

use core::ffi::{c_char, c_int, c_long, c_ulong, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

/// `int open(const char *path, int flags, ...)` (also `open64`).
pub(crate) type OpenFn = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
/// `int openat(int dirfd, const char *path, int flags, ...)` (also `openat64`).
pub(crate) type OpenatFn = unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
/// `int __open_2(const char *path, int flags)` (fortified `open`; also `__open64_2`).
pub(crate) type Open2Fn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
/// `int __openat_2(int dirfd, const char *path, int flags)` (also `__openat64_2`).
pub(crate) type Openat2Fn = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
/// `int close(int fd)`.
pub(crate) type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
/// `int ioctl(int fd, unsigned long request, ...)` (glibc's prototype).
pub(crate) type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int;
/// `long syscall(long number, ...)`.
pub(crate) type SyscallFn = unsafe extern "C" fn(c_long, ...) -> c_long;
/// `void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)`.
pub(crate) type MmapFn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;
/// `void *mmap64(..., off64_t offset)`.
pub(crate) type Mmap64Fn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off64_t) -> *mut c_void;
/// `int munmap(void *addr, size_t length)`.
pub(crate) type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
/// `int poll(struct pollfd *fds, nfds_t nfds, int timeout)`.
pub(crate) type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
/// `int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)`.
pub(crate) type SelectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::timeval,
) -> c_int;

/// Defines an accessor `$fn() -> Option<$ty>` for the next definition of the C symbol `$name`.
macro_rules! next_symbol {
    ($(#[$doc:meta])* $fn:ident, $name:literal, $ty:ty) => {
        $(#[$doc])*
        pub(crate) fn $fn() -> Option<$ty> {
            static CACHE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
            let mut ptr = CACHE.load(Ordering::Acquire);
            if ptr.is_null() {
                // SAFETY: RTLD_NEXT is a valid pseudo-handle and the name is a NUL-terminated
                // literal. dlsym does not call any function this crate intercepts.
                ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, concat!($name, "\0").as_ptr().cast()) };
                CACHE.store(ptr, Ordering::Release);
            }
            if ptr.is_null() {
                return None;
            }
            // SAFETY: a non-null result of dlsym for this C symbol is the address of glibc's
            // function, whose C prototype is the one `$ty` spells out (see the type's docs).
            Some(unsafe { core::mem::transmute::<*mut c_void, $ty>(ptr) })
        }
    };
}

next_symbol!(open, "open", OpenFn);
next_symbol!(open64, "open64", OpenFn);
next_symbol!(openat, "openat", OpenatFn);
next_symbol!(openat64, "openat64", OpenatFn);
next_symbol!(open_2, "__open_2", Open2Fn);
next_symbol!(open64_2, "__open64_2", Open2Fn);
next_symbol!(openat_2, "__openat_2", Openat2Fn);
next_symbol!(openat64_2, "__openat64_2", Openat2Fn);
next_symbol!(close, "close", CloseFn);
next_symbol!(ioctl, "ioctl", IoctlFn);
next_symbol!(syscall, "syscall", SyscallFn);
next_symbol!(mmap, "mmap", MmapFn);
next_symbol!(mmap64, "mmap64", Mmap64Fn);
next_symbol!(munmap, "munmap", MunmapFn);
next_symbol!(poll, "poll", PollFn);
next_symbol!(select, "select", SelectFn);

/// Resolves every pointer up front, so that no `dlsym` runs later at an awkward moment (inside
/// a futex wait of Rust's std, say). Called from the constructor in `lib.rs`.
pub(crate) fn resolve_all() {
    let _ = (open(), open64(), openat(), openat64(), open_2(), open64_2());
    let _ = (
        openat_2(),
        openat64_2(),
        close(),
        ioctl(),
        syscall(),
        mmap(),
    );
    let _ = (mmap64(), munmap(), poll(), select());
}

/// Sets `errno` for the calling thread.
pub(crate) fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = code };
}

/// Reads `errno` of the calling thread.
pub(crate) fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// Closes `fd` with glibc's `close` (not the fake's), for the fake's own cleanup.
pub(crate) fn close_fd(fd: c_int) -> c_int {
    match close() {
        // SAFETY: closing an fd the caller owns.
        Some(real) => unsafe { real(fd) },
        None => {
            set_errno(libc::ENOSYS);
            -1
        }
    }
}
