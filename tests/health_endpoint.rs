//! The health endpoint of the real binary on the demo site: correct answers, and 200
//! concurrent connections neither stop the frame loop nor grow its memory past a bound.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::Duration;

struct Unit {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo with the health endpoint on a free loopback port and returns its address,
/// read from the log line that announces it.
fn start() -> Unit {
    let dir = tempfile::tempdir().unwrap();
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        format!("{demo}\n[health]\nbind = \"127.0.0.1:0\"\nmax_connections = 4\n"),
    )
    .unwrap();
    let (child, addr) = util::spawn_unit(&path, |_| {});
    Unit { child, addr }
}

/// One request; returns the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// /health as JSON, retried while the server refuses with 503 (all workers busy).
fn health(addr: SocketAddr) -> serde_json::Value {
    for _ in 0..100 {
        match get(addr, "/health") {
            (200, body) => return serde_json::from_str(&body).unwrap(),
            (503, _) => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    panic!("/health never answered");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn health_metrics_and_404() {
    let unit = start();
    let h = health(unit.addr);
    assert!(
        ["ok", "degraded"].contains(&h["status"].as_str().unwrap()),
        "{h}"
    );
    assert!(h["uptime_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(h["restarts"], 0);
    assert!(h["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(h["latency_ms"]["invoke"]["p99"].is_number());
    assert!(h["zones"]["road"]["car"].is_number());
    for key in ["visits", "mean_s", "max_s", "current_max_s"] {
        assert!(h["dwell"]["road"][key].is_number(), "dwell.road.{key}: {h}");
    }
    assert!(h["signals"]["groups"]["traffic"].is_string());
    assert!(h["signals"]["fault"].is_null(), "no latched fault: {h}");
    assert_eq!(
        h["signals"]["no_activity"],
        serde_json::json!({"vehicle": [], "pedestrian": []}),
        "the diagnostic is off in the demo: {h}"
    );
    assert!(h["camera"]["state"].is_string());
    let (code, metrics) = get(unit.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE edgewatch_frames_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgewatch_signal_state{group=\"traffic\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgewatch_zone_visits_total{zone=\"road\"}"),
        "{metrics}"
    );
    assert_eq!(get(unit.addr, "/nope").0, 404);
}

#[test]
fn two_hundred_connections_do_not_stop_the_frames_or_grow_memory() {
    let unit = start();
    let pid = unit.child.id();
    // Baseline once the pipeline is warm (the first invocations size TFLite's buffers).
    let mut before = health(unit.addr);
    while before["frames"].as_u64().unwrap() < 5 {
        std::thread::sleep(Duration::from_millis(200));
        before = health(unit.addr);
    }
    let frames_before = before["frames"].as_u64().unwrap();
    let rss_before = rss_kib(pid);
    let mut peak = rss_before;
    for round in 0..2 {
        // 200 clients at once: half idle, half sending a request slowly and never finishing.
        let mut conns = Vec::new();
        for i in 0..200 {
            if let Ok(mut s) = TcpStream::connect(unit.addr) {
                if i % 2 == 0 {
                    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost");
                }
                conns.push(s);
            }
        }
        std::thread::sleep(Duration::from_secs(3));
        peak = peak.max(rss_kib(pid));
        drop(conns);
        eprintln!("round {round}: rss {} KiB", rss_kib(pid));
    }
    let after = health(unit.addr);
    let frames_after = after["frames"].as_u64().unwrap();
    let rss_after = rss_kib(pid);
    eprintln!("frames {frames_before} -> {frames_after}; rss {rss_before} -> {rss_after} KiB, peak {peak} KiB");
    // Six seconds of held connections: the frame loop kept going at a few frames a second.
    assert!(
        frames_after >= frames_before + 10,
        "frames {frames_before} -> {frames_after}"
    );
    assert!(
        peak < rss_before + 4096,
        "RSS grew from {rss_before} to {peak} KiB"
    );
}
