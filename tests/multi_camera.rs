//! Several cameras on one unit: one detector shared in weighted round-robin, zones and lines
//! per camera, stats per camera in the summary, and a camera whose recording ends leaves the
//! others running.

mod util;

use std::process::Command;
use std::sync::Arc;

use edgewatch::clock::MonotonicClock;
use edgewatch::config::{Config, ConfigError};
use edgewatch::pipeline::{Pipeline, Step};

/// Two replay cameras: `north` (the Y4M clip, looping, weight 2) and `south` (the three
/// sample frames, once, weight 1), each with a zone and a line of its own.
fn two_camera_site() -> String {
    let models = util::model_dir();
    let clip = util::clips_dir().join("traffic_320x180_3s.y4m");
    let frames = util::frames_dir();
    format!(
        r#"
site = "junction"

[[cameras]]
name = "north"
source = "replay"
path = "{clip}"
width = 320
height = 180
pixel_format = "nv12"
weight = 2

[[cameras]]
name = "south"
source = "replay"
path = "{frames}"
pattern = "traffic_*"
width = 256
height = 256
pixel_format = "yuyv"
loop = false

[model]
file = "{model}"
labels = "{labels}"
score_threshold = 0.3
classes = ["car", "truck", "bus", "person"]

[[zones]]
name = "north-road"
points = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]

[[zones]]
name = "south-road"
camera = "south"
points = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]

[[lines]]
name = "south-gantry"
camera = "south"
from = [0.5, 0.0]
to = [0.5, 1.0]

[[lines]]
name = "north-gantry"
from = [0.5, 0.0]
to = [0.5, 1.0]

[health]
enabled = false
"#,
        clip = clip.display(),
        frames = frames.display(),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    )
}

fn frames_of(p: &Pipeline) -> Vec<(String, u64)> {
    p.cameras()
        .map(|c| (c.name.to_string(), c.frames))
        .collect()
}

#[test]
fn cameras_share_the_detector_by_weight_and_keep_their_own_zones() {
    let config = util::config_from(&two_camera_site());
    let mut p = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    // Weighted round-robin: north, north, south, north, north, south, ...
    for _ in 0..9 {
        assert_eq!(p.step().unwrap(), Step::Processed);
    }
    assert_eq!(
        frames_of(&p),
        [("north".to_string(), 6), ("south".to_string(), 3)]
    );
    // Each camera's scene holds only its own zones and lines; the site view keeps config
    // order across cameras.
    let scenes: Vec<(usize, usize)> = p
        .cameras()
        .map(|c| (c.scene.zone_occupancy().len(), c.scene.line_counts().len()))
        .collect();
    assert_eq!(scenes, [(1, 1), (1, 1)]);
    let zones: Vec<&str> = p.zones().map(|(n, _)| n).collect();
    assert_eq!(zones, ["north-road", "south-road"]);
    let lines: Vec<&str> = p.lines().map(|(n, _)| n).collect();
    assert_eq!(lines, ["south-gantry", "north-gantry"]);
    // The sample frames are busy street scenes: the south zone sees the south camera's cars
    // (confirmed on their second frame, present from their second frame inside), and its
    // count is the south scene's, not the north one's.
    let south = p.cameras().nth(1).unwrap().scene.zone_occupancy()[0];
    let (_, site_south) = p.zones().nth(1).unwrap();
    assert_eq!(&south, site_south);
    assert!(south.iter().sum::<u32>() > 0, "cars in the south zone");
}

#[test]
fn a_camera_that_ends_leaves_the_others_running() {
    let config = util::config_from(&two_camera_site());
    let mut p = Pipeline::build(&config, Arc::new(MonotonicClock::new())).unwrap();
    let mut processed = 0;
    while processed < 15 {
        assert_eq!(p.step().unwrap(), Step::Processed, "north never ends");
        processed += 1;
    }
    // South had three frames; north got every other turn.
    assert_eq!(
        frames_of(&p),
        [("north".to_string(), 12), ("south".to_string(), 3)]
    );
}

#[test]
fn zones_and_lines_must_name_a_camera() {
    let text = two_camera_site().replace("camera = \"south\"", "camera = \"east\"");
    let config = Config::parse(&text, std::path::Path::new("site.toml")).unwrap();
    match config.validate() {
        Err(ConfigError::Invalid { key, message }) => {
            assert_eq!(key, "zones[1].camera");
            assert!(message.contains("east"), "{message}");
        }
        other => panic!("expected an invalid zone camera, got {other:?}"),
    }
}

#[test]
fn the_summary_reports_every_camera() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, two_camera_site()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", path.to_str().unwrap()])
        .args(["--frames", "6", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("a final summary");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["final"], true);
    assert_eq!(v["frames"], 6);
    assert_eq!(v["cameras"]["north"]["frames"], 4, "{last}");
    assert_eq!(v["cameras"]["south"]["frames"], 2, "{last}");
    assert_eq!(v["cameras"]["south"]["online"], true, "{last}");
    assert!(v["zones"]["south-road"].is_object(), "{last}");
    assert!(v["lines"]["north-gantry"].is_object(), "{last}");
}
