//! The live view of the real binary on the demo site: `/snapshot.jpg` is a JPEG of the
//! camera's size, the status page works in real headless Chromium (Debian's `chromium`,
//! installed by scripts/setup.sh), and ten clients that never read `/stream.mjpeg` neither
//! stall the frame loop nor grow its memory.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Unit {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo with the view on and the health endpoint on a free loopback port; `extra`
/// is appended to its `[view]` section.
fn start(view: &str) -> Unit {
    let dir = tempfile::tempdir().unwrap();
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    // The demo may carry its own [view]; this test's replaces it.
    let demo = demo.split("\n[view]").next().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        format!(
            "{demo}\n[health]\nbind = \"127.0.0.1:0\"\nmax_connections = 4\n\n[view]\nenabled = true\n{view}\n"
        ),
    )
    .unwrap();
    let (child, addr) = util::spawn_unit(&path, |_| {});
    Unit {
        child,
        addr,
        _dir: dir,
    }
}

/// One request; returns the status code, the head and the body, or `None` if the connection
/// failed (the accept thread refuses with 503 and closes while every worker is busy).
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).ok()?;
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Some((code, head, bytes[split + 4..].to_vec()))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    try_get(addr, path).unwrap_or_else(|| panic!("GET {path} failed"))
}

/// A 200 answer to `path`, retried while the server is busy (503 or a refused connection).
fn get_ok(addr: SocketAddr, path: &str) -> Vec<u8> {
    for _ in 0..200 {
        match try_get(addr, path) {
            Some((200, _, body)) => return body,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("{path} never answered 200");
}

/// /health as JSON.
fn health(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&get_ok(addr, "/health")).unwrap()
}

/// A counter from /metrics.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = String::from_utf8(get_ok(addr, "/metrics")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

fn decode(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut decoder = zune_jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg));
    let pixels = decoder.decode().expect("a valid JPEG");
    let (w, h) = decoder.dimensions().unwrap();
    (w, h, pixels)
}

#[test]
fn snapshots_are_jpegs_of_the_camera_size_annotated_or_raw() {
    let unit = start("fps = 2.0\nquality = 80");
    let (code, head, annotated) = get(unit.addr, "/snapshot.jpg");
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("Content-Type: image/jpeg"), "{head}");
    let (w, h, drawn) = decode(&annotated);
    assert_eq!((w, h), (256, 256), "the demo camera is 256x256");
    let (code, _, raw) = get(unit.addr, "/snapshot.jpg?camera=highway&raw=1");
    assert_eq!(code, 200);
    let (w, h, plain) = decode(&raw);
    assert_eq!((w, h), (256, 256));
    // The annotations (zone outlines, the signal panel, labels) change many pixels.
    let changed = drawn
        .chunks_exact(3)
        .zip(plain.chunks_exact(3))
        .filter(|(a, b)| a.iter().zip(*b).any(|(x, y)| x.abs_diff(*y) > 60))
        .count();
    assert!(
        changed > 1000,
        "only {changed} pixels differ between annotated and raw"
    );
    let (code, _, body) = get(unit.addr, "/snapshot.jpg?camera=nope");
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    let view = &health(unit.addr)["view"];
    assert!(view["rendered"].as_u64().unwrap() >= 2, "{view}");
    assert_eq!(view["fps"].as_f64(), Some(2.0));
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/test-artifacts"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args`; returns its stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=8000",
            "--window-size=1000,1200",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs (scripts/setup.sh installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_page_shows_every_zone_line_and_signal_group_and_a_live_image_in_chromium() {
    let unit = start("fps = 2.0");
    let url = format!("http://{}/", unit.addr);
    let dom = chromium(&url, &["--dump-dom"]);
    assert!(
        dom.contains("data-health-loaded=\"1\""),
        "the page's script never rendered /health:\n{dom}"
    );
    // Names come only from /health through the page's script: the HTML has none of them.
    for name in [
        "road",
        "crossing",
        "gantry",
        "traffic",
        "walkers",
        "bus-coming",
    ] {
        assert!(dom.contains(name), "`{name}` is not on the page:\n{dom}");
    }
    assert!(
        dom.contains("data-group=\"traffic\""),
        "no signal group element:\n{dom}"
    );
    assert!(
        dom.contains("data-camera=\"highway\"") && dom.contains("data-loaded=\"1\""),
        "the camera image never loaded a JPEG:\n{dom}"
    );
    let shot = artifacts().join("status.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("a screenshot was saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn ten_clients_that_never_read_the_stream_stall_nothing() {
    let unit = start("fps = 2.0\nmax_viewers = 2");
    let before = health(unit.addr);
    std::thread::sleep(Duration::from_secs(3));
    let baseline = health(unit.addr);
    let base_frames = baseline["frames"].as_u64().unwrap() - before["frames"].as_u64().unwrap();
    let base_rss = baseline["rss_bytes"].as_u64().unwrap();

    // Ten clients ask for the stream and never read a byte.
    let slow: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(unit.addr).unwrap();
            s.write_all(b"GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let start = health(unit.addr);
    std::thread::sleep(Duration::from_secs(3));
    let during = health(unit.addr);
    let frames = during["frames"].as_u64().unwrap() - start["frames"].as_u64().unwrap();
    assert!(
        frames * 2 >= base_frames,
        "the frame loop slowed: {frames} frames in 3 s with slow viewers, {base_frames} before"
    );
    assert!(
        during["view"]["viewers"].as_u64().unwrap() <= 2,
        "{}",
        during["view"]
    );
    assert!(
        metric(unit.addr, "edgewatch_view_refused_total") >= 1,
        "streams beyond view.max_viewers are refused"
    );

    // The streams that were taken fill their small socket buffers and are dropped by the
    // write timeout; nothing is queued for them meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(unit.addr, "edgewatch_view_dropped_slow_total") < 1 {
        assert!(
            Instant::now() < deadline,
            "no slow stream was dropped: {}",
            health(unit.addr)["view"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = health(unit.addr);
    let rss = after["rss_bytes"].as_u64().unwrap();
    assert!(
        rss < base_rss + 16 * 1024 * 1024,
        "RSS grew from {base_rss} to {rss} bytes"
    );
    assert!(
        after["frames"].as_u64().unwrap() > during["frames"].as_u64().unwrap(),
        "frames stopped"
    );
    drop(slow);
}

#[test]
fn snapshot_command_writes_one_annotated_frame() {
    let dir = tempfile::tempdir().unwrap();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml");
    let out = dir.path().join("out.jpg");
    let run = util::edgewatch(&["snapshot", "--config", demo, "-o", out.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (w, h, _) = decode(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (256, 256));
    // Written through a temporary name and a rename: nothing else is left in the folder.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["out.jpg"]);

    let bad = dir.path().join("bad.jpg");
    let run = util::edgewatch(&[
        "snapshot",
        "--config",
        demo,
        "--camera",
        "nope",
        "-o",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("--camera: no camera is named `nope`"), "{err}");
    assert!(!bad.exists());
}
