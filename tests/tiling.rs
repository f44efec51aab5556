//! Tiling (`cameras[].tiles`) on real footage, through the whole pipeline: a 2x2 tiled run
//! finds the cars the untiled run finds, finds more of them where they are small in the
//! model input, and does not report an object twice.

mod util;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use edgewatch::clock::MonotonicClock;
use edgewatch::pipeline::{Pipeline, Step};
use edgewatch::vision::detection::Detection;

/// COCO's `car`.
const CAR: u16 = 2;
/// Cars below this score are too often not cars to be compared.
const SCORE: f32 = 0.4;
const TILES: &str = "tiles = { cols = 2, rows = 2, overlap = 0.2 }";

fn site(path: &Path, width: u32, height: u32, extra: &str) -> String {
    let models = util::model_dir();
    format!(
        r#"
[[cameras]]
name = "cam"
source = "replay"
path = "{path}"
width = {width}
height = {height}
fps = 0.0
pixel_format = "rgb24"
loop = false
{extra}

[model]
file = "{model}"
labels = "{labels}"
score_threshold = 0.3
max_detections = 50
classes = ["car", "truck", "bus", "person"]
"#,
        path = path.display(),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    )
}

/// The confident cars of each frame of a recording (at most `frames` frames).
fn cars(text: &str, frames: usize) -> Vec<Vec<Detection>> {
    let config = util::config_from(text);
    let mut p = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let mut out = Vec::new();
    while out.len() < frames {
        match p.step().unwrap() {
            Step::Processed => out.push(
                p.detections()
                    .iter()
                    .filter(|d| d.class == CAR && d.score >= SCORE)
                    .copied()
                    .collect(),
            ),
            Step::End => break,
            Step::Skipped | Step::Waiting => {}
        }
    }
    assert_eq!(p.stats().errors.load(Relaxed), 0);
    out
}

/// Of `base`'s cars, how many `other` found in the same frame (IoU >= 0.5), and how many
/// there were.
fn found(base: &[Vec<Detection>], other: &[Vec<Detection>]) -> (usize, usize) {
    let mut hits = 0;
    for (b, o) in base.iter().zip(other) {
        for d in b {
            hits += usize::from(o.iter().any(|e| e.bbox.iou(&d.bbox) >= 0.5));
        }
    }
    (hits, base.iter().map(Vec::len).sum())
}

/// Pairs of cars in one frame that are one object reported twice: overlapping by IoU > 0.5,
/// or one (a fragment) lying inside the other.
fn doubles(frames: &[Vec<Detection>]) -> usize {
    let mut n = 0;
    for f in frames {
        for (i, a) in f.iter().enumerate() {
            for b in &f[i + 1..] {
                let double = a.bbox.iou(&b.bbox) > 0.5 || a.bbox.overlap_of_smaller(&b.bbox) > 0.8;
                n += usize::from(double);
            }
        }
    }
    n
}

#[test]
fn tiles_find_the_cars_of_the_sample_frames() {
    let frames = util::frames_dir();
    let pattern = "pattern = \"traffic_*\"";
    let base = cars(&site(&frames, 256, 256, pattern), 3);
    let tiled = cars(&site(&frames, 256, 256, &format!("{pattern}\n{TILES}")), 3);
    assert_eq!((base.len(), tiled.len()), (3, 3));
    let (hits, n) = found(&base, &tiled);
    let total: usize = tiled.iter().map(Vec::len).sum();
    eprintln!(
        "traffic_000*.bmp: untiled {n} cars, tiled {total}, {hits} of the untiled ones found, \
         {} doubles",
        doubles(&tiled)
    );
    assert!(n >= 6, "the untiled run should find the cars, got {n}");
    assert_eq!(hits, n, "the tiled run missed cars the untiled run found");
    assert_eq!(doubles(&tiled), 0, "{tiled:?}");
}

#[test]
fn tiles_find_more_small_cars_in_the_street_clip() {
    // 640x360 squeezed into 300x300 makes the cars of this street seen from above small; a
    // 2x2 grid gives each car about 2x the model input.
    let clip = util::clips_dir().join("traffic.mjpeg");
    let frames = 60;
    let base = cars(&site(&clip, 640, 360, ""), frames);
    let tiled = cars(&site(&clip, 640, 360, TILES), frames);
    assert_eq!((base.len(), tiled.len()), (frames, frames));
    let (hits, n) = found(&base, &tiled);
    let total: usize = tiled.iter().map(Vec::len).sum();
    let (d_base, d_tiled) = (doubles(&base), doubles(&tiled));
    eprintln!(
        "traffic.mjpeg, {frames} frames: untiled {n} cars ({d_base} doubles), tiled {total} \
         ({d_tiled} doubles), {hits} of the untiled ones found"
    );
    assert!(n >= 20, "the untiled run should find cars, got {n}");
    assert!(
        hits as f64 >= 0.9 * n as f64,
        "the tiled run found only {hits} of the {n} cars the untiled run found"
    );
    assert!(
        total as f64 >= 1.5 * n as f64,
        "tiles should find more small cars: {total} against {n}"
    );
    assert!(
        d_tiled as f64 <= 0.1 * total as f64,
        "{d_tiled} cars reported twice (or as fragments) of {total}"
    );
}

#[test]
fn a_tiled_camera_whose_invokes_fail_marks_the_detector_failed() {
    // One failure per frame, not per tile: after 2 good frames, 3 failed ones reach
    // model.max_failures.
    let frames = util::frames_dir();
    let text = site(
        &frames,
        256,
        256,
        &format!("pattern = \"traffic_*\"\n{TILES}"),
    )
    .replace("loop = false", "loop = true")
    .replace(
        "max_detections = 50",
        "max_detections = 50\nmax_failures = 3",
    ) + "\n[testing]\nfail_invoke_after_frames = 2\n";
    let config = util::config_from(&text);
    let mut p = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let steps: Vec<Step> = (0..5).map(|_| p.step().unwrap()).collect();
    assert_eq!(
        steps,
        [
            Step::Processed,
            Step::Processed,
            Step::Skipped,
            Step::Skipped,
            Step::Skipped
        ]
    );
    let stats = p.stats();
    assert_eq!(stats.errors.load(Relaxed), 3);
    let failure = stats.detector.failure().expect("the detector is failed");
    assert_eq!(failure.consecutive, 3);
}
