//! Scenario tests of the whole signal system (controller, monitor, pins) on simulated time:
//! each drives the test site through one situation and checks what the lamps do and when.

mod signal_common;

use edgewatch::signal::{Fault, GroupState, Stage};
use signal_common::*;

const TICK_MS: u64 = 100;
/// One tick, plus rounding slack, in seconds.
const SLACK: f64 = 0.1 + 1e-6;

/// Starts the site and runs to the first main green.
fn started() -> Site {
    let mut site = Site::new(SITE, TICK_MS);
    site.run_until(STARTUP_FLASH + STARTUP + 1.0, |s| {
        s.state("main") == GroupState::Green
    })
    .expect("main green after start-up");
    site
}

const ALL_RED_LIT: [u32; 5] = [MAIN_RED, MINOR_RED, TURN_RED, PED_DONT_WALK, BUS_STOP];

/// Power-up (MUTCD 4D.31): start-up flash (vehicle reds flashing, pedestrian and bus heads
/// dark), then steady all red, then the first green, each for its configured time.
#[test]
fn safe_start_is_flash_then_all_red_for_the_configured_times() {
    let mut site = Site::new(SITE, TICK_MS);
    let mut dark_ticks = 0;
    // The last flash tick is one tick before the flash time.
    while site.now() < STARTUP_FLASH - 0.1 - 1e-6 {
        site.step();
        let on = site.clock_now().subsec_millis() < 500;
        for pin in [MAIN_RED, MINOR_RED, TURN_RED] {
            assert_eq!(site.lit(pin), on, "pin {pin} at {:.1} s", site.now());
        }
        for pin in RIGHT_OF_WAY.iter().chain(&[PED_DONT_WALK, BUS_STOP]) {
            assert!(!site.lit(*pin), "pin {pin} lit at {:.1} s", site.now());
        }
        dark_ticks += usize::from(!site.lit(MAIN_RED));
        assert_eq!(site.signals.controller().stage(), Stage::StartupFlash);
    }
    assert!(dark_ticks >= 10, "the reds flash: {dark_ticks} dark ticks");
    while site.now() < STARTUP_FLASH + STARTUP - 0.1 - 1e-6 {
        site.step();
        if site.now() < STARTUP_FLASH + 1e-6 {
            continue; // the tick that ends the flash
        }
        for pin in ALL_RED_LIT {
            assert!(site.lit(pin), "pin {pin} dark at {:.1} s", site.now());
        }
        for pin in RIGHT_OF_WAY {
            assert!(!site.lit(pin), "pin {pin} lit at {:.1} s", site.now());
        }
    }
    let t = site
        .run_until(1.0, |s| s.state("main") == GroupState::Green)
        .unwrap();
    assert!(
        (t - STARTUP_FLASH - STARTUP).abs() <= SLACK,
        "first green at {t}"
    );
    assert!(site.lit(MAIN_GREEN) && !site.lit(MAIN_RED));
}

#[test]
fn empty_minor_road_leaves_main_green() {
    let mut site = started();
    let mut ticks = 0;
    // An hour of main-road platoons and nothing anywhere else.
    for i in 0..36_000 {
        site.set(Z_MAIN, CAR, u32::from(i % 300 < 40));
        site.step();
        assert_eq!(
            site.state("main"),
            GroupState::Green,
            "at {:.1} s",
            site.now()
        );
        assert!(site.lit(MAIN_GREEN) && site.lit(MINOR_RED) && site.lit(TURN_RED));
        ticks += 1;
    }
    eprintln!("empty_minor_road_leaves_main_green: {ticks} steps checked");
}

#[test]
fn minor_queue_is_served_within_max_green() {
    let mut site = started();
    site.set(Z_MAIN, CAR, 3); // main traffic never gaps out
    site.run_for(60.0);
    site.set(Z_MINOR, CAR, 2);
    let call = site.now();
    let amber = site
        .run_until(60.0, |s| s.state("main") == GroupState::Amber)
        .unwrap();
    let green = site
        .run_until(60.0, |s| s.state("minor") == GroupState::Green)
        .unwrap();
    // Main runs to max-out (counted from the call), then amber and all-red.
    assert!(
        (amber - call - MAIN.max_green).abs() <= SLACK + 0.1,
        "main amber {:.1} s after the call",
        amber - call
    );
    let waited = green - call;
    let bound = MAIN.max_green + MAIN.amber + MAIN.all_red;
    assert!(
        waited <= bound + 3.0 * SLACK && waited >= bound - SLACK,
        "minor waited {waited:.1} s (bound {bound} s)"
    );
}

#[test]
fn minor_green_gaps_out_when_its_queue_clears() {
    let mut site = started();
    site.set(Z_MINOR, CAR, 1);
    let green = site
        .run_until(20.0, |s| s.state("minor") == GroupState::Green)
        .unwrap();
    site.set(Z_MAIN, CAR, 1); // a main call waits
    site.run_for(6.0); // minor queue for 6 s, then empty
    site.set(Z_MINOR, CAR, 0);
    let amber = site
        .run_until(30.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    // Gap-out: 2 s passage after the last detection (at ~6 s), well before max green.
    let green_time = amber - green;
    assert!(
        (green_time - 8.0).abs() <= 2.0 * SLACK,
        "minor green lasted {green_time:.1} s"
    );
}

#[test]
fn phases_without_demand_are_skipped() {
    let mut site = started();
    site.run_for(20.0);
    site.set(Z_TURN, CAR, 1); // only the turn is called; the minor phase comes before it
    let mut minor_served = false;
    let turn = site.run_until(30.0, |s| {
        minor_served |=
            s.state("minor") != GroupState::Red || s.state("ped") != GroupState::DontWalk;
        s.state("turn") == GroupState::Green
    });
    assert!(turn.is_some(), "turn served");
    assert!(
        !minor_served,
        "the minor phase had no demand and must be skipped"
    );
    site.set(Z_TURN, CAR, 0);
    site.set(Z_MAIN, CAR, 1);
    site.run_until(30.0, |s| s.state("main") == GroupState::Green)
        .expect("back to main");
    assert_eq!(site.state("minor"), GroupState::Red);
}

/// Brings the minor phase up with a queue on both roads; returns the minor green onset.
fn minor_green_with_queues(site: &mut Site) -> f64 {
    site.set(Z_MAIN, CAR, 3);
    site.set(Z_MINOR, CAR, 3);
    site.run_until(60.0, |s| s.state("minor") == GroupState::Green)
        .unwrap()
}

#[test]
fn bus_extends_green_by_no_more_than_the_bound() {
    let mut site = started();
    let green = minor_green_with_queues(&mut site);
    site.run_for(5.0);
    site.set(Z_BUS, BUS, 1); // a bus arrives and stays in the bus lane
    let amber = site
        .run_until(60.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    let green_time = amber - green;
    let bound = MINOR.max_green + MINOR.extension;
    assert!(
        green_time <= bound + 2.0 * SLACK,
        "minor green {green_time:.1} s exceeds {bound} s"
    );
    assert!(
        green_time >= bound - SLACK,
        "the bus should have had its full extension ({green_time:.1} s)"
    );
    assert_eq!(site.signals.controller().priority_grants(), 1);
}

#[test]
fn extension_ends_when_the_bus_leaves() {
    let mut site = started();
    let green = minor_green_with_queues(&mut site);
    site.set(Z_BUS, BUS, 1);
    site.run_until(30.0, |s| s.now() - green >= MINOR.max_green + 3.0)
        .unwrap();
    assert_eq!(
        site.state("minor"),
        GroupState::Green,
        "extended past max green"
    );
    site.set(Z_BUS, BUS, 0); // the bus has cleared the stop line
    let amber = site
        .run_until(5.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    assert!(amber - green <= MINOR.max_green + 3.0 + 2.0 * SLACK);
}

#[test]
fn early_green_cuts_main_to_its_min_green_once_per_cycle() {
    let mut site = Site::new(SITE, TICK_MS);
    site.set(Z_MAIN, CAR, 3); // main would run to max green
    site.set(Z_MINOR, CAR, 3);
    let main_green = site
        .run_until(STARTUP_FLASH + STARTUP + 1.0, |s| {
            s.state("main") == GroupState::Green
        })
        .unwrap();
    site.set(Z_BUS, BUS, 1); // a bus waits in the queue-jump lane from the start
    let amber = site
        .run_until(60.0, |s| s.state("main") == GroupState::Amber)
        .unwrap();
    assert!(
        amber - main_green <= MAIN.min_green + 2.0 * SLACK,
        "main cut at {:.1} s",
        amber - main_green
    );
    // The bus gets B first, then the minor road goes green.
    let b = site
        .run_until(20.0, |s| s.state("bus-b") == GroupState::BusGo)
        .unwrap();
    assert_eq!(site.state("minor"), GroupState::Red);
    let minor = site
        .run_until(5.0, |s| s.state("minor") == GroupState::Green)
        .unwrap();
    assert!(
        (minor - b - HEAD_START).abs() <= SLACK,
        "head start {:.1} s",
        minor - b
    );
    // Priority was used this cycle: the bus still there does not extend the minor green.
    let minor_amber = site
        .run_until(60.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    assert!(
        minor_amber - minor <= MINOR.max_green + 2.0 * SLACK,
        "minor green {:.1} s",
        minor_amber - minor
    );
    assert_eq!(site.signals.controller().priority_grants(), 1);
}

#[test]
fn camera_dropout_switches_to_fixed_time_and_back() {
    let mut site = started();
    site.run_for(60.0);
    assert_eq!(
        site.signals.controller().mode(site.clock_now()).as_str(),
        "actuated"
    );
    site.camera_ok = false;
    let report = site.step();
    assert!(report.degraded, "degraded at the first bad frame");
    assert_eq!(site.signals.controller().incidents(), 1);
    // Fixed-time with recall: every phase is served, with no demand at all, for its fixed green
    // (= max green), and the walk comes up every cycle.
    let minor = site
        .run_until(30.0, |s| s.state("minor") == GroupState::Green)
        .expect("minor served");
    let mut walked = false;
    let minor_amber = site
        .run_until(40.0, |s| {
            walked |= s.state("ped") == GroupState::Walk;
            s.state("minor") == GroupState::Amber
        })
        .unwrap();
    assert!(walked, "walk recalled in fixed-time");
    assert!(
        (minor_amber - minor - MINOR.max_green).abs() <= 2.0 * SLACK,
        "fixed green {:.1}",
        minor_amber - minor
    );
    site.run_until(30.0, |s| s.state("turn") == GroupState::Green)
        .expect("turn served");
    // Frames come back: fixed-time continues for the recovery time, then actuated.
    site.camera_ok = true;
    let back = site.now();
    let recovered = site
        .run_until(RECOVER + 1.0, |s| !s.signals.controller().is_degraded())
        .unwrap();
    assert!(
        (recovered - back - RECOVER).abs() <= 2.0 * SLACK,
        "recovered after {:.1} s",
        recovered - back
    );
    // Calls latched while degraded are served once, then with no demand the signals rest.
    site.run_for(120.0);
    let resting = site.signals.states().map(|(_, s)| s).collect::<Vec<_>>();
    for _ in 0..6000 {
        site.step();
        assert!(
            site.signals
                .states()
                .map(|(_, s)| s)
                .eq(resting.iter().copied()),
            "rest is steady"
        );
    }
    // And demand is served on demand again.
    site.set(Z_TURN, CAR, 1);
    site.run_until(60.0, |s| s.state("turn") == GroupState::Green)
        .expect("turn served on demand");
}

#[test]
fn pedestrian_button_is_debounced_and_served() {
    let mut site = started();
    site.run_for(30.0);
    // A blip shorter than the 50 ms debounce is not a press.
    site.pins.set_input(BUTTON, false);
    site.step(); // seen low once, high again at the next read: a bounce
    site.pins.set_input(BUTTON, true);
    site.run_for(60.0);
    assert_eq!(
        site.state("main"),
        GroupState::Green,
        "a bounce calls nothing"
    );
    // A real press (300 ms) calls the walk.
    site.pins.set_input(BUTTON, false);
    site.run_for(0.3);
    site.pins.set_input(BUTTON, true);
    let walk = site
        .run_until(20.0, |s| s.state("ped") == GroupState::Walk)
        .expect("walk served");
    let clearance = site
        .run_until(10.0, |s| s.state("ped") == GroupState::PedClearance)
        .unwrap();
    assert!((clearance - walk - WALK).abs() <= SLACK);
    let done = site
        .run_until(10.0, |s| s.state("ped") == GroupState::DontWalk)
        .unwrap();
    assert!((done - clearance - PED_CLEARANCE).abs() <= SLACK);
}

/// A reset while a phase runs would cut its green straight to the start-up flash, and the
/// freshly reset monitor would not see the missing amber: it is refused and changes nothing.
#[test]
fn a_reset_while_a_phase_runs_is_refused() {
    let mut site = started();
    site.run_until(30.0, |s| s.state("main") == GroupState::Green)
        .expect("main green");
    assert!(!site.signals.reset(), "refused while main is green");
    site.step();
    assert_eq!(site.state("main"), GroupState::Green, "nothing cut");
    // It ends through amber as it would have.
    site.set(Z_MINOR, CAR, 1);
    site.run_until(60.0, |s| s.state("main") != GroupState::Green)
        .expect("main ends");
    assert_eq!(site.state("main"), GroupState::Amber);
}

#[test]
fn pin_write_failure_forces_flash_until_reset() {
    let mut site = started();
    site.run_for(10.3);
    site.pins.fail_writes(MAIN_GREEN, true);
    let report = site.step_allowing_faults();
    assert!(report.fault_flash, "flash in the same tick");
    assert_eq!(report.new_fault, Some(Fault::PinWrite { pin: MAIN_GREEN }));
    // Red flash at 1 Hz, 50 % duty, everything else dark, for as long as it takes.
    let mut lit_ticks = 0;
    for _ in 0..100 {
        let report = site.step_allowing_faults();
        assert!(report.fault_flash && report.new_fault.is_none());
        let on = site.clock_now().subsec_millis() < 500;
        for pin in [MAIN_RED, MINOR_RED, TURN_RED] {
            assert_eq!(site.lit(pin), on, "pin {pin} at {:.1} s", site.now());
        }
        for pin in [
            MAIN_AMBER,
            MINOR_AMBER,
            MINOR_GREEN,
            TURN_GREEN,
            PED_WALK,
            PED_DONT_WALK,
            BUS_GO,
        ] {
            assert!(!site.lit(pin));
        }
        lit_ticks += usize::from(on);
    }
    assert_eq!(lit_ticks, 50);
    assert!(
        site.signals.to_string().contains("FAULT FLASH"),
        "{}",
        site.signals
    );
    // Repaired and reset: safe start all over again, flash first.
    site.pins.fail_writes(MAIN_GREEN, false);
    assert!(site.signals.reset(), "in fault flash");
    site.step();
    assert_eq!(site.signals.controller().stage(), Stage::StartupFlash);
    assert_eq!(site.state("main"), GroupState::RedFlash);
    site.run_until(STARTUP_FLASH, |s| s.state("main") == GroupState::Red)
        .expect("all red after the flash");
    site.run_until(STARTUP + 1.0, |s| s.state("main") == GroupState::Green)
        .expect("back in service");
}

#[test]
fn maintenance_flash_on_command() {
    let mut site = started();
    site.run_for(20.0);
    site.signals.set_maintenance_flash(true);
    site.run_until(1.0, |s| s.state("main") == GroupState::Amber)
        .expect("clearance first");
    site.run_until(10.0, |s| s.state("main") == GroupState::AmberFlash)
        .expect("main flashes amber");
    for _ in 0..20 {
        site.step();
        let on = site.clock_now().subsec_millis() < 500;
        assert_eq!(
            (
                site.lit(MAIN_AMBER),
                site.lit(MINOR_RED),
                site.lit(TURN_RED)
            ),
            (on, on, on)
        );
        assert!(!site.lit(PED_WALK) && !site.lit(PED_DONT_WALK) && !site.lit(MAIN_GREEN));
    }
    site.signals.set_maintenance_flash(false);
    let amber = site
        .run_until(1.0, |s| s.state("main") == GroupState::Amber)
        .expect("steady amber out of flash");
    let red = site
        .run_until(10.0, |s| s.state("main") == GroupState::Red)
        .unwrap();
    assert!(red - amber >= MAIN.amber - 1e-6);
    site.run_until(STARTUP + 1.0, |s| s.state("main") == GroupState::Green)
        .expect("back to stop-and-go");
}

/// A stop or a watchdog breach during maintenance flash: the flashing amber ends through a
/// full steady amber before the all red, never straight to steady red (MUTCD 4D.31), and
/// the unit counts as cleared only then.
#[test]
fn a_clearance_in_maintenance_flash_leaves_through_steady_amber() {
    let mut site = started();
    site.run_for(20.0);
    site.signals.set_maintenance_flash(true);
    site.run_until(20.0, |s| s.state("main") == GroupState::AmberFlash)
        .expect("main flashes amber");
    site.run_for(2.0);
    assert!(!site.signals.is_cleared(), "flashing amber is not cleared");
    site.signals.request_clearance();
    let amber = site
        .run_until(1.0, |s| s.state("main") == GroupState::Amber)
        .expect("steady amber out of flash");
    assert!(!site.signals.is_cleared(), "not during the amber");
    let red = site
        .run_until(10.0, |s| s.state("main") == GroupState::Red)
        .expect("then red");
    assert!(red - amber >= MAIN.amber - 1e-6, "amber {} s", red - amber);
    assert!(site.signals.is_cleared());
    site.run_for(30.0);
    assert_eq!(site.state("main"), GroupState::Red, "held at all red");
}

#[test]
fn beacon_flashes_while_a_bus_approaches() {
    let mut site = started();
    site.set(Z_BUS, BUS, 1);
    site.step();
    assert_eq!(site.state("bus-coming"), GroupState::On);
    let mut toggles = 0;
    let mut last = site.lit(BEACON);
    for _ in 0..30 {
        site.step();
        toggles += usize::from(site.lit(BEACON) != last);
        last = site.lit(BEACON);
    }
    assert_eq!(toggles, 6, "1 Hz flash over 3 s");
    site.set(Z_BUS, BUS, 0);
    site.run_for(1.5);
    assert_eq!(site.state("bus-coming"), GroupState::On, "held 2 s");
    site.run_for(1.0);
    assert_eq!(site.state("bus-coming"), GroupState::Dark);
    assert!(!site.lit(BEACON));
}

#[test]
fn time_of_day_plan_runs_fixed_time_at_night() {
    let text = format!(
        "{SITE}\n[[plans]]\nname = \"day\"\nstart = \"06:00\"\nmode = \"actuated\"\n\
         [[plans]]\nname = \"night\"\nstart = \"22:00\"\nmode = \"fixed-time\"\nfixed_green_s = [10.0, 6.0, 4.0]\n"
    );
    let mut site = Site::new(&text, TICK_MS);
    site.signals.set_time_of_day(21 * 3600 + 50 * 60);
    site.run_for(300.0);
    assert_eq!(
        site.state("main"),
        GroupState::Green,
        "day plan: rest in main green"
    );
    site.run_for(300.0); // 22:00 passes
    let green = site
        .run_until(60.0, |s| s.state("minor") == GroupState::Green)
        .expect("night plan cycles");
    let amber = site
        .run_until(30.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    // 6 s fixed green, but never less than walk + clearance (recalled in fixed-time).
    assert!(
        (amber - green - (WALK + PED_CLEARANCE)).abs() <= 2.0 * SLACK,
        "{:.1}",
        amber - green
    );
}

#[test]
fn summary_line_and_pin_names() {
    let site = started();
    let line = site.signals.to_string();
    assert!(
        line.starts_with(
            "main=green minor=red ped=dont-walk bus-b=bus-stop turn=red bus-coming=dark"
        ),
        "{line}"
    );
    assert!(line.ends_with("[actuated green]"), "{line}");
    assert_eq!(site.signals.lamp_of_pin(PED_WALK), Some(("ped", "walk")));
    assert_eq!(site.signals.lamp_of_pin(99), None);
}

trait ClockNow {
    fn clock_now(&self) -> std::time::Duration;
}

impl ClockNow for Site {
    fn clock_now(&self) -> std::time::Duration {
        use edgewatch::clock::Clock;
        self.clock.now()
    }
}

/// The watchdog's orderly clearance (issue 12): a pedestrian already on the crossing gets the
/// full flashing don't walk, then the heads go amber for the full amber, then all red, and
/// nothing goes green again; the monitor checks every step.
#[test]
fn clearance_runs_flashing_dont_walk_amber_all_red_and_holds() {
    let mut site = started();
    site.set(Z_CROSSING, PERSON, 1);
    site.run_until(30.0, |s| s.state("ped") == GroupState::Walk)
        .expect("walk served");
    site.set(Z_MINOR, CAR, 2);
    site.set(Z_MAIN, CAR, 2);
    site.run_for(1.0);
    site.signals.request_clearance();
    site.step();
    let cleared_from = site.now();
    assert_eq!(
        site.state("ped"),
        GroupState::PedClearance,
        "walk cut short"
    );
    assert_eq!(
        site.state("minor"),
        GroupState::Green,
        "green holds meanwhile"
    );
    let amber = site
        .run_until(30.0, |s| s.state("minor") == GroupState::Amber)
        .unwrap();
    assert!(
        amber - cleared_from >= PED_CLEARANCE - SLACK,
        "the full clearance first: {:.1} s",
        amber - cleared_from
    );
    assert_eq!(site.state("ped"), GroupState::DontWalk);
    let red = site
        .run_until(10.0, |s| s.state("minor") == GroupState::Red)
        .unwrap();
    assert!(red - amber >= MINOR.amber - 1e-6, "full amber");
    // Calls everywhere, but the unit is about to restart: all red from here on.
    for _ in 0..1200 {
        site.step();
        for g in ["main", "minor", "turn"] {
            assert_eq!(site.state(g), GroupState::Red, "{g} at {:.1} s", site.now());
        }
        assert_eq!(site.state("ped"), GroupState::DontWalk);
    }
    assert!(site.signals.is_cleared());
}

/// A clearance early in a green does not wait for min green, but still shows the full amber;
/// one during the bus head start takes the B straight to its all-red.
#[test]
fn clearance_does_not_wait_for_min_green_and_ends_a_head_start() {
    let mut site = started();
    site.set(Z_MAIN, CAR, 3);
    site.signals.request_clearance();
    site.step();
    let amber = site.now();
    assert_eq!(site.state("main"), GroupState::Amber);
    let red = site
        .run_until(10.0, |s| s.state("main") == GroupState::Red)
        .unwrap();
    assert!(red - amber >= MAIN.amber - 1e-6);
    site.run_for(60.0);
    assert_eq!(site.state("main"), GroupState::Red);

    let mut site = started();
    site.set(Z_BUS, BUS, 1);
    site.set(Z_MINOR, CAR, 1);
    site.run_until(60.0, |s| s.state("bus-b") == GroupState::BusGo)
        .expect("head start");
    assert_eq!(site.state("minor"), GroupState::Red, "B before the green");
    site.signals.request_clearance();
    site.step();
    assert_eq!(site.state("bus-b"), GroupState::BusStop);
    site.run_for(60.0);
    assert!(site.signals.is_cleared());
    for g in ["main", "minor", "turn"] {
        assert_eq!(site.state(g), GroupState::Red);
    }
}

/// The heartbeat for the flash-transfer relay: one edge every tick while healthy; none once
/// the monitor trips (the relay drops and the cabinet flasher takes the heads), none after
/// the lamps are left at all red on stopping.
#[test]
fn heartbeat_toggles_only_while_healthy() {
    const HEARTBEAT: u32 = 30;
    let mut site = started();
    let mut backend = site.pins.clone();
    site.signals
        .claim_heartbeat(&mut backend, HEARTBEAT, false)
        .unwrap();
    let edges = |site: &mut Site, ticks: usize| {
        let mut n = 0;
        let mut last = site.pins.level(HEARTBEAT).unwrap();
        for _ in 0..ticks {
            site.step_allowing_faults();
            let now = site.pins.level(HEARTBEAT).unwrap();
            n += usize::from(now != last);
            last = now;
        }
        n
    };
    assert_eq!(edges(&mut site, 50), 50, "a pulse edge every tick");
    assert_eq!(site.signals.heartbeats(), 50);
    site.pins.fail_writes(MAIN_GREEN, true);
    let after_fault = edges(&mut site, 50);
    assert!(after_fault <= 1, "{after_fault} edges after the fault");
    assert!(!site.pins.level(HEARTBEAT).unwrap(), "rests off");
    assert!(site.signals.fault().is_some());

    let mut site = started();
    let mut backend = site.pins.clone();
    site.signals
        .claim_heartbeat(&mut backend, HEARTBEAT, true)
        .unwrap();
    assert_eq!(edges(&mut site, 10), 10);
    site.signals.show_all_red().unwrap();
    assert!(
        site.pins.level(HEARTBEAT).unwrap(),
        "active low: off is high"
    );
}

/// Issue 12, finding 7: a camera knocked askew keeps sending frames with nothing in the
/// minor road's zone, so the minor phase was never called. With `no_activity_s` the phase is
/// recalled once its zones have seen nothing for that long, and released when they see a car.
#[test]
fn no_activity_recalls_a_phase_until_its_zones_see_something() {
    let text = SITE.replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nno_activity_s = 120.0",
    );
    let mut site = Site::new(&text, TICK_MS);
    // Steady traffic on the main road keeps its zone active; the minor road's zone (and the
    // crossing and turn lane) see nothing.
    site.set(Z_MAIN, CAR, 1);
    let minor_green = |s: &Site| s.state("minor") == GroupState::Green;
    assert_eq!(
        site.run_until(118.0, minor_green),
        None,
        "no call, no green"
    );
    assert_eq!(site.signals.controller().no_activity(), (0, 0));
    let served = site
        .run_until(120.0, minor_green)
        .expect("recalled and served");
    assert!(served >= 120.0, "served at {served:.1} s");
    let (vehicle, ped) = site.signals.controller().no_activity();
    // Phases in order main, minor, turn: minor and turn (vehicle), minor (pedestrian).
    assert_eq!((vehicle, ped), (0b110, 0b010));
    // A car in the minor zone: the diagnostic releases that phase at once.
    site.set(Z_MINOR, CAR, 1);
    site.step();
    site.set(Z_MINOR, CAR, 0);
    assert_eq!(site.signals.controller().no_activity().0, 0b100);
    let short = SITE.replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nno_activity_s = 30",
    );
    let err = edgewatch::signal::SignalPlan::new(&config(&short), ZONES, CLASSES).unwrap_err();
    assert!(
        err.to_string().starts_with("signals.no_activity_s"),
        "{err}"
    );
    // A camera outage is not inactivity: the clock restarts when detection is trusted again.
    let mut outage = Site::new(&text, TICK_MS);
    outage.set(Z_MAIN, CAR, 1);
    outage.camera_ok = false;
    outage.run_for(200.0);
    outage.camera_ok = true;
    outage.run_for(RECOVER + 60.0);
    assert_eq!(outage.signals.controller().no_activity(), (0, 0));
    // Off by default: the same minutes of quiet never recall anything.
    let mut quiet = Site::new(SITE, TICK_MS);
    quiet.set(Z_MAIN, CAR, 1);
    assert_eq!(quiet.run_until(400.0, minor_green), None);
}

/// Issue 12: the NTCIP 1202 "max presence" diagnostic. A zone held occupied on every tick (a
/// parked car, a shadow, a frozen track) for `max_presence_s` fails its phase to a constant
/// call, reported apart from no activity, until the zone shows one empty tick. Vehicle and
/// pedestrian demand are judged apart; a camera outage does not run the timer.
#[test]
fn max_presence_recalls_a_stuck_zone_until_it_shows_a_gap() {
    let text = SITE.replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nmax_presence_s = 120.0",
    );
    let mut site = Site::new(&text, TICK_MS);
    let stuck = |s: &Site| s.signals.controller().max_presence();
    // Phases in order main, minor, turn. A car parked in the minor road's zone, and traffic on
    // the main road that comes and goes (a gap every few seconds).
    site.set(Z_MINOR, CAR, 1);
    let mut t = 0u32;
    let mut minor_greens = 0;
    let mut traffic = |s: &mut Site, secs: u32| {
        for _ in 0..secs * 10 {
            t += 1;
            s.set(Z_MAIN, CAR, u32::from(t % 50 < 40));
            let was_green = s.state("minor") == GroupState::Green;
            s.step();
            minor_greens += u32::from(!was_green && s.state("minor") == GroupState::Green);
        }
    };
    traffic(&mut site, 118);
    assert_eq!(
        stuck(&site),
        (0, 0),
        "118 s of presence is not yet too long"
    );
    traffic(&mut site, 3);
    assert_eq!(
        stuck(&site),
        (0b010, 0),
        "the minor zone's presence failed it"
    );
    assert_eq!(site.signals.controller().no_activity(), (0, 0));
    // The phase keeps its call, and keeps being served, while the car stays.
    traffic(&mut site, 240);
    assert_eq!(stuck(&site), (0b010, 0));
    assert!(minor_greens >= 3, "minor served {minor_greens} times");
    // One empty tick clears it.
    site.set(Z_MAIN, CAR, 0);
    site.set(Z_MINOR, CAR, 0);
    site.step();
    assert_eq!(stuck(&site), (0, 0), "a gap clears the diagnostic");
    // The timer starts again from the gap: another 100 s of presence does not trip.
    site.set(Z_MINOR, CAR, 1);
    site.run_for(100.0);
    assert_eq!(stuck(&site), (0, 0));

    // A person standing in the crossing fails the minor phase's pedestrian demand only.
    let mut ped = Site::new(&text, TICK_MS);
    ped.set(Z_CROSSING, PERSON, 1);
    ped.run_for(121.0);
    assert_eq!(stuck(&ped), (0, 0b010));
    ped.set(Z_CROSSING, PERSON, 0);
    ped.step();
    assert_eq!(stuck(&ped), (0, 0));

    // Presence through a camera outage is not judged; the timer counts from the recovery.
    let mut outage = Site::new(&text, TICK_MS);
    outage.set(Z_MINOR, CAR, 1);
    outage.camera_ok = false;
    outage.run_for(200.0);
    outage.camera_ok = true;
    outage.run_for(RECOVER + 60.0);
    assert_eq!(stuck(&outage), (0, 0));
    outage.run_for(121.0);
    assert_eq!(
        stuck(&outage),
        (0b010, 0),
        "judged again once detection is trusted"
    );

    // Off by default.
    let mut off = Site::new(SITE, TICK_MS);
    off.set(Z_MINOR, CAR, 1);
    off.run_for(300.0);
    assert_eq!(stuck(&off), (0, 0));

    // 60..=86400 s, and the error names the key.
    for bad in ["30", "100000", "-5", "nan"] {
        let text = SITE.replace(
            "startup_flash_s = 3.0",
            &format!("startup_flash_s = 3.0\nmax_presence_s = {bad}"),
        );
        let err = edgewatch::signal::SignalPlan::new(&config(&text), ZONES, CLASSES).unwrap_err();
        assert!(
            err.to_string().starts_with("signals.max_presence_s"),
            "{bad}: {err}"
        );
    }
    let ok = SITE.replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nmax_presence_s = 60",
    );
    assert!(edgewatch::signal::SignalPlan::new(&config(&ok), ZONES, CLASSES).is_ok());
}
