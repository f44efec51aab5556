//! Proof of the house rule "nothing is allocated per frame": the whole pipeline (replay ->
//! preprocess -> TFLite -> decode -> tracker -> zones and lines) runs 1000 frames after a
//! warm-up, on each runtime (TensorFlow Lite 1.15: not one malloc; LiteRT: exactly the fixed
//! count its run call makes and frees, [`LITERT_SSD_MALLOCS`] per frame, and nothing else), with every Rust allocation counted by a global allocator, every C heap allocation
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
//!
//! With the live view on and a `/stream.mjpeg` client reading, the viewer thread and the HTTP
//! worker allocate as they like; a thread-local flag counts the frame loop's thread apart.
//! `cargo test --test zero_alloc -- NAME` runs only the cases whose name contains NAME.

mod util;

#[path = "../tools/malloc-count/src/lib.rs"]
mod malloc_count;

#[path = "../tools/fake-v4l2/src/lib.rs"]
mod fake_v4l2;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use edgewatch::clock::MonotonicClock;
use edgewatch::config::{
    AnchorConfig, Config, HeadChoice, RuntimeChoice, SnapshotEventConfig, SnapshotsConfig,
};
use edgewatch::control::SceneFeed;
use edgewatch::health::memory::{heap_in_use, HeapUsage};
use edgewatch::health::server::{HealthServer, HealthSource, ServerLimits};
use edgewatch::pipeline::{Pipeline, Step};
use edgewatch::view::events::EVENT_QUEUE;
use edgewatch::view::{Viewer, ViewerOptions};
use edgewatch::vision::detection::Detections;
use edgewatch::vision::detector::Detector;
use edgewatch::vision::litert::LiteRtDetector;
use util::mjpeg_server::{Behaviour, MjpegServer};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Allocations made on a thread that set [`ON_PIPELINE`]: the frame loop's own, when other
/// threads (the viewer, the HTTP workers) may allocate as they please.
static PIPELINE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread that runs the frame loop. Const-initialized with no destructor, so
    /// reading it from the allocator allocates nothing.
    static ON_PIPELINE: Cell<bool> = const { Cell::new(false) };
}

fn count_thread() {
    if ON_PIPELINE.try_with(Cell::get).unwrap_or(false) {
        PIPELINE_ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        count_thread();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        count_thread();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        count_thread();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARM_UP: u64 = 20;
/// Mallocs (each freed before it returns) that `LiteRtRunCompiledModel` of LiteRT 2.3 makes per
/// run: 3, plus 1 per bound buffer; the cut SSD binds 1 input and 12 head outputs.
const LITERT_SSD_MALLOCS: u64 = 16;
/// The same for BlazeFace: 1 input, 2 outputs.
const LITERT_BLAZEFACE_MALLOCS: u64 = 6;
/// Invokes of the long LiteRT run, over which the C/C++ heap must not move.
const LONG: u64 = 10_000;
const FRAMES: u64 = 1000;
/// Frames for the op run and the pool run: enough for a steady state, short enough that the
/// whole binary stays near its former 3 minutes.
const SHORT: u64 = 40;

fn main() {
    // `cargo test --test zero_alloc -- NAME` runs only the cases whose name contains NAME.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: [(&str, fn()); 9] = [
        // First, before any pipeline has started (and stopped) threads of its own.
        (
            "litert_heap_is_flat_over_10000_invokes",
            litert_heap_is_flat_over_10000_invokes,
        ),
        (
            "malloc_counter_sees_the_cpp_post_process_op",
            malloc_counter_sees_the_cpp_post_process_op,
        ),
        (
            "steady_state_allocates_nothing",
            steady_state_allocates_nothing,
        ),
        (
            "litert_steady_state_makes_only_its_run_mallocs",
            litert_steady_state_makes_only_its_run_mallocs,
        ),
        (
            "interpreter_pool_allocates_nothing",
            interpreter_pool_allocates_nothing,
        ),
        (
            "tiled_pipeline_allocates_nothing",
            tiled_pipeline_allocates_nothing,
        ),
        (
            "live_cameras_allocate_nothing",
            live_cameras_allocate_nothing,
        ),
        (
            "mjpeg_file_replay_allocates_nothing",
            mjpeg_file_replay_allocates_nothing,
        ),
        (
            "live_view_with_a_viewer_connected_allocates_nothing_in_the_frame_loop",
            live_view_with_a_viewer_connected_allocates_nothing_in_the_frame_loop,
        ),
    ];
    let mut passed = 0;
    for (name, case) in cases {
        if only.as_deref().is_none_or(|o| name.contains(o)) {
            case();
            passed += 1;
        }
    }
    // Reached only if every assertion held (a failed one panics and exits non-zero).
    println!("zero_alloc: {passed} passed, 0 failed");
}

fn site(runtime: RuntimeChoice) -> Config {
    let frames = util::frames_dir();
    let mut config = util::config_from(&util::ssd_site(&frames, 256, 256, "yuyv"));
    config.model.runtime = runtime;
    config
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
    let mut config = site(RuntimeChoice::Tflite);
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

/// A wall clock a minute later at every look, so that each frame closes a one-minute bin.
#[derive(Debug, Default)]
struct RacingWall(AtomicU64);

impl edgewatch::utc::WallClock for RacingWall {
    fn unix_now(&self) -> Duration {
        Duration::from_secs(1_796_601_600 + self.0.fetch_add(60, Relaxed))
    }
}

fn steady_state_allocates_nothing() {
    let config = site(RuntimeChoice::Tflite);
    assert_eq!(
        (config.model.head, config.model.threads),
        (HeadChoice::Auto, 1)
    );
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    // Traffic data bins on, a bin closed every frame into a queue nobody empties: the first
    // few are queued, the rest dropped and counted, none of it allocating.
    let bins = Arc::new(edgewatch::bins::BinQueue::new(4, 1, 1, 1));
    pipeline.enable_bins(60, bins.clone(), Arc::new(RacingWall::default()));
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
    let closed = bins.closed.load(Relaxed);
    assert!(closed >= FRAMES, "{closed} bins closed in {FRAMES} frames");
    assert_eq!(bins.dropped.load(Relaxed), closed - 4);
}

/// LiteRT in the whole pipeline: no Rust allocation, exactly [`LITERT_SSD_MALLOCS`] mallocs
/// per frame (all freed inside the run call), and the C/C++ heap unchanged.
fn litert_steady_state_makes_only_its_run_mallocs() {
    let config = site(RuntimeChoice::Litert);
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let c = count(&mut pipeline, FRAMES);
    let detections = pipeline.stats().detections.load(Relaxed);
    eprintln!(
        "LiteRT, {FRAMES} frames: {} Rust allocations, {} mallocs ({:.2} per frame); C/C++ heap \
         in use {} -> {} bytes; {detections} detections kept",
        c.rust,
        c.mallocs,
        c.mallocs as f64 / FRAMES as f64,
        c.heap_before.bytes,
        c.heap_after.bytes
    );
    assert!(detections > FRAMES, "the frames should yield detections");
    assert_eq!(c.rust, 0, "Rust allocated in the LiteRT frame loop");
    assert_eq!(
        c.mallocs,
        LITERT_SSD_MALLOCS * FRAMES,
        "LiteRT's run call should make exactly {LITERT_SSD_MALLOCS} mallocs per frame"
    );
    assert_eq!(c.heap_after, c.heap_before, "the C/C++ heap changed");
    assert_eq!(pipeline.stats().errors.load(Relaxed), 0);
}

/// LiteRT's run call over 10,000 invokes (BlazeFace, so the run stays short): the mallocs are
/// exactly its fixed count every time and the heap in use does not move.
fn litert_heap_is_flat_over_10000_invokes() {
    let models = util::model_dir();
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("face_labels.txt");
    std::fs::write(&labels, "face\n").unwrap();
    let mut config = site(RuntimeChoice::Litert);
    let m = &mut config.model;
    m.file = models.join("face_detection_short_range.tflite");
    m.labels = labels;
    m.input_mean = Some(127.5);
    m.input_std = Some(127.5);
    m.classes = vec!["face".into()];
    m.anchors = Some(AnchorConfig {
        strides: vec![8, 16, 16, 16],
        per_cell: 2,
        scale: 128.0,
        nms_iou: 0.3,
        weighted_nms: true,
    });
    let mut detector = LiteRtDetector::load(&config.model).unwrap();
    let face = image::open(util::frames_dir().join("face.jpg"))
        .unwrap()
        .into_rgb8();
    let mut out = Detections::new();
    let step = |detector: &mut LiteRtDetector, out: &mut Detections| {
        detector.invoke().unwrap();
        detector.decode(out).unwrap();
    };
    // The frame goes in once (preprocessing is counted elsewhere); every invoke reruns it.
    let _ = util::detect(&mut detector, &face);
    for _ in 0..WARM_UP {
        step(&mut detector, &mut out);
    }
    let heap_before = heap_in_use();
    let (rust, mallocs) = (
        ALLOCATIONS.load(Relaxed),
        malloc_count::edgewatch_malloc_count(),
    );
    let mut faces = 0;
    for _ in 0..LONG {
        step(&mut detector, &mut out);
        faces += out.len() as u64;
    }
    let rust = ALLOCATIONS.load(Relaxed) - rust;
    let mallocs = malloc_count::edgewatch_malloc_count() - mallocs;
    let heap_after = heap_in_use();
    eprintln!(
        "LiteRT BlazeFace, {LONG} invokes: {rust} Rust allocations, {mallocs} mallocs; C/C++ \
         heap in use {} -> {} bytes; {faces} faces",
        heap_before.bytes, heap_after.bytes
    );
    assert!(faces >= 2 * LONG, "the faces should be found every time");
    assert_eq!(rust, 0, "Rust allocated around LiteRT's run call");
    assert_eq!(mallocs, LITERT_BLAZEFACE_MALLOCS * LONG);
    assert_eq!(heap_after, heap_before, "the C/C++ heap changed");
}

/// A pool of two interpreters: on TensorFlow Lite 1.15 nothing at all; on LiteRT its run
/// call's fixed mallocs and nothing else.
fn interpreter_pool_allocates_nothing() {
    for (runtime, per_frame) in [
        (RuntimeChoice::Tflite, 0),
        (RuntimeChoice::Litert, LITERT_SSD_MALLOCS),
    ] {
        let mut config = site(runtime);
        config.model.interpreters = 2;
        let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
        let Counts { rust, mallocs, .. } = count(&mut pipeline, SHORT);
        let detections = pipeline.stats().detections.load(Relaxed);
        eprintln!(
            "{runtime:?} pool of 2 interpreters, {SHORT} frames: {rust} Rust allocations, \
             {mallocs} mallocs"
        );
        assert!(detections > SHORT, "the pool should yield detections");
        assert_eq!(rust, 0, "Rust allocated in the pool's frame loop");
        // The pool runs one frame ahead: the invoke in flight when counting starts, or the one
        // still running when it stops, may fall either side of the window.
        let invokes = [SHORT - 1, SHORT, SHORT + 1].map(|n| n * per_frame);
        assert!(
            invokes.contains(&mallocs),
            "{runtime:?}: {mallocs} mallocs in the pool's frame loop, expected {per_frame} per \
             invoke ({invokes:?})"
        );
        assert_eq!(pipeline.stats().errors.load(Relaxed), 0);
    }
}

/// A camera split into 2x2 tiles (`cameras[].tiles`): four preprocess-invoke-decode passes
/// a frame and the merge of their detections, from buffers sized at build, on TensorFlow
/// Lite 1.15, publishing occupancy, dwell and counts to a scene feed as `run` does: not one
/// allocation.
fn tiled_pipeline_allocates_nothing() {
    let frames = util::frames_dir();
    let text = util::ssd_site(&frames, 256, 256, "yuyv").replace(
        "loop = true",
        "loop = true\ntiles = { cols = 2, rows = 2, overlap = 0.25 }",
    );
    let mut config = util::config_from(&text);
    config.model.runtime = RuntimeChoice::Tflite;
    assert_eq!(config.cameras[0].tiles.map(|t| t.count()), Some(4));
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let feed = Arc::new(SceneFeed::with_cameras(1, 1, 1));
    pipeline.set_feed(feed.clone());
    let c = count(&mut pipeline, SHORT);
    let detections = pipeline.stats().detections.load(Relaxed);
    assert!(feed.cameras()[0].frames() > SHORT);
    eprintln!(
        "2x2 tiles, {SHORT} frames: {} Rust allocations, {} mallocs; C/C++ heap in use {} -> {} \
         bytes; {detections} detections kept",
        c.rust, c.mallocs, c.heap_before.bytes, c.heap_after.bytes
    );
    assert!(detections > SHORT, "the tiles should yield detections");
    assert_eq!(c.rust, 0, "Rust allocated in the tiled frame loop");
    assert_eq!(c.mallocs, 0, "malloc was called in the tiled frame loop");
    assert_eq!(c.heap_after, c.heap_before, "the C/C++ heap changed");
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
runtime = "tflite"
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

/// The health endpoint's view routes over a viewer, for a real `/stream.mjpeg` client.
struct ViewOnly(Arc<Viewer>);

impl HealthSource for ViewOnly {
    fn write_health(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(b"{}")
    }
    fn write_metrics(&self, _out: &mut dyn Write) -> std::io::Result<()> {
        Ok(())
    }
    fn view(&self) -> Option<&Viewer> {
        Some(&self.0)
    }
}

/// The live view enabled, the viewer thread drawing and encoding, and a `/stream.mjpeg` client
/// reading over real TCP the whole time: the frame loop's thread still allocates nothing (the
/// viewer and the HTTP worker may; they are other threads), and the view did get frames.
fn live_view_with_a_viewer_connected_allocates_nothing_in_the_frame_loop() {
    let config = site(RuntimeChoice::Tflite);
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    // The highest view rate, so that many frames are copied into the slot during the count.
    let feeds = pipeline.enable_view(10.0);
    // Event snapshots' checks run in the frame loop too, posting to a queue nobody drains.
    let snapshots = SnapshotsConfig {
        events: vec![
            SnapshotEventConfig {
                zone: Some("road".into()),
                ..SnapshotEventConfig::default()
            },
            SnapshotEventConfig {
                line: Some("gantry".into()),
                ..SnapshotEventConfig::default()
            },
        ],
        ..SnapshotsConfig::default()
    };
    let (queue, events) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    pipeline.enable_events(&snapshots, queue, dropped.clone());
    let options = ViewerOptions {
        fps: 10.0,
        quality: 75,
        max_viewers: 2,
        signals: None,
        events: None,
    };
    let viewer = Viewer::start(feeds, options).unwrap();
    let limits = ServerLimits {
        max_connections: 3,
        max_response_bytes: 256 * 1024,
        ..ServerLimits::default()
    };
    let source = Arc::new(ViewOnly(viewer.viewer().clone()));
    let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), limits, source).unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client
        .write_all(b"GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let (mut buf, mut total) = (vec![0u8; 64 * 1024], 0usize);
        let mut parts = 0;
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            parts += buf[..n].windows(7).filter(|w| w == b"--frame").count();
        }
        (parts, total)
    });

    ON_PIPELINE.with(|c| c.set(true));
    // The thread counter does see this thread's allocations, so a zero below means something.
    let probe = PIPELINE_ALLOCATIONS.load(Relaxed);
    drop(std::hint::black_box(vec![1u8; 8]));
    assert_eq!(PIPELINE_ALLOCATIONS.load(Relaxed), probe + 1);
    for _ in 0..WARM_UP {
        assert_eq!(pipeline.step().unwrap(), Step::Processed);
    }
    let v = viewer.viewer();
    let (published, rendered) = (v.published(), v.counters.rendered.load(Relaxed));
    let before = PIPELINE_ALLOCATIONS.load(Relaxed);
    for _ in 0..FRAMES / 2 {
        assert_eq!(pipeline.step().unwrap(), Step::Processed);
    }
    let allocations = PIPELINE_ALLOCATIONS.load(Relaxed) - before;
    ON_PIPELINE.with(|c| c.set(false));
    let posted = events.try_iter().count() as u64 + dropped.load(Relaxed);
    let published = v.published() - published;
    let rendered = v.counters.rendered.load(Relaxed) - rendered;
    let viewers = v.viewers();
    server.stop();
    let (parts, bytes) = reader.join().unwrap();
    drop(viewer);
    eprintln!(
        "live view, {} frames: {allocations} allocations in the frame loop; {published} frames \
         published to the view, {rendered} rendered; the stream client read {parts} parts, \
         {bytes} bytes; {posted} snapshot events posted",
        FRAMES / 2
    );
    assert_eq!(
        viewers, 1,
        "the stream client was watching during the count"
    );
    assert!(
        published >= 5 && rendered >= 5,
        "the view should have been fed: {published} published, {rendered} rendered"
    );
    assert!(
        parts >= 5,
        "the stream client should get frames, got {parts}"
    );
    assert_eq!(allocations, 0, "the frame loop allocated with the view on");
}
