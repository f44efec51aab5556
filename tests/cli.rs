//! The `edgewatch` binary end to end: the demo runs and prints summaries, and every kind of
//! bad input gets one clear error line and a non-zero exit, never a panic.

mod util;

use util::edgewatch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure with `code` whose message contains every one of `needles`.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

fn demo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("board/demo.toml")
}

/// Writes `site` into a temp dir and returns (dir, config path).
fn site(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn run_site(text: &str) -> Output {
    let (_dir, path) = site(text);
    edgewatch(&["run", "--config", path.to_str().unwrap(), "--frames", "2"])
}

#[test]
fn version_names_the_build_commit_and_backend() {
    let out = edgewatch(&["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("edgewatch {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let hash = text[expected.len()..].split(',').next().unwrap();
    // The commit this tree is at (the binary is rebuilt when HEAD moves), or `unknown`
    // where git cannot tell.
    let head = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    assert_eq!(hash, head.as_deref().unwrap_or("unknown"), "{text}");
    let backend = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        "litert"
    } else {
        "tflite"
    };
    assert!(text.contains(&format!(", backend {backend};")), "{text}");
    assert!(text.contains("tflite 1.15"), "{text}");
}

#[test]
fn check_config_prints_the_resolved_demo() {
    let out = edgewatch(&["check-config", demo_config().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let model = util::model_dir().join("ssd_mobilenet_v1_coco_quant.tflite");
    assert!(text.contains(&model.display().to_string()), "{text}");
    assert!(text.contains("capacity = 64"), "defaults are shown: {text}");
}

#[test]
fn demo_runs_and_prints_json_summaries() {
    let out = edgewatch(&[
        "run",
        "--config",
        demo_config().to_str().unwrap(),
        "--frames",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.last().expect("a final summary");
    assert_eq!(last["final"], true);
    assert_eq!(last["frames"], 4);
    assert!(last["detections"].as_u64().unwrap() >= 4, "{last}");
    assert!(
        last["zones"]["road"]["car"].as_u64().unwrap() >= 1,
        "{last}"
    );
    assert!(last["latency_ms"]["invoke"]["p50"].as_f64().unwrap() > 0.0);
    assert!(last["lines"]["gantry"]["in"].is_object());
    assert!(last["signals"]["groups"]["traffic"].is_string(), "{last}");
    assert_eq!(last["signals"]["fault_flash"], false);
    let mode = last["signals"]["mode"].as_str().unwrap_or_default();
    assert!(["actuated", "fixed-time"].contains(&mode), "{last}");
    // Stopping leaves the simulated traffic head at steady red, printed as it happens.
    let err = stderr(&out);
    let last_red = err
        .lines()
        .rev()
        .find(|l| l.contains("traffic red"))
        .expect(&err);
    assert!(last_red.ends_with("traffic red on"), "{err}");
}

#[test]
fn demo_text_summary_names_zones_and_lines() {
    let out = edgewatch(&[
        "run",
        "--config",
        demo_config().to_str().unwrap(),
        "--frames",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    // A car is confirmed on its second frame and present in the zone from its second frame
    // inside: by the fourth frame the road is occupied.
    for needle in [
        "final",
        "frames 4",
        "zone road: car",
        "line gantry:",
        "invoke",
    ] {
        assert!(last.contains(needle), "`{needle}` missing in {last}");
    }
}

#[test]
fn bad_config_values_name_the_key() {
    let frames = util::frames_dir();
    let good = util::ssd_site(&frames, 256, 256, "rgb24");
    let cases = [
        ("fps = 0.0", "fps = 1000.0", "cameras[0].fps"),
        (
            "points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]",
            "points = [[0.0, 0.5], [1.0, 0.5]]",
            "zones[0].points: a polygon needs at least 3 points",
        ),
        (
            "score_threshold = 0.3",
            "score_threshold = 0.3\nmax_detections = 0",
            "model.max_detections",
        ),
        (
            "score_threshold = 0.3",
            "score_treshold = 0.3",
            "unknown field `score_treshold`",
        ),
        (
            "to = [0.3, 1.0]",
            "to = [0.3, 1.0]\nin = \"up\"",
            "lines[0].in",
        ),
    ];
    for (from, to, needle) in cases {
        let (_dir, path) = site(&good.replace(from, to));
        let out = edgewatch(&["check-config", path.to_str().unwrap()]);
        assert_fails(&out, 2, &[needle]);
        let out = edgewatch(&["run", "--config", path.to_str().unwrap()]);
        assert_fails(&out, 2, &[needle]);
    }
    let out = edgewatch(&["check-config", "/nonexistent/site.toml"]);
    assert_fails(&out, 2, &["/nonexistent/site.toml"]);
}

#[test]
fn bad_mqtt_settings_are_config_errors() {
    let good = util::ssd_site(&util::frames_dir(), 256, 256, "rgb24");
    let mqtt = "\n[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\n";
    let (_dir, path) = site(&format!("{good}{mqtt}prefix = \"fleet/#\"\n"));
    let out = edgewatch(&["check-config", path.to_str().unwrap()]);
    assert_fails(&out, 2, &["mqtt.prefix", "fleet/#"]);
    // A TLS file that is not there stops `run` before anything starts, naming the key.
    let (_dir, path) = site(&format!(
        "{good}{mqtt}tls = true\nca_file = \"/nonexistent/ca.pem\"\n"
    ));
    let out = edgewatch(&["run", "--config", path.to_str().unwrap(), "--frames", "1"]);
    assert_fails(&out, 2, &["mqtt.ca_file: /nonexistent/ca.pem"]);
}

#[test]
fn bad_model_files_are_clear_errors() {
    let frames = util::frames_dir();
    let models = util::model_dir();
    let good = util::ssd_site(&frames, 256, 256, "rgb24");
    let real_model = models.join("ssd_mobilenet_v1_coco_quant.tflite");
    let real_str = real_model.display().to_string();
    let dir = tempfile::tempdir().unwrap();

    let out = run_site(&good.replace(&real_str, "/nonexistent/model.tflite"));
    assert_fails(&out, 1, &["/nonexistent/model.tflite", "No such file"]);

    let garbage = dir.path().join("garbage.tflite");
    std::fs::write(&garbage, b"this is not a model at all, just text").unwrap();
    let out = run_site(&good.replace(&real_str, garbage.to_str().unwrap()));
    assert_fails(&out, 1, &["garbage.tflite", "not a TensorFlow Lite model"]);

    let bytes = std::fs::read(&real_model).unwrap();
    for (name, len) in [
        ("truncated.tflite", bytes.len() / 2),
        ("header-only.tflite", 64),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let out = run_site(&good.replace(&real_str, path.to_str().unwrap()));
        assert_fails(&out, 1, &[name, "corrupt or truncated"]);
    }

    // Flip bytes inside the flatbuffer's tables (not the weights): verification must catch
    // it or the interpreter must refuse it; either way no crash.
    let mut flipped = bytes.clone();
    for b in flipped[8..4096].iter_mut().step_by(7) {
        *b ^= 0x5a;
    }
    let path = dir.path().join("flipped.tflite");
    std::fs::write(&path, &flipped).unwrap();
    let out = run_site(&good.replace(&real_str, path.to_str().unwrap()));
    assert_fails(&out, 1, &["flipped.tflite"]);
}

#[test]
fn bad_labels_are_clear_errors() {
    let frames = util::frames_dir();
    let models = util::model_dir();
    let good = util::ssd_site(&frames, 256, 256, "rgb24");
    let labels = models.join("coco_labels.txt");
    let labels_str = labels.display().to_string();
    let dir = tempfile::tempdir().unwrap();

    let out = run_site(&good.replace(&labels_str, "/nonexistent/labels.txt"));
    assert_fails(&out, 1, &["/nonexistent/labels.txt"]);

    let text = std::fs::read_to_string(&labels).unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    let out = run_site(&good.replace(&labels_str, short.to_str().unwrap()));
    assert_fails(
        &out,
        1,
        &[
            "short.txt",
            "89 labels, but the model",
            "ssd_mobilenet_v1_coco_quant.tflite has 90 classes",
        ],
    );

    let long = dir.path().join("long.txt");
    std::fs::write(&long, format!("background\n{text}")).unwrap();
    let out = run_site(&good.replace(&labels_str, long.to_str().unwrap()));
    assert_fails(&out, 1, &["long.txt", "91 labels"]);

    let out = run_site(&good.replace("\"bus\"", "\"zebra crossing\""));
    assert_fails(&out, 2, &["model.classes", "zebra crossing"]);
}

#[test]
fn bad_frames_are_clear_errors() {
    let frames = util::frames_dir();
    let dir = tempfile::tempdir().unwrap();

    // A frame of the wrong size for the configured camera.
    let out = run_site(&util::ssd_site(&frames, 320, 240, "rgb24"));
    assert_fails(&out, 1, &["traffic_0001.bmp", "256x256", "320x240"]);

    // A corrupt image among good ones.
    let bad = dir.path().join("images");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(frames.join("traffic_0001.bmp"), bad.join("traffic_a.bmp")).unwrap();
    std::fs::write(bad.join("traffic_b.bmp"), b"BM not really a bitmap").unwrap();
    let out = run_site(&util::ssd_site(&bad, 256, 256, "rgb24"));
    assert_fails(&out, 1, &["traffic_b.bmp", "cannot decode image"]);

    // An empty directory.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_site(&util::ssd_site(&empty, 256, 256, "rgb24"));
    assert_fails(&out, 1, &["empty", "no images"]);

    // Y4M with a bad header, and one truncated inside its first picture.
    let y4m = dir.path().join("bad.y4m");
    std::fs::write(&y4m, b"YUV4MPEG2 W256 H256 C444\nFRAME\n").unwrap();
    let out = run_site(&util::ssd_site(&y4m, 256, 256, "nv12"));
    assert_fails(&out, 1, &["bad.y4m", "bad Y4M stream", "C444"]);

    let y4m = dir.path().join("short.y4m");
    let mut data = b"YUV4MPEG2 W256 H256 F10:1 C420mpeg2\nFRAME\n".to_vec();
    data.extend(vec![16u8; 1000]);
    std::fs::write(&y4m, &data).unwrap();
    let out = run_site(&util::ssd_site(&y4m, 256, 256, "yuyv"));
    assert_fails(&out, 1, &["short.y4m", "truncated"]);
}

#[test]
fn sigterm_stops_cleanly_with_a_final_summary() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", demo_config().to_str().unwrap()])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a summary line").unwrap();
    assert!(!first.contains("final"), "{first}");
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let last = rest.last().expect("a final summary after SIGTERM");
    assert!(last.contains("final"), "{last}");
}

#[test]
fn every_board_config_validates() {
    let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
    let mut checked = 0;
    for entry in std::fs::read_dir(&board).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = edgewatch(&["check-config", path.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            checked += 1;
        }
    }
    assert!(checked >= 2, "demo.toml and pi4-intersection.toml at least");
}

/// Runs a site with extra environment variables.
fn run_site_env(text: &str, env: &[(&str, &Path)]) -> Output {
    let (_dir, path) = site(text);
    Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", path.to_str().unwrap(), "--frames", "2"])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .output()
        .expect("edgewatch runs")
}

/// Asserts a clean failure (exit 1) whose stderr is exactly one line holding every needle.
fn assert_one_line(out: &Output, needles: &[&str]) {
    assert_fails(out, 1, needles);
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line, got: {err}");
}

#[test]
fn litert_library_problems_are_one_clear_line() {
    let frames = util::frames_dir();
    let litert = util::ssd_site(&frames, 256, 256, "rgb24").replace(
        "score_threshold = 0.3",
        "score_threshold = 0.3\nruntime = \"litert\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libLiteRt.so");

    let out = run_site_env(&litert, &[("EDGEWATCH_LITERT_LIB", &lib)]);
    assert_one_line(&out, &["libLiteRt.so", "scripts/setup.sh", "runtime"]);

    // A library of another architecture (its ELF header is enough to tell).
    let mut header = [0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = 2;
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    header[18..20].copy_from_slice(&other.to_le_bytes());
    std::fs::write(&lib, header).unwrap();
    let out = run_site_env(&litert, &[("EDGEWATCH_LITERT_LIB", &lib)]);
    assert_one_line(
        &out,
        &["libLiteRt.so", "but this machine is", "scripts/setup.sh"],
    );

    // Not a library at all.
    std::fs::write(&lib, b"not a shared object").unwrap();
    let out = run_site_env(&litert, &[("EDGEWATCH_LITERT_LIB", &lib)]);
    assert_one_line(
        &out,
        &["libLiteRt.so", "cannot load LiteRT", "scripts/setup.sh"],
    );

    // A library that is not LiteRT: the C library has none of its functions.
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if libc.exists() && cfg!(target_arch = "x86_64") {
        let out = run_site_env(&litert, &[("EDGEWATCH_LITERT_LIB", libc)]);
        assert_one_line(&out, &["LiteRtCreateEnvironment", "scripts/setup.sh"]);
    }

    // TensorFlow Lite 1.15 needs no library: the same site runs without it.
    let tflite = litert.replace("runtime = \"litert\"", "runtime = \"tflite\"");
    let out = run_site_env(&tflite, &[("EDGEWATCH_LITERT_LIB", &lib)]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
}

#[test]
fn a_model_litert_cannot_run_is_one_clear_line() {
    use tflite::model::{BuiltinOperator, Model};
    let frames = util::frames_dir();
    let models = util::model_dir();
    let real_model = models.join("ssd_mobilenet_v1_coco_quant.tflite");
    let site_text = util::ssd_site(&frames, 256, 256, "rgb24").replace(
        "score_threshold = 0.3",
        "score_threshold = 0.3\nruntime = \"litert\"",
    );
    let dir = tempfile::tempdir().unwrap();
    // A valid flatbuffer (it passes verification and the model checks) whose first operator
    // is a custom op no runtime knows.
    let bytes = std::fs::read(&real_model).unwrap();
    let mut model = Model::from_buffer(&bytes).unwrap();
    let code = model.subgraphs[0].operators[0].opcode_index as usize;
    model.operator_codes[code].builtin_code = BuiltinOperator::BuiltinOperator_CUSTOM;
    model.operator_codes[code]
        .custom_code
        .assign(&c"EdgewatchNoSuchOp");
    let path = dir.path().join("unknown-op.tflite");
    std::fs::write(&path, model.to_buffer()).unwrap();
    let text = site_text.replace(&real_model.display().to_string(), path.to_str().unwrap());
    let out = run_site_env(&text, &[]);
    assert_one_line(&out, &["unknown-op.tflite", "LiteRT"]);
    eprintln!("{}", stderr(&out));

    // The flipped-bytes model of `bad_model_files_are_clear_errors`, on LiteRT.
    let mut flipped = bytes.clone();
    for b in flipped[8..4096].iter_mut().step_by(7) {
        *b ^= 0x5a;
    }
    let path = dir.path().join("flipped.tflite");
    std::fs::write(&path, &flipped).unwrap();
    let text = site_text.replace(&real_model.display().to_string(), path.to_str().unwrap());
    let out = run_site_env(&text, &[]);
    assert_one_line(&out, &["flipped.tflite"]);
}

#[test]
fn fuzz_findings_are_clear_errors_from_the_binary() {
    let frames = util::frames_dir();
    let models = util::model_dir();
    let good = util::ssd_site(&frames, 256, 256, "rgb24");
    let real_model = models.join("ssd_mobilenet_v1_coco_quant.tflite");
    let dir = tempfile::tempdir().unwrap();
    // A model whose post-process op has a corrupt count: refused at load, on both runtimes,
    // before TensorFlow Lite's op could crash on it.
    let (_, options) = util::fuzz_corpus("postprocess")
        .into_iter()
        .find(|(name, _)| name == "max_detections-negative")
        .expect("the corpus has it");
    let bytes = std::fs::read(&real_model).unwrap();
    let path = dir.path().join("negative-max.tflite");
    std::fs::write(
        &path,
        util::with_postprocess_options(&bytes, &options).unwrap(),
    )
    .unwrap();
    let text = good.replace(&real_model.display().to_string(), path.to_str().unwrap());
    for runtime in ["litert", "tflite"] {
        let text = text.replace(
            "score_threshold = 0.3",
            &format!("score_threshold = 0.3\nruntime = \"{runtime}\"\nhead = \"tflite-op\""),
        );
        let out = run_site_env(&text, &[]);
        assert_one_line(
            &out,
            &[
                "negative-max.tflite",
                "TFLite_Detection_PostProcess",
                "`max_detections`",
            ],
        );
    }

    // The Y4M header with a two-byte UTF-8 tag: read, not a panic; it holds no picture.
    let y4m = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/y4m/utf8-tag.y4m");
    let out = run_site(&util::ssd_site(&y4m, 640, 360, "nv12"));
    assert_fails(&out, 1, &["utf8-tag.y4m", "holds no frames"]);
}

#[test]
fn a_recording_whose_every_frame_fails_exits_non_zero() {
    // Every invoke fails (an injected fault) and the limit is never reached, so nothing but
    // the end of the recording stops the run: it must not pass for a good one.
    let text = util::ssd_site(&util::frames_dir(), 256, 256, "rgb24")
        .replace("loop = true", "loop = false")
        .replace(
            "score_threshold = 0.3",
            "score_threshold = 0.3\nmax_failures = 10000",
        )
        + "\n[testing]\nfail_invoke_after_frames = 0\n";
    let (_dir, path) = site(&text);
    let out = edgewatch(&["run", "--config", path.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        &["the recording ended with all 3 of its frames skipped"],
    );
}

#[test]
fn reset_fault_clears_the_latch_file() {
    let dir = tempfile::tempdir().unwrap();
    let fault = dir.path().join("fault");
    let demo = std::fs::read_to_string(demo_config()).unwrap();
    let text = demo.replace(
        "shutdown_limit_s = 30.0",
        &format!(
            "shutdown_limit_s = 30.0\nfault_file = \"{}\"",
            fault.display()
        ),
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(&fault, "conflicting greens: `traffic` and `walkers`\n").unwrap();
    let out = edgewatch(&["reset-fault", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("conflicting greens: `traffic` and `walkers`"),
        "{text}"
    );
    assert!(!fault.exists());
    let out = edgewatch(&["reset-fault", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("no fault latched"));
}
