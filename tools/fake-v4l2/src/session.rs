//! One session per open of a fake device: its negotiated format, its buffers in a memfd, the
//! lazy frame clock and the scripted faults; plus the process-wide tables (sessions, app
//! mappings of fake buffers, devices that are "absent" after an unplug).
//!
//! Locks: each session slot has its own mutex, held only for the duration of one call and never
//! while sleeping. The mapping table is locked after a session (never the other way round).
//! Nothing on the per-frame path (QBUF, DQBUF, poll) allocates.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use v4l::v4l2::vidioc;
use v4l::v4l_sys::{
    timeval, v4l2_buffer, v4l2_capability, v4l2_captureparm, v4l2_fmtdesc, v4l2_format, v4l2_fract,
    v4l2_frmivalenum, v4l2_frmsize_discrete, v4l2_frmsizeenum, v4l2_input, v4l2_pix_format,
    v4l2_pix_format__bindgen_ty_1, v4l2_requestbuffers, v4l2_streamparm, v4l2_timecode,
};
use v4l::v4l_sys::{
    v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE as BUF_TYPE_CAPTURE,
    v4l2_field_V4L2_FIELD_NONE as FIELD_NONE,
    v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE as FRMIVAL_DISCRETE,
    v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE as FRMSIZE_DISCRETE,
    v4l2_memory_V4L2_MEMORY_MMAP as MEMORY_MMAP, V4L2_BUF_CAP_SUPPORTS_MMAP, V4L2_BUF_FLAG_DONE,
    V4L2_BUF_FLAG_QUEUED, V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC, V4L2_CAP_DEVICE_CAPS,
    V4L2_CAP_STREAMING, V4L2_CAP_TIMEPERFRAME, V4L2_CAP_VIDEO_CAPTURE, V4L2_FMT_FLAG_COMPRESSED,
    V4L2_INPUT_TYPE_CAMERA,
};

use super::config::{self, DeviceConfig};
use super::frames::{self, PixelFormat, Rendered};
use super::real;

/// Fake devices that can be open at once (a further open fails with EMFILE).
const MAX_SESSIONS: usize = 16;
/// Most buffers REQBUFS hands out.
const MAX_BUFFERS: usize = 32;
/// Fewest buffers REQBUFS hands out (as vb2 drivers insist on).
const MIN_BUFFERS: u32 = 2;
/// App mappings of fake buffers that can exist at once.
const MAX_MAPPINGS: usize = MAX_SESSIONS * MAX_BUFFERS;
/// Longest sleep between re-checks while waiting: another thread may QBUF, STREAMOFF or close.
pub(crate) const WAIT_SLICE_NS: u64 = 20_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

const QUERYCAP: u32 = vidioc::VIDIOC_QUERYCAP as u32;
const ENUM_FMT: u32 = vidioc::VIDIOC_ENUM_FMT as u32;
const G_FMT: u32 = vidioc::VIDIOC_G_FMT as u32;
const S_FMT: u32 = vidioc::VIDIOC_S_FMT as u32;
const TRY_FMT: u32 = vidioc::VIDIOC_TRY_FMT as u32;
const REQBUFS: u32 = vidioc::VIDIOC_REQBUFS as u32;
const QUERYBUF: u32 = vidioc::VIDIOC_QUERYBUF as u32;
const QBUF: u32 = vidioc::VIDIOC_QBUF as u32;
const DQBUF: u32 = vidioc::VIDIOC_DQBUF as u32;
const STREAMON: u32 = vidioc::VIDIOC_STREAMON as u32;
const STREAMOFF: u32 = vidioc::VIDIOC_STREAMOFF as u32;
const G_PARM: u32 = vidioc::VIDIOC_G_PARM as u32;
const S_PARM: u32 = vidioc::VIDIOC_S_PARM as u32;
const ENUMINPUT: u32 = vidioc::VIDIOC_ENUMINPUT as u32;
const G_INPUT: u32 = vidioc::VIDIOC_G_INPUT as u32;
const S_INPUT: u32 = vidioc::VIDIOC_S_INPUT as u32;
const ENUM_FRAMESIZES: u32 = vidioc::VIDIOC_ENUM_FRAMESIZES as u32;
const ENUM_FRAMEINTERVALS: u32 = vidioc::VIDIOC_ENUM_FRAMEINTERVALS as u32;
const G_PRIORITY: u32 = vidioc::VIDIOC_G_PRIORITY as u32;
const S_PRIORITY: u32 = vidioc::VIDIOC_S_PRIORITY as u32;
/// V4L2_PRIORITY_DEFAULT (the fake does not arbitrate priorities).
const PRIORITY_DEFAULT: u32 = 2;

/// Fake fds currently open.
pub(crate) static OPEN_FDS: AtomicU64 = AtomicU64::new(0);
/// Successful opens of fake devices so far.
pub(crate) static OPENS: AtomicU64 = AtomicU64::new(0);
/// App mappings of fake buffers currently mapped.
pub(crate) static MAPPINGS: AtomicU64 = AtomicU64::new(0);
/// Source of session ids (mappings outlive the fd, so they name their session by id).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Locks `m`, ignoring poisoning (a panic is caught and turned into EIO; the data stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * NS_PER_SEC + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (or a signal arrives; callers re-check).
pub(crate) fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / NS_PER_SEC) as libc::time_t,
        tv_nsec: (deadline_ns % NS_PER_SEC) as _,
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            core::ptr::null_mut(),
        )
    };
}

/// `(st_dev, st_ino)` of an open fd, to tell our memfd from a file that reused its number.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: `stat` is plain data, so all zeroes is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; fstat on any fd number is harmless.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// One entry of the session table. `fd` is published (>= 0) only while `session` holds the
/// session of that fd, so that every intercepted call can tell fake fds apart without a lock.
struct Slot {
    claimed: AtomicBool,
    fd: AtomicI32,
    session: Mutex<Option<Session>>,
}

static SLOTS: [Slot; MAX_SESSIONS] = [const {
    Slot {
        claimed: AtomicBool::new(false),
        fd: AtomicI32::new(-1),
        session: Mutex::new(None),
    }
}; MAX_SESSIONS];

/// The slot that publishes `fd`, if any (lock-free; the caller re-checks under the lock).
fn find(fd: c_int) -> Option<&'static Slot> {
    if fd < 0 {
        return None;
    }
    SLOTS.iter().find(|s| s.fd.load(Ordering::Acquire) == fd)
}

/// Whether `fd` looks like a fake fd (lock-free pre-check for the pass-through fast paths).
pub(crate) fn is_fake(fd: c_int) -> bool {
    find(fd).is_some()
}

/// Calls `f` for every published fake fd.
pub(crate) fn for_each_fake_fd(mut f: impl FnMut(c_int)) {
    for slot in &SLOTS {
        let fd = slot.fd.load(Ordering::Acquire);
        if fd >= 0 {
            f(fd);
        }
    }
}

/// Empties `slot` (whose session is in `guard`) and returns the session, unpublishing the fd
/// first so that no new call finds it.
fn vacate(slot: &Slot, mut guard: MutexGuard<'_, Option<Session>>) -> Option<Session> {
    slot.fd.store(-1, Ordering::Release);
    let session = guard.take();
    drop(guard);
    slot.claimed.store(false, Ordering::Release);
    if session.is_some() {
        OPEN_FDS.fetch_sub(1, Ordering::Relaxed);
    }
    session
}

/// Runs `f` on the session of `fd` under its lock; `None` if `fd` is not a fake fd. A session
/// whose fd was closed behind the fake's back (close_range, dup2 over it) is dropped here.
fn with_session<R>(fd: c_int, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
    let slot = find(fd)?;
    let mut guard = lock(&slot.session);
    let session = guard.as_mut().filter(|s| s.fd == fd)?;
    if identity(fd) != Some(session.identity) {
        drop(vacate(slot, guard));
        return None;
    }
    Some(f(session))
}

/// Opens a session for the fake device at `path` (position `index` in FAKE_V4L2_DEVICES):
/// the fd, or an errno.
pub(crate) fn open(path: &[u8], index: usize, flags: c_int) -> Result<c_int, c_int> {
    if absent::take(config::path_hash(path)) {
        return Err(libc::ENOENT);
    }
    let config = DeviceConfig::from_env(path, index);
    let slot = SLOTS
        .iter()
        .find(|s| {
            s.claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or(libc::EMFILE)?;
    let fd = match memfd(flags) {
        Ok(fd) => fd,
        Err(e) => {
            slot.claimed.store(false, Ordering::Release);
            return Err(e);
        }
    };
    // The kernel just handed out this number, so any other slot holding it is stale.
    for other in SLOTS.iter().filter(|s| !core::ptr::eq(*s, slot)) {
        if other.fd.load(Ordering::Acquire) == fd {
            drop(vacate(other, lock(&other.session)));
        }
    }
    let Some(identity) = identity(fd) else {
        let e = real::errno();
        real::close_fd(fd);
        slot.claimed.store(false, Ordering::Release);
        return Err(e);
    };
    *lock(&slot.session) = Some(Session::new(fd, identity, config));
    slot.fd.store(fd, Ordering::Release);
    OPEN_FDS.fetch_add(1, Ordering::Relaxed);
    OPENS.fetch_add(1, Ordering::Relaxed);
    Ok(fd)
}

/// A memfd standing in for the device node: a real fd, so leaks show in /proc/self/fd.
fn memfd(flags: c_int) -> Result<c_int, c_int> {
    let mfd_flags = if flags & libc::O_CLOEXEC != 0 {
        libc::MFD_CLOEXEC
    } else {
        0
    };
    // SAFETY: a NUL-terminated name and valid flags.
    let fd = unsafe { libc::memfd_create(c"fake-v4l2".as_ptr(), mfd_flags) };
    if fd < 0 {
        return Err(real::errno());
    }
    // SAFETY: F_SETFL on the fd just created; O_NONBLOCK then behaves as on a device node.
    if flags & libc::O_NONBLOCK != 0
        && unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0
    {
        let e = real::errno();
        real::close_fd(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Closes `fd` if it is a fake fd (`Some(close's return value)`), else `None`.
pub(crate) fn close(fd: c_int) -> Option<c_int> {
    let slot = find(fd)?;
    let guard = lock(&slot.session);
    let session = guard.as_ref().filter(|s| s.fd == fd)?;
    let ours = identity(fd) == Some(session.identity);
    // Dropping the session unmaps the fake's own view of the buffers; app mappings stay valid.
    drop(vacate(slot, guard));
    // A stale session's fd number now belongs to another file, which the caller closes.
    ours.then(|| real::close_fd(fd))
}

/// The result of one ioctl on a session.
enum Outcome {
    /// Success, with this return value.
    Done(c_int),
    /// Failure with this errno.
    Fail(c_int),
    /// A blocking DQBUF has nothing yet: wait until about this CLOCK_MONOTONIC time, then retry.
    WaitUntil(u64),
}

/// Handles ioctl `request` on `fd` if it is a fake fd: `None` to pass it through, else the
/// return value (with errno set on failure).
///
/// # Safety
/// `arg` is the ioctl's third argument: null or a pointer to the struct `request` names, valid
/// for reads and writes, as the ioctl contract requires of the caller.
pub(crate) unsafe fn ioctl(fd: c_int, request: u32, arg: *mut c_void) -> Option<c_int> {
    let mut first = true;
    loop {
        let outcome = with_session(fd, |s| {
            // A panic must not cross the C boundary; the caller sees EIO instead.
            // SAFETY: `arg` as this function's contract says.
            catch_unwind(AssertUnwindSafe(|| unsafe { s.ioctl(request, arg) }))
                .unwrap_or(Outcome::Fail(libc::EIO))
        });
        let outcome = match outcome {
            Some(outcome) => outcome,
            None if first => return None,
            // Closed by another thread while this one waited.
            None => Outcome::Fail(libc::EBADF),
        };
        first = false;
        match outcome {
            Outcome::Done(value) => return Some(value),
            Outcome::Fail(errno) => {
                real::set_errno(errno);
                return Some(-1);
            }
            Outcome::WaitUntil(t) => sleep_until(t.min(now_ns() + WAIT_SLICE_NS)),
        }
    }
}

/// What poll reports for a fake fd now: `(revents, when the next frame is due)`, or `None` if
/// `fd` is not a fake fd.
pub(crate) fn poll_state(fd: c_int, events: i16) -> Option<(i16, Option<u64>)> {
    with_session(fd, |s| {
        s.advance(now_ns());
        if s.unplugged {
            (libc::POLLERR | libc::POLLHUP, None)
        } else if s.failed_io || !s.streaming {
            // As vb2: nothing to wait for when not streaming or after an error.
            (libc::POLLERR, None)
        } else if !s.bufs.done.is_empty() {
            (events & (libc::POLLIN | libc::POLLRDNORM), None)
        } else {
            (0, s.next_due())
        }
    })
}

/// Validates and performs an app `mmap` of a fake buffer: `None` if `fd` is not a fake fd,
/// else the mapping or an errno. `map` performs the real mmap.
pub(crate) fn mmap(
    fd: c_int,
    offset: i64,
    length: usize,
    map: impl FnOnce() -> *mut c_void,
) -> Option<Result<*mut c_void, c_int>> {
    with_session(fd, |s| {
        if s.unplugged {
            return Err(libc::ENODEV);
        }
        let aligned = s.bufs.aligned as i64;
        let valid = s.bufs.count > 0
            && offset >= 0
            && offset % aligned == 0
            && offset / aligned < s.bufs.count as i64
            && length > 0
            && length <= s.bufs.aligned;
        if !valid {
            return Err(libc::EINVAL);
        }
        // Under the session lock, so REQBUFS cannot shrink the memfd in between.
        let ptr = map();
        if ptr != libc::MAP_FAILED && !mappings::record(ptr as usize, length, s.id) {
            if let Some(munmap) = real::munmap() {
                // SAFETY: unmapping the mapping just made, which nobody else has seen.
                unsafe { munmap(ptr, length) };
            }
            return Err(libc::ENOMEM);
        }
        Ok(ptr)
    })
}

/// An app `munmap`: performs it with `unmap` and forgets the fake mappings it removed.
pub(crate) fn munmap(addr: usize, length: usize, unmap: impl FnOnce() -> c_int) -> c_int {
    if MAPPINGS.load(Ordering::Acquire) == 0 {
        return unmap();
    }
    mappings::unmap(addr, length, unmap)
}

/// App mappings of fake buffers: who maps what, so that REQBUFS can refuse to free mapped
/// buffers (EBUSY, as vb2 does) and tests can see that every mapping was undone.
mod mappings {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    struct Entry {
        addr: usize,
        length: usize,
        session: u64,
    }

    const FREE: Entry = Entry {
        addr: 0,
        length: 0,
        session: 0,
    };

    static TABLE: Mutex<[Entry; MAX_MAPPINGS]> = Mutex::new([FREE; MAX_MAPPINGS]);

    /// Remembers a mapping; `false` if the table is full.
    pub(super) fn record(addr: usize, length: usize, session: u64) -> bool {
        let mut table = lock(&TABLE);
        let Some(entry) = table.iter_mut().find(|e| e.addr == 0) else {
            return false;
        };
        *entry = Entry {
            addr,
            length,
            session,
        };
        MAPPINGS.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Mappings of `session` still mapped.
    pub(super) fn count(session: u64) -> usize {
        lock(&TABLE)
            .iter()
            .filter(|e| e.addr != 0 && e.session == session)
            .count()
    }

    /// Runs `unmap` and, if it succeeded, forgets every mapping that overlaps
    /// `[addr, addr + length)` (a partly unmapped buffer counts as unmapped). The table stays
    /// locked throughout so that a new mapping at a just-freed address is not forgotten.
    pub(super) fn unmap(addr: usize, length: usize, unmap: impl FnOnce() -> c_int) -> c_int {
        let mut table = lock(&TABLE);
        let result = unmap();
        if result == 0 {
            let end = addr.saturating_add(length.max(1));
            for entry in table
                .iter_mut()
                .filter(|e| e.addr != 0 && e.addr < end && e.addr + e.length > addr)
            {
                *entry = FREE;
                MAPPINGS.fetch_sub(1, Ordering::AcqRel);
            }
        }
        result
    }
}

/// Device paths that are "gone" for a number of opens after an unplug.
mod absent {
    use super::*;

    /// `(path hash, opens left to fail)`; a zero count is a free entry.
    static TABLE: Mutex<[(u64, u32); MAX_SESSIONS]> = Mutex::new([(0, 0); MAX_SESSIONS]);

    /// The next `opens` opens of the path with this hash fail with ENOENT.
    pub(super) fn set(hash: u64, opens: u32) {
        if opens == 0 {
            return;
        }
        let mut table = lock(&TABLE);
        let index = table
            .iter()
            .position(|e| e.1 > 0 && e.0 == hash)
            .or_else(|| table.iter().position(|e| e.1 == 0));
        if let Some(i) = index {
            table[i] = (hash, opens);
        }
    }

    /// Whether this open of the path must fail (and counts it).
    pub(super) fn take(hash: u64) -> bool {
        let mut table = lock(&TABLE);
        match table.iter_mut().find(|e| e.1 > 0 && e.0 == hash) {
            Some(entry) => {
                entry.1 -= 1;
                true
            }
            None => false,
        }
    }
}

/// The fake's own shared mapping of the whole memfd, through which it writes frames.
#[derive(Debug)]
struct OwnMapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one session and only touched under that session's lock.
unsafe impl Send for OwnMapping {}

impl Drop for OwnMapping {
    fn drop(&mut self) {
        if let Some(munmap) = real::munmap() {
            // SAFETY: the fake created this mapping and nothing else refers to it.
            unsafe { munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// Who holds a buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Owner {
    /// The app (after REQBUFS, DQBUF or STREAMOFF).
    #[default]
    App,
    /// Queued, waiting for a frame.
    Queued,
    /// Filled, waiting for DQBUF.
    Done,
}

/// One buffer's state and the metadata of the frame it holds.
#[derive(Debug, Clone, Copy, Default)]
struct Buffer {
    owner: Owner,
    bytesused: u32,
    sequence: u32,
    timestamp_ns: u64,
}

/// A FIFO of buffer indices with fixed capacity (no allocation).
#[derive(Debug, Default)]
struct Fifo {
    items: [u8; MAX_BUFFERS],
    head: usize,
    len: usize,
}

impl Fifo {
    fn push(&mut self, index: usize) {
        if self.len < MAX_BUFFERS {
            self.items[(self.head + self.len) % MAX_BUFFERS] = index as u8;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let index = self.items[self.head];
        self.head = (self.head + 1) % MAX_BUFFERS;
        self.len -= 1;
        Some(usize::from(index))
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// The buffers of a session, all in its memfd at `index * aligned`.
#[derive(Debug, Default)]
struct Buffers {
    count: usize,
    /// Buffer length reported to the app (sizeimage at REQBUFS time).
    length: u32,
    /// `length` rounded up to the page size: the stride of buffers in the memfd.
    aligned: usize,
    memory: Option<OwnMapping>,
    state: [Buffer; MAX_BUFFERS],
    queued: Fifo,
    done: Fifo,
}

/// The state of one open of a fake device.
#[derive(Debug)]
struct Session {
    id: u64,
    fd: c_int,
    identity: (u64, u64),
    config: DeviceConfig,
    format: PixelFormat,
    width: u32,
    height: u32,
    fps: u32,
    bufs: Buffers,
    streaming: bool,
    /// CLOCK_MONOTONIC at STREAMON: frame `k` is due at `start_ns + k * period`.
    start_ns: u64,
    /// Frames produced since STREAMON (the next sequence number), dropped ones included.
    produced: u64,
    /// Frames filled into buffers in this open (drives `stall` and `short`).
    filled: u64,
    /// Successful DQBUFs in this open (drives `unplug` and `eio`).
    delivered: u64,
    unplugged: bool,
    failed_io: bool,
    rendered: Rendered,
}

/// A zero-padded copy of `text` for a fixed-size C string field.
fn c_text<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = text.len().min(N - 1);
    out[..n].copy_from_slice(&text[..n]);
    out
}

/// `arg` as a reference to the ioctl's argument struct.
///
/// # Safety
/// `arg` must be null or point to a `T` valid for reads and writes for `'a`.
unsafe fn arg_mut<'a, T>(arg: *mut c_void) -> Result<&'a mut T, c_int> {
    let ptr = arg.cast::<T>();
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null and aligned, and valid per this function's contract. The V4L2 structs
    // are plain integers (and raw pointers in unions), so any bytes are a valid value.
    Ok(unsafe { &mut *ptr })
}

impl Session {
    fn new(fd: c_int, identity: (u64, u64), config: DeviceConfig) -> Session {
        let (&format, &(width, height)) = (
            config.formats.first().unwrap_or(&PixelFormat::Yuyv),
            config.sizes.first().unwrap_or(&(640, 480)),
        );
        Session {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            fd,
            identity,
            format,
            width,
            height,
            fps: config.default_fps,
            config,
            bufs: Buffers::default(),
            streaming: false,
            start_ns: 0,
            produced: 0,
            filled: 0,
            delivered: 0,
            unplugged: false,
            failed_io: false,
            rendered: Rendered::default(),
        }
    }

    /// Dispatches one ioctl.
    ///
    /// # Safety
    /// As [`ioctl`]: `arg` is null or points to the struct `request` names.
    unsafe fn ioctl(&mut self, request: u32, arg: *mut c_void) -> Outcome {
        if self.unplugged {
            return Outcome::Fail(libc::ENODEV);
        }
        // SAFETY (every arm): the request number names the argument's type (its size is encoded
        // in it) and `arg` points to one, per this function's contract; `arg_mut` rejects null
        // and misaligned pointers.
        let result = unsafe {
            match request {
                QUERYCAP => arg_mut(arg).map(|c| self.querycap(c)),
                ENUM_FMT => arg_mut(arg).and_then(|d| self.enum_fmt(d)),
                ENUM_FRAMESIZES => arg_mut(arg).and_then(|s| self.enum_framesizes(s)),
                ENUM_FRAMEINTERVALS => arg_mut(arg).and_then(|i| self.enum_frameintervals(i)),
                G_FMT => arg_mut(arg).and_then(|f| self.g_fmt(f)),
                S_FMT => arg_mut(arg).and_then(|f| self.s_fmt(f, true)),
                TRY_FMT => arg_mut(arg).and_then(|f| self.s_fmt(f, false)),
                G_PARM => arg_mut(arg).and_then(|p| self.parm(p, false)),
                S_PARM => arg_mut(arg).and_then(|p| self.parm(p, true)),
                REQBUFS => arg_mut(arg).and_then(|r| self.reqbufs(r)),
                QUERYBUF => arg_mut(arg).and_then(|b| self.querybuf(b)),
                QBUF => arg_mut(arg).and_then(|b| self.qbuf(b)),
                DQBUF => return arg_mut(arg).map_or_else(Outcome::Fail, |b| self.dqbuf(b)),
                STREAMON => arg_mut(arg).and_then(|t| self.streamon(*t)),
                STREAMOFF => arg_mut(arg).and_then(|t| self.streamoff(*t)),
                ENUMINPUT => arg_mut(arg).and_then(enuminput),
                G_INPUT => arg_mut::<c_int>(arg).map(|i| *i = 0),
                S_INPUT => arg_mut::<c_int>(arg).and_then(|i| ok_if(*i == 0)),
                G_PRIORITY => arg_mut::<u32>(arg).map(|p| *p = PRIORITY_DEFAULT),
                S_PRIORITY => arg_mut::<u32>(arg).and_then(|p| ok_if(*p <= 3)),
                _ => Err(libc::ENOTTY),
            }
        };
        match result {
            Ok(()) => Outcome::Done(0),
            Err(errno) => Outcome::Fail(errno),
        }
    }

    fn querycap(&self, c: &mut v4l2_capability) {
        c.driver = c_text(b"fake-v4l2");
        c.card = c_text(b"Fake Camera");
        c.bus_info = [0; 32];
        let _ = write!(&mut c.bus_info[..31], "fake:{}", self.config.index);
        c.version = (6 << 16) | (1 << 8);
        c.device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c.capabilities = c.device_caps | V4L2_CAP_DEVICE_CAPS;
        c.reserved = [0; 3];
    }

    fn enum_fmt(&self, d: &mut v4l2_fmtdesc) -> Result<(), c_int> {
        ok_if(d.type_ == BUF_TYPE_CAPTURE)?;
        let format = *self
            .config
            .formats
            .get(d.index as usize)
            .ok_or(libc::EINVAL)?;
        d.flags = if format.compressed() {
            V4L2_FMT_FLAG_COMPRESSED
        } else {
            0
        };
        d.description = c_text(format.description());
        d.pixelformat = format.fourcc();
        d.mbus_code = 0;
        d.reserved = [0; 3];
        Ok(())
    }

    fn offers(&self, fourcc: u32) -> bool {
        self.config.formats.iter().any(|f| f.fourcc() == fourcc)
    }

    fn enum_framesizes(&self, s: &mut v4l2_frmsizeenum) -> Result<(), c_int> {
        ok_if(self.offers(s.pixel_format))?;
        let &(width, height) = self
            .config
            .sizes
            .get(s.index as usize)
            .ok_or(libc::EINVAL)?;
        s.type_ = FRMSIZE_DISCRETE;
        s.__bindgen_anon_1.discrete = v4l2_frmsize_discrete { width, height };
        s.reserved = [0; 2];
        Ok(())
    }

    fn enum_frameintervals(&self, i: &mut v4l2_frmivalenum) -> Result<(), c_int> {
        ok_if(self.offers(i.pixel_format) && self.config.sizes.contains(&(i.width, i.height)))?;
        let &fps = self
            .config
            .rates
            .get(i.index as usize)
            .ok_or(libc::EINVAL)?;
        i.type_ = FRMIVAL_DISCRETE;
        i.__bindgen_anon_1.discrete = v4l2_fract {
            numerator: 1,
            denominator: fps,
        };
        i.reserved = [0; 2];
        Ok(())
    }

    /// The current format as V4L2 describes it.
    fn pix(format: PixelFormat, width: u32, height: u32) -> v4l2_pix_format {
        let (bytesperline, sizeimage) = format.layout(width, height);
        let (colorspace, quantization) = format.colour();
        v4l2_pix_format {
            width,
            height,
            pixelformat: format.fourcc(),
            field: FIELD_NONE,
            bytesperline,
            sizeimage,
            colorspace,
            priv_: 0,
            flags: 0,
            __bindgen_anon_1: v4l2_pix_format__bindgen_ty_1 { ycbcr_enc: 0 },
            quantization,
            xfer_func: 0,
        }
    }

    fn g_fmt(&self, f: &mut v4l2_format) -> Result<(), c_int> {
        ok_if(f.type_ == BUF_TYPE_CAPTURE)?;
        f.fmt.pix = Self::pix(self.format, self.width, self.height);
        Ok(())
    }

    /// S_FMT (`set`) or TRY_FMT: the nearest offered size; an unknown fourcc becomes the first
    /// format, as drivers do.
    fn s_fmt(&mut self, f: &mut v4l2_format, set: bool) -> Result<(), c_int> {
        ok_if(f.type_ == BUF_TYPE_CAPTURE)?;
        if set && (self.streaming || self.bufs.count > 0) {
            return Err(libc::EBUSY);
        }
        // SAFETY: reading the `pix` member of a capture format; it is plain u32s.
        let wanted = unsafe { f.fmt.pix };
        let format = PixelFormat::from_fourcc(wanted.pixelformat)
            .filter(|p| self.config.formats.contains(p))
            .or(self.config.formats.first().copied())
            .ok_or(libc::EINVAL)?;
        let distance = |&(w, h): &(u32, u32)| {
            w.abs_diff(wanted.width) as u64 + h.abs_diff(wanted.height) as u64
        };
        let &(width, height) = self
            .config
            .sizes
            .iter()
            .min_by_key(|s| distance(s))
            .ok_or(libc::EINVAL)?;
        if set {
            (self.format, self.width, self.height) = (format, width, height);
        }
        f.fmt.pix = Self::pix(format, width, height);
        Ok(())
    }

    /// G_PARM, or S_PARM (`set`: the offered interval nearest the one asked for; a zero
    /// fraction means the default rate).
    fn parm(&mut self, p: &mut v4l2_streamparm, set: bool) -> Result<(), c_int> {
        ok_if(p.type_ == BUF_TYPE_CAPTURE)?;
        if set {
            if self.streaming {
                return Err(libc::EBUSY);
            }
            // SAFETY: reading the `capture` member of a capture stream's parameters; plain u32s.
            let asked = unsafe { p.parm.capture.timeperframe };
            self.fps = if asked.numerator == 0 || asked.denominator == 0 {
                self.config.default_fps
            } else {
                let interval = f64::from(asked.numerator) / f64::from(asked.denominator);
                let off = |fps: &u32| ((1.0 / f64::from(*fps) - interval).abs() * 1e9) as u64;
                self.config
                    .rates
                    .iter()
                    .copied()
                    .min_by_key(off)
                    .unwrap_or(self.fps)
            };
        }
        p.parm.capture = v4l2_captureparm {
            capability: V4L2_CAP_TIMEPERFRAME,
            capturemode: 0,
            timeperframe: v4l2_fract {
                numerator: 1,
                denominator: self.fps,
            },
            extendedmode: 0,
            readbuffers: 0,
            reserved: [0; 4],
        };
        Ok(())
    }

    /// Frees the buffers (unmaps the fake's view and empties the memfd).
    fn free_buffers(&mut self) {
        self.bufs.memory = None;
        self.bufs.count = 0;
        self.bufs.queued.clear();
        self.bufs.done.clear();
        // SAFETY: truncating our own memfd; no mapping of it remains (checked by the caller).
        unsafe { libc::ftruncate(self.fd, 0) };
    }

    fn reqbufs(&mut self, r: &mut v4l2_requestbuffers) -> Result<(), c_int> {
        ok_if(r.type_ == BUF_TYPE_CAPTURE && r.memory == MEMORY_MMAP)?;
        if self.streaming || mappings::count(self.id) > 0 {
            return Err(libc::EBUSY);
        }
        self.free_buffers();
        r.capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        r.flags = 0;
        r.reserved = [0; 3];
        if r.count == 0 {
            return Ok(());
        }
        let count = r.count.clamp(MIN_BUFFERS, MAX_BUFFERS as u32) as usize;
        let (_, length) = self.format.layout(self.width, self.height);
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let aligned = (length as usize).div_ceil(page) * page;
        let total = count * aligned;
        // SAFETY: sizing our own memfd.
        if unsafe { libc::ftruncate(self.fd, total as libc::off_t) } != 0 {
            return Err(real::errno());
        }
        let mmap = real::mmap().ok_or(libc::ENOSYS)?;
        // SAFETY: a fresh shared mapping of `total` bytes of the memfd, which is that long.
        let ptr = unsafe {
            mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = real::errno();
            self.free_buffers();
            return Err(e);
        }
        self.bufs.memory = Some(OwnMapping {
            ptr: ptr.cast(),
            len: total,
        });
        self.bufs.count = count;
        self.bufs.length = length;
        self.bufs.aligned = aligned;
        self.bufs.state = [Buffer::default(); MAX_BUFFERS];
        r.count = count as u32;
        Ok(())
    }

    /// Fills `b` with the state of buffer `index` (which is < count).
    fn describe(&self, b: &mut v4l2_buffer, index: usize) {
        let buf = &self.bufs.state[index];
        b.index = index as u32;
        b.type_ = BUF_TYPE_CAPTURE;
        b.bytesused = buf.bytesused;
        b.flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
            | match buf.owner {
                Owner::App => 0,
                Owner::Queued => V4L2_BUF_FLAG_QUEUED,
                Owner::Done => V4L2_BUF_FLAG_DONE,
            };
        b.field = FIELD_NONE;
        b.timestamp = timeval {
            tv_sec: (buf.timestamp_ns / NS_PER_SEC) as _,
            tv_usec: (buf.timestamp_ns % NS_PER_SEC / 1000) as _,
        };
        b.timecode = v4l2_timecode {
            type_: 0,
            flags: 0,
            frames: 0,
            seconds: 0,
            minutes: 0,
            hours: 0,
            userbits: [0; 4],
        };
        b.sequence = buf.sequence;
        b.memory = MEMORY_MMAP;
        b.m.offset = (index * self.bufs.aligned) as u32;
        b.length = self.bufs.length;
        b.reserved2 = 0;
    }

    /// The index of the buffer `b` names, checking type, memory and range.
    fn buffer_index(&self, b: &v4l2_buffer) -> Result<usize, c_int> {
        let index = b.index as usize;
        ok_if(b.type_ == BUF_TYPE_CAPTURE && b.memory == MEMORY_MMAP && index < self.bufs.count)?;
        Ok(index)
    }

    fn querybuf(&self, b: &mut v4l2_buffer) -> Result<(), c_int> {
        ok_if(b.type_ == BUF_TYPE_CAPTURE && (b.index as usize) < self.bufs.count)?;
        self.describe(b, b.index as usize);
        Ok(())
    }

    fn qbuf(&mut self, b: &mut v4l2_buffer) -> Result<(), c_int> {
        let index = self.buffer_index(b)?;
        ok_if(self.bufs.state[index].owner == Owner::App)?;
        self.bufs.state[index].owner = Owner::Queued;
        self.bufs.queued.push(index);
        self.describe(b, index);
        Ok(())
    }

    fn dqbuf(&mut self, b: &mut v4l2_buffer) -> Outcome {
        if b.type_ != BUF_TYPE_CAPTURE || b.memory != MEMORY_MMAP {
            return Outcome::Fail(libc::EINVAL);
        }
        if self.failed_io {
            return Outcome::Fail(libc::EIO);
        }
        if !self.streaming {
            return Outcome::Fail(libc::EINVAL);
        }
        self.advance(now_ns());
        if let Some(index) = self.bufs.done.pop() {
            // Described once back with the app: DONE is clear after DQBUF, as vb2 does it.
            self.bufs.state[index].owner = Owner::App;
            self.describe(b, index);
            self.delivered += 1;
            self.check_faults();
            return Outcome::Done(0);
        }
        // SAFETY: F_GETFL on our own open memfd.
        let flags = unsafe { libc::fcntl(self.fd, libc::F_GETFL) };
        if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
            Outcome::Fail(libc::EAGAIN)
        } else {
            Outcome::WaitUntil(self.next_due().unwrap_or(u64::MAX))
        }
    }

    fn streamon(&mut self, buf_type: c_int) -> Result<(), c_int> {
        ok_if(buf_type as u32 == BUF_TYPE_CAPTURE && self.bufs.count > 0)?;
        if self.streaming {
            return Ok(());
        }
        let key = Some((self.format, self.width, self.height));
        if self.rendered.key != key || self.rendered.frames.is_empty() {
            self.rendered = Rendered::default();
            let config = &self.config;
            match frames::render(
                config.frames.as_deref(),
                config.max_frames,
                self.format,
                self.width,
                self.height,
            ) {
                Ok(rendered) => self.rendered = rendered,
                Err(message) => {
                    config::warn(format_args!("STREAMON: {message}"));
                    return Err(libc::EIO);
                }
            }
        }
        self.streaming = true;
        self.start_ns = now_ns();
        self.produced = 0;
        self.check_faults();
        Ok(())
    }

    fn streamoff(&mut self, buf_type: c_int) -> Result<(), c_int> {
        ok_if(buf_type as u32 == BUF_TYPE_CAPTURE)?;
        self.streaming = false;
        self.bufs.queued.clear();
        self.bufs.done.clear();
        for buf in &mut self.bufs.state {
            buf.owner = Owner::App;
        }
        Ok(())
    }

    fn period_ns(&self) -> u64 {
        NS_PER_SEC / u64::from(self.fps.max(1))
    }

    fn stalled(&self) -> bool {
        self.config.faults.stall.is_some_and(|n| self.filled >= n)
    }

    /// When the next frame is due, if one will ever come.
    fn next_due(&self) -> Option<u64> {
        (self.streaming && !self.stalled() && !self.failed_io)
            .then(|| self.start_ns + self.produced * self.period_ns())
    }

    /// Produces every frame due by `now`: into the next queued buffer, or dropped if none is
    /// queued. At most `count` frames are produced per call; older ones are skipped (their
    /// sequence numbers too, as a driver that fell behind would).
    fn advance(&mut self, now: u64) {
        if !self.streaming || self.stalled() || self.rendered.frames.is_empty() {
            return;
        }
        let due = now.saturating_sub(self.start_ns) / self.period_ns() + 1;
        let mut pending = due.saturating_sub(self.produced);
        let cap = self.bufs.count as u64;
        if pending > cap {
            self.produced += pending - cap;
            pending = cap;
        }
        for _ in 0..pending {
            if self.stalled() {
                break;
            }
            self.produce();
        }
    }

    /// Produces one frame (copying it into a queued buffer, if any).
    fn produce(&mut self) {
        let sequence = self.produced;
        self.produced += 1;
        let Some(index) = self.bufs.queued.pop() else {
            return;
        };
        let frames = &self.rendered.frames;
        let frame = &frames[(sequence % frames.len() as u64) as usize];
        let short = self.config.faults.short.is_some_and(|n| self.filled >= n);
        let length =
            if short { frame.len() / 2 } else { frame.len() }.min(self.bufs.length as usize);
        if let Some(memory) = &self.bufs.memory {
            // SAFETY: buffer `index` spans `aligned` bytes at `index * aligned` inside the
            // mapping (`count * aligned` long), and `length` <= buffer length <= aligned. The
            // app does not touch a queued buffer, as with a real driver's DMA.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    memory.ptr.add(index * self.bufs.aligned),
                    length,
                )
            };
        }
        self.bufs.state[index] = Buffer {
            owner: Owner::Done,
            bytesused: length as u32,
            sequence: sequence as u32,
            timestamp_ns: self.start_ns + sequence * self.period_ns(),
        };
        self.bufs.done.push(index);
        self.filled += 1;
    }

    /// Triggers `unplug` and `eio` once enough frames were delivered.
    fn check_faults(&mut self) {
        let faults = self.config.faults;
        if !self.unplugged && faults.unplug.is_some_and(|n| self.delivered >= n) {
            self.unplugged = true;
            absent::set(self.config.path_hash, self.config.absent_opens);
        }
        if faults.eio.is_some_and(|n| self.delivered >= n) {
            self.failed_io = true;
        }
    }
}

fn enuminput(i: &mut v4l2_input) -> Result<(), c_int> {
    ok_if(i.index == 0)?;
    i.name = c_text(b"Camera 1");
    i.type_ = V4L2_INPUT_TYPE_CAMERA;
    i.audioset = 0;
    i.tuner = 0;
    i.std = 0;
    i.status = 0;
    i.capabilities = 0;
    i.reserved = [0; 3];
    Ok(())
}

/// `Ok(())` if `condition` holds, else EINVAL.
fn ok_if(condition: bool) -> Result<(), c_int> {
    if condition {
        Ok(())
    } else {
        Err(libc::EINVAL)
    }
}
