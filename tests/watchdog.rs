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
/// The heartbeat output the tests add.
const HEARTBEAT: u32 = 4;

/// The demo site with the simulated pins logging to `log`, the health endpoint (and so the
/// live view) off, and
/// `extra` TOML appended.
fn site(dir: &Path, log: &Path, extra: &str) -> PathBuf {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let text = demo
        .replace(
            "outputs = \"simulated\"",
            &format!(
                "outputs = \"simulated\"\nsim_log = \"{}\"\nheartbeat = {{ pin = {HEARTBEAT} }}",
                log.display()
            ),
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

/// Each process's part of the simulated-pin log: (ms, pin, level) in order.
fn transitions_per_process(log: &Path) -> Vec<Vec<(u64, u32, bool)>> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut runs = Vec::new();
    for line in text.lines() {
        if line.starts_with("# start") {
            runs.push(Vec::new());
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let t = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2] == "1");
        runs.last_mut().expect("a start line first").push(t);
    }
    runs
}

/// When `pin` was last switched to `level` in `run`.
fn last_switch(run: &[(u64, u32, bool)], pin: u32, level: bool) -> Option<u64> {
    run.iter()
        .rev()
        .find(|&&(_, p, l)| p == pin && l == level)
        .map(|&(t, _, _)| t)
}

/// The end of a process that had the traffic head green: green off as amber came on, the
/// amber lit for its full 3 s, then red.
fn assert_cleared_through_amber(run: &[(u64, u32, bool)]) {
    let green_off = last_switch(run, TRAFFIC_GREEN, false).expect("green went off");
    let amber_on = last_switch(run, TRAFFIC_AMBER, true).expect("amber shown: {run:?}");
    let amber_off = last_switch(run, TRAFFIC_AMBER, false).expect("amber ended");
    let red_on = last_switch(run, TRAFFIC_RED, true).expect("red shown");
    // One pin write: the two lamps change within a millisecond of each other.
    assert!(
        green_off.abs_diff(amber_on) <= 2,
        "green straight to amber: {run:?}"
    );
    assert!(
        amber_off >= amber_on + 3000,
        "amber {} ms, needs 3000: {run:?}",
        amber_off - amber_on
    );
    // One pin write again, which may straddle a millisecond on a loaded machine.
    assert!(red_on.abs_diff(amber_off) <= 2, "amber to red: {run:?}");
    // The heartbeat pulsed while healthy and through the clearance, and rests off once its
    // 1.5 s all-red is over and the heads are left at red (the cabinet flasher's turn).
    let beats: Vec<_> = run.iter().filter(|&&(_, p, _)| p == HEARTBEAT).collect();
    assert!(beats.len() > 20, "heartbeat pulses: {beats:?}");
    let &&(last_t, _, last_level) = beats.last().unwrap();
    assert!(!last_level, "the heartbeat rests off: {beats:?}");
    // Slack for ticks that run late on a loaded machine.
    assert!(
        last_t <= red_on + 1500 + 1000,
        "no pulse after the clearance (red at {red_on}): {:?}",
        &beats[beats.len().saturating_sub(30)..]
    );
    assert!(
        beats.iter().any(|&&(t, _, _)| t > red_on + 500),
        "pulses through the all-red: {beats:?}"
    );
    assert!(
        run.iter().all(|&(t, p, l)| t <= red_on
            || !l
            || [TRAFFIC_RED, DONT_WALK, HEARTBEAT].contains(&p)),
        "nothing lit after the all-red but red and don't walk: {run:?}"
    );
}

/// The start of a process: the traffic red flashing at 1 Hz (walk and don't walk dark) for
/// the demo's 2 s start-up flash, then steady red with don't walk for its 2 s all-red, then
/// the first green.
fn assert_comes_up_through_flash(run: &[(u64, u32, bool)]) {
    let green_on = run
        .iter()
        .find(|&&(_, p, l)| p == TRAFFIC_GREEN && l)
        .map(|&(t, _, _)| t)
        .unwrap_or_else(|| panic!("no green after the restart: {run:?}"));
    let before: Vec<_> = run.iter().filter(|&&(t, _, _)| t < green_on).collect();
    let red_offs: Vec<u64> = before
        .iter()
        .filter(|&&&(_, p, l)| p == TRAFFIC_RED && !l)
        .map(|&&(t, _, _)| t)
        .collect();
    assert!(red_offs.len() >= 2, "the red flashed: {run:?}");
    let dont_walk_on = before
        .iter()
        .find(|&&&(_, p, l)| p == DONT_WALK && l)
        .map(|&&(t, _, _)| t)
        .unwrap_or_else(|| panic!("don't walk lit for the all-red: {run:?}"));
    let start = run[0].0;
    assert!(dont_walk_on >= start + 1900, "flash for 2 s first: {run:?}");
    assert!(
        red_offs.iter().all(|&t| t < dont_walk_on),
        "steady red once the all-red starts: {run:?}"
    );
    assert!(
        green_on >= dont_walk_on + 2000,
        "2 s all red before the first green: {run:?}"
    );
    assert!(
        !before
            .iter()
            .any(|&&(_, p, l)| l && (p == TRAFFIC_AMBER || p == WALK)),
        "no right of way before the first green: {run:?}"
    );
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
    // Stall once the highway is green (after the 2 s start-up flash and 2 s all-red, at
    // 10 fps); the restarted process runs long enough to come up to green again.
    let extra = "[watchdog]\nperiod_ms = 50\ninference_limit_ms = 1000\n\
                 [testing]\nstall_after_frames = 50\nstall_ms = 60000\n";
    let config = site(dir.path(), &log, extra);
    let out = edgewatch(&config, 70).output().unwrap();
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
    // The control loop still ticked, so the highway green was cleared in order, not cut.
    assert!(
        err.contains("clearing the signals (amber, all red) first"),
        "{err}"
    );
    assert!(
        err.contains("signals cleared to all red, restarting"),
        "{err}"
    );
    let transitions = transitions_per_process(&log);
    assert_comes_up_through_flash(&transitions[0]);
    assert_cleared_through_amber(&transitions[0]);
    assert_comes_up_through_flash(&transitions[1]);
    assert!(
        err.contains("restart 1 after a watchdog breach: inference stuck"),
        "{err}"
    );
    // The new process counted again: its final summary shows its own 30 frames.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().last().unwrap().contains("final frames 70"),
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
        err.contains("MiB over the limit; signals cleared to all red"),
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
