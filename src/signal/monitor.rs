//! The conflict monitor: an independent check of every output command before it reaches the
//! pins, like the conflict monitor unit in a signal cabinet.
//!
//! Like a monitor unit's program card, it is built from the `[signals]` TOML by its own code,
//! not from the controller's compiled plan: its own conflict table (every pair of signal
//! groups conflicts unless declared permissive) and its own minimum times (amber of at least
//! 3 s, all red of at least 1 s, the flashing don't walk the crossing length needs, the minimum
//! green and the walk). It sees only the commanded lamps, the pins' read-back levels and the
//! tick's clock reading, and times every interval with its own timers; it shares no state with
//! the controller, so a wrong compiled plan or a controller bug cannot also blind the monitor.
//! On any fault it latches all-red flash until [`reset`] or the end of the process; the
//! control loop also writes the fault to the persistent latch ([`super::latch`]), so a restart
//! does not clear it.
//!
//! "Green" here means any right of way: green, amber (steady or flashing), walk, pedestrian
//! clearance and bus B.
//!
//! [`reset`]: ConflictMonitor::reset

use std::time::Duration;

use super::lamp::{Head, LampState, SignalCommand, AMBER, DONT_WALK, GO, GREEN, RED, STOP, WALK};
use super::plan::{GroupKind, GroupName, SignalConfig, MAX_GROUPS};
use crate::config::ConfigError;

/// The monitor's own floors, whatever the plan says: MUTCD 4D.26 amber and all red.
const FLOOR_AMBER: Duration = Duration::from_secs(3);
const FLOOR_ALL_RED: Duration = Duration::from_secs(1);
/// MUTCD 4E.06 walking speed for the flashing don't walk, m/s.
const WALKING_SPEED: f64 = 1.07;
/// Rounding the monitor forgives on every minimum: the plan accepts values 1 ms under a
/// minimum and rounds seconds to milliseconds. Far below any timing that matters.
const SLACK: Duration = Duration::from_millis(2);

/// Why the monitor tripped. Names are group names from the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Two conflicting groups showed a right of way together.
    #[error("conflicting greens: `{a}` and `{b}`")]
    ConflictingGreens {
        /// One group.
        a: GroupName,
        /// The other group.
        b: GroupName,
    },
    /// A vehicle head went from green (or flashing amber) to red without steady amber.
    #[error("`{group}`: green to red without amber")]
    GreenToRedWithoutAmber {
        /// The group.
        group: GroupName,
    },
    /// A vehicle head's amber was shorter than the plan's amber.
    #[error("`{group}`: amber shown {shown_ms} ms, needs {required_ms} ms")]
    AmberTooShort {
        /// The group.
        group: GroupName,
        /// How long the amber was shown.
        shown_ms: u64,
        /// The shortest amber in the plan for this group.
        required_ms: u64,
    },
    /// A group went green too soon after a conflicting group lost its right of way.
    #[error(
        "`{group}` went green {shown_ms} ms after `{after}` ended, needs {required_ms} ms all-red"
    )]
    AllRedTooShort {
        /// The group that went green.
        group: GroupName,
        /// The conflicting group that had just ended.
        after: GroupName,
        /// Time since `after` ended.
        shown_ms: u64,
        /// The shortest all-red in the plan for `after`.
        required_ms: u64,
    },
    /// A vehicle green ended before its minimum green, without a clearance request (a
    /// watchdog breach or a stop may cut it short).
    #[error("`{group}`: green shown {shown_ms} ms, needs {required_ms} ms")]
    GreenTooShort {
        /// The group.
        group: GroupName,
        /// How long the green was shown.
        shown_ms: u64,
        /// The shortest minimum green among the TOML's phases with this group.
        required_ms: u64,
    },
    /// A pedestrian walk ended before its configured walk, without a clearance request.
    #[error("`{group}`: walk shown {shown_ms} ms, needs {required_ms} ms")]
    WalkTooShort {
        /// The group.
        group: GroupName,
        /// How long the walk was shown.
        shown_ms: u64,
        /// The shortest walk among the TOML's phases with this group.
        required_ms: u64,
    },
    /// A pedestrian walk ended without the flashing don't-walk clearance.
    #[error("`{group}`: walk ended without clearance")]
    WalkWithoutClearance {
        /// The group.
        group: GroupName,
    },
    /// A pedestrian clearance was shorter than the plan's.
    #[error("`{group}`: pedestrian clearance shown {shown_ms} ms, needs {required_ms} ms")]
    ClearanceTooShort {
        /// The group.
        group: GroupName,
        /// How long the clearance was shown.
        shown_ms: u64,
        /// The shortest clearance in the plan for this group.
        required_ms: u64,
    },
    /// A vehicle head with no lamp lit, or any head with more than one.
    #[error("`{group}`: {lit} lamps lit")]
    LampCount {
        /// The group.
        group: GroupName,
        /// Lamps lit.
        lit: usize,
    },
    /// A vehicle head went from steady amber to green: amber always ends in red.
    #[error("`{group}`: amber to green after {shown_ms} ms; amber must end in red")]
    AmberToGreen {
        /// The group.
        group: GroupName,
        /// How long the amber was shown.
        shown_ms: u64,
    },
    /// A vehicle head showed steady amber straight after red: an amber that followed no green
    /// (or flashing amber) clears nothing and tells drivers the wrong thing.
    #[error("`{group}`: red to amber")]
    RedToAmber {
        /// The group.
        group: GroupName,
    },
    /// A pedestrian or bus head went dark while the vehicle heads were not in flash: its users
    /// see no signal at all.
    #[error("`{group}`: head dark outside flash")]
    DarkHead {
        /// The group.
        group: GroupName,
    },
    /// A fault latched before the last restart (`control.fault_file`), or a fault file that
    /// could not be read: the unit stays in flash until `edgewatch reset-fault`.
    #[error("fault latched before the restart: {reason}")]
    Latched {
        /// The fault as it was recorded, cut to fit.
        reason: heapless::String<100>,
    },
    /// The command does not have one head per group of the plan.
    #[error("command has {got} groups, the plan has {expected}")]
    GroupCount {
        /// Heads in the command.
        got: usize,
        /// Groups in the plan.
        expected: usize,
    },
    /// Field read-back: two conflicting groups showed a right of way in the field.
    #[error("field shows conflicting greens: `{a}` and `{b}`")]
    FieldConflict {
        /// One group.
        a: GroupName,
        /// The other group.
        b: GroupName,
    },
    /// Field read-back: a head showed more lamps lit than commanded.
    #[error("`{group}`: field shows {lit} lamps lit (dual indication)")]
    FieldDualIndication {
        /// The group.
        group: GroupName,
        /// Lamps the field shows lit.
        lit: usize,
    },
    /// Field read-back: no lamp lit on a head that was commanded one (on a vehicle head,
    /// red fail).
    #[error("`{group}`: field shows no lamp lit")]
    FieldNoLampLit {
        /// The group.
        group: GroupName,
    },
    /// Field read-back: a lamp did not show its command.
    #[error(
        "`{group}` {lamp}: commanded {}, field shows it {}",
        lit_word(*commanded),
        lit_word(*shown)
    )]
    FieldMismatch {
        /// The group.
        group: GroupName,
        /// The lamp, as named in the TOML.
        lamp: &'static str,
        /// Commanded lit.
        commanded: bool,
        /// Shown lit.
        shown: bool,
    },
    /// Field read-back: a sense input could not be read, so the lamp is not known to show
    /// its command.
    #[error("`{group}` {lamp}: sense input could not be read")]
    SenseUnreadable {
        /// The group.
        group: GroupName,
        /// The lamp, as named in the TOML.
        lamp: &'static str,
    },
    /// The monitor's check of the pins: an output pin, read back a tick after the write, does
    /// not show what the monitor let through (something else drives it, or the write did not
    /// take).
    #[error("`{group}` {lamp} (pin {pin}): commanded {}, the pin shows it {}", lit_word(*commanded), lit_word(!*commanded))]
    PinMismatch {
        /// The group.
        group: GroupName,
        /// The lamp, as named in the TOML.
        lamp: &'static str,
        /// The pin.
        pin: u32,
        /// Commanded lit.
        commanded: bool,
    },
    /// An output pin could not be written, so the lamps are not known to show the command.
    #[error("output pin {pin} could not be written")]
    PinWrite {
        /// The pin.
        pin: u32,
    },
}

/// What the monitor knows about one group: a line of its program card.
#[derive(Debug, Clone)]
struct Watched {
    name: GroupName,
    kind: GroupKind,
    min_amber: Duration,
    min_all_red: Duration,
    min_clearance: Duration,
    min_green: Duration,
    min_walk: Duration,
}

/// One lamp output on the monitor's card: the pin it reads back, and its polarity.
#[derive(Debug, Clone, Copy)]
struct CardPin {
    group: usize,
    lamp: usize,
    pin: u32,
    active_low: bool,
}

/// The independent conflict monitor; see the module docs.
#[derive(Debug, Clone)]
pub struct ConflictMonitor {
    groups: Vec<Watched>,
    conflicts: [u16; MAX_GROUPS],
    /// Every lamp output, from the TOML, for the check of the pins.
    pins: Vec<CardPin>,
    /// The last command let through.
    prev: [Head; MAX_GROUPS],
    /// When each head last changed.
    changed_at: [Duration; MAX_GROUPS],
    /// When each group last lost its right of way (or the monitor started).
    ended_at: [Duration; MAX_GROUPS],
    /// Groups with a right of way in `prev`.
    green: u16,
    started: bool,
    /// A clearance was requested (watchdog breach, stop): greens and walks may end before
    /// their minimum; amber, all red and the flashing don't walk may not.
    clearing: bool,
    fault: Option<Fault>,
    checks: u64,
    pin_checks: u64,
    /// Lamp pins whose level could not be read back (not checked that time).
    pin_read_errors: u64,
}

impl ConflictMonitor {
    /// A monitor with its own program card, read from `config` (group names, kinds, phases and
    /// permissive pairs) by the monitor's own code. Call it on a config the plan has already
    /// validated; an unknown group name is still an error naming the key, never a panic.
    pub fn new(config: &SignalConfig) -> Result<ConflictMonitor, ConfigError> {
        let card = Card::read(config)?;
        Ok(ConflictMonitor {
            groups: card.groups,
            conflicts: card.conflicts,
            pins: card.pins,
            prev: [Head::default(); MAX_GROUPS],
            changed_at: [Duration::ZERO; MAX_GROUPS],
            ended_at: [Duration::ZERO; MAX_GROUPS],
            green: 0,
            started: false,
            clearing: false,
            fault: None,
            checks: 0,
            pin_checks: 0,
            pin_read_errors: 0,
        })
    }

    /// The group names in the order the commands give them.
    pub fn group_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.iter().map(|g| g.name.as_str())
    }

    /// A clearance was requested (a watchdog breach or a stop): from now on a green or a walk
    /// may end before its minimum. Amber, all red and the flashing don't walk are still held
    /// to theirs. Until [`reset`](Self::reset).
    pub fn allow_clearance(&mut self) {
        self.clearing = true;
    }

    /// Checks `cmd` at `now`. `Ok` means it may be shown; `Err` means the monitor has tripped
    /// (now or earlier) and [`flash_command`](Self::flash_command) must be shown instead.
    pub fn check(&mut self, now: Duration, cmd: &SignalCommand) -> Result<(), Fault> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        self.checks += 1;
        if !self.started {
            self.start(now);
        }
        match self.inspect(now, cmd) {
            Ok(green) => {
                self.accept(now, cmd, green);
                Ok(())
            }
            Err(fault) => {
                self.trip(fault.clone());
                Err(fault)
            }
        }
    }

    /// The monitor's own check of the pins, at the start of every tick: each lamp output's
    /// level, read back from the GPIO (`levels`, as `(pin, level)`) a whole tick after the
    /// last write, mapped through the monitor's own pin numbers and polarities from the TOML,
    /// must show what the last checked command said: steady lamps lit, dark lamps dark,
    /// flashing lamps either. With that, every rule checked on the command also holds on the
    /// pins, whatever the pin bank did in between and whoever else touches the GPIO. A
    /// difference latches flash like any other fault. A pin that cannot be read back (a GPIO
    /// chip without read-back) is counted and not checked, never a fault: the write went
    /// through. Nothing is checked once tripped: the flash is then on the pins.
    pub fn check_pins(&mut self, levels: &[(u32, Option<bool>)]) -> Result<(), Fault> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        if !self.started {
            return Ok(());
        }
        self.pin_checks += 1;
        for p in &self.pins {
            let level = levels
                .iter()
                .find(|(pin, _)| *pin == p.pin)
                .and_then(|&(_, level)| level);
            let Some(high) = level else {
                self.pin_read_errors += 1;
                if self.pin_read_errors.is_power_of_two() {
                    log::warn!(
                        "signals: output pin {} cannot be read back ({} times): not checked",
                        p.pin,
                        self.pin_read_errors
                    );
                }
                continue;
            };
            let lit = high != p.active_low;
            let ok = match self.prev[p.group].lamps[p.lamp] {
                LampState::On => lit,
                LampState::Off => !lit,
                LampState::Flash => true,
            };
            if !ok {
                let fault = Fault::PinMismatch {
                    group: self.name(p.group),
                    lamp: self.groups[p.group].kind.lamp_names()[p.lamp],
                    pin: p.pin,
                    commanded: !lit,
                };
                self.trip(fault.clone());
                return Err(fault);
            }
        }
        Ok(())
    }

    /// Latches `fault` (if not tripped already), e.g. for a failed pin write.
    pub fn trip(&mut self, fault: Fault) {
        if self.fault.is_none() {
            log::error!("signals: conflict monitor tripped: {fault}; all-red flash until reset");
            self.fault = Some(fault);
        }
    }

    /// Clears a latched fault. The next command is checked as at power-up: all groups are
    /// taken to have been red since then.
    pub fn reset(&mut self) {
        if let Some(fault) = self.fault.take() {
            log::warn!("signals: conflict monitor reset (was: {fault})");
        }
        self.started = false;
        self.clearing = false;
    }

    /// The latched fault, if any.
    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }

    /// True while a fault is latched.
    pub fn is_tripped(&self) -> bool {
        self.fault.is_some()
    }

    /// Commands checked so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Checks of the pins run so far (see [`check_pins`](Self::check_pins)), and pin levels
    /// that could not be read back.
    pub fn pin_checks(&self) -> (u64, u64) {
        (self.pin_checks, self.pin_read_errors)
    }

    /// The fail-safe command: vehicle reds flashing, everything else dark.
    pub fn flash_command(&self) -> SignalCommand {
        let mut cmd = SignalCommand::dark(self.groups.len());
        for (g, group) in self.groups.iter().enumerate() {
            if group.kind == GroupKind::Vehicle {
                cmd.set(g, RED, LampState::Flash);
            }
        }
        cmd
    }

    /// Power-up: every group at rest and red since `now`.
    fn start(&mut self, now: Duration) {
        for (g, group) in self.groups.iter().enumerate() {
            self.prev[g] = match group.kind {
                GroupKind::Vehicle => Head::only(RED, LampState::On),
                GroupKind::Pedestrian => Head::only(DONT_WALK, LampState::On),
                GroupKind::Bus => Head::only(STOP, LampState::On),
                GroupKind::Beacon => Head::default(),
            };
        }
        self.changed_at = [now; MAX_GROUPS];
        self.ended_at = [now; MAX_GROUPS];
        self.green = 0;
        self.started = true;
    }

    /// Every rule; returns the groups with a right of way in `cmd`.
    fn inspect(&self, now: Duration, cmd: &SignalCommand) -> Result<u16, Fault> {
        let heads = cmd.heads();
        if heads.len() != self.groups.len() {
            return Err(Fault::GroupCount {
                got: heads.len(),
                expected: self.groups.len(),
            });
        }
        let mut green = 0u16;
        let flash = self.in_flash(heads);
        for (g, head) in heads.iter().enumerate() {
            self.check_lamps(g, head, flash)?;
            if has_right_of_way(self.groups[g].kind, head) {
                green |= 1 << g;
            }
        }
        for g in bits(green) {
            if let Some(other) = bits(self.conflicts[g] & green).next() {
                return Err(Fault::ConflictingGreens {
                    a: self.name(g),
                    b: self.name(other),
                });
            }
        }
        for (g, head) in heads.iter().enumerate() {
            self.check_transition(now, g, head)?;
        }
        for g in bits(green & !self.green) {
            self.check_all_red(now, g)?;
        }
        Ok(green)
    }

    fn accept(&mut self, now: Duration, cmd: &SignalCommand, green: u16) {
        for (g, head) in cmd.heads().iter().enumerate() {
            if *head != self.prev[g] {
                self.prev[g] = *head;
                self.changed_at[g] = now;
            }
        }
        for g in bits(self.green & !green) {
            self.ended_at[g] = now;
        }
        self.green = green;
    }

    fn name(&self, g: usize) -> GroupName {
        self.groups[g].name.clone()
    }

    /// Flash mode: at least one vehicle head, and every vehicle head, flashes its lamp. Only
    /// then may pedestrian and bus heads be dark.
    fn in_flash(&self, heads: &[Head]) -> bool {
        let mut vehicles = self
            .groups
            .iter()
            .zip(heads)
            .filter(|(w, _)| w.kind == GroupKind::Vehicle)
            .peekable();
        vehicles.peek().is_some()
            && vehicles.all(|(_, h)| h.lamps.iter().all(|&l| l != LampState::On))
    }

    /// Vehicle heads show exactly one lamp; pedestrian and bus heads one outside flash and at
    /// most one in it; beacons at most one; unused lamps stay dark.
    fn check_lamps(&self, g: usize, head: &Head, flash: bool) -> Result<(), Fault> {
        let kind = self.groups[g].kind;
        let lit = head.lit_count();
        let foreign = head.lamps[kind.lamp_names().len()..]
            .iter()
            .any(|l| l.is_lit());
        let ok = match kind {
            GroupKind::Vehicle => lit == 1,
            _ => lit <= 1,
        };
        if !ok || foreign {
            return Err(Fault::LampCount {
                group: self.name(g),
                lit,
            });
        }
        if lit == 0 && !flash && matches!(kind, GroupKind::Pedestrian | GroupKind::Bus) {
            return Err(Fault::DarkHead {
                group: self.name(g),
            });
        }
        Ok(())
    }

    fn check_transition(&self, now: Duration, g: usize, head: &Head) -> Result<(), Fault> {
        let prev = &self.prev[g];
        let shown = now.saturating_sub(self.changed_at[g]);
        let group = &self.groups[g];
        match group.kind {
            GroupKind::Vehicle
                if head.lamps[GREEN].is_lit() && prev.lamps[AMBER] == LampState::On =>
            {
                return Err(Fault::AmberToGreen {
                    group: self.name(g),
                    shown_ms: millis(shown),
                });
            }
            GroupKind::Vehicle
                if head.lamps[AMBER] == LampState::On && prev.lamps[RED].is_lit() =>
            {
                return Err(Fault::RedToAmber {
                    group: self.name(g),
                });
            }
            GroupKind::Vehicle
                if prev.lamps[GREEN] == LampState::On
                    && head.lamps[GREEN] != LampState::On
                    && shown + SLACK < group.min_green
                    && !self.clearing =>
            {
                return Err(Fault::GreenTooShort {
                    group: self.name(g),
                    shown_ms: millis(shown),
                    required_ms: millis(group.min_green),
                });
            }
            GroupKind::Vehicle if head.lamps[RED].is_lit() && !prev.lamps[RED].is_lit() => {
                if prev.lamps[GREEN].is_lit() || prev.lamps[AMBER] == LampState::Flash {
                    return Err(Fault::GreenToRedWithoutAmber {
                        group: self.name(g),
                    });
                }
                if prev.lamps[AMBER] == LampState::On && shown + SLACK < group.min_amber {
                    return Err(Fault::AmberTooShort {
                        group: self.name(g),
                        shown_ms: millis(shown),
                        required_ms: millis(group.min_amber),
                    });
                }
            }
            GroupKind::Pedestrian => {
                let clearing = head.lamps[DONT_WALK] == LampState::Flash;
                let walk_ended = prev.lamps[WALK].is_lit() && !head.lamps[WALK].is_lit();
                if walk_ended && !clearing {
                    return Err(Fault::WalkWithoutClearance {
                        group: self.name(g),
                    });
                }
                if walk_ended && shown + SLACK < group.min_walk && !self.clearing {
                    return Err(Fault::WalkTooShort {
                        group: self.name(g),
                        shown_ms: millis(shown),
                        required_ms: millis(group.min_walk),
                    });
                }
                let ended = prev.lamps[DONT_WALK] == LampState::Flash && !clearing;
                if ended && !head.lamps[WALK].is_lit() && shown + SLACK < group.min_clearance {
                    return Err(Fault::ClearanceTooShort {
                        group: self.name(g),
                        shown_ms: millis(shown),
                        required_ms: millis(group.min_clearance),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Group `g` is gaining a right of way: every conflicting group must have been without one
    /// for at least its all-red.
    fn check_all_red(&self, now: Duration, g: usize) -> Result<(), Fault> {
        for other in bits(self.conflicts[g]) {
            // A group losing its right of way in this very command has had no all-red at all.
            let ended = if self.green & (1 << other) != 0 {
                now
            } else {
                self.ended_at[other]
            };
            let red_for = now.saturating_sub(ended);
            let needed = self.groups[other].min_all_red;
            if red_for + SLACK < needed {
                return Err(Fault::AllRedTooShort {
                    group: self.name(g),
                    after: self.name(other),
                    shown_ms: millis(red_for),
                    required_ms: millis(needed),
                });
            }
        }
        Ok(())
    }
}

/// The monitor's program card, read from the TOML.
struct Card {
    groups: Vec<Watched>,
    conflicts: [u16; MAX_GROUPS],
    pins: Vec<CardPin>,
}

impl Card {
    fn read(cfg: &SignalConfig) -> Result<Card, ConfigError> {
        if cfg.groups.len() > MAX_GROUPS {
            return Err(ConfigError::invalid(
                "signals.groups",
                format!("at most {MAX_GROUPS} groups"),
            ));
        }
        let mut groups: Vec<Watched> = cfg
            .groups
            .iter()
            .map(|g| Watched {
                name: GroupName::try_from(g.name.as_str()).unwrap_or_default(),
                kind: g.kind,
                min_amber: Duration::MAX,
                min_all_red: Duration::MAX,
                min_clearance: Duration::MAX,
                min_green: Duration::MAX,
                min_walk: Duration::MAX,
            })
            .collect();
        let index = |key: String, name: &str| {
            cfg.groups
                .iter()
                .position(|g| g.name == name)
                .ok_or_else(|| ConfigError::invalid(key, format!("unknown group `{name}`")))
        };
        // Every pair of signal groups conflicts unless declared permissive.
        let signals = (0..groups.len())
            .filter(|&g| groups[g].kind.is_signal())
            .fold(0u16, |m, g| m | 1 << g);
        let mut conflicts = [0u16; MAX_GROUPS];
        for g in (0..groups.len()).filter(|&g| signals & (1 << g) != 0) {
            conflicts[g] = signals & !(1 << g);
        }
        for (k, [a, b]) in cfg.permissive.iter().enumerate() {
            let key = || format!("signals.permissive[{k}]");
            let (a, b) = (index(key(), a)?, index(key(), b)?);
            conflicts[a] &= !(1 << b);
            conflicts[b] &= !(1 << a);
        }
        // Each group's minimums: the shortest among the phases that show it, never below the
        // monitor's own floors.
        for (p, phase) in cfg.phases.iter().enumerate() {
            let ped_clearance = phase
                .crossing_length_m
                .map_or(0.0, |m| f64::from(m) / WALKING_SPEED)
                .max(phase.ped_clearance_s.map_or(0.0, f64::from));
            for (k, name) in phase.groups.iter().enumerate() {
                let g = index(format!("signals.phases[{p}].groups[{k}]"), name)?;
                let w = &mut groups[g];
                let amber = secs(phase.amber_s.unwrap_or(0.0).into()).max(FLOOR_AMBER);
                let all_red = secs(phase.all_red_s.into()).max(FLOOR_ALL_RED);
                w.min_amber = w.min_amber.min(amber);
                w.min_all_red = w.min_all_red.min(all_red);
                w.min_clearance = w.min_clearance.min(secs(ped_clearance));
                w.min_green = w.min_green.min(secs(phase.min_green_s.into()));
                w.min_walk = w.min_walk.min(secs(phase.walk_s.unwrap_or(0.0).into()));
            }
        }
        for w in &mut groups {
            // A group in no phase never gets a right of way: nothing to time.
            for d in [
                &mut w.min_amber,
                &mut w.min_all_red,
                &mut w.min_clearance,
                &mut w.min_green,
                &mut w.min_walk,
            ] {
                if *d == Duration::MAX {
                    *d = Duration::ZERO;
                }
            }
        }
        let mut pins = Vec::new();
        for (group, g) in cfg.groups.iter().enumerate() {
            let lamps = match g.kind {
                GroupKind::Vehicle => [g.red, g.amber, g.green],
                GroupKind::Pedestrian => [g.dont_walk, g.walk, None],
                GroupKind::Bus => [g.stop, g.go, None],
                GroupKind::Beacon => [g.lamp, None, None],
            };
            for (lamp, pin) in lamps.into_iter().enumerate() {
                if let Some(pin) = pin {
                    pins.push(CardPin {
                        group,
                        lamp,
                        pin: pin.pin,
                        active_low: pin.active_low,
                    });
                }
            }
        }
        Ok(Card {
            groups,
            conflicts,
            pins,
        })
    }
}

/// Seconds to a duration, truncated to the millisecond; negative and NaN are zero.
fn secs(s: f64) -> Duration {
    Duration::from_millis((s * 1000.0).max(0.0) as u64)
}

/// True when the head gives its users a right of way (green in the module-doc sense).
fn has_right_of_way(kind: GroupKind, head: &Head) -> bool {
    let l = &head.lamps;
    match kind {
        GroupKind::Vehicle => l[GREEN].is_lit() || l[AMBER].is_lit(),
        GroupKind::Pedestrian => l[WALK].is_lit() || l[DONT_WALK] == LampState::Flash,
        GroupKind::Bus => l[GO].is_lit(),
        GroupKind::Beacon => false,
    }
}

fn lit_word(lit: bool) -> &'static str {
    if lit {
        "lit"
    } else {
        "dark"
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Indices of the set bits of `mask`, lowest first.
fn bits(mask: u16) -> impl Iterator<Item = usize> {
    (0..MAX_GROUPS).filter(move |&g| mask & (1 << g) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::plan::{SignalConfig, SignalPlan};

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];
    // Groups of the example plan.
    const MAIN: usize = 0;
    const MINOR: usize = 1;
    const PED: usize = 2;

    fn monitor() -> ConflictMonitor {
        let cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        SignalPlan::new(&cfg, ZONES, CLASSES).unwrap();
        ConflictMonitor::new(&cfg).unwrap()
    }

    fn rest() -> SignalCommand {
        let mut cmd = SignalCommand::dark(5);
        cmd.set(MAIN, RED, LampState::On);
        cmd.set(MINOR, RED, LampState::On);
        cmd.set(PED, DONT_WALK, LampState::On);
        cmd.set(3, STOP, LampState::On);
        cmd
    }

    fn with(mut cmd: SignalCommand, g: usize, lamp: usize) -> SignalCommand {
        cmd.heads_mut()[g] = Head::only(lamp, LampState::On);
        cmd
    }

    fn secs(s: f32) -> Duration {
        Duration::from_secs_f32(s)
    }

    #[test]
    fn a_proper_sequence_passes() {
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        m.check(secs(2.0), &with(rest(), MAIN, GREEN)).unwrap();
        m.check(secs(12.0), &with(rest(), MAIN, AMBER)).unwrap();
        m.check(secs(16.0), &rest()).unwrap();
        m.check(secs(18.0), &with(rest(), MINOR, GREEN)).unwrap();
        assert_eq!(m.checks(), 5);
        assert!(!m.is_tripped());
    }

    #[test]
    fn green_without_startup_all_red_trips() {
        let mut m = monitor();
        let err = m.check(secs(0.5), &with(rest(), MAIN, GREEN)).unwrap_err();
        assert!(matches!(err, Fault::AllRedTooShort { .. }), "{err}");
    }

    #[test]
    fn each_fault_is_caught_and_latched() {
        type Case = fn(&mut ConflictMonitor) -> Result<(), Fault>;
        let cases: [(Case, &str); 8] = [
            (
                |m| m.check(secs(3.0), &with(with(rest(), MAIN, GREEN), MINOR, GREEN)),
                "conflicting greens",
            ),
            (
                |m| {
                    m.check(secs(3.0), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(13.0), &rest()))
                },
                "without amber",
            ),
            (
                |m| {
                    m.check(secs(2.5), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(12.5), &with(rest(), MAIN, AMBER)))
                        .and(m.check(secs(14.5), &rest()))
                },
                "amber shown 2000 ms",
            ),
            (
                |m| {
                    m.check(secs(2.5), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(12.5), &with(rest(), MAIN, AMBER)))
                        .and(m.check(secs(16.5), &rest()))
                        .and(m.check(secs(17.5), &with(rest(), MINOR, GREEN)))
                },
                "all-red",
            ),
            (
                |m| {
                    m.check(secs(2.5), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(7.5), &with(rest(), MAIN, AMBER)))
                },
                "green shown 5000 ms, needs 10000 ms",
            ),
            (
                |m| {
                    let mut clearing = rest();
                    clearing.set(PED, DONT_WALK, LampState::Flash);
                    m.check(secs(3.0), &with(rest(), PED, WALK))
                        .and(m.check(secs(10.0), &clearing))
                        .and(m.check(secs(11.0), &rest()))
                },
                "pedestrian clearance shown 1000 ms",
            ),
            (
                |m| {
                    let mut clearing = rest();
                    clearing.set(PED, DONT_WALK, LampState::Flash);
                    m.check(secs(3.0), &with(rest(), PED, WALK))
                        .and(m.check(secs(6.0), &clearing))
                },
                "walk shown 3000 ms, needs 7000 ms",
            ),
            (
                |m| {
                    m.check(secs(3.0), &with(rest(), PED, WALK))
                        .and(m.check(secs(10.0), &rest()))
                },
                "without clearance",
            ),
        ];
        for (case, expect) in cases {
            let mut m = monitor();
            m.check(Duration::ZERO, &rest()).unwrap();
            let err = case(&mut m).unwrap_err().to_string();
            assert!(err.contains(expect), "{expect}: {err}");
            // Latched: even a harmless command is refused until reset.
            assert!(m.check(secs(100.0), &rest()).is_err());
            m.reset();
            m.check(secs(100.0), &rest()).unwrap();
        }
    }

    /// Issue 12, finding 5: amber back to green, an amber out of red, and pedestrian or bus
    /// heads going dark outside flash all passed before.
    #[test]
    fn amber_must_follow_green_and_end_in_red_and_heads_stay_lit() {
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        m.check(secs(3.0), &with(rest(), MAIN, GREEN)).unwrap();
        m.check(secs(13.0), &with(rest(), MAIN, AMBER)).unwrap();
        let err = m.check(secs(13.1), &with(rest(), MAIN, GREEN)).unwrap_err();
        assert!(
            matches!(err, Fault::AmberToGreen { shown_ms: 100, .. }),
            "{err}"
        );

        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        let err = m.check(secs(3.0), &with(rest(), MAIN, AMBER)).unwrap_err();
        assert_eq!(err.to_string(), "`main`: red to amber");

        for (g, name) in [(PED, "ped"), (3, "bus-b")] {
            let mut m = monitor();
            m.check(secs(0.0), &rest()).unwrap();
            let mut dark = rest();
            dark.heads_mut()[g] = Head::default();
            let err = m.check(secs(1.0), &dark).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`{name}`: head dark outside flash")
            );
        }
        // In flash (every vehicle head flashing) they may be dark: start-up and maintenance.
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        let mut flash = m.flash_command();
        flash.set(MAIN, RED, LampState::Off);
        flash.set(MAIN, AMBER, LampState::Flash);
        m.check(secs(1.0), &m.flash_command()).unwrap();
        m.check(secs(2.0), &rest()).unwrap();
        m.check(secs(5.0), &flash).unwrap();
    }

    #[test]
    fn handing_over_right_of_way_in_one_command_trips() {
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        m.check(secs(2.5), &with(rest(), MAIN, GREEN)).unwrap();
        m.check(secs(12.5), &with(rest(), MAIN, AMBER)).unwrap();
        let err = m
            .check(secs(16.5), &with(rest(), MINOR, GREEN))
            .unwrap_err();
        assert!(
            matches!(err, Fault::AllRedTooShort { shown_ms: 0, .. }),
            "{err}"
        );
    }

    /// A clearance request (watchdog breach, stop) may cut a green or a walk short, never an
    /// amber, an all red or a flashing don't walk.
    #[test]
    fn a_clearance_may_cut_green_and_walk_but_nothing_else() {
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        m.check(secs(2.5), &with(rest(), MAIN, GREEN)).unwrap();
        m.allow_clearance();
        m.check(secs(4.0), &with(rest(), MAIN, AMBER)).unwrap();
        let err = m.check(secs(6.0), &rest()).unwrap_err();
        assert!(matches!(err, Fault::AmberTooShort { .. }), "{err}");

        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        m.check(secs(3.0), &with(rest(), PED, WALK)).unwrap();
        m.allow_clearance();
        let mut clearing = rest();
        clearing.set(PED, DONT_WALK, LampState::Flash);
        m.check(secs(4.0), &clearing).unwrap();
        let err = m.check(secs(10.0), &rest()).unwrap_err();
        assert!(matches!(err, Fault::ClearanceTooShort { .. }), "{err}");

        // And a reset ends the allowance.
        m.reset();
        m.check(secs(20.0), &rest()).unwrap();
        m.check(secs(23.0), &with(rest(), MAIN, GREEN)).unwrap();
        let err = m.check(secs(24.0), &with(rest(), MAIN, AMBER)).unwrap_err();
        assert!(matches!(err, Fault::GreenTooShort { .. }), "{err}");
    }

    /// Issue 12, finding 4: the monitor reads its own card from the TOML, so a compiled plan
    /// that lost a conflict or a minimum cannot blind it. Here the controller runs a plan
    /// tampered after compiling (main and minor in one phase, main's minimum green cut to 1 s);
    /// the monitor, built from the same TOML, trips on its first conflicting command.
    #[test]
    fn a_tampered_plan_cannot_blind_the_monitor() {
        use crate::config::MAX_CLASSES;
        use crate::signal::controller::{Controller, Detections};
        let cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        let mut m = ConflictMonitor::new(&cfg).unwrap();
        let run = |plan: &SignalPlan, m: &mut ConflictMonitor| {
            let mut controller = Controller::new(plan, Duration::ZERO);
            let occupancy = [[1u32; MAX_CLASSES]; 4];
            let det = Detections {
                zone_occupancy: &occupancy,
                camera_ok: true,
                inputs: 0,
            };
            let mut now = Duration::ZERO;
            while now < Duration::from_secs(300) {
                let cmd = *controller.step(now, &det);
                m.check(now, &cmd)?;
                now += Duration::from_millis(100);
            }
            Ok::<(), Fault>(())
        };
        let honest = SignalPlan::new(&cfg, ZONES, CLASSES).unwrap();
        run(&honest, &mut m).expect("the honest plan passes its own monitor");

        let mut merged = honest.clone();
        merged.phases[0].groups |= 1 << MINOR;
        merged.conflicts = [0; MAX_GROUPS];
        let mut m = ConflictMonitor::new(&cfg).unwrap();
        let err = run(&merged, &mut m).unwrap_err();
        assert!(matches!(err, Fault::ConflictingGreens { .. }), "{err}");

        let mut short = honest.clone();
        short.phases[0].min_green = Duration::from_secs(1);
        short.phases[0].max_green = Duration::from_secs(2);
        short.phases[0].fixed_green = Duration::from_secs(2);
        let mut m = ConflictMonitor::new(&cfg).unwrap();
        let err = run(&short, &mut m).unwrap_err();
        assert!(
            matches!(
                err,
                Fault::GreenTooShort {
                    required_ms: 10_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The pins read back: matching levels pass, an unreadable pin is counted and skipped,
    /// a lit pin commanded dark latches flash.
    #[test]
    fn the_pins_must_show_the_checked_command() {
        let mut m = monitor();
        m.check(secs(0.0), &rest()).unwrap();
        let levels = |m: &ConflictMonitor| -> Vec<(u32, Option<bool>)> {
            m.pins
                .iter()
                .map(|p| {
                    let lit = m.prev[p.group].lamps[p.lamp].is_lit();
                    (p.pin, Some(lit != p.active_low))
                })
                .collect()
        };
        let mut good = levels(&m);
        m.check_pins(&good).unwrap();
        good[0].1 = None;
        m.check_pins(&good).unwrap();
        assert_eq!(m.pin_checks(), (2, 1));
        let main_green = m
            .pins
            .iter()
            .find(|p| p.group == MAIN && p.lamp == GREEN)
            .unwrap();
        let mut bad = levels(&m);
        for l in bad.iter_mut().filter(|l| l.0 == main_green.pin) {
            l.1 = Some(!main_green.active_low);
        }
        let err = m.check_pins(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                Fault::PinMismatch {
                    commanded: false,
                    ..
                }
            ),
            "{err}"
        );
        assert!(m.is_tripped());
    }

    #[test]
    fn lamp_counts_are_checked() {
        let mut m = monitor();
        let mut two = with(rest(), MAIN, GREEN);
        two.set(MAIN, RED, LampState::On);
        assert!(matches!(
            m.check(secs(3.0), &two),
            Err(Fault::LampCount { lit: 2, .. })
        ));
        let mut m = monitor();
        let mut none = rest();
        none.heads_mut()[MINOR] = Head::default();
        assert!(matches!(
            m.check(secs(3.0), &none),
            Err(Fault::LampCount { lit: 0, .. })
        ));
    }

    #[test]
    fn flash_command_is_red_flash_only() {
        let m = monitor();
        let cmd = m.flash_command();
        assert_eq!(cmd.heads()[MAIN], Head::only(RED, LampState::Flash));
        assert_eq!(cmd.heads()[PED], Head::default());
    }
}
