//! V4L2 cameras against the fake device of `tools/fake-v4l2`, compiled into this binary (its
//! `open`, `ioctl`, `mmap`, `poll`, ... win over glibc's for this executable), and the real
//! `edgewatch` binary with the fake preloaded.
//!
//! No libtest harness (`harness = false`): the fake is configured through process-wide
//! environment variables, so `main` runs the checks one after another and prints a summary.
//! `cargo test --release --test v4l2 -- reconnect` runs only the checks whose name contains
//! `reconnect`.

mod util;

// Without libtest, `#[test]` functions are left out but their modules' imports are not.
#[allow(unused_imports)]
#[path = "../tools/fake-v4l2/src/lib.rs"]
mod fake_v4l2;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgewatch::capture::convert;
use edgewatch::capture::v4l2::{probe, V4l2Source};
use edgewatch::capture::{CaptureError, Frame, FrameFormat, FrameSource, Next, PixelFormat};
use edgewatch::clock::{Clock, ManualClock, MonotonicClock};
use util::v4l2::{
    fake_v4l2_lib, fd_count, fds_to, mapping_of, set_fake_env, v4l2_camera_config, v4l2_site,
    CameraKeys,
};

/// Counts heap allocations while armed, to prove the frame path allocates nothing.
struct CountingAllocator;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

impl CountingAllocator {
    fn count(&self) {
        if ARMED.load(Relaxed) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting does not touch
// the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const DEV: &str = "/dev/video90";
/// What a memfd-backed fake buffer is called in `/proc/self/fd` and `/proc/self/maps`.
const FAKE_MEMFD: &str = "/memfd:fake-v4l2";
/// Generous bound for anything that should take well under a second.
const LIMIT: Duration = Duration::from_secs(20);

/// One sample frame for every fake frame, so frames of different formats show the same picture.
fn still_frame() -> String {
    util::frames_dir()
        .join("traffic_0001.bmp")
        .display()
        .to_string()
}

/// The fake with `/dev/video90` and the sample picture, plus `more`.
fn fake_env(more: &[(&str, &str)]) {
    let still = still_frame();
    let mut vars = vec![
        ("FAKE_V4L2_DEVICES", DEV),
        ("FAKE_V4L2_FRAMES", still.as_str()),
    ];
    vars.extend_from_slice(more);
    set_fake_env(&vars);
}

fn open_with(keys: &CameraKeys, clock: Arc<dyn Clock>) -> Result<V4l2Source, CaptureError> {
    V4l2Source::open(&v4l2_camera_config(keys), clock)
}

fn open(keys: &CameraKeys) -> V4l2Source {
    match open_with(keys, Arc::new(MonotonicClock::new())) {
        Ok(src) => src,
        Err(e) => panic!("{} opens: {e}", keys.device),
    }
}

/// Asks for frames until `n` arrive or `limit` passes, calling `f` with each; returns how many
/// arrived. Allocates nothing itself.
fn pull(src: &mut V4l2Source, n: usize, limit: Duration, mut f: impl FnMut(&Frame<'_>)) -> usize {
    let start = Instant::now();
    let mut got = 0;
    while got < n && start.elapsed() < limit {
        match src.next_frame() {
            Ok(Next::Frame(frame)) => {
                f(&frame);
                got += 1;
            }
            Ok(Next::Waiting) => {}
            Ok(Next::End) => panic!("a camera never ends"),
            Err(e) => panic!("next_frame failed: {e}"),
        }
    }
    got
}

/// The fake holds no fd and no mapping, and neither does this process.
fn assert_released(what: &str) {
    assert_eq!(
        fake_v4l2::fake_v4l2_open_fds(),
        0,
        "{what}: fake fds left open"
    );
    assert_eq!(
        fake_v4l2::fake_v4l2_mappings(),
        0,
        "{what}: buffers left mapped"
    );
    assert!(fds_to(FAKE_MEMFD).is_empty(), "{what}: camera fd leaked");
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.len().max(1) as f64
}

// ---------------------------------------------------------------------------------------------

/// Every format yields frames of the configured layout and size: YUYV, NV12 and RGB24 straight
/// from the driver's mapped buffer, YU12 and GREY converted and MJPEG decoded into NV12. All of
/// them show the same picture (the fake renders one still image in every format).
fn every_format_yields_frames_of_its_layout() {
    fake_env(&[("FAKE_V4L2_FPS", "100")]);
    let (w, h) = (320u32, 240u32);
    let mut reference_rgb: Option<Vec<u8>> = None;
    for (format, delivered, zero_copy) in [
        ("rgb24", PixelFormat::Rgb24, true),
        ("yuyv", PixelFormat::Yuyv, true),
        ("nv12", PixelFormat::Nv12, true),
        ("yu12", PixelFormat::Nv12, false),
        ("grey", PixelFormat::Nv12, false),
        ("mjpeg", PixelFormat::Nv12, false),
    ] {
        let mut src = open(&CameraKeys::new(DEV).format(format).size(w, h));
        let want = FrameFormat {
            width: w,
            height: h,
            pixel_format: delivered,
        };
        assert_eq!(src.format(), want, "{format}");
        let mut last = Vec::new();
        let mut seqs = Vec::new();
        let got = pull(&mut src, 5, LIMIT, |frame| {
            assert_eq!(frame.data.len(), want.frame_len(), "{format}");
            let mapped = mapping_of(frame.data.as_ptr() as usize).unwrap_or_default();
            assert_eq!(
                mapped.starts_with(FAKE_MEMFD),
                zero_copy,
                "{format}: frame lives in `{mapped}`"
            );
            seqs.push(frame.seq);
            last.clear();
            last.extend_from_slice(frame.data);
        });
        assert_eq!(got, 5, "{format}: frames");
        assert!(seqs.windows(2).all(|p| p[1] > p[0]), "{format}: {seqs:?}");
        let stats = src.stats();
        assert!(
            stats.online && stats.delivered == 5 && stats.corrupt == 0,
            "{format}: {stats:?}"
        );
        let mut rgb = vec![0; PixelFormat::Rgb24.frame_len(w, h)];
        convert::to_rgb(delivered, w, h, &last, &mut rgb).unwrap();
        let luma = |rgb: &[u8]| -> Vec<u8> {
            rgb.chunks_exact(3)
                .map(|p| convert::rgb_to_yuv(p[0], p[1], p[2])[0])
                .collect()
        };
        match format {
            "rgb24" => {
                let spread = rgb.iter().max().unwrap() - rgb.iter().min().unwrap();
                assert!(spread > 100, "a real picture, not a blank one");
                reference_rgb = Some(rgb);
            }
            "grey" => {
                let n = (w * h) as usize;
                assert!(
                    last[n..].iter().all(|&c| c == 128),
                    "grey has neutral chroma"
                );
                let reference = reference_rgb.as_deref().unwrap();
                let d = mean_abs_diff(&last[..n], &luma(reference));
                assert!(d < 2.0, "grey luma is off by {d:.2} on average");
            }
            "mjpeg" => {
                // The JPEG carries full-range luma, which the decoder passes through as it is.
                let reference = reference_rgb.as_deref().unwrap();
                let full: Vec<u8> = reference
                    .chunks_exact(3)
                    .map(|p| {
                        let y = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
                        y.round() as u8
                    })
                    .collect();
                let d = mean_abs_diff(&last[..(w * h) as usize], &full);
                assert!(d < 6.0, "decoded MJPEG luma is off by {d:.2} on average");
            }
            _ => {
                let reference = reference_rgb.as_deref().unwrap();
                let d = mean_abs_diff(&rgb, reference);
                assert!(d < 6.0, "{format} differs from rgb24 by {d:.2} on average");
            }
        }
        drop(src);
        assert_released(format);
    }
}

/// The camera's fd is close-on-exec, so a watchdog re-exec does not carry it into the new image.
fn camera_fd_is_close_on_exec() {
    fake_env(&[]);
    let mut src = open(&CameraKeys::new(DEV));
    assert_eq!(pull(&mut src, 1, LIMIT, |_| {}), 1);
    let fds = fds_to(FAKE_MEMFD);
    assert_eq!(fds.len(), 1, "one camera fd: {fds:?}");
    // SAFETY: F_GETFD on an fd this process holds open (the source is alive).
    let flags = unsafe { libc::fcntl(fds[0], libc::F_GETFD) };
    assert!(
        flags >= 0 && flags & libc::FD_CLOEXEC != 0,
        "flags {flags:#x}"
    );
    drop(src);
    assert_released("cloexec");
}

/// A consumer slower than the camera gets the newest buffer in the ring; the older ones and the
/// frames the driver had no buffer for are counted as dropped, and every frame is accounted for.
fn slow_consumer_gets_newest_and_counts_drops() {
    fake_env(&[("FAKE_V4L2_FPS", "200")]);
    let mut src = open(&CameraKeys::new(DEV));
    let mut seqs = Vec::new();
    let got = pull(&mut src, 8, LIMIT, |frame| {
        seqs.push(frame.seq);
        // 60 ms at 200 fps: about 12 frames come while the pipeline is busy.
        std::thread::sleep(Duration::from_millis(60));
    });
    assert_eq!(got, 8);
    // Take one more to know the counters match the last frame handed out.
    let mut last_seq = 0;
    assert_eq!(pull(&mut src, 1, LIMIT, |f| last_seq = f.seq), 1);
    let stats = src.stats();
    assert_eq!(
        stats.delivered + stats.dropped + stats.corrupt,
        last_seq,
        "every frame the camera made is delivered, dropped or corrupt: {stats:?}"
    );
    let gaps: Vec<u64> = seqs.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.iter().all(|&g| g >= 4),
        "each frame skips those that went stale: {gaps:?}"
    );
    assert!(stats.dropped >= 7 * 3, "{stats:?}");
    println!("    slow consumer: gaps {gaps:?}, {stats:?}");
}

/// The steady state allocates nothing, whatever the format and however many frames are dropped.
fn frame_path_allocates_nothing() {
    fake_env(&[("FAKE_V4L2_FPS", "200")]);
    for format in ["yuyv", "nv12", "rgb24", "yu12", "grey", "mjpeg"] {
        let mut src = open(&CameraKeys::new(DEV).format(format));
        assert_eq!(pull(&mut src, 5, LIMIT, |_| {}), 5, "{format}: warm-up");
        ALLOCATIONS.store(0, Relaxed);
        ARMED.store(true, Relaxed);
        let got = pull(&mut src, 40, LIMIT, |frame| {
            if frame.seq % 4 == 0 {
                // Now and then be slow, so the drain and drop paths run too.
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        ARMED.store(false, Relaxed);
        let n = ALLOCATIONS.load(Relaxed);
        assert_eq!(got, 40, "{format}");
        assert_eq!(n, 0, "{format}: {n} allocations in 40 frames");
    }
    println!("    0 allocations in 40 frames of each format");
}

/// Each fault closes the camera (offline, `Waiting`), and it is reopened and frames resume:
/// unplugged (ENODEV, POLLERR|POLLHUP), I/O errors (EIO), a stalled stream, short buffers.
fn faults_close_reconnect_and_resume() {
    for fault in ["unplug@3", "eio@3", "stall@3", "short@3"] {
        fake_env(&[("FAKE_V4L2_FPS", "100"), ("FAKE_V4L2_FAULT", fault)]);
        let timeout = Duration::from_millis(300);
        let keys = CameraKeys::new(DEV).timeout(300).reconnect(10, 40);
        let mut src = open(&keys);
        let start = Instant::now();
        let mut frames_per_connection = vec![0u64];
        let mut offline_calls = 0;
        let mut last_frame_at = Instant::now();
        let mut shortest_stall = Duration::MAX;
        while src.stats().reconnects < 3 && start.elapsed() < LIMIT * 2 {
            let was_online = src.stats().online;
            // Taken before the call, so the stall measured below is never shorter than the
            // source's own.
            let call_start = Instant::now();
            let next = src.next_frame().expect("faults are not errors");
            let got_frame = matches!(next, Next::Frame(_));
            let stats = src.stats();
            // A frame from the call that reconnected belongs to the new connection.
            while frames_per_connection.len() <= stats.reconnects as usize {
                frames_per_connection.push(0);
            }
            if got_frame {
                *frames_per_connection.last_mut().unwrap() += 1;
                last_frame_at = call_start;
            }
            if was_online && !stats.online {
                assert!(!got_frame, "{fault}: a faulting call returns Waiting");
                shortest_stall = shortest_stall.min(last_frame_at.elapsed());
            }
            if !stats.online {
                offline_calls += 1;
            }
        }
        let stats = src.stats();
        assert!(stats.reconnects >= 3, "{fault}: reconnected: {stats:?}");
        assert!(offline_calls > 0, "{fault}: went offline");
        let full = &frames_per_connection[..3];
        assert!(
            full.iter().all(|&n| n >= 1),
            "{fault}: frames resumed after every reconnect: {frames_per_connection:?}"
        );
        match fault {
            "short@3" => assert!(stats.corrupt >= 3, "{fault}: {stats:?}"),
            _ => assert_eq!(stats.corrupt, 0, "{fault}: {stats:?}"),
        }
        if fault.starts_with("stall") {
            assert!(
                shortest_stall >= timeout,
                "a stall is declared after timeout_ms, not {shortest_stall:?}"
            );
        }
        println!(
            "    {fault}: {stats:?}, frames per connection {frames_per_connection:?}, {:.2}s",
            start.elapsed().as_secs_f64()
        );
        drop(src);
        assert_released(fault);
    }
}

/// Damaged MJPEG frames (cut short, or over `max_frame_kib`) are counted as corrupt and skipped;
/// the camera stays open, since it is still sending.
fn damaged_mjpeg_is_counted_not_a_fault() {
    fake_env(&[("FAKE_V4L2_FPS", "100"), ("FAKE_V4L2_FAULT", "short@3")]);
    let mut src = open(&CameraKeys::new(DEV).format("mjpeg").timeout(300));
    assert_eq!(pull(&mut src, 3, LIMIT, |_| {}), 3, "the first 3 are whole");
    // Longer than timeout_ms without a good frame: still no reconnect.
    let start = Instant::now();
    let extra = pull(&mut src, 1, Duration::from_millis(800), |_| {});
    let stats = src.stats();
    assert_eq!(extra, 0, "{stats:?}");
    assert!(stats.corrupt >= 5, "{stats:?} after {:?}", start.elapsed());
    assert!(stats.online && stats.reconnects == 0, "{stats:?}");
    drop(src);

    // A 640x480 JPEG of the sample picture does not fit in 16 KiB.
    fake_env(&[("FAKE_V4L2_FPS", "100")]);
    let keys = CameraKeys::new(DEV)
        .format("mjpeg")
        .size(640, 480)
        .max_frame_kib(16)
        .timeout(300);
    let mut src = open(&keys);
    let got = pull(&mut src, 1, Duration::from_millis(800), |_| {});
    let stats = src.stats();
    assert_eq!(got, 0, "{stats:?}");
    assert!(
        stats.corrupt >= 5 && stats.online && stats.reconnects == 0,
        "{stats:?}"
    );
    drop(src);
    // The same frames within the bound decode.
    let mut src = open(&keys.max_frame_kib(1024));
    assert_eq!(pull(&mut src, 3, LIMIT, |_| {}), 3);
    assert_eq!(src.stats().corrupt, 0);
    drop(src);
    assert_released("damaged mjpeg");
}

/// A call never waits longer than min(timeout_ms, 100 ms) for a frame: a stalled camera with a
/// long timeout still hands control back to the pipeline many times a second.
fn waiting_is_bounded_per_call() {
    fake_env(&[("FAKE_V4L2_FAULT", "stall@2")]);
    let mut src = open(&CameraKeys::new(DEV).timeout(10_000));
    assert_eq!(pull(&mut src, 2, LIMIT, |_| {}), 2);
    let start = Instant::now();
    let mut calls = 0;
    let mut longest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        assert!(matches!(src.next_frame(), Ok(Next::Waiting)));
        longest = longest.max(t.elapsed());
        calls += 1;
    }
    assert!(calls >= 3, "{calls} calls in a second");
    assert!(longest < Duration::from_secs(2), "a call took {longest:?}");
    assert!(src.stats().online, "not stale before timeout_ms");
    println!("    {calls} calls in 1 s, longest {longest:?}");
    drop(src);
    assert_released("bounded wait");
}

/// A camera missing at start-up starts offline (no error) and connects once it appears; one
/// that vanishes after an unplug (the fake's ABSENT_OPENS) is retried until it is back.
fn absent_camera_starts_offline_and_connects() {
    let other = "/dev/video91";
    fake_env(&[]);
    let mut src = open(&CameraKeys::new(other).reconnect(5, 20));
    let stats = src.stats();
    assert!(!stats.online, "{stats:?}");
    assert!(matches!(src.next_frame(), Ok(Next::Waiting)));
    assert!(src.retry_at().is_some());
    // The camera is plugged in.
    let still = still_frame();
    set_fake_env(&[
        ("FAKE_V4L2_DEVICES", &format!("{DEV},{other}")),
        ("FAKE_V4L2_FRAMES", &still),
    ]);
    assert_eq!(
        pull(&mut src, 3, LIMIT, |_| {}),
        3,
        "frames once it appears"
    );
    let stats = src.stats();
    assert!(
        stats.online && stats.reconnects == 0,
        "a first connection: {stats:?}"
    );
    drop(src);
    assert_released("late camera");

    // Unplugged after 2 frames, and then missing for the next 3 opens of every reconnect.
    fake_env(&[
        ("FAKE_V4L2_FAULT", "unplug@2"),
        ("FAKE_V4L2_ABSENT_OPENS", "3"),
    ]);
    let opens_before = fake_v4l2::fake_v4l2_opens();
    let mut src = open(&CameraKeys::new(DEV).reconnect(5, 20));
    let start = Instant::now();
    let mut frames = 0;
    while src.stats().reconnects < 2 && start.elapsed() < LIMIT {
        if let Ok(Next::Frame(_)) = src.next_frame() {
            frames += 1;
        }
    }
    let stats = src.stats();
    let opens = fake_v4l2::fake_v4l2_opens() - opens_before;
    assert_eq!(stats.reconnects, 2, "{stats:?}");
    assert_eq!(opens, 3, "only successful opens connect: {opens}");
    assert!(frames >= 2, "{frames} frames");
    drop(src);
    assert_released("absent opens");
}

/// Waits between attempts double from reconnect_min_ms up to reconnect_max_ms, nothing is tried
/// before it is due, and a success resets the wait to the minimum.
fn backoff_waits_grow_to_the_maximum() {
    let other = "/dev/video91";
    fake_env(&[]);
    let clock = ManualClock::new();
    let keys = CameraKeys::new(other).reconnect(100, 1000);
    let mut src = open_with(&keys, Arc::new(clock.clone())).expect("absent is not an error");
    let ms = Duration::from_millis;
    let mut waits = Vec::new();
    let mut retry_at = src.retry_at().expect("an attempt is scheduled");
    waits.push((retry_at - clock.now()).as_millis());
    for _ in 0..6 {
        clock.set(retry_at - ms(1));
        let t = Instant::now();
        assert!(matches!(src.next_frame(), Ok(Next::Waiting)));
        assert!(t.elapsed() < ms(1000), "not due: returns at once");
        assert_eq!(src.retry_at(), Some(retry_at), "not due: no attempt");
        clock.set(retry_at);
        assert!(matches!(src.next_frame(), Ok(Next::Waiting)));
        let next = src.retry_at().expect("the attempt failed");
        waits.push((next - retry_at).as_millis());
        retry_at = next;
    }
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);

    // It appears, delivers a frame, is unplugged: the wait is back at the minimum.
    let still = still_frame();
    set_fake_env(&[
        ("FAKE_V4L2_DEVICES", &format!("{DEV},{other}")),
        ("FAKE_V4L2_FRAMES", &still),
        ("FAKE_V4L2_FAULT", "unplug@1"),
    ]);
    clock.set(retry_at);
    assert_eq!(pull(&mut src, 1, LIMIT, |_| {}), 1);
    let start = Instant::now();
    while src.stats().online && start.elapsed() < LIMIT {
        let _ = src.next_frame();
    }
    let stats = src.stats();
    assert!(!stats.online, "unplugged: {stats:?}");
    let wait = src.retry_at().expect("scheduled") - clock.now();
    assert_eq!(wait, ms(100), "reset by the success");
    println!(
        "    waits (ms): {waits:?}, then {} after a success",
        wait.as_millis()
    );
    drop(src);
    assert_released("backoff");
}

/// A camera that is there but grants another format or size at start-up is a configuration
/// error that names both and points at `edgewatch probe`; during a reconnect the same is just a
/// failed attempt.
fn wrong_format_is_an_error_at_start_only() {
    fake_env(&[("FAKE_V4L2_FORMATS", "YUYV,MJPG")]);
    let err = open_with(
        &CameraKeys::new(DEV).format("nv12"),
        Arc::new(MonotonicClock::new()),
    )
    .expect_err("NV12 is not offered");
    let text = err.to_string();
    assert!(matches!(err, CaptureError::Camera { .. }), "{text}");
    for needle in ["cam", DEV, "NV12", "YUYV", "edgewatch probe /dev/video90"] {
        assert!(text.contains(needle), "`{needle}` in: {text}");
    }
    assert_released("wrong format");

    fake_env(&[("FAKE_V4L2_SIZES", "640x480")]);
    let err = open_with(&CameraKeys::new(DEV), Arc::new(MonotonicClock::new()))
        .expect_err("320x240 is not offered");
    let text = err.to_string();
    for needle in ["320x240", "640x480", "edgewatch probe"] {
        assert!(text.contains(needle), "`{needle}` in: {text}");
    }
    assert_released("wrong size");

    // Mid-run the driver stops offering NV12: attempts fail, the source stays offline, and it
    // comes back when the format does.
    fake_env(&[("FAKE_V4L2_FAULT", "unplug@2"), ("FAKE_V4L2_FPS", "100")]);
    let mut src = open(&CameraKeys::new(DEV).format("nv12").reconnect(5, 20));
    let start = Instant::now();
    while src.stats().online && start.elapsed() < LIMIT {
        src.next_frame().expect("no error");
    }
    let still = still_frame();
    set_fake_env(&[
        ("FAKE_V4L2_DEVICES", DEV),
        ("FAKE_V4L2_FRAMES", &still),
        ("FAKE_V4L2_FORMATS", "YUYV"),
    ]);
    let opens = fake_v4l2::fake_v4l2_opens();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert!(matches!(src.next_frame(), Ok(Next::Waiting)));
    }
    let attempts = fake_v4l2::fake_v4l2_opens() - opens;
    assert!(attempts >= 2, "reopened and refused: {attempts} attempts");
    assert!(!src.stats().online);
    assert_eq!(src.stats().reconnects, 0);
    assert_eq!(
        fake_v4l2::fake_v4l2_open_fds(),
        0,
        "refused attempts close the fd"
    );
    fake_env(&[]);
    assert_eq!(pull(&mut src, 2, LIMIT, |_| {}), 2);
    assert_eq!(src.stats().reconnects, 1);
    drop(src);
    assert_released("format change");
}

/// A bare name is looked up in /dev/v4l/by-id/.
fn by_id_names_resolve() {
    let by_id = "/dev/v4l/by-id/usb-Fake_Camera-video-index0";
    let still = still_frame();
    set_fake_env(&[("FAKE_V4L2_DEVICES", by_id), ("FAKE_V4L2_FRAMES", &still)]);
    let mut src = open(&CameraKeys::new("usb-Fake_Camera-video-index0"));
    assert!(src.stats().online);
    assert_eq!(pull(&mut src, 2, LIMIT, |_| {}), 2);
    drop(src);
    assert_released("by-id");
}

/// `probe` lists the driver, every format, its sizes and its frame intervals.
fn probe_lists_formats_sizes_and_intervals() {
    fake_env(&[
        ("FAKE_V4L2_SIZES", "320x240,160x120"),
        ("FAKE_V4L2_FPS", "10"),
    ]);
    let mut out = Vec::new();
    probe(DEV, &mut out).expect("probe works");
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "Driver:       fake-v4l2",
        "Card:         Fake Camera",
        "video-capture",
        "streaming",
        "'YUYV'",
        "'MJPG'",
        "'NV12'",
        "'YU12'",
        "'RGB3'",
        "'GREY'",
        "pixel_format = \"mjpeg\"",
        "Size: Discrete 320x240",
        "Size: Discrete 160x120",
        "Interval: Discrete 1/30 s",
        "Interval: Discrete 1/15 s",
        "Interval: Discrete 1/10 s (10.000 fps)",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
    assert!(!text.contains("640x480"), "{text}");
    // Three intervals for each of two sizes of six formats.
    assert_eq!(
        text.matches("Interval: Discrete").count(),
        3 * 2 * 6,
        "{text}"
    );

    fake_env(&[("FAKE_V4L2_FORMATS", "GREY")]);
    let mut out = Vec::new();
    probe(DEV, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("'GREY'") && !text.contains("'YUYV'"),
        "{text}"
    );

    let err = probe("/dev/video91", &mut Vec::new()).expect_err("no such device");
    assert!(err.to_string().contains("/dev/video91"), "{err}");
    assert_released("probe");
}

/// A thousand unplug/reconnect cycles leak no fd, no mapping and no memory.
fn thousand_reconnects_leak_nothing() {
    fake_env(&[("FAKE_V4L2_FPS", "1000"), ("FAKE_V4L2_FAULT", "unplug@1")]);
    let keys = CameraKeys::new(DEV).reconnect(1, 1);
    let buffers = u64::from(keys.buffers);
    let mut src = open(&keys);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut frames = 0u64;
    let mut next_sample = 0u64;
    while start.elapsed() < Duration::from_secs(240) {
        if let Ok(Next::Frame(_)) = src.next_frame() {
            frames += 1;
        }
        let mapped = fake_v4l2::fake_v4l2_mappings();
        assert!(mapped <= buffers, "{mapped} buffers mapped at once");
        let stats = src.stats();
        if stats.reconnects == next_sample && stats.online {
            let sample = (
                stats.reconnects,
                fd_count(),
                fake_v4l2::fake_v4l2_open_fds(),
                fake_v4l2::fake_v4l2_mappings(),
                edgewatch::health::memory::rss_bytes().expect("rss"),
            );
            println!(
                "    cycle {:4}: fds {}, fake fds {}, mappings {}, rss {} KiB",
                sample.0,
                sample.1,
                sample.2,
                sample.3,
                sample.4 / 1024
            );
            samples.push(sample);
            next_sample = match next_sample {
                0 => 100,
                100 => 1000,
                _ => break,
            };
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(samples.len(), 3, "reached 1000 reconnects: {samples:?}");
    for s in &samples {
        assert!(s.2 <= 1, "fake fds {}", s.2);
        assert!(s.3 <= buffers, "mappings {}", s.3);
    }
    let (at100, at1000) = (samples[1], samples[2]);
    assert_eq!(at100.1, at1000.1, "fds at cycle 100 and 1000");
    let growth = at1000.4 as i64 - at100.4 as i64;
    assert!(growth < 1 << 20, "RSS grew {growth} bytes");
    assert!(frames >= 1000, "a frame per connection: {frames}");
    println!(
        "    1000 reconnects in {:.2}s ({:.2} ms each), {frames} frames, RSS growth {} KiB",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / 1000.0,
        growth / 1024
    );
    drop(src);
    assert_released("1000 reconnects");
}

// ----------------------------------------------------------------------------------------------
// The real binary, with the fake preloaded.

/// Runs `edgewatch args` with the fake preloaded and `vars`, killed after `limit`.
/// Returns (exit code, stdout, stderr).
fn edgewatch_preloaded(
    args: &[&str],
    vars: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String, String) {
    let lib = fake_v4l2_lib();
    set_fake_env(&[]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgewatch"));
    cmd.args(args)
        .env("LD_PRELOAD", &lib)
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("edgewatch starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// The final JSON summary line's `frames`.
fn final_frames(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["final"] == serde_json::Value::Bool(true))
        .find_map(|v| v["frames"].as_u64())
}

/// `edgewatch run` with a V4L2 camera processes frames, also through an unplug and reconnect.
fn binary_runs_a_v4l2_camera() {
    let dir = tempfile::tempdir().unwrap();
    let still = still_frame();
    for (name, format, fault, frames) in [
        ("plain", "yuyv", "", 20u64),
        ("mjpeg-unplugged", "mjpeg", "unplug@10", 30),
    ] {
        let keys = CameraKeys::new(DEV).format(format).reconnect(20, 100);
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, v4l2_site(&keys)).unwrap();
        let frames_arg = frames.to_string();
        let (code, stdout, stderr) = edgewatch_preloaded(
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--frames",
                &frames_arg,
                "--json",
            ],
            &[
                ("FAKE_V4L2_DEVICES", DEV),
                ("FAKE_V4L2_FRAMES", &still),
                ("FAKE_V4L2_FAULT", fault),
            ],
            Duration::from_secs(180),
        );
        assert_eq!(code, Some(0), "{name}: stderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let done = final_frames(&stdout);
        assert!(
            done.is_some_and(|n| n >= frames),
            "{name}: final frames {done:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
        if !fault.is_empty() {
            assert!(stderr.contains("reconnected"), "{name}: {stderr}");
        }
        println!("    {name}: exit 0, final frames {}", done.unwrap_or(0));
    }
}

/// A camera that grants another format at start-up stops `edgewatch run` with one line that
/// names the camera, both formats and `edgewatch probe`.
fn binary_refuses_a_wrong_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nv12.toml");
    std::fs::write(&config, v4l2_site(&CameraKeys::new(DEV).format("nv12"))).unwrap();
    let (code, _, stderr) = edgewatch_preloaded(
        &["run", "--config", config.to_str().unwrap(), "--frames", "2"],
        &[("FAKE_V4L2_DEVICES", DEV), ("FAKE_V4L2_FORMATS", "YUYV")],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("edgewatch: error:"))
        .unwrap_or_else(|| panic!("an error line in: {stderr}"));
    for needle in ["cam", "NV12", "YUYV", "edgewatch probe /dev/video90"] {
        assert!(line.contains(needle), "`{needle}` in: {line}");
    }
}

/// `edgewatch probe` prints what the device offers, and fails clearly without one.
fn binary_probes_a_device() {
    let (code, stdout, stderr) = edgewatch_preloaded(
        &["probe", DEV],
        &[
            ("FAKE_V4L2_DEVICES", DEV),
            ("FAKE_V4L2_FORMATS", "YUYV,MJPG"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    for needle in [
        "fake-v4l2",
        "'YUYV'",
        "'MJPG'",
        "Size: Discrete 640x480",
        "1/30 s",
    ] {
        assert!(stdout.contains(needle), "`{needle}` in:\n{stdout}");
    }
    assert!(!stdout.contains("'NV12'"), "{stdout}");
    let (code, _, stderr) = edgewatch_preloaded(
        &["probe", "/dev/video91"],
        &[("FAKE_V4L2_DEVICES", DEV)],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/video91") && stderr.contains("cannot open"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn main() {
    type Check = (&'static str, fn());
    let checks: &[Check] = &[
        (
            "every_format_yields_frames_of_its_layout",
            every_format_yields_frames_of_its_layout,
        ),
        ("camera_fd_is_close_on_exec", camera_fd_is_close_on_exec),
        (
            "slow_consumer_gets_newest_and_counts_drops",
            slow_consumer_gets_newest_and_counts_drops,
        ),
        ("frame_path_allocates_nothing", frame_path_allocates_nothing),
        (
            "faults_close_reconnect_and_resume",
            faults_close_reconnect_and_resume,
        ),
        (
            "damaged_mjpeg_is_counted_not_a_fault",
            damaged_mjpeg_is_counted_not_a_fault,
        ),
        ("waiting_is_bounded_per_call", waiting_is_bounded_per_call),
        (
            "absent_camera_starts_offline_and_connects",
            absent_camera_starts_offline_and_connects,
        ),
        (
            "backoff_waits_grow_to_the_maximum",
            backoff_waits_grow_to_the_maximum,
        ),
        (
            "wrong_format_is_an_error_at_start_only",
            wrong_format_is_an_error_at_start_only,
        ),
        ("by_id_names_resolve", by_id_names_resolve),
        (
            "probe_lists_formats_sizes_and_intervals",
            probe_lists_formats_sizes_and_intervals,
        ),
        (
            "thousand_reconnects_leak_nothing",
            thousand_reconnects_leak_nothing,
        ),
        ("binary_runs_a_v4l2_camera", binary_runs_a_v4l2_camera),
        (
            "binary_refuses_a_wrong_format",
            binary_refuses_a_wrong_format,
        ),
        ("binary_probes_a_device", binary_probes_a_device),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, check) in checks {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        println!("v4l2: {name} ...");
        let start = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(check));
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("v4l2: {name} ok ({secs:.2}s)"),
            Err(_) => {
                println!("v4l2: {name} FAILED ({secs:.2}s)");
                failed.push(*name);
            }
        }
    }
    set_fake_env(&[]);
    println!(
        "\nv4l2: {} passed, {} failed of {ran}",
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        for name in &failed {
            println!("    failed: {name}");
        }
        std::process::exit(1);
    }
}
