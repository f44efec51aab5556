//! [`SignalSystem`]: controller, conflict monitor, output pins and input pins wired together in
//! the order the pipeline needs them each tick: inputs -> controller -> monitor -> pins.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::digital::{InputPin, StatefulOutputPin};

use super::controller::{Controller, Detections, Stage};
use super::field::FieldMonitor;
use super::lamp::{GroupState, LampState, SignalCommand, DONT_WALK, RED, STOP};
use super::monitor::{ConflictMonitor, Fault};
use super::outputs::{
    InputBank, PinBackend, PinBank, PinError, PinLevels, PinWriteError, SafeState, SenseBank,
    SharedOutputs,
};
use super::plan::{GroupKind, SignalConfig, SignalPlan};
use crate::clock::Clock;
use crate::config::{ConfigError, MAX_CLASSES};

/// Why the signal system could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The `[signals]` section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A pin could not be claimed.
    #[error(transparent)]
    Pin(#[from] PinError),
}

/// What happened in one [`SignalSystem::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// A fault latched at this tick (reported once; see [`SignalSystem::fault`] after).
    pub new_fault: Option<Fault>,
    /// True while the monitor holds the signals in all-red flash.
    pub fault_flash: bool,
    /// True while detection is degraded and the controller runs fixed-time with recall.
    pub degraded: bool,
    /// The controller's stage after this tick.
    pub stage: Stage,
}

/// The signals of one site: build once at start-up, then [`tick`](Self::tick) every frame.
/// Ticking never allocates.
#[derive(Debug)]
pub struct SignalSystem<C, O, I> {
    clock: C,
    plan: SignalPlan,
    controller: Controller,
    monitor: ConflictMonitor,
    outputs: Arc<SharedOutputs<O>>,
    inputs: InputBank<I>,
    /// The lamps' field sense inputs and the read-back check of what they show.
    senses: SenseBank<I>,
    field: FieldMonitor,
    /// What was last written to the pins.
    shown: SignalCommand,
    /// The lamp pins' levels as last read back, for the monitor's check of the pins.
    levels: PinLevels,
    ticks: u64,
    /// The heartbeat output for the flash-transfer relay, if claimed.
    heartbeat: Option<Heartbeat<O>>,
}

/// The heartbeat pin and its level.
#[derive(Debug)]
struct Heartbeat<O> {
    out: O,
    active_low: bool,
    high: bool,
    toggles: u64,
}

impl<C: Clock, O: StatefulOutputPin, I: InputPin> SignalSystem<C, O, I> {
    /// Validates `config` against the site's zone and counted class names (index order),
    /// claims every pin from `backend` showing the start-up flash (vehicle reds lit, the
    /// rest dark) and starts the power-up flash, then all-red.
    pub fn new<B>(
        config: &SignalConfig,
        zone_names: &[&str],
        class_names: &[&str],
        clock: C,
        backend: &mut B,
    ) -> Result<Self, SignalError>
    where
        B: PinBackend<Output = O, Input = I>,
    {
        let plan = SignalPlan::new(config, zone_names, class_names)?;
        let now = clock.now();
        let controller = Controller::new(&plan, now);
        // The monitor reads its own program card from the TOML; it must see the groups in
        // the order the controller's commands give them.
        let monitor = ConflictMonitor::new(config)?;
        if !monitor
            .group_names()
            .eq(plan.groups.iter().map(|g| g.name.as_str()))
        {
            return Err(ConfigError::invalid(
                "signals.groups",
                "the conflict monitor's groups differ from the plan's",
            )
            .into());
        }
        let shown = *controller.command();
        let bank = PinBank::new(&plan, backend, &shown)?;
        let outputs = Arc::new(SharedOutputs::new(bank, all_red(&plan)));
        let inputs = InputBank::new(&plan, backend)?;
        let senses = SenseBank::new(&plan, backend)?;
        let field = FieldMonitor::new(&plan);
        Ok(SignalSystem {
            clock,
            plan,
            controller,
            monitor,
            outputs,
            inputs,
            senses,
            field,
            shown,
            levels: PinLevels::new(),
            ticks: 0,
            heartbeat: None,
        })
    }

    /// One tick: reads the inputs, steps the controller with `zone_occupancy` (objects now in
    /// each zone, per counted class) and `camera_ok` (false when frames are stale, frozen or
    /// dark), has the monitor check the command, writes the pins and checks what the field
    /// shows through the sense inputs.
    pub fn tick(&mut self, zone_occupancy: &[[u32; MAX_CLASSES]], camera_ok: bool) -> TickReport {
        let now = self.clock.now();
        self.ticks += 1;
        let was_tripped = self.monitor.is_tripped();
        // The pins and the field first: what the last tick wrote has had a whole tick to
        // settle on the pins and reach the lamps.
        self.check_pins();
        self.read_back(now);
        let inputs = self.inputs.sample(now);
        let det = Detections {
            zone_occupancy,
            camera_ok,
            inputs,
        };
        let command = *self.controller.step(now, &det);
        // The monitor times every interval with its own timers, from the tick's clock reading:
        // a second reading would make a correct amber look microseconds short.
        self.shown = match self.monitor.check(now, &command) {
            Ok(()) => command,
            Err(_) => self.monitor.flash_command(),
        };
        if let Err(e) = self.outputs.write(now, &self.shown) {
            // The lamps may not show what was checked: trust nothing and flash.
            self.monitor.trip(Fault::PinWrite { pin: e.pin });
            self.shown = self.monitor.flash_command();
            let _best_effort = self.outputs.write(now, &self.shown);
        }
        self.beat();
        TickReport {
            new_fault: if was_tripped {
                None
            } else {
                self.monitor.fault().cloned()
            },
            fault_flash: self.monitor.is_tripped(),
            degraded: self.controller.is_degraded(),
            stage: self.controller.stage(),
        }
    }

    /// Field read-back: the sense inputs against what the last tick put on the pins (the
    /// controller's command or the monitor's flash), read at the start of the next tick so
    /// relays have had a tick to follow. A lasting mismatch latches flash (this tick writes
    /// it), and the heartbeat stops, so the cabinet flasher takes heads that do not obey.
    /// Once the watchdog has forced the outputs the heartbeat is down and the cabinet flasher
    /// may be driving the field: nothing is judged then.
    fn read_back(&mut self, now: Duration) {
        if self.senses.is_empty() || self.monitor.is_tripped() || self.outputs.is_forced() {
            return;
        }
        let written = self.outputs.last_written();
        let field = self.senses.sample(now);
        if let Err(fault) = self.field.check(now, &written, field) {
            self.monitor.trip(fault);
        }
    }

    /// The monitor's own check of what the last tick put on the pins (see
    /// [`ConflictMonitor::check_pins`]), read back a tick later so drivers have settled;
    /// skipped once tripped (the flash is on the pins) or forced by the watchdog. A fault
    /// latches, and this tick shows the flash.
    fn check_pins(&mut self) {
        if self.monitor.is_tripped() || !self.outputs.read_back(&mut self.levels) {
            return;
        }
        let _latched = self.monitor.check_pins(&self.levels);
    }

    /// Checks of the pins the monitor ran, and pin levels that could not be read back.
    pub fn pin_checks(&self) -> (u64, u64) {
        self.monitor.pin_checks()
    }

    /// Field read-back checks run, and sense inputs that could not be read.
    pub fn field_checks(&self) -> (u64, u64) {
        (self.field.checks(), self.senses.read_errors())
    }

    /// Claims `pin` from `backend` as the heartbeat output (`control.heartbeat`): it toggles on
    /// every tick while the controller runs and the monitor has not tripped, so a pulse-held
    /// flash-transfer relay drops (and the cabinet flasher takes the heads) when the monitor
    /// trips, the watchdog forces the outputs, the ticks stop or the process or the Pi dies.
    pub fn claim_heartbeat<B>(
        &mut self,
        backend: &mut B,
        pin: u32,
        active_low: bool,
    ) -> Result<(), PinError>
    where
        B: PinBackend<Output = O>,
    {
        // Start at the relay's "off" level: the first healthy tick is the first pulse.
        let out = backend.output(pin, active_low, active_low)?;
        self.heartbeat = Some(Heartbeat {
            out,
            active_low,
            high: active_low,
            toggles: 0,
        });
        Ok(())
    }

    /// Heartbeat pulses sent so far.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeat.as_ref().map_or(0, |h| h.toggles)
    }

    /// One heartbeat pulse edge, only while healthy; otherwise the pin rests at "off".
    fn beat(&mut self) {
        let healthy = !self.monitor.is_tripped() && !self.outputs.is_forced();
        self.set_heartbeat(healthy);
    }

    fn set_heartbeat(&mut self, healthy: bool) {
        let Some(h) = &mut self.heartbeat else {
            return;
        };
        let high = if healthy { !h.high } else { h.active_low };
        if high != h.high {
            // A failed write is seen by the relay as a missing pulse: it drops, as it should.
            let _ = if high {
                h.out.set_high()
            } else {
                h.out.set_low()
            };
            h.high = high;
            if healthy {
                h.toggles += 1;
            }
        }
    }

    /// The state the lamps are left in when edgewatch stops: steady red on vehicle heads, don't
    /// walk on pedestrian heads, the stop bar on bus signals, beacons dark, and the heartbeat
    /// at rest, so the flash-transfer relay hands the heads to the cabinet flasher. Call it once the
    /// controller has cleared the running phase (see [`SignalSystem::is_cleared`]), so no green
    /// is cut short; the monitor does not check it, as it shows no green by construction.
    pub fn show_all_red(&mut self) -> Result<(), PinWriteError> {
        // The lamps are left to the cabinet's flasher from here on.
        self.set_heartbeat(false);
        self.shown = all_red(&self.plan);
        self.outputs.write(self.clock.now(), &self.shown)
    }

    /// A handle that forces the outputs into the safe state from any thread (the watchdog's),
    /// however the control loop is doing.
    pub fn safe_state(&self) -> Arc<dyn SafeState>
    where
        O: Send + fmt::Debug + 'static,
    {
        self.outputs.clone()
    }

    /// True once no phase is running: the lamps show the start-up flash, all-red or the
    /// monitor's fault flash, so switching them to [`SignalSystem::show_all_red`] cuts nothing
    /// short. Not in maintenance flash: its flashing amber must end through steady amber,
    /// which a clearance request gives it.
    pub fn is_cleared(&self) -> bool {
        self.monitor.is_tripped()
            || matches!(
                self.controller.stage(),
                Stage::StartupFlash | Stage::Startup
            )
    }

    /// Ends the running phase in order (flashing don't walk, amber, all-red) and then holds
    /// all red until [`SignalSystem::reset`]; see [`Controller::request_clearance`]. Ticking
    /// goes on as usual, and the monitor checks every step.
    pub fn request_clearance(&mut self) {
        // The request goes to the monitor too, as a preemption input goes to a cabinet's
        // monitor: a green or a walk may now end before its minimum.
        self.monitor.allow_clearance();
        self.controller.request_clearance();
    }

    /// Latches `fault` as if the monitor had just found it (a fault recorded before a restart):
    /// flash from the next tick until [`SignalSystem::reset`].
    pub fn latch_fault(&mut self, fault: Fault) {
        self.monitor.trip(fault);
    }

    /// Requests maintenance red/amber flash, or its end.
    pub fn set_maintenance_flash(&mut self, on: bool) {
        self.controller.set_maintenance_flash(on);
    }

    /// Clears a latched fault (an explicit reset command): the controller starts over from the
    /// power-up flash and all-red. Only when no phase is running ([`SignalSystem::is_cleared`]:
    /// fault flash, start-up, maintenance flash or a finished clearance), since the restart
    /// cuts straight to flash and the reset monitor would not see a green cut without amber.
    /// Returns false, changing nothing, while a phase runs.
    #[must_use = "a reset while a phase runs is refused"]
    pub fn reset(&mut self) -> bool {
        if !self.is_cleared() {
            return false;
        }
        let now = self.clock.now();
        self.monitor.reset();
        self.field.reset();
        self.controller.restart(now);
        true
    }

    /// Sets the local time of day (seconds after midnight) for time-of-day plans.
    pub fn set_time_of_day(&mut self, seconds_after_midnight: u32) {
        self.controller
            .set_time_of_day(self.clock.now(), seconds_after_midnight);
    }

    /// Forgets the time of day: the site's own mode applies, not a time-of-day plan.
    pub fn clear_time_of_day(&mut self) {
        self.controller.clear_time_of_day();
    }

    /// The latched fault, if any.
    pub fn fault(&self) -> Option<&Fault> {
        self.monitor.fault()
    }

    /// Each group's name and what its lamps show now (after the monitor), for summaries/JSON.
    pub fn states(&self) -> impl Iterator<Item = (&str, GroupState)> + '_ {
        let heads = self.shown.heads();
        (0..self.plan.group_count()).map(move |g| {
            (
                self.plan.group_name(g),
                GroupState::of(self.plan.group_kind(g), &heads[g]),
            )
        })
    }

    /// The group and lamp names a pin drives, to print pin transitions.
    pub fn lamp_of_pin(&self, pin: u32) -> Option<(&str, &'static str)> {
        // From the plan, which never changes: no lock, so printing transitions while the
        // simulated pins are locked cannot deadlock with a watchdog forcing the outputs.
        let (g, lamp) = self.plan.groups.iter().enumerate().find_map(|(g, group)| {
            let lamp = group
                .lamps
                .iter()
                .position(|p| p.is_some_and(|p| p.pin == pin))?;
            Some((g, lamp))
        })?;
        Some((
            self.plan.group_name(g),
            self.plan.group_kind(g).lamp_names()[lamp],
        ))
    }

    /// The command last written to the pins.
    pub fn shown(&self) -> &SignalCommand {
        &self.shown
    }

    /// The controller (stage, mode, incidents).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The compiled plan.
    pub fn plan(&self) -> &SignalPlan {
        &self.plan
    }

    /// Ticks run and commands checked by the monitor.
    pub fn ticks(&self) -> (u64, u64) {
        (self.ticks, self.monitor.checks())
    }

    /// Failed output writes since start-up.
    pub fn write_errors(&self) -> u64 {
        self.outputs.write_errors()
    }

    /// The clock time now.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }
}

/// One line, e.g. `main=green minor=red ped=dont-walk [actuated]`; no allocation.
impl<C: Clock, O: StatefulOutputPin, I: InputPin> fmt::Display for SignalSystem<C, O, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, state) in self.states() {
            write!(f, "{name}={state} ")?;
        }
        match self.monitor.fault() {
            Some(fault) => write!(f, "[FAULT FLASH: {fault}]"),
            None => {
                let mode = self.controller.mode(self.clock.now()).as_str();
                let degraded = if self.controller.is_degraded() {
                    " degraded"
                } else {
                    ""
                };
                write!(f, "[{mode}{degraded} {}]", self.controller.stage().as_str())
            }
        }
    }
}

/// Steady red on vehicle heads, don't walk on pedestrian heads, the stop bar on bus signals,
/// beacons dark: no green anywhere, by construction.
fn all_red(plan: &SignalPlan) -> SignalCommand {
    let mut cmd = SignalCommand::dark(plan.group_count());
    for g in 0..plan.group_count() {
        match plan.group_kind(g) {
            GroupKind::Vehicle => cmd.set(g, RED, LampState::On),
            GroupKind::Pedestrian => cmd.set(g, DONT_WALK, LampState::On),
            GroupKind::Bus => cmd.set(g, STOP, LampState::On),
            GroupKind::Beacon => {}
        }
    }
    cmd
}
