//! Time-of-day plans in the real binary: the same site, two fixed time zones (`TZ` set on the
//! child process only), two plans whose windows are chosen from the current UTC time so that
//! each zone's local time falls hours inside a different plan. `/health` names the plan in
//! force. And while the clock counts as unsynchronised (`testing.clock_synced = false`) no
//! plan applies and `/health` says why.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::Duration;

struct Unit {
    child: Child,
    addr: SocketAddr,
    /// The control loop's log line on the wall clock's synchronisation (its first tick).
    clock_line: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HH:MM` of `secs` after midnight (mod one day).
fn hhmm(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// The demo site with two plans: "utc-window" from 3 h before the current UTC time of day to
/// 9 h after it, "plus12-window" for the other 12 h (so UTC+12 is 3 h into it). Both margins
/// are hours wide: the test is over long before either boundary.
fn site(extra_control: &str, extra: &str) -> String {
    let now = edgewatch::utc::unix_now().as_secs() % 86_400;
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    assert!(
        demo.contains("\n[control]\n"),
        "the demo has a [control] table"
    );
    let demo = demo.replace(
        "\n[control]\n",
        &format!("\n[control]\nsocket = \"\"\n{extra_control}\n"),
    );
    format!(
        "{demo}\n[health]\nbind = \"127.0.0.1:0\"\n\
         [[signals.plans]]\nname = \"utc-window\"\nstart = \"{}\"\nmode = \"fixed-time\"\n\
         [[signals.plans]]\nname = \"plus12-window\"\nstart = \"{}\"\nmode = \"actuated\"\n\
         {extra}",
        hhmm(now + 86_400 - 3 * 3600),
        hhmm(now + 9 * 3600),
    )
}

fn start(text: &str, tz: &str) -> Unit {
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace(
        "FAULT_FILE",
        &dir.path().join("fault").display().to_string(),
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    let (tx, clock_line) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let (child, addr) = util::spawn_unit_with_env(&path, &[("TZ", tz)], move |line| {
        if line.contains("signals: the wall clock") {
            let _ = tx.lock().unwrap().send(line.to_string());
        }
    });
    Unit {
        child,
        addr,
        clock_line,
        _dir: dir,
    }
}

/// The control loop's clock log line, and /health's `signals` object a moment after it (the
/// first tick reads the clock, then publishes).
fn signals(unit: &Unit) -> (String, serde_json::Value) {
    let line = unit
        .clock_line
        .recv_timeout(Duration::from_secs(60))
        .expect("the control loop logs the clock's synchronisation");
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..100 {
        let mut s = TcpStream::connect(unit.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        if text.starts_with("HTTP/1.1 200") {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            let h: serde_json::Value = serde_json::from_str(body).unwrap();
            return (line, h["signals"].clone());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("/health never answered");
}

/// The container's clock (or a CI runner's) may itself report unsynchronised: this site opts
/// out of the synchronisation check (`require_clock_sync = false`), so the plans follow the
/// clock whatever the kernel says.
#[test]
fn each_time_zone_runs_its_own_plan() {
    let text = site(
        "require_clock_sync = false\nfault_file = \"FAULT_FILE\"",
        "",
    );
    for (tz, want) in [("UTC0", "utc-window"), ("<+12>-12", "plus12-window")] {
        let unit = start(&text, tz);
        let s = signals(&unit).1;
        assert_eq!(s["plan"], want, "TZ={tz}: {s}");
        assert!(s["clock_synced"].is_boolean(), "TZ={tz}: {s}");
        // The plan's mode, unless detection is degraded (fixed-time then, whatever the plan).
        let mode = if want == "utc-window" || s["degraded"] == true {
            "fixed-time"
        } else {
            "actuated"
        };
        assert_eq!(s["mode"], mode, "TZ={tz}: {s}");
    }
}

/// With the clock taken as unsynchronised (and the check on, the default), the same site in
/// either zone runs no plan: `signals.mode` (actuated in the demo) applies.
#[test]
fn an_unsynchronised_clock_runs_no_plan() {
    let text = site(
        "fault_file = \"FAULT_FILE\"",
        "[testing]\nclock_synced = false\n",
    );
    let unit = start(&text, "UTC0");
    let (line, s) = signals(&unit);
    assert!(line.contains("not synchronised"), "{line}");
    assert!(line.contains("time-of-day plans wait"), "{line}");
    assert_eq!(s["clock_synced"], false, "{s}");
    assert!(s["plan"].is_null(), "no plan while unsynchronised: {s}");
    if s["degraded"] == false {
        assert_eq!(s["mode"], "actuated", "{s}");
    }
}
