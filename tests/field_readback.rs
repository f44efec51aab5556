//! Field read-back (issue 12): with a sense input on every lamp, the monitor checks what the
//! heads show, not only what was commanded. The simulated pins loop each sense input back to
//! its lamp; faults are injected in that simulated field. Without sense inputs the monitor
//! still checks the output pins themselves, read back a tick after each write.

mod signal_common;

use std::time::Duration;

use edgewatch::clock::Clock;
use edgewatch::signal::{Fault, GroupState};
use signal_common::*;

const TICK_MS: u64 = 100;
const HEARTBEAT: u32 = 30;

fn sensed_site() -> Site {
    Site::new(&with_sense(SITE), TICK_MS)
}

/// `text`'s site with the heartbeat claimed, run until the minor road has green (main red).
fn minor_green_with_heartbeat(text: &str) -> Site {
    let mut site = Site::new(text, TICK_MS);
    let mut backend = site.pins.clone();
    site.signals
        .claim_heartbeat(&mut backend, HEARTBEAT, false)
        .unwrap();
    site.set(Z_MINOR, CAR, 1);
    run_to(&mut site, "minor", GroupState::Green, 120.0);
    site
}

/// No heartbeat pulse over the next 2 s.
fn assert_heartbeat_stopped(site: &mut Site) {
    let beats = site.signals.heartbeats();
    site.run_until(2.0, |_| false);
    assert_eq!(
        site.signals.heartbeats(),
        beats,
        "no heartbeat after a fault"
    );
}

/// Runs until `group` shows `state`, failing the test if it never does within `secs`.
fn run_to(site: &mut Site, group: &str, state: GroupState, secs: f64) {
    site.run_until(secs, |s| s.state(group) == state)
        .unwrap_or_else(|| panic!("`{group}` never showed {state} within {secs} s"));
}

/// Sticks the lamp on `pin` from now and ticks until the monitor trips (at most `secs`);
/// returns the fault and how long after the sticking it latched.
fn stick_until_fault(site: &mut Site, pin: u32, lit: bool, secs: f64) -> (Fault, f64) {
    let from = site.clock.now();
    site.pins.stick_lamp(pin, Some(lit), from);
    let start = site.now();
    while site.now() < start + secs {
        if let Some(fault) = site.step_allowing_faults().new_fault {
            return (fault, site.now() - start);
        }
    }
    panic!("no fault within {secs} s of sticking pin {pin} {lit}");
}

/// A healthy field never trips the read-back: an hour of traffic, pedestrians, buses, camera
/// loss and maintenance flash (the flashing lamps read dark half the time), with every lamp
/// sensed and half the inputs active-low.
#[test]
fn a_healthy_field_never_trips_over_an_hour() {
    let mut site = sensed_site();
    let mut rng = Rng::new(11);
    for i in 0..36_000u64 {
        for (zone, class) in [
            (Z_MAIN, CAR),
            (Z_MINOR, CAR),
            (Z_TURN, CAR),
            (Z_CROSSING, PERSON),
            (Z_BUS, BUS),
        ] {
            if rng.chance(0.02) {
                site.set(zone, class, (rng.next_u64() % 3) as u32);
            }
        }
        site.camera_ok = !(10_000..10_300).contains(&i);
        match i {
            20_000 => site.signals.set_maintenance_flash(true),
            21_000 => site.signals.set_maintenance_flash(false),
            _ => {}
        }
        site.step();
    }
    let (checks, read_errors) = site.signals.field_checks();
    assert_eq!(checks, 36_000, "the field is checked every tick");
    assert_eq!(read_errors, 0);
    // And the pins, from the second tick (the first has no checked command to compare).
    assert_eq!(site.signals.pin_checks(), (35_999, 0), "and the pins too");
}

/// The monitor's own check of the pins, with no sense input at all: a lamp pin that something
/// else drives (a second process, `pinctrl set` over SSH) while the writes still succeed is
/// found at the tick it first differs from the command, and flash goes on the pins in that
/// tick; the heartbeat stops.
#[test]
fn a_pin_driven_by_someone_else_latches_flash_in_that_tick() {
    let mut site = minor_green_with_heartbeat(SITE);
    let (checks, _) = site.signals.pin_checks();
    site.run_for(1.0);
    assert_eq!(
        site.signals.pin_checks().0,
        checks + 10,
        "checked every tick"
    );

    // Main's green (active high) driven lit by someone else while minor has green.
    site.pins.hold_pin(MAIN_GREEN, Some(true));
    let fault = site
        .step_allowing_faults()
        .new_fault
        .expect("caught in this tick");
    assert_eq!(
        fault.to_string(),
        "`main` green (pin 3): commanded dark, the pin shows it lit"
    );
    assert!(matches!(
        fault,
        Fault::PinMismatch {
            pin: MAIN_GREEN,
            ..
        }
    ));
    assert_eq!(
        site.state("minor"),
        GroupState::RedFlash,
        "flash in the same tick"
    );
    assert_heartbeat_stopped(&mut site);

    // A pin held at the level the command wants is no fault until the command changes: an
    // active-low red held high (dark) is caught as soon as it should light.
    // Here during the start-up flash, where a flashing red may read either way.
    let mut site = Site::new(SITE, TICK_MS);
    site.run_for(1.0);
    site.pins.hold_pin(MINOR_RED, Some(true));
    let fault = (0..600)
        .find_map(|_| site.step_allowing_faults().new_fault)
        .expect("the held red is caught");
    assert!(
        site.signals.controller().stage() != edgewatch::signal::Stage::StartupFlash,
        "not while the red may flash"
    );
    assert_eq!(
        fault.to_string(),
        "`minor` red (pin 4): commanded lit, the pin shows it dark"
    );
}

/// Once the watchdog has forced the safe state the pins show it, not the controller's
/// command: that is no fault.
#[test]
fn a_forced_safe_state_is_not_a_pin_fault() {
    let mut site = Site::new(SITE, TICK_MS);
    site.set(Z_MINOR, CAR, 1);
    run_to(&mut site, "minor", GroupState::Green, 120.0);
    site.signals
        .safe_state()
        .force_safe(site.clock.now())
        .unwrap();
    site.run_for(30.0);
    assert!(site.signals.fault().is_none());
}

/// A welded green on the main road while the minor road has green: the field shows
/// conflicting greens, which latch flash after the conflict persistence (450 ms by default;
/// TS-2 wants no trip under 200 ms and a trip by 500 ms), and the heartbeat stops.
#[test]
fn a_welded_green_is_a_field_conflict_within_half_a_second() {
    let mut site = minor_green_with_heartbeat(&with_sense(SITE));
    let (fault, after) = stick_until_fault(&mut site, MAIN_GREEN, true, 5.0);
    assert_eq!(
        fault.to_string(),
        "field shows conflicting greens: `main` and `minor`"
    );
    assert!((0.45..=0.5).contains(&after), "latched after {after:.2} s");
    // The monitor's flash from the next tick, and the relay's pulse stops.
    site.step_allowing_faults();
    assert_eq!(site.state("minor"), GroupState::RedFlash);
    assert_heartbeat_stopped(&mut site);
}

/// A conflict shorter than the persistence is a relay's transfer time, not a fault.
#[test]
fn a_short_glitch_does_not_trip() {
    let mut site = sensed_site();
    site.set(Z_MINOR, CAR, 1);
    run_to(&mut site, "minor", GroupState::Green, 120.0);
    site.pins
        .stick_lamp(MAIN_GREEN, Some(true), site.clock.now());
    for _ in 0..3 {
        site.step();
    }
    site.pins.stick_lamp(MAIN_GREEN, None, Duration::ZERO);
    site.run_for(30.0);
    assert!(site.signals.fault().is_none());
}

/// A burnt-out red with every lamp of the head sensed is a red fail: no lamp lit.
#[test]
fn a_burnt_out_red_is_a_red_fail() {
    let mut site = sensed_site();
    site.set(Z_MINOR, CAR, 1);
    run_to(&mut site, "minor", GroupState::Green, 120.0);
    assert_eq!(site.state("main"), GroupState::Red);
    let (fault, after) = stick_until_fault(&mut site, MAIN_RED, false, 5.0);
    assert_eq!(fault.to_string(), "`main`: field shows no lamp lit");
    assert!((1.0..=1.001).contains(&after), "latched after {after:.2} s");
}

/// A welded amber on a red head shows two lamps: dual indication.
#[test]
fn a_welded_amber_is_a_dual_indication() {
    let mut site = sensed_site();
    site.run_for(1.0);
    let (fault, _) = stick_until_fault(&mut site, TURN_AMBER, true, 5.0);
    assert_eq!(
        fault.to_string(),
        "`turn`: field shows 2 lamps lit (dual indication)"
    );
}

/// A lamp that is not the whole head: only the walk lamp is sensed, and it stays dark when
/// commanded lit.
#[test]
fn a_single_sensed_lamp_that_does_not_follow_is_a_mismatch() {
    let text = SITE.replace(
        "walk = { pin = 8 }",
        "walk = { pin = 8, sense = { pin = 108 } }",
    );
    let mut site = Site::new(&text, TICK_MS);
    site.pins.stick_lamp(PED_WALK, Some(false), Duration::ZERO);
    site.set(Z_CROSSING, PERSON, 1);
    // Dark while commanded dark: no fault until the walk is commanded.
    run_to(&mut site, "ped", GroupState::Walk, 180.0);
    let commanded = site.now();
    let fault = loop {
        if let Some(fault) = site.step_allowing_faults().new_fault {
            break fault;
        }
        assert!(site.now() - commanded < 1.5, "no mismatch fault");
    };
    assert_eq!(
        fault.to_string(),
        "`ped` walk: commanded lit, field shows it dark"
    );
    // The field is read at the start of the next tick (a tick for the relays to follow), and
    // counted from the last check that saw it right: the one in the tick the walk began.
    let after = site.now() - commanded;
    assert!(
        (0.999..=1.001).contains(&after),
        "latched after {after:.2} s"
    );
}

/// The case reproduced in the issue: a green wired active-low on a board configured
/// active-high. The commands pass every check, but the field shows the green lit whenever it
/// is commanded dark; read-back latches flash before any green is served.
#[test]
fn an_active_low_typo_is_caught_before_the_first_green() {
    let mut site = sensed_site();
    site.pins.set_lamp_polarity(MAIN_GREEN, true);
    let mut fault = None;
    while fault.is_none() && site.now() < 20.0 {
        fault = site.step_allowing_faults().new_fault;
    }
    let fault = fault.expect("read-back trips");
    assert!(
        site.now() < STARTUP_FLASH + STARTUP,
        "tripped at {:.1} s, after the start-up",
        site.now()
    );
    assert!(
        matches!(
            fault,
            Fault::FieldDualIndication { .. } | Fault::FieldMismatch { .. }
        ),
        "{fault}"
    );
    assert!(fault.to_string().starts_with("`main`"), "{fault}");
}

/// Without sense inputs nothing is read back, and a stuck lamp goes unseen (the case the
/// sense inputs exist for).
#[test]
fn without_sense_inputs_nothing_is_checked() {
    let mut site = Site::new(SITE, TICK_MS);
    site.run_for(60.0);
    assert_eq!(site.signals.field_checks(), (0, 0));
}

/// Sense pins are claimed like any other: a clash names both keys.
#[test]
fn a_sense_pin_may_not_reuse_a_pin() {
    let text = SITE.replace(
        "green = { pin = 3 }",
        "green = { pin = 3, sense = { pin = 20 } }",
    );
    let err = edgewatch::signal::SignalPlan::new(&config(&text), ZONES, CLASSES).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signals.groups[0].green.sense.pin: pin 20 is already used by signals.inputs[0].pin"
    );
    let text = SITE.replace(
        "startup_flash_s = 3.0",
        "startup_flash_s = 3.0\nsense_conflict_ms = 50",
    );
    let err = edgewatch::signal::SignalPlan::new(&config(&text), ZONES, CLASSES).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signals.sense_conflict_ms: 50 is not in 100..=1000"
    );
}
