//! Proof of the house rule "nothing is allocated per frame": the whole pipeline (replay ->
//! preprocess -> TFLite -> decode -> tracker -> zones and lines) runs 1000 frames after a
//! warm-up, with every Rust allocation counted by a global allocator, every C heap allocation
//! (C++ `operator new` included) counted by `malloc` interposition, and the C/C++ heap watched
//! through glibc's mallinfo2. Alone in its own test binary, without libtest's harness
//! (`harness = false`): the harness's main thread allocates while a test runs (its "running
//! for over 60 seconds" notice), and the counters see every thread.
//!
//! The `malloc` counter is `tools/malloc-count`'s source compiled into this binary: an
//! executable's `malloc` comes before glibc's for every library it loads (that is how the C++
//! `operator new` in libstdc++ reaches it), so no `LD_PRELOAD` and no nested cargo build are
//! needed. Before the proof, a run of the model's own post-process op (54 mallocs per invoke)
//! shows the counter does see C++ allocations, so a counter that silently counted nothing
//! could not pass.

mod util;

#[path = "../tools/malloc-count/src/lib.rs"]
mod malloc_count;

#[path = "../tools/fake-v4l2/src/lib.rs"]
mod fake_v4l2;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use edgewatch::clock::MonotonicClock;
use edgewatch::config::{Config, HeadChoice};
use edgewatch::health::memory::{heap_in_use, HeapUsage};
use edgewatch::pipeline::{Pipeline, Step};
use util::mjpeg_server::{Behaviour, MjpegServer};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARM_UP: u64 = 20;
const FRAMES: u64 = 1000;
/// Frames for the op run and the pool run: enough for a steady state, short enough that the
/// whole binary stays near its former 3 minutes.
const SHORT: u64 = 40;

fn main() {
    malloc_counter_sees_the_cpp_post_process_op();
    steady_state_allocates_nothing();
    interpreter_pool_allocates_nothing();
    live_cameras_allocate_nothing();
    mjpeg_file_replay_allocates_nothing();
    // Reached only if every assertion held (a failed one panics and exits non-zero).
    println!("zero_alloc: 5 passed, 0 failed");
}

fn site() -> Config {
    let frames = util::frames_dir();
    util::config_from(&util::ssd_site(&frames, 256, 256, "yuyv"))
}

/// What the frames after the warm-up did.
struct Counts {
    rust: u64,
    mallocs: u64,
    heap_before: HeapUsage,
    heap_after: HeapUsage,
}

/// Runs `frames` frames after the warm-up, counting what they allocate.
fn count(pipeline: &mut Pipeline, frames: u64) -> Counts {
    for _ in 0..WARM_UP {
        assert_eq!(pipeline.step().unwrap(), Step::Processed);
    }
    let heap_before = heap_in_use();
    let (rust, mallocs) = (
        ALLOCATIONS.load(Relaxed),
        malloc_count::edgewatch_malloc_count(),
    );
    for _ in 0..frames {
        assert_eq!(pipeline.step().unwrap(), Step::Processed);
    }
    Counts {
        rust: ALLOCATIONS.load(Relaxed) - rust,
        mallocs: malloc_count::edgewatch_malloc_count() - mallocs,
        heap_before,
        heap_after: heap_in_use(),
    }
}

fn malloc_counter_sees_the_cpp_post_process_op() {
    let mut config = site();
    config.model.head = HeadChoice::TfliteOp;
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let Counts { rust, mallocs, .. } = count(&mut pipeline, SHORT);
    eprintln!(
        "TFLite post-process op, 1 thread: {:.1} mallocs per frame, {rust} Rust allocations",
        mallocs as f64 / SHORT as f64
    );
    assert_eq!(rust, 0, "Rust allocated in the frame loop");
    // The op's NMS and the quantized concatenations allocate on every invoke.
    assert!(
        mallocs >= SHORT,
        "the malloc counter should see the op's C++ allocations, counted {mallocs}"
    );
}

fn steady_state_allocates_nothing() {
    let config = site();
    assert_eq!(
        (config.model.head, config.model.threads),
        (HeadChoice::Auto, 1)
    );
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let Counts {
        rust: rust_allocations,
        mallocs,
        heap_before,
        heap_after,
    } = count(&mut pipeline, FRAMES);
    let stats = pipeline.stats();
    let detections = stats.detections.load(Relaxed);
    eprintln!(
        "{FRAMES} frames: {rust_allocations} Rust allocations, {mallocs} mallocs; C/C++ heap in \
         use {} -> {} bytes, mmapped blocks {} -> {}; {detections} detections kept; {} live tracks",
        heap_before.bytes,
        heap_after.bytes,
        heap_before.mmapped_blocks,
        heap_after.mmapped_blocks,
        pipeline.scene().stats().live
    );
    assert!(
        detections > FRAMES,
        "the frames should yield detections, got {detections}"
    );
    assert_eq!(rust_allocations, 0, "Rust allocated in the frame loop");
    assert_eq!(
        mallocs, 0,
        "malloc was called in the frame loop (C, C++ or Rust)"
    );
    assert_eq!(
        heap_after, heap_before,
        "the C/C++ heap changed in the frame loop"
    );
    assert_eq!(stats.errors.load(Relaxed), 0);
}

fn interpreter_pool_allocates_nothing() {
    let mut config = site();
    config.model.interpreters = 2;
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let Counts { rust, mallocs, .. } = count(&mut pipeline, SHORT);
    let detections = pipeline.stats().detections.load(Relaxed);
    eprintln!("pool of 2 interpreters, {SHORT} frames: {rust} Rust allocations, {mallocs} mallocs");
    assert!(detections > SHORT, "the pool should yield detections");
    assert_eq!(rust, 0, "Rust allocated in the pool's frame loop");
    assert_eq!(mallocs, 0, "malloc was called in the pool's frame loop");
    assert_eq!(pipeline.stats().errors.load(Relaxed), 0);
}

/// Three live cameras sharing the detector: a USB camera sending MJPEG and one sending YUYV
/// (the fake V4L2 device, compiled into this binary, through the real v4l code path and the
/// mmap ring) and an IP camera (the loopback MJPEG server, whose thread allocates nothing
/// after start-up). Both fakes run at 30 fps, faster than the detector, so the newest-frame
/// draining and its drop counting are in the loop too.
fn live_cameras_allocate_nothing() {
    let frames = util::frames_dir();
    // SAFETY (set_var): this binary is single-threaded here, apart from the server thread
    // started below, which reads no environment.
    std::env::set_var("FAKE_V4L2_DEVICES", "/dev/video90,/dev/video91");
    std::env::set_var("FAKE_V4L2_FRAMES", &frames);
    std::env::set_var("FAKE_V4L2_FPS", "30");
    let server = MjpegServer::start(Behaviour::stream().fps(30.0));
    let models = util::model_dir();
    let text = format!(
        r#"
[[cameras]]
name = "usb-mjpeg"
source = "v4l2"
device = "/dev/video90"
width = 640
height = 480
fps = 30.0
pixel_format = "mjpeg"

[[cameras]]
name = "usb-yuyv"
source = "v4l2"
device = "/dev/video91"
width = 320
height = 240
fps = 30.0
pixel_format = "yuyv"

[[cameras]]
name = "ip"
source = "http"
url = "{url}"
width = 640
height = 360

[model]
file = "{model}"
labels = "{labels}"
score_threshold = 0.3
classes = ["car", "truck", "bus", "person"]

[[zones]]
name = "road"
points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
"#,
        url = server.url(),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    );
    let config = util::config_from(&text);
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    // Until every camera has delivered a few frames (the IP camera connects on first use).
    let processed = |p: &Pipeline| p.cameras().map(|c| c.frames).min().unwrap_or(0);
    while processed(&pipeline) < 5 {
        pipeline.step().unwrap();
    }
    let heap_before = heap_in_use();
    let (rust, mallocs) = (
        ALLOCATIONS.load(Relaxed),
        malloc_count::edgewatch_malloc_count(),
    );
    let mut done = 0;
    while done < 3 * SHORT {
        if pipeline.step().unwrap() == Step::Processed {
            done += 1;
        }
    }
    let rust = ALLOCATIONS.load(Relaxed) - rust;
    let mallocs = malloc_count::edgewatch_malloc_count() - mallocs;
    let heap_after = heap_in_use();
    for cam in pipeline.cameras() {
        let c = cam.capture;
        eprintln!(
            "camera {}: {} frames, {} dropped, {} corrupt, {} reconnects",
            cam.name, cam.frames, c.dropped, c.corrupt, c.reconnects
        );
        assert!(c.online, "camera {} went offline", cam.name);
        assert_eq!((c.corrupt, c.reconnects), (0, 0), "camera {}", cam.name);
        assert!(cam.frames >= SHORT, "camera {} got its turns", cam.name);
    }
    let dropped: u64 = pipeline.cameras().map(|c| c.capture.dropped).sum();
    eprintln!(
        "live cameras, {} frames: {rust} Rust allocations, {mallocs} mallocs; C/C++ heap in use \
         {} -> {} bytes; {dropped} stale frames dropped",
        3 * SHORT,
        heap_before.bytes,
        heap_after.bytes
    );
    assert!(
        dropped > 0,
        "30 fps cameras outrun the detector: frames must be dropped"
    );
    assert_eq!(rust, 0, "Rust allocated in the live-camera frame loop");
    assert_eq!(
        mallocs, 0,
        "malloc was called in the live-camera frame loop"
    );
    assert_eq!(heap_after, heap_before, "the C/C++ heap changed");
    drop(pipeline);
    drop(server);
}

/// An MJPEG file replayed the way `eval --every 3` does it (a driven clock, frames in between
/// split but not decoded), into NV12 and converted to RGB24: frame after frame from the
/// buffers sized when it opened.
fn mjpeg_file_replay_allocates_nothing() {
    use edgewatch::capture::replay::{frame_interval, ReplaySource};
    use edgewatch::capture::FrameSource;
    use edgewatch::clock::ManualClock;
    let path = util::clips_dir().join("traffic.mjpeg");
    for pixel_format in ["nv12", "rgb24"] {
        let text = format!(
            "name = \"clip\"\nsource = \"replay\"\npath = \"{}\"\nwidth = 640\nheight = 360\n\
             fps = 24.0\npixel_format = \"{pixel_format}\"\nloop = true",
            path.display()
        );
        let cam: edgewatch::config::CameraConfig = toml::from_str(&text).unwrap();
        let clock = ManualClock::new();
        let mut source = ReplaySource::open(&cam, Arc::new(clock.clone())).unwrap();
        let interval = frame_interval(cam.fps).unwrap();
        let mut seq = 0;
        let mut next = |source: &mut ReplaySource| {
            clock.set(interval * seq);
            seq += 3;
            assert!(source.next_frame().unwrap().frame().is_some());
        };
        // The warm-up runs past the end of the file once (480 frames); the measured frames
        // (from frame 510 on) wrap around again, so a rewind is measured too.
        for _ in 0..170 {
            next(&mut source);
        }
        let (rust, mallocs) = (
            ALLOCATIONS.load(Relaxed),
            malloc_count::edgewatch_malloc_count(),
        );
        for _ in 0..200 {
            next(&mut source);
        }
        let rust = ALLOCATIONS.load(Relaxed) - rust;
        let mallocs = malloc_count::edgewatch_malloc_count() - mallocs;
        eprintln!(
            "MJPEG file replay ({pixel_format}), 200 frames one in 3: {rust} Rust allocations, {mallocs} mallocs"
        );
        assert_eq!(source.stats().corrupt, 0);
        assert_eq!(rust, 0, "Rust allocated replaying an MJPEG file");
        assert_eq!(mallocs, 0, "malloc was called replaying an MJPEG file");
    }
}
