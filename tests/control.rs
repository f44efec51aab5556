//! The signal control thread on the demo site's plan: it ticks on its own clock, falls back to
//! fixed-time when the pipeline stops publishing frames, and leaves the lamps at all red when
//! stopped. The test owns time: the loop's sleeps wait until the test moves the clock on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgewatch::clock::Clock;
use edgewatch::config::{Config, MAX_CLASSES};
use edgewatch::control::{self, SceneFeed};
use edgewatch::health::watchdog::Heartbeats;
use edgewatch::signal::GroupState;

/// A clock that only the test moves; `sleep_until` waits (in real time, bounded) for it.
#[derive(Debug, Default)]
struct SteppedClock {
    nanos: AtomicU64,
}

impl SteppedClock {
    fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, SeqCst);
        // Let the control thread run the ticks that just fell due.
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(SeqCst))
    }

    fn sleep_until(&self, deadline: Duration) {
        let start = Instant::now();
        while self.now() < deadline && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn demo() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/demo.toml");
    let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    config.validate().unwrap();
    config
}

/// Starts the control loop on `config` with the test's clock, runs `ticks` ticks with fresh
/// frames and empty zones (calling `each` after every tick with the clock and the status), then
/// stops it in order.
fn run_ticks(
    config: &Config,
    ticks: u32,
    mut each: impl FnMut(&SteppedClock, &edgewatch::control::SignalStatus),
) {
    let tick = Duration::from_millis(config.control.tick_ms);
    let clock = Arc::new(SteppedClock::default());
    let feed = Arc::new(SceneFeed::new(config.zones.len(), config.lines.len()));
    let control = control::start(config, feed.clone(), clock.clone(), Default::default())
        .unwrap()
        .expect("the demo has signals");
    control.arm_hardware_watchdog(config).unwrap();
    let status = control.status().clone();
    let occupancy = vec![[0u32; MAX_CLASSES]; config.zones.len()];
    for _ in 0..ticks {
        feed.publish(&occupancy, clock.now());
        clock.advance(tick);
        each(&clock, &status);
    }
    let stopper = std::thread::spawn(move || control.shut_down());
    while !stopper.is_finished() {
        clock.advance(tick);
    }
    stopper.join().unwrap();
}

#[test]
fn stale_camera_degrades_and_shutdown_leaves_all_red() {
    let config = demo();
    let tick = Duration::from_millis(config.control.tick_ms);
    let clock = Arc::new(SteppedClock::default());
    let feed = Arc::new(SceneFeed::new(config.zones.len(), config.lines.len()));
    let beats = Arc::new(Heartbeats::default());
    let control = control::start(&config, feed.clone(), clock.clone(), beats)
        .unwrap()
        .expect("the demo has signals");
    let status = control.status().clone();
    let state_of = |group: &str| status.states().find(|(n, _)| *n == group).unwrap().1;

    // Frames keep coming with cars on the road: after the start-up all-red the highway is
    // green, and detection is trusted.
    let mut occupancy = vec![[0u32; MAX_CLASSES]; config.zones.len()];
    occupancy[0][0] = 3;
    for _ in 0..60 {
        feed.publish(&occupancy, clock.now());
        clock.advance(tick);
    }
    assert!(!status.degraded(), "frames are fresh");
    assert_eq!(state_of("traffic"), GroupState::Green);

    // The pipeline stops: past camera_stale_ms the controller falls back to fixed-time.
    let stale = Duration::from_millis(config.control.camera_stale_ms);
    let steps = (stale + Duration::from_secs(1)).as_millis() / tick.as_millis();
    for _ in 0..steps {
        clock.advance(tick);
    }
    assert!(
        status.degraded(),
        "no frame for longer than camera_stale_ms"
    );
    assert!(!status.fault_flash());

    // Stopping clears the running phase (amber, all-red) and leaves every head at red.
    let stopper = std::thread::spawn(move || control.shut_down());
    while !stopper.is_finished() {
        clock.advance(tick);
    }
    stopper.join().unwrap();
    assert_eq!(state_of("traffic"), GroupState::Red);
    assert_eq!(state_of("walkers"), GroupState::DontWalk);
}

#[test]
fn failed_detector_degrades_while_frames_are_fresh() {
    let config = demo();
    let tick = Duration::from_millis(config.control.tick_ms);
    let clock = Arc::new(SteppedClock::default());
    let feed = Arc::new(SceneFeed::new(config.zones.len(), config.lines.len()));
    let control = control::start(&config, feed.clone(), clock.clone(), Default::default())
        .unwrap()
        .expect("the demo has signals");
    let status = control.status().clone();
    let occupancy = vec![[0u32; MAX_CLASSES]; config.zones.len()];
    let run = |ticks: u32| {
        for _ in 0..ticks {
            feed.publish(&occupancy, clock.now());
            clock.advance(tick);
        }
    };
    run(10);
    assert!(!status.degraded(), "frames are fresh and the model runs");
    // Frames keep arriving, but the model fails every one of them: detection is lost, and
    // no camera state says so.
    feed.set_detector_failed(true);
    run(3);
    assert!(status.degraded(), "a failed detector degrades at once");
    feed.set_detector_failed(false);
    let recover = config.signals.as_ref().unwrap().camera_recover_s;
    run((recover * 1000.0) as u32 / tick.as_millis() as u32 + 3);
    assert!(
        !status.degraded(),
        "good frames again: back after camera_recover_s"
    );
    let stopper = std::thread::spawn(move || control.shut_down());
    while !stopper.is_finished() {
        clock.advance(tick);
    }
    stopper.join().unwrap();
}

#[test]
fn shutdown_limit_must_cover_the_longest_clearance() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/demo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("shutdown_limit_s = 30.0", "shutdown_limit_s = 10.0")
        .replace("crossing_length_m = 6.0", "crossing_length_m = 12.0")
        .replace("max_green_s = 14.0", "max_green_s = 20.0");
    let config = Config::parse(&text, &path).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("control.shutdown_limit_s")
            && err.contains("cannot clear phase `crossing`")
            && err.contains("14.3 s"),
        "{err}"
    );
}

#[test]
fn clearance_request_clears_in_order_and_holds_all_red() {
    let config = demo();
    let tick = Duration::from_millis(config.control.tick_ms);
    let clock = Arc::new(SteppedClock::default());
    let feed = Arc::new(SceneFeed::new(config.zones.len(), config.lines.len()));
    let beats = Arc::new(Heartbeats::default());
    let control = control::start(&config, feed.clone(), clock.clone(), beats.clone())
        .unwrap()
        .expect("the demo has signals");
    let status = control.status().clone();
    let state_of = |group: &str| status.states().find(|(n, _)| *n == group).unwrap().1;
    let mut occupancy = vec![[0u32; MAX_CLASSES]; config.zones.len()];
    occupancy[0][0] = 3;
    let run = |ticks: u32| {
        for _ in 0..ticks {
            feed.publish(&occupancy, clock.now());
            clock.advance(tick);
        }
    };
    let mut waited = 0;
    while state_of("traffic") != GroupState::Green && waited < 300 {
        run(1);
        waited += 1;
    }
    assert_eq!(state_of("traffic"), GroupState::Green);
    // The watchdog asks; the loop shows amber, then all red, and says so.
    let clearance = control.clearance().clone();
    clearance.request();
    run(3);
    assert_eq!(state_of("traffic"), GroupState::Amber);
    assert!(!clearance.is_cleared());
    run(60);
    assert!(clearance.is_cleared(), "3 s amber + 1.5 s all-red");
    assert_eq!(state_of("traffic"), GroupState::Red);
    // It keeps beating (the watchdog must not take it for stuck) and stays at red.
    let before = beats.control_at();
    run(100);
    assert!(beats.control_at() > before);
    assert_eq!(state_of("traffic"), GroupState::Red);
    let stopper = std::thread::spawn(move || control.shut_down());
    while !stopper.is_finished() {
        clock.advance(tick);
    }
    stopper.join().unwrap();
}

/// Issue 12, finding 6: a monitor fault used to live in RAM only, so any restart cleared it.
/// Now it is written to `control.fault_file`; a new process finds it and stays in flash until
/// the file is cleared (`edgewatch reset-fault`), then comes up through the start-up flash.
#[test]
fn fault_latch_survives_a_restart_until_reset_fault() {
    let dir = tempfile::tempdir().unwrap();
    let fault_file = dir.path().join("state/fault");
    let mut config = demo();
    config.control.fault_file = fault_file.clone();
    let run_process = |config: &Config, ticks: u32| {
        let mut greens = 0;
        let mut seen = (false, None);
        run_ticks(config, ticks, |_, status| {
            let traffic = status.states().find(|(n, _)| *n == "traffic").unwrap().1;
            greens += u32::from(traffic == GroupState::Green);
            seen = (status.fault_flash(), status.fault());
        });
        (seen.0, seen.1, greens)
    };

    // A broken load switch on the traffic green: the monitor latches, and writes it down.
    let mut broken = config.clone();
    broken.testing.fail_pin = Some(22);
    let (flash, fault, greens) = run_process(&broken, 20);
    assert!(flash && greens == 0);
    assert_eq!(fault.as_deref(), Some("output pin 22 could not be written"));
    let recorded = std::fs::read_to_string(&fault_file).unwrap();
    assert_eq!(recorded.trim(), "output pin 22 could not be written");

    // Repaired, restarted: still in flash for a whole minute, because the fault was never reset.
    let (flash, fault, greens) = run_process(&config, 600);
    assert!(flash, "flash after the restart");
    assert_eq!(greens, 0, "no green while the fault is latched");
    assert_eq!(
        fault.as_deref(),
        Some("fault latched before the restart: output pin 22 could not be written")
    );
    assert!(fault_file.exists(), "the latch stays until reset");

    // `edgewatch reset-fault` clears it; the next start is normal (flash, all red, green).
    let cleared = edgewatch::signal::FaultLatch::new(&fault_file)
        .clear()
        .unwrap();
    assert!(cleared.is_some());
    let (flash, fault, greens) = run_process(&config, 100);
    assert!(!flash && fault.is_none());
    assert!(greens > 0, "back in service");
}

#[test]
fn heartbeat_pin_must_be_free() {
    let mut config = demo();
    config.control.heartbeat = Some(edgewatch::config::HeartbeatConfig {
        pin: 22,
        active_low: false,
    });
    let err = config.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "control.heartbeat.pin: pin 22 is already used by signals.groups[0].green.pin"
    );
    config.control.heartbeat = Some(edgewatch::config::HeartbeatConfig {
        pin: 4,
        active_low: false,
    });
    config.validate().unwrap();
}

/// Issue 12, finding 1: with sense inputs the monitor checks the field. A traffic green whose
/// lamp fails while it is commanded lit is caught; the control loop latches flash and records
/// the fault.
#[test]
fn a_lamp_failing_in_the_field_latches_flash() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo();
    config.control.fault_file = dir.path().join("fault");
    let signals = config.signals.as_mut().unwrap();
    for g in &mut signals.groups {
        let lamps = [
            &mut g.red,
            &mut g.amber,
            &mut g.green,
            &mut g.dont_walk,
            &mut g.walk,
        ];
        for l in lamps.into_iter().flatten() {
            l.sense = Some(edgewatch::signal::SensePin {
                pin: 100 + l.pin,
                active_low: true,
                pull: None,
            });
        }
    }
    config.validate().unwrap();
    // One bad reading must never trip: the conflict time must span two control ticks.
    let mut slow = config.clone();
    slow.control.tick_ms = 250;
    assert_eq!(
        slow.validate().unwrap_err().to_string(),
        "signals.sense_conflict_ms: 450 ms is under two control ticks (500 ms): one bad reading \
         of the sense inputs would trip"
    );
    // Burnt out from 40 s: the traffic green, lit (recalled) from the end of the start-up
    // all-red, goes dark in the field while still commanded: the head shows nothing.
    config.testing.stuck_lamp = Some(edgewatch::config::StuckLamp {
        pin: 22,
        lit: false,
        after_s: 40.0,
    });
    let mut green_before = false;
    let mut last = (false, None);
    run_ticks(&config, 600, |clock, status| {
        if clock.now() < Duration::from_secs(40) {
            assert!(!status.fault_flash(), "a healthy field trips nothing");
            let traffic = status.states().find(|(n, _)| *n == "traffic").unwrap().1;
            green_before |= traffic == GroupState::Green;
        }
        last = (status.fault_flash(), status.fault());
    });
    assert!(green_before, "in service before the fault");
    let (flash, fault) = last;
    assert!(flash);
    assert_eq!(fault.as_deref(), Some("`traffic`: field shows no lamp lit"));
    let recorded = std::fs::read_to_string(dir.path().join("fault")).unwrap();
    assert_eq!(Some(recorded.trim()), fault.as_deref());
}

/// A time-of-day plan applies once the wall clock is synchronised. The test says whether it
/// is (`testing.clock_synced`): a container's clock may well report itself unsynchronised.
#[test]
fn time_of_day_plans_follow_the_local_clock() {
    let mut config = demo();
    config.testing.clock_synced = Some(true);
    let signals = config.signals.as_mut().unwrap();
    assert_eq!(signals.mode, edgewatch::signal::ControlMode::Actuated);
    assert_eq!(
        run_plan(&config).0,
        edgewatch::signal::ControlMode::Actuated
    );
    let signals = config.signals.as_mut().unwrap();
    signals.plans = vec![edgewatch::signal::TimePlanConfig {
        name: "all-day".into(),
        start: "00:00".into(),
        mode: edgewatch::signal::ControlMode::FixedTime,
        fixed_green_s: Vec::new(),
    }];
    config.validate().unwrap();
    assert_eq!(
        run_plan(&config),
        (
            edgewatch::signal::ControlMode::FixedTime,
            Some("all-day".into()),
            true
        )
    );
}

/// The mode, the time-of-day plan and the clock's synchronisation the status shows after a
/// couple of seconds of ticks.
fn run_plan(config: &Config) -> (edgewatch::signal::ControlMode, Option<String>, bool) {
    let mut seen = None;
    run_ticks(config, 20, |_, status| {
        seen = Some((
            status.mode(),
            status.plan().map(str::to_string),
            status.clock_synced(),
        ))
    });
    seen.unwrap()
}

/// Issue 12: a Pi has no real-time clock, so until NTP has synchronised the wall clock its
/// time of day may be 1970's. Time-of-day plans wait for the synchronisation (the site's own
/// mode applies meanwhile) unless `control.require_clock_sync = false`.
#[test]
fn time_of_day_plans_wait_for_a_synchronised_clock() {
    use edgewatch::signal::ControlMode::{Actuated, FixedTime};
    let mut config = demo();
    config.signals.as_mut().unwrap().plans = vec![edgewatch::signal::TimePlanConfig {
        name: "all-day".into(),
        start: "00:00".into(),
        mode: FixedTime,
        fixed_green_s: Vec::new(),
    }];
    assert!(config.control.require_clock_sync, "on by default");
    config.testing.clock_synced = Some(false);
    assert_eq!(run_plan(&config), (Actuated, None, false));
    config.testing.clock_synced = Some(true);
    assert_eq!(run_plan(&config), (FixedTime, Some("all-day".into()), true));
    // A site without NTP that knows its clock is right may opt out.
    config.testing.clock_synced = Some(false);
    config.control.require_clock_sync = false;
    assert_eq!(
        run_plan(&config),
        (FixedTime, Some("all-day".into()), false)
    );
}

/// Every pin is claimed once: a detector output may not reuse a lamp, a sense input or the
/// heartbeat, and the error names the key that has it.
#[test]
fn detector_output_pins_must_be_free() {
    let output = |pin: u32| -> edgewatch::detector_outputs::DetectorOutputConfig {
        toml::from_str(&format!("name = \"call\"\npin = {pin}\nzones = [\"road\"]")).unwrap()
    };
    let mut config = demo();
    config.detector_outputs = vec![output(22)];
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "detector_outputs[0].pin: gpio 22 is already used by signals.groups[0].green.pin"
    );
    config.control.heartbeat = Some(edgewatch::config::HeartbeatConfig {
        pin: 4,
        active_low: false,
    });
    config.detector_outputs = vec![output(4)];
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "detector_outputs[0].pin: gpio 4 is already used by control.heartbeat.pin"
    );
    config.detector_outputs = vec![output(24)];
    config.validate().unwrap();
}

/// Issue 12: the kernel watchdog is pinged while the control loop ticks, not when it stops,
/// and an orderly stop disarms it with the magic `V` (a plain file stands in for the device:
/// it records the pings and refuses only the timeout ioctl).
#[test]
fn the_hardware_watchdog_is_pinged_while_the_loop_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("watchdog");
    std::fs::write(&device, b"").unwrap();
    let mut config = demo();
    config.control.hardware_watchdog = Some(edgewatch::config::HwWatchdogConfig {
        device: device.clone(),
        timeout_s: 1,
    });
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "control.hardware_watchdog.timeout_s: 1 is not in 2..=60"
    );
    config.control.hardware_watchdog.as_mut().unwrap().timeout_s = 15;
    config.validate().unwrap();
    // 10 s of ticks: a ping every 500 ms, none once the loop stops ticking (the clock stands
    // still), and the magic `V` on the orderly stop.
    let mut pings = 0;
    run_ticks(&config, 100, |_, _| {
        pings = std::fs::read(&device).unwrap().len();
    });
    assert!((19..=21).contains(&pings), "{pings} pings");
    let written = std::fs::read(&device).unwrap();
    assert!(written[..pings].iter().all(|&b| b == 0));
    assert_eq!(written.last(), Some(&b'V'), "disarmed on an orderly stop");
    // A missing device is a start error naming it, raised when start-up arms it (last).
    config.control.hardware_watchdog.as_mut().unwrap().device = dir.path().join("none");
    let feed = Arc::new(SceneFeed::new(config.zones.len(), config.lines.len()));
    let clock = Arc::new(SteppedClock::default());
    let control = control::start(&config, feed, clock.clone(), Default::default())
        .unwrap()
        .expect("the demo has signals");
    let err = control.arm_hardware_watchdog(&config).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("control.hardware_watchdog: cannot open"),
        "{err}"
    );
    let stopper = std::thread::spawn(move || control.shut_down());
    while !stopper.is_finished() {
        clock.advance(Duration::from_millis(100));
    }
    stopper.join().unwrap();
}

/// Issue 12: a pedestrian-only phase has no amber, so its all-red is the whole buffer interval
/// of steady don't walk before a conflicting green (MUTCD 4I.06, at least 3 s).
#[test]
fn a_pedestrian_phase_keeps_the_buffer_interval() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("board/demo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let short = text.replace("\nall_red_s = 3.0 ", "\nall_red_s = 1.0 ");
    assert_ne!(short, text, "the demo's crossing phase has a 3 s all-red");
    let err = Config::parse(&short, &path)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "signals.phases[1].all_red_s: phase `crossing` leaves 1.0 s of steady don't walk \
         (amber + all-red) before a conflicting green; the pedestrian buffer interval needs 3 s \
         (MUTCD 4I.06)"
    );
}
