//! Model files that would crash or wedge an inference runtime are refused at load with an
//! error naming the file and what is wrong, on both runtimes and with either SSD head: every
//! corrupt `TFLite_Detection_PostProcess` option in the fuzz regression corpus
//! (`tests/data/fuzz/postprocess.patches`, the real SSD's options with a few bytes changed), and
//! options out of range written on purpose.

mod util;

use std::path::Path;

use edgewatch::config::{HeadChoice, ModelConfig, RuntimeChoice};
use edgewatch::vision::flexbuffer::{write_map, FlexScalar};
use edgewatch::vision::pool::load_detector;

const SSD: &str = "ssd_mobilenet_v1_coco_quant.tflite";

fn config(file: &Path, runtime: RuntimeChoice, head: HeadChoice) -> ModelConfig {
    ModelConfig {
        file: file.into(),
        labels: util::model_dir().join("coco_labels.txt"),
        threads: 1,
        score_threshold: 0.5,
        max_detections: 10,
        classes: vec![],
        input_mean: None,
        input_std: None,
        roi: None,
        anchors: None,
        head,
        family: Default::default(),
        interpreters: 1,
        runtime,
        max_failures: 10,
    }
}

/// Loads the SSD with its post-process options replaced by `options` on every runtime and
/// head; returns each error message (`Ok` loads are reported as `None`).
fn load_with(options: &[u8]) -> Vec<Option<String>> {
    let model = std::fs::read(util::model_dir().join(SSD)).unwrap();
    let bytes = util::with_postprocess_options(&model, options).expect("the SSD has the op");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged.tflite");
    std::fs::write(&file, bytes).unwrap();
    let mut results = Vec::new();
    for runtime in [RuntimeChoice::Litert, RuntimeChoice::Tflite] {
        for head in [HeadChoice::Auto, HeadChoice::TfliteOp] {
            let loaded = load_detector(&config(&file, runtime, head));
            results.push(loaded.err().map(|e| {
                let text = e.to_string();
                assert!(
                    text.contains(&file.display().to_string()),
                    "{runtime:?} {head:?}: the error names the file: {text}"
                );
                text
            }));
        }
    }
    results
}

/// The real model's options as scalars, to be changed one at a time.
fn ssd_options() -> Vec<(&'static str, FlexScalar)> {
    vec![
        ("_output_quantized", FlexScalar::Bool(true)),
        ("h_scale", FlexScalar::Float(5.0)),
        ("max_classes_per_detection", FlexScalar::Int(1)),
        ("max_detections", FlexScalar::Int(10)),
        ("nms_iou_threshold", FlexScalar::Float(0.6)),
        ("nms_score_threshold", FlexScalar::Float(1e-8)),
        ("num_classes", FlexScalar::Int(90)),
        ("w_scale", FlexScalar::Float(5.0)),
        ("x_scale", FlexScalar::Float(10.0)),
        ("y_scale", FlexScalar::Float(10.0)),
    ]
}

fn with(key: &str, value: Option<FlexScalar>) -> Vec<u8> {
    let mut options = ssd_options();
    options.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        options.push((Box::leak(key.to_string().into_boxed_str()), v));
    }
    write_map(&options)
}

#[test]
fn sound_options_load_on_every_runtime_and_head() {
    // The checks must not refuse what is right: the model's own options, and the same
    // options as this test writes them.
    let model = std::fs::read(util::model_dir().join(SSD)).unwrap();
    let own = util::postprocess_options(&model).unwrap();
    for options in [own, write_map(&ssd_options())] {
        for result in load_with(&options) {
            assert_eq!(result, None);
        }
    }
}

#[test]
fn every_corrupt_option_in_the_fuzz_corpus_is_refused_by_name() {
    let corpus = util::fuzz_corpus("postprocess");
    assert!(corpus.len() >= 10, "the corpus is there");
    for (name, bytes) in corpus {
        let option = name.split('-').next().unwrap();
        let want = match option {
            "keys" => "keys are not sorted",
            "truncated" => "custom options:",
            "root" => "bad byte width",
            option => option,
        };
        for result in load_with(&bytes) {
            let text = result.unwrap_or_else(|| panic!("{name} was accepted"));
            assert!(text.contains(want), "{name}: {text}");
            assert!(
                text.contains("TFLite_Detection_PostProcess"),
                "{name}: {text}"
            );
        }
    }
}

#[test]
fn options_out_of_range_are_refused_by_name() {
    let cases = [
        (
            "max_detections",
            Some(FlexScalar::Int(-1)),
            "`max_detections` = -1",
        ),
        (
            "max_detections",
            Some(FlexScalar::Int(1 << 40)),
            "`max_detections`",
        ),
        (
            "detections_per_class",
            Some(FlexScalar::Int(0)),
            "`detections_per_class` = 0",
        ),
        (
            "max_classes_per_detection",
            Some(FlexScalar::Int(91)),
            "not in 1..=90",
        ),
        (
            "num_classes",
            Some(FlexScalar::Int(200)),
            "200 does not fit the 91 score columns",
        ),
        (
            "nms_iou_threshold",
            Some(FlexScalar::Float(2.0)),
            "`nms_iou_threshold` = 2",
        ),
        (
            "nms_score_threshold",
            Some(FlexScalar::Float(f64::NAN)),
            "nms_score_threshold",
        ),
        ("x_scale", Some(FlexScalar::Float(0.0)), "`x_scale` = 0"),
        (
            "use_regular_nms",
            Some(FlexScalar::Other),
            "`use_regular_nms` is not a bool",
        ),
        ("h_scale", None, "lack `h_scale`"),
    ];
    for (key, value, want) in cases {
        for result in load_with(&with(key, value)) {
            let text = result.unwrap_or_else(|| panic!("{key} = {value:?} was accepted"));
            assert!(text.contains(want), "{key} = {value:?}: {text}");
        }
    }
}
