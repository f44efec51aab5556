//! The signal control thread. It ticks the [`SignalSystem`] at its own period from the zone
//! counts the pipeline last published, so lamp timings hold whatever the frame rate, and a
//! camera that stops delivering frames is noticed (the controller falls back to fixed-time).
//!
//! The two threads share only atomics: the pipeline writes a [`SceneFeed`], the control loop
//! writes a [`SignalStatus`] that summaries read. Nothing here allocates after start-up.

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use embedded_hal::digital::{InputPin, StatefulOutputPin};

use crate::capture::CaptureStats;
use crate::clock::Clock;
use crate::config::{Config, OutputBackend, MAX_CLASSES};
use crate::ctl::link::{self, CommandLink, CommandPort, Outcome, SignalRequest};
use crate::health::hw_watchdog::{HardwareWatchdog, HwWatchdogError};
use crate::health::video::VideoState;
use crate::health::watchdog::Heartbeats;
use crate::scene::{Dwell, LineCount, ZonePresence};
use crate::signal::{
    ControlMode, Fault, FaultLatch, GroupState, PinBackend, SafeState, SignalError, SignalSystem,
    SimPins, TickReport,
};

/// Zone occupancy and dwell, line counts, and per camera the time of the latest processed
/// frame, the video state and the capture counters, published by the pipeline for the
/// control loop and the health endpoint.
#[derive(Debug)]
pub struct SceneFeed {
    occupancy: Box<[[AtomicU32; MAX_CLASSES]]>,
    /// Per zone: its [`Dwell`], durations in nanoseconds.
    dwell: Box<[ZoneDwellFeed]>,
    /// Per line: crossings in, then out, per class.
    lines: Box<[[[AtomicU64; MAX_CLASSES]; 2]]>,
    cameras: Box<[CameraFeed]>,
    /// The model failed `model.max_failures` frames in a row (see
    /// [`crate::health::stats::DetectorHealth`]): detection is lost whatever the cameras do.
    detector_failed: AtomicBool,
}

/// One zone's dwell figures as last published.
#[derive(Debug, Default)]
struct ZoneDwellFeed {
    visits: AtomicU64,
    total_ns: AtomicU64,
    longest_ns: AtomicU64,
    current_longest_ns: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one camera last published.
#[derive(Debug, Default)]
pub struct CameraFeed {
    /// Clock time of the latest frame in nanoseconds plus one; 0 before the first frame.
    last_frame: AtomicU64,
    /// The video's [`VideoState`], as its index in [`VIDEO_STATES`].
    video: AtomicU8,
    /// Frozen or dark episodes so far.
    video_incidents: AtomicU64,
    frames: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    corrupt: AtomicU64,
    reconnects: AtomicU64,
    online: AtomicBool,
}

/// Every [`VideoState`], indexed by the byte [`SceneFeed`] stores.
const VIDEO_STATES: [VideoState; 3] = [VideoState::Ok, VideoState::Frozen, VideoState::Dark];

fn decode_time(t: u64) -> Option<Duration> {
    match t {
        0 => None,
        t => Some(Duration::from_nanos(t - 1)),
    }
}

impl CameraFeed {
    /// When this camera's latest frame was processed.
    pub fn last_frame(&self) -> Option<Duration> {
        decode_time(self.last_frame.load(Relaxed))
    }

    /// The video state last published.
    pub fn video(&self) -> VideoState {
        VIDEO_STATES[self.video.load(Relaxed) as usize % VIDEO_STATES.len()]
    }

    /// Frozen or dark episodes so far.
    pub fn video_incidents(&self) -> u64 {
        self.video_incidents.load(Relaxed)
    }

    /// Frames of this camera processed end to end.
    pub fn frames(&self) -> u64 {
        self.frames.load(Relaxed)
    }

    /// The source's counters, as last published.
    pub fn capture(&self) -> CaptureStats {
        CaptureStats {
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            online: self.online.load(Relaxed),
        }
    }
}

impl SceneFeed {
    /// A feed for one camera, `zones` zones and `lines` lines, with no frame yet.
    pub fn new(zones: usize, lines: usize) -> SceneFeed {
        SceneFeed::with_cameras(zones, lines, 1)
    }

    /// A feed for `cameras` cameras, `zones` zones and `lines` lines, with no frame yet.
    pub fn with_cameras(zones: usize, lines: usize, cameras: usize) -> SceneFeed {
        let occupancy = (0..zones)
            .map(|_| std::array::from_fn(|_| AtomicU32::new(0)))
            .collect();
        let lines = (0..lines)
            .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        SceneFeed {
            occupancy,
            dwell: (0..zones).map(|_| ZoneDwellFeed::default()).collect(),
            lines,
            cameras: (0..cameras.max(1))
                .map(|_| CameraFeed {
                    // Online until a source says otherwise.
                    online: AtomicBool::new(true),
                    ..CameraFeed::default()
                })
                .collect(),
            detector_failed: AtomicBool::new(false),
        }
    }

    /// Marks the detector failed (or running again).
    pub fn set_detector_failed(&self, failed: bool) {
        self.detector_failed.store(failed, Relaxed);
    }

    /// True while the detector is marked failed.
    pub fn detector_failed(&self) -> bool {
        self.detector_failed.load(Relaxed)
    }

    /// Publishes cumulative counts of the lines `lines` (indexes into the site's lines).
    pub fn publish_lines(&self, lines: &[usize], counts: &[LineCount]) {
        for (&line, c) in lines.iter().zip(counts) {
            let Some(shared) = self.lines.get(line) else {
                continue;
            };
            for (a, &n) in shared[0].iter().zip(&c.inbound) {
                a.store(n, Relaxed);
            }
            for (a, &n) in shared[1].iter().zip(&c.outbound) {
                a.store(n, Relaxed);
            }
        }
    }

    /// Publishes the dwell figures of the zones `zones` (indexes into the site's zones) from
    /// their presence.
    pub fn publish_dwell(&self, zones: &[usize], presence: &[ZonePresence]) {
        for (&zone, p) in zones.iter().zip(presence) {
            let Some(shared) = self.dwell.get(zone) else {
                continue;
            };
            let d = p.dwell();
            shared.visits.store(d.visits, Relaxed);
            shared.total_ns.store(nanos(d.total), Relaxed);
            shared.longest_ns.store(nanos(d.longest), Relaxed);
            shared
                .current_longest_ns
                .store(nanos(d.current_longest), Relaxed);
        }
    }

    /// Zone `zone`'s dwell figures as last published (all zero for an unknown zone).
    pub fn dwell(&self, zone: usize) -> Dwell {
        self.dwell.get(zone).map_or(Dwell::default(), |d| Dwell {
            visits: d.visits.load(Relaxed),
            total: Duration::from_nanos(d.total_ns.load(Relaxed)),
            longest: Duration::from_nanos(d.longest_ns.load(Relaxed)),
            current_longest: Duration::from_nanos(d.current_longest_ns.load(Relaxed)),
        })
    }

    /// Publishes `camera`'s video state and its frozen or dark episodes so far.
    pub fn publish_video(&self, camera: usize, state: VideoState, incidents: u64) {
        if let Some(c) = self.cameras.get(camera) {
            let i = VIDEO_STATES.iter().position(|&s| s == state).unwrap_or(0);
            c.video.store(i as u8, Relaxed);
            c.video_incidents.store(incidents, Relaxed);
        }
    }

    /// Publishes `camera`'s capture counters and the frames of it processed so far.
    pub fn publish_capture(&self, camera: usize, stats: CaptureStats, frames: u64) {
        if let Some(c) = self.cameras.get(camera) {
            c.frames.store(frames, Relaxed);
            c.delivered.store(stats.delivered, Relaxed);
            c.dropped.store(stats.dropped, Relaxed);
            c.corrupt.store(stats.corrupt, Relaxed);
            c.reconnects.store(stats.reconnects, Relaxed);
            c.online.store(stats.online, Relaxed);
        }
    }

    /// Every camera's feed, in config order.
    pub fn cameras(&self) -> &[CameraFeed] {
        &self.cameras
    }

    /// Frozen or dark episodes so far, all cameras together.
    pub fn video_incidents(&self) -> u64 {
        self.cameras.iter().map(CameraFeed::video_incidents).sum()
    }

    /// When the stalest camera's latest frame was processed; `None` while any camera has
    /// had none. Counting needs every camera, so the stalest one decides.
    pub fn last_frame(&self) -> Option<Duration> {
        self.cameras
            .iter()
            .map(CameraFeed::last_frame)
            .try_fold(Duration::MAX, |oldest, t| t.map(|t| oldest.min(t)))
    }

    /// The worst video state of any camera (frozen or dark before ok).
    pub fn video(&self) -> VideoState {
        self.cameras
            .iter()
            .map(CameraFeed::video)
            .find(|&v| v != VideoState::Ok)
            .unwrap_or(VideoState::Ok)
    }

    /// Objects now in zone `zone`, per class.
    pub fn zone(&self, zone: usize) -> impl Iterator<Item = u32> + '_ {
        self.occupancy
            .get(zone)
            .into_iter()
            .flatten()
            .map(|a| a.load(Relaxed))
    }

    /// Crossings of line `line` per class, inbound (`out == false`) or outbound.
    pub fn line(&self, line: usize, out: bool) -> impl Iterator<Item = u64> + '_ {
        let dir = usize::from(out);
        self.lines
            .get(line)
            .into_iter()
            .flat_map(move |l| l[dir].iter().map(|a| a.load(Relaxed)))
    }

    /// Publishes one frame's occupancy of every zone (`[zone][class]`), as camera 0,
    /// processed at clock time `at`. For single-camera callers.
    pub fn publish(&self, occupancy: &[[u32; MAX_CLASSES]], at: Duration) {
        for (shared, counts) in self.occupancy.iter().zip(occupancy) {
            for (a, &n) in shared.iter().zip(counts) {
                a.store(n, Relaxed);
            }
        }
        self.cameras[0]
            .last_frame
            .store(at.as_nanos() as u64 + 1, Relaxed);
    }

    /// Publishes the occupancy of `camera`'s zones (`zones[i]` is the site index of
    /// `occupancy[i]`) from its frame processed at clock time `at`.
    pub fn publish_zones(
        &self,
        camera: usize,
        zones: &[usize],
        occupancy: &[[u32; MAX_CLASSES]],
        at: Duration,
    ) {
        for (&zone, counts) in zones.iter().zip(occupancy) {
            let Some(shared) = self.occupancy.get(zone) else {
                continue;
            };
            for (a, &n) in shared.iter().zip(counts) {
                a.store(n, Relaxed);
            }
        }
        if let Some(c) = self.cameras.get(camera) {
            c.last_frame.store(at.as_nanos() as u64 + 1, Relaxed);
        }
    }

    /// Copies the occupancy into `into` and returns when the stalest camera's latest frame
    /// was processed (see [`SceneFeed::last_frame`]).
    pub fn read(&self, into: &mut [[u32; MAX_CLASSES]]) -> Option<Duration> {
        for (counts, shared) in into.iter_mut().zip(self.occupancy.iter()) {
            for (n, a) in counts.iter_mut().zip(shared) {
                *n = a.load(Relaxed);
            }
        }
        self.last_frame()
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
    /// The control mode in force: true for actuated, false for fixed-time.
    actuated: AtomicBool,
    /// Phase names, and the phases the no-activity and the max-presence diagnostics recall:
    /// vehicle demand in the low 16 bits, pedestrian demand in the high 16.
    phases: Vec<String>,
    no_activity: AtomicU32,
    max_presence: AtomicU32,
    /// Time-of-day plan names in start order, and the one in force plus one (0: none).
    plans: Vec<String>,
    plan: AtomicU32,
    /// The kernel's word on the wall clock at the last reading (see [`crate::utc`]).
    clock_synced: AtomicBool,
    /// Maintenance flash requested (`edgewatch ctl flash on`).
    maintenance: AtomicBool,
    /// The latched fault, while there is one (read by `/health`). Locked only when a fault
    /// latches or is cleared, and to copy it out.
    fault: Mutex<Option<String>>,
}

impl SignalStatus {
    fn new<C: Clock, O: StatefulOutputPin, I: InputPin>(
        system: &SignalSystem<C, O, I>,
    ) -> SignalStatus {
        let groups: Vec<String> = system.states().map(|(name, _)| name.to_string()).collect();
        let plan = system.plan();
        let phases = (0..plan.phase_count())
            .map(|p| plan.phase_name(p).to_string())
            .collect();
        let plans = plan.plan_names().map(str::to_string).collect();
        let states = groups
            .iter()
            .map(|_| AtomicU8::new(state_index(GroupState::Dark)))
            .collect();
        let status = SignalStatus {
            groups,
            states,
            fault_flash: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            actuated: AtomicBool::new(false),
            phases,
            no_activity: AtomicU32::new(0),
            max_presence: AtomicU32::new(0),
            plans,
            plan: AtomicU32::new(0),
            clock_synced: AtomicBool::new(false),
            maintenance: AtomicBool::new(false),
            fault: Mutex::new(None),
        };
        status.publish(system, None);
        status
    }

    fn publish<C: Clock, O: StatefulOutputPin, I: InputPin>(
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
        let mode = system.controller().mode(system.now());
        self.actuated.store(mode == ControlMode::Actuated, Relaxed);
        let controller = system.controller();
        let both = |(vehicle, ped): (u16, u16)| u32::from(vehicle) | u32::from(ped) << 16;
        self.no_activity
            .store(both(controller.no_activity()), Relaxed);
        self.max_presence
            .store(both(controller.max_presence()), Relaxed);
        let plan = controller.time_plan(system.now()).map_or(0, |i| i + 1);
        self.plan.store(u32::try_from(plan).unwrap_or(0), Relaxed);
    }

    /// Names of the phases in `mask`'s vehicle half, then in its pedestrian half.
    fn named(&self, mask: u32) -> (impl Iterator<Item = &str>, impl Iterator<Item = &str>) {
        let named = move |shift: u32| {
            self.phases
                .iter()
                .enumerate()
                .filter(move |(p, _)| mask >> (shift + *p as u32) & 1 != 0)
                .map(|(_, name)| name.as_str())
        };
        (named(0), named(16))
    }

    /// Phases the no-activity diagnostic has on recall (`signals.no_activity_s`): names of
    /// those whose vehicle zones, then whose pedestrian zones, have seen nothing.
    pub fn no_activity(&self) -> (impl Iterator<Item = &str>, impl Iterator<Item = &str>) {
        self.named(self.no_activity.load(Relaxed))
    }

    /// Phases the max-presence diagnostic has on recall (`signals.max_presence_s`): names of
    /// those whose vehicle zones, then whose pedestrian zones, have shown presence without a
    /// gap for that long.
    pub fn max_presence(&self) -> (impl Iterator<Item = &str>, impl Iterator<Item = &str>) {
        self.named(self.max_presence.load(Relaxed))
    }

    /// True while a detector diagnostic (no activity, max presence) has any phase on recall.
    pub fn detector_fault(&self) -> bool {
        self.no_activity.load(Relaxed) != 0 || self.max_presence.load(Relaxed) != 0
    }

    /// The name of the time-of-day plan in force, if any (none while the wall clock is not
    /// synchronised and `control.require_clock_sync` holds).
    pub fn plan(&self) -> Option<&str> {
        let i = (self.plan.load(Relaxed) as usize).checked_sub(1)?;
        self.plans.get(i).map(String::as_str)
    }

    /// Whether the kernel said the wall clock was synchronised at the last reading (once a
    /// minute).
    pub fn clock_synced(&self) -> bool {
        self.clock_synced.load(Relaxed)
    }

    /// The control mode in force: the time-of-day plan's, the site's, or fixed-time while
    /// detection is degraded.
    pub fn mode(&self) -> ControlMode {
        if self.actuated.load(Relaxed) {
            ControlMode::Actuated
        } else {
            ControlMode::FixedTime
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

    /// The fault that holds the signals in flash, if any, as the monitor reported it.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_fault(&self, fault: Option<String>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// True while maintenance flash is requested (it shows once the running phase cleared).
    pub fn maintenance(&self) -> bool {
        self.maintenance.load(Relaxed)
    }

    /// True while detection is degraded (camera stale) and the controller runs fixed-time.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Relaxed)
    }
}

/// A request from the watchdog thread that the control loop clear the signals to all red in
/// order (flashing don't walk, amber, all-red) because the process is about to restart, and
/// the loop's answer once it has. Two flags; no lock, so neither side waits on the other.
#[derive(Debug, Default)]
pub struct ClearanceRequest {
    requested: AtomicBool,
    cleared: AtomicBool,
}

impl ClearanceRequest {
    /// Asks the control loop to clear.
    pub fn request(&self) {
        self.requested.store(true, SeqCst);
    }

    /// True once [`ClearanceRequest::request`] was called.
    pub fn is_requested(&self) -> bool {
        self.requested.load(SeqCst)
    }

    /// The control loop has left every head at all red.
    fn mark_cleared(&self) {
        self.cleared.store(true, SeqCst);
    }

    /// True once the control loop has cleared to all red.
    pub fn is_cleared(&self) -> bool {
        self.cleared.load(SeqCst)
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
    /// The simulated pins' log file could not be opened.
    #[error("control.sim_log: {0}: {1}")]
    SimLog(std::path::PathBuf, std::io::Error),
    /// The thread could not be started.
    #[error("cannot start the control thread: {0}")]
    Thread(std::io::Error),
    /// The hardware watchdog device could not be opened.
    #[error(transparent)]
    HwWatchdog(#[from] HwWatchdogError),
}

/// The running control thread.
#[derive(Debug)]
pub struct ControlThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    status: Arc<SignalStatus>,
    safe: Arc<dyn SafeState>,
    clearance: Arc<ClearanceRequest>,
    commands: Arc<CommandLink>,
    hw_watchdog: Arc<Mutex<Option<HardwareWatchdog>>>,
}

impl ControlThread {
    /// Opens the kernel watchdog (`control.hardware_watchdog`), which arms it, and has the
    /// loop ping it from its next tick. Call it last in start-up: a start that fails before
    /// never arms it, so a bad config cannot turn into a reset loop.
    pub fn arm_hardware_watchdog(&self, config: &Config) -> Result<(), ControlError> {
        let Some(wd) = &config.control.hardware_watchdog else {
            return Ok(());
        };
        let opened = HardwareWatchdog::open(&wd.device, wd.timeout_s)?;
        if let Ok(mut slot) = self.hw_watchdog.lock() {
            *slot = Some(opened);
        }
        Ok(())
    }

    /// The mailbox `edgewatch ctl` requests reach the loop through.
    pub fn commands(&self) -> &Arc<CommandLink> {
        &self.commands
    }

    /// The watchdog's way to ask the loop for an orderly clearance to all red.
    pub fn clearance(&self) -> &Arc<ClearanceRequest> {
        &self.clearance
    }

    /// What the lamps show now.
    pub fn status(&self) -> &Arc<SignalStatus> {
        &self.status
    }

    /// The outputs' safe-state handle, for the watchdog.
    pub fn safe_state(&self) -> &Arc<dyn SafeState> {
        &self.safe
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
    beats: Arc<Heartbeats>,
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
        require_clock_sync: config.control.require_clock_sync,
        clock_synced: match config.testing.clock_synced {
            Some(true) => || true,
            Some(false) => || false,
            None => crate::utc::clock_synchronised,
        },
    };
    let shared = Shared {
        feed,
        clock: clock.clone(),
        beats,
        latch: FaultLatch::new(config.control.fault_file.clone()),
    };
    match config.control.outputs {
        OutputBackend::Simulated => {
            let mut pins = SimPins::new(clock.clone(), 4096);
            if let Some(path) = &config.control.sim_log {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path);
                file.and_then(|f| pins.log_to(f))
                    .map_err(|e| ControlError::SimLog(path.clone(), e))?;
            }
            if let Some(pin) = config.testing.fail_pin {
                pins.fail_writes(pin, true);
            }
            let stuck = config.testing.stuck_lamp;
            let start = clock.now();
            let system = build(config, signals, &zones, &classes, clock, &mut pins)?;
            if let Some(s) = stuck {
                let from = start + Duration::from_secs_f32(s.after_s.clamp(0.0, 86_400.0));
                pins.stick_lamp(s.pin, Some(s.lit), from);
            }
            spawn(system, shared, settings, move |system| {
                pins.take_transitions(|t| print_transition(system, t.at, t.pin, t.high));
            })
        }
        OutputBackend::Rppal => {
            #[cfg(feature = "rppal")]
            {
                let mut pins = crate::signal::rppal::RppalPins::new().map_err(SignalError::from)?;
                let system = build(config, signals, &zones, &classes, clock, &mut pins)?;
                spawn(system, shared, settings, |_| {})
            }
            #[cfg(not(feature = "rppal"))]
            Err(ControlError::NotBuilt("rppal"))
        }
        OutputBackend::GpioCdev => {
            #[cfg(feature = "gpio-cdev")]
            {
                let mut pins = crate::signal::cdev::CdevPins::new(config.control.gpio_chip.clone());
                let system = build(config, signals, &zones, &classes, clock, &mut pins)?;
                spawn(system, shared, settings, |_| {})
            }
            #[cfg(not(feature = "gpio-cdev"))]
            Err(ControlError::NotBuilt("gpio-cdev"))
        }
    }
}

/// A signal system on the pins of backend `B`.
type SystemOn<B> =
    SignalSystem<Arc<dyn Clock>, <B as PinBackend>::Output, <B as PinBackend>::Input>;

/// The signal system on `backend`, with the heartbeat output when the site has one.
fn build<B: PinBackend>(
    config: &Config,
    signals: &crate::signal::SignalConfig,
    zones: &[&str],
    classes: &[&str],
    clock: Arc<dyn Clock>,
    backend: &mut B,
) -> Result<SystemOn<B>, ControlError> {
    let mut system = SignalSystem::new(signals, zones, classes, clock, backend)?;
    if let Some(hb) = &config.control.heartbeat {
        system
            .claim_heartbeat(backend, hb.pin, hb.active_low)
            .map_err(SignalError::from)?;
    }
    Ok(system)
}

/// Prints one simulated pin change to stderr (unbuffered, so it does not allocate).
fn print_transition<C: Clock, O: StatefulOutputPin, I: InputPin>(
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

/// What the control loop shares with the other threads.
struct Shared {
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
    beats: Arc<Heartbeats>,
    latch: FaultLatch,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    period: Duration,
    stale_after: Duration,
    shutdown_limit: Duration,
    /// `control.require_clock_sync`.
    require_clock_sync: bool,
    /// Asks whether the wall clock is synchronised: the kernel, or a test's answer
    /// (`testing.clock_synced`).
    clock_synced: fn() -> bool,
}

fn spawn<C, O, I>(
    mut system: SignalSystem<C, O, I>,
    shared: Shared,
    settings: Settings,
    after_tick: impl FnMut(&SignalSystem<C, O, I>) + Send + 'static,
) -> Result<Option<ControlThread>, ControlError>
where
    C: Clock + 'static,
    O: StatefulOutputPin + Send + std::fmt::Debug + 'static,
    I: InputPin + Send + 'static,
{
    let status = Arc::new(SignalStatus::new(&system));
    restore_latch(&mut system, &shared.latch, &status);
    let safe = system.safe_state();
    let stop = Arc::new(AtomicBool::new(false));
    let clearance = Arc::new(ClearanceRequest::default());
    let (commands, port) = link::link();
    let Shared {
        feed,
        clock,
        beats,
        latch,
    } = shared;
    let hw_watchdog = Arc::new(Mutex::new(None));
    let control = ControlLoop {
        occupancy: vec![[0; MAX_CLASSES]; feed.occupancy.len()],
        system,
        feed,
        started: clock.now(),
        clock,
        status: status.clone(),
        settings,
        beats,
        clearance: clearance.clone(),
        latch,
        time_of_day_at: None,
        clock_synced: None,
        ever_synced: false,
        hw_watchdog: hw_watchdog.clone(),
        port,
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
        safe,
        clearance,
        commands: Arc::new(commands),
        hw_watchdog,
    }))
}

struct ControlLoop<C, O, I> {
    system: SignalSystem<C, O, I>,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
    status: Arc<SignalStatus>,
    occupancy: Vec<[u32; MAX_CLASSES]>,
    settings: Settings,
    beats: Arc<Heartbeats>,
    /// When the loop started: until the first frame, the camera counts from here.
    started: Duration,
    clearance: Arc<ClearanceRequest>,
    latch: FaultLatch,
    /// When the time of day was last read.
    time_of_day_at: Option<Duration>,
    /// The wall clock's synchronisation at that reading (logged when it changes).
    clock_synced: Option<bool>,
    /// The wall clock has been synchronised since start: a later loss keeps the plans.
    ever_synced: bool,
    /// The kernel watchdog, pinged while the loop ticks (`control.hardware_watchdog`), once
    /// [`ControlThread::arm_hardware_watchdog`] has opened it.
    hw_watchdog: Arc<Mutex<Option<HardwareWatchdog>>>,
    /// `edgewatch ctl` requests, polled once a tick.
    port: CommandPort,
}

/// How often the control loop reads the local time of day.
const TIME_OF_DAY_EVERY: Duration = Duration::from_secs(60);

/// A fault latched before this process started keeps the signals in flash; so does a fault
/// file that cannot be read (the unit cannot know it is clear).
fn restore_latch<C: Clock, O: StatefulOutputPin, I: InputPin>(
    system: &mut SignalSystem<C, O, I>,
    latch: &FaultLatch,
    status: &SignalStatus,
) {
    let reason = match latch.load() {
        Ok(None) => return,
        Ok(Some(reason)) => reason,
        Err(e) => format!("{e}"),
    };
    let fault = Fault::Latched {
        reason: truncated(&reason),
    };
    log::error!(
        "signals: {fault}; flash until `edgewatch reset-fault` clears {}",
        latch.path().display()
    );
    // The whole reason for /health; the fault carries what fits without allocating.
    status.set_fault(Some(format!("fault latched before the restart: {reason}")));
    system.latch_fault(fault);
}

/// `text` cut to the capacity at a character boundary.
fn truncated<const N: usize>(text: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

impl<C: Clock, O: StatefulOutputPin, I: InputPin> ControlLoop<C, O, I> {
    /// Writes a new monitor fault to the fault file, so a restart does not clear it. Runs
    /// once, on the tick the fault latches (the only tick that allocates).
    fn persist(&self, fault: &Fault) {
        let text = fault.to_string();
        match self.latch.store(&text) {
            Ok(()) => log::error!(
                "conflict monitor: {text}; flash latched in {} until `edgewatch reset-fault`",
                self.latch.path().display()
            ),
            Err(e) => log::error!(
                "conflict monitor: {text}; flash latched until this process ends, but {e}"
            ),
        }
        self.status.set_fault(Some(text));
    }

    /// Carries out one `edgewatch ctl` request (such a tick may allocate the answer).
    fn carry_out(&mut self, request: SignalRequest) -> Outcome {
        match request {
            SignalRequest::Flash(on) => {
                self.system.set_maintenance_flash(on);
                self.status.maintenance.store(on, Relaxed);
                let held = match self.system.fault() {
                    Some(_) => "; a latched fault holds the fault flash meanwhile",
                    None => "",
                };
                Outcome::Done(match on {
                    true => format!("maintenance flash on: the running phase clears first{held}"),
                    false => {
                        format!("maintenance flash off: the heads return through all red{held}")
                    }
                })
            }
            SignalRequest::ResetFault => self.reset_fault(),
        }
    }

    /// Clears the latched fault, in the monitor and in the fault file, unless the monitor
    /// sees it again on a tick right after the reset: then the fault stays latched (and
    /// written down) and the request is refused. A fault file the running unit does not hold
    /// (written or broken after start) is only removed: the signals keep running.
    fn reset_fault(&mut self) -> Outcome {
        let file = self.latch.load();
        let Some(was) = self.system.fault().map(|f| f.to_string()) else {
            let was = match file {
                Ok(None) => return Outcome::Done("no fault latched".into()),
                Ok(Some(reason)) => reason,
                Err(e) => e.to_string(),
            };
            return match self.latch.clear() {
                Ok(_) => {
                    log::warn!("signals: fault file cleared by `edgewatch ctl reset-fault` (was: {was}); the signals were running and are not touched");
                    Outcome::Done(format!(
                        "fault file cleared (was: {was}); the signals were running and are not touched"
                    ))
                }
                Err(e) => Outcome::Refused(format!("{e}; the fault file stays")),
            };
        };
        // Held in the monitor: the signals are in fault flash, so the reset is taken.
        let _restarted = self.system.reset();
        let report = self.tick();
        if let Some(fault) = report.new_fault {
            return Outcome::Refused(format!(
                "the monitor still sees a fault: {fault}; the signals stay in flash"
            ));
        }
        if let Err(e) = self.latch.clear() {
            // A restart would come back in flash: stay consistent with the file.
            self.system.latch_fault(Fault::Latched {
                reason: truncated(&was),
            });
            return Outcome::Refused(format!("{e}; the signals stay in flash"));
        }
        self.status.set_fault(None);
        log::warn!("signals: fault cleared by `edgewatch ctl reset-fault` (was: {was})");
        Outcome::Done(format!(
            "fault cleared (was: {was}); the signals restart through start-up flash"
        ))
    }

    /// Tells the controller the local time of day for its time-of-day plans, at start and
    /// every minute after (it counts on from there; a minute bounds the drift from a clock
    /// step or a daylight-saving change). While the wall clock is not synchronised (and
    /// `control.require_clock_sync` holds) the controller is told nothing and forgets what it
    /// knew, so the site's own mode applies.
    fn update_time_of_day(&mut self, now: Duration) {
        if self
            .time_of_day_at
            .is_some_and(|at| now.saturating_sub(at) < TIME_OF_DAY_EVERY)
        {
            return;
        }
        self.time_of_day_at = Some(now);
        let synced = (self.settings.clock_synced)();
        self.status.clock_synced.store(synced, Relaxed);
        self.ever_synced |= synced;
        let trusted = plans_trusted(synced, self.ever_synced, self.settings.require_clock_sync);
        if self.clock_synced != Some(synced) {
            self.clock_synced = Some(synced);
            let plans = self.system.plan().plan_names().next().is_some();
            match (synced, trusted) {
                (true, _) => log::info!("signals: the wall clock is synchronised"),
                (false, true) if self.ever_synced => log::warn!(
                    "signals: the wall clock lost its NTP synchronisation; time-of-day plans \
                     keep following it (it was synchronised earlier)"
                ),
                (false, true) => log::warn!(
                    "signals: the wall clock is not synchronised; time-of-day plans follow it \
                     anyway (control.require_clock_sync = false)"
                ),
                (false, false) if plans => log::warn!(
                    "signals: the wall clock is not synchronised (no NTP yet?): time-of-day \
                     plans wait for it, signals.mode applies (control.require_clock_sync)"
                ),
                (false, false) => log::info!("signals: the wall clock is not synchronised"),
            }
        }
        if !trusted {
            self.system.clear_time_of_day();
        } else if let Some(secs) = crate::utc::local_seconds_after_midnight() {
            self.system.set_time_of_day(secs);
        }
    }

    /// Pings the kernel watchdog, if armed. `try_lock`: arming holds the lock only to put the
    /// device in, and a missed ping is one of many within the timeout.
    fn ping_hardware_watchdog(&self, now: Duration) {
        if let Ok(mut wd) = self.hw_watchdog.try_lock() {
            if let Some(wd) = wd.as_mut() {
                wd.ping(now);
            }
        }
    }

    fn tick(&mut self) -> TickReport {
        let last_frame = self.feed.read(&mut self.occupancy);
        let now = self.clock.now();
        self.update_time_of_day(now);
        // A camera is stale once it has gone `stale_after` without a frame, counting from the
        // start for the first one (the model is loaded by then; the first frame is due).
        let last_frame = last_frame.unwrap_or(self.started);
        let fresh = now.saturating_sub(last_frame) <= self.settings.stale_after;
        let camera_ok =
            fresh && self.feed.video() == VideoState::Ok && !self.feed.detector_failed();
        self.beats.control(now);
        self.ping_hardware_watchdog(now);
        let report = self.system.tick(&self.occupancy, camera_ok);
        if let Some(fault) = &report.new_fault {
            self.persist(fault);
        }
        self.status.publish(&self.system, Some(&report));
        report
    }

    fn run(mut self, stop: &AtomicBool, mut after_tick: impl FnMut(&SignalSystem<C, O, I>)) {
        let period = self.settings.period;
        let mut next = self.clock.now();
        while !stop.load(Relaxed) && !self.clearance.is_requested() {
            self.tick();
            if let Some((seq, request)) = self.port.poll() {
                let outcome = self.carry_out(request);
                self.port.answer(seq, outcome);
            }
            after_tick(&self.system);
            next = (next + period).max(self.clock.now());
            self.clock.sleep_until(next);
        }
        // Stopping, or the watchdog is about to restart the process: end the running phase
        // through its flashing don't walk, amber and all-red (the monitor checks every step),
        // then leave every head at red for as long as the outputs hold their level.
        log::info!("signals: clearing to all red");
        self.system.request_clearance();
        let deadline = self.clock.now() + self.settings.shutdown_limit;
        while !self.system.is_cleared() && self.clock.now() < deadline {
            self.tick();
            after_tick(&self.system);
            next = (next + period).max(self.clock.now());
            self.clock.sleep_until(next);
        }
        if !self.system.is_cleared() {
            log::error!("signals: not cleared within control.shutdown_limit_s; all red now");
        }
        if let Err(e) = self.system.show_all_red() {
            log::error!("signals: could not set all red: {e}");
        }
        self.status.publish(&self.system, None);
        after_tick(&self.system);
        self.clearance.mark_cleared();
        // For the watchdog: hold all red, and show the loop is alive, until the restart.
        while !stop.load(Relaxed) {
            let now = self.clock.now();
            self.beats.control(now);
            self.ping_hardware_watchdog(now);
            next = (next + period).max(self.clock.now());
            self.clock.sleep_until(next);
        }
        // An orderly end: the kernel watchdog must not reset the unit for it (dropping it
        // disarms it).
        let disarmed = self.hw_watchdog.lock().map(|mut wd| wd.take());
        drop(disarmed);
    }
}

/// Whether time-of-day plans may follow the wall clock: while it is synchronised; once it has
/// been since start (the kernel marks it unsynchronised about 9 h after the last NTP update,
/// while a Pi's clock drifts seconds a day); or always when the site does not require sync.
fn plans_trusted(synced: bool, ever_synced: bool, required: bool) -> bool {
    synced || ever_synced || !required
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans wait for the first synchronisation, then keep running through a later loss.
    #[test]
    fn plans_wait_for_the_first_sync_and_survive_a_later_loss() {
        let mut ever = false;
        let trusted: Vec<bool> = [false, false, true, false, false, true]
            .into_iter()
            .map(|synced| {
                ever |= synced;
                plans_trusted(synced, ever, true)
            })
            .collect();
        assert_eq!(trusted, [false, false, true, true, true, true]);
        assert!(plans_trusted(false, false, false), "not required: always");
    }

    #[test]
    fn every_group_state_has_its_own_index() {
        for (i, &s) in STATES.iter().enumerate() {
            assert_eq!(state_index(s) as usize, i);
        }
    }

    #[test]
    fn feed_round_trips_occupancy_and_frame_time() {
        let feed = SceneFeed::new(2, 1);
        let mut out = [[9u32; MAX_CLASSES]; 2];
        assert_eq!(feed.read(&mut out), None);
        assert_eq!(out, [[0; MAX_CLASSES]; 2]);
        let mut occ = [[0u32; MAX_CLASSES]; 2];
        occ[1][3] = 4;
        feed.publish(&occ, Duration::from_millis(1500));
        assert_eq!(feed.read(&mut out), Some(Duration::from_millis(1500)));
        assert_eq!(out, occ);
    }

    #[test]
    fn feed_carries_each_zones_dwell() {
        use crate::config::{Anchor, ZoneConfig};
        let feed = SceneFeed::new(3, 0);
        let zone = ZoneConfig {
            name: "z".into(),
            camera: None,
            points: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
            anchor: Anchor::BottomCenter,
            enter_frames: 1,
            exit_ms: 0,
            ignore_stationary: false,
        };
        let mut p = ZonePresence::new(&zone);
        p.record_visit(Duration::from_millis(2500));
        p.record_visit(Duration::from_millis(500));
        p.set_current_longest(Duration::from_secs(90));
        // This camera's one zone is the site's zone 2.
        feed.publish_dwell(&[2], std::slice::from_ref(&p));
        assert_eq!(feed.dwell(0), Dwell::default());
        let d = feed.dwell(2);
        assert_eq!(d, p.dwell());
        assert_eq!(
            (d.visits, d.mean(), d.longest, d.current_longest),
            (
                2,
                Duration::from_millis(1500),
                Duration::from_millis(2500),
                Duration::from_secs(90)
            )
        );
        assert_eq!(feed.dwell(7), Dwell::default());
    }
}
