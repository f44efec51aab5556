//! Shared by the `signal_*` integration tests: a test intersection and a harness that runs it
//! on a `ManualClock` with simulated pins.
#![allow(dead_code)]

use std::time::Duration;

use edgewatch::clock::{Clock, ManualClock};
use edgewatch::config::MAX_CLASSES;
use edgewatch::signal::{GroupState, SignalConfig, SimPins, SimSignalSystem, TickReport};

/// Zone names in zone-index order.
pub const ZONES: &[&str] = &[
    "main-approach",
    "minor-approach",
    "crossing",
    "bus-lane",
    "turn-lane",
];
/// Counted classes in class-index order.
pub const CLASSES: &[&str] = &["car", "bus", "person"];
pub const CAR: usize = 0;
pub const BUS: usize = 1;
pub const PERSON: usize = 2;
pub const Z_MAIN: usize = 0;
pub const Z_MINOR: usize = 1;
pub const Z_CROSSING: usize = 2;
pub const Z_BUS: usize = 3;
pub const Z_TURN: usize = 4;

/// Pins of the test site (all active-high except the minor red).
pub const MAIN_RED: u32 = 1;
pub const MAIN_AMBER: u32 = 2;
pub const MAIN_GREEN: u32 = 3;
pub const MINOR_RED: u32 = 4;
pub const MINOR_AMBER: u32 = 5;
pub const MINOR_GREEN: u32 = 6;
pub const PED_DONT_WALK: u32 = 7;
pub const PED_WALK: u32 = 8;
pub const BUS_GO: u32 = 9;
pub const BUS_STOP: u32 = 10;
pub const TURN_RED: u32 = 11;
pub const TURN_AMBER: u32 = 12;
pub const TURN_GREEN: u32 = 13;
pub const BEACON: u32 = 14;
pub const BUTTON: u32 = 20;
/// Every lamp pin that gives a right of way (amber, green, walk, bus go).
pub const RIGHT_OF_WAY: [u32; 8] = [
    MAIN_AMBER,
    MAIN_GREEN,
    MINOR_AMBER,
    MINOR_GREEN,
    TURN_AMBER,
    TURN_GREEN,
    PED_WALK,
    BUS_GO,
];

/// A main road, a minor road with a pedestrian crossing and a bus queue-jump B signal, and a
/// protected turn. Timings the tests rely on are repeated in `Timing` below.
pub const SITE: &str = r#"
startup_flash_s = 3.0
startup_all_red_s = 5.0
# A quiet crossing: MUTCD allows a walk down to 4 s where few people wait.
min_walk_s = 4.0
camera_recover_s = 10.0
# Every other pair conflicts (main, turn and each of the minor phase's groups).
permissive = [["minor", "ped"], ["minor", "bus-b"], ["ped", "bus-b"]]

[[inputs]]
name = "button"
pin = 20
active_low = true
pull = "up"

[[groups]]
name = "main"
kind = "vehicle"
red = { pin = 1 }
amber = { pin = 2 }
green = { pin = 3 }
maintenance_flash = "amber"

[[groups]]
name = "minor"
kind = "vehicle"
red = { pin = 4, active_low = true }
amber = { pin = 5 }
green = { pin = 6 }

[[groups]]
name = "ped"
kind = "pedestrian"
dont_walk = { pin = 7 }
walk = { pin = 8 }

[[groups]]
name = "bus-b"
kind = "bus"
go = { pin = 9 }
stop = { pin = 10 }

[[groups]]
name = "turn"
kind = "vehicle"
red = { pin = 11 }
amber = { pin = 12 }
green = { pin = 13 }

[[groups]]
name = "bus-coming"
kind = "beacon"
lamp = { pin = 14 }
demand = [{ zone = "bus-lane", classes = ["bus"] }]
flash = true

[[phases]]
name = "main"
groups = ["main"]
min_green_s = 8.0
max_green_s = 30.0
passage_s = 2.5
amber_s = 4.0
all_red_s = 2.0
approach_speed_kmh = 50.0
crossing_width_m = 14.0
demand = [{ zone = "main-approach", classes = ["car", "bus"] }]

[[phases]]
name = "minor"
groups = ["minor", "ped", "bus-b"]
min_green_s = 5.0
max_green_s = 20.0
passage_s = 2.0
amber_s = 3.0
all_red_s = 1.5
approach_speed_kmh = 30.0
walk_s = 5.0
crossing_length_m = 8.0
demand = [{ zone = "minor-approach", classes = ["car"] }]
ped_demand = [{ zone = "crossing", classes = ["person"] }, { input = "button" }]
bus_priority = { zone = "bus-lane", max_extension_s = 8.0, early_green = true, head_start_s = 2.0 }

[[phases]]
name = "turn"
groups = ["turn"]
min_green_s = 4.0
max_green_s = 12.0
passage_s = 2.0
amber_s = 3.0
all_red_s = 1.0
approach_speed_kmh = 30.0
demand = [{ zone = "turn-lane", classes = ["car"] }]
"#;

/// Timings of `SITE`, per phase, as the tests check them (independent of the crate's parsing).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min_green: f64,
    pub max_green: f64,
    pub amber: f64,
    pub all_red: f64,
    pub extension: f64,
}

pub const MAIN: Timing = Timing {
    min_green: 8.0,
    max_green: 30.0,
    amber: 4.0,
    all_red: 2.0,
    extension: 0.0,
};
pub const MINOR: Timing = Timing {
    min_green: 5.0,
    max_green: 20.0,
    amber: 3.0,
    all_red: 1.5,
    extension: 8.0,
};
pub const TURN: Timing = Timing {
    min_green: 4.0,
    max_green: 12.0,
    amber: 3.0,
    all_red: 1.0,
    extension: 0.0,
};
/// Start-up flash, then start-up all-red: the first green comes at their sum.
pub const STARTUP_FLASH: f64 = 3.0;
pub const STARTUP: f64 = 5.0;
pub const RECOVER: f64 = 10.0;
pub const WALK: f64 = 5.0;
pub const PED_CLEARANCE: f64 = 7.5;
pub const HEAD_START: f64 = 2.0;

/// Offset from a lamp's output pin to its sense input in [`with_sense`].
pub const SENSE: u32 = 100;

/// `text` with a field sense input on every lamp, at pin `SENSE + lamp pin`; inputs of odd
/// pins read low when lit (optocouplers), even ones high.
pub fn with_sense(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let lamp = [
            "red",
            "amber",
            "green",
            "dont_walk",
            "walk",
            "go",
            "stop",
            "lamp",
        ]
        .iter()
        .any(|l| line.starts_with(&format!("{l} = {{ pin = ")));
        match line.split_once("{ pin = ") {
            Some((head, rest)) if lamp => {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let pin: u32 = digits.parse().expect("lamp pin");
                let low = pin % 2 == 1;
                out += &format!(
                    "{head}{{ sense = {{ pin = {}, active_low = {low} }}, pin = {rest}\n",
                    SENSE + pin
                );
            }
            _ => out += &format!("{line}\n"),
        }
    }
    assert!(out.contains("sense"), "no lamp found");
    out
}

pub fn config(text: &str) -> SignalConfig {
    toml::from_str(text).expect("test site parses")
}

/// The test site running on a manual clock with simulated pins.
pub struct Site {
    pub clock: ManualClock,
    pub pins: SimPins<ManualClock>,
    pub signals: SimSignalSystem<ManualClock>,
    pub occupancy: Vec<[u32; MAX_CLASSES]>,
    pub camera_ok: bool,
    pub tick: Duration,
    pub steps: u64,
}

impl Site {
    pub fn new(text: &str, tick_ms: u64) -> Site {
        let clock = ManualClock::new();
        let mut pins = SimPins::new(clock.clone(), 4096);
        pins.set_input(BUTTON, true);
        let signals = SimSignalSystem::new(&config(text), ZONES, CLASSES, clock.clone(), &mut pins)
            .expect("test site builds");
        Site {
            clock,
            pins,
            signals,
            occupancy: vec![[0; MAX_CLASSES]; ZONES.len()],
            camera_ok: true,
            tick: Duration::from_millis(tick_ms),
            steps: 0,
        }
    }

    pub fn now(&self) -> f64 {
        self.clock.now().as_secs_f64()
    }

    pub fn set(&mut self, zone: usize, class: usize, n: u32) {
        self.occupancy[zone][class] = n;
    }

    /// One tick; panics if the monitor trips (the real controller must never trip it).
    pub fn step(&mut self) -> TickReport {
        let report = self.step_allowing_faults();
        assert!(
            report.new_fault.is_none(),
            "monitor tripped at {:.1} s: {:?}",
            self.now(),
            report.new_fault
        );
        report
    }

    pub fn step_allowing_faults(&mut self) -> TickReport {
        self.clock.advance(self.tick);
        self.steps += 1;
        self.signals.tick(&self.occupancy, self.camera_ok)
    }

    pub fn run_for(&mut self, secs: f64) {
        let end = self.now() + secs - 1e-9;
        while self.now() < end {
            self.step();
        }
    }

    /// Steps until `done` holds (checked after each tick), for at most `secs`; returns the time.
    pub fn run_until(&mut self, secs: f64, mut done: impl FnMut(&Site) -> bool) -> Option<f64> {
        let end = self.now() + secs;
        while self.now() < end {
            self.step();
            if done(self) {
                return Some(self.now());
            }
        }
        None
    }

    pub fn state(&self, group: &str) -> GroupState {
        self.signals
            .states()
            .find(|(name, _)| *name == group)
            .map(|(_, s)| s)
            .expect("group exists")
    }

    /// Whether the lamp on `pin` is lit (the minor red is active-low).
    pub fn lit(&self, pin: u32) -> bool {
        let high = self.pins.level(pin).expect("pin claimed");
        if pin == MINOR_RED {
            !high
        } else {
            high
        }
    }
}

/// A small deterministic generator for traffic (proptest picks the seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}
