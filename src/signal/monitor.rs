//! The conflict monitor: an independent check of every output command before it reaches the
//! pins, like the conflict monitor unit in a signal cabinet.
//!
//! It is built from the plan alone (its own copy of the conflict matrix and the minimum amber,
//! all-red and clearance times) and sees only the commanded lamps and the time; it shares no
//! state with the controller. On any fault it latches all-red flash until [`reset`]
//! ([`ConflictMonitor::reset`]) or the end of the process; the control loop also writes the
//! fault to the persistent latch ([`super::latch`]), so a restart does not clear it.
//!
//! "Green" here means any right of way: green, amber (steady or flashing), walk, pedestrian
//! clearance and bus B.
//!
//! [`reset`]: ConflictMonitor::reset

use std::time::Duration;

use super::lamp::{Head, LampState, SignalCommand, AMBER, DONT_WALK, GO, GREEN, RED, STOP, WALK};
use super::plan::{GroupKind, GroupName, SignalPlan, MAX_GROUPS};

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
    /// An output pin could not be written, so the lamps are not known to show the command.
    #[error("output pin {pin} could not be written")]
    PinWrite {
        /// The pin.
        pin: u32,
    },
}

/// What the monitor knows about one group.
#[derive(Debug, Clone)]
struct Watched {
    name: GroupName,
    kind: GroupKind,
    min_amber: Duration,
    min_all_red: Duration,
    min_clearance: Duration,
}

/// The independent conflict monitor; see the module docs.
#[derive(Debug, Clone)]
pub struct ConflictMonitor {
    groups: Vec<Watched>,
    conflicts: [u16; MAX_GROUPS],
    /// The last command let through.
    prev: [Head; MAX_GROUPS],
    /// When each head last changed.
    changed_at: [Duration; MAX_GROUPS],
    /// When each group last lost its right of way (or the monitor started).
    ended_at: [Duration; MAX_GROUPS],
    /// Groups with a right of way in `prev`.
    green: u16,
    started: bool,
    fault: Option<Fault>,
    checks: u64,
}

impl ConflictMonitor {
    /// A monitor with its own copy of the plan's conflicts and minimum times.
    pub fn new(plan: &SignalPlan) -> ConflictMonitor {
        let groups = (0..plan.group_count())
            .map(|g| Watched {
                name: plan.groups[g].name.clone(),
                kind: plan.group_kind(g),
                min_amber: plan.min_amber_of(g),
                min_all_red: plan.min_all_red_of(g),
                min_clearance: plan.min_ped_clearance_of(g),
            })
            .collect();
        ConflictMonitor {
            groups,
            conflicts: plan.conflicts,
            prev: [Head::default(); MAX_GROUPS],
            changed_at: [Duration::ZERO; MAX_GROUPS],
            ended_at: [Duration::ZERO; MAX_GROUPS],
            green: 0,
            started: false,
            fault: None,
            checks: 0,
        }
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
            GroupKind::Vehicle if head.lamps[RED].is_lit() && !prev.lamps[RED].is_lit() => {
                if prev.lamps[GREEN].is_lit() || prev.lamps[AMBER] == LampState::Flash {
                    return Err(Fault::GreenToRedWithoutAmber {
                        group: self.name(g),
                    });
                }
                if prev.lamps[AMBER] == LampState::On && shown < group.min_amber {
                    return Err(Fault::AmberTooShort {
                        group: self.name(g),
                        shown_ms: millis(shown),
                        required_ms: millis(group.min_amber),
                    });
                }
            }
            GroupKind::Pedestrian => {
                let clearing = head.lamps[DONT_WALK] == LampState::Flash;
                if prev.lamps[WALK].is_lit() && !head.lamps[WALK].is_lit() && !clearing {
                    return Err(Fault::WalkWithoutClearance {
                        group: self.name(g),
                    });
                }
                let ended = prev.lamps[DONT_WALK] == LampState::Flash && !clearing;
                if ended && !head.lamps[WALK].is_lit() && shown < group.min_clearance {
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
            if red_for < needed {
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
    use crate::signal::plan::SignalConfig;

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];
    // Groups of the example plan.
    const MAIN: usize = 0;
    const MINOR: usize = 1;
    const PED: usize = 2;

    fn monitor() -> ConflictMonitor {
        let cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        ConflictMonitor::new(&SignalPlan::new(&cfg, ZONES, CLASSES).unwrap())
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
        let cases: [(Case, &str); 6] = [
            (
                |m| m.check(secs(3.0), &with(with(rest(), MAIN, GREEN), MINOR, GREEN)),
                "conflicting greens",
            ),
            (
                |m| {
                    m.check(secs(3.0), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(9.0), &rest()))
                },
                "without amber",
            ),
            (
                |m| {
                    m.check(secs(2.5), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(3.0), &with(rest(), MAIN, AMBER)))
                        .and(m.check(secs(5.0), &rest()))
                },
                "amber shown 2000 ms",
            ),
            (
                |m| {
                    m.check(secs(2.5), &with(rest(), MAIN, GREEN))
                        .and(m.check(secs(3.0), &with(rest(), MAIN, AMBER)))
                        .and(m.check(secs(7.0), &rest()))
                        .and(m.check(secs(8.0), &with(rest(), MINOR, GREEN)))
                },
                "all-red",
            ),
            (
                |m| {
                    let mut clearing = rest();
                    clearing.set(PED, DONT_WALK, LampState::Flash);
                    m.check(secs(3.0), &with(rest(), PED, WALK))
                        .and(m.check(secs(9.0), &clearing))
                        .and(m.check(secs(10.0), &rest()))
                },
                "pedestrian clearance shown 1000 ms",
            ),
            (
                |m| {
                    m.check(secs(3.0), &with(rest(), PED, WALK))
                        .and(m.check(secs(9.0), &rest()))
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
        m.check(secs(3.0), &with(rest(), MAIN, AMBER)).unwrap();
        let err = m.check(secs(7.0), &with(rest(), MINOR, GREEN)).unwrap_err();
        assert!(
            matches!(err, Fault::AllRedTooShort { shown_ms: 0, .. }),
            "{err}"
        );
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
