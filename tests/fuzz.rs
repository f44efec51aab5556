//! Mutation fuzzing on stable Rust, in the time budget `EDGEWATCH_FUZZ_SECS` (default 90 s
//! for all targets together; `scripts/fuzz.sh --minutes 60` runs the long version).
//!
//! Each target takes bytes from untrusted places: the JPEG decoder, the HTTP multipart
//! parser, the Y4M reader, FlexBuffer options, the config parser, and the model pre-checks
//! (the SSD's post-process options, mutated and spliced back into the real model; whatever
//! the checks accept is loaded and run once by TensorFlow Lite's own op, which crashed on
//! corrupt options before the checks existed). Seeds come from `../shared/` and the project;
//! the regression corpus in `tests/data/fuzz/<target>/` runs first, unmutated.
//!
//! A case fails when it panics, uses more than its limit of CPU time (a watchdog thread ends
//! the run if a case hangs), or the process's peak memory passes [`PEAK_RSS_LIMIT`]. The failing input
//! is saved under `target/fuzz-failures/<target>/` to be added to the corpus; the seed of the
//! run (`EDGEWATCH_FUZZ_SEED` repeats it) is printed.

mod util;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgewatch::capture::{jpeg, jpeg_split, mjpeg_http, y4m};
use edgewatch::config::{Config, HeadChoice, ModelConfig, RuntimeChoice};
use edgewatch::vision::flexbuffer::{write_map, FlexMap, FlexScalar};
use edgewatch::vision::pool::load_detector;
use edgewatch::vision::ssd_head::PostProcessOptions;
use edgewatch::vision::tflite::PreparedModel;

/// Peak resident memory the fuzz process may reach (the model target holds a few copies of
/// a 4 MB model and an interpreter; a parser that trusts a length field would blow it).
const PEAK_RSS_LIMIT: u64 = 1536 << 20;
/// Targets sharing the budget.
const TARGETS: u32 = 6;

/// A small xorshift generator: the run is repeatable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that sit on the edges of integer and float encodings.
const INTERESTING: &[&[u8]] = &[
    &[0],
    &[0xFF],
    &[0x7F],
    &[0x80],
    &[0xFF, 0xFF],
    &[0x00, 0x80],
    &[0xFF, 0xFF, 0xFF, 0x7F],
    &[0x00, 0x00, 0x00, 0x80],
    &[0x00, 0x00, 0xC0, 0x7F], // NaN
    &[0x00, 0x00, 0x80, 0x7F], // +inf
    &[0xFF, 0xD9],             // JPEG end of image
    &[0xFF, 0xD8],
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    &[0xC3, 0xA9], // a two-byte UTF-8 character
];

/// One to four random edits of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => v[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => v[at.min(len - 1)] = rng.next() as u8,
            2 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let end = (at + value.len()).min(len);
                v.splice(at..end, value.iter().copied());
            }
            3 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                v.drain(at.min(end)..end);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let copy = v[start..end].to_vec();
                v.splice(at..at, copy);
            }
            6 => v.truncate(at),
            7 if !other.is_empty() => {
                let from = rng.below(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                // A little-endian number at a random place: lengths, counts, sizes.
                let n = [
                    1u64,
                    0,
                    u32::MAX as u64,
                    i32::MAX as u64,
                    1 << 31,
                    65535,
                    8193,
                ][rng.below(7)];
                let bytes = n.to_le_bytes();
                let w = [1, 2, 4, 8][rng.below(4)];
                let end = (at + w).min(len);
                v.splice(at..end, bytes[..w].iter().copied());
            }
        }
    }
    v
}

/// The case being run, for the hang watchdog to save.
type Current = Arc<Mutex<(Instant, Vec<u8>)>>;

fn failures_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/fuzz-failures")
        .join(target)
}

fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = failures_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    // FNV-1a names the file after its content.
    let hash = input.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let path = dir.join(format!("{hash:016x}.bin"));
    std::fs::write(&path, input).unwrap();
    path
}

/// CPU time of the calling thread: a case's cost, whatever else the machine is running.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

fn budget() -> Duration {
    let total: f64 = std::env::var("EDGEWATCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90.0);
    Duration::from_secs_f64(total / f64::from(TARGETS))
}

fn seed() -> u64 {
    std::env::var("EDGEWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1
}

/// Runs the regression corpus of `target` through `run`, then mutations of `seeds` for the
/// target's share of the budget. Each case may use `limit` of CPU time; a case still running
/// after ten times that in wall time (at least 30 s) ends the process (a hang) after saving
/// its input.
fn fuzz(target: &str, seeds: &[Vec<u8>], limit: Duration, run: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let corpus_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let corpus: Vec<Vec<u8>> = if corpus_dir.is_dir() || target == "postprocess" {
        util::fuzz_corpus(target)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    } else {
        Vec::new()
    };
    let seed = seed();
    let mut rng = Rng(seed);
    let current: Current = Arc::new(Mutex::new((Instant::now(), Vec::new())));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hang_watch = {
        let (current, done, target) = (current.clone(), done.clone(), target.to_string());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let c = current.lock().unwrap_or_else(|e| e.into_inner());
                if c.0.elapsed() > (limit * 10).max(Duration::from_secs(30)) {
                    let path = save_failure(&target, &c.1);
                    eprintln!(
                        "fuzz {target}: a case hung for {:?} (seed {seed}); input saved to {}",
                        c.0.elapsed(),
                        path.display()
                    );
                    std::process::exit(101);
                }
            }
        })
    };
    let (end, mut cases, mut slowest) = (Instant::now() + budget(), 0u64, Duration::ZERO);
    let mut queue = corpus.into_iter();
    loop {
        let input = match queue.next() {
            Some(regression) => regression,
            None if Instant::now() >= end => break,
            None => {
                let a = &seeds[rng.below(seeds.len())];
                let b = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, a, b)
            }
        };
        *current.lock().unwrap() = (Instant::now(), input.clone());
        let start = thread_cpu_time();
        let result = catch_unwind(AssertUnwindSafe(|| run(&input)));
        let took = thread_cpu_time().saturating_sub(start);
        slowest = slowest.max(took);
        cases += 1;
        if result.is_err() || took > limit {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let path = save_failure(target, &input);
            let what = if result.is_err() {
                "panicked"
            } else {
                "was too slow"
            };
            panic!(
                "fuzz {target}: a case {what} ({took:?}, seed {seed}); input saved to {}; \
                 fix it and add the file to tests/data/fuzz/{target}/",
                path.display()
            );
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    hang_watch.join().unwrap();
    let peak = peak_rss();
    println!(
        "fuzz {target}: {cases} cases, slowest {slowest:?} of CPU, peak RSS {} MiB, seed {seed}",
        peak >> 20
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "fuzz {target}: peak RSS {} MiB over the {} MiB bound (seed {seed})",
        peak >> 20,
        PEAK_RSS_LIMIT >> 20
    );
}

/// The first `n` JPEG frames of a shared MJPEG recording, and the shared still image.
fn jpeg_seeds(n: usize) -> Vec<Vec<u8>> {
    let clip = std::fs::read(util::clips_dir().join("people.mjpeg")).unwrap();
    let mut seeds = Vec::new();
    let mut at = 0;
    while let Some((start, end)) = jpeg_split::next_jpeg(&clip, at) {
        seeds.push(clip[start..end].to_vec());
        at = end;
        if seeds.len() == n {
            break;
        }
    }
    seeds.push(std::fs::read(util::frames_dir().join("face.jpg")).unwrap());
    seeds
}

#[test]
fn jpeg_decoder() {
    let seeds = jpeg_seeds(4);
    fuzz("jpeg", &seeds, Duration::from_secs(1), |bytes| {
        // A decoder of the size the header claims, within what a camera sends.
        let Ok((w, h)) = jpeg::frame_size(bytes) else {
            return;
        };
        if w > 1920 || h > 1088 {
            return;
        }
        let Ok(mut decoder) =
            jpeg::JpegDecoder::try_new(w.next_multiple_of(2), h.next_multiple_of(2))
        else {
            return;
        };
        let mut nv12 = vec![0; decoder.nv12_len()];
        let _ = decoder.decode(bytes, &mut nv12);
    });
}

#[test]
fn multipart_parser() {
    let jpegs = jpeg_seeds(2);
    let part = |jpeg: &[u8], sized: bool| {
        let mut p = b"--frame\r\nContent-Type: image/jpeg\r\n".to_vec();
        if sized {
            p.extend_from_slice(format!("Content-Length: {}\r\n", jpeg.len()).as_bytes());
        }
        p.extend_from_slice(b"\r\n");
        p.extend_from_slice(jpeg);
        p.extend_from_slice(b"\r\n");
        p
    };
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n";
    let mut plain = head.to_vec();
    plain.extend_from_slice(b"\r\n");
    let mut sized = plain.clone();
    for j in &jpegs[..2] {
        plain.extend(part(j, false));
        sized.extend(part(j, true));
    }
    // The same stream with chunked transfer encoding.
    let mut chunked = head.to_vec();
    chunked.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    for piece in sized[plain.len().min(sized.len())..].chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let seeds = [plain, sized, chunked];
    fuzz("multipart", &seeds, Duration::from_secs(1), |bytes| {
        // The read size comes from the input's length, so a case repeats exactly.
        let read = 1 + bytes.len() % 4096;
        let _ = mjpeg_http::parse_response(bytes, read, 512 << 10);
    });
}

#[test]
fn y4m_reader() {
    let clip = std::fs::read(util::clips_dir().join("traffic_320x180_3s.y4m")).unwrap();
    let header_end = clip.iter().position(|&b| b == b'\n').unwrap() + 1;
    let frame = header_end + 6 + 320 * 180 * 3 / 2;
    let seeds = [
        clip[..frame + 200].to_vec(),
        clip[..header_end].to_vec(),
        b"YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2\nFRAME\n012345678901FRAME Ixyz\n012345678901".to_vec(),
    ];
    fuzz("y4m", &seeds, Duration::from_secs(1), |bytes| {
        let mut r = Cursor::new(bytes);
        let Ok(header) = y4m::read_header(&mut r) else {
            return;
        };
        // Frames up to 4K; a larger header is valid but this harness does not read it.
        if header.frame_len() > 3840 * 2160 * 3 / 2 {
            return;
        }
        let (mut line, mut picture) = (Vec::new(), vec![0; header.frame_len()]);
        for index in 0.. {
            match y4m::read_frame(&mut r, &mut line, &mut picture, index) {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
    });
}

const OPTION_KEYS: [&str; 12] = [
    "max_detections",
    "max_classes_per_detection",
    "detections_per_class",
    "use_regular_nms",
    "nms_score_threshold",
    "nms_iou_threshold",
    "num_classes",
    "y_scale",
    "x_scale",
    "h_scale",
    "w_scale",
    "_output_quantized",
];

/// The SSD's own options and a few written ones with the op's optional keys.
fn option_seeds() -> Vec<Vec<u8>> {
    let model = std::fs::read(util::model_dir().join("ssd_mobilenet_v1_coco_quant.tflite"));
    let own = util::postprocess_options(&model.unwrap()).unwrap();
    let written = write_map(&[
        ("max_detections", FlexScalar::Int(10)),
        ("max_classes_per_detection", FlexScalar::Int(1)),
        ("detections_per_class", FlexScalar::Int(100)),
        ("use_regular_nms", FlexScalar::Bool(true)),
        ("nms_score_threshold", FlexScalar::Float(1e-8)),
        ("nms_iou_threshold", FlexScalar::Float(0.6)),
        ("num_classes", FlexScalar::UInt(90)),
        ("y_scale", FlexScalar::Float(10.0)),
        ("x_scale", FlexScalar::Float(10.0)),
        ("h_scale", FlexScalar::Float(5.0)),
        ("w_scale", FlexScalar::Float(5.0)),
    ]);
    vec![own, written]
}

#[test]
fn flexbuffer_options() {
    fuzz(
        "flexbuffer",
        &option_seeds(),
        Duration::from_millis(100),
        |bytes| {
            if let Ok(map) = FlexMap::parse(bytes) {
                for key in OPTION_KEYS {
                    if let Ok(Some(v)) = map.get(key) {
                        let _ = (v.as_i64(), v.as_f64(), v.as_bool());
                    }
                }
            }
            let _ = PostProcessOptions::parse(bytes);
        },
    );
}

#[test]
fn config_parser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in ["board", "tests/data"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                seeds.push(std::fs::read(&path).unwrap());
            }
        }
    }
    let path = Path::new("fuzz.toml");
    fuzz("config", &seeds, Duration::from_secs(1), |bytes| {
        let _ = Config::parse(&String::from_utf8_lossy(bytes), path);
    });
}

#[test]
fn model_prechecks() {
    let model = std::fs::read(util::model_dir().join("ssd_mobilenet_v1_coco_quant.tflite"));
    let model = model.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mutated.tflite");
    let cfg = ModelConfig {
        file: file.clone(),
        labels: util::model_dir().join("coco_labels.txt"),
        threads: 1,
        score_threshold: 0.5,
        max_detections: 10,
        classes: vec![],
        input_mean: None,
        input_std: None,
        roi: None,
        anchors: None,
        // The op itself decodes, so what the checks let through reaches TensorFlow Lite's
        // C++ op, which then runs once (the load's warm-up).
        head: HeadChoice::TfliteOp,
        family: Default::default(),
        interpreters: 1,
        runtime: RuntimeChoice::Tflite,
        max_failures: 10,
    };
    fuzz(
        "postprocess",
        &option_seeds(),
        Duration::from_secs(5),
        |options| {
            let Some(bytes) = util::with_postprocess_options(&model, options) else {
                return;
            };
            std::fs::write(&file, bytes).unwrap();
            if PreparedModel::read(&cfg).is_ok() {
                // Accepted: it must load and run one frame, or be refused with an error.
                let _ = load_detector(&cfg);
            }
        },
    );
}
