//! The fake V4L2 camera (`tools/fake-v4l2`) driven the way a capture client drives a real one:
//! through the `v4l` crate (device, formats, parameters, an mmap stream) and through raw
//! ioctls, mmap and poll. It checks what the capture code will rely on: enumeration and format
//! negotiation, frames and their metadata, every scripted fault, no leaked fds or mappings
//! after 100 open/stream/close cycles, and no allocation per frame in steady state.
//!
//! The fake's source is compiled into this binary (`#[path]` module), so its `#[no_mangle]`
//! `open`, `ioctl`, `syscall`, `mmap`, ... take the place of glibc's for this process. One
//! check builds the shared object and preloads it into a small C program, to show the
//! `LD_PRELOAD` form works too (this needs `cargo` and a C compiler, both present wherever this
//! crate builds).
//!
//! Alone in its own binary without libtest's harness (`harness = false`): the fake is
//! configured through process-wide environment variables, and the malloc counter (also
//! compiled in, from `tools/malloc-count`) sees every thread, so the checks run one after
//! another on the main thread.

mod util;

#[path = "../tools/fake-v4l2/src/lib.rs"]
mod fake_v4l2;
#[path = "../tools/malloc-count/src/lib.rs"]
mod malloc_count;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use v4l::buffer::{Flags as BufferFlags, Metadata, Type};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::v4l2::vidioc;
use v4l::v4l_sys::{v4l2_buffer, v4l2_capability, v4l2_format, v4l2_requestbuffers};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use fake_v4l2::{fake_v4l2_mappings, fake_v4l2_open_fds, fake_v4l2_opens};

const DEV: &str = "/dev/video90";
const DEV2: &str = "/dev/video91";
const BY_ID: &str = "/dev/v4l/by-id/usb-Fake_Camera-video-index0";

/// Every variable the fake reads (the per-device fault ones for the paths above).
const VARS: &[&str] = &[
    "FAKE_V4L2_DEVICES",
    "FAKE_V4L2_FORMATS",
    "FAKE_V4L2_SIZES",
    "FAKE_V4L2_FPS",
    "FAKE_V4L2_FRAMES",
    "FAKE_V4L2_MAX_FRAMES",
    "FAKE_V4L2_FAULT",
    "FAKE_V4L2_FAULT_video90",
    "FAKE_V4L2_FAULT_video91",
    "FAKE_V4L2_ABSENT_OPENS",
];

fn main() {
    let checks: &[(&str, fn())] = &[
        ("inert without FAKE_V4L2_DEVICES", inert_without_devices),
        ("capabilities and enumeration", capabilities_and_enumeration),
        ("format and parameter negotiation", format_and_parameters),
        ("YUYV frames from an image folder", frames_from_a_folder),
        ("MJPG frames from an MJPEG clip", frames_from_an_mjpeg_clip),
        ("every pixel format", every_pixel_format),
        (
            "sequence counts dropped frames",
            sequence_counts_dropped_frames,
        ),
        ("raw ioctls, mmap and blocking DQBUF", raw_ioctls),
        ("fault unplug@N and absent opens", fault_unplug),
        ("fault eio@N", fault_eio),
        ("fault stall@N", fault_stall),
        ("fault short@N and per-device faults", fault_short),
        ("poll and select with real fds", poll_and_select),
        ("no fd or mapping leaks in 100 cycles", no_leaks),
        ("no allocation per frame", steady_state_allocates_nothing),
        ("LD_PRELOAD into a C program", preloaded_into_a_c_program),
    ];
    for (name, check) in checks {
        let start = Instant::now();
        check();
        println!("ok: {name} ({} ms)", start.elapsed().as_millis());
    }
    // Reached only if every assertion held (a failed one panics and exits non-zero).
    println!("fake_v4l2: {} passed, 0 failed", checks.len());
}

/// Resets the fake's environment: the three test devices, then `vars`; everything else unset.
fn fake_env(vars: &[(&str, &str)]) {
    for var in VARS {
        std::env::remove_var(var);
    }
    std::env::set_var("FAKE_V4L2_DEVICES", format!("{DEV},{DEV2},{BY_ID}"));
    for (key, value) in vars {
        std::env::set_var(key, value);
    }
}

/// Opens `path` and negotiates `fourcc` at `width` x `height`.
fn open_with(path: &str, fourcc: &[u8; 4], width: u32, height: u32) -> (Device, Format) {
    let dev = Device::with_path(path).expect("the fake device opens");
    let format = dev
        .set_format(&Format::new(width, height, FourCC::new(fourcc)))
        .expect("S_FMT");
    (dev, format)
}

/// A frame as the stream handed it out: its bytes (up to bytesused) and metadata.
struct Frame {
    bytes: Vec<u8>,
    meta: Metadata,
}

/// Captures `count` frames from an mmap stream with `buffers` buffers.
fn capture(dev: &Device, buffers: u32, count: usize) -> io::Result<Vec<Frame>> {
    let mut stream = Stream::with_buffers(dev, Type::VideoCapture, buffers)?;
    stream.set_timeout(Duration::from_secs(2));
    let mut frames = Vec::new();
    for _ in 0..count {
        let (bytes, meta) = stream.next()?;
        frames.push(Frame {
            bytes: bytes[..meta.bytesused as usize].to_vec(),
            meta: *meta,
        });
    }
    Ok(frames)
}

/// The raw OS error of `result`, which must have failed.
fn errno_of<T>(result: io::Result<T>) -> i32 {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {e}")),
    }
}

/// Entries in /proc/self/fd.
fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// V4L2 structs that are plain integers, so all zeroes is a valid value.
///
/// # Safety
/// Only for types whose every bit pattern is valid.
unsafe trait Plain: Sized {
    fn zeroed() -> Self {
        // SAFETY: the implementing type is plain data (the trait's contract).
        unsafe { std::mem::zeroed() }
    }
}
// SAFETY: bindgen structs of integers, arrays of integers and unions of those (and raw
// pointers, for which zero is null).
unsafe impl Plain for v4l2_capability {}
// SAFETY: as above.
unsafe impl Plain for v4l2_format {}
// SAFETY: as above.
unsafe impl Plain for v4l2_requestbuffers {}
// SAFETY: as above.
unsafe impl Plain for v4l2_buffer {}

/// One V4L2 ioctl through the `v4l` crate (which issues `syscall(SYS_ioctl, ...)`).
fn xioctl<T: Plain>(fd: i32, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is an exclusive reference to the struct type the request names (the
    // callers pair them), live for the whole call.
    unsafe { v4l::v4l2::ioctl(fd, request, (arg as *mut T).cast()) }
}

/// A capture buffer descriptor for `index`.
fn buffer(index: u32) -> v4l2_buffer {
    let mut b = v4l2_buffer::zeroed();
    b.index = index;
    b.type_ = Type::VideoCapture as u32;
    b.memory = v4l::Memory::Mmap as u32;
    b
}

fn inert_without_devices() {
    for var in VARS {
        std::env::remove_var(var);
    }
    let opens = fake_v4l2_opens();
    let err = Device::with_path(DEV)
        .err()
        .expect("no fake device without the variable");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    std::env::set_var("FAKE_V4L2_DEVICES", DEV);
    let err = Device::with_path(DEV2)
        .err()
        .expect("only listed paths are fake");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(fake_v4l2_opens(), opens);
    // Real files, mappings and polls pass straight through.
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    assert!(!text.is_empty());
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut pfd = libc::pollfd {
        fd: fds[0],
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; then closing the pipe this check created.
    unsafe {
        assert_eq!(libc::poll(&mut pfd, 1, 0), 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

fn capabilities_and_enumeration() {
    fake_env(&[]);
    let dev = Device::with_path(DEV).unwrap();
    let caps = dev.query_caps().unwrap();
    assert_eq!(caps.driver, "fake-v4l2");
    assert_eq!(caps.card, "Fake Camera");
    assert_eq!(caps.bus, "fake:0");
    use v4l::capability::Flags;
    assert!(caps
        .capabilities
        .contains(Flags::VIDEO_CAPTURE | Flags::STREAMING));
    let by_id = Device::with_path(BY_ID).unwrap();
    assert_eq!(by_id.query_caps().unwrap().bus, "fake:2");

    let formats = dev.enum_formats().unwrap();
    let codes: Vec<String> = formats.iter().map(|f| f.fourcc.to_string()).collect();
    assert_eq!(codes, ["YUYV", "MJPG", "NV12", "YU12", "RGB3", "GREY"]);
    use v4l::format::description::Flags as FormatFlags;
    assert!(formats[1].flags.contains(FormatFlags::COMPRESSED));
    assert!(!formats[0].flags.contains(FormatFlags::COMPRESSED));
    assert_eq!(formats[1].description, "Motion-JPEG");

    let sizes: Vec<(u32, u32)> = dev
        .enum_framesizes(FourCC::new(b"MJPG"))
        .unwrap()
        .into_iter()
        .map(|s| match s.size {
            v4l::framesize::FrameSizeEnum::Discrete(d) => (d.width, d.height),
            other => panic!("not discrete: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [(640, 480), (320, 240), (640, 360)]);
    let intervals: Vec<(u32, u32)> = dev
        .enum_frameintervals(FourCC::new(b"YUYV"), 640, 360)
        .unwrap()
        .into_iter()
        .map(|i| match i.interval {
            v4l::frameinterval::FrameIntervalEnum::Discrete(f) => (f.numerator, f.denominator),
            other => panic!("not discrete: {other:?}"),
        })
        .collect();
    assert_eq!(intervals, [(1, 30), (1, 15)]);
    assert_eq!(
        errno_of(dev.enum_framesizes(FourCC::new(b"H264"))),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(dev.enum_frameintervals(FourCC::new(b"YUYV"), 800, 600)),
        libc::EINVAL
    );

    // Environment overrides, read at open.
    fake_env(&[
        ("FAKE_V4L2_FORMATS", "MJPG,GREY"),
        ("FAKE_V4L2_SIZES", "320x180,160x90"),
        ("FAKE_V4L2_FPS", "10"),
    ]);
    let dev = Device::with_path(DEV).unwrap();
    let codes: Vec<String> = dev
        .enum_formats()
        .unwrap()
        .iter()
        .map(|f| f.fourcc.to_string())
        .collect();
    assert_eq!(codes, ["MJPG", "GREY"]);
    assert_eq!(dev.enum_framesizes(FourCC::new(b"GREY")).unwrap().len(), 2);
    assert_eq!(
        dev.enum_frameintervals(FourCC::new(b"GREY"), 160, 90)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(dev.params().unwrap().interval.denominator, 10);
    let format = dev.format().unwrap();
    assert_eq!(
        (format.fourcc, format.width, format.height),
        (FourCC::new(b"MJPG"), 320, 180)
    );
}

fn format_and_parameters() {
    fake_env(&[]);
    let (dev, format) = open_with(DEV, b"YUYV", 600, 400);
    // The nearest offered size, with the layout filled in.
    assert_eq!((format.width, format.height), (640, 360));
    assert_eq!((format.stride, format.size), (1280, 640 * 360 * 2));
    assert_eq!(format.field_order as u32, 1, "V4L2_FIELD_NONE");
    // An unknown fourcc becomes the first format, as drivers do.
    let format = dev
        .set_format(&Format::new(320, 240, FourCC::new(b"ABCD")))
        .unwrap();
    assert_eq!(format.fourcc, FourCC::new(b"YUYV"));
    let format = dev
        .set_format(&Format::new(640, 480, FourCC::new(b"MJPG")))
        .unwrap();
    assert_eq!((format.stride, format.size), (0, 640 * 480 * 2));
    assert_eq!(dev.format().unwrap().fourcc, FourCC::new(b"MJPG"));

    let params = dev.params().unwrap();
    assert_eq!(
        (params.interval.numerator, params.interval.denominator),
        (1, 30)
    );
    assert_eq!(
        dev.set_params(&Parameters::with_fps(25))
            .unwrap()
            .interval
            .denominator,
        30
    );
    assert_eq!(
        dev.set_params(&Parameters::with_fps(10))
            .unwrap()
            .interval
            .denominator,
        15
    );
    // Each open has its own state.
    let other = Device::with_path(DEV).unwrap();
    assert_eq!(other.format().unwrap().fourcc, FourCC::new(b"YUYV"));
    assert_eq!(other.params().unwrap().interval.denominator, 30);
}

/// Limited-range BT.601 luma of each pixel of `path` resized to `width` x `height`.
fn expected_luma(path: &Path, width: u32, height: u32) -> Vec<u8> {
    let image = image::open(path).unwrap().to_rgb8();
    let image =
        image::imageops::resize(&image, width, height, image::imageops::FilterType::Triangle);
    image
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(i32::from);
            (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
        })
        .collect()
}

fn frames_from_a_folder() {
    let dir = util::frames_dir();
    fake_env(&[
        ("FAKE_V4L2_FRAMES", dir.to_str().unwrap()),
        ("FAKE_V4L2_SIZES", "320x240"),
    ]);
    let (dev, format) = open_with(DEV, b"YUYV", 320, 240);
    // Every image in the folder (traffic_000*.bmp and face.jpg), in name order.
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| ["bmp", "jpg", "png"].contains(&e.to_str().unwrap()))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let sources: Vec<Vec<u8>> = names
        .iter()
        .map(|path| expected_luma(path, 320, 240))
        .collect();
    let frames = capture(&dev, 4, 10).unwrap();
    let mut last: Option<&Metadata> = None;
    for frame in &frames {
        assert_eq!(frame.meta.bytesused, format.size);
        assert!(frame.meta.flags.contains(BufferFlags::TIMESTAMP_MONOTONIC));
        assert!(!frame.meta.flags.contains(BufferFlags::ERROR));
        assert_eq!(frame.meta.field, 1, "V4L2_FIELD_NONE");
        if let Some(last) = last {
            assert!(frame.meta.sequence > last.sequence);
            let (t0, t1) = (last.timestamp, frame.meta.timestamp);
            assert!((t1.sec, t1.usec) > (t0.sec, t0.usec));
        }
        last = Some(&frame.meta);
        // The frame shows source `sequence % n`: compare its luma (every other YUYV byte).
        let expected = &sources[frame.meta.sequence as usize % sources.len()];
        let diff: u64 = frame
            .bytes
            .iter()
            .step_by(2)
            .zip(expected)
            .map(|(&a, &b)| u64::from(a.abs_diff(b)))
            .sum();
        let mean = diff as f64 / expected.len() as f64;
        assert!(
            mean < 1.0,
            "frame {} luma differs by {mean}",
            frame.meta.sequence
        );
    }
}

fn frames_from_an_mjpeg_clip() {
    let clip = util::clips_dir().join("traffic.mjpeg");
    fake_env(&[
        ("FAKE_V4L2_FRAMES", clip.to_str().unwrap()),
        ("FAKE_V4L2_MAX_FRAMES", "4"),
    ]);
    let (dev, format) = open_with(DEV, b"MJPG", 640, 360);
    let frames = capture(&dev, 3, 6).unwrap();
    for frame in &frames {
        let jpeg = &frame.bytes;
        assert!(jpeg.len() <= format.size as usize);
        assert_eq!(jpeg[..2], [0xFF, 0xD8]);
        assert_eq!(jpeg[jpeg.len() - 2..], [0xFF, 0xD9]);
        let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (640, 360));
    }
}

fn every_pixel_format() {
    fake_env(&[("FAKE_V4L2_FPS", "100"), ("FAKE_V4L2_SIZES", "320x240")]);
    for (fourcc, size) in [
        (b"YUYV", 320 * 240 * 2),
        (b"NV12", 320 * 240 * 3 / 2),
        (b"YU12", 320 * 240 * 3 / 2),
        (b"RGB3", 320 * 240 * 3),
        (b"GREY", 320 * 240),
    ] {
        let (dev, format) = open_with(DEV, fourcc, 320, 240);
        assert_eq!(format.fourcc, FourCC::new(fourcc));
        assert_eq!(format.size, size);
        for frame in capture(&dev, 2, 3).unwrap() {
            assert_eq!(frame.meta.bytesused, size, "{}", format.fourcc);
        }
    }
}

fn sequence_counts_dropped_frames() {
    fake_env(&[("FAKE_V4L2_FPS", "100")]);
    let (dev, _) = open_with(DEV, b"GREY", 320, 240);
    let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4).unwrap();
    stream.set_timeout(Duration::from_secs(2));
    let first = stream.next().unwrap().1.sequence;
    // 200 ms at 100 fps: 20 frames fall due while only 4 buffers can take them.
    std::thread::sleep(Duration::from_millis(200));
    let mut sequences = vec![first];
    for _ in 0..4 {
        sequences.push(stream.next().unwrap().1.sequence);
    }
    assert!(sequences[1] - sequences[0] >= 10, "{sequences:?}");
    assert!(sequences.windows(2).all(|w| w[1] > w[0]), "{sequences:?}");
}

fn raw_ioctls() {
    fake_env(&[]);
    let (fds, mappings) = (fake_v4l2_open_fds(), fake_v4l2_mappings());
    // Blocking mode (v4l's Device always opens O_NONBLOCK).
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/video90".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0);
    assert_eq!(fake_v4l2_open_fds(), fds + 1);
    // SAFETY: F_GETFD on the fd just opened.
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);

    // `ioctl` itself is intercepted too, not just `syscall`.
    let mut caps = v4l2_capability::zeroed();
    // SAFETY: VIDIOC_QUERYCAP takes a v4l2_capability.
    let r = unsafe { libc::ioctl(fd, vidioc::VIDIOC_QUERYCAP, &mut caps) };
    assert_eq!(r, 0);
    assert_eq!(&caps.driver[..10], b"fake-v4l2\0");
    let mut nothing = v4l2_format::zeroed();
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_QUERYCTRL, &mut nothing)),
        libc::ENOTTY
    );

    let mut fmt = v4l2_format::zeroed();
    fmt.type_ = Type::VideoCapture as u32;
    fmt.fmt.pix.width = 320;
    fmt.fmt.pix.height = 240;
    fmt.fmt.pix.pixelformat = u32::from_le_bytes(*b"YUYV");
    xioctl(fd, vidioc::VIDIOC_S_FMT, &mut fmt).unwrap();
    // SAFETY: reading the pix member the fake just filled in.
    let sizeimage = unsafe { fmt.fmt.pix.sizeimage };
    assert_eq!(sizeimage, 320 * 240 * 2);

    let mut req = v4l2_requestbuffers::zeroed();
    req.count = 1;
    req.type_ = Type::VideoCapture as u32;
    req.memory = v4l::Memory::Mmap as u32;
    xioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req).unwrap();
    assert_eq!(req.count, 2, "clamped to at least 2");
    let mut maps = Vec::new();
    for index in 0..2 {
        let mut b = buffer(index);
        xioctl(fd, vidioc::VIDIOC_QUERYBUF, &mut b).unwrap();
        assert_eq!(b.length, sizeimage);
        // SAFETY: reading the offset member QUERYBUF filled in for MMAP buffers.
        let offset = unsafe { b.m.offset };
        // SAFETY: mapping the buffer at the offset the driver gave.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                b.length as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        maps.push((ptr, b.length as usize));
        xioctl(fd, vidioc::VIDIOC_QBUF, &mut b).unwrap();
    }
    assert_eq!(fake_v4l2_mappings(), mappings + 2);
    // SAFETY: an mmap at an offset no buffer has must fail without mapping anything.
    let bad = unsafe { libc::mmap(std::ptr::null_mut(), 4096, 1, 1, fd, 123) };
    assert_eq!(bad, libc::MAP_FAILED);
    assert_eq!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL)
    );
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_S_FMT, &mut fmt)),
        libc::EBUSY
    );
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_QUERYBUF, &mut buffer(5))),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_QBUF, &mut buffer(0))),
        libc::EINVAL,
        "already queued"
    );

    let mut buf_type = Type::VideoCapture as i32;
    // SAFETY: STREAMON/STREAMOFF take an int.
    let streamon = |t: &mut i32| unsafe {
        v4l::v4l2::ioctl(fd, vidioc::VIDIOC_STREAMON, (t as *mut i32).cast())
    };
    let streamed = Instant::now();
    streamon(&mut buf_type).unwrap();
    let mut b = buffer(0);
    xioctl(fd, vidioc::VIDIOC_DQBUF, &mut b).unwrap();
    assert_eq!((b.sequence, b.bytesused), (0, sizeimage));
    let flags = BufferFlags::from(b.flags);
    assert!(flags.contains(BufferFlags::TIMESTAMP_MONOTONIC));
    assert!(!flags.intersects(BufferFlags::QUEUED | BufferFlags::DONE));
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert!(
        (now.tv_sec - b.timestamp.tv_sec).abs() <= 1,
        "CLOCK_MONOTONIC"
    );
    // The fake wrote through its own mapping; the app sees it through its own.
    // SAFETY: the mapping of buffer `b.index` is `sizeimage` bytes long.
    let y0 = unsafe { *(maps[b.index as usize].0 as *const u8) };
    assert!((16..=235).contains(&y0));

    // Blocking DQBUF waits for the next frame: frame 1 is due 1/30 s after STREAMON.
    xioctl(fd, vidioc::VIDIOC_QBUF, &mut b).unwrap();
    let mut b = buffer(0);
    xioctl(fd, vidioc::VIDIOC_DQBUF, &mut b).unwrap();
    assert_eq!(b.sequence, 1);
    assert!(streamed.elapsed() >= Duration::from_millis(30), "it waited");
    xioctl(fd, vidioc::VIDIOC_DQBUF, &mut buffer(0)).unwrap();
    // Non-blocking, with no buffer queued: nothing can be ready.
    // SAFETY: F_SETFL on our fd.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_DQBUF, &mut buffer(0))),
        libc::EAGAIN
    );

    // STREAMOFF returns every buffer to the app.
    // SAFETY: STREAMOFF takes an int.
    unsafe {
        v4l::v4l2::ioctl(
            fd,
            vidioc::VIDIOC_STREAMOFF,
            (&mut buf_type as *mut i32).cast(),
        )
    }
    .unwrap();
    for index in 0..2 {
        let mut b = buffer(index);
        xioctl(fd, vidioc::VIDIOC_QUERYBUF, &mut b).unwrap();
        assert!(!BufferFlags::from(b.flags).intersects(BufferFlags::QUEUED | BufferFlags::DONE));
    }
    req.count = 0;
    assert_eq!(
        errno_of(xioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req)),
        libc::EBUSY,
        "buffers still mapped"
    );
    for (ptr, len) in maps {
        // SAFETY: unmapping what this check mapped.
        assert_eq!(unsafe { libc::munmap(ptr, len) }, 0);
    }
    assert_eq!(fake_v4l2_mappings(), mappings);
    xioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req).unwrap();
    // SAFETY: closing the fd this check opened.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    assert_eq!(fake_v4l2_open_fds(), fds);
}

fn fault_unplug() {
    fake_env(&[
        ("FAKE_V4L2_FAULT", "unplug@3"),
        ("FAKE_V4L2_ABSENT_OPENS", "2"),
        ("FAKE_V4L2_FPS", "100"),
    ]);
    let (fds, mappings) = (fake_v4l2_open_fds(), fake_v4l2_mappings());
    {
        let (dev, _) = open_with(DEV, b"YUYV", 320, 240);
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4).unwrap();
        stream.set_timeout(Duration::from_secs(2));
        for _ in 0..3 {
            stream.next().unwrap();
        }
        assert_eq!(errno_of(stream.next().map(|_| ())), libc::ENODEV);
        let fd = dev.handle().fd();
        let start = Instant::now();
        assert_eq!(dev.handle().poll(libc::POLLIN, 5000).unwrap(), 1);
        assert!(start.elapsed() < Duration::from_secs(1));
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 1000) }, 1);
        assert_eq!(pfd.revents, libc::POLLERR | libc::POLLHUP);
        assert_eq!(errno_of(dev.query_caps()), libc::ENODEV);
        // SAFETY: an mmap that must fail without mapping anything.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), 4096, 1, 1, fd, 0) };
        assert_eq!(ptr, libc::MAP_FAILED);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENODEV)
        );
        // Dropping the stream and the device unmaps and closes (v4l ignores ENODEV).
    }
    assert_eq!(
        (fake_v4l2_open_fds(), fake_v4l2_mappings()),
        (fds, mappings)
    );
    // The device is gone for two opens (other devices are not), then it is back.
    for _ in 0..2 {
        let err = Device::with_path(DEV)
            .err()
            .expect("absent after the unplug");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        Device::with_path(DEV2).expect("another device is unaffected");
    }
    std::env::remove_var("FAKE_V4L2_FAULT");
    let (dev, _) = open_with(DEV, b"YUYV", 320, 240);
    assert_eq!(capture(&dev, 2, 5).unwrap().len(), 5);
}

fn fault_eio() {
    fake_env(&[("FAKE_V4L2_FAULT", "eio@2"), ("FAKE_V4L2_FPS", "100")]);
    let (dev, _) = open_with(DEV, b"GREY", 320, 240);
    let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 3).unwrap();
    stream.set_timeout(Duration::from_secs(2));
    stream.next().unwrap();
    stream.next().unwrap();
    assert_eq!(errno_of(stream.next().map(|_| ())), libc::EIO);
    let mut pfd = libc::pollfd {
        fd: dev.handle().fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 1000) }, 1);
    assert_eq!(pfd.revents, libc::POLLERR);
}

fn fault_stall() {
    fake_env(&[("FAKE_V4L2_FAULT", "stall@2"), ("FAKE_V4L2_FPS", "100")]);
    let (dev, _) = open_with(DEV, b"GREY", 320, 240);
    let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 3).unwrap();
    stream.set_timeout(Duration::from_millis(300));
    stream.next().unwrap();
    stream.next().unwrap();
    let start = Instant::now();
    let err = stream.next().map(|_| ()).expect_err("stalled");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(250));
}

fn fault_short() {
    fake_env(&[("FAKE_V4L2_FAULT", "short@2"), ("FAKE_V4L2_FPS", "100")]);
    let (dev, format) = open_with(DEV, b"YUYV", 320, 240);
    let used: Vec<u32> = capture(&dev, 3, 5)
        .unwrap()
        .iter()
        .map(|f| f.meta.bytesused)
        .collect();
    let (full, half) = (format.size, format.size / 2);
    assert_eq!(used, [full, full, half, half, half]);

    // A per-device fault wins over FAKE_V4L2_FAULT: video91 is short from the start instead
    // of stalling after one frame. For MJPG a short frame is a JPEG cut in half.
    fake_env(&[
        ("FAKE_V4L2_FAULT", "stall@1"),
        ("FAKE_V4L2_FAULT_video91", "short@0"),
        ("FAKE_V4L2_FPS", "100"),
    ]);
    let (dev, _) = open_with(DEV2, b"MJPG", 320, 240);
    let frames = capture(&dev, 3, 4).unwrap();
    for frame in frames {
        assert_eq!(frame.bytes[..2], [0xFF, 0xD8]);
        assert_ne!(frame.bytes[frame.bytes.len() - 2..], [0xFF, 0xD9]);
    }
}

/// Streams on a raw fd with `count` buffers queued; returns the fd.
fn raw_stream(path: &std::ffi::CStr, count: u32) -> i32 {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK) };
    assert!(fd >= 0);
    let mut req = v4l2_requestbuffers::zeroed();
    req.count = count;
    req.type_ = Type::VideoCapture as u32;
    req.memory = v4l::Memory::Mmap as u32;
    xioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req).unwrap();
    for index in 0..req.count {
        xioctl(fd, vidioc::VIDIOC_QBUF, &mut buffer(index)).unwrap();
    }
    let mut buf_type = Type::VideoCapture as i32;
    // SAFETY: STREAMON takes an int.
    unsafe {
        v4l::v4l2::ioctl(
            fd,
            vidioc::VIDIOC_STREAMON,
            (&mut buf_type as *mut i32).cast(),
        )
    }
    .unwrap();
    fd
}

fn poll_and_select() {
    fake_env(&[("FAKE_V4L2_FPS", "100")]);
    let fake = raw_stream(c"/dev/video90", 2);
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for two fds.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let mut pfds = [
        libc::pollfd {
            fd: fake,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pipe[0],
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds.
    assert_eq!(unsafe { libc::poll(pfds.as_mut_ptr(), 2, 1000) }, 1);
    assert_eq!((pfds[0].fd, pfds[1].fd), (fake, pipe[0]), "fds restored");
    assert_eq!((pfds[0].revents, pfds[1].revents), (libc::POLLIN, 0));
    // SAFETY: writing one byte from a valid buffer to the pipe.
    assert_eq!(unsafe { libc::write(pipe[1], b"x".as_ptr().cast(), 1) }, 1);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::poll(pfds.as_mut_ptr(), 2, 1000) }, 2);
    assert_eq!(pfds[1].revents, libc::POLLIN);

    // SAFETY: fd_set is plain data; FD_* on fds below FD_SETSIZE; a valid timeout.
    unsafe {
        let mut read: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(fake, &mut read);
        libc::FD_SET(pipe[0], &mut read);
        let mut tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        let nfds = fake.max(pipe[0]) + 1;
        let ready = libc::select(
            nfds,
            &mut read,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
        assert_eq!(ready, 2);
        assert!(libc::FD_ISSET(fake, &read) && libc::FD_ISSET(pipe[0], &read));
    }

    // Take both buffers: with none queued, nothing becomes ready and poll times out.
    for _ in 0..2 {
        let mut b = buffer(0);
        let start = Instant::now();
        loop {
            match xioctl(fake, vidioc::VIDIOC_DQBUF, &mut b) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    assert!(start.elapsed() < Duration::from_secs(2));
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("DQBUF: {e}"),
            }
        }
    }
    let start = Instant::now();
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(pfds.as_mut_ptr(), 1, 100) }, 0);
    assert!(start.elapsed() >= Duration::from_millis(90));
    // SAFETY: as for select above.
    unsafe {
        let mut read: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(fake, &mut read);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let ready = libc::select(
            fake + 1,
            &mut read,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
        assert_eq!(ready, 0);
        assert!(!libc::FD_ISSET(fake, &read));
    }
    for fd in [fake, pipe[0], pipe[1]] {
        // SAFETY: closing fds this check opened (the fake one has no mappings).
        assert_eq!(unsafe { libc::close(fd) }, 0);
    }
}

fn no_leaks() {
    fake_env(&[("FAKE_V4L2_FPS", "200"), ("FAKE_V4L2_SIZES", "160x120")]);
    let (fds, opens) = (open_fd_count(), fake_v4l2_opens());
    for cycle in 0..100 {
        let fourcc = [b"YUYV", b"MJPG", b"NV12", b"GREY"][cycle % 4];
        let (dev, _) = open_with(DEV, fourcc, 160, 120);
        assert_eq!(capture(&dev, 2, 2).unwrap().len(), 2);
    }
    assert_eq!(fake_v4l2_opens(), opens + 100);
    assert_eq!(fake_v4l2_open_fds(), 0);
    assert_eq!(fake_v4l2_mappings(), 0);
    assert_eq!(open_fd_count(), fds, "fds leaked");
}

fn steady_state_allocates_nothing() {
    fake_env(&[("FAKE_V4L2_FPS", "200"), ("FAKE_V4L2_SIZES", "160x120")]);
    for fourcc in [b"YUYV", b"MJPG"] {
        let (dev, _) = open_with(DEV, fourcc, 160, 120);
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4).unwrap();
        stream.set_timeout(Duration::from_secs(2));
        for _ in 0..10 {
            stream.next().unwrap();
        }
        let before = malloc_count::edgewatch_malloc_count();
        let mut bytes = 0u64;
        for _ in 0..100 {
            bytes += u64::from(stream.next().unwrap().1.bytesused);
        }
        let mallocs = malloc_count::edgewatch_malloc_count() - before;
        assert!(bytes > 0);
        assert_eq!(mallocs, 0, "{mallocs} mallocs in 100 frames");
    }
}

/// The C client run under LD_PRELOAD: V4L2 through glibc's own variadic `open`/`ioctl` and
/// `syscall`, mmap, poll; it prints what it saw and the fake's counters.
const C_CLIENT: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long long counter(const char *name) {
    uint64_t (*f)(void) = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, name);
    return f ? (unsigned long long)f() : 999;
}

#define CHECK(call) do { if ((call) != 0) { printf("%s failed: %s\n", #call, strerror(errno)); return 1; } } while (0)

int main(void) {
    int fd = open("/dev/video90", O_RDWR);
    if (fd < 0) { printf("open failed: %s\n", strerror(errno)); return 1; }
    struct v4l2_capability cap;
    memset(&cap, 0, sizeof cap);
    CHECK(ioctl(fd, VIDIOC_QUERYCAP, &cap));
    printf("driver=%s card=%s\n", (char *)cap.driver, (char *)cap.card);
    struct v4l2_format fmt;
    memset(&fmt, 0, sizeof fmt);
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    fmt.fmt.pix.width = 320;
    fmt.fmt.pix.height = 240;
    fmt.fmt.pix.pixelformat = V4L2_PIX_FMT_GREY;
    CHECK(ioctl(fd, VIDIOC_S_FMT, &fmt));
    memset(&fmt, 0, sizeof fmt);
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    CHECK(syscall(SYS_ioctl, fd, VIDIOC_G_FMT, &fmt));
    printf("format=%ux%u sizeimage=%u\n", fmt.fmt.pix.width, fmt.fmt.pix.height, fmt.fmt.pix.sizeimage);
    struct v4l2_requestbuffers req;
    memset(&req, 0, sizeof req);
    req.count = 3;
    req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    req.memory = V4L2_MEMORY_MMAP;
    CHECK(ioctl(fd, VIDIOC_REQBUFS, &req));
    void *maps[32];
    size_t lengths[32];
    for (unsigned i = 0; i < req.count; i++) {
        struct v4l2_buffer b;
        memset(&b, 0, sizeof b);
        b.index = i;
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = V4L2_MEMORY_MMAP;
        CHECK(ioctl(fd, VIDIOC_QUERYBUF, &b));
        maps[i] = mmap(NULL, b.length, PROT_READ, MAP_SHARED, fd, b.m.offset);
        if (maps[i] == MAP_FAILED) { printf("mmap failed: %s\n", strerror(errno)); return 1; }
        lengths[i] = b.length;
        CHECK(ioctl(fd, VIDIOC_QBUF, &b));
    }
    printf("mappings=%llu\n", counter("fake_v4l2_mappings"));
    int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    CHECK(ioctl(fd, VIDIOC_STREAMON, &type));
    for (int n = 0; n < 5; n++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 2000) != 1) { printf("poll timed out\n"); return 1; }
        struct v4l2_buffer b;
        memset(&b, 0, sizeof b);
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = V4L2_MEMORY_MMAP;
        CHECK(ioctl(fd, VIDIOC_DQBUF, &b));
        const unsigned char *y = maps[b.index];
        printf("frame sequence=%u bytesused=%u luma_ok=%d\n", b.sequence, b.bytesused, y[0] >= 16 && y[0] <= 235);
        CHECK(ioctl(fd, VIDIOC_QBUF, &b));
    }
    CHECK(ioctl(fd, VIDIOC_STREAMOFF, &type));
    for (unsigned i = 0; i < req.count; i++) munmap(maps[i], lengths[i]);
    req.count = 0;
    CHECK(ioctl(fd, VIDIOC_REQBUFS, &req));
    CHECK(close(fd));
    printf("after close: open_fds=%llu mappings=%llu opens=%llu\n", counter("fake_v4l2_open_fds"),
           counter("fake_v4l2_mappings"), counter("fake_v4l2_opens"));
    return 0;
}
"#;

/// A command for `program` that does not inherit this process's FAKE_V4L2_* settings.
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to completion within `limit`, with stdout and stderr in files under `dir`;
/// returns `(success, stdout, stderr)`.
fn run(mut cmd: Command, dir: &Path, name: &str, limit: Duration) -> (bool, String, String) {
    let (out, err) = (
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.err")),
    );
    cmd.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    (status.success(), read(&out), read(&err))
}

fn preloaded_into_a_c_program() {
    // Build the shared object from the current source (a no-op when it is up to date), into
    // the target folder this test binary lives in.
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = release.parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut build = clean_command(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--offline", "-p", "fake-v4l2"])
        .arg("--target-dir")
        .arg(target_dir);
    let (ok, _, stderr) = run(build, work.path(), "cargo", Duration::from_secs(900));
    assert!(ok, "cargo build -p fake-v4l2 failed:\n{stderr}");
    let so = release.join("libfake_v4l2.so");
    assert!(so.exists(), "{} was not built", so.display());

    let source = work.path().join("client.c");
    std::fs::write(&source, C_CLIENT).unwrap();
    let client = work.path().join("client");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut compile = clean_command(cc);
    compile
        .arg("-O1")
        .arg("-o")
        .arg(&client)
        .arg(&source)
        .arg("-ldl");
    let (ok, _, stderr) = run(compile, work.path(), "cc", Duration::from_secs(120));
    assert!(
        ok,
        "compiling the C client failed (needs a C compiler, `cc`):\n{stderr}"
    );

    let mut preloaded = clean_command(&client);
    preloaded
        .env("LD_PRELOAD", &so)
        .env("FAKE_V4L2_DEVICES", DEV)
        .env("FAKE_V4L2_FPS", "100");
    let (ok, stdout, stderr) = run(preloaded, work.path(), "client", Duration::from_secs(60));
    assert!(ok, "the preloaded client failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("driver=fake-v4l2 card=Fake Camera"),
        "{stdout}"
    );
    assert!(
        stdout.contains("format=320x240 sizeimage=76800"),
        "{stdout}"
    );
    assert!(stdout.contains("mappings=3"), "{stdout}");
    let frames: Vec<&str> = stdout.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frames.len(), 5, "{stdout}");
    assert!(frames
        .iter()
        .all(|l| l.ends_with("bytesused=76800 luma_ok=1")));
    assert!(
        stdout.contains("after close: open_fds=0 mappings=0 opens=1"),
        "{stdout}"
    );

    // Without the device list the same program sees no device: the preloaded fake is inert.
    let mut inert = clean_command(&client);
    inert.env("LD_PRELOAD", &so);
    let (ok, stdout, _) = run(inert, work.path(), "inert", Duration::from_secs(60));
    assert!(
        !ok && stdout.contains("open failed: No such file or directory"),
        "{stdout}"
    );
}
