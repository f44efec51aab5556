//! Detector mode end to end, through the real binary on `board/detector-card.toml` with
//! simulated relays logging every level: calls follow the zones with their delay, a stalled
//! camera puts every output on a constant call within `control.camera_stale_ms`, and the
//! process leaves every relay de-energised (the documented fail-safe: a call) when it stops.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const THROUGH: u32 = 17;
const COUNT: u32 = 27;
const BUS: u32 = 22;
/// Active-low: high means de-energised, a call.
const PED: u32 = 5;

/// Runs the card for `frames` frames with `extra` TOML appended; returns the log's
/// `(ms, pin, high)` entries.
fn run(dir: &Path, frames: u32, extra: &str) -> Vec<(u64, u32, bool)> {
    run_processes(dir, frames, extra).concat()
}

/// As [`run`], the log split at each process start (a watchdog restart starts another).
fn run_processes(dir: &Path, frames: u32, extra: &str) -> Vec<Vec<(u64, u32, bool)>> {
    run_card(dir, frames, extra, &[])
}

/// Runs the detector card with `edits` (from, to) made to its text and `extra` appended.
fn run_card(
    dir: &Path,
    frames: u32,
    extra: &str,
    edits: &[(&str, &str)],
) -> Vec<Vec<(u64, u32, bool)>> {
    let mut card = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/board/detector-card.toml"
    ))
    .unwrap();
    for (from, to) in edits {
        assert!(card.contains(from), "{from}");
        card = card.replace(from, to);
    }
    let log = dir.join("pins.log");
    let _ = std::fs::remove_file(&log);
    let text = card.replace(
        "outputs = \"simulated\"",
        &format!("outputs = \"simulated\"\nsim_log = \"{}\"", log.display()),
    );
    let site = dir.join("site.toml");
    std::fs::write(&site, format!("{text}\n[health]\nenabled = false\n{extra}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(["run", "--config", site.to_str().unwrap(), "--frames"])
        .arg(frames.to_string())
        .env("EDGEWATCH_MODEL_DIR", util::model_dir())
        .env("EDGEWATCH_FRAMES_DIR", util::frames_dir())
        .env_remove("EDGEWATCH_RESTARTS")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut runs: Vec<Vec<(u64, u32, bool)>> = Vec::new();
    for l in std::fs::read_to_string(&log).unwrap().lines() {
        if l.starts_with("# start") {
            runs.push(Vec::new());
            continue;
        }
        let f: Vec<&str> = l.split(' ').collect();
        let entry = (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2] == "1");
        runs.last_mut().expect("a start line first").push(entry);
    }
    runs
}

/// Whether `pin` calls at `level` (relay de-energised).
fn calls(pin: u32, high: bool) -> bool {
    if pin == PED {
        high
    } else {
        !high
    }
}

/// The calls of `pin` over time: `(ms, call)` at each change.
fn calls_of(log: &[(u64, u32, bool)], pin: u32) -> Vec<(u64, bool)> {
    log.iter()
        .filter(|e| e.1 == pin)
        .map(|&(t, p, high)| (t, calls(p, high)))
        .collect()
}

fn final_calls(log: &[(u64, u32, bool)]) -> BTreeMap<u32, bool> {
    log.iter()
        .map(|&(_, p, high)| (p, calls(p, high)))
        .collect()
}

#[test]
fn calls_follow_the_zones_with_their_delay_and_every_output_calls_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = run(dir.path(), 30, "");
    // Every relay is claimed de-energised (a call) and energised once the unit runs.
    for pin in [THROUGH, COUNT, BUS, PED] {
        let c = calls_of(&log, pin);
        assert!(c.len() >= 2, "pin {pin}: {c:?}");
        assert_eq!((c[0].1, c[1].1), (true, false), "pin {pin}: {c:?}");
    }
    // The through channel calls once cars have stood in the stop-bar zone for 0.5 s; the
    // count channel pulses first, when the first car arrives.
    let through = calls_of(&log, THROUGH);
    let count = calls_of(&log, COUNT);
    let arrival = count.iter().find(|c| c.1 && c.0 > count[1].0).unwrap().0;
    let call = through
        .iter()
        .find(|c| c.1 && c.0 > through[1].0)
        .unwrap()
        .0;
    assert!(
        call >= arrival + 500,
        "through called at {call} ms, {} ms after the first arrival",
        call - arrival
    );
    // No bus, no pedestrian in these frames: those two never call while the unit runs.
    assert_eq!(calls_of(&log, BUS).len(), 3, "{:?}", calls_of(&log, BUS));
    assert_eq!(calls_of(&log, PED).len(), 3, "{:?}", calls_of(&log, PED));
    // Stopped: every relay de-energised, every output calling.
    assert!(final_calls(&log).values().all(|&c| c), "{log:?}");
}

#[test]
fn a_stalled_camera_puts_every_output_on_call_within_the_stale_time() {
    let dir = tempfile::tempdir().unwrap();
    // Frames stop for 4 s after the 10th; the watchdog is told to wait longer than that.
    let extra = "[watchdog]\ninference_limit_ms = 30000\ncamera_limit_ms = 30000\n\
                 [testing]\nstall_after_frames = 10\nstall_ms = 4000\n";
    // The bus channel trusts returning video after 2 s; the run goes on long enough for it.
    let bus_recover = (
        "classes = [\"bus\"]",
        "classes = [\"bus\"]\nrecover_s = 2.0",
    );
    let log = run_card(dir.path(), 45, extra, &[bus_recover]).concat();
    // The bus channel calls only on a fault: it must call during the stall and drop the call
    // once frames have been back for its recovery time.
    let bus = calls_of(&log, BUS);
    assert!(
        bus.len() >= 5,
        "call during the stall, released after: {bus:?}"
    );
    let (on, off) = (bus[2], bus[3]);
    assert!(on.1 && !off.1, "{bus:?}");
    // The stall lasts 4 s and the outputs call after 1 s without a frame, so the call lasts
    // the rest of the stall (about 3.1 s here) and then the 2 s recovery (without it, this
    // is about 3.1 s).
    assert!(off.0 - on.0 >= 4000, "{bus:?}");
    // Meanwhile every other output was calling too.
    for pin in [THROUGH, COUNT, PED] {
        let state_at = |t: u64| {
            calls_of(&log, pin)
                .iter()
                .take_while(|c| c.0 <= t)
                .last()
                .map(|c| c.1)
        };
        assert_eq!(
            state_at(on.0 + 100),
            Some(true),
            "pin {pin} at {}",
            on.0 + 100
        );
    }
}

#[test]
fn a_watchdog_breach_puts_every_output_on_call_before_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Frames keep coming and video is good; memory runs over the limit instead.
    let extra = "[watchdog]\nrss_limit_mib = 64\n\
                 [testing]\nballoon_after_frames = 15\nballoon_mib = 256\n";
    let runs = run_processes(dir.path(), 30, extra);
    assert_eq!(runs.len(), 2, "one restart: {runs:?}");
    // The first process's last word on every relay: de-energised, a call. The bus channel,
    // which had no reason to call, shows it was the watchdog's doing.
    let first = &runs[0];
    assert!(final_calls(first).values().all(|&c| c), "{first:?}");
    let bus = calls_of(first, BUS);
    assert_eq!(
        bus.iter().map(|c| c.1).collect::<Vec<_>>(),
        [true, false, true]
    );
}
