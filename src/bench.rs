//! `edgewatch bench`: per-stage timings. Preprocessing is timed on synthetic 640x480 frames
//! in every camera pixel format; the scene on 10 synthetic moving objects; then the whole
//! pipeline runs on the configured source, then again with and without tiles (the frame
//! time ratio is what `cameras[].tiles` costs). For an SSD with the post-process tail, it then
//! times the Rust detector head, compares inference modes (fps, latency, mallocs per frame)
//! and counts people in the crowd clip with the TFLite op and with the Rust head.
//!
//! Mallocs per frame need the counter of `tools/malloc-count`, preloaded:
//! `cargo build --release -p malloc-count` then
//! `LD_PRELOAD=target/release/libmalloc_count.so edgewatch bench ...`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::jpeg::{self, JpegDecoder};
use crate::capture::{FrameFormat, PixelFormat};
use crate::clock::MonotonicClock;
use crate::config::{Config, HeadChoice, ModelConfig, RuntimeChoice, TilesConfig};
use crate::geometry::{BBox, Roi};
use crate::health::stats::{Histogram, Stage};
use crate::pipeline::{Pipeline, PipelineError};
use crate::scene::Scene;
use crate::vision::detection::{Detection, Detections, MAX_DETECTIONS};
use crate::vision::detector::Detector;
use crate::vision::litert::LiteRtDetector;
use crate::vision::preprocess::{InputKind, InputSpec, InputTensor, Preprocessor};
use crate::vision::tflite::TfliteDetector;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_hist(name: &str, h: &Histogram) {
    println!(
        "bench: {name:<34} mean {:>9.1} us  p50 {:>9.1} us  p99 {:>9.1} us  (n={})",
        us(h.mean()),
        us(h.quantile(0.5)),
        us(h.quantile(0.99)),
        h.count()
    );
}

/// Times `f` `n` times after a warm-up.
fn time(n: u32, mut f: impl FnMut()) -> Histogram {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let h = Histogram::default();
    for _ in 0..n {
        let t = Instant::now();
        f();
        h.record(t.elapsed());
    }
    h
}

/// A synthetic frame with gradients and texture, so no branch sees constant data.
fn synthetic_frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 640 * 3) as u8).collect()
}

fn bench_preprocess(spec: &InputSpec) -> Result<(), PipelineError> {
    let n = spec.width as usize * spec.height as usize * 3;
    let (mut u8_tensor, mut f32_tensor) = (vec![0u8; n], vec![0f32; n]);
    let mut i8_tensor = vec![0i8; n];
    for pf in [PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::Rgb24] {
        let format = FrameFormat {
            width: 640,
            height: 480,
            pixel_format: pf,
        };
        let mut pre = Preprocessor::new(format, Roi::FULL, spec)?;
        let frame = synthetic_frame(format.frame_len());
        let h = time(2000, || {
            let out = match spec.kind {
                InputKind::U8 { .. } => InputTensor::U8(&mut u8_tensor),
                InputKind::F32 => InputTensor::F32(&mut f32_tensor),
                InputKind::I8 { .. } => InputTensor::I8(&mut i8_tensor),
            };
            let _ = pre.run(&frame, out);
        });
        let name = format!("preprocess 640x480 {pf} -> {}x{}", spec.width, spec.height);
        print_hist(&name, &h);
    }
    Ok(())
}

fn bench_scene(config: &Config, ids: &[u16]) {
    let mut scene = Scene::new(&config.tracker, &config.zones, &config.lines, ids);
    let mut dets = Detections::new();
    let mut frame = 0u64;
    let h = time(20_000, || {
        frame += 1;
        dets.clear();
        for i in 0..10u64 {
            // Ten objects drifting across the frame, wrapping around: tracks are matched,
            // created, evicted and lines crossed.
            let x = ((frame + i * 97) % 1000) as f32 / 1000.0;
            let y = 0.1 + 0.08 * i as f32;
            let class = ids[(i as usize) % ids.len()];
            let bbox = BBox::new(x, y, x + 0.05, y + 0.06);
            let _ = dets.push(Detection {
                class,
                score: 0.8,
                bbox,
            });
        }
        scene.update(&dets, Duration::from_millis(frame * 100));
    });
    print_hist("scene update, 10 detections", &h);
}

/// The tracker alone at the load: 200 objects in view, 100 of them detected in any
/// one frame (the others lost and predicted), so every update weighs 100 detections against
/// 200 tracks.
fn bench_tracker(ids: &[u16]) {
    use crate::config::TrackerConfig;
    use crate::scene::Tracker;
    let config = TrackerConfig {
        capacity: 256,
        ttl_ms: 60_000,
        ..TrackerConfig::default()
    };
    let mut tracker = Tracker::new(&config, ids);
    let mut dets = Detections::new();
    let mut frame = 0u64;
    let mut step = |tracker: &mut Tracker| {
        frame += 1;
        dets.clear();
        for i in 0..200u64 {
            // Every other object each frame, so each object is seen every second frame.
            if !(i + frame).is_multiple_of(2) {
                continue;
            }
            let (col, row) = ((i % 20) as f32, (i / 20) as f32);
            let x = 0.02 + col * 0.048 + (frame % 50) as f32 * 0.0002;
            let y = 0.02 + row * 0.096;
            let _ = dets.push(Detection {
                class: ids[(i as usize) % ids.len()],
                score: 0.8,
                bbox: BBox::new(x, y, x + 0.03, y + 0.06),
            });
        }
        tracker.update(&dets, Duration::from_millis(frame * 100));
    };
    for _ in 0..10 {
        step(&mut tracker);
    }
    let h = time(2000, || step(&mut tracker));
    print_hist(
        &format!(
            "tracker update, 100 detections x {} tracks",
            tracker.stats().live
        ),
        &h,
    );
}

/// Prints the figures; `frames` is how many frames the whole pipeline runs.
pub fn run(config: &Config, frames: u64) -> Result<(), PipelineError> {
    let mut config = config.clone();
    config.cameras[0].fps = 0.0;
    config.cameras[0].looping = true;
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new()))?;
    let spec = *pipeline.input_spec();
    println!(
        "bench: model input {}x{} {:?}, {} interpreter thread(s)",
        spec.width, spec.height, spec.kind, config.model.threads
    );
    bench_preprocess(&spec)?;
    let ids: Vec<u16> = pipeline.counted_class_ids().to_vec();
    bench_scene(&config, &ids);
    bench_tracker(&ids);
    bench_mjpeg();

    // Warm up the interpreter and caches, then measure the steady state.
    for _ in 0..3 {
        pipeline.step()?;
    }
    let stats = pipeline.stats().clone();
    let before = stats.frames.load(Relaxed);
    let detections_before = stats.detections.load(Relaxed);
    stats.reset_window();
    pipeline.run_frames(frames, |_| {})?;
    let processed = stats.frames.load(Relaxed) - before;
    let per_frame =
        (stats.detections.load(Relaxed) - detections_before) as f64 / processed.max(1) as f64;
    println!(
        "bench: pipeline on {} ({processed} frames, {per_frame:.1} detections/frame)",
        config.cameras[0].path.display()
    );
    for s in [
        Stage::Preprocess,
        Stage::Invoke,
        Stage::Decode,
        Stage::Scene,
        Stage::Frame,
    ] {
        print_hist(s.name(), stats.window(s));
    }
    let frame = stats.window(Stage::Frame).mean().as_secs_f64();
    let invoke = stats.window(Stage::Invoke).mean().as_secs_f64();
    if frame > 0.0 {
        println!(
            "bench: everything but invoke: {:.1} us = {:.3} % of the frame time; {:.2} fps",
            (frame - invoke) * 1e6,
            (frame - invoke) / frame * 100.0,
            1.0 / frame
        );
    }
    drop(pipeline);
    bench_tiles(&config, frames)?;
    if let Err(e) = bench_ssd_head(&config, frames) {
        println!("bench: detector head and inference modes skipped: {e}");
    }
    Ok(())
}

/// What tiling costs: the first camera with its tiles (2x2 if it has none) against the same
/// camera untiled, one after the other in this run, on one interpreter (a pool cannot tile).
fn bench_tiles(config: &Config, frames: u64) -> Result<(), PipelineError> {
    let grid = config.cameras[0]
        .tiles
        .filter(|t| t.count() > 1)
        .unwrap_or(TilesConfig {
            cols: 2,
            rows: 2,
            overlap: 0.2,
            full_frame: true,
        });
    let measure = |tiles: Option<TilesConfig>| -> Result<(Duration, f64), PipelineError> {
        let mut c = config.clone();
        c.cameras[0].tiles = tiles;
        c.model.interpreters = 1;
        let mut p = Pipeline::build(&c, Arc::new(MonotonicClock::new()))?;
        for _ in 0..3 {
            p.step()?;
        }
        let stats = p.stats().clone();
        let before = stats.detections.load(Relaxed);
        stats.reset_window();
        let done = p.run_frames(frames, |_| {})?;
        let per_frame = (stats.detections.load(Relaxed) - before) as f64 / done.max(1) as f64;
        Ok((stats.window(Stage::Frame).mean(), per_frame))
    };
    let (whole, whole_detections) = measure(None)?;
    let (tiled, tiled_detections) = measure(Some(grid))?;
    println!(
        "bench: tiles {}x{} (overlap {}, {} invokes): frame {:.1} ms, {tiled_detections:.1} \
         detections/frame; untiled: frame {:.1} ms, {whole_detections:.1} detections/frame; \
         tiled/untiled frame time {:.2}x",
        grid.cols,
        grid.rows,
        grid.overlap,
        grid.count(),
        tiled.as_secs_f64() * 1e3,
        whole.as_secs_f64() * 1e3,
        tiled.as_secs_f64() / whole.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// Decodes every frame of the MJPEG clips (as MJPEG cameras send them) into NV12.
fn bench_mjpeg() {
    for name in ["traffic.mjpeg", "people.mjpeg"] {
        let path = clips_dir().join(name);
        let Ok(stream) = std::fs::read(&path) else {
            println!(
                "bench: mjpeg decode skipped: cannot read {}",
                path.display()
            );
            continue;
        };
        let frames: Vec<&[u8]> = mjpeg_frames(&stream).collect();
        let Some(Ok((w, h))) = frames.first().map(|f| jpeg::frame_size(f)) else {
            println!("bench: mjpeg decode skipped: no JPEG in {}", path.display());
            continue;
        };
        let Ok(mut decoder) = JpegDecoder::try_new(w, h) else {
            println!("bench: mjpeg decode skipped: {w}x{h} is not an NV12 size");
            continue;
        };
        let mut nv12 = vec![0; decoder.nv12_len()];
        let (mut i, mut errors) = (0, 0);
        let h_ = time(frames.len() as u32, || {
            errors += u32::from(decoder.decode(frames[i % frames.len()], &mut nv12).is_err());
            i += 1;
        });
        print_hist(&format!("mjpeg decode {w}x{h} -> nv12 ({name})"), &h_);
        if errors > 0 {
            println!("bench: {errors} frames of {name} failed to decode");
        }
    }
}

/// `edgewatch_malloc_count` of a preloaded `tools/malloc-count`, if there is one.
fn malloc_counter() -> Option<extern "C" fn() -> u64> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches every loaded object.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"edgewatch_malloc_count".as_ptr()) };
    // SAFETY: the symbol, when present, is tools/malloc-count's `extern "C" fn() -> u64`.
    (!p.is_null())
        .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn() -> u64>(p) })
}

/// Clips folder: `$EDGEWATCH_CLIPS_DIR` or `models/clips`.
fn clips_dir() -> std::path::PathBuf {
    std::env::var_os("EDGEWATCH_CLIPS_DIR")
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| "models/clips".into())
}

/// Runs one RGB image through `detector`.
fn detect(
    detector: &mut dyn Detector,
    img: &image::RgbImage,
    out: &mut Detections,
) -> Result<(), String> {
    let format = FrameFormat {
        width: img.width(),
        height: img.height(),
        pixel_format: PixelFormat::Rgb24,
    };
    let mut pre =
        Preprocessor::new(format, Roi::FULL, detector.input_spec()).map_err(|e| e.to_string())?;
    pre.run(img.as_raw(), detector.input_tensor())
        .map_err(|e| e.to_string())?;
    detector.invoke().map_err(|e| e.to_string())?;
    detector.decode(out).map_err(|e| e.to_string())
}

fn model_with(
    cfg: &ModelConfig,
    head: HeadChoice,
    max: usize,
    threads: u32,
    interpreters: u32,
) -> ModelConfig {
    ModelConfig {
        head,
        max_detections: max,
        threads,
        interpreters,
        runtime: RuntimeChoice::Tflite,
        ..cfg.clone()
    }
}

/// The Rust head's decode time, the inference modes, and people counted op vs Rust head.
fn bench_ssd_head(config: &Config, frames: u64) -> Result<(), String> {
    let m = &config.model;
    let mut rust = TfliteDetector::load(&model_with(m, HeadChoice::Auto, MAX_DETECTIONS, 1, 1))
        .map_err(|e| e.to_string())?;
    let mut op = TfliteDetector::load(&model_with(m, HeadChoice::TfliteOp, 10, 1, 1))
        .map_err(|e| e.to_string())?;
    if !rust.has_rust_head() {
        return Err("the model has no SSD post-process tail the Rust head replaces".into());
    }
    let clip = std::fs::read(clips_dir().join("people.mjpeg"))
        .map_err(|e| format!("people.mjpeg: {e}"))?;
    let jpegs: Vec<&[u8]> = mjpeg_frames(&clip).collect();
    let decode_jpeg = |j: &[u8]| {
        image::load_from_memory_with_format(j, image::ImageFormat::Jpeg)
            .map(|i| i.into_rgb8())
            .map_err(|e| e.to_string())
    };

    // Head time on a crowded frame: decode + NMS over 1917 anchors x 90 classes.
    let crowd = decode_jpeg(
        jpegs
            .get(jpegs.len() / 2)
            .ok_or("people.mjpeg has no frames")?,
    )?;
    let mut out = Detections::new();
    detect(&mut rust, &crowd, &mut out)?;
    let kept = out.len();
    let h = time(2000, || {
        let _ = rust.decode(&mut out);
    });
    print_hist(&format!("Rust head decode+NMS ({kept} kept)"), &h);
    let h = time(20, || {
        let _ = rust.invoke();
    });
    print_hist("invoke, graph cut (Rust head)", &h);
    let tflite_invoke = h.mean();
    let h = time(20, || {
        let _ = op.invoke();
    });
    print_hist("invoke, whole graph (TFLite op)", &h);
    // The same cut graph on LiteRT, and how its invoke compares with TensorFlow Lite 1.15's.
    let litert_cfg = ModelConfig {
        runtime: RuntimeChoice::Litert,
        ..model_with(m, HeadChoice::Auto, MAX_DETECTIONS, 1, 1)
    };
    match LiteRtDetector::load(&litert_cfg) {
        Ok(mut litert) => {
            detect(&mut litert, &crowd, &mut out)?;
            let h = time(50, || {
                let _ = litert.invoke();
            });
            print_hist("invoke, graph cut, LiteRT", &h);
            println!(
                "bench: invoke LiteRT / TensorFlow Lite 1.15, 1 thread, same cut graph: {:.2}x",
                h.mean().as_secs_f64() / tflite_invoke.as_secs_f64()
            );
        }
        Err(e) => println!("bench: LiteRT: {e}"),
    }

    bench_modes(config, frames)?;

    // People per frame in the crowd clip: the op stops at 10, the Rust head at 128.
    let person = rust
        .labels()
        .iter()
        .position(|l| l == "person")
        .ok_or("no `person` label")? as u16;
    let (mut n_op, mut n_rust, mut n) = (0usize, 0usize, 0usize);
    let mut theirs = Detections::new();
    for j in jpegs.iter().step_by(10) {
        let img = decode_jpeg(j)?;
        detect(&mut op, &img, &mut theirs)?;
        detect(&mut rust, &img, &mut out)?;
        n_op += theirs.iter().filter(|d| d.class == person).count();
        n_rust += out.iter().filter(|d| d.class == person).count();
        n += 1;
    }
    println!(
        "bench: people.mjpeg, {n} frames (every 10th), score >= {}: mean people per frame: \
         TFLite op (max 10) {:.1}, Rust head (max {MAX_DETECTIONS}) {:.1}",
        m.score_threshold,
        n_op as f64 / n.max(1) as f64,
        n_rust as f64 / n.max(1) as f64
    );
    Ok(())
}

/// fps, latency and mallocs per frame of the whole pipeline in each inference mode.
fn bench_modes(config: &Config, frames: u64) -> Result<(), String> {
    let counter = malloc_counter();
    if counter.is_none() {
        println!(
            "bench: mallocs per frame: n/a (cargo build --release -p malloc-count; \
             LD_PRELOAD=target/release/libmalloc_count.so edgewatch bench ...)"
        );
    }
    let m = &config.model;
    let t = RuntimeChoice::Tflite;
    let l = RuntimeChoice::Litert;
    let modes = [
        (
            "LiteRT, 1 interpreter x 1 thread",
            l,
            HeadChoice::Auto,
            1,
            1,
        ),
        (
            "LiteRT, 1 interpreter x 2 threads",
            l,
            HeadChoice::Auto,
            2,
            1,
        ),
        (
            "LiteRT, 2 interpreters x 1 thread",
            l,
            HeadChoice::Auto,
            1,
            2,
        ),
        (
            "TFLite op, 1 interpreter x 1 thread",
            t,
            HeadChoice::TfliteOp,
            1,
            1,
        ),
        (
            "TFLite op, 1 interpreter x 2 threads",
            t,
            HeadChoice::TfliteOp,
            2,
            1,
        ),
        (
            "TFLite, 1 interpreter x 1 thread",
            t,
            HeadChoice::Auto,
            1,
            1,
        ),
        (
            "TFLite, 1 interpreter x 2 threads",
            t,
            HeadChoice::Auto,
            2,
            1,
        ),
        (
            "TFLite, 1 interpreter x 4 threads",
            t,
            HeadChoice::Auto,
            4,
            1,
        ),
        (
            "TFLite, 2 interpreters x 1 thread",
            t,
            HeadChoice::Auto,
            1,
            2,
        ),
        (
            "TFLite, 4 interpreters x 1 thread",
            t,
            HeadChoice::Auto,
            1,
            4,
        ),
    ];
    for (name, runtime, head, threads, interpreters) in modes {
        let mut c = config.clone();
        c.model = ModelConfig {
            runtime,
            ..model_with(m, head, m.max_detections, threads, interpreters)
        };
        let mut p =
            Pipeline::build(&c, Arc::new(MonotonicClock::new())).map_err(|e| e.to_string())?;
        for _ in 0..5 {
            p.step().map_err(|e| e.to_string())?;
        }
        let before = counter.map(|f| f());
        let start = Instant::now();
        p.stats().reset_window();
        let done = p.run_frames(frames, |_| {}).map_err(|e| e.to_string())?;
        let wall = start.elapsed().as_secs_f64();
        let mallocs = match (counter, before) {
            (Some(f), Some(b)) => format!("{:.1}", (f() - b) as f64 / done.max(1) as f64),
            _ => "n/a".into(),
        };
        // A pool's frame comes out `interpreters` steps after it went in.
        let latency = p.stats().window(Stage::Frame).mean().as_secs_f64() * interpreters as f64;
        let invoke = p.stats().window(Stage::Invoke).mean().as_secs_f64();
        println!(
            "bench: {name:<40} {:>5.1} fps  invoke {:>6.1} ms  latency {:>6.1} ms  \
             mallocs/frame {mallocs}",
            done as f64 / wall,
            invoke * 1e3,
            latency * 1e3
        );
    }
    Ok(())
}

/// The JPEG frames of an MJPEG elementary stream (each from SOI `FF D8` to EOI `FF D9`), as
/// MJPEG cameras send them minus the HTTP framing. Bytes between frames are skipped.
pub fn mjpeg_frames(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = stream;
    std::iter::from_fn(move || {
        let start = rest.windows(2).position(|w| w == [0xFF, 0xD8])?;
        // Inside a baseline JPEG, 0xFF in entropy-coded data is stuffed (FF 00), so the first
        // FF D9 after SOI ends the frame.
        let len = rest[start..].windows(2).position(|w| w == [0xFF, 0xD9])? + 2;
        let frame = &rest[start..start + len];
        rest = &rest[start + len..];
        Some(frame)
    })
}
