//! Signal outputs and inputs over `embedded_hal` 1.0 pins: a [`PinBank`] that writes lamp states
//! (handling active-low lamps and the 1 Hz flash), an [`InputBank`] that debounces push buttons
//! and loop contacts, the [`PinBackend`] trait the hardware backends implement, and [`SimPins`],
//! a simulated backend that records every transition with its time.
//!
//! One pin type per bank (no trait objects), all pins created at start-up; writing and reading
//! never allocate.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};

use super::field::{FieldView, SensedLamp};
use super::lamp::SignalCommand;
use super::plan::{LampPin, Pull, SensePin, SignalPlan, MAX_GROUPS};
use crate::clock::Clock;

/// A pin could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("gpio {pin}: {message}")]
pub struct PinError {
    /// The pin number.
    pub pin: u32,
    /// What the backend said.
    pub message: String,
}

impl PinError {
    /// A setup error for `pin`.
    pub fn new(pin: u32, message: impl std::fmt::Display) -> PinError {
        PinError {
            pin,
            message: message.to_string(),
        }
    }
}

/// A write to an output pin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("gpio {pin}: write failed ({kind:?})")]
pub struct PinWriteError {
    /// The first pin that failed in this write.
    pub pin: u32,
    /// What kind of failure the HAL reported.
    pub kind: ErrorKind,
}

/// Creates output and input pins by number: the seam between the signal logic and a GPIO
/// driver (rppal, the GPIO character device, or [`SimPins`]).
pub trait PinBackend {
    /// The output pin type; its level can be read back, so the monitor can check the pins.
    type Output: StatefulOutputPin;
    /// The input pin type.
    type Input: InputPin;
    /// Claims `pin` as an output driven `high` (or low) from the start. `rest_high` is the
    /// level that de-energises its load (lamp relay off, heartbeat at rest): a backend that
    /// can bias the line (the GPIO character device) pulls it there, so a line the kernel
    /// releases when the process ends rests de-energised instead of floating.
    fn output(&mut self, pin: u32, high: bool, rest_high: bool) -> Result<Self::Output, PinError>;
    /// Claims `pin` as an input with the given bias.
    fn input(&mut self, pin: u32, pull: Pull) -> Result<Self::Input, PinError>;
    /// Claims `sense.pin` as the input that senses `lamp`'s field output. Hardware has the
    /// field in between; [`SimPins`] wires the input to the lamp's output (a loopback).
    fn sense(&mut self, sense: SensePin, lamp: LampPin) -> Result<Self::Input, PinError> {
        let _ = lamp;
        self.input(sense.pin, sense.bias())
    }
}

/// One lamp's pin.
#[derive(Debug)]
struct LampOutput<O> {
    group: usize,
    lamp: usize,
    pin: u32,
    active_low: bool,
    out: O,
}

/// Most lamp pins a plan can have: three lamps on each of [`MAX_GROUPS`] groups.
pub const MAX_LAMP_PINS: usize = MAX_GROUPS * 3;

/// Lamp pin levels as read back from the GPIO, a tick after the write that set them:
/// `(pin, level)`, the level `None` when the pin could not be read. Fixed capacity: reading
/// back allocates nothing.
pub type PinLevels = heapless::Vec<(u32, Option<bool>), MAX_LAMP_PINS>;

/// The output pins of all lamps of a plan.
#[derive(Debug)]
pub struct PinBank<O> {
    lamps: Vec<LampOutput<O>>,
    write_errors: u64,
    /// The command last written (all of it, or as far as the pins took it).
    last: SignalCommand,
}

impl<O: OutputPin> PinBank<O> {
    /// Claims every lamp pin of `plan` from `backend`, showing `initial` from the first instant
    /// (flashing lamps start lit).
    pub fn new<B>(
        plan: &SignalPlan,
        backend: &mut B,
        initial: &SignalCommand,
    ) -> Result<Self, PinError>
    where
        B: PinBackend<Output = O>,
    {
        let mut lamps = Vec::new();
        for (g, group) in plan.groups.iter().enumerate() {
            for (lamp, pin) in group.lamps.iter().enumerate() {
                let Some(pin) = pin else { continue };
                let lit = initial
                    .heads()
                    .get(g)
                    .is_some_and(|h| h.lamps[lamp].is_lit());
                let out = backend.output(pin.pin, lit != pin.active_low, pin.active_low)?;
                let (pin, active_low) = (pin.pin, pin.active_low);
                lamps.push(LampOutput {
                    group: g,
                    lamp,
                    pin,
                    active_low,
                    out,
                });
            }
        }
        Ok(PinBank {
            lamps,
            write_errors: 0,
            last: *initial,
        })
    }

    /// Writes `cmd` as it should look at `now`. Every pin is written every time, so a broken
    /// output is found within one tick even while its level does not change; every pin is
    /// attempted and the first failure is returned.
    pub fn write(&mut self, now: Duration, cmd: &SignalCommand) -> Result<(), PinWriteError> {
        self.last = *cmd;
        let mut first_error = None;
        for l in &mut self.lamps {
            let lit = cmd
                .heads()
                .get(l.group)
                .is_some_and(|h| h.lamps[l.lamp].level_at(now));
            let result = if lit != l.active_low {
                l.out.set_high()
            } else {
                l.out.set_low()
            };
            if let Err(e) = result {
                self.write_errors += 1;
                let kind = embedded_hal::digital::Error::kind(&e);
                first_error.get_or_insert(PinWriteError { pin: l.pin, kind });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads every lamp pin's level back from the GPIO into `levels`.
    pub fn read_back(&mut self, levels: &mut PinLevels)
    where
        O: StatefulOutputPin,
    {
        levels.clear();
        for l in &mut self.lamps {
            // At most MAX_LAMP_PINS lamps exist (MAX_GROUPS groups of at most 3 lamps).
            let _ = levels.push((l.pin, l.out.is_set_high().ok()));
        }
    }

    /// The (group, lamp) index a pin drives.
    pub fn lamp_of_pin(&self, pin: u32) -> Option<(usize, usize)> {
        self.lamps
            .iter()
            .find(|l| l.pin == pin)
            .map(|l| (l.group, l.lamp))
    }

    /// Failed writes since start-up.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// The command last written.
    pub fn last_written(&self) -> SignalCommand {
        self.last
    }
}

/// Why the safe state could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ForceSafeError {
    /// The control loop held the outputs past the wait (stuck inside a pin write).
    #[error("the outputs stayed locked by the control loop")]
    Busy,
    /// A pin refused the write.
    #[error("pin {} could not be written", .0.pin)]
    Pin(PinWriteError),
}

/// Something that can put every signal output into the safe state from any thread, without
/// waiting on the control loop: the watchdog's way to the lamps.
pub trait SafeState: Send + Sync + std::fmt::Debug {
    /// Shows the safe state (steady red, don't walk) and ignores the controller from now on.
    fn force_safe(&self, now: Duration) -> Result<(), ForceSafeError>;
    /// True once [`SafeState::force_safe`] was called.
    fn is_forced(&self) -> bool;
}

/// The pin bank, shared by the control loop (which writes every tick) and the watchdog
/// (which may force the safe state at any time). Once forced, the controller's commands are
/// ignored until the process restarts.
#[derive(Debug)]
pub struct SharedOutputs<O> {
    bank: Mutex<PinBank<O>>,
    safe: SignalCommand,
    forced: AtomicBool,
}

impl<O: OutputPin> SharedOutputs<O> {
    /// Shares `bank`; `safe` is the command [`SafeState::force_safe`] shows.
    pub fn new(bank: PinBank<O>, safe: SignalCommand) -> SharedOutputs<O> {
        SharedOutputs {
            bank: Mutex::new(bank),
            safe,
            forced: AtomicBool::new(false),
        }
    }

    /// A poisoned lock only means a writer panicked mid-write: the pins are still there and
    /// the next full write puts every one of them right, so carry on.
    fn lock(&self) -> MutexGuard<'_, PinBank<O>> {
        self.bank
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `cmd`, unless the safe state was forced.
    pub fn write(&self, now: Duration, cmd: &SignalCommand) -> Result<(), PinWriteError> {
        // The flag is read under the lock, so a command cannot land after a forced safe
        // state that was written between the check and the write.
        let mut bank = self.lock();
        if self.forced.load(Ordering::SeqCst) {
            return Ok(());
        }
        bank.write(now, cmd)
    }

    /// Reads the lamp pins back into `levels`; false (and `levels` untouched) once the safe
    /// state was forced, when the pins show the watchdog's state, not the controller's.
    pub fn read_back(&self, levels: &mut PinLevels) -> bool
    where
        O: StatefulOutputPin,
    {
        // Under the lock, like `write`: a forced state cannot land between the check and the
        // read.
        let mut bank = self.lock();
        if self.forced.load(Ordering::SeqCst) {
            return false;
        }
        bank.read_back(levels);
        true
    }

    /// Failed writes since start-up.
    pub fn write_errors(&self) -> u64 {
        self.lock().write_errors()
    }

    /// The command on the pins now: the controller's last one, or the forced safe state.
    pub fn last_written(&self) -> SignalCommand {
        self.lock().last_written()
    }

    /// True once the safe state was forced (see [`SafeState::force_safe`]).
    pub fn is_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }
}

/// How long [`SafeState::force_safe`] waits for a control loop that holds the outputs.
const FORCE_WAIT: Duration = Duration::from_millis(200);

impl<O: OutputPin + Send + std::fmt::Debug> SafeState for SharedOutputs<O> {
    fn force_safe(&self, now: Duration) -> Result<(), ForceSafeError> {
        // From here on the controller's writes are ignored.
        self.forced.store(true, Ordering::SeqCst);
        // The control loop may be stuck inside a pin write holding the lock: wait a bounded
        // time, never forever, so the watchdog can still restart the process (whose start-up
        // claims every pin at all red).
        let deadline = std::time::Instant::now() + FORCE_WAIT;
        loop {
            match self.bank.try_lock() {
                Ok(mut bank) => return bank.write(now, &self.safe).map_err(ForceSafeError::Pin),
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    return p
                        .into_inner()
                        .write(now, &self.safe)
                        .map_err(ForceSafeError::Pin)
                }
                Err(std::sync::TryLockError::WouldBlock)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(std::sync::TryLockError::WouldBlock) => return Err(ForceSafeError::Busy),
            }
        }
    }

    fn is_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }
}

/// One debounced input.
#[derive(Debug)]
struct DebouncedInput<I> {
    input: I,
    active_low: bool,
    debounce: Duration,
    /// Last raw reading and when it began.
    raw: bool,
    raw_since: Duration,
    /// The debounced state.
    stable: bool,
}

/// The input pins of a plan, debounced against the clock.
#[derive(Debug)]
pub struct InputBank<I> {
    inputs: Vec<DebouncedInput<I>>,
    read_errors: u64,
}

impl<I: InputPin> InputBank<I> {
    /// Claims every input pin of `plan` from `backend`.
    pub fn new<B>(plan: &SignalPlan, backend: &mut B) -> Result<Self, PinError>
    where
        B: PinBackend<Input = I>,
    {
        let mut inputs = Vec::with_capacity(plan.inputs.len());
        for x in &plan.inputs {
            inputs.push(DebouncedInput {
                input: backend.input(x.pin, x.pull)?,
                active_low: x.active_low,
                debounce: x.debounce,
                raw: false,
                raw_since: Duration::ZERO,
                stable: false,
            });
        }
        Ok(InputBank {
            inputs,
            read_errors: 0,
        })
    }

    /// Reads every input at `now` and returns the debounced states, bit `i` for input `i`.
    /// A failed read keeps the input's previous state and is counted.
    pub fn sample(&mut self, now: Duration) -> u32 {
        let mut mask = 0;
        for (i, x) in self.inputs.iter_mut().enumerate() {
            match x.input.is_high() {
                Ok(high) => {
                    let active = high != x.active_low;
                    if active != x.raw {
                        x.raw = active;
                        x.raw_since = now;
                    }
                    if x.raw != x.stable && now.saturating_sub(x.raw_since) >= x.debounce {
                        x.stable = x.raw;
                    }
                }
                Err(_) => self.read_errors += 1,
            }
            mask |= u32::from(x.stable) << i;
        }
        mask
    }

    /// Failed reads since start-up.
    pub fn read_errors(&self) -> u64 {
        self.read_errors
    }
}

/// One lamp's sense input.
#[derive(Debug)]
struct SenseInput<I> {
    group: usize,
    lamp: usize,
    active_low: bool,
    input: I,
    /// When the input last read lit.
    last_lit: Option<Duration>,
}

/// The field sense inputs of a plan's lamps: what the heads really show.
#[derive(Debug)]
pub struct SenseBank<I> {
    inputs: Vec<SenseInput<I>>,
    view: FieldView,
    read_errors: u64,
}

impl<I: InputPin> SenseBank<I> {
    /// Claims the sense input of every lamp of `plan` that has one.
    pub fn new<B>(plan: &SignalPlan, backend: &mut B) -> Result<Self, PinError>
    where
        B: PinBackend<Input = I>,
    {
        let mut inputs = Vec::new();
        for (g, group) in plan.groups.iter().enumerate() {
            for (lamp, pin) in group.lamps.iter().enumerate() {
                let Some(pin) = pin else { continue };
                let Some(sense) = pin.sense else { continue };
                inputs.push(SenseInput {
                    group: g,
                    lamp,
                    active_low: sense.active_low,
                    input: backend.sense(sense, *pin)?,
                    last_lit: None,
                });
            }
        }
        Ok(SenseBank {
            inputs,
            view: FieldView::default(),
            read_errors: 0,
        })
    }

    /// True when no lamp has a sense input.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Reads every sense input at `now`.
    pub fn sample(&mut self, now: Duration) -> &FieldView {
        for x in &mut self.inputs {
            let sensed = match x.input.is_high() {
                Ok(high) => {
                    let lit = high != x.active_low;
                    if lit {
                        x.last_lit = Some(now);
                    }
                    SensedLamp::Read {
                        lit,
                        lit_at: x.last_lit,
                    }
                }
                Err(_) => {
                    self.read_errors += 1;
                    SensedLamp::Unreadable
                }
            };
            self.view.set(x.group, x.lamp, sensed);
        }
        &self.view
    }

    /// Failed reads since start-up.
    pub fn read_errors(&self) -> u64 {
        self.read_errors
    }
}

/// A pin level change recorded by [`SimPins`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Clock time of the change.
    pub at: Duration,
    /// The pin.
    pub pin: u32,
    /// The new level.
    pub high: bool,
}

#[derive(Debug)]
struct SimPin {
    pin: u32,
    high: bool,
    fail: bool,
    /// Something else drives the pin: writes "succeed" and change nothing.
    held: bool,
}

/// A simulated field: a sense input that reads a lamp output through the load switch.
#[derive(Debug)]
struct SimWire {
    sense: u32,
    sense_active_low: bool,
    lamp: u32,
    /// The polarity the hardware really has (the config's, unless a test changes it).
    lamp_active_low: bool,
    /// An injected field fault: from this time the lamp shows this, whatever the pin says.
    stuck: Option<(Duration, bool)>,
}

/// Shared state of the simulated pins; the transition log is a ring sized at creation.
#[derive(Debug)]
struct SimState {
    pins: Vec<SimPin>,
    wires: Vec<SimWire>,
    ring: Vec<Transition>,
    head: usize,
    len: usize,
    dropped: u64,
    /// Every transition is also appended here as `<ms> <pin> <0|1>`, when set.
    log_file: Option<std::fs::File>,
}

impl SimState {
    fn pin(&mut self, pin: u32) -> &mut SimPin {
        if let Some(i) = self.pins.iter().position(|p| p.pin == pin) {
            return &mut self.pins[i];
        }
        self.pins.push(SimPin {
            pin,
            high: false,
            fail: false,
            held: false,
        });
        self.pins.last_mut().expect("just pushed")
    }

    fn record(&mut self, t: Transition) {
        if let Some(file) = &mut self.log_file {
            // One write per line from a stack buffer, so lines from two processes appending to
            // the same file do not interleave and nothing is allocated.
            let mut line = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut line[..]);
            let level = u8::from(t.high);
            let _ = writeln!(cursor, "{} {} {level}", t.at.as_millis(), t.pin);
            let n = cursor.position() as usize;
            let _ = file.write_all(&line[..n]);
        }
        let cap = self.ring.len();
        if cap == 0 {
            self.dropped += 1;
        } else if self.len < cap {
            self.ring[(self.head + self.len) % cap] = t;
            self.len += 1;
        } else {
            // Full: the oldest entry goes, and is counted.
            self.ring[self.head] = t;
            self.head = (self.head + 1) % cap;
            self.dropped += 1;
        }
    }
}

/// Simulated GPIO: pins are levels in memory, every output change is logged with the clock
/// time, writes can be made to fail and inputs set, for tests and the demo. Clones share pins.
#[derive(Debug, Clone)]
pub struct SimPins<C> {
    clock: C,
    state: Arc<Mutex<SimState>>,
}

impl<C: Clock + Clone> SimPins<C> {
    /// Simulated pins on `clock`, keeping the last `log_capacity` transitions.
    pub fn new(clock: C, log_capacity: usize) -> SimPins<C> {
        let idle = Transition {
            at: Duration::ZERO,
            pin: 0,
            high: false,
        };
        let state = SimState {
            pins: Vec::new(),
            wires: Vec::new(),
            ring: vec![idle; log_capacity],
            head: 0,
            len: 0,
            dropped: 0,
            log_file: None,
        };
        SimPins {
            clock,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The level of `pin`, if it was ever claimed or set.
    pub fn level(&self, pin: u32) -> Option<bool> {
        let state = self.lock();
        state.pins.iter().find(|p| p.pin == pin).map(|p| p.high)
    }

    /// Drives an input pin.
    pub fn set_input(&self, pin: u32, high: bool) {
        self.lock().pin(pin).high = high;
    }

    /// Field fault: from clock time `from`, the lamp on output `lamp_pin` shows `lit` (a
    /// welded load switch, a burnt-out lamp) whatever the pin says; `None` repairs it. Only
    /// its sense input sees it (see [`PinBackend::sense`]).
    pub fn stick_lamp(&self, lamp_pin: u32, lit: Option<bool>, from: Duration) {
        for w in self.lock().wires.iter_mut().filter(|w| w.lamp == lamp_pin) {
            w.stuck = lit.map(|lit| (from, lit));
        }
    }

    /// Wires the lamp on output `lamp_pin` as `active_low` in the simulated hardware, whatever
    /// the config says: a polarity typo in the site file.
    pub fn set_lamp_polarity(&self, lamp_pin: u32, active_low: bool) {
        for w in self.lock().wires.iter_mut().filter(|w| w.lamp == lamp_pin) {
            w.lamp_active_low = active_low;
        }
    }

    /// The level an input reads: a wired sense input follows its lamp.
    fn read(&self, pin: u32) -> bool {
        let now = self.clock.now();
        let state = self.lock();
        let level = |p: u32| {
            state
                .pins
                .iter()
                .find(|x| x.pin == p)
                .is_some_and(|x| x.high)
        };
        match state.wires.iter().find(|w| w.sense == pin) {
            Some(w) => {
                let lit = match w.stuck {
                    Some((from, lit)) if now >= from => lit,
                    _ => level(w.lamp) != w.lamp_active_low,
                };
                lit != w.sense_active_low
            }
            None => level(pin),
        }
    }

    /// Something other than edgewatch drives output `pin` at `level` (a second process, or a
    /// person at a shell with `pinctrl set`): writes still report success but change nothing.
    /// `None` lets edgewatch drive it again.
    pub fn hold_pin(&self, pin: u32, level: Option<bool>) {
        let at = self.clock.now();
        let mut state = self.lock();
        let p = state.pin(pin);
        p.held = level.is_some();
        if let Some(high) = level.filter(|&h| h != p.high) {
            p.high = high;
            state.record(Transition { at, pin, high });
        }
    }

    /// Makes writes to `pin` fail (a broken load switch or driver) or work again.
    pub fn fail_writes(&self, pin: u32, fail: bool) {
        self.lock().pin(pin).fail = fail;
    }

    /// Hands the logged transitions to `f`, oldest first, and empties the log.
    pub fn take_transitions(&self, mut f: impl FnMut(Transition)) {
        let mut state = self.lock();
        let cap = state.ring.len();
        for i in 0..state.len {
            f(state.ring[(state.head + i) % cap]);
        }
        state.head = 0;
        state.len = 0;
    }

    /// Also appends every transition to `file` (`<ms> <pin> <0|1>` a line), after a
    /// `# start <pid>` line; tests read it to see what the lamps did across restarts.
    pub fn log_to(&self, mut file: std::fs::File) -> std::io::Result<()> {
        writeln!(file, "# start {}", std::process::id())?;
        self.lock().log_file = Some(file);
        Ok(())
    }

    /// Transitions pushed out of the full log since creation.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn write(&self, pin: u32, high: bool) -> Result<(), SimPinError> {
        let at = self.clock.now();
        let mut state = self.lock();
        let p = state.pin(pin);
        if p.fail {
            return Err(SimPinError);
        }
        if p.held {
            return Ok(());
        }
        if p.high != high {
            p.high = high;
            state.record(Transition { at, pin, high });
        }
        Ok(())
    }
}

impl<C: Clock + Clone> PinBackend for SimPins<C> {
    type Output = SimOutput<C>;
    type Input = SimInput<C>;

    fn output(&mut self, pin: u32, high: bool, _rest_high: bool) -> Result<SimOutput<C>, PinError> {
        let at = self.clock.now();
        let mut state = self.lock();
        state.pin(pin).high = high;
        state.record(Transition { at, pin, high });
        Ok(SimOutput {
            pin,
            pins: self.clone(),
        })
    }

    fn input(&mut self, pin: u32, pull: Pull) -> Result<SimInput<C>, PinError> {
        self.lock().pin(pin).high = pull == Pull::Up;
        Ok(SimInput {
            pin,
            pins: self.clone(),
        })
    }

    fn sense(&mut self, sense: SensePin, lamp: LampPin) -> Result<SimInput<C>, PinError> {
        self.lock().wires.push(SimWire {
            sense: sense.pin,
            sense_active_low: sense.active_low,
            lamp: lamp.pin,
            lamp_active_low: lamp.active_low,
            stuck: None,
        });
        self.input(sense.pin, sense.bias())
    }
}

/// A simulated write failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPinError;

impl embedded_hal::digital::Error for SimPinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// A simulated output pin.
#[derive(Debug, Clone)]
pub struct SimOutput<C> {
    pin: u32,
    pins: SimPins<C>,
}

impl<C> ErrorType for SimOutput<C> {
    type Error = SimPinError;
}

impl<C: Clock + Clone> OutputPin for SimOutput<C> {
    fn set_low(&mut self) -> Result<(), SimPinError> {
        self.pins.write(self.pin, false)
    }

    fn set_high(&mut self) -> Result<(), SimPinError> {
        self.pins.write(self.pin, true)
    }
}

impl<C: Clock + Clone> StatefulOutputPin for SimOutput<C> {
    fn is_set_high(&mut self) -> Result<bool, SimPinError> {
        Ok(self.pins.level(self.pin).unwrap_or(false))
    }

    fn is_set_low(&mut self) -> Result<bool, SimPinError> {
        self.is_set_high().map(|h| !h)
    }
}

/// A simulated input pin, driven with [`SimPins::set_input`].
#[derive(Debug, Clone)]
pub struct SimInput<C> {
    pin: u32,
    pins: SimPins<C>,
}

impl<C> ErrorType for SimInput<C> {
    type Error = SimPinError;
}

impl<C: Clock + Clone> InputPin for SimInput<C> {
    fn is_high(&mut self) -> Result<bool, SimPinError> {
        Ok(self.pins.read(self.pin))
    }

    fn is_low(&mut self) -> Result<bool, SimPinError> {
        self.is_high().map(|h| !h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::signal::lamp::{LampState, GREEN, RED};
    use crate::signal::plan::SignalConfig;

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];

    fn plan() -> SignalPlan {
        let text = crate::signal::plan::tests::EXAMPLE.replace(
            "red = { pin = 17 }",
            "red = { pin = 17, active_low = true }",
        );
        let cfg: SignalConfig = toml::from_str(&text).unwrap();
        SignalPlan::new(&cfg, ZONES, CLASSES).unwrap()
    }

    #[test]
    fn bank_writes_levels_flash_and_reports_failures() {
        let clock = ManualClock::new();
        let mut sim = SimPins::new(clock.clone(), 64);
        let plan = plan();
        let mut cmd = SignalCommand::dark(plan.group_count());
        cmd.set(0, RED, LampState::On);
        let mut bank = PinBank::new(&plan, &mut sim, &cmd).unwrap();
        // Active-low red: lit means low.
        assert_eq!(sim.level(17), Some(false));
        assert_eq!(sim.level(22), Some(false));
        cmd.set(0, RED, LampState::Off);
        cmd.set(0, GREEN, LampState::Flash);
        clock.advance(Duration::from_millis(100));
        bank.write(clock.now(), &cmd).unwrap();
        assert_eq!((sim.level(17), sim.level(22)), (Some(true), Some(true)));
        clock.advance(Duration::from_millis(500));
        bank.write(clock.now(), &cmd).unwrap();
        assert_eq!(
            sim.level(22),
            Some(false),
            "flash is dark in the second half-second"
        );
        let mut log = Vec::new();
        sim.take_transitions(|t| log.push(t));
        let last = log.last().unwrap();
        assert_eq!(
            (last.pin, last.high, last.at),
            (22, false, Duration::from_millis(600))
        );
        sim.fail_writes(22, true);
        clock.advance(Duration::from_millis(500));
        assert_eq!(bank.write(clock.now(), &cmd).unwrap_err().pin, 22);
        assert_eq!(bank.write_errors(), 1);
        assert_eq!(bank.lamp_of_pin(22), Some((0, GREEN)));
    }

    #[test]
    fn forced_safe_state_wins_over_later_commands_and_waits_only_a_moment() {
        let clock = ManualClock::new();
        let mut sim = SimPins::new(clock.clone(), 64);
        let plan = plan();
        let mut safe = SignalCommand::dark(plan.group_count());
        safe.set(0, RED, LampState::On);
        let mut green = SignalCommand::dark(plan.group_count());
        green.set(0, GREEN, LampState::On);
        let shared = SharedOutputs::new(PinBank::new(&plan, &mut sim, &green).unwrap(), safe);
        assert_eq!(
            (sim.level(17), sim.level(22)),
            (Some(true), Some(true)),
            "red dark, green lit"
        );
        shared.force_safe(clock.now()).unwrap();
        assert!(shared.is_forced());
        shared.write(clock.now(), &green).unwrap();
        assert_eq!(
            (sim.level(17), sim.level(22)),
            (Some(false), Some(false)),
            "red lit, green dark"
        );
        // A control loop stuck holding the outputs delays the watchdog, but not forever.
        let held = shared.bank.lock().unwrap();
        assert!(matches!(
            shared.force_safe(clock.now()),
            Err(ForceSafeError::Busy)
        ));
        drop(held);
    }

    #[test]
    fn transition_log_is_bounded_and_counts_drops() {
        let clock = ManualClock::new();
        let mut sim = SimPins::new(clock.clone(), 4);
        let mut out = sim.output(3, false, false).unwrap();
        for i in 0..10 {
            clock.advance(Duration::from_millis(10));
            if i % 2 == 0 {
                out.set_high().unwrap()
            } else {
                out.set_low().unwrap()
            }
        }
        let mut log = Vec::new();
        sim.take_transitions(|t| log.push(t));
        assert_eq!(log.len(), 4);
        assert_eq!(sim.dropped(), 7);
        assert_eq!(log[3].at, Duration::from_millis(100));
    }

    #[test]
    fn inputs_are_debounced() {
        let clock = ManualClock::new();
        let mut sim = SimPins::new(clock.clone(), 0);
        let plan = plan(); // input `button`, pin 5, active low, 50 ms debounce
        let mut bank = InputBank::new(&plan, &mut sim).unwrap();
        sim.set_input(5, true);
        assert_eq!(bank.sample(clock.now()), 0);
        sim.set_input(5, false); // pressed
        clock.advance(Duration::from_millis(10));
        assert_eq!(bank.sample(clock.now()), 0);
        sim.set_input(5, true); // bounce
        clock.advance(Duration::from_millis(10));
        assert_eq!(bank.sample(clock.now()), 0);
        sim.set_input(5, false);
        for _ in 0..5 {
            clock.advance(Duration::from_millis(10));
            assert_eq!(bank.sample(clock.now()), 0);
        }
        clock.advance(Duration::from_millis(10));
        assert_eq!(bank.sample(clock.now()), 1);
    }
}
