//! Property tests: hours of simulated operation of the test site with random traffic, pedestrians,
//! buttons, bus arrivals and camera dropouts, at random tick rates. The lamps are read back from
//! the simulated pins every tick and checked against the safety rules with the test's own copy
//! of the timings (not the crate's). Every lamp has a field sense input looped back to it, so the
//! read-back runs all along (a false trip fails the case). At a random time a fault is injected
//! and the flash checked: half the cases break the field (a lamp wired with the wrong polarity)
//! instead of a pin write, and the read-back must catch it; then the fault is reset and the
//! hour goes on. At random times the clearance of a stop or a watchdog breach is requested
//! (`request_clearance`): the running phase must end in order within the longest clearance,
//! then all red is left on the heads (`show_all_red`) and the unit reset. After the power-up and
//! every reset (one more comes at random during the first start-up) the start-up flash and
//! all-red are checked; every walk, bus head start, amber and pedestrian clearance is timed from
//! the lamps. The case parameters (seed, tick, rates and the times of the injected events) are
//! printed on failure, and failing cases are saved in `signal_properties.proptest-regressions`
//! and replayed first.

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

/// The clearance a stop or watchdog breach may need, by the test's copy of the timings: the
/// minor phase's full flashing don't walk (a walk cut short), amber and all-red.
const LONGEST_CLEARANCE: f64 = PED_CLEARANCE + MINOR.amber + MINOR.all_red;
/// Ticks a clearance may take past `LONGEST_CLEARANCE` before `is_cleared()`: the tick that
/// sees the request, then one for each of the three intervals (each ends at the first tick at
/// or after its time). The lamps reach all red within one tick past it (amber ends before
/// the all-red); `is_cleared()` waits for the end of that all-red, and at a tick that does
/// not divide the intervals (85 ms: 12.15 s, the saved regression) comes later than one tick
/// past `longest_clearance()`.
const CLEARED_TICKS: f64 = 4.0;

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
    /// Where in the run (fraction) a pin fault is injected, and which lamp pin; the fault is
    /// reset after 5 s of flash and the run goes on.
    fault_at: f64,
    fault_pin: usize,
    /// Break the field (a lamp's polarity) instead of the pin write.
    field_fault: bool,
    /// Clearance requests (a stop or a watchdog breach): where in the run (fraction), how
    /// long (s) all red is held once cleared before the lamps are left at all red and reset,
    /// and what to aim at from there (see `Aim`), at which fraction of its interval.
    clearances: Vec<(f64, f64, Aim, f64)>,
    /// A reset this many seconds after power-up, within the start-up flash or all-red.
    startup_reset_s: f64,
}

fn params() -> impl Strategy<Value = Params> {
    (
        (any::<u64>(), 25u64..=250),
        (0.0f64..0.4, 0.0f64..0.2, 0.0f64..0.1),
        (0.0f64..0.05, 0.0f64..0.02, 0.0f64..0.005, 0.0f64..0.002),
        (0.2f64..0.95, 0usize..14, any::<bool>()),
        prop::collection::vec(
            (
                0.0f64..0.9,
                0.0f64..30.0,
                prop_oneof![
                    Just(Aim::Now),
                    Just(Aim::Walk),
                    Just(Aim::HeadStart),
                    Just(Aim::Green)
                ],
                0.0f64..1.0,
            ),
            4..=12,
        ),
        0.0f64..7.5,
    )
        .prop_map(
            |(
                (seed, tick_ms),
                (a, b, c),
                (ped_rate, bus_rate, button_rate, dropout_rate),
                (fault_at, fault_pin, field_fault),
                clearances,
                startup_reset_s,
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
                    clearances,
                    startup_reset_s,
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
    /// Walks shown in full, and walks cut short by a clearance request (then timed clearance).
    walks: u64,
    cut_walks: u64,
    /// Bus head starts shown in full before the minor green, and ended by a clearance request.
    head_starts: u64,
    cut_head_starts: u64,
    /// Start-up sequences (flash, all red) checked up to the first right of way.
    startups: u64,
    resets: u64,
    /// Clearances run to `is_cleared()` and all red, and greens they cut before min green.
    clearances: u64,
    cut_greens: u64,
    faults: u64,
}

/// The start-up sequence in progress: since the power-up or a reset, no right of way yet.
#[derive(Debug, Clone, Copy)]
struct Boot {
    reset_at: f64,
    /// First tick showing the start-up all red.
    red_at: Option<f64>,
}

/// A clearance request in progress.
#[derive(Debug, Clone, Copy)]
struct Clearing {
    at: f64,
    /// How long to hold all red once cleared, before `show_all_red()` and the reset.
    hold: f64,
    /// First tick at which `is_cleared()` held.
    cleared_at: Option<f64>,
}

/// Everything the checker follows from the lamps, tick by tick.
#[derive(Debug)]
struct Checker {
    tracks: [Track; 6],
    greens: [GreenTrack; 3],
    pending: [bool; 3],
    ped_pending: bool,
    boot: Option<Boot>,
    clearing: Option<Clearing>,
    /// When the bus B came on ahead of the minor green.
    head_start: Option<f64>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            tracks: [Track {
                state: GroupState::Red,
                since: 0.0,
                row: false,
                row_ended: 0.0,
            }; 6],
            greens: [GreenTrack::default(); 3],
            pending: [false; 3],
            ped_pending: false,
            boot: Some(Boot {
                reset_at: 0.0,
                red_at: None,
            }),
            clearing: None,
            head_start: None,
        }
    }

    /// After a reset (or a fault): each group tracked as showing `states` from `now`, any right
    /// of way ended now, calls forgotten (the controller forgets them too), start-up expected.
    fn restart(&mut self, states: &[GroupState], now: f64) {
        for (track, &state) in self.tracks.iter_mut().zip(states) {
            let row_ended = if track.row { now } else { track.row_ended };
            *track = Track {
                state,
                since: now,
                row: right_of_way(state),
                row_ended,
            };
        }
        self.greens = [GreenTrack::default(); 3];
        self.pending = [false; 3];
        self.ped_pending = false;
        self.boot = Some(Boot {
            reset_at: now,
            red_at: None,
        });
        self.clearing = None;
        self.head_start = None;
    }
}

/// When a clearance request comes, once its time in the run is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// At once.
    Now,
    /// During the next walk (at the given fraction of walk_s).
    Walk,
    /// During the next bus head start.
    HeadStart,
    /// During the next vehicle green, before the longest min green is over.
    Green,
}

/// A clearance request waiting for what it aims at: (aim, fraction, hold), and the time the
/// aimed interval began; after `AIM_FOR` s without one it comes anyway.
type Armed = (Aim, f64, f64, Option<f64>);
const AIM_FOR: f64 = 600.0;

/// What the test injects, at a time in the run.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// `request_clearance()`, holding all red this long once cleared, aimed, at a fraction.
    Clearance(f64, Aim, f64),
    /// The pin or field fault of the parameters, then its reset.
    Fault,
    /// A reset during the start-up sequence.
    StartupReset,
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
    let (_, longest) = site.signals.plan().longest_clearance();
    prop_assert!(
        (longest.as_secs_f64() - LONGEST_CLEARANCE).abs() < EPS,
        "the plan's longest clearance {:?} is not the test's {} s",
        longest,
        LONGEST_CLEARANCE
    );
    let dt = p.tick_ms as f64 / 1000.0;
    let end = HOURS * 3600.0;
    // Latest last, to pop.
    let mut events: Vec<(f64, Event)> = p
        .clearances
        .iter()
        .map(|&(at, hold, aim, frac)| (end * at, Event::Clearance(hold, aim, frac)))
        .chain([
            (end * p.fault_at, Event::Fault),
            (p.startup_reset_s, Event::StartupReset),
        ])
        .collect();
    events.sort_by(|a, b| b.0.total_cmp(&a.0));
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
    let mut ck = Checker::new();
    let mut armed: Option<Armed> = None;
    let mut armed_at = 0.0;
    let mut counts = Counts::default();
    while site.now() < end {
        let now = site.now();
        // One injected event at a time: nothing new while a clearance runs or waits.
        if let Some((aim, frac, hold, Some(began))) = armed {
            let span = match aim {
                Aim::Now => 0.0,
                Aim::Walk => WALK,
                Aim::HeadStart => HEAD_START,
                Aim::Green => MAIN.min_green,
            };
            if now >= began + frac * span {
                armed = None;
                request_clearance(&mut site, &mut ck, hold);
            }
        } else if armed.is_none()
            && ck.clearing.is_none()
            && events.last().is_some_and(|&(at, _)| at <= now)
        {
            let (_, event) = events.pop().expect("an event");
            match event {
                Event::Clearance(hold, Aim::Now, _) => request_clearance(&mut site, &mut ck, hold),
                Event::Clearance(hold, aim, frac) => {
                    armed = Some((aim, frac, hold, None));
                    armed_at = now;
                }
                Event::Fault => {
                    let broken = inject_fault(&mut site, &mut world, &mut ck, p, &mut counts)?;
                    site.pins.fail_writes(broken, false);
                    site.pins.set_lamp_polarity(broken, broken == MINOR_RED);
                    counts.faults += 1;
                    reset(&mut site, &world, &mut ck, dt, &mut counts)?;
                    continue;
                }
                // Only while nothing has had a right of way since the last reset (a reset
                // clears a fault or restarts a cleared unit; it never cuts a phase short).
                Event::StartupReset if ck.boot.is_some() => {
                    reset(&mut site, &world, &mut ck, dt, &mut counts)?;
                    continue;
                }
                Event::StartupReset => {}
            }
        }
        if let Some(Clearing {
            cleared_at: Some(cleared),
            hold,
            ..
        }) = ck.clearing
        {
            if now >= cleared + hold {
                leave_all_red(&mut site)?;
                counts.clearances += 1;
                reset(&mut site, &world, &mut ck, dt, &mut counts)?;
                continue;
            }
        }
        let before = ck.tracks;
        drive_world(&mut site, &mut world, p, &ck.tracks, dt, &mut counts);
        site.step();
        counts.steps += 1;
        observe(&site, &world, &mut ck, dt, &mut counts)?;
        if let Some((aim, _, _, began @ None)) = &mut armed {
            let started = |g: usize, s: GroupState| {
                ck.tracks[g].state == s && before[g].state != s && ck.tracks[g].since == site.now()
            };
            let hit = match *aim {
                Aim::Walk => started(G_PED, GroupState::Walk),
                Aim::HeadStart => ck.head_start == Some(site.now()),
                Aim::Green => PHASE_GROUPS.iter().any(|&g| started(g, GroupState::Green)),
                Aim::Now => true,
            } || site.now() - armed_at > AIM_FOR;
            if hit {
                *began = Some(site.now());
            }
        }
    }
    Ok(counts)
}

fn request_clearance(site: &mut Site, ck: &mut Checker, hold: f64) {
    site.signals.request_clearance();
    ck.clearing = Some(Clearing {
        at: site.now(),
        hold,
        cleared_at: None,
    });
}

/// Checks what the lamps show after a tick, and follows it.
fn observe(
    site: &Site,
    world: &World,
    ck: &mut Checker,
    dt: f64,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    let now = site.now();
    check_pins(site)?;
    let states: Vec<GroupState> = site.signals.states().map(|(_, s)| s).collect();
    check_conflicts(&states, now)?;
    check_startup(ck, &states, now, dt, counts)?;
    check_clearing(site, ck, &states, now, dt)?;
    check_head_start(ck, &states, now, counts)?;
    let clearing = ck.clearing.is_some();
    for (g, &state) in states.iter().enumerate() {
        if state != ck.tracks[g].state {
            check_transition(g, ck, &states, now, dt, clearing, counts)?;
            update_track(g, &mut ck.tracks, &mut ck.greens, state, now);
        }
    }
    update_calls(site, world, &states, ck, now, dt);
    Ok(())
}

/// A reset as `edgewatch ctl reset-fault` does it: `reset()`, then a tick straight away (at the
/// same clock time), which must not find a fault. The start-up sequence is checked from here.
fn reset(
    site: &mut Site,
    world: &World,
    ck: &mut Checker,
    dt: f64,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    let now = site.now();
    let states: Vec<GroupState> = site.signals.states().map(|(_, s)| s).collect();
    ck.restart(&states, now);
    prop_assert!(site.signals.reset(), "reset refused at {:.2} s", now);
    counts.resets += 1;
    let report = site.signals.tick(&site.occupancy, site.camera_ok);
    prop_assert!(
        report.new_fault.is_none() && !report.fault_flash,
        "fault right after the reset at {:.2} s: {:?}",
        now,
        report
    );
    prop_assert!(
        !site.signals.controller().is_clearing(),
        "still clearing after the reset"
    );
    observe(site, world, ck, dt, counts)
}

/// Once cleared, the lamps are left at all red (`show_all_red`): no right of way anywhere.
fn leave_all_red(site: &mut Site) -> Result<(), TestCaseError> {
    prop_assert!(site.signals.is_cleared());
    let shown = site.signals.show_all_red();
    prop_assert!(shown.is_ok(), "show_all_red: {:?}", shown);
    check_pins(site)?;
    for (g, (name, state)) in site.signals.states().enumerate() {
        let want = match g {
            G_PED => GroupState::DontWalk,
            G_BUS => GroupState::BusStop,
            5 => GroupState::Dark,
            _ => GroupState::Red,
        };
        prop_assert_eq!(
            state,
            want,
            "{} after show_all_red at {:.2} s",
            name,
            site.now()
        );
    }
    for pin in RIGHT_OF_WAY {
        prop_assert!(!site.lit(pin), "pin {} lit after show_all_red", pin);
    }
    Ok(())
}

/// After the power-up and every reset: vehicle reds flashing (pedestrian and bus heads dark)
/// for the start-up flash, then all red for the start-up all-red, before any right of way.
fn check_startup(
    ck: &mut Checker,
    states: &[GroupState],
    now: f64,
    dt: f64,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    use GroupState::*;
    let Some(boot) = &mut ck.boot else {
        return Ok(());
    };
    // Unless cleared for good, the first phase follows the start-up all red (one tick late at
    // most for each of the two intervals).
    prop_assert!(
        ck.clearing.is_some() || now - boot.reset_at <= STARTUP_FLASH + STARTUP + 2.0 * dt + EPS,
        "no right of way {:.2} s after the reset at {:.2} s: {:?}",
        now - boot.reset_at,
        boot.reset_at,
        states
    );
    let vehicles = |s: GroupState| PHASE_GROUPS.iter().all(|&g| states[g] == s);
    let flash = vehicles(RedFlash) && states[G_PED] == Dark && states[G_BUS] == Dark;
    let all_red = vehicles(Red) && states[G_PED] == DontWalk && states[G_BUS] == BusStop;
    if states.iter().any(|&s| right_of_way(s)) {
        let Some(red_at) = boot.red_at else {
            return Err(TestCaseError::fail(format!(
                "right of way at {now:.2} s with no start-up all red since {:.2} s: {states:?}",
                boot.reset_at
            )));
        };
        prop_assert!(
            red_at - boot.reset_at >= STARTUP_FLASH - EPS,
            "start-up flash {:.2} s (from {:.2} s)",
            red_at - boot.reset_at,
            boot.reset_at
        );
        prop_assert!(
            now - red_at >= STARTUP - EPS,
            "start-up all red {:.2} s (from {:.2} s), then {:?}",
            now - red_at,
            red_at,
            states
        );
        counts.startups += 1;
        ck.boot = None;
    } else if all_red {
        boot.red_at.get_or_insert(now);
    } else {
        prop_assert!(
            flash && boot.red_at.is_none(),
            "start-up (since {:.2} s, all red from {:?}) shows {:?} at {:.2} s",
            boot.reset_at,
            boot.red_at,
            states,
            now
        );
    }
    Ok(())
}

/// After `request_clearance()`: no new right of way; all right of way ended within the longest
/// clearance plus a tick; `is_cleared()` soon after, and only with no right of way.
fn check_clearing(
    site: &Site,
    ck: &mut Checker,
    states: &[GroupState],
    now: f64,
    dt: f64,
) -> Result<(), TestCaseError> {
    let Some(c) = &mut ck.clearing else {
        return Ok(());
    };
    use GroupState::*;
    let since = now - c.at;
    for (g, &state) in states.iter().enumerate() {
        let row = right_of_way(state);
        let prev = ck.tracks[g].state;
        // Only the running right of way may go on, towards its end.
        let goes_on =
            state == prev || matches!((prev, state), (Green, Amber) | (Walk, PedClearance));
        prop_assert!(
            !row || goes_on,
            "{} {:?} -> {:?} {:.2} s after the clearance request",
            GROUPS[g].0,
            prev,
            state,
            since
        );
        prop_assert!(
            !row || since <= LONGEST_CLEARANCE + dt + EPS,
            "{} still {:?} {:.2} s after the clearance request (longest clearance {} s)",
            GROUPS[g].0,
            state,
            since,
            LONGEST_CLEARANCE
        );
    }
    if site.signals.is_cleared() {
        prop_assert!(
            !states.iter().any(|&s| right_of_way(s)),
            "is_cleared() with {:?}",
            states
        );
        c.cleared_at.get_or_insert(now);
    } else {
        prop_assert!(
            c.cleared_at.is_none(),
            "is_cleared() true at {:?}, false again at {:.2} s",
            c.cleared_at,
            now
        );
        prop_assert!(
            since <= LONGEST_CLEARANCE + CLEARED_TICKS * dt + EPS,
            "not cleared {:.2} s after the request (longest clearance {} s): {:?}",
            since,
            LONGEST_CLEARANCE,
            states
        );
    }
    Ok(())
}

/// A bus B shown ahead of the minor green (minor red, don't walk) stays on for the head start,
/// and the minor green follows it; only a clearance request may end it first.
fn check_head_start(
    ck: &mut Checker,
    states: &[GroupState],
    now: f64,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    use GroupState::*;
    let bus_go = states[G_BUS] == BusGo;
    let minor = states[G_MINOR];
    match ck.head_start {
        None => {
            if bus_go && ck.tracks[G_BUS].state != BusGo && minor != Green {
                prop_assert!(
                    minor == Red && states[G_PED] == DontWalk,
                    "B with minor {:?}, ped {:?} at {:.2} s",
                    minor,
                    states[G_PED],
                    now
                );
                ck.head_start = Some(now);
            }
        }
        Some(from) if minor == Green => {
            prop_assert!(bus_go, "B off as the minor green starts at {:.2} s", now);
            prop_assert!(
                now - from >= HEAD_START - EPS,
                "bus head start {:.2} s at {:.2} s",
                now - from,
                now
            );
            counts.head_starts += 1;
            ck.head_start = None;
        }
        Some(from) if !bus_go => {
            prop_assert!(
                ck.clearing.is_some(),
                "head start from {:.2} s ended without the green at {:.2} s: {:?}",
                from,
                now,
                states
            );
            counts.cut_head_starts += 1;
            ck.head_start = None;
        }
        Some(from) => prop_assert!(
            minor == Red && states[G_PED] == DontWalk,
            "during the head start from {:.2} s: minor {:?}, ped {:?} at {:.2} s",
            from,
            minor,
            states[G_PED],
            now
        ),
    }
    Ok(())
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

/// A group's lamps change: the interval that ended ran its time, and a right of way starts
/// only after the all-red of every conflicting group. `clearing`: a clearance was requested
/// (greens may end before min green, walks may be cut to their flashing don't walk).
fn check_transition(
    g: usize,
    ck: &Checker,
    states: &[GroupState],
    now: f64,
    dt: f64,
    clearing: bool,
    counts: &mut Counts,
) -> Result<(), TestCaseError> {
    use GroupState::*;
    let (tracks, greens) = (&ck.tracks, &ck.greens);
    let (name, timing) = GROUPS[g];
    let Some(t) = timing else { return Ok(()) };
    let state = states[g];
    let prev = tracks[g];
    let shown = now - prev.since;
    match (prev.state, state) {
        (Green, Amber) if g != G_BUS => {
            if clearing && shown < t.min_green - EPS {
                counts.cut_greens += 1;
            } else {
                prop_assert!(
                    shown >= t.min_green - EPS,
                    "{} green {:.2} s < min at {:.1}",
                    name,
                    shown,
                    now
                );
            }
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
        (Walk, PedClearance) if clearing && shown < WALK - EPS => counts.cut_walks += 1,
        (Walk, PedClearance) => {
            prop_assert!(
                shown >= WALK - EPS,
                "walk {:.2} s < walk_s at {:.1}",
                shown,
                now
            );
            counts.walks += 1;
        }
        (Walk, other) => prop_assert!(false, "walk -> {:?} at {:.1} s", other, now),
        // Walk again at once (nobody else waiting) or steady don't walk.
        (PedClearance, DontWalk | Walk) => {
            prop_assert!(
                shown >= PED_CLEARANCE - EPS,
                "clearance {:.2} s at {:.1}",
                shown,
                now
            )
        }
        (PedClearance, other) => {
            prop_assert!(false, "ped clearance -> {:?} at {:.1} s", other, now)
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
fn update_calls(
    site: &Site,
    w: &World,
    states: &[GroupState],
    ck: &mut Checker,
    now: f64,
    dt: f64,
) {
    let (pending, ped_pending, greens) = (&mut ck.pending, &mut ck.ped_pending, &mut ck.greens);
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

/// A lamp pin stops accepting writes, and the same tick must show the all-red flash; or the lamp
/// is wired with the wrong polarity, and the read-back must catch it. Either way the flash is
/// checked for 5 s. Returns the broken pin, for the repair.
fn inject_fault(
    site: &mut Site,
    world: &mut World,
    ck: &mut Checker,
    p: &Params,
    counts: &mut Counts,
) -> Result<u32, TestCaseError> {
    let pins: Vec<u32> = LAMP_PINS.iter().flat_map(|l| l.iter().copied()).collect();
    let broken = pins[p.fault_pin % pins.len()];
    let dt = p.tick_ms as f64 / 1000.0;
    if p.field_fault {
        // The lamp shows the opposite of its pin from now on: caught once a steady command
        // meets it (a lamp flashing in antiphase still reads as flashing; the bus beacon
        // flashes as long as a bus waits), well within 30 s of steady commands. Until then
        // the intersection runs on, and is checked, as usual.
        site.pins.set_lamp_polarity(broken, broken != MINOR_RED);
        let (group, lamp) = LAMP_PINS
            .iter()
            .enumerate()
            .find_map(|(g, l)| Some((g, l.iter().position(|&x| x == broken)?)))
            .expect("a lamp pin");
        let start = site.now();
        let mut steady_from = start;
        let fault = loop {
            drive_world(site, world, p, &ck.tracks, dt, counts);
            let report = site.step_allowing_faults();
            counts.steps += 1;
            if let Some(fault) = report.new_fault {
                break fault;
            }
            observe(site, world, ck, dt, counts)?;
            let state = ck.tracks[group].state;
            let flashing = matches!(
                (lamp, state),
                (
                    0,
                    GroupState::RedFlash | GroupState::PedClearance | GroupState::On
                ) | (1, GroupState::AmberFlash)
            );
            if flashing {
                steady_from = site.now();
            }
            prop_assert!(
                site.now() - steady_from < 30.0 && site.now() - start < 3600.0,
                "field fault on pin {} not caught in {:.1} s ({:?} for {:.1} s)",
                broken,
                site.now() - start,
                state,
                site.now() - steady_from
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
    Ok(broken)
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
    let head_starts = AtomicU64::new(0);
    let walks = AtomicU64::new(0);
    let config = Config {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        // A case is hours of operation: shrink a little, then report (the failing case is
        // printed and its seed saved either way).
        max_shrink_iters: 32,
        // Where the regressions file is (`proptest!` sets this; a bare runner must).
        source_file: Some(file!()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&params(), |p| {
        let c = simulate(&p)?;
        let sum = total.fetch_add(c.steps, Ordering::Relaxed) + c.steps;
        head_starts.fetch_add(c.head_starts, Ordering::Relaxed);
        walks.fetch_add(c.walks, Ordering::Relaxed);
        eprintln!(
            "signal_properties: {} steps ({} h at {} ms): {} greens, {} max-green checks ({} bus extensions), \
             {} dropouts, {} flash ticks after the injected fault; {} walks ({} cut), {} head starts ({} cut), \
             {} clearances ({} greens cut), {} start-ups, {} resets; {} steps so far",
            c.steps, HOURS, p.tick_ms, c.greens, c.max_checks, c.extended, c.dropouts, c.flash_checks,
            c.walks, c.cut_walks, c.head_starts, c.cut_head_starts, c.clearances, c.cut_greens,
            c.startups, c.resets, sum
        );
        prop_assert!(c.greens > 0 || p.rates.iter().all(|&r| r < 0.01), "nothing happened: {:?}", c);
        prop_assert_eq!(c.faults, 1, "the fault was not injected: {:?}", c);
        prop_assert!(c.clearances >= 1, "no clearance ran: {:?}", c);
        // At least one start-up after a reset (an injected event coming during a start-up
        // sequence replaces it with the next).
        prop_assert!(c.startups >= 2, "start-ups: {:?}", c);
        Ok(())
    });
    eprintln!(
        "signal_properties: {} steps checked in total, {} walks, {} bus head starts",
        total.load(Ordering::Relaxed),
        walks.load(Ordering::Relaxed),
        head_starts.load(Ordering::Relaxed)
    );
    result.unwrap();
    assert!(
        head_starts.load(Ordering::Relaxed) > 0 && walks.load(Ordering::Relaxed) > 0,
        "walk and head start properties never exercised"
    );
}
