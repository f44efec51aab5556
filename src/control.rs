//! The signal control thread. It ticks the [`SignalSystem`] at its own period from the zone
//! counts the pipeline last published, so lamp timings hold whatever the frame rate, and a
//! camera that stops delivering frames is noticed (the controller falls back to fixed-time).
//!
//! The two threads share only atomics: the pipeline writes a [`SceneFeed`], the control loop
//! writes a [`SignalStatus`] that summaries read. Nothing here allocates after start-up.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use embedded_hal::digital::{InputPin, OutputPin};

use crate::clock::Clock;
use crate::config::{Config, OutputBackend, MAX_CLASSES};
use crate::signal::{GroupState, SignalError, SignalSystem, SimPins, TickReport};

/// Zone occupancy and the time of the latest processed frame, published by the pipeline.
#[derive(Debug)]
pub struct SceneFeed {
    occupancy: Box<[[AtomicU32; MAX_CLASSES]]>,
    /// Clock time of the latest frame in nanoseconds plus one; 0 before the first frame.
    last_frame: AtomicU64,
}

impl SceneFeed {
    /// A feed for `zones` zones, with no frame yet.
    pub fn new(zones: usize) -> SceneFeed {
        let occupancy = (0..zones)
            .map(|_| std::array::from_fn(|_| AtomicU32::new(0)))
            .collect();
        SceneFeed {
            occupancy,
            last_frame: AtomicU64::new(0),
        }
    }

    /// Publishes one frame's occupancy (`[zone][class]`), processed at clock time `at`.
    pub fn publish(&self, occupancy: &[[u32; MAX_CLASSES]], at: Duration) {
        for (shared, counts) in self.occupancy.iter().zip(occupancy) {
            for (a, &n) in shared.iter().zip(counts) {
                a.store(n, Relaxed);
            }
        }
        self.last_frame.store(at.as_nanos() as u64 + 1, Relaxed);
    }

    /// Copies the occupancy into `into` and returns when the latest frame was processed.
    pub fn read(&self, into: &mut [[u32; MAX_CLASSES]]) -> Option<Duration> {
        for (counts, shared) in into.iter_mut().zip(self.occupancy.iter()) {
            for (n, a) in counts.iter_mut().zip(shared) {
                *n = a.load(Relaxed);
            }
        }
        match self.last_frame.load(Relaxed) {
            0 => None,
            t => Some(Duration::from_nanos(t - 1)),
        }
    }
}

/// Every [`GroupState`], indexed by the byte [`SignalStatus`] stores.
const STATES: [GroupState; 13] = [
    GroupState::Red,
    GroupState::Amber,
    GroupState::Green,
    GroupState::RedFlash,
    GroupState::AmberFlash,
    GroupState::Walk,
    GroupState::PedClearance,
    GroupState::DontWalk,
    GroupState::BusGo,
    GroupState::BusStop,
    GroupState::On,
    GroupState::Dark,
    GroupState::Invalid,
];

fn state_index(state: GroupState) -> u8 {
    STATES
        .iter()
        .position(|&s| s == state)
        .unwrap_or(STATES.len() - 1) as u8
}

/// What the lamps show, published by the control loop after every tick.
#[derive(Debug)]
pub struct SignalStatus {
    groups: Vec<String>,
    states: Box<[AtomicU8]>,
    fault_flash: AtomicBool,
    degraded: AtomicBool,
}

impl SignalStatus {
    fn new<C: Clock, O: OutputPin, I: InputPin>(system: &SignalSystem<C, O, I>) -> SignalStatus {
        let groups: Vec<String> = system.states().map(|(name, _)| name.to_string()).collect();
        let states = groups
            .iter()
            .map(|_| AtomicU8::new(state_index(GroupState::Dark)))
            .collect();
        let status = SignalStatus {
            groups,
            states,
            fault_flash: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
        };
        status.publish(system, None);
        status
    }

    fn publish<C: Clock, O: OutputPin, I: InputPin>(
        &self,
        system: &SignalSystem<C, O, I>,
        report: Option<&TickReport>,
    ) {
        for (a, (_, state)) in self.states.iter().zip(system.states()) {
            a.store(state_index(state), Relaxed);
        }
        if let Some(r) = report {
            self.fault_flash.store(r.fault_flash, Relaxed);
            self.degraded.store(r.degraded, Relaxed);
        }
    }

    /// Each group's name and what its lamps show.
    pub fn states(&self) -> impl Iterator<Item = (&str, GroupState)> + '_ {
        self.groups.iter().zip(self.states.iter()).map(|(name, s)| {
            let state = STATES.get(s.load(Relaxed) as usize).copied();
            (name.as_str(), state.unwrap_or(GroupState::Invalid))
        })
    }

    /// True while the conflict monitor holds all-red flash.
    pub fn fault_flash(&self) -> bool {
        self.fault_flash.load(Relaxed)
    }

    /// True while detection is degraded (camera stale) and the controller runs fixed-time.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Relaxed)
    }
}

/// Why the control loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The signal plan or a pin was refused.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The configured output backend is not compiled into this binary.
    #[error("control.outputs: `{0}` needs a build with `--features {0}`")]
    NotBuilt(&'static str),
    /// The thread could not be started.
    #[error("cannot start the control thread: {0}")]
    Thread(std::io::Error),
}

/// The running control thread.
#[derive(Debug)]
pub struct ControlThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    status: Arc<SignalStatus>,
}

impl ControlThread {
    /// What the lamps show now.
    pub fn status(&self) -> &Arc<SignalStatus> {
        &self.status
    }

    /// Asks the loop to clear the running phase, leaves the lamps at all red and waits for it.
    pub fn shut_down(self) {
        self.stop.store(true, Relaxed);
        if self.handle.join().is_err() {
            log::error!("the control thread panicked");
        }
    }
}

/// Builds the signal system for `config` on its configured outputs and starts ticking it from
/// `feed`. `None` when the site has no `[signals]`.
pub fn start(
    config: &Config,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
) -> Result<Option<ControlThread>, ControlError> {
    let Some(signals) = &config.signals else {
        return Ok(None);
    };
    let zones: Vec<&str> = config.zones.iter().map(|z| z.name.as_str()).collect();
    let classes: Vec<&str> = config.model.classes.iter().map(|c| c.as_str()).collect();
    let settings = Settings {
        period: Duration::from_millis(config.control.tick_ms),
        stale_after: Duration::from_millis(config.control.camera_stale_ms),
        shutdown_limit: Duration::from_secs_f32(config.control.shutdown_limit_s),
    };
    match config.control.outputs {
        OutputBackend::Simulated => {
            let mut pins = SimPins::new(clock.clone(), 4096);
            let system = SignalSystem::new(signals, &zones, &classes, clock.clone(), &mut pins)?;
            spawn(system, feed, clock, settings, move |system| {
                pins.take_transitions(|t| print_transition(system, t.at, t.pin, t.high));
            })
        }
        OutputBackend::Rppal => {
            #[cfg(feature = "rppal")]
            {
                let mut pins = crate::signal::rppal::RppalPins::new().map_err(SignalError::from)?;
                let system =
                    SignalSystem::new(signals, &zones, &classes, clock.clone(), &mut pins)?;
                spawn(system, feed, clock, settings, |_| {})
            }
            #[cfg(not(feature = "rppal"))]
            Err(ControlError::NotBuilt("rppal"))
        }
        OutputBackend::GpioCdev => {
            #[cfg(feature = "gpio-cdev")]
            {
                let mut pins = crate::signal::cdev::CdevPins::new(config.control.gpio_chip.clone());
                let system =
                    SignalSystem::new(signals, &zones, &classes, clock.clone(), &mut pins)?;
                spawn(system, feed, clock, settings, |_| {})
            }
            #[cfg(not(feature = "gpio-cdev"))]
            Err(ControlError::NotBuilt("gpio-cdev"))
        }
    }
}

/// Prints one simulated pin change to stderr (unbuffered, so it does not allocate).
fn print_transition<C: Clock, O: OutputPin, I: InputPin>(
    system: &SignalSystem<C, O, I>,
    at: Duration,
    pin: u32,
    high: bool,
) {
    let (group, lamp) = system.lamp_of_pin(pin).unwrap_or(("?", "?"));
    let level = if high { "on" } else { "off" };
    eprintln!(
        "signal {:9.3}s pin {pin:>2} {group} {lamp} {level}",
        at.as_secs_f64()
    );
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    period: Duration,
    stale_after: Duration,
    shutdown_limit: Duration,
}

fn spawn<C, O, I>(
    system: SignalSystem<C, O, I>,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    after_tick: impl FnMut(&SignalSystem<C, O, I>) + Send + 'static,
) -> Result<Option<ControlThread>, ControlError>
where
    C: Clock + 'static,
    O: OutputPin + Send + 'static,
    I: InputPin + Send + 'static,
{
    let status = Arc::new(SignalStatus::new(&system));
    let stop = Arc::new(AtomicBool::new(false));
    let control = ControlLoop {
        occupancy: vec![[0; MAX_CLASSES]; feed.occupancy.len()],
        system,
        feed,
        started: clock.now(),
        clock,
        status: status.clone(),
        settings,
    };
    let thread_stop = stop.clone();
    let handle = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control.run(&thread_stop, after_tick))
        .map_err(ControlError::Thread)?;
    Ok(Some(ControlThread {
        stop,
        handle,
        status,
    }))
}

struct ControlLoop<C, O, I> {
    system: SignalSystem<C, O, I>,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
    status: Arc<SignalStatus>,
    occupancy: Vec<[u32; MAX_CLASSES]>,
    settings: Settings,
    /// When the loop started: until the first frame, the camera counts from here.
    started: Duration,
}

impl<C: Clock, O: OutputPin, I: InputPin> ControlLoop<C, O, I> {
    fn tick(&mut self) -> TickReport {
        let last_frame = self.feed.read(&mut self.occupancy);
        let now = self.clock.now();
        // A camera is stale once it has gone `stale_after` without a frame, counting from the
        // start for the first one (the model is loaded by then; the first frame is due).
        let last_frame = last_frame.unwrap_or(self.started);
        let camera_ok = now.saturating_sub(last_frame) <= self.settings.stale_after;
        let report = self.system.tick(&self.occupancy, camera_ok);
        if let Some(fault) = &report.new_fault {
            log::error!("conflict monitor: {fault}; all-red flash latched until reset");
        }
        self.status.publish(&self.system, Some(&report));
        report
    }

    fn run(mut self, stop: &AtomicBool, mut after_tick: impl FnMut(&SignalSystem<C, O, I>)) {
        let period = self.settings.period;
        let mut next = self.clock.now();
        while !stop.load(Relaxed) {
            self.tick();
            after_tick(&self.system);
            next = (next + period).max(self.clock.now());
            self.clock.sleep_until(next);
        }
        // Stopping: let the running phase clear through amber and all-red, then leave every
        // head at red for as long as the outputs hold their level.
        log::info!("signals: clearing to all red before stopping");
        self.system.set_maintenance_flash(true);
        let deadline = self.clock.now() + self.settings.shutdown_limit;
        while !self.system.is_cleared() && self.clock.now() < deadline {
            self.tick();
            after_tick(&self.system);
            next = (next + period).max(self.clock.now());
            self.clock.sleep_until(next);
        }
        if let Err(e) = self.system.show_all_red() {
            log::error!("signals: could not set all red on stopping: {e}");
        }
        self.status.publish(&self.system, None);
        after_tick(&self.system);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_state_has_its_own_index() {
        for (i, &s) in STATES.iter().enumerate() {
            assert_eq!(state_index(s) as usize, i);
        }
    }

    #[test]
    fn feed_round_trips_occupancy_and_frame_time() {
        let feed = SceneFeed::new(2);
        let mut out = [[9u32; MAX_CLASSES]; 2];
        assert_eq!(feed.read(&mut out), None);
        assert_eq!(out, [[0; MAX_CLASSES]; 2]);
        let mut occ = [[0u32; MAX_CLASSES]; 2];
        occ[1][3] = 4;
        feed.publish(&occ, Duration::from_millis(1500));
        assert_eq!(feed.read(&mut out), Some(Duration::from_millis(1500)));
        assert_eq!(out, occ);
    }
}
