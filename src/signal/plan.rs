//! The signal plan: groups, phases, conflicts and timings as the site TOML gives them
//! ([`SignalConfig`]), their validation, and the compiled [`SignalPlan`] (names resolved to
//! indices, seconds to [`Duration`]s) that the controller, the monitor and the pin bank are
//! built from.
//!
//! Intergreen times are not a separate matrix: the intergreen from a phase to the next is that
//! phase's amber plus its all-red, both checked against the ITE formulas below.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_CLASSES};

/// The most signal groups (heads, B signals, beacons) a plan may have.
pub const MAX_GROUPS: usize = 16;
/// The most phases a plan may have.
pub const MAX_PHASES: usize = 8;
/// The most input pins (push buttons, loop contacts) a plan may have.
pub const MAX_INPUTS: usize = 16;
/// The longest group name, so faults can carry names without allocating.
pub const MAX_NAME_LEN: usize = 24;

/// Perception-reaction time in the ITE amber formula.
const REACTION_S: f32 = 1.0;
/// Comfortable deceleration in the ITE amber formula.
const DECELERATION: f32 = 3.05;
/// Gravity, for the grade term of the ITE amber formula.
const GRAVITY: f32 = 9.81;
/// Design vehicle length in the all-red formula.
const VEHICLE_LENGTH_M: f32 = 6.0;
/// Pedestrian walking speed for the clearance time.
const WALKING_SPEED: f32 = 1.07;
/// No amber is ever shorter than this, whatever the formula says (ITE guidance: 3-6 s).
const MIN_AMBER_S: f32 = 3.0;
/// No amber is longer: drivers treat a longer one as part of the green.
const MAX_AMBER_S: f32 = 6.0;
/// The shortest all-red after any phase, with or without a crossing width to compute it from.
const MIN_ALL_RED_S: f32 = 1.0;
/// The pedestrian buffer interval: steady don't walk after the clearance, before a conflicting
/// green (MUTCD 4I.06, 11th edition).
const PED_BUFFER_S: f32 = 3.0;
/// The shortest minimum green.
const MIN_GREEN_S: f32 = 4.0;
/// Slack for seconds typed with one decimal compared against a computed minimum.
const EPS: f32 = 1e-3;

/// The `[signals]` section of the site TOML. Durations are seconds with an `_s` suffix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Control mode when no time-of-day plan applies.
    #[serde(default)]
    pub mode: ControlMode,
    /// Start-up flash at power-up, on a restart and after a reset: every vehicle head flashes
    /// red (pedestrian and bus heads dark) before the start-up all-red (MUTCD 4D.31: flash,
    /// then all red, then the first green).
    #[serde(default = "default_startup_flash_s")]
    pub startup_flash_s: f32,
    /// All-red time after the start-up flash, before the first phase.
    #[serde(default = "default_startup_s")]
    pub startup_all_red_s: f32,
    /// How long frames must be good again before leaving the degraded fixed-time fallback.
    #[serde(default = "default_recover_s")]
    pub camera_recover_s: f32,
    /// The shortest walk any phase may show (MUTCD 4E.06: 7 s; down to 4 s where few people
    /// cross and none wait long).
    #[serde(default = "default_min_walk_s")]
    pub min_walk_s: f32,
    /// Detector diagnostic (NTCIP 1202 "no activity"): a phase whose camera demand zones see
    /// nothing for this long is recalled (served every cycle) until they see something
    /// again, so a camera knocked askew, fogged or blind cannot starve it. Vehicle and
    /// pedestrian demand are judged apart. 0 (default, as in NTCIP) turns it off.
    #[serde(default)]
    pub no_activity_s: f32,
    /// Detector diagnostic (NTCIP 1202 "max presence"): a phase whose camera demand zones
    /// show presence on every tick, without one empty tick, for this long is recalled (and
    /// reported) until they show a gap, so a zone held by a parked car, a shadow or a frozen
    /// track is flagged. Vehicle and pedestrian demand are judged apart. 0 (the default)
    /// turns it off; else 60..=86400.
    #[serde(default)]
    pub max_presence_s: f32,
    /// Signal groups: vehicle heads, pedestrian heads, bus B signals and beacons.
    pub groups: Vec<GroupConfig>,
    /// Pairs of group names that may show a right of way together (the groups of one phase).
    /// Every other pair of signal groups conflicts, as on a signal monitor's program card:
    /// a pair forgotten here can never be green together.
    #[serde(default)]
    pub permissive: Vec<[String; 2]>,
    /// Pairs that conflict. Every pair not in `permissive` conflicts anyway; kept so older
    /// site files load, and checked against `permissive`.
    #[serde(default)]
    pub conflicts: Vec<[String; 2]>,
    /// Phases in cycle order; the first is served after the start-up all-red.
    pub phases: Vec<PhaseConfig>,
    /// Digital inputs: push buttons and loop-detector contacts.
    #[serde(default)]
    pub inputs: Vec<InputConfig>,
    /// Time-of-day plans; when any are given they cover the whole day.
    #[serde(default)]
    pub plans: Vec<TimePlanConfig>,
    /// Field read-back: a conflict the sense inputs show for this long latches flash (a
    /// TS-2 monitor must not trip under 200 ms and must trip by 500 ms); 200..=1000, and at
    /// least two control ticks, so one bad reading never trips.
    #[serde(default = "default_sense_conflict_ms")]
    pub sense_conflict_ms: u32,
    /// Field read-back: a head with no lamp lit, more than one lit, or a lamp not showing
    /// its command, for this long latches flash (relays and lamps take a moment to follow,
    /// and a flashing lamp may start in its dark half); 1000..=5000.
    #[serde(default = "default_sense_fault_ms")]
    pub sense_fault_ms: u32,
}

impl SignalConfig {
    /// Every pin the section claims, with the key that names it: lamps, their sense inputs
    /// and the digital inputs.
    pub fn pins(&self) -> Vec<(u32, String)> {
        let mut pins: Vec<(u32, String)> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, x)| (x.pin, format!("signals.inputs[{i}].pin")))
            .collect();
        for (i, g) in self.groups.iter().enumerate() {
            for (name, lamp) in g.named_lamps() {
                let Some(lamp) = lamp else { continue };
                pins.push((lamp.pin, format!("signals.groups[{i}].{name}.pin")));
                if let Some(sense) = lamp.sense {
                    pins.push((sense.pin, format!("signals.groups[{i}].{name}.sense.pin")));
                }
            }
        }
        pins
    }
}

fn default_sense_conflict_ms() -> u32 {
    450
}
fn default_sense_fault_ms() -> u32 {
    1000
}
fn default_startup_flash_s() -> f32 {
    6.0
}
fn default_startup_s() -> f32 {
    6.0
}
fn default_recover_s() -> f32 {
    5.0
}
fn default_min_walk_s() -> f32 {
    7.0
}
fn default_passage_s() -> f32 {
    3.0
}
fn default_hold_s() -> f32 {
    2.0
}
fn default_debounce_s() -> f32 {
    0.05
}
fn default_bus_classes() -> Vec<String> {
    vec!["bus".into()]
}

/// How phases are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlMode {
    /// Every phase in turn for its fixed green, whatever the demand.
    FixedTime,
    /// Phases served on demand, green extended by detections between min and max green.
    #[default]
    Actuated,
}

impl ControlMode {
    /// The mode as written in the TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlMode::FixedTime => "fixed-time",
            ControlMode::Actuated => "actuated",
        }
    }
}

/// What a signal group is; it decides which lamps it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    /// A vehicle head: `red`, `amber`, `green`.
    Vehicle,
    /// A pedestrian head: `dont_walk`, `walk`.
    Pedestrian,
    /// A bus "B" signal: `go` (the B) and optionally `stop`.
    Bus,
    /// An information beacon (`lamp`), lit while its demand is present; never a right of way.
    Beacon,
}

impl GroupKind {
    /// Lamp names in lamp-index order (see [`crate::signal::lamp`]).
    pub fn lamp_names(self) -> &'static [&'static str] {
        match self {
            GroupKind::Vehicle => &["red", "amber", "green"],
            GroupKind::Pedestrian => &["dont_walk", "walk"],
            GroupKind::Bus => &["stop", "go"],
            GroupKind::Beacon => &["lamp"],
        }
    }

    /// Indices of the lamps the kind cannot do without (the bus `stop` bar is optional).
    fn required_lamps(self) -> &'static [usize] {
        match self {
            GroupKind::Vehicle => &[0, 1, 2],
            GroupKind::Pedestrian => &[0, 1],
            GroupKind::Bus => &[1],
            GroupKind::Beacon => &[0],
        }
    }

    /// True for groups that give a right of way and so take part in conflicts and phases.
    pub fn is_signal(self) -> bool {
        self != GroupKind::Beacon
    }
}

/// One lamp's GPIO pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LampPin {
    /// Pin number: BCM number with rppal, line offset with the GPIO character device.
    pub pin: u32,
    /// The lamp is lit when the pin is low.
    #[serde(default)]
    pub active_low: bool,
    /// The input that senses whether the lamp's field output is lit (an optocoupler or relay
    /// contact on the load switch output), so the conflict monitor checks what the field
    /// shows, not only what was commanded.
    pub sense: Option<SensePin>,
}

/// A field sense input: reads whether a lamp's field output is lit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensePin {
    /// Input pin number.
    pub pin: u32,
    /// The lamp is lit when the input reads low (an optocoupler pulling the line down).
    #[serde(default)]
    pub active_low: bool,
    /// Input bias; by default pull-up for an active-low input (an open-collector
    /// optocoupler), none otherwise.
    pub pull: Option<Pull>,
}

impl SensePin {
    /// The bias the input is claimed with.
    pub fn bias(&self) -> Pull {
        self.pull.unwrap_or(if self.active_low {
            Pull::Up
        } else {
            Pull::None
        })
    }
}

/// The colour a vehicle head flashes in maintenance flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlashColor {
    /// Flashing red (stop, then proceed).
    #[default]
    Red,
    /// Flashing amber (proceed with caution); only on mutually non-conflicting groups.
    Amber,
}

/// One signal group and its lamps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name (at most 24 bytes), used in conflicts, phases, logs and summaries.
    pub name: String,
    /// What the group is.
    pub kind: GroupKind,
    /// Vehicle red lamp.
    pub red: Option<LampPin>,
    /// Vehicle amber lamp.
    pub amber: Option<LampPin>,
    /// Vehicle green lamp.
    pub green: Option<LampPin>,
    /// Pedestrian "don't walk" lamp (flashes during the clearance).
    pub dont_walk: Option<LampPin>,
    /// Pedestrian "walk" lamp.
    pub walk: Option<LampPin>,
    /// Bus "B" lamp.
    pub go: Option<LampPin>,
    /// Bus stop bar (optional).
    pub stop: Option<LampPin>,
    /// Beacon lamp.
    pub lamp: Option<LampPin>,
    /// Vehicle heads: the colour shown in maintenance flash (default red).
    pub maintenance_flash: Option<FlashColor>,
    /// Beacons: lit while any of these is present.
    #[serde(default)]
    pub demand: Vec<DemandConfig>,
    /// Beacons: stay lit this long after the demand goes, so detection gaps do not flicker it.
    #[serde(default = "default_hold_s")]
    pub hold_s: f32,
    /// Beacons: flash at 1 Hz instead of a steady light.
    #[serde(default)]
    pub flash: bool,
}

impl GroupConfig {
    /// Every lamp key of the TOML with its pin, whether or not the group's kind has it.
    pub fn named_lamps(&self) -> [(&'static str, Option<LampPin>); 8] {
        [
            ("red", self.red),
            ("amber", self.amber),
            ("green", self.green),
            ("dont_walk", self.dont_walk),
            ("walk", self.walk),
            ("stop", self.stop),
            ("go", self.go),
            ("lamp", self.lamp),
        ]
    }
}

/// A source of demand: objects of some classes in a camera zone, or an input pin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandConfig {
    /// Zone name (from the site's `zones`).
    pub zone: Option<String>,
    /// Counted class names (from `model.classes`) that count in `zone`.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Input name (from `signals.inputs`), instead of a zone.
    pub input: Option<String>,
}

/// A phase: groups that go green together, with their timings and demand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// Phase name.
    pub name: String,
    /// Names of the groups green in this phase (vehicle, pedestrian and bus groups).
    pub groups: Vec<String>,
    /// Shortest green once the phase starts (at least 4 s).
    pub min_green_s: f32,
    /// Longest green after a conflicting call, unless bus priority extends it.
    pub max_green_s: f32,
    /// Actuated: each detection keeps the green for this long (the gap time).
    #[serde(default = "default_passage_s")]
    pub passage_s: f32,
    /// Fixed-time green (default `max_green_s`); between `min_green_s` and `max_green_s`.
    pub fixed_green_s: Option<f32>,
    /// Amber; required when the phase has vehicle heads.
    pub amber_s: Option<f32>,
    /// All-red after the amber.
    pub all_red_s: f32,
    /// Approach speed, for the kinematic amber and the all-red check.
    pub approach_speed_kmh: Option<f32>,
    /// Approach grade in percent (uphill positive).
    #[serde(default)]
    pub grade_percent: f32,
    /// Width of the intersection to clear; when given the all-red must cover (W + 6 m) / v.
    pub crossing_width_m: Option<f32>,
    /// Pedestrian walk time; required when the phase has pedestrian heads.
    pub walk_s: Option<f32>,
    /// Pedestrian crossing length; required when the phase has pedestrian heads.
    pub crossing_length_m: Option<f32>,
    /// Pedestrian clearance (flashing don't walk); default and minimum length / 1.07 m/s.
    pub ped_clearance_s: Option<f32>,
    /// Always call this phase, demand or not.
    #[serde(default)]
    pub recall: bool,
    /// Vehicle demand: calls the phase and extends its green.
    #[serde(default)]
    pub demand: Vec<DemandConfig>,
    /// Pedestrian demand: calls the phase and its walk.
    #[serde(default)]
    pub ped_demand: Vec<DemandConfig>,
    /// Transit signal priority for this phase.
    pub bus_priority: Option<BusPriorityConfig>,
}

/// Transit signal priority: a bus in a zone gets its phase earlier or longer, within bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusPriorityConfig {
    /// The zone a bus waits or approaches in.
    pub zone: String,
    /// Classes that count as a bus (default `["bus"]`).
    #[serde(default = "default_bus_classes")]
    pub classes: Vec<String>,
    /// Most time the green may run past the point it would have ended (0 = no extension).
    #[serde(default)]
    pub max_extension_s: f32,
    /// Cut conflicting greens to their minimum (never their clearances) to serve the bus sooner.
    #[serde(default)]
    pub early_green: bool,
    /// The phase's bus groups show B this long before its other groups go green.
    #[serde(default)]
    pub head_start_s: f32,
}

/// Bias on an input pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pull {
    /// No bias (external resistor).
    #[default]
    None,
    /// Pull-up.
    Up,
    /// Pull-down.
    Down,
}

/// A digital input: push button or loop-detector contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Input name, used by `demand = [{ input = "..." }]`.
    pub name: String,
    /// Pin number.
    pub pin: u32,
    /// Active when the pin reads low (a button to ground).
    #[serde(default)]
    pub active_low: bool,
    /// Bias.
    #[serde(default)]
    pub pull: Pull,
    /// The level must hold this long before a change counts.
    #[serde(default = "default_debounce_s")]
    pub debounce_s: f32,
}

/// A time-of-day plan, in force from `start` until the next plan's start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePlanConfig {
    /// Plan name.
    pub name: String,
    /// Local start time, `"HH:MM"`.
    pub start: String,
    /// Mode while the plan is in force.
    pub mode: ControlMode,
    /// Fixed-time greens, one per phase; empty means each phase's own `fixed_green_s`.
    #[serde(default)]
    pub fixed_green_s: Vec<f32>,
}

impl SignalConfig {
    /// Checks every value against the zone and class names; the error names the first bad key.
    pub fn validate(&self, zone_names: &[&str], class_names: &[&str]) -> Result<(), ConfigError> {
        SignalPlan::new(self, zone_names, class_names).map(|_| ())
    }
}

/// A group name that fits on the stack.
pub type GroupName = heapless::String<MAX_NAME_LEN>;

/// Objects of some classes in some zones, or some inputs: the compiled form of demand lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Demand {
    /// (zone index, class bit mask).
    pub zones: Vec<(usize, u16)>,
    /// Input bit mask.
    pub inputs: u32,
}

impl Demand {
    /// True when any input in the mask is active, or (camera trusted) any zone holds a class.
    pub fn present(&self, occupancy: &[[u32; MAX_CLASSES]], inputs: u32, camera: bool) -> bool {
        if self.inputs & inputs != 0 {
            return true;
        }
        camera
            && self.zones.iter().any(|&(zone, mask)| {
                occupancy.get(zone).is_some_and(|row| {
                    row.iter()
                        .enumerate()
                        .any(|(c, &n)| n > 0 && mask & (1 << c) != 0)
                })
            })
    }
}

/// A compiled group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub name: GroupName,
    pub kind: GroupKind,
    /// Pins by lamp index.
    pub lamps: [Option<LampPin>; 3],
    pub maintenance_flash: FlashColor,
    pub demand: Demand,
    pub hold: Duration,
    pub flash: bool,
}

/// Compiled bus priority.
#[derive(Debug, Clone)]
pub(crate) struct BusPriority {
    pub demand: Demand,
    pub max_extension: Duration,
    pub early_green: bool,
    pub head_start: Duration,
}

/// A compiled phase.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    pub name: String,
    /// Group bit mask.
    pub groups: u16,
    pub min_green: Duration,
    pub max_green: Duration,
    pub passage: Duration,
    pub fixed_green: Duration,
    /// Zero when the phase has no vehicle heads.
    pub amber: Duration,
    pub all_red: Duration,
    pub walk: Duration,
    pub ped_clearance: Duration,
    pub recall: bool,
    pub demand: Demand,
    pub ped_demand: Demand,
    pub bus: Option<BusPriority>,
}

/// A compiled input.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub name: String,
    pub pin: u32,
    pub active_low: bool,
    pub pull: Pull,
    pub debounce: Duration,
}

/// A compiled time-of-day plan.
#[derive(Debug, Clone)]
pub(crate) struct TimePlan {
    /// The plan's name, for `/health`.
    pub name: String,
    /// Seconds after midnight.
    pub start: u32,
    pub mode: ControlMode,
    /// One per phase.
    pub fixed_green: Vec<Duration>,
}

/// The validated plan with names resolved to indices: what the controller, the conflict monitor
/// and the pin bank are built from. Built once at start-up.
#[derive(Debug, Clone)]
pub struct SignalPlan {
    pub(crate) groups: Vec<Group>,
    pub(crate) phases: Vec<Phase>,
    /// Per group, the bit mask of groups it conflicts with.
    pub(crate) conflicts: [u16; MAX_GROUPS],
    pub(crate) inputs: Vec<Input>,
    pub(crate) plans: Vec<TimePlan>,
    pub(crate) mode: ControlMode,
    pub(crate) startup_flash: Duration,
    pub(crate) startup_all_red: Duration,
    pub(crate) camera_recover: Duration,
    /// The detector diagnostic's no-activity time, if on.
    pub(crate) no_activity: Option<Duration>,
    /// The detector diagnostic's max-presence time, if on.
    pub(crate) max_presence: Option<Duration>,
    /// Field read-back persistence for conflicts, and for the other field faults.
    pub(crate) sense_conflict: Duration,
    pub(crate) sense_fault: Duration,
}

impl SignalPlan {
    /// Validates `config` against the site's zone and counted class names (index order) and
    /// compiles it.
    pub fn new(
        config: &SignalConfig,
        zone_names: &[&str],
        class_names: &[&str],
    ) -> Result<SignalPlan, ConfigError> {
        let names = Names {
            zones: zone_names,
            classes: class_names,
            inputs: Vec::new(),
        };
        Compiler { cfg: config, names }.compile()
    }

    /// Number of signal groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Name of group `g`.
    pub fn group_name(&self, g: usize) -> &str {
        &self.groups[g].name
    }

    /// Kind of group `g`.
    pub fn group_kind(&self, g: usize) -> GroupKind {
        self.groups[g].kind
    }

    /// Index of the group called `name`.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    /// True when groups `a` and `b` must never be green together.
    pub fn conflicts(&self, a: usize, b: usize) -> bool {
        self.conflicts[a] & (1 << b) != 0
    }

    /// Number of phases.
    pub fn phase_count(&self) -> usize {
        self.phases.len()
    }

    /// Name of phase `p`.
    pub fn phase_name(&self, p: usize) -> &str {
        &self.phases[p].name
    }

    /// Names of the time-of-day plans in start-time order, the order
    /// [`super::Controller::time_plan`] counts in.
    pub fn plan_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.plans.iter().map(|p| p.name.as_str())
    }

    /// Names of the input pins, in input-bit order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inputs.iter().map(|i| i.name.as_str())
    }

    /// The phase whose clearance takes longest, and how long: its full pedestrian clearance
    /// (a walk cut short), amber and all-red. What stopping or a watchdog breach may need.
    pub fn longest_clearance(&self) -> (&str, Duration) {
        self.phases
            .iter()
            .map(|p| (p.name.as_str(), p.ped_clearance + p.amber + p.all_red))
            .max_by_key(|&(_, d)| d)
            .unwrap_or(("", Duration::ZERO))
    }

    /// Longest amber among the phases containing group `g`.
    pub(crate) fn max_amber_of(&self, g: usize) -> Duration {
        self.fold_phases_of(g, |p| p.amber, Duration::max)
            .unwrap_or_default()
    }

    fn fold_phases_of(
        &self,
        g: usize,
        value: impl Fn(&Phase) -> Duration,
        pick: impl Fn(Duration, Duration) -> Duration,
    ) -> Option<Duration> {
        self.phases
            .iter()
            .filter(|p| p.groups & (1 << g) != 0)
            .map(value)
            .reduce(pick)
    }
}

/// The names demand entries are resolved against.
struct Names<'a> {
    zones: &'a [&'a str],
    classes: &'a [&'a str],
    inputs: Vec<&'a str>,
}

struct Compiler<'a> {
    cfg: &'a SignalConfig,
    names: Names<'a>,
}

fn invalid(key: impl std::fmt::Display, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// Rejects NaN, infinities and values outside `lo..=hi`.
fn check_secs(key: &str, value: f32, lo: f32, hi: f32) -> Result<(), ConfigError> {
    if !(value.is_finite() && lo <= value && value <= hi) {
        return Err(invalid(key, format!("{value} is out of range {lo}..={hi}")));
    }
    Ok(())
}

/// Seconds to a duration, rounded to the millisecond so `3.9` is exactly 3900 ms.
fn secs(value: f32) -> Duration {
    Duration::from_millis((f64::from(value) * 1000.0).round().max(0.0) as u64)
}

/// `value` rounded up to one decimal, for messages and defaults.
fn ceil_tenth(value: f32) -> f32 {
    (value * 10.0 - EPS).ceil() / 10.0
}

/// The ITE kinematic amber, Y = t + v / (2a + 2Gg), never below 3 s.
pub fn kinematic_amber_s(speed_kmh: f32, grade_percent: f32) -> f32 {
    let v = speed_kmh / 3.6;
    let formula = REACTION_S + v / (2.0 * DECELERATION + 2.0 * grade_percent / 100.0 * GRAVITY);
    formula.max(MIN_AMBER_S)
}

/// The all-red needed to clear a crossing of `width_m`: (W + L) / v with L = 6 m.
pub fn clearance_all_red_s(width_m: f32, speed_kmh: f32) -> f32 {
    (width_m + VEHICLE_LENGTH_M) / (speed_kmh / 3.6)
}

/// The pedestrian clearance for a crossing of `length_m` at 1.07 m/s.
pub fn ped_clearance_s(length_m: f32) -> f32 {
    length_m / WALKING_SPEED
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

impl<'a> Compiler<'a> {
    fn compile(mut self) -> Result<SignalPlan, ConfigError> {
        let cfg = self.cfg;
        check_secs("signals.camera_recover_s", cfg.camera_recover_s, 0.0, 600.0)?;
        check_secs("signals.min_walk_s", cfg.min_walk_s, 4.0, 60.0)?;
        if cfg.no_activity_s != 0.0 {
            check_secs("signals.no_activity_s", cfg.no_activity_s, 60.0, 86_400.0)?;
        }
        if cfg.max_presence_s != 0.0 {
            check_secs("signals.max_presence_s", cfg.max_presence_s, 60.0, 86_400.0)?;
        }
        check_secs("signals.startup_flash_s", cfg.startup_flash_s, 2.0, 300.0)?;
        check_secs(
            "signals.startup_all_red_s",
            cfg.startup_all_red_s,
            2.0,
            120.0,
        )?;
        let inputs = self.inputs()?;
        let mut groups = self.groups()?;
        check_pins(cfg)?;
        let sense_conflict = check_ms(
            "signals.sense_conflict_ms",
            cfg.sense_conflict_ms,
            100,
            1000,
        )?;
        let sense_fault = check_ms("signals.sense_fault_ms", cfg.sense_fault_ms, 200, 5000)?;
        let conflicts = self.conflicts(&groups)?;
        let phases = self.phases(&groups, &conflicts)?;
        self.check_coverage(&groups, &phases)?;
        self.check_amber_flash(&groups, &conflicts)?;
        self.check_startup(&phases)?;
        self.check_ped_buffer(&groups, &phases)?;
        let plans = self.plans(&phases)?;
        for (i, g) in cfg.groups.iter().enumerate() {
            groups[i].demand = self.demands(&format!("signals.groups[{i}].demand"), &g.demand)?;
        }
        Ok(SignalPlan {
            groups,
            phases,
            conflicts,
            inputs,
            plans,
            mode: cfg.mode,
            startup_flash: secs(cfg.startup_flash_s),
            startup_all_red: secs(cfg.startup_all_red_s),
            camera_recover: secs(cfg.camera_recover_s),
            no_activity: (cfg.no_activity_s > 0.0).then(|| secs(cfg.no_activity_s)),
            max_presence: (cfg.max_presence_s > 0.0).then(|| secs(cfg.max_presence_s)),
            sense_conflict,
            sense_fault,
        })
    }

    fn inputs(&mut self) -> Result<Vec<Input>, ConfigError> {
        let cfg = self.cfg;
        if cfg.inputs.len() > MAX_INPUTS {
            return Err(invalid(
                "signals.inputs",
                format!("at most {MAX_INPUTS} inputs"),
            ));
        }
        let mut inputs = Vec::with_capacity(cfg.inputs.len());
        for (i, input) in cfg.inputs.iter().enumerate() {
            let key = format!("signals.inputs[{i}]");
            check_name(&format!("{key}.name"), &input.name, &self.names.inputs)?;
            check_secs(&format!("{key}.debounce_s"), input.debounce_s, 0.0, 1.0)?;
            self.names.inputs.push(&input.name);
            inputs.push(Input {
                name: input.name.clone(),
                pin: input.pin,
                active_low: input.active_low,
                pull: input.pull,
                debounce: secs(input.debounce_s),
            });
        }
        Ok(inputs)
    }

    fn groups(&self) -> Result<Vec<Group>, ConfigError> {
        let cfg = self.cfg;
        if cfg.groups.is_empty() || cfg.groups.len() > MAX_GROUPS {
            return Err(invalid(
                "signals.groups",
                format!("give 1 to {MAX_GROUPS} groups"),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut groups = Vec::with_capacity(cfg.groups.len());
        for (i, g) in cfg.groups.iter().enumerate() {
            let key = format!("signals.groups[{i}]");
            check_name(&format!("{key}.name"), &g.name, &seen)?;
            seen.push(&g.name);
            let lamps = group_lamps(&key, g)?;
            check_kind_options(&key, g)?;
            check_secs(&format!("{key}.hold_s"), g.hold_s, 0.0, 600.0)?;
            groups.push(Group {
                name: GroupName::try_from(g.name.as_str()).unwrap_or_default(),
                kind: g.kind,
                lamps,
                maintenance_flash: g.maintenance_flash.unwrap_or_default(),
                demand: Demand::default(),
                hold: secs(g.hold_s),
                flash: g.flash,
            });
        }
        Ok(groups)
    }

    fn group_index(&self, key: &str, groups: &[Group], name: &str) -> Result<usize, ConfigError> {
        let Some(g) = groups.iter().position(|g| g.name == name) else {
            let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            return Err(invalid(
                key,
                format!("unknown group `{name}` (groups: {})", list(&known)),
            ));
        };
        if !groups[g].kind.is_signal() {
            return Err(invalid(
                key,
                format!("`{name}` is a beacon, not a signal group"),
            ));
        }
        Ok(g)
    }

    /// The conflict matrix: every pair of signal groups conflicts unless declared permissive.
    fn conflicts(&self, groups: &[Group]) -> Result<[u16; MAX_GROUPS], ConfigError> {
        let signals = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.kind.is_signal())
            .fold(0u16, |m, (g, _)| m | 1 << g);
        let mut matrix = [0u16; MAX_GROUPS];
        for (g, row) in matrix.iter_mut().enumerate().take(groups.len()) {
            if signals & (1 << g) != 0 {
                *row = signals & !(1 << g);
            }
        }
        let pair = |list: &str, k: usize, [a, b]: &[String; 2]| {
            let key = format!("signals.{list}[{k}]");
            let ia = self.group_index(&key, groups, a)?;
            let ib = self.group_index(&key, groups, b)?;
            if ia == ib {
                return Err(invalid(key, format!("`{a}` is listed with itself")));
            }
            Ok::<_, ConfigError>((key, ia, ib))
        };
        for (k, names) in self.cfg.permissive.iter().enumerate() {
            let (_, a, b) = pair("permissive", k, names)?;
            matrix[a] &= !(1 << b);
            matrix[b] &= !(1 << a);
        }
        for (k, names) in self.cfg.conflicts.iter().enumerate() {
            let (key, a, b) = pair("conflicts", k, names)?;
            if matrix[a] & (1 << b) == 0 {
                return Err(invalid(
                    key,
                    format!(
                        "`{}` and `{}` are also declared permissive",
                        names[0], names[1]
                    ),
                ));
            }
        }
        Ok(matrix)
    }

    fn phases(
        &self,
        groups: &[Group],
        conflicts: &[u16; MAX_GROUPS],
    ) -> Result<Vec<Phase>, ConfigError> {
        let cfg = self.cfg;
        if cfg.phases.is_empty() || cfg.phases.len() > MAX_PHASES {
            return Err(invalid(
                "signals.phases",
                format!("give 1 to {MAX_PHASES} phases"),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut phases = Vec::with_capacity(cfg.phases.len());
        for (i, p) in cfg.phases.iter().enumerate() {
            let key = format!("signals.phases[{i}]");
            check_name(&format!("{key}.name"), &p.name, &seen)?;
            seen.push(&p.name);
            let mask = self.phase_groups(&key, p, groups, conflicts)?;
            phases.push(self.phase(&key, p, mask, groups)?);
        }
        Ok(phases)
    }

    fn phase_groups(
        &self,
        key: &str,
        p: &PhaseConfig,
        groups: &[Group],
        conflicts: &[u16; MAX_GROUPS],
    ) -> Result<u16, ConfigError> {
        let key = format!("{key}.groups");
        if p.groups.is_empty() {
            return Err(invalid(key, "a phase needs at least one group"));
        }
        let mut mask = 0u16;
        for name in &p.groups {
            let g = self.group_index(&key, groups, name)?;
            if let Some(other) =
                (0..groups.len()).find(|&o| mask & (1 << o) != 0 && conflicts[g] & (1 << o) != 0)
            {
                let other = &groups[other].name;
                let how = if self.declared_conflict(other, name) {
                    "conflict (signals.conflicts) and cannot share a phase".to_string()
                } else {
                    format!(
                        "share a phase but are not declared permissive: add \
                         [\"{other}\", \"{name}\"] to signals.permissive"
                    )
                };
                return Err(invalid(key, format!("`{other}` and `{name}` {how}")));
            }
            mask |= 1 << g;
        }
        Ok(mask)
    }

    /// True when `signals.conflicts` names the pair `a`, `b` (either order).
    fn declared_conflict(&self, a: &str, b: &str) -> bool {
        self.cfg
            .conflicts
            .iter()
            .any(|[x, y]| (x == a && y == b) || (x == b && y == a))
    }

    fn phase(
        &self,
        key: &str,
        p: &PhaseConfig,
        mask: u16,
        groups: &[Group],
    ) -> Result<Phase, ConfigError> {
        let has = |kind| {
            groups
                .iter()
                .enumerate()
                .any(|(g, x)| mask & (1 << g) != 0 && x.kind == kind)
        };
        check_secs(
            &format!("{key}.min_green_s"),
            p.min_green_s,
            MIN_GREEN_S,
            300.0,
        )?;
        check_secs(
            &format!("{key}.max_green_s"),
            p.max_green_s,
            p.min_green_s,
            600.0,
        )?;
        check_secs(&format!("{key}.passage_s"), p.passage_s, 0.1, 30.0)?;
        let fixed = p.fixed_green_s.unwrap_or(p.max_green_s);
        check_secs(
            &format!("{key}.fixed_green_s"),
            fixed,
            p.min_green_s,
            p.max_green_s,
        )?;
        let amber = self.amber(key, p, has(GroupKind::Vehicle))?;
        self.all_red(key, p)?;
        let (walk, clearance) = self.ped_timing(key, p, has(GroupKind::Pedestrian))?;
        if walk + clearance > p.max_green_s + EPS {
            return Err(invalid(
                format!("{key}.max_green_s"),
                format!(
                    "{} s cannot fit walk {walk} s + clearance {clearance} s",
                    p.max_green_s
                ),
            ));
        }
        let bus = match &p.bus_priority {
            Some(b) => {
                Some(self.bus_priority(&format!("{key}.bus_priority"), b, has(GroupKind::Bus))?)
            }
            None => None,
        };
        Ok(Phase {
            name: p.name.clone(),
            groups: mask,
            min_green: secs(p.min_green_s),
            max_green: secs(p.max_green_s),
            passage: secs(p.passage_s),
            fixed_green: secs(fixed),
            amber: secs(amber),
            all_red: secs(p.all_red_s),
            walk: secs(walk),
            ped_clearance: secs(clearance),
            recall: p.recall,
            demand: self.demands(&format!("{key}.demand"), &p.demand)?,
            ped_demand: self.demands(&format!("{key}.ped_demand"), &p.ped_demand)?,
            bus,
        })
    }

    /// The amber, checked against the ITE kinematic minimum; zero for a phase without vehicles.
    fn amber(&self, key: &str, p: &PhaseConfig, vehicles: bool) -> Result<f32, ConfigError> {
        if !vehicles {
            return Ok(0.0);
        }
        let Some(amber) = p.amber_s else {
            return Err(invalid(
                format!("{key}.amber_s"),
                "required for a phase with vehicle heads",
            ));
        };
        let Some(speed) = p.approach_speed_kmh else {
            return Err(invalid(
                format!("{key}.approach_speed_kmh"),
                "required for a phase with vehicle heads (the amber is checked against it)",
            ));
        };
        check_secs(&format!("{key}.approach_speed_kmh"), speed, 5.0, 130.0)?;
        check_secs(
            &format!("{key}.grade_percent"),
            p.grade_percent,
            -10.0,
            10.0,
        )?;
        check_secs(&format!("{key}.amber_s"), amber, 0.0, 10.0)?;
        let needed = kinematic_amber_s(speed, p.grade_percent);
        if amber + EPS < needed {
            return Err(invalid(
                format!("{key}.amber_s"),
                format!(
                    "{amber} s is below the kinematic minimum {} s for {speed} km/h",
                    ceil_tenth(needed)
                ),
            ));
        }
        if amber > MAX_AMBER_S + EPS {
            return Err(invalid(
                format!("{key}.amber_s"),
                format!(
                    "{amber} s is over {MAX_AMBER_S} s (ITE: 3-6 s); drivers take a longer \
                     amber as part of the green"
                ),
            ));
        }
        Ok(amber)
    }

    fn all_red(&self, key: &str, p: &PhaseConfig) -> Result<(), ConfigError> {
        check_secs(
            &format!("{key}.all_red_s"),
            p.all_red_s,
            MIN_ALL_RED_S,
            10.0,
        )?;
        let Some(width) = p.crossing_width_m else {
            return Ok(());
        };
        check_secs(&format!("{key}.crossing_width_m"), width, 1.0, 200.0)?;
        let Some(speed) = p.approach_speed_kmh else {
            return Err(invalid(
                format!("{key}.approach_speed_kmh"),
                "required with crossing_width_m",
            ));
        };
        let needed = clearance_all_red_s(width, speed);
        if p.all_red_s + EPS < needed {
            return Err(invalid(
                format!("{key}.all_red_s"),
                format!(
                    "{} s is below the {} s needed to clear {width} m at {speed} km/h",
                    p.all_red_s,
                    ceil_tenth(needed)
                ),
            ));
        }
        Ok(())
    }

    /// Walk and clearance seconds; zero for a phase without pedestrian heads.
    fn ped_timing(
        &self,
        key: &str,
        p: &PhaseConfig,
        peds: bool,
    ) -> Result<(f32, f32), ConfigError> {
        if !peds {
            let stray = [
                ("walk_s", p.walk_s.is_some()),
                ("crossing_length_m", p.crossing_length_m.is_some()),
                ("ped_clearance_s", p.ped_clearance_s.is_some()),
                ("ped_demand", !p.ped_demand.is_empty()),
            ];
            if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{key}.{name}"),
                    "the phase has no pedestrian group",
                ));
            }
            return Ok((0.0, 0.0));
        }
        let (Some(walk), Some(length)) = (p.walk_s, p.crossing_length_m) else {
            let missing = if p.walk_s.is_none() {
                "walk_s"
            } else {
                "crossing_length_m"
            };
            return Err(invalid(
                format!("{key}.{missing}"),
                "required for a phase with pedestrian heads",
            ));
        };
        let min_walk = self.cfg.min_walk_s;
        check_secs(&format!("{key}.walk_s"), walk, min_walk, 60.0)?;
        check_secs(&format!("{key}.crossing_length_m"), length, 1.0, 100.0)?;
        let needed = ped_clearance_s(length);
        let clearance = p.ped_clearance_s.unwrap_or(ceil_tenth(needed));
        check_secs(&format!("{key}.ped_clearance_s"), clearance, 0.0, 120.0)?;
        if clearance + EPS < needed {
            return Err(invalid(
                format!("{key}.ped_clearance_s"),
                format!(
                    "{clearance} s is below the {} s to walk {length} m at 1.07 m/s",
                    ceil_tenth(needed)
                ),
            ));
        }
        Ok((walk, clearance))
    }

    fn bus_priority(
        &self,
        key: &str,
        b: &BusPriorityConfig,
        has_bus: bool,
    ) -> Result<BusPriority, ConfigError> {
        check_secs(
            &format!("{key}.max_extension_s"),
            b.max_extension_s,
            0.0,
            60.0,
        )?;
        check_secs(&format!("{key}.head_start_s"), b.head_start_s, 0.0, 15.0)?;
        if b.head_start_s > 0.0 && !has_bus {
            return Err(invalid(
                format!("{key}.head_start_s"),
                "the phase has no bus group to show B",
            ));
        }
        let entry = DemandConfig {
            zone: Some(b.zone.clone()),
            classes: b.classes.clone(),
            input: None,
        };
        let demand = self.demand_entry(key, &entry)?;
        Ok(BusPriority {
            demand,
            max_extension: secs(b.max_extension_s),
            early_green: b.early_green,
            head_start: secs(b.head_start_s),
        })
    }

    fn demands(&self, key: &str, entries: &[DemandConfig]) -> Result<Demand, ConfigError> {
        let mut all = Demand::default();
        for (i, entry) in entries.iter().enumerate() {
            let d = self.demand_entry(&format!("{key}[{i}]"), entry)?;
            all.zones.extend(d.zones);
            all.inputs |= d.inputs;
        }
        Ok(all)
    }

    fn demand_entry(&self, key: &str, entry: &DemandConfig) -> Result<Demand, ConfigError> {
        let names = &self.names;
        match (&entry.zone, &entry.input) {
            (Some(zone), None) => {
                let Some(z) = names.zones.iter().position(|n| n == zone) else {
                    let msg = format!("unknown zone `{zone}` (zones: {})", list(names.zones));
                    return Err(invalid(format!("{key}.zone"), msg));
                };
                if entry.classes.is_empty() {
                    return Err(invalid(
                        format!("{key}.classes"),
                        "list the classes that count in the zone",
                    ));
                }
                let mut mask = 0u16;
                for (c, class) in entry.classes.iter().enumerate() {
                    // Occupancy rows hold MAX_CLASSES counts; later classes are never counted.
                    let mut counted = names.classes.iter().take(MAX_CLASSES);
                    let Some(idx) = counted.position(|n| n == class) else {
                        let msg = format!(
                            "`{class}` is not a counted class (model.classes: {})",
                            list(names.classes)
                        );
                        return Err(invalid(format!("{key}.classes[{c}]"), msg));
                    };
                    mask |= 1 << idx;
                }
                Ok(Demand {
                    zones: vec![(z, mask)],
                    inputs: 0,
                })
            }
            (None, Some(input)) => {
                let Some(i) = names.inputs.iter().position(|n| n == input) else {
                    let msg = format!("unknown input `{input}` (inputs: {})", list(&names.inputs));
                    return Err(invalid(format!("{key}.input"), msg));
                };
                if !entry.classes.is_empty() {
                    return Err(invalid(
                        format!("{key}.classes"),
                        "an input demand takes no classes",
                    ));
                }
                Ok(Demand {
                    zones: Vec::new(),
                    inputs: 1 << i,
                })
            }
            _ => Err(invalid(
                key,
                "give either `zone` (with `classes`) or `input`",
            )),
        }
    }

    fn check_coverage(&self, groups: &[Group], phases: &[Phase]) -> Result<(), ConfigError> {
        let served = phases.iter().fold(0u16, |m, p| m | p.groups);
        for (g, group) in groups.iter().enumerate() {
            if group.kind.is_signal() && served & (1 << g) == 0 {
                let msg = format!(
                    "`{}` is in no phase, so it would never go green",
                    group.name
                );
                return Err(invalid(format!("signals.groups[{g}].name"), msg));
            }
            let cfg = &self.cfg.groups[g];
            if group.kind == GroupKind::Beacon && cfg.demand.is_empty() {
                return Err(invalid(
                    format!("signals.groups[{g}].demand"),
                    "a beacon needs a demand",
                ));
            }
        }
        Ok(())
    }

    fn check_amber_flash(
        &self,
        groups: &[Group],
        conflicts: &[u16; MAX_GROUPS],
    ) -> Result<(), ConfigError> {
        let amber = |g: usize| groups[g].maintenance_flash == FlashColor::Amber;
        for a in (0..groups.len()).filter(|&g| amber(g)) {
            if let Some(b) = (0..a).find(|&b| amber(b) && conflicts[a] & (1 << b) != 0) {
                let msg = format!(
                    "`{}` and `{}` conflict and cannot flash amber together",
                    groups[b].name, groups[a].name
                );
                return Err(invalid(
                    format!("signals.groups[{a}].maintenance_flash"),
                    msg,
                ));
            }
        }
        Ok(())
    }

    /// MUTCD 4I.06 (11th edition): after the flashing don't walk, a buffer interval of at
    /// least 3 s of steady don't walk before any conflicting movement is released. The green
    /// ends only after the pedestrian clearance, so the buffer is the phase's amber plus its
    /// all-red; a pedestrian-only phase has no amber and needs the all-red to cover it.
    fn check_ped_buffer(&self, groups: &[Group], phases: &[Phase]) -> Result<(), ConfigError> {
        for (i, p) in phases.iter().enumerate() {
            let peds = groups
                .iter()
                .enumerate()
                .any(|(g, x)| p.groups & (1 << g) != 0 && x.kind == GroupKind::Pedestrian);
            let buffer = p.amber + p.all_red;
            if peds && buffer + secs(EPS) < secs(PED_BUFFER_S) {
                let msg = format!(
                    "phase `{}` leaves {:.1} s of steady don't walk (amber + all-red) before a \
                     conflicting green; the pedestrian buffer interval needs {PED_BUFFER_S} s \
                     (MUTCD 4I.06)",
                    p.name,
                    buffer.as_secs_f32()
                );
                return Err(invalid(format!("signals.phases[{i}].all_red_s"), msg));
            }
        }
        Ok(())
    }

    fn check_startup(&self, phases: &[Phase]) -> Result<(), ConfigError> {
        let longest = phases.iter().map(|p| p.all_red).max().unwrap_or_default();
        if secs(self.cfg.startup_all_red_s) < longest {
            let msg = format!(
                "{} s is shorter than the longest all-red ({} s)",
                self.cfg.startup_all_red_s,
                longest.as_secs_f32()
            );
            return Err(invalid("signals.startup_all_red_s", msg));
        }
        Ok(())
    }

    fn plans(&self, phases: &[Phase]) -> Result<Vec<TimePlan>, ConfigError> {
        let mut plans: Vec<TimePlan> = Vec::with_capacity(self.cfg.plans.len());
        for (i, p) in self.cfg.plans.iter().enumerate() {
            let key = format!("signals.plans[{i}]");
            let start = parse_hhmm(&p.start).ok_or_else(|| {
                invalid(
                    format!("{key}.start"),
                    format!("`{}` is not a time of day \"HH:MM\"", p.start),
                )
            })?;
            if plans.iter().any(|q| q.start == start) {
                return Err(invalid(
                    format!("{key}.start"),
                    format!("another plan also starts at {}", p.start),
                ));
            }
            let fixed_green = self.plan_greens(&key, p, phases)?;
            plans.push(TimePlan {
                name: p.name.clone(),
                start,
                mode: p.mode,
                fixed_green,
            });
        }
        plans.sort_by_key(|p| p.start);
        Ok(plans)
    }

    fn plan_greens(
        &self,
        key: &str,
        p: &TimePlanConfig,
        phases: &[Phase],
    ) -> Result<Vec<Duration>, ConfigError> {
        if p.fixed_green_s.is_empty() {
            return Ok(phases.iter().map(|ph| ph.fixed_green).collect());
        }
        if p.fixed_green_s.len() != phases.len() {
            let msg = format!("give one green per phase ({}), or none", phases.len());
            return Err(invalid(format!("{key}.fixed_green_s"), msg));
        }
        for (j, (&green, ph)) in p.fixed_green_s.iter().zip(&self.cfg.phases).enumerate() {
            check_secs(
                &format!("{key}.fixed_green_s[{j}]"),
                green,
                ph.min_green_s,
                ph.max_green_s,
            )?;
        }
        Ok(p.fixed_green_s.iter().map(|&s| secs(s)).collect())
    }
}

fn check_name(key: &str, name: &str, seen: &[&str]) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            key,
            format!("`{name}` is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if seen.contains(&name) {
        return Err(invalid(key, format!("`{name}` is used twice")));
    }
    Ok(())
}

/// No pin is claimed twice: lamps, sense inputs and digital inputs.
fn check_pins(cfg: &SignalConfig) -> Result<(), ConfigError> {
    let pins = cfg.pins();
    for (i, (pin, key)) in pins.iter().enumerate() {
        if let Some((_, user)) = pins[..i].iter().find(|(p, _)| p == pin) {
            return Err(invalid(
                key.as_str(),
                format!("pin {pin} is already used by {user}"),
            ));
        }
    }
    Ok(())
}

/// `value` milliseconds, checked to lie in `min..=max`.
fn check_ms(key: &str, value: u32, min: u32, max: u32) -> Result<Duration, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(invalid(key, format!("{value} is not in {min}..={max}")));
    }
    Ok(Duration::from_millis(u64::from(value)))
}

/// The group's lamps in lamp-index order, checking required and foreign lamps.
fn group_lamps(key: &str, g: &GroupConfig) -> Result<[Option<LampPin>; 3], ConfigError> {
    let all = g.named_lamps();
    let own = g.kind.lamp_names();
    let mut lamps = [None; 3];
    for (name, pin) in all {
        match own.iter().position(|n| *n == name) {
            Some(l) => lamps[l] = pin,
            None if pin.is_some() => {
                let msg = format!("a {} group has no {name} lamp", kind_name(g.kind));
                return Err(invalid(format!("{key}.{name}"), msg));
            }
            None => {}
        }
    }
    for &l in g.kind.required_lamps() {
        if lamps[l].is_none() {
            let msg = format!("a {} group needs a {} lamp", kind_name(g.kind), own[l]);
            return Err(invalid(format!("{key}.{}", own[l]), msg));
        }
    }
    Ok(lamps)
}

fn kind_name(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Vehicle => "vehicle",
        GroupKind::Pedestrian => "pedestrian",
        GroupKind::Bus => "bus",
        GroupKind::Beacon => "beacon",
    }
}

/// Options that only make sense for one kind are errors elsewhere, so a misplaced key is seen.
fn check_kind_options(key: &str, g: &GroupConfig) -> Result<(), ConfigError> {
    if g.kind != GroupKind::Vehicle && g.maintenance_flash.is_some() {
        return Err(invalid(
            format!("{key}.maintenance_flash"),
            "only vehicle heads flash amber or red",
        ));
    }
    if g.kind != GroupKind::Beacon && !g.demand.is_empty() {
        return Err(invalid(
            format!("{key}.demand"),
            "only beacons take demand here; put signal demand in signals.phases[].demand",
        ));
    }
    if g.kind != GroupKind::Beacon && g.flash {
        return Err(invalid(
            format!("{key}.flash"),
            "only beacons flash on demand",
        ));
    }
    Ok(())
}

/// `"HH:MM"` to seconds after midnight.
fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * 3600 + m * 60)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];

    pub(crate) const EXAMPLE: &str = r#"
        startup_flash_s = 2.0
        startup_all_red_s = 4.0
        permissive = [["minor", "ped"], ["minor", "bus-b"], ["ped", "bus-b"]]
        conflicts = [["main", "minor"], ["main", "ped"], ["main", "bus-b"]]


        [[inputs]]
        name = "button"
        pin = 5
        active_low = true

        [[groups]]
        name = "main"
        kind = "vehicle"
        red = { pin = 17 }
        amber = { pin = 27 }
        green = { pin = 22 }
        maintenance_flash = "amber"

        [[groups]]
        name = "minor"
        kind = "vehicle"
        red = { pin = 23 }
        amber = { pin = 24 }
        green = { pin = 25 }

        [[groups]]
        name = "ped"
        kind = "pedestrian"
        dont_walk = { pin = 12 }
        walk = { pin = 16 }

        [[groups]]
        name = "bus-b"
        kind = "bus"
        go = { pin = 26 }

        [[groups]]
        name = "bus-coming"
        kind = "beacon"
        lamp = { pin = 6 }
        demand = [{ zone = "bus-lane", classes = ["bus"] }]

        [[phases]]
        name = "main"
        groups = ["main"]
        min_green_s = 10.0
        max_green_s = 40.0
        amber_s = 4.0
        all_red_s = 2.0
        approach_speed_kmh = 50.0
        crossing_width_m = 15.0
        demand = [{ zone = "main-approach", classes = ["car", "bus"] }]

        [[phases]]
        name = "minor"
        groups = ["minor", "ped", "bus-b"]
        min_green_s = 6.0
        max_green_s = 30.0
        amber_s = 3.0
        all_red_s = 2.0
        approach_speed_kmh = 30.0
        walk_s = 7.0
        crossing_length_m = 12.0
        demand = [{ zone = "minor-approach", classes = ["car"] }]
        ped_demand = [{ zone = "crossing", classes = ["person"] }, { input = "button" }]
        bus_priority = { zone = "bus-lane", max_extension_s = 10.0, early_green = true, head_start_s = 3.0 }
    "#;

    fn parse(text: &str) -> SignalConfig {
        toml::from_str(text).unwrap()
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .validate(ZONES, CLASSES)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn example_compiles() {
        let plan = SignalPlan::new(&parse(EXAMPLE), ZONES, CLASSES).unwrap();
        assert_eq!(plan.group_count(), 5);
        assert_eq!(plan.phase_count(), 2);
        assert!(plan.conflicts(0, 1) && plan.conflicts(1, 0) && !plan.conflicts(1, 2));
        let minor = &plan.phases[1];
        // Clearance defaults to 12 m / 1.07 m/s = 11.2 s, rounded up to a tenth.
        assert_eq!(minor.ped_clearance, Duration::from_millis(11_300));
        assert_eq!(minor.ped_demand.inputs, 1);
        assert_eq!(minor.demand.zones, vec![(1, 0b001)]);
        assert_eq!(plan.groups[4].demand.zones, vec![(3, 0b010)]);
        assert_eq!(plan.max_amber_of(0), Duration::from_secs(4));
    }

    #[test]
    fn kinematic_amber_matches_ite() {
        // 50 km/h level: 1 + 13.89 / 6.1 = 3.28 s.
        assert!((kinematic_amber_s(50.0, 0.0) - 3.277).abs() < 0.01);
        // 70 km/h, 4 % downhill: 1 + 19.44 / (6.1 - 0.785) = 4.66 s.
        assert!((kinematic_amber_s(70.0, -4.0) - 4.658).abs() < 0.01);
        // Slow approaches never drop below 3 s.
        assert_eq!(kinematic_amber_s(20.0, 0.0), 3.0);
        assert!((clearance_all_red_s(15.0, 50.0) - 1.512).abs() < 0.01);
    }

    #[test]
    fn short_amber_names_key_and_minimum() {
        let text = EXAMPLE
            .replace("amber_s = 4.0", "amber_s = 3.5")
            .replace("= 50.0", "= 70.0");
        let err = error_of(&text);
        assert_eq!(
            err,
            "signals.phases[0].amber_s: 3.5 s is below the kinematic minimum 4.2 s for 70 km/h"
        );
        // Never below 3 s, even for a slow approach.
        let err = error_of(&EXAMPLE.replace("amber_s = 3.0", "amber_s = 2.5"));
        assert!(
            err.starts_with("signals.phases[1].amber_s: 2.5 s is below the kinematic minimum 3"),
            "{err}"
        );
    }

    #[test]
    fn unsafe_clearances_and_short_walks_are_refused() {
        // An all-red of 0 with no crossing width to compute one from.
        let err = error_of(
            &EXAMPLE
                .replace("        crossing_width_m = 15.0\n", "")
                .replace(
                    "all_red_s = 2.0\n        approach_speed_kmh = 50.0",
                    "all_red_s = 0.0\n        approach_speed_kmh = 50.0",
                ),
        );
        assert!(
            err.starts_with("signals.phases[0].all_red_s: 0 is out of range 1..=10"),
            "{err}"
        );
        // An amber past the 3-6 s guidance.
        let err = error_of(&EXAMPLE.replace("amber_s = 4.0", "amber_s = 7.0"));
        assert!(
            err.starts_with("signals.phases[0].amber_s: 7 s is over 6 s"),
            "{err}"
        );
        // A walk under the MUTCD 7 s, unless the site lowers the minimum on purpose.
        let short = EXAMPLE.replace("walk_s = 7.0", "walk_s = 5.0");
        let err = error_of(&short);
        assert!(
            err.starts_with("signals.phases[1].walk_s: 5 is out of range 7..=60"),
            "{err}"
        );
        let quiet = short.replace(
            "startup_all_red_s = 4.0",
            "startup_all_red_s = 4.0\nmin_walk_s = 4.0",
        );
        assert!(
            SignalPlan::new(&parse(&quiet), ZONES, CLASSES).is_ok(),
            "min_walk_s = 4 allows it"
        );
        let err = error_of(&short.replace(
            "startup_all_red_s = 4.0",
            "startup_all_red_s = 4.0\nmin_walk_s = 3.0",
        ));
        assert!(
            err.starts_with("signals.min_walk_s: 3 is out of range 4..=60"),
            "{err}"
        );
    }

    #[test]
    fn each_rule_names_its_key() {
        let cases = [
            (
                "all_red_s = 2.0\n        approach_speed_kmh = 50.0",
                "all_red_s = 1.0\n approach_speed_kmh = 50.0",
                "signals.phases[0].all_red_s",
            ),
            (
                "min_green_s = 10.0",
                "min_green_s = 3.0",
                "signals.phases[0].min_green_s",
            ),
            (
                "max_green_s = 40.0",
                "max_green_s = 8.0",
                "signals.phases[0].max_green_s",
            ),
            (
                "crossing_length_m = 12.0",
                "crossing_length_m = 12.0\nped_clearance_s = 9.0",
                "signals.phases[1].ped_clearance_s",
            ),
            ("walk_s = 7.0\n", "", "signals.phases[1].walk_s"),
            (
                "max_green_s = 30.0",
                "max_green_s = 15.0",
                "signals.phases[1].max_green_s",
            ),
            (
                "groups = [\"main\"]",
                "groups = [\"main\", \"minor\"]",
                "signals.phases[0].groups",
            ),
            (
                "groups = [\"main\"]",
                "groups = [\"mian\"]",
                "signals.phases[0].groups",
            ),
            (
                "classes = [\"car\", \"bus\"]",
                "classes = [\"van\"]",
                "signals.phases[0].demand[0].classes[0]",
            ),
            (
                "zone = \"minor-approach\"",
                "zone = \"side\"",
                "signals.phases[1].demand[0].zone",
            ),
            (
                "{ input = \"button\" }",
                "{ input = \"knob\" }",
                "signals.phases[1].ped_demand[1].input",
            ),
            ("pin = 16", "pin = 17", "signals.groups[2].walk.pin"),
            ("pin = 26", "pin = 5", "signals.groups[3].go.pin"),
            ("green = { pin = 25 }", "", "signals.groups[1].green"),
            (
                "dont_walk = { pin = 12 }",
                "dont_walk = { pin = 12 }\nred = { pin = 3 }",
                "signals.groups[2].red",
            ),
            (
                "[\"main\", \"bus-b\"]",
                "[\"main\", \"bus-coming\"]",
                "signals.conflicts[2]",
            ),
            (
                "[\"main\", \"minor\"], ",
                "[\"minor\", \"ped\"], [\"main\", \"minor\"], ",
                "signals.conflicts[0]",
            ),
            (
                "[\"minor\", \"ped\"], [\"minor\"",
                "[\"minor\", \"bus-coming\"], [\"minor\"",
                "signals.permissive[0]",
            ),
            (
                "[\"minor\", \"ped\"], [\"minor\"",
                "[\"minor\", \"minor\"], [\"minor\"",
                "signals.permissive[0]",
            ),
            (
                "startup_all_red_s = 4.0",
                "startup_all_red_s = 1.0",
                "signals.startup_all_red_s",
            ),
            (
                "head_start_s = 3.0",
                "head_start_s = 30.0",
                "signals.phases[1].bus_priority.head_start_s",
            ),
            (
                "name = \"minor\"\n        kind",
                "name = \"main\"\n        kind",
                "signals.groups[1].name",
            ),
            (
                "approach_speed_kmh = 30.0",
                "",
                "signals.phases[1].approach_speed_kmh",
            ),
        ];
        for (from, to, key) in cases {
            assert!(EXAMPLE.contains(from), "case for {key} does not apply");
            let err = error_of(&EXAMPLE.replace(from, to));
            assert!(err.starts_with(&format!("{key}:")), "{key}: {err}");
        }
    }

    /// An MMU program card: every pair conflicts unless declared permissive, so a pair left
    /// out is refused in a phase rather than allowed to go green together.
    #[test]
    fn conflicts_are_the_default_and_permissive_pairs_the_exception() {
        let text = EXAMPLE.replace(
            "conflicts = [[\"main\", \"minor\"], [\"main\", \"ped\"], [\"main\", \"bus-b\"]]",
            "",
        );
        let plan = SignalPlan::new(&parse(&text), ZONES, CLASSES).unwrap();
        assert!(plan.conflicts(0, 1) && plan.conflicts(0, 2) && plan.conflicts(0, 3));
        assert!(!plan.conflicts(1, 2) && !plan.conflicts(1, 3) && !plan.conflicts(2, 3));
        assert!(!plan.conflicts(0, 4), "a beacon never conflicts");
        let err = error_of(&text.replace("[\"ped\", \"bus-b\"]", ""));
        assert_eq!(
            err,
            "signals.phases[1].groups: `ped` and `bus-b` share a phase but are not declared \
             permissive: add [\"ped\", \"bus-b\"] to signals.permissive"
        );
        // Nothing declared at all: one group per phase still works, two do not.
        let bare = text.replace(
            "permissive = [[\"minor\", \"ped\"], [\"minor\", \"bus-b\"], [\"ped\", \"bus-b\"]]",
            "",
        );
        assert!(error_of(&bare).contains("add [\"minor\", \"ped\"] to signals.permissive"));
    }

    #[test]
    fn amber_flash_on_conflicting_groups_is_rejected() {
        let text = EXAMPLE.replace(
            "green = { pin = 25 }",
            "green = { pin = 25 }\nmaintenance_flash = \"amber\"",
        );
        assert!(error_of(&text).starts_with("signals.groups[1].maintenance_flash:"));
    }

    #[test]
    fn group_in_no_phase_is_rejected() {
        let text = EXAMPLE.replace(
            "groups = [\"minor\", \"ped\", \"bus-b\"]",
            "groups = [\"minor\", \"ped\"]",
        );
        let text = text.replace("head_start_s = 3.0", "head_start_s = 0.0");
        assert_eq!(
            error_of(&text),
            "signals.groups[3].name: `bus-b` is in no phase, so it would never go green"
        );
    }

    #[test]
    fn time_plans_parse_and_check_greens() {
        let plan = |body: &str| format!("{EXAMPLE}\n[[plans]]\nname = \"night\"\n{body}\n");
        let ok = plan("start = \"22:30\"\nmode = \"fixed-time\"\nfixed_green_s = [20.0, 10.0]");
        let compiled = SignalPlan::new(&parse(&ok), ZONES, CLASSES).unwrap();
        assert_eq!(compiled.plans[0].start, 22 * 3600 + 30 * 60);
        assert_eq!(compiled.plans[0].fixed_green[1], Duration::from_secs(10));
        let err = error_of(&plan("start = \"25:00\"\nmode = \"actuated\""));
        assert!(err.starts_with("signals.plans[0].start:"), "{err}");
        let err = error_of(&plan(
            "start = \"06:00\"\nmode = \"fixed-time\"\nfixed_green_s = [20.0, 2.0]",
        ));
        assert!(
            err.starts_with("signals.plans[0].fixed_green_s[1]:"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err =
            toml::from_str::<SignalConfig>(&EXAMPLE.replace("walk_s", "walk_time_s")).unwrap_err();
        assert!(err.to_string().contains("walk_time_s"), "{err}");
    }

    #[test]
    fn config_round_trips_through_toml() {
        let cfg = parse(EXAMPLE);
        let again: SignalConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        again.validate(ZONES, CLASSES).unwrap();
    }
}
