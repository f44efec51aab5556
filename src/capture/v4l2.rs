//! A Video4Linux2 camera: USB webcams (UVC), capture cards, and CSI cameras through a V4L2
//! video node.
//!
//! The device is opened with the `v4l` crate, but the streaming ring is this module's own:
//! `REQBUFS(buffers)`, `QUERYBUF` + `mmap` for each buffer, `QBUF` them all, `STREAMON`; and
//! on teardown `STREAMOFF`, `munmap` each, `REQBUFS(0)`, close. Every teardown step ignores
//! (and logs) its errors, so an unplugged camera is released without a panic. (The crate's own
//! `io::mmap::Stream` panics in `Drop` on errors other than ENODEV and cannot drain several
//! ready buffers at once.)
//!
//! Each [`V4l2Source::next_frame`] requeues the buffer handed out last time, polls for at most
//! `min(timeout_ms, 100 ms)`, then dequeues *every* ready buffer and keeps only the newest: the
//! others go straight back to the driver and are counted as dropped, as are gaps in the
//! driver's frame sequence (frames it had no free buffer for). YUYV, NV12 and RGB24 frames are
//! handed out straight from the mapped buffer; YU12 and GREY are converted into an NV12 buffer,
//! and MJPEG is decoded into one, both allocated at open. A driver that pads its rows
//! (`bytesperline` wider than the picture) is supported by packing the rows into a buffer
//! allocated on the first connect that needs it (one copy per frame; no allocation).
//!
//! A fault (unplugged, I/O error, POLLERR/POLLHUP, no frame for `timeout_ms`, a raw frame
//! shorter than the picture) closes the camera, unmaps everything and marks it offline; it is
//! reopened with exponential backoff (`reconnect_min_ms` doubling up to `reconnect_max_ms`)
//! with the same negotiation, and a format the driver no longer grants is a failed attempt. A
//! camera that is absent (or busy) at start-up starts offline the same way; one that is
//! present but grants a different format or size is a configuration error. `reconnects`
//! counts reopenings after a fault, not the first connection of a camera that was absent.
//!
//! A damaged MJPEG frame (undecodable, empty, or over `max_frame_kib`) is counted as corrupt
//! and skipped without a reconnect: the camera is still sending, so it is not stale. When a
//! fault shows up while draining, after a good frame was already dequeued, that frame is
//! still handed out and the fault acted on at the next call.
//!
//! Warnings are rate-limited per camera: the first failure, then the 2nd, 4th, 8th, ...
//! consecutive one, the count starting afresh once the camera has run for 30 s.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use v4l::fraction::Fraction;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::v4l2::{self, vidioc};
use v4l::v4l_sys::{v4l2_buffer, v4l2_capability, v4l2_fmtdesc, v4l2_format, v4l2_requestbuffers};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::backoff::Backoff;
use super::convert;
use super::jpeg::JpegDecoder;
use super::{CaptureError, CaptureStats, Frame, FrameFormat, FrameSource, Next, PixelFormat};
use crate::clock::Clock;
use crate::config::{CameraConfig, CaptureFormat};

/// Where a bare device name (no `/`) is looked up: udev's stable names for V4L2 devices.
pub const BY_ID_DIR: &str = "/dev/v4l/by-id";
/// The longest one call waits for a frame, so the pipeline stays responsive.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// A camera that delivers frames this long after opening is well again: its next failure is
/// logged as a first one. (A camera that fails every few seconds keeps counting, so its
/// warnings thin out to powers of two.)
const STABLE: Duration = Duration::from_secs(30);

const BUF_TYPE_CAPTURE: u32 = v4l::v4l_sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
const MEMORY_MMAP: u32 = v4l::v4l_sys::v4l2_memory_V4L2_MEMORY_MMAP;
const FIELD_ANY: u32 = v4l::v4l_sys::v4l2_field_V4L2_FIELD_ANY;
const BUF_FLAG_ERROR: u32 = v4l::v4l_sys::V4L2_BUF_FLAG_ERROR;
const CAP_VIDEO_CAPTURE: u32 = v4l::v4l_sys::V4L2_CAP_VIDEO_CAPTURE;
const CAP_STREAMING: u32 = v4l::v4l_sys::V4L2_CAP_STREAMING;
const CAP_DEVICE_CAPS: u32 = v4l::v4l_sys::V4L2_CAP_DEVICE_CAPS;
const FMT_FLAG_COMPRESSED: u32 = v4l::v4l_sys::V4L2_FMT_FLAG_COMPRESSED;
const FMT_FLAG_EMULATED: u32 = v4l::v4l_sys::V4L2_FMT_FLAG_EMULATED;

/// The device node `device` (from `cameras[].device`) names: a path is used as it is, a bare
/// name is looked up in [`BY_ID_DIR`].
pub fn device_path(device: &str) -> PathBuf {
    if device.contains('/') {
        PathBuf::from(device)
    } else {
        Path::new(BY_ID_DIR).join(device)
    }
}

/// The V4L2 fourcc of a capture format.
pub fn fourcc(format: CaptureFormat) -> FourCC {
    FourCC::new(match format {
        CaptureFormat::Rgb24 => b"RGB3",
        CaptureFormat::Yuyv => b"YUYV",
        CaptureFormat::Nv12 => b"NV12",
        CaptureFormat::Yu12 => b"YU12",
        CaptureFormat::Grey => b"GREY",
        CaptureFormat::Mjpeg => b"MJPG",
    })
}

/// The capture format with this fourcc, if edgewatch reads it.
fn capture_format_of(code: FourCC) -> Option<CaptureFormat> {
    [
        CaptureFormat::Rgb24,
        CaptureFormat::Yuyv,
        CaptureFormat::Nv12,
        CaptureFormat::Yu12,
        CaptureFormat::Grey,
        CaptureFormat::Mjpeg,
    ]
    .into_iter()
    .find(|&f| fourcc(f) == code)
}

/// A fourcc as four printable characters (others as `.`), without allocating.
struct Code(u32);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.to_le_bytes() {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Warnings about one camera are logged for the first failure, then for the 2nd, 4th, 8th, ...
/// consecutive one, so a camera that stays away (or keeps failing) costs a few lines, not one
/// per attempt.
fn worth_logging(consecutive: u64) -> bool {
    consecutive.is_power_of_two()
}

/// A camera that delivers frames from a Video4Linux2 device through mmap'ed driver buffers.
pub struct V4l2Source {
    request: Request,
    format: FrameFormat,
    clock: Arc<dyn Clock>,
    /// The open, streaming device; `None` while offline.
    stream: Option<Stream>,
    backoff: Backoff,
    stats: CaptureStats,
    /// Faults and failed attempts since the camera last ran well for [`STABLE`].
    failures: u64,
    /// Whether the camera was ever open (so the next open counts as a reconnect).
    ever_open: bool,
    /// Sequence number of the newest frame seen, counting frames the driver dropped.
    seq: u64,
    /// How long one call may wait for a frame.
    wait: Duration,
    /// A camera that delivers no usable frame for this long is faulty.
    timeout: Duration,
    max_frame_bytes: usize,
    /// Rows of a padded raw frame packed back to back (empty unless a driver pads).
    packed: Vec<u8>,
    /// Converted or decoded frames (YU12, GREY, MJPEG); empty for the other formats.
    nv12: Vec<u8>,
    decoder: Option<JpegDecoder>,
}

impl fmt::Debug for V4l2Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Source")
            .field("camera", &self.request.camera)
            .field("format", &self.format)
            .field("online", &self.stream.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What the camera is asked for, kept for reopening it.
#[derive(Debug, Clone)]
struct Request {
    /// `name (path)`, for messages.
    camera: String,
    path: PathBuf,
    capture: CaptureFormat,
    width: u32,
    height: u32,
    fps: f32,
    buffers: u32,
}

/// Why the camera could not be opened.
#[derive(Debug)]
enum OpenError {
    /// Not there (yet), gone while negotiating, or busy: worth trying again later.
    Unavailable(String),
    /// There, but not usable as configured.
    Unusable(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Unavailable(m) | OpenError::Unusable(m) => f.write_str(m),
        }
    }
}

/// Errors of a device that went away or is momentarily unavailable.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO | libc::EIO | libc::EBUSY | libc::EINTR)
            | Some(libc::EAGAIN)
    )
}

/// An [`OpenError`] for a failed `step`, transient or not depending on the error.
fn open_error(step: &str, err: io::Error) -> OpenError {
    let message = format!("{step}: {err}");
    if is_transient(&err) {
        OpenError::Unavailable(message)
    } else {
        OpenError::Unusable(message)
    }
}

/// What went wrong with an open camera; each one closes it.
#[derive(Debug)]
enum Fault {
    /// An ioctl failed (ENODEV: unplugged, EIO, ...).
    Ioctl(&'static str, io::Error),
    /// `poll` itself failed.
    Poll(io::Error),
    /// `poll` reported POLLERR, POLLHUP or POLLNVAL.
    PollEvents(i16),
    /// No usable frame for this long.
    Stalled(Duration),
    /// A raw frame shorter than the picture.
    WrongSize { got: u32, want: usize },
    /// The driver dequeued a buffer index it never gave out.
    BadIndex(u32),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Ioctl(op, e) => write!(f, "{op} failed: {e}"),
            Fault::Poll(e) => write!(f, "poll failed: {e}"),
            Fault::PollEvents(ev) => {
                write!(f, "poll reported")?;
                for (bit, name) in [
                    (libc::POLLERR, " POLLERR"),
                    (libc::POLLHUP, " POLLHUP"),
                    (libc::POLLNVAL, " POLLNVAL"),
                ] {
                    if ev & bit != 0 {
                        f.write_str(name)?;
                    }
                }
                Ok(())
            }
            Fault::Stalled(d) => write!(f, "no frame for {} ms", d.as_millis()),
            Fault::WrongSize { got, want } => {
                write!(f, "frame holds {got} bytes, the picture needs {want}")
            }
            Fault::BadIndex(i) => write!(f, "driver returned unknown buffer {i}"),
        }
    }
}

impl V4l2Source {
    /// Opens the camera `cam` describes and starts streaming. A camera that is not there (or
    /// is busy) starts offline and is retried with backoff; one that is there but cannot
    /// deliver the configured format and size is an error.
    pub fn open(cam: &CameraConfig, clock: Arc<dyn Clock>) -> Result<V4l2Source, CaptureError> {
        let path = device_path(&cam.device);
        let request = Request {
            camera: format!("{} ({})", cam.name, path.display()),
            path,
            capture: cam.capture_format(),
            width: cam.width,
            height: cam.height,
            fps: cam.fps,
            buffers: cam.buffers,
        };
        let camera = request.camera.clone();
        let error = move |message: String| CaptureError::Camera {
            camera: camera.clone(),
            message,
        };
        if cam.device.is_empty() || cam.device.contains('\0') {
            return Err(error(format!("bad device name {:?}", cam.device)));
        }
        let format = cam.frame_format();
        let decoder = match request.capture {
            CaptureFormat::Mjpeg => Some(
                JpegDecoder::try_new(cam.width, cam.height).map_err(|e| error(e.to_string()))?,
            ),
            _ => None,
        };
        let nv12 = match request.capture {
            CaptureFormat::Yu12 | CaptureFormat::Grey | CaptureFormat::Mjpeg => {
                vec![0; PixelFormat::Nv12.frame_len(cam.width, cam.height)]
            }
            _ => Vec::new(),
        };
        let backoff = Backoff::new(
            Duration::from_millis(cam.reconnect_min_ms),
            Duration::from_millis(cam.reconnect_max_ms),
        );
        let timeout = Duration::from_millis(cam.timeout_ms);
        let mut source = V4l2Source {
            format,
            clock,
            stream: None,
            backoff,
            stats: CaptureStats::default(),
            failures: 0,
            ever_open: false,
            seq: 0,
            wait: timeout.min(MAX_WAIT),
            timeout,
            max_frame_bytes: cam.max_frame_bytes(),
            packed: Vec::new(),
            nv12,
            decoder,
            request,
        };
        let now = source.clock.now();
        match Stream::open(&source.request, true) {
            Ok(stream) => source.install(stream, now),
            Err(OpenError::Unusable(message)) => return Err(error(message)),
            Err(OpenError::Unavailable(message)) => {
                source.failures = 1;
                let wait = source.backoff.failed(now);
                log::warn!(
                    "camera {}: not available ({message}); starting offline, retrying in {} ms",
                    source.request.camera,
                    wait.as_millis()
                );
            }
        }
        Ok(source)
    }

    /// When the next attempt to reopen the camera is due (clock time), while it is offline.
    pub fn retry_at(&self) -> Option<Duration> {
        self.stream
            .is_none()
            .then(|| self.backoff.retry_at())
            .flatten()
    }

    /// Takes an opened stream into use.
    fn install(&mut self, mut stream: Stream, now: Duration) {
        if let Some(layout) = &stream.layout {
            if !layout.packed && self.packed.len() != layout.packed_len {
                self.packed = vec![0; layout.packed_len];
            }
        }
        stream.connected_at = now;
        stream.last_frame_at = now;
        self.stream = Some(stream);
        self.stats.online = true;
        self.backoff.succeeded();
        if self.ever_open {
            self.stats.reconnects += 1;
        }
        if self.ever_open && worth_logging(self.failures) {
            log::info!(
                "camera {}: reconnected after {} failure(s)",
                self.request.camera,
                self.failures
            );
        }
        self.ever_open = true;
    }

    /// Tries to reopen an offline camera if an attempt is due; whether it is open now.
    fn reconnect(&mut self) -> bool {
        let now = self.clock.now();
        if !self.backoff.due(now) {
            return false;
        }
        match Stream::open(&self.request, worth_logging(self.failures)) {
            Ok(stream) => {
                self.install(stream, now);
                true
            }
            Err(e) => {
                self.failures += 1;
                let wait = self.backoff.failed(now);
                if worth_logging(self.failures) {
                    log::warn!(
                        "camera {}: cannot reopen: {e}; next attempt in {} ms ({} consecutive failures)",
                        self.request.camera,
                        wait.as_millis(),
                        self.failures
                    );
                }
                false
            }
        }
    }

    /// Closes a faulty camera (unmapping every buffer) and schedules the next attempt.
    fn fault(&mut self, fault: Fault) {
        self.stream = None;
        self.stats.online = false;
        self.failures += 1;
        let wait = self.backoff.failed(self.clock.now());
        if worth_logging(self.failures) {
            log::warn!(
                "camera {}: {fault}; closed it, reopening in {} ms ({} consecutive failures)",
                self.request.camera,
                wait.as_millis(),
                self.failures
            );
        }
    }

    /// Requeues the buffer handed out last time, waits (bounded) for frames and dequeues every
    /// ready one, keeping the newest. `None`: nothing usable yet.
    fn grab(&mut self) -> Result<Option<Grabbed>, Fault> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        if let Some(fault) = stream.deferred.take() {
            return Err(fault);
        }
        stream.requeue_held()?;
        let ready = stream.wait(self.wait)?;
        let mut newest: Option<Grabbed> = None;
        if ready {
            match stream.drain(&mut self.seq, &mut self.stats, &mut newest) {
                Ok(()) => {}
                // The frame already dequeued is whole: hand it out and act on the fault on the
                // next call (an unplugged camera's last frame is still a good frame).
                Err(fault) if newest.is_some() => stream.deferred = Some(fault),
                Err(fault) => return Err(fault),
            }
        }
        let now = self.clock.now();
        match newest {
            Some(got) => {
                // Any frame shows the camera is alive, a damaged one too: bad data is counted
                // as corrupt, and reopening the camera would not mend it.
                stream.last_frame_at = now;
                stream.held = Some(got.index);
                Ok(Some(got))
            }
            None if now.saturating_sub(stream.last_frame_at) >= self.timeout => {
                Err(Fault::Stalled(self.timeout))
            }
            None => Ok(None),
        }
    }

    /// Checks the frame in buffer `got` and converts or decodes it as its format needs.
    fn prepare(&mut self, got: &Grabbed) -> Result<Ready, Reject> {
        let Some(stream) = self.stream.as_ref() else {
            return Err(Reject::Gone);
        };
        let map = stream.map(got.index).ok_or(Reject::Gone)?;
        let Some(layout) = &stream.layout else {
            // MJPEG: the frame is whatever the driver says it used, within the configured bound.
            let len = got.bytesused as usize;
            if len == 0 || len > self.max_frame_bytes || len > map.len {
                return Err(Reject::Corrupt("bad compressed size"));
            }
            let decoder = self.decoder.as_mut().ok_or(Reject::Gone)?;
            return match decoder.decode(map.bytes(len), &mut self.nv12) {
                Ok(()) => Ok(Ready::Nv12),
                Err(_) => Err(Reject::Corrupt("undecodable JPEG")),
            };
        };
        if (got.bytesused as usize) < layout.needed {
            return Err(Reject::Fault(Fault::WrongSize {
                got: got.bytesused,
                want: layout.needed,
            }));
        }
        let raw = map.bytes(layout.needed);
        let src: &[u8] = if layout.packed {
            raw
        } else {
            layout.pack(raw, &mut self.packed);
            &self.packed
        };
        let (w, h) = (self.format.width, self.format.height);
        let converted = match self.request.capture {
            CaptureFormat::Grey => convert::grey_to_nv12(w, h, src, &mut self.nv12),
            CaptureFormat::Yu12 => convert::i420_to(PixelFormat::Nv12, w, h, src, &mut self.nv12),
            _ if layout.packed => return Ok(Ready::Mapped(layout.needed)),
            _ => return Ok(Ready::Packed),
        };
        match converted {
            Ok(()) => Ok(Ready::Nv12),
            // Sizes were checked at open, so this cannot happen; never panic if it does.
            Err(_) => Err(Reject::Corrupt("conversion failed")),
        }
    }

    /// Gives buffer `index` back to the driver at once (a frame that will not be handed out).
    fn requeue_now(&mut self, index: u32) {
        let result = match self.stream.as_mut() {
            Some(stream) => {
                stream.held = None;
                stream.qbuf(index)
            }
            None => Ok(()),
        };
        if let Err(fault) = result {
            self.fault(fault);
        }
    }
}

/// A buffer dequeued with the newest frame.
#[derive(Debug, Clone, Copy)]
struct Grabbed {
    index: u32,
    bytesused: u32,
    seq: u64,
}

/// Where a prepared frame is.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// In the mapped driver buffer, this many bytes.
    Mapped(usize),
    /// In the packed-rows buffer.
    Packed,
    /// In the NV12 buffer.
    Nv12,
}

/// Why a dequeued frame is not handed out.
#[derive(Debug)]
enum Reject {
    /// Damaged; counted, and the camera stays open.
    Corrupt(&'static str),
    /// Damaged in a way that means the camera is in trouble: counted, and the camera closed.
    Fault(Fault),
    /// The stream is not there (cannot happen after a successful grab).
    Gone,
}

impl FrameSource for V4l2Source {
    fn format(&self) -> FrameFormat {
        self.format
    }

    fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.stream.is_none() && !self.reconnect() {
            return Ok(Next::Waiting);
        }
        let got = match self.grab() {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(Next::Waiting),
            Err(fault) => {
                self.fault(fault);
                return Ok(Next::Waiting);
            }
        };
        let timestamp = self.clock.now();
        let ready = match self.prepare(&got) {
            Ok(ready) => ready,
            Err(Reject::Corrupt(what)) => {
                self.stats.corrupt += 1;
                if worth_logging(self.stats.corrupt) {
                    log::warn!(
                        "camera {}: dropped a damaged frame ({what}; {} so far)",
                        self.request.camera,
                        self.stats.corrupt
                    );
                }
                self.requeue_now(got.index);
                return Ok(Next::Waiting);
            }
            Err(Reject::Fault(fault)) => {
                self.stats.corrupt += 1;
                self.fault(fault);
                return Ok(Next::Waiting);
            }
            Err(Reject::Gone) => return Ok(Next::Waiting),
        };
        if self.failures != 0
            && self
                .stream
                .as_ref()
                .is_some_and(|s| timestamp >= s.connected_at + STABLE)
        {
            self.failures = 0;
        }
        self.stats.delivered += 1;
        let data: &[u8] = match ready {
            Ready::Mapped(len) => match self.stream.as_ref().and_then(|s| s.map(got.index)) {
                Some(map) => map.bytes(len),
                None => return Ok(Next::Waiting),
            },
            Ready::Packed => &self.packed,
            Ready::Nv12 => &self.nv12,
        };
        Ok(Next::Frame(Frame {
            data,
            seq: got.seq,
            timestamp,
        }))
    }

    fn stats(&self) -> CaptureStats {
        self.stats
    }
}

/// One driver buffer mapped into this process.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one `Stream`, which only reads it through `&self` while the
// buffer is dequeued (the driver does not write to it then); moving the owner to another thread
// moves that exclusive use with it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// The first `len` bytes of the buffer (`len` is at most the mapped length).
    fn bytes(&self, len: usize) -> &[u8] {
        let len = len.min(self.len);
        // SAFETY: `ptr` is the start of a live mapping of `self.len` bytes (unmapped only when
        // the owning `Stream` drops, which needs `&mut`), readable (PROT_READ), and `len` is
        // clamped to it. The buffer is only read while dequeued, when the driver leaves it alone.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }
}

/// An open, streaming device and its mapped buffers. Dropping it tears everything down.
struct Stream {
    /// Closes the fd when dropped (after `Stream::drop` has stopped streaming and unmapped).
    /// The `v4l` crate's handle closes with `close(fd).unwrap()`; closing a V4L2 fd only
    /// fails for a bad fd (the kernel ignores the driver's release result), and this fd is
    /// closed nowhere else, so that unwrap cannot fire.
    _device: Device,
    fd: RawFd,
    /// Mapped buffers, by driver index.
    maps: Vec<Mapping>,
    /// Whether REQBUFS granted buffers (to free with REQBUFS(0)).
    requested: bool,
    streaming: bool,
    /// The buffer handed out last, requeued on the next call.
    held: Option<u32>,
    /// Where the picture is in a raw buffer; `None` for MJPEG.
    layout: Option<Layout>,
    /// Driver sequence number of the last dequeued buffer.
    last_sequence: Option<u32>,
    /// Clock time of the open.
    connected_at: Duration,
    /// Clock time of the last frame dequeued (or of the open).
    last_frame_at: Duration,
    /// A fault met after a good frame was dequeued, acted on at the next call.
    deferred: Option<Fault>,
}

impl Stream {
    /// Opens, negotiates, maps the ring and starts streaming; logs what the driver granted if
    /// `verbose`.
    fn open(req: &Request, verbose: bool) -> Result<Stream, OpenError> {
        let device = open_device(&req.path).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => " (is the user in the `video` group?)",
                _ => "",
            };
            open_error(&format!("cannot open {}{hint}", req.path.display()), e)
        })?;
        let fd = device.handle().fd();
        let caps = query_caps(fd).map_err(|e| {
            let what = format!(
                "{} is not a V4L2 device (VIDIOC_QUERYCAP)",
                req.path.display()
            );
            open_error(&what, e)
        })?;
        let flags = caps.usable_caps();
        if flags & CAP_VIDEO_CAPTURE == 0 || flags & CAP_STREAMING == 0 {
            return Err(OpenError::Unusable(format!(
                "{} ({}) is not a video capture device with streaming I/O (capabilities {flags:#010x}); \
                 a CSI camera needs its video node or libcamera's V4L2 compatibility layer",
                req.path.display(),
                cstr(&caps.card)
            )));
        }
        let granted = set_format(fd, req).map_err(|e| open_error("VIDIOC_S_FMT", e))?;
        let want = fourcc(req.capture);
        if granted.fourcc != u32::from(want)
            || granted.width != req.width
            || granted.height != req.height
        {
            return Err(OpenError::Unusable(format!(
                "asked for {want} {}x{}, the driver granted {} {}x{}; \
                 run `edgewatch probe {}` to list what it offers",
                req.width,
                req.height,
                Code(granted.fourcc),
                granted.width,
                granted.height,
                req.path.display()
            )));
        }
        let layout = match req.capture {
            CaptureFormat::Mjpeg => None,
            raw => Some(
                Layout::new(raw, req.width, req.height, granted.bytesperline)
                    .map_err(OpenError::Unusable)?,
            ),
        };
        let fps = negotiate_fps(&device, req);
        let mut stream = Stream {
            _device: device,
            fd,
            maps: Vec::new(),
            requested: false,
            streaming: false,
            held: None,
            layout,
            last_sequence: None,
            connected_at: Duration::ZERO,
            last_frame_at: Duration::ZERO,
            deferred: None,
        };
        stream.map_ring(req.buffers)?;
        stream_ioctl(fd, vidioc::VIDIOC_STREAMON).map_err(|e| open_error("VIDIOC_STREAMON", e))?;
        stream.streaming = true;
        if !verbose {
            return Ok(stream);
        }
        log::info!(
            "camera {}: streaming {} {}x{} (bytesperline {}, sizeimage {}) at {}, {} buffers",
            req.camera,
            Code(granted.fourcc),
            granted.width,
            granted.height,
            granted.bytesperline,
            granted.sizeimage,
            FpsText(fps),
            stream.maps.len()
        );
        Ok(stream)
    }

    /// REQBUFS, then QUERYBUF + mmap + QBUF for every buffer granted.
    fn map_ring(&mut self, count: u32) -> Result<(), OpenError> {
        let granted =
            request_buffers(self.fd, count).map_err(|e| open_error("VIDIOC_REQBUFS", e))?;
        self.requested = true;
        // V4L2 queues hold at most 64 buffers (VIDEO_MAX_FRAME); more is a broken driver, and
        // would size the ring from its word.
        if !(2..=64).contains(&granted) {
            return Err(OpenError::Unusable(format!(
                "the driver granted {granted} buffers for the {count} asked (2 to 64 work)"
            )));
        }
        self.maps.reserve_exact(granted as usize);
        for index in 0..granted {
            let buf = query_buffer(self.fd, index).map_err(|e| open_error("VIDIOC_QUERYBUF", e))?;
            let len = buf.length as usize;
            let needed = self.layout.as_ref().map_or(1, |l| l.needed);
            if len < needed {
                return Err(OpenError::Unusable(format!(
                    "driver buffer {index} holds {len} bytes, a frame needs {needed}"
                )));
            }
            // SAFETY: reading the union member MMAP buffers use; QUERYBUF filled it.
            let offset = unsafe { buf.m.offset };
            // SAFETY: maps `len` bytes of the device at the offset the driver gave for this
            // buffer; the result is checked, and unmapped only in `Drop`.
            let ptr = unsafe {
                v4l2::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    self.fd,
                    offset as libc::off_t,
                )
            }
            .map_err(|e| open_error("mmap", e))?;
            let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
                return Err(OpenError::Unusable("mmap returned a null mapping".into()));
            };
            self.maps.push(Mapping { ptr, len });
        }
        for index in 0..granted {
            self.qbuf(index)
                .map_err(|f| OpenError::Unavailable(f.to_string()))?;
        }
        Ok(())
    }

    /// Dequeues every ready buffer into `newest`, requeueing the one it replaces (dropped) and
    /// buffers the driver flagged as damaged (corrupt). `seq` counts every frame the driver's
    /// sequence says it made.
    fn drain(
        &mut self,
        seq: &mut u64,
        stats: &mut CaptureStats,
        newest: &mut Option<Grabbed>,
    ) -> Result<(), Fault> {
        // A driver filling buffers as fast as they are requeued could keep this loop going;
        // one lap of the ring is all that can be ready at once.
        for _ in 0..self.maps.len() * 2 {
            let Some(buf) = self.dequeue()? else {
                break;
            };
            let step = self.sequence_step(buf.sequence);
            *seq += step;
            stats.dropped += step - 1;
            if buf.flags & BUF_FLAG_ERROR != 0 {
                stats.corrupt += 1;
                self.qbuf(buf.index)?;
                continue;
            }
            let got = Grabbed {
                index: buf.index,
                bytesused: buf.bytesused,
                seq: *seq,
            };
            if let Some(older) = newest.replace(got) {
                stats.dropped += 1;
                self.qbuf(older.index)?;
            }
        }
        Ok(())
    }

    fn map(&self, index: u32) -> Option<&Mapping> {
        self.maps.get(index as usize)
    }

    /// Gives buffer `index` back to the driver.
    fn qbuf(&mut self, index: u32) -> Result<(), Fault> {
        let mut buf = new_buffer(index);
        // SAFETY: QBUF takes a v4l2_buffer, which `buf` is.
        unsafe { ioctl(self.fd, vidioc::VIDIOC_QBUF, &mut buf) }
            .map_err(|e| Fault::Ioctl("VIDIOC_QBUF", e))
    }

    /// Requeues the buffer handed out last time.
    fn requeue_held(&mut self) -> Result<(), Fault> {
        match self.held.take() {
            Some(index) => self.qbuf(index),
            None => Ok(()),
        }
    }

    /// Polls for a ready buffer for at most `wait`; whether one is ready.
    fn wait(&self, wait: Duration) -> Result<bool, Fault> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, borrowed for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EINTR) => Ok(false),
                _ => Err(Fault::Poll(err)),
            };
        }
        if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Err(Fault::PollEvents(pfd.revents));
        }
        Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
    }

    /// Dequeues one filled buffer without blocking; `None` when none is ready.
    fn dequeue(&mut self) -> Result<Option<v4l2_buffer>, Fault> {
        let mut buf = new_buffer(0);
        // SAFETY: DQBUF takes a v4l2_buffer, which `buf` is; the fd is non-blocking.
        match unsafe { ioctl(self.fd, vidioc::VIDIOC_DQBUF, &mut buf) } {
            Ok(()) if (buf.index as usize) < self.maps.len() => Ok(Some(buf)),
            Ok(()) => Err(Fault::BadIndex(buf.index)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => Ok(None),
            Err(e) => Err(Fault::Ioctl("VIDIOC_DQBUF", e)),
        }
    }

    /// How far the driver's sequence moved since the last buffer (1, more after frames the
    /// driver dropped); remembers `sequence`.
    fn sequence_step(&mut self, sequence: u32) -> u64 {
        sequence_delta(&mut self.last_sequence, sequence)
    }
}

/// How far a driver's frame sequence moved from `*last` to `sequence` (1 for the first frame
/// and for a counter that went backwards, as a driver restarting it does); stores `sequence`.
fn sequence_delta(last: &mut Option<u32>, sequence: u32) -> u64 {
    let step = match *last {
        Some(prev) => {
            let d = sequence.wrapping_sub(prev);
            if d == 0 || d > u32::MAX / 2 {
                1
            } else {
                u64::from(d)
            }
        }
        None => 1,
    };
    *last = Some(sequence);
    step
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.streaming {
            if let Err(e) = stream_ioctl(self.fd, vidioc::VIDIOC_STREAMOFF) {
                log::debug!("VIDIOC_STREAMOFF: {e}");
            }
        }
        for map in self.maps.drain(..) {
            // SAFETY: `map` is a mapping this stream made and nothing else unmaps; no slice
            // into it outlives `&self`, and `drop` has `&mut self`.
            if let Err(e) = unsafe { v4l2::munmap(map.ptr.as_ptr().cast(), map.len) } {
                log::debug!("munmap: {e}");
            }
        }
        if self.requested {
            if let Err(e) = request_buffers(self.fd, 0) {
                log::debug!("VIDIOC_REQBUFS(0): {e}");
            }
        }
        // `_device` closes the fd after this.
    }
}

/// Where the picture lies in a raw driver buffer: one plane per row group, each `stride` bytes
/// a row of which the first `row_len` are pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    planes: [Plane; 3],
    count: usize,
    /// Bytes a buffer must hold (to the end of the last row of the last plane).
    needed: usize,
    /// Whether the rows are back to back (no padding): the buffer is the packed frame.
    packed: bool,
    /// Bytes of the packed frame.
    packed_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Plane {
    offset: usize,
    stride: usize,
    row_len: usize,
    rows: usize,
}

impl Layout {
    /// The layout of a raw `format` frame with the driver's `bytesperline` (0: packed).
    fn new(
        format: CaptureFormat,
        width: u32,
        height: u32,
        bytesperline: u32,
    ) -> Result<Layout, String> {
        let (w, h) = (width as usize, height as usize);
        let bpp = match format {
            CaptureFormat::Yuyv => 2,
            CaptureFormat::Rgb24 => 3,
            CaptureFormat::Grey | CaptureFormat::Nv12 | CaptureFormat::Yu12 => 1,
            CaptureFormat::Mjpeg => return Err("MJPEG has no raw layout".into()),
        };
        let row = w * bpp;
        let stride = if bytesperline == 0 {
            row
        } else {
            bytesperline as usize
        };
        if stride < row {
            return Err(format!(
                "the driver reports {bytesperline} bytes per line, a {width}-pixel {format} row needs {row}"
            ));
        }
        let luma = Plane {
            offset: 0,
            stride,
            row_len: row,
            rows: h,
        };
        let too_large = || format!("a {width}x{height} frame with stride {stride} is too large");
        let luma_end = stride.checked_mul(h).ok_or_else(too_large)?;
        let (planes, count) = match format {
            CaptureFormat::Nv12 => {
                let uv = Plane {
                    offset: luma_end,
                    stride,
                    row_len: w,
                    rows: h / 2,
                };
                ([luma, uv, Plane::default()], 2)
            }
            CaptureFormat::Yu12 => {
                let cs = stride / 2;
                let u = Plane {
                    offset: luma_end,
                    stride: cs,
                    row_len: w / 2,
                    rows: h / 2,
                };
                let v = Plane {
                    offset: luma_end + cs * (h / 2),
                    ..u
                };
                ([luma, u, v], 3)
            }
            _ => ([luma, Plane::default(), Plane::default()], 1),
        };
        let planes_used = &planes[..count];
        let last = planes_used[count - 1];
        let needed = if last.rows == 0 {
            last.offset
        } else {
            last.stride
                .checked_mul(last.rows - 1)
                .and_then(|n| n.checked_add(last.offset + last.row_len))
                .ok_or_else(too_large)?
        };
        let packed_len: usize = planes_used.iter().map(|p| p.row_len * p.rows).sum();
        let packed = planes_used.iter().all(|p| p.stride == p.row_len);
        Ok(Layout {
            planes,
            count,
            needed,
            packed,
            packed_len,
        })
    }

    /// Copies the pixels of every plane of `raw` (at least `needed` bytes) back to back into
    /// `out` (`packed_len` bytes).
    fn pack(&self, raw: &[u8], out: &mut [u8]) {
        let mut at = 0;
        for p in &self.planes[..self.count] {
            let len = p.row_len * p.rows;
            let (Some(src), Some(dst)) = (raw.get(p.offset..), out.get_mut(at..at + len)) else {
                return;
            };
            for (s, d) in src.chunks(p.stride).zip(dst.chunks_exact_mut(p.row_len)) {
                if let Some(s) = s.get(..p.row_len) {
                    d.copy_from_slice(s);
                }
            }
            at += len;
        }
    }
}

/// The format the driver granted.
#[derive(Debug, Clone, Copy)]
struct Granted {
    fourcc: u32,
    width: u32,
    height: u32,
    bytesperline: u32,
    sizeimage: u32,
}

/// Frames per second as `30.000 fps`, or `the driver's default rate`.
struct FpsText(Option<f64>);

impl fmt::Display for FpsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(fps) => write!(f, "{fps:.3} fps"),
            None => f.write_str("an unreported frame rate"),
        }
    }
}

/// `fps` as a frame interval: `1/fps` when whole, else in thousandths, reduced.
fn interval_of(fps: f32) -> Fraction {
    let milli = (f64::from(fps) * 1000.0).round().max(1.0) as u32;
    let (mut a, mut b) = (1000u32, milli);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Fraction::new(1000 / a, milli / a)
}

/// Asks for `req.fps` (if set) and returns the rate the driver reports.
fn negotiate_fps(device: &Device, req: &Request) -> Option<f64> {
    if req.fps > 0.0 {
        if let Err(e) = device.set_params(&Parameters::new(interval_of(req.fps))) {
            log::warn!(
                "camera {}: cannot set {} fps ({e}); using the driver's rate",
                req.camera,
                req.fps
            );
        }
    }
    let interval = device.params().ok()?.interval;
    (interval.numerator > 0)
        .then(|| f64::from(interval.denominator) / f64::from(interval.numerator))
}

/// Opens a V4L2 device node (non-blocking) and marks its fd close-on-exec.
fn open_device(path: &Path) -> io::Result<Device> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        // The crate would panic turning this into a C string.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let device = Device::with_path(path)?;
    // `Device::with_path` opens without O_CLOEXEC and cannot be handed an fd, so the flag is
    // set right after. Until then a concurrent exec (the watchdog re-executing the process)
    // would carry this fd into the new image. That window is a few instructions long, and at
    // that point the fd holds no buffers, so even then the new image could still stream from
    // the camera; it would only keep one idle fd.
    let fd = device.handle().fd();
    // SAFETY: plain fcntl calls on an fd this function owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(device)
}

/// Runs one V4L2 ioctl with `arg` as its argument.
///
/// # Safety
/// `request` must be an ioctl whose argument is a `T` (the request code encodes its size).
unsafe fn ioctl<T>(fd: RawFd, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` for the call, and the caller
    // guarantees the request reads and writes exactly a `T`.
    unsafe { v4l2::ioctl(fd, request, (arg as *mut T).cast()) }
}

/// A zeroed `T` for an ioctl.
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used for the V4L2 C structs below (integers, arrays, unions of integers and
    // pointers), for which all-zero bytes are a valid value, as the V4L2 API expects.
    unsafe { std::mem::zeroed() }
}

/// A v4l2_buffer naming buffer `index` of the MMAP capture queue.
fn new_buffer(index: u32) -> v4l2_buffer {
    v4l2_buffer {
        index,
        type_: BUF_TYPE_CAPTURE,
        memory: MEMORY_MMAP,
        ..zeroed()
    }
}

/// What VIDIOC_QUERYCAP said, with its strings kept as bytes (the crate's `query_caps` panics
/// on non-UTF-8 names).
#[derive(Debug, Clone, Copy)]
struct Caps {
    driver: [u8; 16],
    card: [u8; 32],
    bus: [u8; 32],
    version: u32,
    capabilities: u32,
    device_caps: u32,
}

impl Caps {
    /// The capabilities of this node (`device_caps` when the driver reports them).
    fn usable_caps(&self) -> u32 {
        if self.capabilities & CAP_DEVICE_CAPS != 0 {
            self.device_caps
        } else {
            self.capabilities
        }
    }
}

fn query_caps(fd: RawFd) -> io::Result<Caps> {
    let mut caps: v4l2_capability = zeroed();
    // SAFETY: QUERYCAP takes a v4l2_capability.
    unsafe { ioctl(fd, vidioc::VIDIOC_QUERYCAP, &mut caps) }?;
    Ok(Caps {
        driver: caps.driver,
        card: caps.card,
        bus: caps.bus_info,
        version: caps.version,
        capabilities: caps.capabilities,
        device_caps: caps.device_caps,
    })
}

/// A NUL-padded C string field as text.
fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// VIDIOC_S_FMT for the request, returning what the driver granted. (Done here rather than
/// with the crate's `set_format`, whose conversion panics on colorspace or field values it
/// does not know.)
fn set_format(fd: RawFd, req: &Request) -> io::Result<Granted> {
    let mut fmt: v4l2_format = zeroed();
    fmt.type_ = BUF_TYPE_CAPTURE;
    // SAFETY: `pix` is the member of the union capture formats use; all of it is plain data.
    let pix = unsafe { &mut fmt.fmt.pix };
    pix.width = req.width;
    pix.height = req.height;
    pix.pixelformat = fourcc(req.capture).into();
    pix.field = FIELD_ANY;
    // SAFETY: S_FMT takes a v4l2_format.
    unsafe { ioctl(fd, vidioc::VIDIOC_S_FMT, &mut fmt) }?;
    // SAFETY: as above; the driver filled `pix` in.
    let pix = unsafe { fmt.fmt.pix };
    Ok(Granted {
        fourcc: pix.pixelformat,
        width: pix.width,
        height: pix.height,
        bytesperline: pix.bytesperline,
        sizeimage: pix.sizeimage,
    })
}

/// VIDIOC_REQBUFS for `count` MMAP buffers; returns how many the driver granted.
fn request_buffers(fd: RawFd, count: u32) -> io::Result<u32> {
    let mut req = v4l2_requestbuffers {
        count,
        type_: BUF_TYPE_CAPTURE,
        memory: MEMORY_MMAP,
        ..zeroed()
    };
    // SAFETY: REQBUFS takes a v4l2_requestbuffers.
    unsafe { ioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req) }?;
    Ok(req.count)
}

fn query_buffer(fd: RawFd, index: u32) -> io::Result<v4l2_buffer> {
    let mut buf = new_buffer(index);
    // SAFETY: QUERYBUF takes a v4l2_buffer.
    unsafe { ioctl(fd, vidioc::VIDIOC_QUERYBUF, &mut buf) }?;
    Ok(buf)
}

/// STREAMON or STREAMOFF on the capture queue.
fn stream_ioctl(fd: RawFd, request: vidioc::_IOC_TYPE) -> io::Result<()> {
    let mut typ: libc::c_int = BUF_TYPE_CAPTURE as libc::c_int;
    // SAFETY: STREAMON and STREAMOFF take an int (the buffer type).
    unsafe { ioctl(fd, request, &mut typ) }
}

/// One entry of VIDIOC_ENUM_FMT.
struct FormatEntry {
    index: u32,
    fourcc: u32,
    flags: u32,
    description: String,
}

/// Every capture format the device lists (done here: the crate's `enum_formats` panics on a
/// non-UTF-8 description).
fn enum_formats(fd: RawFd) -> Vec<FormatEntry> {
    let mut formats = Vec::new();
    for index in 0..256 {
        let mut desc = v4l2_fmtdesc {
            index,
            type_: BUF_TYPE_CAPTURE,
            ..zeroed()
        };
        // SAFETY: ENUM_FMT takes a v4l2_fmtdesc.
        if unsafe { ioctl(fd, vidioc::VIDIOC_ENUM_FMT, &mut desc) }.is_err() {
            break;
        }
        formats.push(FormatEntry {
            index,
            fourcc: desc.pixelformat,
            flags: desc.flags,
            description: cstr(&desc.description),
        });
    }
    formats
}

/// Names of the capability bits worth showing.
fn cap_names(flags: u32) -> String {
    use v4l::v4l_sys as s;
    let names = [
        (s::V4L2_CAP_VIDEO_CAPTURE, "video-capture"),
        (s::V4L2_CAP_VIDEO_CAPTURE_MPLANE, "video-capture-mplane"),
        (s::V4L2_CAP_VIDEO_OUTPUT, "video-output"),
        (s::V4L2_CAP_VIDEO_M2M, "video-m2m"),
        (s::V4L2_CAP_VIDEO_M2M_MPLANE, "video-m2m-mplane"),
        (s::V4L2_CAP_META_CAPTURE, "meta-capture"),
        (s::V4L2_CAP_READWRITE, "read-write"),
        (s::V4L2_CAP_STREAMING, "streaming"),
        (s::V4L2_CAP_EXT_PIX_FORMAT, "ext-pix-format"),
        (s::V4L2_CAP_DEVICE_CAPS, "device-caps"),
    ];
    let list: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    list.join(" ")
}

/// Seconds of a frame interval, and the rate it means.
fn interval_text(f: &Fraction) -> String {
    if f.numerator == 0 || f.denominator == 0 {
        return format!("{}/{} s", f.numerator, f.denominator);
    }
    let fps = f64::from(f.denominator) / f64::from(f.numerator);
    format!("{}/{} s ({fps:.3} fps)", f.numerator, f.denominator)
}

/// Lists what the V4L2 device `device` (a path or a `/dev/v4l/by-id/` name) offers, like
/// `v4l2-ctl --list-formats-ext`: driver, card, bus, capabilities, and every capture format
/// with its frame sizes and frame intervals.
pub fn probe(device: &str, out: &mut dyn Write) -> Result<(), CaptureError> {
    let path = device_path(device);
    let error = |message: String| CaptureError::Camera {
        camera: path.display().to_string(),
        message,
    };
    let dev = open_device(&path).map_err(|e| error(format!("cannot open: {e}")))?;
    let fd = dev.handle().fd();
    let caps =
        query_caps(fd).map_err(|e| error(format!("not a V4L2 device (VIDIOC_QUERYCAP: {e})")))?;
    write_probe(&dev, &path, &caps, out).map_err(|e| error(format!("cannot write: {e}")))
}

fn write_probe(dev: &Device, path: &Path, caps: &Caps, out: &mut dyn Write) -> io::Result<()> {
    let fd = dev.handle().fd();
    let v = caps.version;
    writeln!(out, "Device:       {}", path.display())?;
    writeln!(out, "Driver:       {}", cstr(&caps.driver))?;
    writeln!(out, "Card:         {}", cstr(&caps.card))?;
    writeln!(out, "Bus:          {}", cstr(&caps.bus))?;
    writeln!(
        out,
        "Version:      {}.{}.{}",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff
    )?;
    writeln!(
        out,
        "Capabilities: {:#010x} {}",
        caps.capabilities,
        cap_names(caps.capabilities)
    )?;
    let usable = caps.usable_caps();
    writeln!(out, "Device caps:  {usable:#010x} {}", cap_names(usable))?;
    if usable & CAP_VIDEO_CAPTURE == 0 || usable & CAP_STREAMING == 0 {
        writeln!(
            out,
            "Note: not a video capture device with streaming I/O; edgewatch cannot use it"
        )?;
    }
    writeln!(out, "Formats (video capture):")?;
    let formats = enum_formats(fd);
    if formats.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for f in &formats {
        let mut notes = Vec::new();
        if f.flags & FMT_FLAG_COMPRESSED != 0 {
            notes.push("compressed".to_string());
        }
        if f.flags & FMT_FLAG_EMULATED != 0 {
            notes.push("emulated".to_string());
        }
        match capture_format_of(FourCC::from(f.fourcc)) {
            Some(cf) => notes.push(format!("pixel_format = \"{cf}\"")),
            None => notes.push("not supported by edgewatch".to_string()),
        }
        writeln!(
            out,
            "  [{}] '{}' ({}) {}",
            f.index,
            Code(f.fourcc),
            f.description,
            notes.join(", ")
        )?;
        write_sizes(dev, FourCC::from(f.fourcc), out)?;
    }
    Ok(())
}

fn write_sizes(dev: &Device, code: FourCC, out: &mut dyn Write) -> io::Result<()> {
    let sizes = match dev.enum_framesizes(code) {
        Ok(sizes) => sizes,
        Err(e) => return writeln!(out, "      Sizes: not listed ({e})"),
    };
    for size in sizes {
        match size.size {
            FrameSizeEnum::Discrete(d) => {
                writeln!(out, "      Size: Discrete {}x{}", d.width, d.height)?;
                match dev.enum_frameintervals(code, d.width, d.height) {
                    Ok(intervals) => {
                        for i in intervals {
                            match i.interval {
                                FrameIntervalEnum::Discrete(f) => writeln!(
                                    out,
                                    "          Interval: Discrete {}",
                                    interval_text(&f)
                                )?,
                                FrameIntervalEnum::Stepwise(s) => writeln!(
                                    out,
                                    "          Interval: Stepwise {} to {} step {}",
                                    interval_text(&s.min),
                                    interval_text(&s.max),
                                    interval_text(&s.step)
                                )?,
                            }
                        }
                    }
                    Err(e) => writeln!(out, "          Intervals: not listed ({e})")?,
                }
            }
            FrameSizeEnum::Stepwise(s) => writeln!(
                out,
                "      Size: Stepwise {}x{} - {}x{} step {}x{}",
                s.min_width, s.min_height, s.max_width, s.max_height, s.step_width, s.step_height
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_resolve_to_nodes() {
        assert_eq!(device_path("/dev/video0"), PathBuf::from("/dev/video0"));
        assert_eq!(
            device_path("/dev/v4l/by-id/usb-Cam-video-index0"),
            PathBuf::from("/dev/v4l/by-id/usb-Cam-video-index0")
        );
        assert_eq!(
            device_path("usb-Cam-video-index0"),
            PathBuf::from("/dev/v4l/by-id/usb-Cam-video-index0")
        );
    }

    #[test]
    fn fourccs_round_trip() {
        for f in [
            CaptureFormat::Rgb24,
            CaptureFormat::Yuyv,
            CaptureFormat::Nv12,
            CaptureFormat::Yu12,
            CaptureFormat::Grey,
            CaptureFormat::Mjpeg,
        ] {
            assert_eq!(capture_format_of(fourcc(f)), Some(f));
        }
        assert_eq!(fourcc(CaptureFormat::Yuyv).repr, *b"YUYV");
        assert_eq!(Code(u32::from_le_bytes(*b"MJ\x01G")).to_string(), "MJ.G");
    }

    #[test]
    fn frame_rates_become_reduced_intervals() {
        let f = interval_of(30.0);
        assert_eq!((f.numerator, f.denominator), (1, 30));
        let f = interval_of(7.5);
        assert_eq!((f.numerator, f.denominator), (2, 15));
        let f = interval_of(29.97);
        assert_eq!((f.numerator, f.denominator), (100, 2997));
    }

    #[test]
    fn warnings_are_rate_limited_to_powers_of_two() {
        let logged: Vec<u64> = (1..=20).filter(|&n| worth_logging(n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
        assert!(!worth_logging(0));
    }

    #[test]
    fn packed_layouts_are_the_frame_itself() {
        for (format, len) in [
            (CaptureFormat::Yuyv, 8 * 4 * 2),
            (CaptureFormat::Rgb24, 8 * 4 * 3),
            (CaptureFormat::Grey, 8 * 4),
            (CaptureFormat::Nv12, 8 * 4 * 3 / 2),
            (CaptureFormat::Yu12, 8 * 4 * 3 / 2),
        ] {
            for bpl in [0, if format == CaptureFormat::Yuyv { 16 } else { 0 }] {
                let l = Layout::new(format, 8, 4, bpl).unwrap();
                assert!(l.packed, "{format}");
                assert_eq!((l.needed, l.packed_len), (len, len), "{format}");
            }
        }
        assert!(Layout::new(CaptureFormat::Mjpeg, 8, 4, 0).is_err());
    }

    #[test]
    fn narrow_strides_are_rejected() {
        let err = Layout::new(CaptureFormat::Yuyv, 8, 4, 15).unwrap_err();
        assert!(
            err.contains("15 bytes per line") && err.contains("16"),
            "{err}"
        );
    }

    #[test]
    fn padded_rows_are_packed() {
        // YU12, 4x2 with a stride of 6 for luma (3 for chroma): pixels are their own offsets.
        let l = Layout::new(CaptureFormat::Yu12, 4, 2, 6).unwrap();
        assert!(!l.packed);
        assert_eq!(l.packed_len, 12);
        // Y rows at 0 and 6, U row at 12, V row at 15; the last pixel ends at 17.
        assert_eq!(l.needed, 17);
        let raw: Vec<u8> = (0..18).collect();
        let mut out = vec![0; l.packed_len];
        l.pack(&raw, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 15, 16]);

        // NV12 4x2, stride 5: chroma rows share the luma stride.
        let l = Layout::new(CaptureFormat::Nv12, 4, 2, 5).unwrap();
        assert_eq!((l.needed, l.packed_len), (14, 12));
        let mut out = vec![0; 12];
        l.pack(&raw, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13]);

        // RGB24 2x2, stride 8.
        let l = Layout::new(CaptureFormat::Rgb24, 2, 2, 8).unwrap();
        assert_eq!((l.needed, l.packed_len), (14, 12));
        let mut out = vec![0; 12];
        l.pack(&raw, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
    }

    #[test]
    fn sequence_gaps_count_dropped_frames() {
        let step = |last: Option<u32>, seq: u32| sequence_delta(&mut { last }, seq);
        assert_eq!(step(None, 7), 1);
        assert_eq!(step(Some(7), 8), 1);
        assert_eq!(step(Some(7), 10), 3);
        assert_eq!(step(Some(u32::MAX), 1), 2);
        assert_eq!(step(Some(10), 3), 1);
        let mut last = None;
        assert_eq!(sequence_delta(&mut last, 4), 1);
        assert_eq!(last, Some(4));
    }
}
