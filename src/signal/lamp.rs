//! Lamp states and the output command: what the controller asks for, what the conflict monitor
//! checks and what the pin bank writes. Plain fixed-size data, copied freely, never allocated.
//!
//! Flashing is a lamp state of its own, as in a cabinet's flasher: the command says "flash" and
//! the pin bank turns that into 1 Hz at 50 % duty from the clock. So a flashing lamp counts as
//! lit for the monitor in both halves of the cycle.

use std::fmt;
use std::time::Duration;

use super::plan::{GroupKind, MAX_GROUPS};

/// Vehicle head: red lamp index.
pub const RED: usize = 0;
/// Vehicle head: amber lamp index.
pub const AMBER: usize = 1;
/// Vehicle head: green lamp index.
pub const GREEN: usize = 2;
/// Pedestrian head: "don't walk" lamp index.
pub const DONT_WALK: usize = 0;
/// Pedestrian head: "walk" lamp index.
pub const WALK: usize = 1;
/// Bus signal: stop bar lamp index.
pub const STOP: usize = 0;
/// Bus signal: "B" lamp index.
pub const GO: usize = 1;
/// Beacon: its only lamp.
pub const BEACON: usize = 0;

/// What one lamp is commanded to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LampState {
    /// Dark.
    #[default]
    Off,
    /// Steadily lit.
    On,
    /// Flashing at 1 Hz, 50 % duty.
    Flash,
}

impl LampState {
    /// True for `On` and `Flash`.
    pub fn is_lit(self) -> bool {
        self != LampState::Off
    }

    /// The pin-independent lamp level at `now`: flashing lamps are lit in the first half of
    /// each second.
    pub fn level_at(self, now: Duration) -> bool {
        match self {
            LampState::Off => false,
            LampState::On => true,
            LampState::Flash => flash_phase_on(now),
        }
    }
}

/// True in the lit half of the 1 Hz flash cycle.
pub fn flash_phase_on(now: Duration) -> bool {
    now.subsec_millis() < 500
}

/// The lamps of one signal group, by lamp index (see the constants in this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Lamp states; indices past the kind's lamp count are unused and stay `Off`.
    pub lamps: [LampState; 3],
}

impl Head {
    /// A head with lamp `lamp` in `state` and every other lamp off.
    pub fn only(lamp: usize, state: LampState) -> Head {
        let mut head = Head::default();
        head.lamps[lamp] = state;
        head
    }

    /// Number of lamps lit (steady or flashing).
    pub fn lit_count(&self) -> usize {
        self.lamps.iter().filter(|l| l.is_lit()).count()
    }
}

/// One output command: every group's head, indexed like the plan's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalCommand {
    heads: [Head; MAX_GROUPS],
    len: usize,
}

impl SignalCommand {
    /// A command for `groups` groups (at most [`MAX_GROUPS`]), all lamps off.
    pub fn dark(groups: usize) -> SignalCommand {
        SignalCommand {
            heads: [Head::default(); MAX_GROUPS],
            len: groups.min(MAX_GROUPS),
        }
    }

    /// The heads, one per group.
    pub fn heads(&self) -> &[Head] {
        &self.heads[..self.len]
    }

    /// The heads, to set lamps.
    pub fn heads_mut(&mut self) -> &mut [Head] {
        &mut self.heads[..self.len]
    }

    /// Sets one lamp of group `group`; out-of-range indices are ignored.
    pub fn set(&mut self, group: usize, lamp: usize, state: LampState) {
        if let Some(head) = self.heads_mut().get_mut(group) {
            if let Some(l) = head.lamps.get_mut(lamp) {
                *l = state;
            }
        }
    }
}

/// A group's indication in words, read back from its lamps; for summaries and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// Steady red.
    Red,
    /// Steady amber.
    Amber,
    /// Steady green.
    Green,
    /// Flashing red.
    RedFlash,
    /// Flashing amber.
    AmberFlash,
    /// Pedestrian walk.
    Walk,
    /// Pedestrian clearance (flashing don't walk).
    PedClearance,
    /// Steady don't walk.
    DontWalk,
    /// Bus B shown.
    BusGo,
    /// Bus stop bar (or B dark).
    BusStop,
    /// Beacon lit (steady or flashing).
    On,
    /// All lamps dark.
    Dark,
    /// Any other lamp combination (the monitor trips on these for vehicle heads).
    Invalid,
}

impl GroupState {
    /// Reads a head of a group of `kind`.
    pub fn of(kind: GroupKind, head: &Head) -> GroupState {
        use LampState::{Flash, Off, On};
        let l = head.lamps;
        match kind {
            GroupKind::Vehicle => match (l[RED], l[AMBER], l[GREEN]) {
                (On, Off, Off) => GroupState::Red,
                (Off, On, Off) => GroupState::Amber,
                (Off, Off, On) => GroupState::Green,
                (Flash, Off, Off) => GroupState::RedFlash,
                (Off, Flash, Off) => GroupState::AmberFlash,
                (Off, Off, Off) => GroupState::Dark,
                _ => GroupState::Invalid,
            },
            GroupKind::Pedestrian => match (l[DONT_WALK], l[WALK]) {
                (On, Off) => GroupState::DontWalk,
                (Flash, Off) => GroupState::PedClearance,
                (Off, On) => GroupState::Walk,
                (Off, Off) => GroupState::Dark,
                _ => GroupState::Invalid,
            },
            GroupKind::Bus => match (l[STOP], l[GO]) {
                (Off, On) => GroupState::BusGo,
                (On, Off) => GroupState::BusStop,
                (Off, Off) => GroupState::Dark,
                _ => GroupState::Invalid,
            },
            GroupKind::Beacon if l[BEACON].is_lit() => GroupState::On,
            GroupKind::Beacon => GroupState::Dark,
        }
    }

    /// A short lower-case name, e.g. `"green"`, `"ped-clearance"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Red => "red",
            GroupState::Amber => "amber",
            GroupState::Green => "green",
            GroupState::RedFlash => "red-flash",
            GroupState::AmberFlash => "amber-flash",
            GroupState::Walk => "walk",
            GroupState::PedClearance => "ped-clearance",
            GroupState::DontWalk => "dont-walk",
            GroupState::BusGo => "bus-go",
            GroupState::BusStop => "bus-stop",
            GroupState::On => "on",
            GroupState::Dark => "dark",
            GroupState::Invalid => "invalid",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_is_one_hertz_half_duty() {
        let on = (0..20)
            .filter(|i| LampState::Flash.level_at(Duration::from_millis(i * 100)))
            .count();
        assert_eq!(on, 10);
        assert!(LampState::Flash.level_at(Duration::from_millis(1499)));
        assert!(!LampState::Flash.level_at(Duration::from_millis(1500)));
        assert!(LampState::Flash.level_at(Duration::from_millis(2000)));
    }

    #[test]
    fn states_read_back_from_lamps() {
        let green = Head::only(GREEN, LampState::On);
        assert_eq!(
            GroupState::of(GroupKind::Vehicle, &green),
            GroupState::Green
        );
        let mut two = green;
        two.lamps[RED] = LampState::On;
        assert_eq!(
            GroupState::of(GroupKind::Vehicle, &two),
            GroupState::Invalid
        );
        let clear = Head::only(DONT_WALK, LampState::Flash);
        assert_eq!(
            GroupState::of(GroupKind::Pedestrian, &clear).as_str(),
            "ped-clearance"
        );
    }

    #[test]
    fn command_ignores_out_of_range_lamps() {
        let mut cmd = SignalCommand::dark(2);
        cmd.set(5, 0, LampState::On);
        cmd.set(1, 7, LampState::On);
        cmd.set(1, AMBER, LampState::On);
        assert_eq!(cmd.heads().len(), 2);
        assert_eq!(cmd.heads()[1].lit_count(), 1);
    }
}
