//! `edgewatch bench`: per-stage timings. Preprocessing is timed on synthetic 640x480 frames
//! in every camera pixel format; the scene on 10 synthetic moving objects; then the whole
//! pipeline runs on the configured source.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::{FrameFormat, PixelFormat};
use crate::clock::MonotonicClock;
use crate::config::Config;
use crate::geometry::{BBox, Roi};
use crate::health::stats::{Histogram, Stage};
use crate::pipeline::{Pipeline, PipelineError, Step};
use crate::scene::Scene;
use crate::vision::detection::{Detection, Detections};
use crate::vision::preprocess::{InputKind, InputSpec, InputTensor, Preprocessor};

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

    // Warm up the interpreter and caches, then measure the steady state.
    for _ in 0..3 {
        pipeline.step()?;
    }
    let stats = pipeline.stats().clone();
    let before = stats.frames.load(Relaxed);
    let detections_before = stats.detections.load(Relaxed);
    stats.reset_window();
    let mut done = 0;
    while done < frames {
        match pipeline.step()? {
            Step::Processed => done += 1,
            Step::Skipped => {}
            Step::End => break,
        }
    }
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
    Ok(())
}
