//! Helpers shared by the integration tests: where the models, frames and clips are, and site
//! configs written into temporary folders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the edgewatch binary with `args`, the shared models and frames, and warnings-only logs.
pub fn edgewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(args)
        .env("EDGEWATCH_MODEL_DIR", model_dir())
        .env("EDGEWATCH_FRAMES_DIR", frames_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("edgewatch runs")
}

/// A folder named by `var`, falling back to `fallback` under the project root. A missing
/// folder fails the test (never skips it) and says how to get the files.
fn data_dir(var: &str, fallback: &str, probe: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(fallback));
    assert!(
        dir.join(probe).exists(),
        "{} not found: set {var} (CI points it into ../shared) or run models/fetch.sh",
        dir.join(probe).display()
    );
    dir
}

/// Models and labels: `$EDGEWATCH_MODEL_DIR` or `models/`.
pub fn model_dir() -> PathBuf {
    data_dir(
        "EDGEWATCH_MODEL_DIR",
        "models",
        "ssd_mobilenet_v1_coco_quant.tflite",
    )
}

/// Sample frames: `$EDGEWATCH_FRAMES_DIR` or `models/frames/`.
pub fn frames_dir() -> PathBuf {
    data_dir("EDGEWATCH_FRAMES_DIR", "models/frames", "traffic_0001.bmp")
}

/// Video clips: `$EDGEWATCH_CLIPS_DIR` or `models/clips/`.
pub fn clips_dir() -> PathBuf {
    data_dir(
        "EDGEWATCH_CLIPS_DIR",
        "models/clips",
        "traffic_320x180_3s.y4m",
    )
}

/// A site config for the SSD model replaying `path` (absolute) at `width` x `height`.
pub fn ssd_site(path: &Path, width: u32, height: u32, pixel_format: &str) -> String {
    let models = model_dir();
    format!(
        r#"
site = "test"
[[cameras]]
name = "cam"
source = "replay"
path = "{path}"
pattern = "traffic_*"
width = {width}
height = {height}
fps = 0.0
pixel_format = "{pixel_format}"
loop = true

[model]
file = "{model}"
labels = "{labels}"
score_threshold = 0.3
classes = ["car", "truck", "bus", "person"]

[[zones]]
name = "road"
points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]

[[lines]]
name = "gantry"
from = [0.3, 0.5]
to = [0.3, 1.0]
"#,
        path = path.display(),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    )
}

/// Parses and validates a config from text (paths already absolute).
pub fn config_from(text: &str) -> edgewatch::config::Config {
    let config =
        edgewatch::config::Config::parse(text, Path::new("test.toml")).expect("config parses");
    config.validate().expect("config is valid");
    config
}

/// Runs `detector` on one RGB image (preprocess, invoke, decode) and returns its detections.
pub fn detect(
    detector: &mut dyn edgewatch::vision::detector::Detector,
    img: &image::RgbImage,
) -> edgewatch::vision::detection::Detections {
    use edgewatch::capture::{FrameFormat, PixelFormat};
    let format = FrameFormat {
        width: img.width(),
        height: img.height(),
        pixel_format: PixelFormat::Rgb24,
    };
    let spec = detector.input_spec();
    let mut pre = edgewatch::vision::preprocess::Preprocessor::new(
        format,
        edgewatch::geometry::Roi::FULL,
        spec,
    )
    .unwrap();
    pre.run(img.as_raw(), detector.input_tensor()).unwrap();
    detector.invoke().unwrap();
    let mut out = edgewatch::vision::detection::Detections::new();
    detector.decode(&mut out).unwrap();
    out
}

pub mod mjpeg_server;
pub mod thread_alloc;
pub mod v4l2;

/// `model` (a `.tflite` file's bytes) with the custom options of its
/// `TFLite_Detection_PostProcess` op replaced by `options`; `None` if it has no such op.
pub fn with_postprocess_options(model: &[u8], options: &[u8]) -> Option<Vec<u8>> {
    use tflite::model::stl::vector::VectorInsert;
    let mut m = tflite::model::Model::from_buffer(model)?;
    let code = m.operator_codes.iter().position(|c| {
        c.custom_code.c_str().to_bytes() == edgewatch::vision::ssd_head::POSTPROCESS_OP.as_bytes()
    })?;
    let op = m.subgraphs[0]
        .operators
        .iter_mut()
        .find(|op| op.opcode_index as usize == code)?;
    op.custom_options.assign(options.iter().copied());
    Some(m.to_buffer())
}

/// The custom options of `model`'s `TFLite_Detection_PostProcess` op.
pub fn postprocess_options(model: &[u8]) -> Option<Vec<u8>> {
    use tflite::model::stl::vector::VectorSlice;
    let m = tflite::model::Model::from_buffer(model)?;
    let code = m.operator_codes.iter().position(|c| {
        c.custom_code.c_str().to_bytes() == edgewatch::vision::ssd_head::POSTPROCESS_OP.as_bytes()
    })?;
    let op = m.subgraphs[0]
        .operators
        .iter()
        .find(|op| op.opcode_index as usize == code)?;
    Some(op.custom_options.as_slice().to_vec())
}

/// The regression inputs of the fuzz harness in `tests/data/fuzz/<kind>/`, sorted, with
/// their file names. `postprocess` is built instead from `tests/data/fuzz/postprocess.patches`:
/// edits of the shared SSD's own op options, so no model bytes are committed.
pub fn fuzz_corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    if kind == "postprocess" {
        return postprocess_corpus(&data.join("postprocess.patches"));
    }
    let dir = data.join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn postprocess_corpus(patches: &Path) -> Vec<(String, Vec<u8>)> {
    let model = std::fs::read(model_dir().join("ssd_mobilenet_v1_coco_quant.tflite")).unwrap();
    let base = postprocess_options(&model).expect("the SSD has the post-process op");
    let text = std::fs::read_to_string(patches).unwrap();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut fields = line.split_whitespace();
        let name = fields.next().unwrap().to_string();
        let mut bytes = base.clone();
        for edit in fields {
            let (key, value) = edit.split_once('=').expect("OFFSET=HEX or truncate=LEN");
            if key == "truncate" {
                bytes.truncate(value.parse().unwrap());
                continue;
            }
            let at: usize = key.parse().unwrap();
            for (i, pair) in value.as_bytes().chunks(2).enumerate() {
                let hex = std::str::from_utf8(pair).unwrap();
                bytes[at + i] = u8::from_str_radix(hex, 16).unwrap();
            }
        }
        out.push((name, bytes));
    }
    out.sort();
    out
}

/// Runs `edgewatch run --config CONFIG` with the shared models and frames and info logs, and
/// waits for its health endpoint (see [`announced_health_addr`]).
pub fn spawn_unit(
    config: &Path,
    on_log: impl Fn(&str) + Send + 'static,
) -> (std::process::Child, std::net::SocketAddr) {
    spawn_unit_with_env(config, &[], on_log)
}

/// [`spawn_unit`] with extra environment variables for the child only (e.g. `TZ`: setting
/// them in the test process would race with the other tests).
pub fn spawn_unit_with_env(
    config: &Path,
    env: &[(&str, &str)],
    on_log: impl Fn(&str) + Send + 'static,
) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", config.to_str().expect("a UTF-8 path")])
        .env("EDGEWATCH_MODEL_DIR", model_dir())
        .env("EDGEWATCH_FRAMES_DIR", frames_dir())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("edgewatch starts");
    let addr = announced_health_addr(&mut child, on_log);
    (child, addr)
}

/// Reads `child`'s stderr until it announces its health endpoint and returns the address,
/// passing every line (then and after) to `on_log`. Panics after a minute without it.
pub fn announced_health_addr(
    child: &mut std::process::Child,
    on_log: impl Fn(&str) + Send + 'static,
) -> std::net::SocketAddr {
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            on_log(&line);
            if let Some(rest) = line.split("health endpoint on http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches("/health").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the endpoint is announced");
    addr.parse().expect("a socket address")
}
