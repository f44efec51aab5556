//! The detector on the real shared models, on both runtimes (LiteRT and TensorFlow Lite
//! 1.15): the SSD's detections agree with another TFLite runtime's reference output, the
//! BlazeFace raw-anchor path finds the faces, and a YOLOX model is refused by TFLite 1.15
//! with the way out.

mod util;

use std::path::Path;

use edgewatch::config::{AnchorConfig, ModelConfig, ModelFamily, RuntimeChoice};
use edgewatch::vision::detection::{Detection, Detections};
use edgewatch::vision::detector::Detector;
use edgewatch::vision::pool::load_detector;
use edgewatch::vision::tflite::TfliteDetector;

/// The two runtimes every detector test runs on.
const RUNTIMES: [RuntimeChoice; 2] = [RuntimeChoice::Litert, RuntimeChoice::Tflite];

fn model_config(file: &Path, labels: &Path, threshold: f32) -> ModelConfig {
    ModelConfig {
        file: file.into(),
        labels: labels.into(),
        threads: 1,
        score_threshold: threshold,
        max_detections: 10,
        classes: vec![],
        input_mean: None,
        input_std: None,
        roi: None,
        anchors: None,
        head: Default::default(),
        family: Default::default(),
        interpreters: 1,
        runtime: RuntimeChoice::Auto,
        max_failures: 10,
    }
}

/// Runs `detector` on an RGB image file and returns its detections.
fn detect(detector: &mut dyn Detector, image: &Path) -> Detections {
    util::detect(detector, &image::open(image).unwrap().into_rgb8())
}

#[derive(serde::Deserialize)]
struct Reference {
    detections: std::collections::BTreeMap<String, Vec<RefDetection>>,
}

#[derive(serde::Deserialize)]
struct RefDetection {
    label: String,
    class_id: u16,
    score: f32,
    box_ymin_xmin_ymax_xmax: [f32; 4],
}

fn matches(ours: &Detection, r: &RefDetection) -> bool {
    let b = [
        ours.bbox.ymin,
        ours.bbox.xmin,
        ours.bbox.ymax,
        ours.bbox.xmax,
    ];
    ours.class == r.class_id
        && (ours.score - r.score).abs() <= 0.05
        && b.iter()
            .zip(r.box_ymin_xmin_ymax_xmax)
            .all(|(a, b)| (a - b).abs() <= 0.03)
}

#[test]
fn ssd_agrees_with_reference_detections() {
    let models = util::model_dir();
    let frames = util::frames_dir();
    for runtime in RUNTIMES {
        eprintln!("{runtime:?}");
        let mut cfg = model_config(
            &models.join("ssd_mobilenet_v1_coco_quant.tflite"),
            &models.join("coco_labels.txt"),
            0.3,
        );
        cfg.runtime = runtime;
        let mut detector = load_detector(&cfg).unwrap();
        ssd_agrees_with_reference(&mut *detector, &models, &frames);
    }
}

fn ssd_agrees_with_reference(detector: &mut dyn Detector, models: &Path, frames: &Path) {
    let text = std::fs::read_to_string(models.join("reference_detections.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(
        reference.detections.len(),
        4,
        "three traffic frames and face.jpg"
    );
    let mut confident = 0;
    for (file, expected) in &reference.detections {
        let ours = detect(detector, &frames.join(file));
        eprintln!(
            "{file}: {:?}",
            ours.iter().map(|d| (d.class, d.score)).collect::<Vec<_>>()
        );
        // Every confident reference detection is found with the same label, score and box.
        for r in expected.iter().filter(|r| r.score > 0.5) {
            confident += 1;
            assert_eq!(detector.labels()[r.class_id as usize], r.label);
            assert!(
                ours.iter().any(|d| matches(d, r)),
                "{file}: missing {} {:.3} {:?}",
                r.label,
                r.score,
                r.box_ymin_xmin_ymax_xmax
            );
        }
        // And nothing confident appears that the reference does not have.
        for d in ours.iter().filter(|d| d.score > 0.5 + 0.05) {
            assert!(
                expected.iter().any(|r| matches(d, r)),
                "{file}: extra detection {d:?}"
            );
        }
    }
    assert!(
        confident >= 6,
        "the reference should hold confident cars, found {confident}"
    );
}

#[test]
fn yolox_models_are_refused_with_the_runtime_they_need() {
    let models = util::model_dir();
    let labels = models.join("coco80_labels.txt");
    for file in [
        "yolox_nano_ti_lite_320_int8.tflite",
        "yolox_nano_ti_lite_320_dw_int8.tflite",
    ] {
        // Recognised from its shapes, and when the config says so.
        for family in [ModelFamily::Auto, ModelFamily::Yolox] {
            let mut cfg = model_config(&models.join(file), &labels, 0.3);
            cfg.family = family;
            let err = TfliteDetector::load(&cfg).unwrap_err().to_string();
            assert!(
                err.contains(file)
                    && err.contains("YOLOX")
                    && err.contains("model.runtime = litert"),
                "{family:?}: {err}"
            );
        }
    }
    // The SSD is not mistaken for YOLOX.
    let cfg = model_config(
        &models.join("ssd_mobilenet_v1_coco_quant.tflite"),
        &models.join("coco_labels.txt"),
        0.5,
    );
    assert!(TfliteDetector::load(&cfg).is_ok());
}

#[test]
fn blazeface_raw_outputs_find_the_faces() {
    let models = util::model_dir();
    let frames = util::frames_dir();
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("face_labels.txt");
    std::fs::write(&labels, "face\n").unwrap();
    let mut cfg = model_config(
        &models.join("face_detection_short_range.tflite"),
        &labels,
        0.5,
    );
    cfg.input_mean = Some(127.5);
    cfg.input_std = Some(127.5);
    cfg.anchors = Some(AnchorConfig {
        strides: vec![8, 16, 16, 16],
        per_cell: 2,
        scale: 128.0,
        nms_iou: 0.3,
        weighted_nms: true,
    });
    for runtime in RUNTIMES {
        cfg.runtime = runtime;
        let mut detector = load_detector(&cfg).unwrap();
        eprintln!("{runtime:?}");
        finds_the_faces(&detect(&mut *detector, &frames.join("face.jpg")));
    }
}

fn finds_the_faces(faces: &Detections) {
    eprintln!("faces: {faces:?}");
    // Two people stand in front; two more at the edges behind them may or may not be found.
    let front: Vec<_> = faces.iter().filter(|d| d.bbox.width() > 0.08).collect();
    assert!(
        front.len() >= 2,
        "expected the two front faces, got {faces:?}"
    );
    assert!(
        faces.len() <= 6,
        "NMS should merge overlapping anchors, got {}",
        faces.len()
    );
    for f in faces.iter() {
        assert_eq!(f.class, 0);
        assert!(f.bbox.xmin < f.bbox.xmax && f.bbox.ymin < f.bbox.ymax);
        assert!(f.bbox.xmin > -0.1 && f.bbox.xmax < 1.1 && f.bbox.ymin > -0.1 && f.bbox.ymax < 1.1);
    }
    // The two front faces are side by side, not one face found twice.
    let mut xs: Vec<f32> = front.iter().map(|d| d.bbox.center().x).collect();
    xs.sort_by(f32::total_cmp);
    assert!(
        xs[xs.len() - 1] - xs[0] > 0.15,
        "front faces overlap: {xs:?}"
    );
}

#[test]
fn yolox_runs_on_litert_and_finds_the_cars() {
    let models = util::model_dir();
    let frames = util::frames_dir();
    let labels = models.join("coco80_labels.txt");
    for file in [
        "yolox_nano_ti_lite_320_int8.tflite",
        "yolox_nano_ti_lite_320_dw_int8.tflite",
    ] {
        let mut cfg = model_config(&models.join(file), &labels, 0.3);
        cfg.runtime = RuntimeChoice::Litert;
        cfg.max_detections = 50;
        let mut detector = load_detector(&cfg).unwrap();
        let spec = *detector.input_spec();
        assert!(spec.letterbox && spec.bgr, "{spec:?}");
        // The depthwise variant calls some of these cars motorcycles: any vehicle counts.
        let vehicles: Vec<u16> = ["car", "truck", "bus", "motorcycle"]
            .iter()
            .map(|v| detector.labels().iter().position(|l| l == v).unwrap() as u16)
            .collect();
        for n in 1..=3 {
            let image = frames.join(format!("traffic_000{n}.bmp"));
            let found = detect(detector.as_mut(), &image);
            let cars: Vec<&Detection> = found
                .iter()
                .filter(|d| vehicles.contains(&d.class) && d.score >= 0.4)
                .collect();
            assert!(cars.len() >= 2, "{file} frame {n}: {found:?}");
            for d in &cars {
                let b = d.bbox;
                assert!(
                    b.xmin >= -0.05 && b.ymin >= -0.05 && b.xmax <= 1.05 && b.ymax <= 1.05,
                    "{b:?}"
                );
                assert!(b.width() < 0.6 && b.height() < 0.6, "{b:?}");
            }
        }
    }
}
