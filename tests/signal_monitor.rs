//! The conflict monitor on its own: deliberately wrong controllers must trip it at the very tick
//! of their first bad command, the all-red flash must reach the pins in that tick and stay
//! latched until reset; and the real controller's commands, corrupted at a random tick, must be
//! caught at that tick.

mod signal_common;

use std::time::Duration;

use edgewatch::clock::{Clock, ManualClock};
use edgewatch::config::MAX_CLASSES;
use edgewatch::signal::lamp::{AMBER, DONT_WALK, GREEN, RED, STOP, WALK};
use edgewatch::signal::{
    ConflictMonitor, Controller, Detections, Fault, GroupKind, Head, LampState, PinBank,
    SignalCommand, SignalPlan, SimOutput, SimPins,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use signal_common::Rng;
use signal_common::*;

const TICK: Duration = Duration::from_millis(100);

fn plan() -> SignalPlan {
    SignalPlan::new(&config(SITE), ZONES, CLASSES).expect("test site compiles")
}

/// A monitor in front of simulated pins, as the signal system wires them.
struct Bench {
    clock: ManualClock,
    pins: SimPins<ManualClock>,
    monitor: ConflictMonitor,
    bank: PinBank<SimOutput<ManualClock>>,
}

impl Bench {
    fn new(plan: &SignalPlan) -> Bench {
        let clock = ManualClock::new();
        let mut pins = SimPins::new(clock.clone(), 0);
        let monitor = ConflictMonitor::new(&config(SITE)).expect("monitor card");
        let bank = PinBank::new(plan, &mut pins, &monitor.flash_command()).expect("pins");
        Bench {
            clock,
            pins,
            monitor,
            bank,
        }
    }

    /// Checks and writes one command; returns the monitor's verdict.
    fn show(&mut self, cmd: &SignalCommand) -> Result<(), Fault> {
        let now = self.clock.now();
        let verdict = self.monitor.check(now, cmd);
        let shown = if verdict.is_ok() {
            *cmd
        } else {
            self.monitor.flash_command()
        };
        self.bank.write(now, &shown).expect("simulated pins work");
        verdict
    }

    /// The pins show the fail-safe flash: vehicle reds at 1 Hz, everything else dark.
    fn assert_flashing(&self) {
        let on = self.clock.now().subsec_millis() < 500;
        let lit = |pin: u32| {
            let high = self.pins.level(pin).unwrap();
            if pin == MINOR_RED {
                !high
            } else {
                high
            }
        };
        for pin in [MAIN_RED, MINOR_RED, TURN_RED] {
            assert_eq!(lit(pin), on, "red pin {pin}");
        }
        for pin in [
            MAIN_AMBER,
            MAIN_GREEN,
            MINOR_AMBER,
            MINOR_GREEN,
            PED_WALK,
            PED_DONT_WALK,
            BUS_GO,
            BUS_STOP,
            TURN_GREEN,
        ] {
            assert!(!lit(pin), "pin {pin} lit in fault flash");
        }
    }
}

/// Ways a hand-written controller gets it wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    NoAmber,
    ShortAmber,
    NoAllRed,
    OverlappingGreens,
    TwoLamps,
    DarkHead,
    WalkWithoutClearance,
    ShortClearance,
}

/// A naive two-phase fixed-time controller written straight from the timing sheet, with one
/// optional bug. It knows the plan's group indices and nothing else of the crate.
struct NaiveController {
    bug: Bug,
    groups: usize,
    main: usize,
    minor: usize,
    ped: usize,
    bus: usize,
}

impl NaiveController {
    fn new(plan: &SignalPlan, bug: Bug) -> NaiveController {
        let g = |name| plan.group_index(name).unwrap();
        NaiveController {
            bug,
            groups: plan.group_count(),
            main: g("main"),
            minor: g("minor"),
            ped: g("ped"),
            bus: g("bus-b"),
        }
    }

    /// The command at `t` seconds, and whether the bug shows in it for the first time.
    fn command(&self, t: f64) -> (SignalCommand, bool) {
        let amber = if self.bug == Bug::ShortAmber {
            2.5
        } else {
            4.0
        };
        let amber = if self.bug == Bug::NoAmber { 0.0 } else { amber };
        let all_red = if self.bug == Bug::NoAllRed { 0.0 } else { 2.0 };
        let clearance = if self.bug == Bug::ShortClearance {
            5.0
        } else {
            7.5
        };
        let walk_end = if self.bug == Bug::WalkWithoutClearance {
            0.0
        } else {
            clearance
        };
        // One cycle: start-up all-red 6 s, main green 20 s, amber, all-red, minor green 15 s
        // (walk 5 s, clearance), amber 3 s, then all-red to the end of the run.
        let main_green = 6.0..26.0;
        let main_amber = 26.0..26.0 + amber;
        let minor_green = (26.0 + amber + all_red)..(41.0 + amber + all_red);
        let minor_amber = minor_green.end..minor_green.end + 3.0;
        let mut cmd = SignalCommand::dark(self.groups);
        for g in 0..self.groups {
            let lamp = if g == self.ped {
                DONT_WALK
            } else if g == self.bus {
                STOP
            } else {
                RED
            };
            if g != plan_beacon(self.groups) {
                cmd.set(g, lamp, LampState::On);
            }
        }
        let mut first = false;
        if main_green.contains(&t) {
            cmd.heads_mut()[self.main] = Head::only(GREEN, LampState::On);
        }
        if main_amber.contains(&t) {
            cmd.heads_mut()[self.main] = Head::only(AMBER, LampState::On);
        }
        if minor_amber.contains(&t) {
            cmd.heads_mut()[self.minor] = Head::only(AMBER, LampState::On);
        }
        if minor_green.contains(&t) {
            cmd.heads_mut()[self.minor] = Head::only(GREEN, LampState::On);
            let into = t - minor_green.start;
            let ped = if into < 5.0 {
                Head::only(WALK, LampState::On)
            } else if into < 5.0 + walk_end {
                Head::only(DONT_WALK, LampState::Flash)
            } else {
                Head::only(DONT_WALK, LampState::On)
            };
            cmd.heads_mut()[self.ped] = ped;
        }
        let bug_at = |start: f64| (start..start + 0.1 - 1e-9).contains(&t);
        match self.bug {
            Bug::NoAmber => first = bug_at(26.0),
            Bug::ShortAmber => first = bug_at(26.0 + amber),
            Bug::NoAllRed => first = bug_at(minor_green.start),
            Bug::OverlappingGreens if (25.0..26.0).contains(&t) => {
                cmd.heads_mut()[self.minor] = Head::only(GREEN, LampState::On);
                first = bug_at(25.0);
            }
            Bug::TwoLamps if t >= 12.0 => {
                cmd.set(self.minor, AMBER, LampState::On);
                first = bug_at(12.0);
            }
            Bug::DarkHead if t >= 12.0 => {
                cmd.heads_mut()[self.main] = Head::default();
                first = bug_at(12.0);
            }
            Bug::WalkWithoutClearance => first = bug_at(minor_green.start + 5.0),
            Bug::ShortClearance => first = bug_at(minor_green.start + 5.0 + clearance),
            _ => {}
        }
        (cmd, first)
    }
}

/// The beacon is the last group of the test site.
fn plan_beacon(groups: usize) -> usize {
    groups - 1
}

/// Runs `bug` for a cycle; returns the tick (seconds) the monitor tripped at and the fault.
fn run_naive(bug: Bug) -> Option<(f64, f64, Fault)> {
    let plan = plan();
    assert_eq!(
        plan.group_kind(plan_beacon(plan.group_count())),
        GroupKind::Beacon
    );
    let naive = NaiveController::new(&plan, bug);
    let mut bench = Bench::new(&plan);
    let mut bug_shown = None;
    for i in 0..700 {
        let t = i as f64 / 10.0;
        bench.clock.set(Duration::from_millis(i * 100));
        let (cmd, first) = naive.command(t);
        if first {
            bug_shown = Some(t);
        }
        if let Err(fault) = bench.show(&cmd) {
            bench.assert_flashing();
            // Latched: the controller keeps going (even correctly), the flash stays.
            for _ in 0..30 {
                bench.clock.advance(TICK);
                let later = bench.clock.now().as_secs_f64();
                assert!(
                    bench.show(&naive.command(later).0).is_err(),
                    "{bug:?}: unlatched"
                );
                bench.assert_flashing();
            }
            bench.monitor.reset();
            bench.clock.advance(Duration::from_secs(10));
            let mut rest = SignalCommand::dark(plan.group_count());
            let beacon = plan_beacon(plan.group_count());
            for g in (0..plan.group_count()).filter(|&g| g != beacon) {
                let lamp = match plan.group_kind(g) {
                    GroupKind::Pedestrian => DONT_WALK,
                    GroupKind::Bus => STOP,
                    _ => RED,
                };
                rest.set(g, lamp, LampState::On);
            }
            bench.show(&rest).expect("reset clears the latch");
            return Some((t, bug_shown.unwrap_or(f64::NAN), fault));
        }
    }
    None
}

#[test]
fn a_correct_naive_controller_never_trips() {
    assert_eq!(run_naive(Bug::None), None);
}

/// Whether a fault is the expected one.
type FaultMatch = fn(&Fault) -> bool;

#[test]
fn deliberately_wrong_controllers_trip_at_their_first_bad_command() {
    let cases: [(Bug, FaultMatch); 8] = [
        (Bug::NoAmber, |f| {
            matches!(f, Fault::GreenToRedWithoutAmber { .. })
        }),
        (Bug::ShortAmber, |f| {
            matches!(
                f,
                Fault::AmberTooShort {
                    shown_ms: 2500,
                    required_ms: 4000,
                    ..
                }
            )
        }),
        (Bug::NoAllRed, |f| matches!(f, Fault::AllRedTooShort { .. })),
        (Bug::OverlappingGreens, |f| {
            matches!(f, Fault::ConflictingGreens { .. })
        }),
        (Bug::TwoLamps, |f| {
            matches!(f, Fault::LampCount { lit: 2, .. })
        }),
        (Bug::DarkHead, |f| {
            matches!(f, Fault::LampCount { lit: 0, .. })
        }),
        (Bug::WalkWithoutClearance, |f| {
            matches!(f, Fault::WalkWithoutClearance { .. })
        }),
        (Bug::ShortClearance, |f| {
            matches!(
                f,
                // The monitor's own figure from the crossing, 8 m at 1.07 m/s, not the
                // plan's 7.5 s rounded up.
                Fault::ClearanceTooShort {
                    shown_ms: 5000,
                    required_ms: 7476,
                    ..
                }
            )
        }),
    ];
    for (bug, expected) in cases {
        let (tripped, shown, fault) =
            run_naive(bug).unwrap_or_else(|| panic!("{bug:?} did not trip the monitor"));
        assert!(
            (tripped - shown).abs() < 1e-9,
            "{bug:?} shown at {shown} s, tripped at {tripped} s"
        );
        assert!(expected(&fault), "{bug:?}: {fault}");
        eprintln!("signal_monitor: {bug:?} tripped at {tripped:.1} s: {fault}");
    }
}

/// Ways to corrupt a correct command so that it is unsafe whatever the state.
/// Corrupts `cmd`, the command after `prev` (the last one shown), in the way `choice` picks.
fn corrupt(
    cmd: &mut SignalCommand,
    prev: &SignalCommand,
    plan: &SignalPlan,
    choice: usize,
) -> &'static str {
    let main = plan.group_index("main").unwrap();
    let minor = plan.group_index("minor").unwrap();
    let ped = plan.group_index("ped").unwrap();
    let state = |cmd: &SignalCommand, g: usize| cmd.heads()[g];
    let green = Head::only(GREEN, LampState::On);
    match choice % 5 {
        0 => {
            let g = if state(cmd, main).lamps[AMBER].is_lit() {
                minor
            } else {
                main
            };
            cmd.set(g, AMBER, LampState::On);
            cmd.set(g, RED, LampState::On);
            "two lamps"
        }
        1 => {
            cmd.heads_mut()[minor] = Head::default();
            "dark head"
        }
        2 => {
            cmd.heads_mut()[main] = green;
            cmd.heads_mut()[minor] = green;
            "conflicting greens"
        }
        // A green shown already: one replaced by red in its first tick was never green.
        3 => match [main, minor]
            .into_iter()
            .find(|&g| state(cmd, g) == green && state(prev, g) == green)
        {
            Some(g) => {
                cmd.heads_mut()[g] = Head::only(RED, LampState::On);
                "green to red"
            }
            None => corrupt(cmd, prev, plan, 2),
        },
        _ => {
            if state(cmd, ped).lamps[WALK].is_lit() {
                cmd.heads_mut()[ped] = Head::only(DONT_WALK, LampState::On);
                "walk without clearance"
            } else {
                cmd.heads_mut()[ped] = Head::only(WALK, LampState::On);
                cmd.heads_mut()[main] = green;
                "walk across green"
            }
        }
    }
}

#[test]
fn corrupted_commands_are_caught_in_the_same_tick() {
    let plan = plan();
    let total = std::cell::Cell::new(0u64);
    let config = Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (any::<u64>(), 600u64..36_000, 0usize..5);
    TestRunner::new(config)
        .run(&strategy, |(seed, fault_tick, choice)| {
            let mut rng = Rng::new(seed);
            let mut bench = Bench::new(&plan);
            let mut controller = Controller::new(&plan, Duration::ZERO);
            let mut occupancy = vec![[0u32; MAX_CLASSES]; ZONES.len()];
            let mut prev = *controller.command();
            for tick in 1..=fault_tick {
                bench.clock.advance(TICK);
                let now = bench.clock.now();
                for (zone, class) in [
                    (Z_MAIN, CAR),
                    (Z_MINOR, CAR),
                    (Z_TURN, CAR),
                    (Z_CROSSING, PERSON),
                    (Z_BUS, BUS),
                ] {
                    if rng.chance(0.01) {
                        occupancy[zone][class] = (rng.next_u64() % 3) as u32;
                    }
                }
                let det = Detections {
                    zone_occupancy: &occupancy,
                    camera_ok: !rng.chance(0.001),
                    inputs: 0,
                };
                let mut cmd = *controller.step(now, &det);
                let what = if tick == fault_tick {
                    Some(corrupt(&mut cmd, &prev, &plan, choice))
                } else {
                    None
                };
                prev = cmd;
                let verdict = bench.show(&cmd);
                total.set(total.get() + 1);
                match what {
                    None => prop_assert!(
                        verdict.is_ok(),
                        "correct command refused at tick {}: {:?}",
                        tick,
                        verdict
                    ),
                    Some(what) => {
                        prop_assert!(verdict.is_err(), "{} not caught at tick {}", what, tick);
                        bench.assert_flashing();
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "signal_monitor: {} controller steps checked, 32 corruptions caught in their tick",
        total.get()
    );
}
