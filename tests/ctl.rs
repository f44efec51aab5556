//! `edgewatch ctl` end to end, through the real binary on the demo site with simulated pins:
//! maintenance flash on and off (through clearance, in the pin log), reset-fault of a latched
//! fault (and its refusal while the monitor still sees the fault), reload (a broken file is
//! refused, a valid one restarts the process in order), bad requests, the socket's mode and
//! peer check, and an HTTP endpoint that changes nothing whatever it is sent.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Pins of the demo site's lamps.
const TRAFFIC_RED: u32 = 17;
const TRAFFIC_AMBER: u32 = 27;
const TRAFFIC_GREEN: u32 = 22;
const WALK: u32 = 6;

/// One running unit in its own temporary folder.
struct Unit {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo site with the pins logged, the socket, the fault file and the health endpoint
/// (on a free port) in `dir`, and `extra` TOML appended.
fn site_text(dir: &Path, extra: &str) -> String {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let text = demo
        .replace(
            "outputs = \"simulated\"",
            &format!(
                "outputs = \"simulated\"\nsim_log = \"{}\"\nsocket = \"{}\"\nfault_file = \"{}\"",
                dir.join("pins.log").display(),
                dir.join("ctl.sock").display(),
                dir.join("fault").display(),
            ),
        )
        .replace("[view]\nenabled = true", "[view]\nenabled = false");
    format!("{text}\n[health]\nbind = \"127.0.0.1:0\"\n{extra}")
}

/// Starts the demo (no frame limit) and waits until its control socket answers.
fn start(extra: &str, before: impl FnOnce(&Path)) -> Unit {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    std::fs::write(&config, site_text(dir.path(), extra)).unwrap();
    before(dir.path());
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("EDGEWATCH_RESTARTS")
        .env_remove("EDGEWATCH_RESTART_REASON")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let unit = Unit {
        child,
        socket: dir.path().join("ctl.sock"),
        log: dir.path().join("pins.log"),
        config,
        dir,
    };
    unit.wait_for_socket(1);
    unit
}

impl Unit {
    /// `edgewatch ctl --socket SOCKET WORDS...`.
    fn ctl(&self, words: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgewatch"));
        cmd.arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(words)
            .env("RUST_LOG", "warn");
        cmd.output().unwrap()
    }

    /// `ctl` that must succeed; its answer.
    fn ok(&self, words: &[&str]) -> String {
        let out = self.ctl(words);
        assert!(
            out.status.success(),
            "ctl {words:?}: {}\n{}",
            stderr(&out),
            self.stderr_tail()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until the socket answers `status` in the `n`th process (counted by the pin
    /// log's start lines).
    fn wait_for_socket(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let started = std::fs::read_to_string(&self.log).map_or(0, |t| {
                t.lines().filter(|l| l.starts_with("# start")).count()
            });
            if started >= n && self.ctl(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no control socket: {}", self.stderr_tail());
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("signal ")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The health endpoint's address, from its log line.
    fn health_addr(&self) -> SocketAddr {
        let text = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap();
        let addr = text
            .lines()
            .find_map(|l| l.split("health endpoint on http://").nth(1))
            .expect("the endpoint is announced");
        addr.trim_end_matches("/health").parse().unwrap()
    }

    /// Every transition of the current process so far: (ms, pin, level).
    fn transitions(&self) -> Vec<(u64, u32, bool)> {
        transitions_per_process(&self.log).pop().unwrap_or_default()
    }

    /// Waits up to `secs` seconds for `pred` on the current process's transitions.
    fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[(u64, u32, bool)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if pred(&self.transitions()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}: {:?}", self.transitions());
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each process's part of the simulated-pin log: (ms, pin, level) in order.
fn transitions_per_process(log: &Path) -> Vec<Vec<(u64, u32, bool)>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs = Vec::new();
    for line in text.lines() {
        if line.starts_with("# start") {
            runs.push(Vec::new());
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(t), Some(p), Some(l)) = (f.first(), f.get(1), f.get(2)) else {
            continue; // a line being written
        };
        if let (Ok(t), Ok(p)) = (t.parse(), p.parse()) {
            if let Some(run) = runs.last_mut() {
                run.push((t, p, *l == "1"));
            }
        }
    }
    runs
}

/// The level `pin` was last set to in `run` (off if never).
fn level(run: &[(u64, u32, bool)], pin: u32) -> bool {
    run.iter()
        .rev()
        .find(|&&(_, p, _)| p == pin)
        .is_some_and(|&(_, _, l)| l)
}

/// One raw request line (or bytes) to the socket; the answer.
fn raw(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// One HTTP request; the status code.
fn http(addr: SocketAddr, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\non"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get_body(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

#[test]
fn maintenance_flash_goes_on_through_clearance_and_off_again() {
    let unit = start("", |_| {});
    // Wait for the traffic head's green, then ask for flash.
    unit.wait_for(60, "a first green", |run| level(run, TRAFFIC_GREEN));
    // The mark from a log that ends with the green lit: its end comes after the mark.
    let mark = loop {
        let run = unit.transitions();
        if level(&run, TRAFFIC_GREEN) {
            break run.len();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let answer = unit.ok(&["flash", "on"]);
    assert!(answer.starts_with("maintenance flash on"), "{answer}");
    // The red flashes at 1 Hz (off at least three times) once the phase has cleared.
    unit.wait_for(20, "red flashing", |run| {
        run[mark..]
            .iter()
            .filter(|&&(_, p, l)| p == TRAFFIC_RED && !l)
            .count()
            >= 3
    });
    let status = unit.ok(&["status"]);
    assert!(
        status.contains("traffic=red-flash") && status.contains("maintenance=on"),
        "{status}"
    );
    let run = unit.transitions();
    let after = &run[mark..];
    // Proper clearance: green straight to amber, amber for its full 3 s, then red.
    let green_off = after
        .iter()
        .find(|&&(_, p, l)| p == TRAFFIC_GREEN && !l)
        .map(|&(t, _, _)| t)
        .expect("the green ended");
    {
        let amber_on = after
            .iter()
            .find(|&&(_, p, l)| p == TRAFFIC_AMBER && l)
            .map(|&(t, _, _)| t)
            .expect("amber after green");
        let amber_off = after
            .iter()
            .find(|&&(t, p, l)| p == TRAFFIC_AMBER && !l && t >= amber_on)
            .map(|&(t, _, _)| t)
            .expect("amber ends");
        // One pin write: the two lamps change within a millisecond of each other.
        assert!(
            green_off.abs_diff(amber_on) <= 2,
            "green straight to amber: {after:?}"
        );
        assert!(amber_off >= amber_on + 3000, "3 s amber: {after:?}");
        let first_red_off = after
            .iter()
            .find(|&&(_, p, l)| p == TRAFFIC_RED && !l)
            .map(|&(t, _, _)| t)
            .unwrap();
        assert!(
            first_red_off >= amber_off + 1000,
            "flash only after the all-red: {after:?}"
        );
    }
    assert!(
        !after
            .iter()
            .any(|&(_, p, l)| l && (p == TRAFFIC_GREEN || p == WALK)),
        "no right of way in flash: {after:?}"
    );

    // Off: the flash ends and the heads come back to service with a green.
    let mark = unit.transitions().len();
    let answer = unit.ok(&["flash", "off"]);
    assert!(answer.starts_with("maintenance flash off"), "{answer}");
    unit.wait_for(30, "green after flash off", |run| {
        run[mark..].iter().any(|&(_, p, l)| p == TRAFFIC_GREEN && l)
    });
    let run = unit.transitions();
    let after = &run[mark..];
    let green_on = after
        .iter()
        .find(|&&(_, p, l)| p == TRAFFIC_GREEN && l)
        .map(|&(t, _, _)| t)
        .unwrap();
    let last_red_on = after
        .iter()
        .rev()
        .filter(|&&(t, p, l)| p == TRAFFIC_RED && l && t < green_on)
        .map(|&(t, _, _)| t)
        .next()
        .expect("red steady before the green");
    assert!(
        green_on >= last_red_on + 1000,
        "steady red (all-red) before the green: {after:?}"
    );
    assert!(unit.ok(&["status"]).contains("maintenance=off"));
    // Who asked is in the journal.
    let log = std::fs::read_to_string(unit.dir.path().join("stderr.log")).unwrap();
    assert!(
        log.contains("ctl: `flash on` from uid ") && log.contains("ctl: `flash off` from uid "),
        "{log}"
    );
}

#[test]
fn reset_fault_clears_a_latched_fault_in_the_running_unit() {
    let unit = start("", |dir| {
        std::fs::write(dir.join("fault"), "conflicting greens: a test\n").unwrap();
    });
    let status = unit.ok(&["status"]);
    assert!(
        status.contains("fault-flash=yes")
            && status.contains("fault=fault latched before the restart: conflicting greens"),
        "{status}"
    );
    // Held in flash: no green for a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!unit
        .transitions()
        .iter()
        .any(|&(_, p, l)| p == TRAFFIC_GREEN && l));

    let answer = unit.ok(&["reset-fault"]);
    assert!(
        answer.starts_with("fault cleared (was:") && answer.contains("conflicting greens: a test"),
        "{answer}"
    );
    assert!(!unit.dir.path().join("fault").exists(), "the file is gone");
    let status = unit.ok(&["status"]);
    assert!(
        status.contains("fault-flash=no") && status.contains("fault=none"),
        "{status}"
    );
    unit.wait_for(30, "back in service", |run| {
        run.iter().any(|&(_, p, l)| p == TRAFFIC_GREEN && l)
    });
    assert_eq!(unit.ok(&["reset-fault"]).trim(), "no fault latched");
}

/// A fault file the running unit does not hold (written after start) is only removed: the
/// heads in service are not cut to the start-up flash.
#[test]
fn reset_fault_of_a_file_the_unit_does_not_hold_leaves_the_signals_running() {
    let unit = start("", |_| {});
    unit.wait_for(30, "in service", |run| {
        run.iter().any(|&(_, p, l)| p == TRAFFIC_GREEN && l)
    });
    let fault = unit.dir.path().join("fault");
    std::fs::write(&fault, "conflicting greens: written by hand\n").unwrap();
    let before = unit.transitions().len();
    let answer = unit.ok(&["reset-fault"]);
    assert!(
        answer.starts_with("fault file cleared (was: conflicting greens: written by hand)")
            && answer.contains("not touched"),
        "{answer}"
    );
    assert!(!fault.exists(), "the file is gone");
    assert!(unit.ok(&["status"]).contains("fault-flash=no"));
    // No start-up flash: no red comes on and goes off again within a second, twice.
    std::thread::sleep(Duration::from_secs(3));
    let after = unit.transitions();
    let red_on = after[before..]
        .iter()
        .filter(|&&(_, p, l)| p == TRAFFIC_RED && l)
        .count();
    assert!(
        red_on <= 1,
        "no flashing red after the reset: {:?}",
        &after[before..]
    );
}

#[test]
fn reset_fault_is_refused_while_the_monitor_still_sees_the_fault() {
    // A broken load switch on the traffic green: every write to pin 22 fails.
    let unit = start(&format!("[testing]\nfail_pin = {TRAFFIC_GREEN}\n"), |_| {});
    let status = unit.ok(&["status"]);
    assert!(status.contains("fault-flash=yes"), "{status}");
    let out = unit.ctl(&["reset-fault"]);
    assert_eq!(out.status.code(), Some(1), "refused: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused: the monitor still sees a fault: output pin 22 could not be written"),
        "{err}"
    );
    let kept = std::fs::read_to_string(unit.dir.path().join("fault")).unwrap();
    assert_eq!(kept.trim(), "output pin 22 could not be written");
    assert!(unit.ok(&["status"]).contains("fault-flash=yes"));
}

#[test]
fn reload_refuses_a_broken_file_and_restarts_in_order_with_a_valid_one() {
    let mut unit = start("", |_| {});
    let good = std::fs::read_to_string(&unit.config).unwrap();
    // A typo'd value: refused with the key named, and the unit runs on.
    std::fs::write(
        &unit.config,
        good.replace("tick_ms = 100", "tick_ms = 1000"),
    )
    .unwrap();
    let out = unit.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("reload refused, the running config stays: control.tick_ms"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(unit.child.try_wait().unwrap().is_none(), "still running");
    assert!(unit.ok(&["status"]).contains("traffic="));

    // A valid edit: the unit clears its signals to all red and starts again with it.
    std::fs::write(
        &unit.config,
        good.replace("camera_stale_ms = 3000", "camera_stale_ms = 4000"),
    )
    .unwrap();
    let answer = unit.ok(&["reload"]);
    assert!(
        answer.contains("is valid; restarting to apply it"),
        "{answer}"
    );
    unit.wait_for_socket(2);
    assert!(
        unit.child.try_wait().unwrap().is_none(),
        "the same process, re-executed"
    );
    let runs = transitions_per_process(&unit.log);
    assert_eq!(runs.len(), 2, "two processes in the pin log");
    let first = &runs[0];
    assert!(
        level(first, TRAFFIC_RED) && !level(first, TRAFFIC_GREEN) && !level(first, WALK),
        "the first process left all red: {first:?}"
    );
    let log = std::fs::read_to_string(unit.dir.path().join("stderr.log")).unwrap();
    assert!(log.contains("signals: clearing to all red"), "{log}");
}

#[test]
fn bad_requests_get_errors_and_nothing_over_http_changes_a_signal() {
    let unit = start("", |_| {});
    // The socket file: a socket, mode 0660; the health endpoint on loopback by default.
    let meta = std::fs::symlink_metadata(&unit.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert!(edgewatch::config::HealthConfig::default()
        .bind
        .starts_with("127.0.0.1:"));

    // Oversized, not text, unknown, silent: each one answered with an error.
    let long = raw(&unit.socket, &[b'a'; 1000]);
    assert_eq!(long, "error: request longer than 128 bytes\n");
    assert_eq!(
        raw(&unit.socket, b"\xff\xfe\n"),
        "error: request is not text\n"
    );
    assert!(raw(&unit.socket, b"flash sideways\n").starts_with("error: `flash` takes"));
    let started = Instant::now();
    let silent = raw(&unit.socket, b"");
    assert!(
        silent.starts_with("error: no request line within"),
        "{silent}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // ... and the server goes on serving.
    assert!(unit.ok(&["status"]).contains("maintenance=off"));

    // Every method but GET and HEAD, and any other path, is refused and changes nothing.
    let addr = unit.health_addr();
    for path in ["/health", "/metrics", "/"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            assert_eq!(http(addr, method, path), 405, "{method} {path}");
        }
    }
    for path in [
        "/flash",
        "/flash?on=1",
        "/reset-fault",
        "/reload",
        "/ctl",
        "/maintenance",
    ] {
        assert_eq!(http(addr, "GET", path), 404, "GET {path}");
        for method in ["POST", "PUT", "DELETE"] {
            let code = http(addr, method, path);
            assert!(code == 404 || code == 405, "{method} {path}: {code}");
        }
    }
    let status = unit.ok(&["status"]);
    assert!(
        status.contains("maintenance=off") && status.contains("fault=none"),
        "{status}"
    );
    let log = std::fs::read_to_string(unit.dir.path().join("stderr.log")).unwrap();
    assert!(!log.contains("ctl: `"), "no command was carried out: {log}");
    let health: serde_json::Value = serde_json::from_str(&get_body(addr, "/health")).unwrap();
    assert_eq!(health["ctl"]["malformed"], 4, "{}", health["ctl"]);
    assert!(health["ctl"]["requests"].as_u64().unwrap() >= 2);
    let metrics = get_body(addr, "/metrics");
    assert!(
        metrics.contains("edgewatch_ctl_malformed_total 4"),
        "{metrics}"
    );

    // Another user: kept out by the file's mode; with the mode opened up by mistake, by the
    // peer check. Members of the socket's group get in.
    assert!(is_root(), "switching users needs root (CI runs as root)");
    {
        std::fs::set_permissions(unit.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let as_user = |uid: u32, gid: u32| {
            Command::new(env!("CARGO_BIN_EXE_edgewatch"))
                .args(["ctl", "--socket", unit.socket.to_str().unwrap(), "status"])
                .uid(uid)
                .gid(gid)
                .output()
                .unwrap()
        };
        let out = as_user(65534, 65534);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("permission denied on"),
            "{}",
            stderr(&out)
        );
        let out = as_user(65534, 0);
        assert!(out.status.success(), "group member: {}", stderr(&out));
        std::fs::set_permissions(&unit.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = as_user(65534, 65534);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("refused: permission denied: uid 65534 is not root"),
            "{}",
            stderr(&out)
        );
        let health: serde_json::Value = serde_json::from_str(&get_body(addr, "/health")).unwrap();
        assert_eq!(health["ctl"]["refused"], 1);
    }
}

/// True when the tests run as root, read from `/proc/self/status` (no libc call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find_map(|l| l.strip_prefix("Uid:"))?.to_string();
            Some(uids.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}

#[test]
fn ctl_says_when_there_is_no_socket_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = util::edgewatch(&[
        "ctl",
        "--socket",
        dir.path().join("none.sock").to_str().unwrap(),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no control socket at") && stderr(&out).contains("none.sock"),
        "{}",
        stderr(&out)
    );
    // A config that does not say where: the default path.
    let config = dir.path().join("site.toml");
    std::fs::write(&config, "site = \"x\"\n").unwrap();
    let out = util::edgewatch(&["ctl", "--config", config.to_str().unwrap(), "flash"]);
    assert_eq!(out.status.code(), Some(2), "bad command refused locally");
    assert!(stderr(&out).contains("`flash` takes `on` or `off`"));

    // A stale socket file left by a killed process is replaced; SIGTERM removes the file.
    let mut unit = start("", |dir| {
        let stale = std::os::unix::net::UnixListener::bind(dir.join("ctl.sock")).unwrap();
        drop(stale);
    });
    let pid = unit.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let _ = unit.child.wait();
    assert!(!unit.socket.exists(), "the socket is removed on exit");
}
