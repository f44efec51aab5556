//! A fake V4L2 camera in userspace, for tests: it intercepts the C library calls a V4L2 capture
//! client makes (`open`, `ioctl`, `mmap`, `poll`, ...) for configured device paths and answers
//! them itself, so the real capture code path runs in CI, where there is no camera.
//!
//! # Two ways to use it
//!
//! - **Preloaded:** `cargo build --release -p fake-v4l2`, then
//!   `LD_PRELOAD=target/release/libfake_v4l2.so FAKE_V4L2_DEVICES=/dev/video90 edgewatch run
//!   --config x.toml`. The dynamic linker puts these definitions ahead of glibc's for the whole
//!   process.
//! - **Compiled into a test:** `#[path = "../tools/fake-v4l2/src/lib.rs"] mod fake_v4l2;` (as
//!   `tests/fake_v4l2.rs` does). The executable's `#[no_mangle]` definitions then win over
//!   glibc's for the binary's own calls, the `v4l` crate's included. This is why the source
//!   may only use crates the `edgewatch` package depends on (`libc`, `v4l`, `image`).
//!
//! Without `FAKE_V4L2_DEVICES`, or for any other path, every call passes straight through to
//! glibc (no allocation, no lock), so the fake is inert until asked for.
//!
//! # Environment (read at every open, so a test may change it between opens)
//!
//! | variable | meaning |
//! |---|---|
//! | `FAKE_V4L2_DEVICES` | comma-separated paths that are fake devices (they need not exist), e.g. `/dev/video90,/dev/v4l/by-id/usb-Fake_Camera-video-index0`; compared byte for byte |
//! | `FAKE_V4L2_FORMATS` | fourccs offered, in order (default `YUYV,MJPG,NV12,YU12,RGB3,GREY`) |
//! | `FAKE_V4L2_SIZES` | frame sizes offered for every format (default `640x480,320x240,640x360`; odd sizes are rounded down to even) |
//! | `FAKE_V4L2_FPS` | frame rate until `S_PARM` changes it (default 30; intervals offered: 1/30, 1/15 and 1/FPS) |
//! | `FAKE_V4L2_FRAMES` | an image folder (bmp/png/jpg/pnm, sorted by name), an `.mjpeg` file (concatenated JPEGs) or one image; unset: a moving test pattern |
//! | `FAKE_V4L2_MAX_FRAMES` | source frames loaded (default 32); they repeat in a loop |
//! | `FAKE_V4L2_FAULT` | scripted faults for each open, `kind@N[,kind@N]` (below) |
//! | `FAKE_V4L2_FAULT_<basename>` | the same for one device (e.g. `FAKE_V4L2_FAULT_video91`); wins over `FAKE_V4L2_FAULT` |
//! | `FAKE_V4L2_ABSENT_OPENS` | after an unplug, the next K opens of that path fail with ENOENT |
//!
//! # Faults (`N` counts frames of one open)
//!
//! - `unplug@N`: after N successful DQBUFs the device is gone: every ioctl fails with ENODEV,
//!   poll reports POLLERR|POLLHUP at once, mmap fails with ENODEV; munmap and close still work.
//! - `eio@N`: after N successful DQBUFs, DQBUF fails with EIO and poll reports POLLERR.
//! - `stall@N`: after N frames have been filled no more are produced: poll times out, a
//!   blocking DQBUF blocks.
//! - `short@N`: the frames after the first N have bytesused = half the frame (sizeimage/2 for
//!   raw formats; for MJPG, a JPEG cut in half).
//!
//! # The device
//!
//! Each open gets its own session and a real fd (a memfd named `fake-v4l2`, close-on-exec if
//! `O_CLOEXEC`, non-blocking if `O_NONBLOCK`), so leaks show in `/proc/self/fd` and `fcntl`
//! works. It answers QUERYCAP (driver `fake-v4l2`, card `Fake Camera`, bus `fake:N` for the
//! N-th listed path), ENUM_FMT, ENUM_FRAMESIZES and ENUM_FRAMEINTERVALS (discrete), G/S/TRY_FMT
//! (nearest size; an unknown fourcc becomes the first format), G/S_PARM, REQBUFS (MMAP, 2..=32
//! buffers), QUERYBUF, QBUF, DQBUF, STREAMON, STREAMOFF, ENUMINPUT/G_INPUT/S_INPUT (one
//! camera) and G/S_PRIORITY (accepted, not enforced); anything else fails with ENOTTY.
//!
//! Buffers live in the memfd, and `mmap` at the offsets QUERYBUF gives maps them for real.
//! Frames are rendered once, at STREAMON, in the negotiated format (see `frames.rs` for the
//! colour conventions: BT.601 limited range for the YUV formats). They are produced lazily, on
//! poll and DQBUF, at the frame rate from STREAMON, into queued buffers (dropped when none is
//! queued; the sequence counts every frame). A dequeued buffer carries bytesused, sequence, a
//! CLOCK_MONOTONIC timestamp, field NONE and flag TIMESTAMP_MONOTONIC; DONE is cleared by
//! DQBUF, as vb2 does. Nothing on the per-frame path allocates.
//!
//! Introspection for tests: [`fake_v4l2_open_fds`], [`fake_v4l2_mappings`],
//! [`fake_v4l2_opens`] (with `dlsym` when preloaded, directly when compiled in).
//!
//! # Limitations
//!
//! - glibc on Linux only (x86_64, aarch64, armv7); the variadic functions are defined with
//!   fixed arguments (the comment above `open` in this file says why that is sound).
//! - Only `open`, `open64`, `openat`, `openat64` and the fortified `__open*_2` are intercepted:
//!   `stat`/`access` on a fake path still say it does not exist, and `fopen` (which opens
//!   inside glibc) does not see fake devices. A `dup`ed fake fd is a plain memfd (ENOTTY).
//! - `epoll`, `ppoll` and `pselect` are not intercepted. `poll` and `select` handle fake and
//!   real fds together, but `poll` only looks at the first 256 entries for fake fds.
//! - Format, parameters, buffers and priority belong to each open; a real driver shares them
//!   between all opens of a device (v4l2-compliance notices). No `read()` I/O.
//! - S_FMT and REQBUFS fail with EBUSY while buffers are allocated/mapped or streaming, S_PARM
//!   while streaming. Frames are stretched to the negotiated size, not cropped.
//! - At most 16 fake fds open at once and 512 buffer mappings.
//! - The environment is read with `getenv`: do not change it while another thread opens files.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// The exported functions keep the C library's contracts, documented in its man pages.
#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};

#[path = "config.rs"]
mod config;
#[path = "frames.rs"]
mod frames;
#[path = "real.rs"]
mod real;
#[path = "session.rs"]
mod session;

/// Fake fds currently open.
#[no_mangle]
pub extern "C" fn fake_v4l2_open_fds() -> u64 {
    session::OPEN_FDS.load(core::sync::atomic::Ordering::Relaxed)
}

/// App mappings of fake buffers currently mapped (every `mmap` of a buffer not yet `munmap`ed,
/// whether or not its fd is still open).
#[no_mangle]
pub extern "C" fn fake_v4l2_mappings() -> u64 {
    session::MAPPINGS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Successful opens of fake devices since the process started.
#[no_mangle]
pub extern "C" fn fake_v4l2_opens() -> u64 {
    session::OPENS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Resolves glibc's functions when the object is loaded (see `real.rs`).
#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_at_load;

extern "C" fn resolve_at_load() {
    real::resolve_all();
}

/// Fails with ENOSYS (glibc's definition could not be found; never expected).
fn no_real<T>(failure: T) -> T {
    real::set_errno(libc::ENOSYS);
    failure
}

/// Opens a fake device if `path` names one, else calls `pass`.
///
/// # Safety
/// `path` is null or a NUL-terminated string (the caller's `open` contract).
unsafe fn open_or(path: *const c_char, flags: c_int, pass: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: as this function's contract says.
    if let Some((path, index)) = unsafe { fake_path(path) } {
        return match session::open(path, index, flags) {
            Ok(fd) => fd,
            Err(errno) => {
                real::set_errno(errno);
                -1
            }
        };
    }
    pass()
}

/// `(path, index in FAKE_V4L2_DEVICES)` if `path` is a fake device. Touches nothing when the
/// variable is unset.
///
/// # Safety
/// `path` is null or a NUL-terminated string that outlives `'a`.
unsafe fn fake_path<'a>(path: *const c_char) -> Option<(&'a [u8], usize)> {
    if path.is_null() || !config::with_env(c"FAKE_V4L2_DEVICES", |v| v.is_some()) {
        return None;
    }
    // SAFETY: non-null and NUL-terminated, per this function's contract.
    let path = unsafe { CStr::from_ptr(path) }.to_bytes();
    Some((path, config::device_index(path)?))
}

// The variadic C functions (`open`, `openat`, `ioctl`, `syscall`) are defined here with fixed
// trailing arguments, because stable Rust cannot define variadic functions. That is sound on
// the ABIs this targets: on x86_64 SysV, aarch64 Linux (AAPCS64 as Linux uses it) and armv7
// EABI, variadic integer and pointer arguments travel in exactly the registers and stack slots
// that fixed arguments of the same types would, so the callee reads what the caller passed.
// When the caller passed fewer arguments (`open` without a mode), the extra parameters read
// whatever is in those registers or slots: harmless, since they are only forwarded, and glibc
// ignores them just as it would. glibc's own definitions are called back through pointers
// typed as variadic, which is how variadic functions must be called.

/// Intercepted `open(path, flags, mode)`.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: the caller's `open` contract: `path` is a NUL-terminated string.
    unsafe {
        open_or(path, flags, || match real::open() {
            Some(f) => f(path, flags, mode),
            None => no_real(-1),
        })
    }
}

/// Intercepted `open64` (the same as `open` on 64-bit targets).
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::open64() {
            Some(f) => f(path, flags, mode),
            None => no_real(-1),
        })
    }
}

/// Intercepted `openat`: fake paths are matched as given (absolute paths ignore `dirfd`).
#[no_mangle]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::openat() {
            Some(f) => f(dirfd, path, flags, mode),
            None => no_real(-1),
        })
    }
}

/// Intercepted `openat64`.
#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::openat64() {
            Some(f) => f(dirfd, path, flags, mode),
            None => no_real(-1),
        })
    }
}

/// Intercepted `__open_2` (what `open` becomes under `_FORTIFY_SOURCE`).
#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::open_2() {
            Some(f) => f(path, flags),
            None => no_real(-1),
        })
    }
}

/// Intercepted `__open64_2`.
#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::open64_2() {
            Some(f) => f(path, flags),
            None => no_real(-1),
        })
    }
}

/// Intercepted `__openat_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::openat_2() {
            Some(f) => f(dirfd, path, flags),
            None => no_real(-1),
        })
    }
}

/// Intercepted `__openat64_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    unsafe {
        open_or(path, flags, || match real::openat64_2() {
            Some(f) => f(dirfd, path, flags),
            None => no_real(-1),
        })
    }
}

/// Intercepted `close`: ends the session of a fake fd, then closes the fd.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    session::close(fd).unwrap_or_else(|| real::close_fd(fd))
}

/// Intercepted `ioctl(fd, request, arg)` (glibc's prototype: `unsigned long request`).
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    // The kernel compares request numbers as 32-bit values; so does the fake.
    // SAFETY: the caller's ioctl contract: `arg` points to the struct `request` names.
    if let Some(result) = unsafe { session::ioctl(fd, request as u32, arg) } {
        return result;
    }
    match real::ioctl() {
        // SAFETY: forwarding the caller's arguments unchanged.
        Some(f) => unsafe { f(fd, request, arg) },
        None => no_real(-1),
    }
}

/// Intercepted `syscall(number, a1, ..., a6)`: the `v4l` crate issues ioctls as
/// `syscall(SYS_ioctl, fd, request, arg)`. Everything else (Rust's std uses it for futexes)
/// goes straight to glibc, without a lock or an allocation.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if number == libc::SYS_ioctl {
        // SAFETY: as in `ioctl`: a3 is the argument pointer the caller passed.
        if let Some(result) = unsafe { session::ioctl(a1 as c_int, a2 as u32, a3 as *mut c_void) } {
            return c_long::from(result);
        }
    }
    match real::syscall() {
        // SAFETY: forwarding the caller's arguments unchanged; the kernel reads only as many
        // as the system call takes.
        Some(f) => unsafe { f(number, a1, a2, a3, a4, a5, a6) },
        None => no_real(-1),
    }
}

/// The app side of `mmap`/`mmap64` on a fake fd: `None` to pass through.
fn map_fake(
    fd: c_int,
    offset: i64,
    length: usize,
    map: impl FnOnce() -> *mut c_void,
) -> Option<*mut c_void> {
    if fd < 0 {
        return None;
    }
    Some(match session::mmap(fd, offset, length, map)? {
        Ok(ptr) => ptr,
        Err(errno) => {
            real::set_errno(errno);
            libc::MAP_FAILED
        }
    })
}

/// Intercepted `mmap`: a fake fd's buffers map only at the offsets QUERYBUF reports.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    length: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    let Some(real) = real::mmap() else {
        return no_real(libc::MAP_FAILED);
    };
    // SAFETY: forwarding the caller's arguments unchanged (the caller's mmap contract).
    let map = || unsafe { real(addr, length, prot, flags, fd, offset) };
    // off_t is 32 bits on armv7 and 64 bits elsewhere.
    #[allow(clippy::useless_conversion)]
    let offset = i64::from(offset);
    match map_fake(fd, offset, length, map) {
        Some(result) => result,
        None => map(),
    }
}

/// Intercepted `mmap64`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    length: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off64_t,
) -> *mut c_void {
    let Some(real) = real::mmap64() else {
        return no_real(libc::MAP_FAILED);
    };
    // SAFETY: as in `mmap`.
    let map = || unsafe { real(addr, length, prot, flags, fd, offset) };
    match map_fake(fd, offset, length, map) {
        Some(result) => result,
        None => map(),
    }
}

/// Intercepted `munmap`: keeps the count of mapped fake buffers.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, length: usize) -> c_int {
    let Some(real) = real::munmap() else {
        return no_real(-1);
    };
    // SAFETY: forwarding the caller's arguments unchanged.
    session::munmap(addr as usize, length, || unsafe { real(addr, length) })
}

/// Entries of a `poll` array examined for fake fds.
const POLL_FAKE_LIMIT: usize = 256;

/// Intercepted `poll`: fake fds are ready when a filled buffer waits; real fds in the same
/// array are polled for real.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    let Some(real) = real::poll() else {
        return no_real(-1);
    };
    let n = (nfds as usize).min(POLL_FAKE_LIMIT);
    let entries = if fds.is_null() || n == 0 {
        &mut [][..]
    } else {
        // SAFETY: the caller's poll contract: `fds` points to `nfds` entries (n <= nfds).
        unsafe { core::slice::from_raw_parts_mut(fds, n) }
    };
    if !entries.iter().any(|p| session::is_fake(p.fd)) {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(fds, nfds, timeout) };
    }
    let deadline = u64::try_from(timeout)
        .ok()
        .map(|ms| session::now_ns() + ms * 1_000_000);
    let mut fake = [false; POLL_FAKE_LIMIT];
    let mut revents = [0i16; POLL_FAKE_LIMIT];
    loop {
        let now = session::now_ns();
        let mut wake = deadline
            .unwrap_or(u64::MAX)
            .min(now + session::WAIT_SLICE_NS);
        let (mut ready, mut any_real) = (0, false);
        for (i, p) in entries.iter().enumerate() {
            match session::poll_state(p.fd, p.events) {
                Some((r, next)) => {
                    (fake[i], revents[i]) = (true, r);
                    ready += c_int::from(r != 0);
                    wake = wake.min(next.unwrap_or(u64::MAX));
                }
                None => (fake[i], any_real) = (false, any_real || p.fd >= 0),
            }
        }
        any_real |= nfds as usize > n;
        if any_real {
            // Hide the fake fds from the real poll (negative fds are ignored), then restore.
            for (p, _) in entries.iter_mut().zip(fake).filter(|(_, f)| *f) {
                p.fd = !p.fd;
            }
            let wait_ms = if ready > 0 {
                0
            } else {
                wake.saturating_sub(now).div_ceil(1_000_000) as c_int
            };
            // SAFETY: the same array, with fake entries disabled; `entries` is not used until
            // the call returns.
            let real_ready = unsafe { real(entries.as_mut_ptr(), nfds, wait_ms) };
            for (i, p) in entries.iter_mut().enumerate().filter(|(i, _)| fake[*i]) {
                p.fd = !p.fd;
                p.revents = revents[i];
            }
            if real_ready < 0 {
                return -1;
            }
            ready += real_ready;
        } else {
            for (i, p) in entries.iter_mut().enumerate() {
                p.revents = revents[i];
            }
        }
        if ready > 0 || deadline.is_some_and(|d| session::now_ns() >= d) {
            return ready;
        }
        if !any_real {
            session::sleep_until(wake);
        }
    }
}

/// Intercepted `select`: a fake fd in the read set is ready when a filled buffer waits (or on
/// error, as select reports errors); fake fds are never writable or exceptional. Real fds in
/// the sets are selected for real.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let Some(real) = real::select() else {
        return no_real(-1);
    };
    let nfds_clamped = nfds.clamp(0, libc::FD_SETSIZE as c_int);
    // SAFETY: the caller's select contract: each set pointer is null or valid.
    let sets =
        unsafe { [readfds.as_ref(), writefds.as_ref(), exceptfds.as_ref()] }.map(|s| s.copied());
    // SAFETY: as above.
    let deadline = unsafe { timeout.as_ref() }.map(|tv| {
        session::now_ns()
            + tv.tv_sec.max(0) as u64 * 1_000_000_000
            + tv.tv_usec.max(0) as u64 * 1000
    });
    let in_set = |set: &Option<libc::fd_set>, fd: c_int| {
        // SAFETY: `fd` is in 0..FD_SETSIZE (checked by the callers).
        set.as_ref()
            .is_some_and(|s| unsafe { libc::FD_ISSET(fd, s) })
    };
    let mut any_fake = false;
    session::for_each_fake_fd(|fd| {
        any_fake |= fd < nfds_clamped && sets.iter().any(|s| in_set(s, fd));
    });
    if !any_fake {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(nfds, readfds, writefds, exceptfds, timeout) };
    }
    loop {
        let now = session::now_ns();
        let mut wake = deadline
            .unwrap_or(u64::MAX)
            .min(now + session::WAIT_SLICE_NS);
        // What the real select sees: the caller's sets without the fake fds.
        let mut real_sets = sets;
        // SAFETY: a zeroed fd_set is an empty set.
        let mut ready_read: libc::fd_set = unsafe { core::mem::zeroed() };
        let mut ready = 0;
        session::for_each_fake_fd(|fd| {
            if fd >= nfds_clamped {
                return;
            }
            for set in real_sets.iter_mut().flatten() {
                // SAFETY: fd in 0..FD_SETSIZE.
                unsafe { libc::FD_CLR(fd, set) };
            }
            if let Some((revents, next)) = session::poll_state(fd, libc::POLLIN) {
                if revents != 0 && in_set(&sets[0], fd) {
                    // SAFETY: fd in 0..FD_SETSIZE.
                    unsafe { libc::FD_SET(fd, &mut ready_read) };
                    ready += 1;
                }
                wake = wake.min(next.unwrap_or(u64::MAX));
            }
        });
        let any_real = (0..nfds_clamped).any(|fd| real_sets.iter().any(|s| in_set(s, fd)));
        if any_real {
            let wait = wake.saturating_sub(now);
            let mut tv = libc::timeval {
                tv_sec: if ready > 0 {
                    0
                } else {
                    (wait / 1_000_000_000) as libc::time_t
                },
                tv_usec: if ready > 0 {
                    0
                } else {
                    (wait % 1_000_000_000 / 1000) as libc::suseconds_t
                },
            };
            let [r, w, e] = real_sets.each_mut().map(|s| match s {
                Some(set) => set as *mut libc::fd_set,
                None => core::ptr::null_mut(),
            });
            // SAFETY: local copies of the caller's sets and a local timeout.
            let real_ready = unsafe { real(nfds, r, w, e, &mut tv) };
            if real_ready < 0 {
                return -1;
            }
            ready += real_ready;
        } else {
            // Nothing real to report: the copies become empty sets.
            for set in real_sets.iter_mut().flatten() {
                // SAFETY: FD_ZERO on a local set.
                unsafe { libc::FD_ZERO(set) };
            }
        }
        if ready > 0 || deadline.is_some_and(|d| session::now_ns() >= d) {
            if let Some(read) = real_sets[0].as_mut() {
                for fd in 0..nfds_clamped {
                    // SAFETY: fd in 0..FD_SETSIZE; both sets are local.
                    unsafe {
                        if libc::FD_ISSET(fd, &ready_read) {
                            libc::FD_SET(fd, read);
                        }
                    }
                }
            }
            for (out, result) in [readfds, writefds, exceptfds].into_iter().zip(real_sets) {
                if let (false, Some(result)) = (out.is_null(), result) {
                    // SAFETY: a non-null set pointer from the caller, valid per select's
                    // contract.
                    unsafe { *out = result };
                }
            }
            return ready;
        }
        if !any_real {
            session::sleep_until(wake);
        }
    }
}
