//! The fake V4L2 device for camera tests: building it as a shared object to preload into the
//! real binary, site configs with a V4L2 camera, and ways to look at what a process holds open.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every environment variable the fake reads (besides the per-device `FAKE_V4L2_FAULT_<name>`).
pub const FAKE_VARS: [&str; 8] = [
    "FAKE_V4L2_DEVICES",
    "FAKE_V4L2_FRAMES",
    "FAKE_V4L2_FORMATS",
    "FAKE_V4L2_SIZES",
    "FAKE_V4L2_FPS",
    "FAKE_V4L2_FAULT",
    "FAKE_V4L2_ABSENT_OPENS",
    "FAKE_V4L2_MAX_FRAMES",
];

/// The cargo target directory this test was built into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Builds `tools/fake-v4l2` as a shared object (once per test process) and returns its path,
/// for `LD_PRELOAD`. A failed build fails the test with cargo's output.
pub fn fake_v4l2_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "fake-v4l2", "--manifest-path"])
            .arg(&manifest)
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building fake-v4l2 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = target_dir().join("release/libfake_v4l2.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

/// Clears every `FAKE_V4L2_*` variable of this process, then sets `vars`.
pub fn set_fake_env(vars: &[(&str, &str)]) {
    let stale: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("FAKE_V4L2_"))
        .collect();
    for k in stale {
        std::env::remove_var(k);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

/// Extra `[[cameras]]` keys for [`v4l2_site`] and [`v4l2_camera`].
#[derive(Debug, Clone)]
pub struct CameraKeys {
    /// `device`.
    pub device: String,
    /// `width`, `height`.
    pub size: (u32, u32),
    /// `pixel_format`.
    pub pixel_format: String,
    /// `fps` (0: the driver's rate).
    pub fps: f32,
    /// `buffers`.
    pub buffers: u32,
    /// `timeout_ms`.
    pub timeout_ms: u64,
    /// `reconnect_min_ms`, `reconnect_max_ms`.
    pub reconnect_ms: (u64, u64),
    /// `max_frame_kib`.
    pub max_frame_kib: u32,
}

impl CameraKeys {
    /// A 320x240 YUYV camera on `device` with the config's defaults otherwise.
    pub fn new(device: &str) -> CameraKeys {
        CameraKeys {
            device: device.to_string(),
            size: (320, 240),
            pixel_format: "yuyv".into(),
            fps: 0.0,
            buffers: 4,
            timeout_ms: 2000,
            reconnect_ms: (250, 30_000),
            max_frame_kib: 1024,
        }
    }

    /// The same with pixel format `format`.
    pub fn format(mut self, format: &str) -> CameraKeys {
        self.pixel_format = format.into();
        self
    }

    /// The same at `width` x `height`.
    pub fn size(mut self, width: u32, height: u32) -> CameraKeys {
        self.size = (width, height);
        self
    }

    /// The same with reconnect waits from `min` to `max` ms.
    pub fn reconnect(mut self, min: u64, max: u64) -> CameraKeys {
        self.reconnect_ms = (min, max);
        self
    }

    /// The same with compressed frames limited to `kib` KiB.
    pub fn max_frame_kib(mut self, kib: u32) -> CameraKeys {
        self.max_frame_kib = kib;
        self
    }

    /// The same with a frame timeout of `ms`.
    pub fn timeout(mut self, ms: u64) -> CameraKeys {
        self.timeout_ms = ms;
        self
    }
}

/// A `[[cameras]]` table for a V4L2 camera named `name`.
pub fn v4l2_camera(name: &str, keys: &CameraKeys) -> String {
    format!(
        r#"
[[cameras]]
name = "{name}"
source = "v4l2"
device = "{device}"
width = {w}
height = {h}
pixel_format = "{format}"
fps = {fps:?}
buffers = {buffers}
timeout_ms = {timeout}
reconnect_min_ms = {min}
reconnect_max_ms = {max}
max_frame_kib = {kib}
"#,
        device = keys.device,
        w = keys.size.0,
        h = keys.size.1,
        format = keys.pixel_format,
        fps = keys.fps,
        buffers = keys.buffers,
        timeout = keys.timeout_ms,
        min = keys.reconnect_ms.0,
        max = keys.reconnect_ms.1,
        kib = keys.max_frame_kib,
    )
}

/// A whole site with one V4L2 camera `cam`, the SSD model, one zone and one line, and the
/// health endpoint off (so parallel runs do not fight over its port).
pub fn v4l2_site(keys: &CameraKeys) -> String {
    let models = super::model_dir();
    format!(
        r#"
site = "v4l2-test"
{camera}
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

[health]
enabled = false
"#,
        camera = v4l2_camera("cam", keys),
        model = models.join("ssd_mobilenet_v1_coco_quant.tflite").display(),
        labels = models.join("coco_labels.txt").display(),
    )
}

/// The validated camera config of [`v4l2_site`].
pub fn v4l2_camera_config(keys: &CameraKeys) -> edgewatch::config::CameraConfig {
    super::config_from(&v4l2_site(keys)).cameras.remove(0)
}

/// Entries of `/proc/self/fd` (the directory's own fd included, so counts compare equal).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// This process's fds whose target starts with `prefix` (e.g. `/memfd:fake-v4l2`).
pub fn fds_to(prefix: &str) -> Vec<i32> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable") {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with(prefix) {
            if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                fds.push(fd);
            }
        }
    }
    fds
}

/// The path of the mapping in `/proc/self/maps` that holds address `addr` (empty for an
/// anonymous mapping), or `None` if nothing is mapped there.
pub fn mapping_of(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps is readable");
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        if (lo..hi).contains(&addr) {
            return Some(fields.nth(4).unwrap_or("").to_string());
        }
    }
    None
}
