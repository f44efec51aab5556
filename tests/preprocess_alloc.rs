//! The preprocessor and the SSD and YOLOX decoders after it allocate nothing per frame, and
//! how long the preprocessor takes.
//!
//! `cargo test --release --test preprocess_alloc -- --ignored --nocapture` prints timings
//! (on a photo from `$EDGEWATCH_FRAME_DIR`, default `../shared/frames`, if it is there).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use edgewatch::capture::convert;
use edgewatch::capture::{FrameFormat, PixelFormat};
use edgewatch::config::AnchorConfig;
use edgewatch::geometry::Roi;
use edgewatch::vision::detection::Detections;
use edgewatch::vision::preprocess::{InputKind, InputSpec, InputTensor, Preprocessor};
use edgewatch::vision::ssd::{generate_anchors, RawSsdDecoder};
use edgewatch::vision::yolox::{self, YoloxHead};

/// Counts allocations made by a thread while its `COUNTING` flag is set.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// A real photo scaled to `w` x `h` when the shared frames are there, else a noise pattern.
fn frame(format: PixelFormat, w: u32, h: u32) -> Vec<u8> {
    let photo = std::env::var("EDGEWATCH_FRAME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| "../shared/frames".into())
        .join("face.jpg");
    let rgb = match image::open(&photo) {
        Ok(img) => {
            let img = img.to_rgb8();
            let filter = image::imageops::FilterType::Triangle;
            image::imageops::resize(&img, w, h, filter).into_raw()
        }
        Err(_) => (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect(),
    };
    let mut frame = vec![0; format.frame_len(w, h)];
    convert::rgb_to(format, w, h, &rgb, &mut frame).unwrap();
    frame
}

fn ssd_input() -> InputSpec {
    InputSpec {
        width: 300,
        height: 300,
        channels: 3,
        kind: InputKind::U8 {
            quant: Some((1.0 / 128.0, 128)),
        },
        mean: None,
        std: None,
        letterbox: false,
        bgr: false,
    }
}

fn blazeface_input() -> InputSpec {
    InputSpec {
        width: 128,
        height: 128,
        channels: 3,
        kind: InputKind::F32,
        mean: Some(127.5),
        std: Some(127.5),
        letterbox: false,
        bgr: false,
    }
}

const FORMATS: [PixelFormat; 3] = [PixelFormat::Rgb24, PixelFormat::Yuyv, PixelFormat::Nv12];

#[test]
fn run_allocates_nothing() {
    for format in FORMATS {
        let ff = FrameFormat {
            width: 640,
            height: 480,
            pixel_format: format,
        };
        let frame = frame(format, 640, 480);
        let roi = Roi {
            x: 0.1,
            y: 0.2,
            width: 0.5,
            height: 0.7,
        };
        let mut u8_pre = Preprocessor::new(ff, roi, &ssd_input()).unwrap();
        let mut f32_pre = Preprocessor::new(ff, Roi::FULL, &blazeface_input()).unwrap();
        let mut u8_out = vec![0u8; 300 * 300 * 3];
        let mut f32_out = vec![0f32; 128 * 128 * 3];
        let n = allocations_during(|| {
            for _ in 0..3 {
                u8_pre.run(&frame, InputTensor::U8(&mut u8_out)).unwrap();
                f32_pre.run(&frame, InputTensor::F32(&mut f32_out)).unwrap();
                // Errors allocate nothing either.
                assert!(u8_pre
                    .run(&frame[1..], InputTensor::U8(&mut u8_out))
                    .is_err());
            }
        });
        assert_eq!(n, 0, "{format}: {n} allocations");
    }
}

/// YOLOX's input: 320 x 320 int8 (`pixel - 128`), letterboxed, BGR.
fn yolox_input() -> InputSpec {
    yolox::input_spec(
        320,
        320,
        InputKind::I8 {
            quant: Some((1.0, -128)),
        },
    )
}

#[test]
fn letterbox_int8_bgr_allocates_nothing() {
    for format in FORMATS {
        let ff = FrameFormat {
            width: 640,
            height: 480,
            pixel_format: format,
        };
        let frame = frame(format, 640, 480);
        let roi = Roi {
            x: 0.1,
            y: 0.2,
            width: 0.5,
            height: 0.7,
        };
        let mut full = Preprocessor::new(ff, Roi::FULL, &yolox_input()).unwrap();
        let mut cropped = Preprocessor::new(ff, roi, &yolox_input()).unwrap();
        let mut out = vec![0i8; 320 * 320 * 3];
        let n = allocations_during(|| {
            for _ in 0..3 {
                full.run(&frame, InputTensor::I8(&mut out)).unwrap();
                cropped.run(&frame, InputTensor::I8(&mut out)).unwrap();
                assert!(full.run(&frame[1..], InputTensor::I8(&mut out)).is_err());
            }
        });
        assert_eq!(n, 0, "{format}: {n} allocations");
        // 640 x 480 letterboxes to 320 x 240; the last 80 rows are padding (114 - 128).
        full.run(&frame, InputTensor::I8(&mut out)).unwrap();
        assert!(out[240 * 320 * 3..].iter().all(|&v| v == -14));
        assert!(out[..240 * 320 * 3].iter().any(|&v| v != -14));
    }
}

#[test]
fn yolox_decode_allocates_nothing() {
    let mut head = YoloxHead::new(320, 320, &[1, 2100, 85], (0.0266, -30), 0.3, 0.45, 100).unwrap();
    // Every cell sure of something, boxes overlapping in clusters: the worst case for NMS.
    let raw: Vec<i8> = (0..2100 * 85)
        .map(|i| match i % 85 {
            0..=3 => (i % 7) as i8 - 33,
            _ => 8,
        })
        .collect();
    let mut out = Detections::new();
    let n = allocations_during(|| {
        for _ in 0..3 {
            head.decode_i8(&raw, &mut out).unwrap();
            assert!(head.decode_i8(&raw[1..], &mut out).is_err());
        }
    });
    head.decode_i8(&raw, &mut out).unwrap();
    assert!(out.len() > 10, "{}", out.len());
    assert_eq!(n, 0, "{n} allocations");
}

#[test]
fn ssd_decode_allocates_nothing() {
    let cfg = AnchorConfig {
        strides: vec![8, 16, 16, 16],
        per_cell: 2,
        scale: 128.0,
        nms_iou: 0.3,
        weighted_nms: true,
    };
    let anchors = generate_anchors(&cfg, 128, 128).unwrap();
    let mut decoder = RawSsdDecoder::new(anchors, 1, 16, &cfg, 0.5, 10).unwrap();
    // Every anchor fires, boxes overlapping in clusters: the worst case for NMS.
    let regressors: Vec<f32> = (0..896 * 16).map(|i| (i % 7) as f32 - 3.0).collect();
    let scores: Vec<f32> = (0..896).map(|i| (i % 11) as f32 * 0.3).collect();
    let mut out = Detections::new();
    let n = allocations_during(|| {
        for _ in 0..3 {
            decoder.decode(&regressors, &scores, &mut out).unwrap();
            assert!(decoder.decode(&regressors[1..], &scores, &mut out).is_err());
        }
    });
    decoder.decode(&regressors, &scores, &mut out).unwrap();
    assert_eq!(out.len(), 10);
    assert_eq!(n, 0, "{n} allocations");
}

fn time_per_frame(mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let runs = 300;
        let start = Instant::now();
        for _ in 0..runs {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() / runs as f64);
    }
    best
}

#[test]
#[ignore = "timing: run in release with --ignored --nocapture"]
fn timing_640x480() {
    for format in FORMATS {
        let ff = FrameFormat {
            width: 640,
            height: 480,
            pixel_format: format,
        };
        let frame = frame(format, 640, 480);
        let mut pre = Preprocessor::new(ff, Roi::FULL, &ssd_input()).unwrap();
        let mut out = vec![0u8; 300 * 300 * 3];
        let t_u8 = time_per_frame(|| {
            pre.run(std::hint::black_box(&frame), InputTensor::U8(&mut out))
                .unwrap();
            std::hint::black_box(&out);
        });
        let mut pre = Preprocessor::new(ff, Roi::FULL, &blazeface_input()).unwrap();
        let mut out = vec![0f32; 128 * 128 * 3];
        let t_f32 = time_per_frame(|| {
            pre.run(std::hint::black_box(&frame), InputTensor::F32(&mut out))
                .unwrap();
            std::hint::black_box(&out);
        });
        let mut pre = Preprocessor::new(ff, Roi::FULL, &yolox_input()).unwrap();
        let mut out = vec![0i8; 320 * 320 * 3];
        let t_i8 = time_per_frame(|| {
            pre.run(std::hint::black_box(&frame), InputTensor::I8(&mut out))
                .unwrap();
            std::hint::black_box(&out);
        });
        println!(
            "{format:>5} 640x480 -> 300x300 u8: {:7.1} us   -> 128x128 f32: {:7.1} us   \
             -> 320x320 letterbox BGR i8: {:7.1} us",
            t_u8 * 1e6,
            t_f32 * 1e6,
            t_i8 * 1e6
        );
    }
}
