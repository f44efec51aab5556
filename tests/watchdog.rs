//! The watchdog end to end, through the real binary on the demo site: an injected detector
//! stall or memory balloon forces the simulated lamps to all red and restarts the process,
//! which counts again; a restart storm stops at the budget; under a fake systemd notify
//! socket, READY=1 and WATCHDOG=1 arrive and stop when the process turns unhealthy.

mod util;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Pins of the demo site's lamps.
const TRAFFIC_RED: u32 = 17;
const TRAFFIC_AMBER: u32 = 27;
const TRAFFIC_GREEN: u32 = 22;
const DONT_WALK: u32 = 5;
const WALK: u32 = 6;

/// The demo site with the simulated pins logging to `log`, the health endpoint (and so the
/// live view) off, and
/// `extra` TOML appended.
fn site(dir: &Path, log: &Path, extra: &str) -> PathBuf {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let text = demo
        .replace(
            "outputs = \"simulated\"",
            &format!("outputs = \"simulated\"\nsim_log = \"{}\"", log.display()),
        )
        // The view is served by the health endpoint, which these runs turn off.
        .replace("[view]\nenabled = true", "[view]\nenabled = false");
    let path = dir.join("site.toml");
    std::fs::write(&path, format!("{text}\n[health]\nenabled = false\n{extra}")).unwrap();
    path
}

fn edgewatch(config: &Path, frames: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgewatch"));
    cmd.args([
        "run",
        "--config",
        config.to_str().unwrap(),
        "--frames",
        &frames.to_string(),
    ])
    .env("EDGEWATCH_MODEL_DIR", util::model_dir())
    .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
    .env("RUST_LOG", "info")
    .env_remove("NOTIFY_SOCKET")
    .env_remove("EDGEWATCH_RESTARTS")
    .env_remove("EDGEWATCH_RESTART_REASON");
    cmd
}

/// The lamp levels at the end of each process's part of the simulated-pin log.
fn levels_per_process(log: &Path) -> Vec<std::collections::BTreeMap<u32, bool>> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut runs = Vec::new();
    for line in text.lines() {
        if line.starts_with("# start") {
            runs.push(std::collections::BTreeMap::new());
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let (pin, level) = (f[1].parse().unwrap(), f[2] == "1");
        runs.last_mut()
            .expect("a start line first")
            .insert(pin, level);
    }
    runs
}

fn assert_all_red(levels: &std::collections::BTreeMap<u32, bool>, what: &str) {
    let on = |pin| levels.get(&pin).copied().unwrap_or(false);
    assert!(
        on(TRAFFIC_RED) && on(DONT_WALK),
        "{what}: red and don't walk must be lit: {levels:?}"
    );
    assert!(
        !on(TRAFFIC_AMBER) && !on(TRAFFIC_GREEN) && !on(WALK),
        "{what}: nothing else lit: {levels:?}"
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn detector_stall_forces_all_red_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pins.log");
    // Stall once the highway is green (after the 2 s start-up all-red).
    let extra = "[watchdog]\nperiod_ms = 50\ninference_limit_ms = 1000\n\
                 [testing]\nstall_after_frames = 20\nstall_ms = 60000\n";
    let config = site(dir.path(), &log, extra);
    let out = edgewatch(&config, 30).output().unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "the restarted process finishes its frames: {err}"
    );
    // The watchdog fired within one period plus the limit, with slack for scheduling on a
    // loaded 2-core machine running the other tests' processes.
    let stuck_ms: u64 = err
        .split("watchdog: inference stuck for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no watchdog breach logged: {err}"));
    assert!(
        (1000..1050 + 250).contains(&stuck_ms),
        "fired after {stuck_ms} ms"
    );
    let runs = levels_per_process(&log);
    assert_eq!(runs.len(), 2, "one restart: {runs:?}");
    assert_all_red(&runs[0], "when the watchdog fired");
    assert!(
        err.contains("restart 1 after a watchdog breach: inference stuck"),
        "{err}"
    );
    // The new process counted again: its final summary shows its own 30 frames.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().last().unwrap().contains("final frames 30"),
        "{text}"
    );
    assert_all_red(&runs[1], "after the orderly stop");
}

#[test]
fn memory_balloon_forces_all_red_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pins.log");
    let extra = "[watchdog]\nrss_limit_mib = 64\n\
                 [testing]\nballoon_after_frames = 3\nballoon_mib = 256\n";
    let config = site(dir.path(), &log, extra);
    let out = edgewatch(&config, 20).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("MiB over the limit; signals forced to all red"),
        "{err}"
    );
    let runs = levels_per_process(&log);
    assert_eq!(runs.len(), 2, "one restart: {runs:?}");
    assert_all_red(&runs[0], "when the watchdog fired");
}

#[test]
fn failing_detector_forces_all_red_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pins.log");
    // From frame 20 every invoke fails; 4 in a row mark the detector failed.
    let extra = "[watchdog]\nperiod_ms = 50\n[testing]\nfail_invoke_after_frames = 20\n";
    let config = site(dir.path(), &log, extra);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "score_threshold = 0.2",
        "score_threshold = 0.2\nmax_failures = 4",
    );
    std::fs::write(&config, text).unwrap();
    let out = edgewatch(&config, 30).output().unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "the restarted process finishes its frames: {err}"
    );
    assert!(
        err.contains("detector failed: 4 frames in a row could not run"),
        "{err}"
    );
    assert!(
        err.contains("watchdog: detector failed: 4 frames in a row failed to invoke"),
        "{err}"
    );
    let runs = levels_per_process(&log);
    assert_eq!(runs.len(), 2, "one restart: {runs:?}");
    assert_all_red(&runs[0], "when the watchdog fired");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().last().unwrap().contains("final frames 30"),
        "{text}"
    );
}

#[test]
fn restart_storm_stops_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pins.log");
    let extra = "[watchdog]\nperiod_ms = 50\ninference_limit_ms = 500\nrestart_budget = 2\n\
                 [testing]\nstall_after_frames = 2\nstall_ms = 60000\nfaults_on_restart = true\n";
    let config = site(dir.path(), &log, extra);
    let out = edgewatch(&config, 100).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "budget spent: {err}");
    assert!(err.contains("restart budget spent: 2 restarts"), "{err}");
    let runs = levels_per_process(&log);
    assert_eq!(
        runs.len(),
        3,
        "the first process and two restarts: {runs:?}"
    );
    for (i, run) in runs.iter().enumerate() {
        assert_all_red(run, &format!("process {i} at its end"));
    }
}

#[test]
fn systemd_gets_ready_and_pings_until_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pins.log");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra = "[watchdog]\nperiod_ms = 50\ninference_limit_ms = 1000\n\
                 [testing]\nstall_after_frames = 60\nstall_ms = 60000\n";
    let config = site(dir.path(), &log, extra);
    let mut child = edgewatch(&config, 1000)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = socket.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = m == "WATCHDOG=trigger";
        messages.push(m);
        if done {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("WATCHDOG=trigger"),
        "{messages:?}"
    );
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
    // 60 frames: ~2 s of health on LiteRT (~30 fps), ~10 s on TFLite 1.15 (~6 fps), pinged
    // every 200 ms.
    assert!(pings >= 5, "periodic pings while healthy: {messages:?}");
    // Under systemd the restart is systemd's: the process aborts instead of re-executing.
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let runs = levels_per_process(&log);
    assert_eq!(runs.len(), 1);
    assert_all_red(&runs[0], "when the watchdog fired");
}
