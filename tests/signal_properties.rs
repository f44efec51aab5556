//! Property tests: hours of simulated operation of the test site with random traffic, pedestrians,
//! buttons, bus arrivals and camera dropouts, at random tick rates. The lamps are read back from
//! the simulated pins every tick and checked against the safety rules with the test's own copy
//! of the timings (not the crate's), then a pin fault is injected and the flash checked. Every
//! lamp has a field sense input looped back to it, so the read-back runs all along (a false
//! trip fails the case); half the cases break the field (a lamp wired with the wrong polarity)
//! instead of a pin write, and the read-back must catch it. Failing cases are saved in
//! `signal_properties.proptest-regressions` and replayed first.

mod signal_common;

use std::sync::atomic::{AtomicU64, Ordering};

use edgewatch::signal::GroupState;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use signal_common::Rng;
use signal_common::*;

/// Simulated hours per case.
const HOURS: f64 = 4.0;
/// Proptest cases.
const CASES: u32 = 24;
const EPS: f64 = 1e-6;

/// Groups in plan order, with their phase timing; `None` for the beacon.
const GROUPS: [(&str, Option<Timing>); 6] = [
    ("main", Some(MAIN)),
    ("minor", Some(MINOR)),
    ("ped", Some(MINOR)),
    ("bus-b", Some(MINOR)),
    ("turn", Some(TURN)),
    ("bus-coming", None),
];
const G_MAIN: usize = 0;
const G_MINOR: usize = 1;
const G_PED: usize = 2;
const G_BUS: usize = 3;
const G_TURN: usize = 4;
/// The conflict pairs of `SITE`, by group index.
const CONFLICTS: [(usize, usize); 7] = [(0, 1), (0, 2), (0, 3), (0, 4), (4, 1), (4, 2), (4, 3)];
/// Phases by their vehicle group: main, minor, turn.
const PHASE_GROUPS: [usize; 3] = [G_MAIN, G_MINOR, G_TURN];
/// Lamp pins by group and lamp index, as wired in `SITE`.
const LAMP_PINS: [&[u32]; 6] = [
    &[MAIN_RED, MAIN_AMBER, MAIN_GREEN],
    &[MINOR_RED, MINOR_AMBER, MINOR_GREEN],
    &[PED_DONT_WALK, PED_WALK],
    &[BUS_STOP, BUS_GO],
    &[TURN_RED, TURN_AMBER, TURN_GREEN],
    &[BEACON],
];

#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    tick_ms: u64,
    /// Arrivals per second on main, minor and turn.
    rates: [f64; 3],
    ped_rate: f64,
    bus_rate: f64,
    button_rate: f64,
    dropout_rate: f64,
    /// Where in the run (fraction) a pin fault is injected, and which lamp pin.
    fault_at: f64,
    fault_pin: usize,
    /// Break the field (a lamp's polarity) instead of the pin write.
    field_fault: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        any::<u64>(),
        25u64..=250,
        (0.0f64..0.4, 0.0f64..0.2, 0.0f64..0.1),
        0.0f64..0.05,
        0.0f64..0.02,
        0.0f64..0.005,
        0.0f64..0.002,
        0.9f64..0.99,
        0usize..14,
        any::<bool>(),
    )
        .prop_map(
            |(
                seed,
                tick_ms,
                (a, b, c),
                ped_rate,
                bus_rate,
                button_rate,
                dropout_rate,
                fault_at,
                fault_pin,
                field_fault,
            )| {
                Params {
                    seed,
                    tick_ms,
                    rates: [a, b, c],
                    ped_rate,
                    bus_rate,
                    button_rate,
                    dropout_rate,
                    fault_at,
                    fault_pin,
                    field_fault,
                }
            },
        )
}

/// A queue on an approach: arrivals at random, one departure every 2 s while green.
#[derive(Debug, Default, Clone, Copy)]
struct Queue {
    waiting: u32,
    next_departure: f64,
}

impl Queue {
    fn update(&mut self, rng: &mut Rng, rate: f64, dt: f64, green: bool, now: f64) {
        if rng.chance(rate * dt) {
            self.waiting += 1;
        }
        if !green {
            self.next_departure = now + 2.0;
        } else if self.waiting > 0 && now >= self.next_departure {
            self.waiting -= 1;
            self.next_departure = now + 2.0;
        }
    }
}

/// The world around the intersection, driven by what the lamps show.
#[derive(Debug)]
struct World {
    rng: Rng,
    queues: [Queue; 3],
    peds: u32,
    bus: u32,
    bus_leaves_at: Option<f64>,
    button_release: Option<f64>,
    button_pressed_at: f64,
    camera_bad_until: Option<f64>,
    last_bad: f64,
}

/// What the checker tracks per group.
#[derive(Debug, Clone, Copy)]
struct Track {
    state: GroupState,
    since: f64,
    row: bool,
    row_ended: f64,
}

/// Per phase: the green in progress.
#[derive(Debug, Clone, Copy, Default)]
struct GreenTrack {
    start: Option<f64>,
    call: Option<f64>,
    bus_seen: bool,
}

#[derive(Debug, Default)]
struct Counts {
    steps: u64,
    greens: u64,
    extended: u64,
    max_checks: u64,
    dropouts: u64,
    flash_checks: u64,
}

fn right_of_way(s: GroupState) -> bool {
    use GroupState::*;
    matches!(s, Green | Amber | AmberFlash | Walk | PedClearance | BusGo)
}

/// Lamp levels a state must show, by lamp index, at flash phase `on`.
fn lamps_of(s: GroupState, on: bool) -> [bool; 3] {
    use GroupState::*;
    match s {
        Red | DontWalk | BusStop => [true, false, false],
        Amber | Walk | BusGo => [false, true, false],
        Green => [false, false, true],
        RedFlash | PedClearance => [on, false, false],
        AmberFlash => [false, on, false],
        Dark => [false; 3],
        On => [on, false, false], // the test beacon flashes
        Invalid => [true; 3],
    }
}

fn simulate(p: &Params) -> Result<Counts, TestCaseError> {
    let mut site = Site::new(&with_sense(SITE), p.tick_ms);
    let dt = p.tick_ms as f64 / 1000.0;
    let end = HOURS * 3600.0;
    let fault_time = end * p.fault_at;
    let mut world = World {
        rng: Rng::new(p.seed),
        queues: [Queue::default(); 3],
        peds: 0,
        bus: 0,
        bus_leaves_at: None,
        button_release: None,
        button_pressed_at: 0.0,
        camera_bad_until: None,
        last_bad: f64::NEG_INFINITY,
    };
    let mut tracks = [Track {
        state: GroupState::Red,
        since: 0.0,
        row: false,
        row_ended: 0.0,
    }; 6];
    let mut greens = [GreenTrack::default(); 3];
    let mut pending = [false; 3];
    let mut ped_pending = false;
    let mut counts = Counts::default();
    while site.now() < fault_time {
        drive_world(&mut site, &mut world, p, &tracks, dt, &mut counts);
        site.step();
        counts.steps += 1;
        let now = site.now();
        check_pins(&site)?;
        let states: Vec<GroupState> = site.signals.states().map(|(_, s)| s).collect();
        check_conflicts(&states, now)?;
        for (g, &state) in states.iter().enumerate() {
            if state != tracks[g].state {
                check_transition(g, &tracks, &states, now, dt, &greens, &mut counts)?;
                update_track(g, &mut tracks, &mut greens, state, now);
            }
        }
        update_calls(
            &site,
            &world,
            &states,
            &mut pending,
            &mut ped_pending,
            &mut greens,
            now,
            dt,
        );
    }
    inject_fault(&mut site, p, &mut counts)?;
    Ok(counts)
}

/// Arrivals, departures, buttons and camera dropouts for the next tick.
fn drive_world(
    site: &mut Site,
    w: &mut World,
    p: &Params,
    tracks: &[Track; 6],
    dt: f64,
    counts: &mut Counts,
) {
    let now = site.now() + dt;
    for (i, &g) in PHASE_GROUPS.iter().enumerate() {
        let green = tracks[g].state == GroupState::Green;
        w.queues[i].update(&mut w.rng, p.rates[i], dt, green, now);
    }
    if w.rng.chance(p.ped_rate * dt) {
        w.peds += 1;
    }
    if tracks[G_PED].state == GroupState::Walk {
        w.peds = 0;
    }
    if w.bus == 0 && w.rng.chance(p.bus_rate * dt) {
        w.bus = 1;
    }
    let bus_may_go = matches!(tracks[G_BUS].state, GroupState::BusGo)
        || tracks[G_MINOR].state == GroupState::Green;
    if w.bus > 0 && bus_may_go && w.bus_leaves_at.is_none() {
        // Most buses pull away quickly; some dwell at the stop line long enough to use the
        // whole priority extension.
        let dwell = if w.rng.chance(0.3) {
            w.rng.range(8.0, 30.0)
        } else {
            w.rng.range(1.0, 6.0)
        };
        w.bus_leaves_at = Some(now + dwell);
    }
    if w.bus_leaves_at.is_some_and(|t| now >= t) {
        w.bus = 0;
        w.bus_leaves_at = None;
    }
    drive_button(site, w, p, dt, now);
    drive_camera(site, w, p, dt, now, counts);
}

fn drive_button(site: &mut Site, w: &mut World, p: &Params, dt: f64, now: f64) {
    match w.button_release {
        Some(t) if now >= t => {
            site.pins.set_input(BUTTON, true);
            w.button_release = None;
        }
        None if w.rng.chance(p.button_rate * dt) => {
            site.pins.set_input(BUTTON, false);
            w.button_pressed_at = now;
            w.button_release = Some(now + (4.0 * dt).max(0.3));
        }
        _ => {}
    }
}

fn drive_camera(
    site: &mut Site,
    w: &mut World,
    p: &Params,
    dt: f64,
    now: f64,
    counts: &mut Counts,
) {
    if let Some(until) = w.camera_bad_until {
        if now >= until {
            w.camera_bad_until = None;
        }
    } else if w.rng.chance(p.dropout_rate * dt) {
        w.camera_bad_until = Some(now + w.rng.range(1.0, 60.0));
        counts.dropouts += 1;
    }
    site.camera_ok = w.camera_bad_until.is_none();
    if !site.camera_ok {
        w.last_bad = now;
        // A frozen or dark camera reports anything; the controller must not act on it.
        for zone in site.occupancy.iter_mut() {
            for n in zone.iter_mut().take(CLASSES.len()) {
                *n = (w.rng.next_u64() % 3) as u32;
            }
        }
        return;
    }
    site.occupancy = vec![[0; edgewatch::config::MAX_CLASSES]; ZONES.len()];
    site.set(Z_MAIN, CAR, w.queues[0].waiting);
    site.set(Z_MINOR, CAR, w.queues[1].waiting);
    site.set(Z_TURN, CAR, w.queues[2].waiting);
    site.set(Z_CROSSING, PERSON, w.peds);
    site.set(Z_BUS, BUS, w.bus);
}

/// What reached the pins matches the reported states, lamp by lamp.
fn check_pins(site: &Site) -> Result<(), TestCaseError> {
    let on = site.clock_subsec_ms() < 500;
    for (g, (name, state)) in site.signals.states().enumerate() {
        let want = lamps_of(state, on);
        for (lamp, &pin) in LAMP_PINS[g].iter().enumerate() {
            prop_assert_eq!(
                site.lit(pin),
                want[lamp],
                "{} {:?} pin {} at {:.2} s",
                name,
                state,
                pin,
                site.now()
            );
        }
    }
    Ok(())
}

fn check_conflicts(states: &[GroupState], now: f64) -> Result<(), TestCaseError> {
    for &(a, b) in &CONFLICTS {
        let both = right_of_way(states[a]) && right_of_way(states[b]);
        prop_assert!(
            !both,
            "conflicting greens {:?}/{:?} at {:.2} s",
            states[a],
            states[b],
            now
        );
    }
    Ok(())
}

fn phase_of_group(g: usize) -> Option<usize> {
    PHASE_GROUPS.iter().position(|&v| v == g)
}

fn check_transition(
    g: usize,
    tracks: &[Track; 6],
    states: &[GroupState],
    now: f64,
    dt: f64,
    greens: &[GreenTrack; 3],
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    use GroupState::*;
    let (name, timing) = GROUPS[g];
    let Some(t) = timing else { return Ok(()) };
    let state = states[g];
    let prev = tracks[g];
    let shown = now - prev.since;
    match (prev.state, state) {
        (Green, Amber) if g != G_BUS => {
            prop_assert!(
                shown >= t.min_green - EPS,
                "{} green {:.2} s < min at {:.1}",
                name,
                shown,
                now
            );
            counts.greens += 1;
            let phase = phase_of_group(g).expect("vehicle group");
            check_max_green(name, t, greens[phase], now, dt, counts)?;
        }
        (Green, other) => prop_assert!(
            false,
            "{} green -> {:?} without amber at {:.1} s",
            name,
            other,
            now
        ),
        (Amber, Red) => prop_assert!(
            shown >= t.amber - EPS,
            "{} amber {:.2} s at {:.1}",
            name,
            shown,
            now
        ),
        (Amber, other) => prop_assert!(false, "{} amber -> {:?} at {:.1} s", name, other, now),
        (Walk, PedClearance) => {}
        (Walk, other) => prop_assert!(false, "walk -> {:?} at {:.1} s", other, now),
        (PedClearance, DontWalk) => {
            prop_assert!(
                shown >= PED_CLEARANCE - EPS,
                "clearance {:.2} s at {:.1}",
                shown,
                now
            )
        }
        _ => {}
    }
    if right_of_way(state) && !prev.row {
        for &(a, b) in &CONFLICTS {
            let other = if a == g {
                b
            } else if b == g {
                a
            } else {
                continue;
            };
            let all_red = GROUPS[other].1.expect("signal group").all_red;
            // A conflicting group that lost its right of way at this very tick has had no all-red.
            let ended = if tracks[other].row {
                now
            } else {
                tracks[other].row_ended
            };
            let red_for = now - ended;
            prop_assert!(
                red_for >= all_red - EPS,
                "{} green {:.2} s after {} ended (all-red {} s) at {:.1}",
                name,
                red_for,
                GROUPS[other].0,
                all_red,
                now
            );
        }
    }
    Ok(())
}

/// Green after the first conflicting call stays within max green, or within max green plus
/// the extension bound when a bus was there to be prioritised.
fn check_max_green(
    name: &str,
    t: Timing,
    green: GreenTrack,
    now: f64,
    dt: f64,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    let Some(call) = green.call else {
        return Ok(());
    };
    counts.max_checks += 1;
    let excess = now - call - t.max_green;
    if excess <= dt + EPS {
        return Ok(());
    }
    prop_assert!(
        green.bus_seen,
        "{} ran {:.2} s past max green with no bus, at {:.1}",
        name,
        excess,
        now
    );
    prop_assert!(
        excess <= t.extension + 2.0 * dt + EPS,
        "{} priority overran by {:.2} s at {:.1}",
        name,
        excess,
        now
    );
    counts.extended += 1;
    Ok(())
}

fn update_track(
    g: usize,
    tracks: &mut [Track; 6],
    greens: &mut [GreenTrack; 3],
    state: GroupState,
    now: f64,
) {
    let row = right_of_way(state);
    let track = &mut tracks[g];
    if track.row && !row {
        track.row_ended = now;
    }
    if let Some(phase) = phase_of_group(g) {
        if state == GroupState::Green {
            greens[phase] = GreenTrack {
                start: Some(now),
                call: None,
                bus_seen: false,
            };
        } else if track.state == GroupState::Green {
            greens[phase].start = None;
        }
    }
    *track = Track {
        state,
        since: now,
        row,
        row_ended: track.row_ended,
    };
}

/// The test's own model of calls, kept to what the controller surely has (an early guess would
/// make the max-green check stricter than the rule): detections while the camera is surely
/// trusted, a button held past its debounce, and recall on all phases while the camera is bad.
#[allow(clippy::too_many_arguments)]
fn update_calls(
    site: &Site,
    w: &World,
    states: &[GroupState],
    pending: &mut [bool; 3],
    ped_pending: &mut bool,
    greens: &mut [GreenTrack; 3],
    now: f64,
    dt: f64,
) {
    let trusted = site.camera_ok && now - w.last_bad > RECOVER + 2.0 * dt;
    let degraded = !site.camera_ok;
    let occ = &site.occupancy;
    let button = w.button_release.is_some() && now - w.button_pressed_at >= 0.05 + 2.0 * dt;
    let peds = (trusted && occ[Z_CROSSING][PERSON] > 0) || button || degraded;
    let bus = trusted && occ[Z_BUS][BUS] > 0;
    let demand = [
        trusted && occ[Z_MAIN][CAR] > 0,
        (trusted && occ[Z_MINOR][CAR] > 0) || bus || peds,
        trusted && occ[Z_TURN][CAR] > 0,
    ];
    if states[G_PED] == GroupState::Walk {
        *ped_pending = false;
    } else if peds {
        *ped_pending = true;
    }
    for (phase, &g) in PHASE_GROUPS.iter().enumerate() {
        if states[g] == GroupState::Green {
            pending[phase] = false;
        } else if demand[phase] || degraded {
            pending[phase] = true;
        }
    }
    for (phase, green) in greens.iter_mut().enumerate() {
        if green.start.is_none() {
            continue;
        }
        green.bus_seen |= occ[Z_BUS][BUS] > 0;
        let others = (0..3).any(|q| q != phase && pending[q]) || (phase != 1 && *ped_pending);
        if green.call.is_none() && others {
            green.call = Some(now);
        }
    }
}

/// A lamp pin stops accepting writes: the same tick must show the all-red flash, and keep it.
fn inject_fault(site: &mut Site, p: &Params, counts: &mut Counts) -> Result<(), TestCaseError> {
    let pins: Vec<u32> = LAMP_PINS.iter().flat_map(|l| l.iter().copied()).collect();
    let broken = pins[p.fault_pin % pins.len()];
    if p.field_fault {
        // The lamp shows the opposite of its pin from now on: caught once a steady command
        // meets it (a lamp flashing in antiphase still reads as flashing), well within 30 s.
        site.pins.set_lamp_polarity(broken, broken != MINOR_RED);
        let start = site.now();
        let fault = loop {
            let report = site.step_allowing_faults();
            if let Some(fault) = report.new_fault {
                break fault;
            }
            prop_assert!(
                site.now() - start < 30.0,
                "field fault on pin {} not caught",
                broken
            );
        };
        prop_assert!(format!("{fault:?}").starts_with("Field"), "{}", fault);
    } else {
        site.pins.fail_writes(broken, true);
        let first = site.step_allowing_faults();
        prop_assert!(
            first.fault_flash && first.new_fault.is_some(),
            "no flash at the faulty tick: {:?}",
            first
        );
    }
    for i in 0..(5_000 / p.tick_ms) {
        if i > 0 {
            prop_assert!(site.step_allowing_faults().fault_flash);
        }
        let on = site.clock_subsec_ms() < 500;
        for (g, lamps) in LAMP_PINS.iter().enumerate() {
            for (lamp, &pin) in lamps.iter().enumerate() {
                if pin == broken {
                    continue;
                }
                let red = lamp == 0 && [G_MAIN, G_MINOR, G_TURN].contains(&g);
                prop_assert_eq!(site.lit(pin), red && on, "pin {} in fault flash", pin);
            }
        }
        counts.flash_checks += 1;
    }
    Ok(())
}

trait SubsecMs {
    fn clock_subsec_ms(&self) -> u32;
}

impl SubsecMs for Site {
    fn clock_subsec_ms(&self) -> u32 {
        use edgewatch::clock::Clock;
        self.clock.now().subsec_millis()
    }
}

#[test]
fn safety_properties_hold_over_hours_of_random_operation() {
    let total = AtomicU64::new(0);
    let config = Config {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        // Where the regressions file goes (`proptest!` sets this; a bare runner must).
        source_file: Some(file!()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&params(), |p| {
        let c = simulate(&p)?;
        let sum = total.fetch_add(c.steps, Ordering::Relaxed) + c.steps;
        eprintln!(
            "signal_properties: {} steps ({} h at {} ms): {} greens, {} max-green checks ({} bus extensions), \
             {} dropouts, {} flash ticks after the injected fault; {} steps so far",
            c.steps, HOURS, p.tick_ms, c.greens, c.max_checks, c.extended, c.dropouts, c.flash_checks, sum
        );
        prop_assert!(c.greens > 0 || p.rates.iter().all(|&r| r < 0.01), "nothing happened: {:?}", c);
        Ok(())
    });
    eprintln!(
        "signal_properties: {} steps checked in total",
        total.load(Ordering::Relaxed)
    );
    result.unwrap();
}
