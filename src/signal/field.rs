//! Field read-back: the conflict monitor's check of what the heads really show, read from a
//! sense input per lamp (an optocoupler or relay contact on the load switch output), as a
//! cabinet's MMU watches the field terminals rather than the controller's commands.
//!
//! The command checks in [`super::monitor`] cannot see a wrong `active_low`, a welded load
//! switch or a burnt-out lamp; these can. Each fault must persist before it latches, since
//! relays and lamps take a moment to follow a command: conflicts for
//! `signals.sense_conflict_ms` (TS-2: no trip under 200 ms, a trip by 500 ms), the others for
//! `signals.sense_fault_ms`. Only lamps with a `sense` input are checked.
//!
//! A flashing lamp is lit half the time: it counts as lit while its input read lit within the
//! last [`FLASH_HOLD`].

use std::time::Duration;

use super::lamp::{Head, LampState, SignalCommand, AMBER, GO, GREEN, WALK};
use super::monitor::Fault;
use super::plan::{GroupKind, GroupName, SignalPlan, MAX_GROUPS};

/// How long a flashing lamp's input may read dark and still count as lit: the 1 Hz flash's
/// dark half plus margin for a slow tick.
pub const FLASH_HOLD: Duration = Duration::from_millis(1300);

/// What one lamp's sense input says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SensedLamp {
    /// The lamp has no sense input.
    #[default]
    NotSensed,
    /// The input was read: lit now or not, and when it last read lit.
    Read {
        /// Lit at this reading.
        lit: bool,
        /// The last reading that was lit, if any.
        lit_at: Option<Duration>,
    },
    /// The input could not be read.
    Unreadable,
}

/// What the field shows, per group and lamp; filled by the sense inputs each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldView {
    lamps: [[SensedLamp; 3]; MAX_GROUPS],
}

impl Default for FieldView {
    fn default() -> Self {
        FieldView {
            lamps: [[SensedLamp::NotSensed; 3]; MAX_GROUPS],
        }
    }
}

impl FieldView {
    /// Records what lamp `lamp` of group `group` shows; out-of-range indices are ignored.
    pub fn set(&mut self, group: usize, lamp: usize, sensed: SensedLamp) {
        if let Some(l) = self.lamps.get_mut(group).and_then(|g| g.get_mut(lamp)) {
            *l = sensed;
        }
    }

    /// What lamp `lamp` of group `group` shows.
    pub fn get(&self, group: usize, lamp: usize) -> SensedLamp {
        self.lamps
            .get(group)
            .and_then(|g| g.get(lamp))
            .copied()
            .unwrap_or_default()
    }
}

/// One group as the field check sees it.
#[derive(Debug, Clone)]
struct Watched {
    name: GroupName,
    kind: GroupKind,
}

/// The field read-back check; see the module docs. Checking never allocates.
#[derive(Debug, Clone)]
pub struct FieldMonitor {
    groups: Vec<Watched>,
    conflicts: [u16; MAX_GROUPS],
    conflict_after: Duration,
    fault_after: Duration,
    /// The last check without a field conflict (see [`persists`]).
    conflict_clear: Option<Duration>,
    /// Per group, the last check without more lamps lit than commanded.
    dual_clear: [Option<Duration>; MAX_GROUPS],
    /// Per group, the last check with a lamp lit (or none commanded).
    dark_clear: [Option<Duration>; MAX_GROUPS],
    /// Per lamp, the last check that it showed its command.
    mismatch_clear: [[Option<Duration>; 3]; MAX_GROUPS],
    checks: u64,
}

/// Notes whether a field condition holds at `now`; true once it has held for `after`.
/// `clear` is the last check that did not see it: the condition is taken to have begun just
/// after that check, the earliest it can have, so a tick's sampling never delays a trip.
fn persists(clear: &mut Option<Duration>, present: bool, now: Duration, after: Duration) -> bool {
    if !present {
        *clear = Some(now);
        return false;
    }
    let began = *clear.get_or_insert(now);
    now.saturating_sub(began) >= after
}

impl FieldMonitor {
    /// A field check with the plan's groups, conflicts and persistence times.
    pub fn new(plan: &SignalPlan) -> FieldMonitor {
        FieldMonitor {
            groups: (0..plan.group_count())
                .map(|g| Watched {
                    name: plan.groups[g].name.clone(),
                    kind: plan.group_kind(g),
                })
                .collect(),
            conflicts: plan.conflicts,
            conflict_after: plan.sense_conflict,
            fault_after: plan.sense_fault,
            conflict_clear: None,
            dual_clear: [None; MAX_GROUPS],
            dark_clear: [None; MAX_GROUPS],
            mismatch_clear: [[None; 3]; MAX_GROUPS],
            checks: 0,
        }
    }

    /// Forgets every condition in progress (after a reset).
    pub fn reset(&mut self) {
        self.conflict_clear = None;
        self.dual_clear = [None; MAX_GROUPS];
        self.dark_clear = [None; MAX_GROUPS];
        self.mismatch_clear = [[None; 3]; MAX_GROUPS];
    }

    /// Field checks run so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Checks `field` against `shown`, the command on the pins, at `now`. `Err` is a fault
    /// that has lasted its persistence: the caller latches it.
    pub fn check(
        &mut self,
        now: Duration,
        shown: &SignalCommand,
        field: &FieldView,
    ) -> Result<(), Fault> {
        self.checks += 1;
        let heads = shown.heads();
        let n = self.groups.len().min(heads.len());
        // The lamps the field shows lit, per group, as a bit mask by lamp index, and the
        // lamps that are sensed at all.
        let mut lit = [0u8; MAX_GROUPS];
        let mut sensed = [0u8; MAX_GROUPS];
        for g in 0..n {
            for (l, &state) in heads[g].lamps.iter().enumerate() {
                if let Some(shows) = shows_lit(now, state, field.get(g, l)) {
                    sensed[g] |= 1 << l;
                    lit[g] |= u8::from(shows) << l;
                }
            }
        }
        self.check_conflicts(now, n, &lit)?;
        for g in 0..n {
            self.check_head(now, g, &heads[g], lit[g], sensed[g])?;
            self.check_lamps(now, g, &heads[g], field)?;
        }
        Ok(())
    }

    /// Two conflicting groups both show a right of way in the field.
    fn check_conflicts(&mut self, now: Duration, n: usize, lit: &[u8]) -> Result<(), Fault> {
        let mut go = 0u16;
        for (g, (group, &lit)) in self.groups.iter().zip(lit).take(n).enumerate() {
            if lit & right_of_way_lamps(group.kind) != 0 {
                go |= 1 << g;
            }
        }
        let pair = (0..n)
            .find(|&g| go & (1 << g) != 0 && self.conflicts[g] & go != 0)
            .map(|g| (g, (self.conflicts[g] & go).trailing_zeros() as usize));
        let after = self.conflict_after;
        match pair {
            Some((a, b)) if persists(&mut self.conflict_clear, true, now, after) => {
                Err(Fault::FieldConflict {
                    a: self.groups[a].name.clone(),
                    b: self.groups[b].name.clone(),
                })
            }
            _ => {
                persists(&mut self.conflict_clear, pair.is_some(), now, after);
                Ok(())
            }
        }
    }

    /// More lamps lit than commanded on a head (dual indication), or none although one is
    /// commanded (on a vehicle head: red fail).
    fn check_head(
        &mut self,
        now: Duration,
        g: usize,
        head: &Head,
        lit: u8,
        sensed: u8,
    ) -> Result<(), Fault> {
        let commanded = head.lit_count() as u32;
        let shown = lit.count_ones();
        let dual = shown > commanded.max(1);
        if persists(&mut self.dual_clear[g], dual, now, self.fault_after) {
            return Err(Fault::FieldDualIndication {
                group: self.groups[g].name.clone(),
                lit: shown as usize,
            });
        }
        // Every lamp of the head is sensed and none is lit.
        let all = (1u8 << self.groups[g].kind.lamp_names().len()) - 1;
        let dark = commanded > 0 && sensed & all == all && lit == 0;
        if persists(&mut self.dark_clear[g], dark, now, self.fault_after) {
            return Err(Fault::FieldNoLampLit {
                group: self.groups[g].name.clone(),
            });
        }
        Ok(())
    }

    /// Each sensed lamp shows its command.
    fn check_lamps(
        &mut self,
        now: Duration,
        g: usize,
        head: &Head,
        field: &FieldView,
    ) -> Result<(), Fault> {
        let kind = self.groups[g].kind;
        for (l, &name) in kind.lamp_names().iter().enumerate() {
            let state = head.lamps[l];
            // `Some(None)`: unreadable; `Some(Some(shows))`: not showing its command.
            let wrong = match field.get(g, l) {
                SensedLamp::NotSensed => None,
                SensedLamp::Unreadable => Some(None),
                sensed => shows_lit(now, state, sensed)
                    .filter(|&shows| shows != state.is_lit())
                    .map(Some),
            };
            let since = &mut self.mismatch_clear[g][l];
            if persists(since, wrong.is_some(), now, self.fault_after) {
                let group = self.groups[g].name.clone();
                return Err(match wrong.flatten() {
                    Some(shows) => Fault::FieldMismatch {
                        group,
                        lamp: name,
                        commanded: state.is_lit(),
                        shown: shows,
                    },
                    None => Fault::SenseUnreadable { group, lamp: name },
                });
            }
        }
        Ok(())
    }
}

/// Whether a lamp commanded `state` shows lit in the field at `now`; `None` when it is not
/// sensed or could not be read. A flashing lamp counts as lit within [`FLASH_HOLD`] of its
/// last lit reading.
fn shows_lit(now: Duration, state: LampState, sensed: SensedLamp) -> Option<bool> {
    let SensedLamp::Read { lit, lit_at } = sensed else {
        return None;
    };
    Some(match state {
        LampState::Flash => lit_at.is_some_and(|t| now.saturating_sub(t) <= FLASH_HOLD),
        _ => lit,
    })
}

/// The lamps (bit mask by index) that give a head's users a right of way.
fn right_of_way_lamps(kind: GroupKind) -> u8 {
    match kind {
        GroupKind::Vehicle => (1 << GREEN) | (1 << AMBER),
        GroupKind::Pedestrian => 1 << WALK,
        GroupKind::Bus => 1 << GO,
        GroupKind::Beacon => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::lamp::RED;
    use crate::signal::plan::SignalConfig;

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];

    fn field_monitor() -> FieldMonitor {
        let cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        FieldMonitor::new(&SignalPlan::new(&cfg, ZONES, CLASSES).unwrap())
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Group 0's red commanded `state`, its input reading `lit` at each 100 ms tick.
    fn run_red(state: LampState, lit: impl Fn(u64) -> bool, ticks: u64) -> Result<(), Fault> {
        let mut fm = field_monitor();
        let mut cmd = SignalCommand::dark(fm.groups.len());
        cmd.set(0, RED, state);
        let mut view = FieldView::default();
        let mut lit_at = None;
        for t in 0..ticks {
            let now = ms(100 * t);
            let lit = lit(t);
            if lit {
                lit_at = Some(now);
            }
            view.set(0, RED, SensedLamp::Read { lit, lit_at });
            fm.check(now, &cmd, &view)?;
        }
        Ok(())
    }

    #[test]
    fn a_flashing_lamp_counts_as_lit_through_its_dark_half() {
        assert_eq!(run_red(LampState::Flash, |t| t % 10 < 5, 100), Ok(()));
    }

    #[test]
    fn a_flashing_lamp_that_never_lights_is_a_mismatch() {
        let err = run_red(LampState::Flash, |_| false, 100).unwrap_err();
        assert!(
            matches!(
                err,
                Fault::FieldMismatch {
                    lamp: "red",
                    commanded: true,
                    shown: false,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_steady_lamp_that_goes_dark_for_a_flash_half_is_a_mismatch_only_if_it_lasts() {
        // Dark for 0.5 s of every 2 s: under the 1 s persistence.
        assert_eq!(run_red(LampState::On, |t| t % 20 >= 5, 100), Ok(()));
        assert!(run_red(LampState::On, |t| t < 30, 100).is_err());
    }

    #[test]
    fn an_unreadable_input_latches_after_the_persistence() {
        let mut fm = field_monitor();
        let mut cmd = SignalCommand::dark(fm.groups.len());
        cmd.set(0, RED, LampState::On);
        let mut view = FieldView::default();
        view.set(0, RED, SensedLamp::Unreadable);
        assert_eq!(fm.check(ms(0), &cmd, &view), Ok(()));
        assert_eq!(fm.check(ms(900), &cmd, &view), Ok(()));
        let err = fm.check(ms(1000), &cmd, &view).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`{}` red: sense input could not be read", fm.groups[0].name)
        );
        assert_eq!(fm.checks(), 3);
    }

    #[test]
    fn persistence_counts_from_the_last_clean_check() {
        let mut clear = None;
        assert!(!persists(&mut clear, false, ms(100), ms(450)));
        assert!(!persists(&mut clear, true, ms(200), ms(450)));
        assert!(persists(&mut clear, true, ms(550), ms(450)));
        assert!(!persists(&mut clear, false, ms(600), ms(450)));
        assert!(!persists(&mut clear, true, ms(1000), ms(450)));
        // Present at the first check: counted from then.
        let mut fresh = None;
        assert!(!persists(&mut fresh, true, ms(5000), ms(450)));
        assert!(persists(&mut fresh, true, ms(5450), ms(450)));
    }
}
