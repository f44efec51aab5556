//! Detector mode: edgewatch as the video detector of an existing signal controller, giving
//! detector calls on output pins (relays into the controller's detector rack), as Autoscope
//! or a loop card does, with or without `[signals]`.
//!
//! **Fail-safe by wiring and by logic.** A relay energised means "no call"; a de-energised
//! one (dead Pi, cut cable, process gone) means "call", so the controller serves every phase
//! whose detector is lost. The process holds "no call" only while it is healthy: when video is
//! degraded (stale, frozen, dark, the detector failed), or a channel's own diagnostics trip
//! (no activity for `no_activity_s`, presence for longer than `max_presence_s`), its output
//! goes to a constant call; on shutdown every output calls. Returning video is trusted only
//! once it has been good for `recover_s`; a tripped diagnostic holds through an outage, and
//! one not tripped starts its timer again when video is trusted.
//!
//! A channel in `presence` mode calls once an object has been in its zones for `delay_s`, and
//! holds the call `extend_s` after the last one leaves; in `pulse` mode it gives a
//! `pulse_ms` call for each object arriving. [`Channel::tick`] is the whole logic, pure and
//! allocation-free; [`start`] runs it on its own thread at `control.tick_ms`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use embedded_hal::digital::OutputPin;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{Config, ConfigError, OutputBackend, MAX_CLASSES};
use crate::control::SceneFeed;
use crate::health::video::VideoState;
use crate::signal::outputs::{PinBackend, PinError, SimPins};

/// Outputs at most.
pub const MAX_OUTPUTS: usize = 16;

/// How a channel reports presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    /// Call while an object is present (after `delay_s`, held `extend_s`).
    #[default]
    Presence,
    /// A short call for each object arriving (counting inputs).
    Pulse,
}

/// One `[[detector_outputs]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorOutputConfig {
    /// Name, for `/health` and logs.
    pub name: String,
    /// Output pin driving the relay.
    pub pin: u32,
    /// Zones whose objects place the call.
    pub zones: Vec<String>,
    /// Classes that count (default: every counted class).
    #[serde(default)]
    pub classes: Vec<String>,
    /// `presence` or `pulse`.
    #[serde(default)]
    pub mode: CallMode,
    /// Presence must last this long before the call (0..=60 s).
    #[serde(default)]
    pub delay_s: f32,
    /// The call is held this long after presence ends (0..=60 s).
    #[serde(default)]
    pub extend_s: f32,
    /// Length of a pulse-mode call (50..=2000 ms).
    #[serde(default = "default_pulse_ms")]
    pub pulse_ms: u64,
    /// Active-low relay board: the pin is driven low to energise the relay.
    #[serde(default)]
    pub invert: bool,
    /// No object for this long fails the channel to a constant call (NTCIP "no activity");
    /// 0 turns the check off.
    #[serde(default)]
    pub no_activity_s: f32,
    /// Presence for longer than this fails the channel to a constant call (NTCIP "max
    /// presence"); 0 turns the check off.
    #[serde(default)]
    pub max_presence_s: f32,
    /// After lost video returns, the channel keeps its fail-safe call until video has been
    /// good this long (0..=600 s, default 10), so a flickering camera does not flicker the
    /// calls.
    #[serde(default = "default_recover_s")]
    pub recover_s: f32,
}

fn default_pulse_ms() -> u64 {
    125
}

fn default_recover_s() -> f32 {
    10.0
}

/// Why a channel calls whatever its zones show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailSafe {
    /// Detection is lost: stale, frozen or dark video, or a failed detector.
    Video,
    /// No object for `no_activity_s`.
    NoActivity,
    /// Presence longer than `max_presence_s`.
    MaxPresence,
    /// The unit is stopping.
    Shutdown,
    /// The watchdog fired; the process restarts.
    Watchdog,
}

impl FailSafe {
    /// Lower-case name for `/health` (NTCIP 1202 terms where they exist).
    pub fn as_str(self) -> &'static str {
        match self {
            FailSafe::Video => "video",
            FailSafe::NoActivity => "no activity",
            FailSafe::MaxPresence => "max presence",
            FailSafe::Shutdown => "shutdown",
            FailSafe::Watchdog => "watchdog",
        }
    }
}

/// One output's timing, from its config.
#[derive(Debug, Clone, Copy)]
pub struct ChannelTiming {
    mode: CallMode,
    delay: Duration,
    extend: Duration,
    pulse: Duration,
    no_activity: Option<Duration>,
    max_presence: Option<Duration>,
    recover: Duration,
}

impl ChannelTiming {
    fn from(cfg: &DetectorOutputConfig) -> ChannelTiming {
        // Seconds to the millisecond, so 0.3 is exactly 300 ms (f32 0.3 is a little more).
        let secs = |s: f32| Duration::from_millis((f64::from(s) * 1000.0).round().max(0.0) as u64);
        let opt = |s: f32| (s > 0.0).then(|| secs(s));
        ChannelTiming {
            mode: cfg.mode,
            delay: secs(cfg.delay_s),
            extend: secs(cfg.extend_s),
            pulse: Duration::from_millis(cfg.pulse_ms),
            no_activity: opt(cfg.no_activity_s),
            max_presence: opt(cfg.max_presence_s),
            recover: secs(cfg.recover_s),
        }
    }
}

/// The state of one detector channel; [`Channel::tick`] decides its call.
#[derive(Debug, Clone)]
pub struct Channel {
    timing: ChannelTiming,
    /// When the present run of presence began.
    present_since: Option<Duration>,
    /// When an object was last present.
    last_present: Option<Duration>,
    /// End of the current pulse.
    pulse_until: Duration,
    /// A presence call placed is held until then (its extension).
    hold_until: Duration,
    objects: u32,
    started: Duration,
    /// Activations (NTCIP volume): presence runs, or pulses.
    volume: u64,
    /// Time with an object present, for occupancy.
    occupied: Duration,
    last_tick: Option<Duration>,
    /// Whether the video is trusted, or since when it has been back after a loss.
    video: VideoTrust,
    /// The diagnostics judge from here: the start, or when video was last untrusted.
    judged_from: Duration,
    /// Tripped diagnostics, held until trusted video clears them.
    no_activity_failed: bool,
    max_presence_failed: bool,
}

/// A channel's trust in the video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoTrust {
    Trusted,
    Lost,
    /// Good again since then, not yet for `recover_s`.
    Back(Duration),
}

/// What a channel decided at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the output calls.
    pub call: bool,
    /// Why it calls regardless of the zones, if it does.
    pub fail_safe: Option<FailSafe>,
}

impl Channel {
    /// A channel starting at `now`.
    pub fn new(timing: ChannelTiming, now: Duration) -> Channel {
        Channel {
            timing,
            present_since: None,
            last_present: None,
            pulse_until: Duration::ZERO,
            hold_until: Duration::ZERO,
            objects: 0,
            started: now,
            volume: 0,
            occupied: Duration::ZERO,
            last_tick: None,
            video: VideoTrust::Trusted,
            judged_from: now,
            no_activity_failed: false,
            max_presence_failed: false,
        }
    }

    /// Follows the video and says whether it is trusted at `now`: not while lost, nor until
    /// it has been good again for `recover_s`.
    fn trust_video(&mut self, now: Duration, video_ok: bool) -> bool {
        self.video = match (self.video, video_ok) {
            (_, false) => VideoTrust::Lost,
            (VideoTrust::Lost, true) => VideoTrust::Back(now),
            (same, true) => same,
        };
        if let VideoTrust::Back(since) = self.video {
            if now.saturating_sub(since) >= self.timing.recover {
                self.video = VideoTrust::Trusted;
            }
        }
        self.video == VideoTrust::Trusted
    }

    /// Advances to `now` with `objects` in the channel's zones and whether video is good.
    pub fn tick(&mut self, now: Duration, objects: u32, video_ok: bool) -> Decision {
        let present = objects > 0;
        if let Some(last) = self.last_tick {
            if present {
                self.occupied += now.saturating_sub(last);
            }
        }
        self.last_tick = Some(now);
        match (present, self.present_since) {
            (true, None) => {
                self.present_since = Some(now);
                if self.timing.mode == CallMode::Presence {
                    self.volume += 1;
                }
            }
            (false, Some(_)) => self.present_since = None,
            _ => {}
        }
        if present {
            self.last_present = Some(now);
        }
        if self.timing.mode == CallMode::Pulse && objects > self.objects {
            self.volume += u64::from(objects - self.objects);
            self.pulse_until = now + self.timing.pulse;
        }
        self.objects = objects;

        // The diagnostics judge only trusted video. A tripped one holds through an outage
        // until trusted video clears it (presence ends no activity, a gap ends max presence);
        // one not tripped starts its timer again once video is trusted, as an outage is
        // neither activity nor presence.
        let trusted = self.trust_video(now, video_ok);
        if !trusted {
            self.judged_from = now;
        } else {
            self.judge(now, present);
        }
        let fail_safe = if !trusted {
            Some(FailSafe::Video)
        } else if self.max_presence_failed {
            Some(FailSafe::MaxPresence)
        } else if self.no_activity_failed {
            Some(FailSafe::NoActivity)
        } else {
            None
        };
        let call = match self.timing.mode {
            CallMode::Presence => {
                let held = self
                    .present_since
                    .is_some_and(|since| now.saturating_sub(since) >= self.timing.delay);
                if held {
                    self.hold_until = now + self.timing.extend;
                }
                held || now < self.hold_until
            }
            CallMode::Pulse => now < self.pulse_until,
        };
        Decision {
            call: call || fail_safe.is_some(),
            fail_safe,
        }
    }

    /// Trips or clears the NTCIP diagnostics on a tick of trusted video.
    fn judge(&mut self, now: Duration, present: bool) {
        let from = |since: Duration| now.saturating_sub(since.max(self.judged_from));
        self.max_presence_failed = present
            && (self.max_presence_failed
                || self
                    .timing
                    .max_presence
                    .is_some_and(|max| self.present_since.is_some_and(|since| from(since) > max)));
        self.no_activity_failed = !present
            && (self.no_activity_failed
                || self
                    .timing
                    .no_activity
                    .is_some_and(|limit| from(self.last_present.unwrap_or(self.started)) > limit));
    }

    /// Activations so far (NTCIP volume).
    pub fn volume(&self) -> u64 {
        self.volume
    }

    /// Share of the time since start with an object present (NTCIP occupancy), 0..=1.
    pub fn occupancy(&self, now: Duration) -> f64 {
        let total = now.saturating_sub(self.started).as_secs_f64();
        if total <= 0.0 {
            0.0
        } else {
            (self.occupied.as_secs_f64() / total).min(1.0)
        }
    }
}

impl DetectorOutputConfig {
    /// Checks the entry at `key` against the site's zones and classes.
    pub fn validate(&self, key: &str, zones: &[&str], classes: &[&str]) -> Result<(), ConfigError> {
        let invalid = |k: &str, m: String| ConfigError::invalid(format!("{key}.{k}"), m);
        if self.name.is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if self.zones.is_empty() {
            return Err(invalid("zones", "name at least one zone".into()));
        }
        for z in &self.zones {
            if !zones.contains(&z.as_str()) {
                return Err(invalid("zones", format!("no zone is named `{z}`")));
            }
        }
        for c in &self.classes {
            if !classes.contains(&c.as_str()) {
                return Err(invalid("classes", format!("`{c}` is not in model.classes")));
            }
        }
        for (k, v) in [("delay_s", self.delay_s), ("extend_s", self.extend_s)] {
            if !(v.is_finite() && (0.0..=60.0).contains(&v)) {
                return Err(invalid(k, format!("{v} is out of range 0..=60")));
            }
        }
        for (k, v) in [
            ("no_activity_s", self.no_activity_s),
            ("max_presence_s", self.max_presence_s),
        ] {
            if !(v.is_finite() && (0.0..=86_400.0).contains(&v)) {
                return Err(invalid(k, format!("{v} is out of range 0..=86400")));
            }
        }
        if !(self.recover_s.is_finite() && (0.0..=600.0).contains(&self.recover_s)) {
            return Err(invalid(
                "recover_s",
                format!("{} is out of range 0..=600", self.recover_s),
            ));
        }
        if !(50..=2000).contains(&self.pulse_ms) {
            return Err(invalid(
                "pulse_ms",
                format!("{} is out of range 50..=2000", self.pulse_ms),
            ));
        }
        Ok(())
    }
}

/// Checks the whole `[[detector_outputs]]` list: each entry, unique names and pins, and no pin
/// shared with a signal lamp.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let outputs = &config.detector_outputs;
    if outputs.len() > MAX_OUTPUTS {
        return Err(ConfigError::invalid(
            "detector_outputs",
            format!("at most {MAX_OUTPUTS} outputs"),
        ));
    }
    let zones: Vec<&str> = config.zones.iter().map(|z| z.name.as_str()).collect();
    let classes: Vec<&str> = config.model.classes.iter().map(|c| c.as_str()).collect();
    // Pins the signals and the heartbeat claim, with the key that claims them.
    let mut taken: Vec<(u32, String)> = config.signals.iter().flat_map(|s| s.pins()).collect();
    if let Some(hb) = &config.control.heartbeat {
        taken.push((hb.pin, "control.heartbeat.pin".into()));
    }
    for (i, o) in outputs.iter().enumerate() {
        let key = format!("detector_outputs[{i}]");
        o.validate(&key, &zones, &classes)?;
        if outputs[..i].iter().any(|p| p.name == o.name) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("`{}` is used twice", o.name),
            ));
        }
        let earlier = (0..i).map(|j| (outputs[j].pin, format!("detector_outputs[{j}].pin")));
        if let Some((_, user)) = earlier
            .chain(taken.iter().cloned())
            .find(|(p, _)| *p == o.pin)
        {
            return Err(ConfigError::invalid(
                format!("{key}.pin"),
                format!("gpio {} is already used by {user}", o.pin),
            ));
        }
    }
    Ok(())
}

/// What each output shows, for `/health` and `/metrics`; written by the detector thread.
#[derive(Debug)]
pub struct DetectorStatus {
    names: Vec<String>,
    call: Box<[AtomicBool]>,
    /// [`FailSafe`] index plus one; 0 when none.
    fail_safe: Box<[AtomicU8]>,
    volume: Box<[AtomicU64]>,
    /// Occupancy in parts per million.
    occupancy_ppm: Box<[AtomicU64]>,
}

const FAIL_SAFES: [FailSafe; 5] = [
    FailSafe::Video,
    FailSafe::NoActivity,
    FailSafe::MaxPresence,
    FailSafe::Shutdown,
    FailSafe::Watchdog,
];

/// One output's status.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputStatus<'a> {
    /// The output's name.
    pub name: &'a str,
    /// Whether it calls now.
    pub call: bool,
    /// Why it calls regardless of the zones.
    pub fail_safe: Option<FailSafe>,
    /// Activations so far (NTCIP volume).
    pub volume: u64,
    /// Share of the time with an object present (NTCIP occupancy), 0..=1.
    pub occupancy: f64,
}

impl DetectorStatus {
    fn new(names: Vec<String>) -> DetectorStatus {
        let n = names.len();
        DetectorStatus {
            names,
            // Until the thread says otherwise, every output calls (the relays are not yet
            // energised).
            call: (0..n).map(|_| AtomicBool::new(true)).collect(),
            fail_safe: (0..n).map(|_| AtomicU8::new(0)).collect(),
            volume: (0..n).map(|_| AtomicU64::new(0)).collect(),
            occupancy_ppm: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn publish(&self, i: usize, d: Decision, ch: &Channel, now: Duration) {
        self.call[i].store(d.call, Relaxed);
        let code = d
            .fail_safe
            .and_then(|f| FAIL_SAFES.iter().position(|&x| x == f))
            .map_or(0, |p| p as u8 + 1);
        self.fail_safe[i].store(code, Relaxed);
        self.volume[i].store(ch.volume(), Relaxed);
        self.occupancy_ppm[i].store((ch.occupancy(now) * 1e6) as u64, Relaxed);
    }

    /// Every output's status, in config order.
    pub fn outputs(&self) -> impl Iterator<Item = OutputStatus<'_>> + '_ {
        (0..self.names.len()).map(|i| OutputStatus {
            name: &self.names[i],
            call: self.call[i].load(Relaxed),
            fail_safe: match self.fail_safe[i].load(Relaxed) {
                0 => None,
                n => FAIL_SAFES.get(n as usize - 1).copied(),
            },
            volume: self.volume[i].load(Relaxed),
            occupancy: self.occupancy_ppm[i].load(Relaxed) as f64 / 1e6,
        })
    }
}

/// Why the detector outputs could not start.
#[derive(Debug, thiserror::Error)]
pub enum DetectorOutputError {
    /// A pin could not be claimed.
    #[error("detector_outputs: {0}")]
    Pin(#[from] PinError),
    /// The configured backend is not compiled in.
    #[error("control.outputs: `{0}` needs a build with `--features {0}`")]
    NotBuilt(&'static str),
    /// The simulated pins' log cannot be opened.
    #[error("control.sim_log {0}: {1}")]
    SimLog(std::path::PathBuf, std::io::Error),
    /// The thread could not start.
    #[error("cannot start the detector outputs thread: {0}")]
    Thread(std::io::Error),
}

/// The running detector outputs: stop them to leave every output calling.
#[derive(Debug)]
pub struct DetectorThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    status: Arc<DetectorStatus>,
    force: ForceCalls,
}

/// Puts every output on a constant call from another thread (the watchdog's), and waits a
/// few ticks for the outputs thread to drive the relays.
#[derive(Debug, Clone)]
pub struct ForceCalls {
    forced: Arc<AtomicBool>,
    /// Ticks the thread has driven every output to a call since `forced` was set.
    applied: Arc<AtomicU64>,
    period: Duration,
}

impl ForceCalls {
    /// Forces the calls; true once the relays are de-energised (false if the thread did not
    /// answer within three ticks: the restart releases them then).
    pub fn force(&self) -> bool {
        self.forced.store(true, Relaxed);
        let before = self.applied.load(Relaxed);
        for _ in 0..30 {
            if self.applied.load(Relaxed) > before {
                return true;
            }
            std::thread::sleep(self.period / 10);
        }
        false
    }
}

impl DetectorThread {
    /// A handle that forces every output to call (for the watchdog).
    pub fn force_calls(&self) -> ForceCalls {
        self.force.clone()
    }

    /// What the outputs show.
    pub fn status(&self) -> &Arc<DetectorStatus> {
        &self.status
    }

    /// Stops the thread; every output is left calling (relays de-energised).
    pub fn shut_down(self) {
        self.stop.store(true, Relaxed);
        let _ = self.handle.join();
    }
}

/// One output: its channel, which zones and classes feed it, and its pin.
struct Output<O> {
    channel: Channel,
    zones: Vec<usize>,
    /// `classes[c]`: counted class `c` feeds it.
    classes: [bool; MAX_CLASSES],
    invert: bool,
    pin: O,
}

impl<O: OutputPin> Output<O> {
    /// Drives the relay: energised (pin active) means "no call".
    fn drive(&mut self, call: bool) {
        let energise = !call;
        let high = energise != self.invert;
        // A failed write leaves the relay as it was; the next tick tries again.
        let _ = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
    }
}

/// Starts the outputs of `config.detector_outputs` on their own thread (none if the list is
/// empty), on the backend `control.outputs` names.
pub fn start(
    config: &Config,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
) -> Result<Option<DetectorThread>, DetectorOutputError> {
    if config.detector_outputs.is_empty() {
        return Ok(None);
    }
    match config.control.outputs {
        OutputBackend::Simulated => {
            let mut pins = SimPins::new(clock.clone(), 4096);
            if let Some(path) = &config.control.sim_log {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path);
                file.and_then(|f| pins.log_to(f))
                    .map_err(|e| DetectorOutputError::SimLog(path.clone(), e))?;
            }
            spawn(config, feed, clock, &mut pins)
        }
        OutputBackend::Rppal => {
            #[cfg(feature = "rppal")]
            {
                let mut pins =
                    crate::signal::rppal::RppalPins::new().map_err(|e| PinError::new(0, e))?;
                spawn(config, feed, clock, &mut pins)
            }
            #[cfg(not(feature = "rppal"))]
            Err(DetectorOutputError::NotBuilt("rppal"))
        }
        OutputBackend::GpioCdev => {
            #[cfg(feature = "gpio-cdev")]
            {
                let mut pins = crate::signal::cdev::CdevPins::new(config.control.gpio_chip.clone());
                spawn(config, feed, clock, &mut pins)
            }
            #[cfg(not(feature = "gpio-cdev"))]
            Err(DetectorOutputError::NotBuilt("gpio-cdev"))
        }
    }
}

fn spawn<B: PinBackend>(
    config: &Config,
    feed: Arc<SceneFeed>,
    clock: Arc<dyn Clock>,
    pins: &mut B,
) -> Result<Option<DetectorThread>, DetectorOutputError>
where
    B::Output: Send + 'static,
{
    let now = clock.now();
    let mut outputs = Vec::with_capacity(config.detector_outputs.len());
    for o in &config.detector_outputs {
        let zones = o
            .zones
            .iter()
            .filter_map(|z| config.zones.iter().position(|c| &c.name == z))
            .collect();
        let mut classes = [false; MAX_CLASSES];
        for (i, c) in config.model.classes.iter().enumerate().take(MAX_CLASSES) {
            classes[i] = o.classes.is_empty() || o.classes.contains(c);
        }
        // Claimed de-energised: a call, until the first tick finds the unit healthy.
        let pin = pins.output(o.pin, o.invert, o.invert)?;
        outputs.push(Output {
            channel: Channel::new(ChannelTiming::from(o), now),
            zones,
            classes,
            invert: o.invert,
            pin,
        });
    }
    let status = Arc::new(DetectorStatus::new(
        config
            .detector_outputs
            .iter()
            .map(|o| o.name.clone())
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_millis(config.control.tick_ms);
    let force = ForceCalls {
        forced: Arc::new(AtomicBool::new(false)),
        applied: Arc::new(AtomicU64::new(0)),
        period,
    };
    let thread_force = force.clone();
    let stale_after = Duration::from_millis(config.control.camera_stale_ms);
    let mut occupancy = vec![[0u32; MAX_CLASSES]; config.zones.len()];
    let (thread_stop, thread_status) = (stop.clone(), status.clone());
    let handle = std::thread::Builder::new()
        .name("detector-outputs".into())
        .spawn(move || {
            let started = clock.now();
            while !thread_stop.load(Relaxed) {
                let last_frame = feed.read(&mut occupancy).unwrap_or(started);
                let now = clock.now();
                if thread_force.forced.load(Relaxed) {
                    for (i, out) in outputs.iter_mut().enumerate() {
                        out.drive(true);
                        let d = Decision {
                            call: true,
                            fail_safe: Some(FailSafe::Watchdog),
                        };
                        thread_status.publish(i, d, &out.channel, now);
                    }
                    thread_force.applied.fetch_add(1, Relaxed);
                    clock.sleep_until(now + period);
                    continue;
                }
                let video_ok = now.saturating_sub(last_frame) <= stale_after
                    && feed.video() == VideoState::Ok
                    && !feed.detector_failed();
                for (i, out) in outputs.iter_mut().enumerate() {
                    let objects: u32 = out
                        .zones
                        .iter()
                        .map(|&z| {
                            occupancy[z]
                                .iter()
                                .zip(&out.classes)
                                .filter(|(_, &on)| on)
                                .map(|(&n, _)| n)
                                .sum::<u32>()
                        })
                        .sum();
                    let d = out.channel.tick(now, objects, video_ok);
                    out.drive(d.call);
                    thread_status.publish(i, d, &out.channel, now);
                }
                clock.sleep_until(now + period);
            }
            let now = clock.now();
            for (i, out) in outputs.iter_mut().enumerate() {
                out.drive(true);
                let d = Decision {
                    call: true,
                    fail_safe: Some(FailSafe::Shutdown),
                };
                thread_status.publish(i, d, &out.channel, now);
            }
            log::info!("detector outputs: every output left calling");
        })
        .map_err(DetectorOutputError::Thread)?;
    Ok(Some(DetectorThread {
        stop,
        handle,
        status,
        force,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timing(mode: CallMode, delay: f32, extend: f32) -> ChannelTiming {
        ChannelTiming::from(&DetectorOutputConfig {
            name: "d1".into(),
            pin: 5,
            zones: vec!["z".into()],
            classes: vec![],
            mode,
            delay_s: delay,
            extend_s: extend,
            pulse_ms: 200,
            invert: false,
            no_activity_s: 0.0,
            max_presence_s: 0.0,
            recover_s: 0.0,
        })
    }

    /// Runs `objects[k]` at 100 ms ticks and returns the calls.
    fn run(ch: &mut Channel, objects: &[u32]) -> Vec<bool> {
        objects
            .iter()
            .enumerate()
            .map(|(k, &n)| ch.tick(ms(100 * k as u64), n, true).call)
            .collect()
    }

    #[test]
    fn presence_calls_after_the_delay_and_holds_for_the_extension() {
        let mut ch = Channel::new(timing(CallMode::Presence, 0.3, 0.2), ms(0));
        let calls = run(&mut ch, &[0, 1, 1, 1, 1, 0, 0, 0, 0]);
        // Present from 100 ms to 400 ms: the call from 400 ms, held 200 ms after it.
        assert_eq!(
            calls,
            [false, false, false, false, true, true, false, false, false]
        );
        assert_eq!(ch.volume(), 1);
    }

    #[test]
    fn a_short_presence_under_the_delay_places_no_call() {
        let mut ch = Channel::new(timing(CallMode::Presence, 0.5, 1.0), ms(0));
        let calls = run(&mut ch, &[1, 1, 0, 0, 0]);
        // The extension holds only a call that was placed.
        assert_eq!(calls, [false; 5]);
    }

    #[test]
    fn pulse_mode_pulses_once_per_arrival() {
        let mut ch = Channel::new(timing(CallMode::Pulse, 0.0, 0.0), ms(0));
        let calls = run(&mut ch, &[0, 1, 1, 1, 2, 2, 2, 1, 1]);
        assert_eq!(
            calls,
            [false, true, true, false, true, true, false, false, false]
        );
        assert_eq!(ch.volume(), 2);
    }

    #[test]
    fn lost_video_and_the_diagnostics_call_constantly() {
        let mut t = timing(CallMode::Presence, 0.0, 0.0);
        t.no_activity = Some(Duration::from_secs(2));
        t.max_presence = Some(Duration::from_secs(3));
        let mut ch = Channel::new(t, ms(0));
        let d = ch.tick(ms(100), 0, false);
        assert_eq!(d.fail_safe, Some(FailSafe::Video));
        assert!(d.call);
        assert!(!ch.tick(ms(1000), 0, true).call);
        let d = ch.tick(ms(2500), 0, true);
        assert_eq!((d.call, d.fail_safe), (true, Some(FailSafe::NoActivity)));
        assert_eq!(ch.tick(ms(2600), 1, true).fail_safe, None);
        let d = ch.tick(ms(6000), 1, true);
        assert_eq!((d.call, d.fail_safe), (true, Some(FailSafe::MaxPresence)));
        assert!(ch.occupancy(ms(6000)) > 0.5);
    }

    /// Video back after a loss: the fail-safe call holds until it has been good for
    /// `recover_s`, a flicker restarts that wait, and the diagnostics count from the recovery,
    /// not from before the outage.
    #[test]
    fn returning_video_is_trusted_only_after_the_recovery_time() {
        let mut t = timing(CallMode::Presence, 0.0, 0.0);
        t.recover = Duration::from_secs(10);
        t.no_activity = Some(Duration::from_secs(60));
        let mut ch = Channel::new(t, ms(0));
        assert_eq!(
            ch.tick(ms(100), 0, true).fail_safe,
            None,
            "trusted at start"
        );
        assert_eq!(
            ch.tick(ms(1_000), 0, false).fail_safe,
            Some(FailSafe::Video)
        );
        assert_eq!(ch.tick(ms(2_000), 0, true).fail_safe, Some(FailSafe::Video));
        assert_eq!(
            ch.tick(ms(9_000), 0, false).fail_safe,
            Some(FailSafe::Video)
        );
        // Back at 10 s, for good: trusted from 20 s.
        for t in [10_000, 15_000, 19_900] {
            let d = ch.tick(ms(t), 0, true);
            assert_eq!(
                (d.call, d.fail_safe),
                (true, Some(FailSafe::Video)),
                "{t} ms"
            );
        }
        let d = ch.tick(ms(20_000), 0, true);
        assert_eq!((d.call, d.fail_safe), (false, None));
        // No activity counts from 20 s (untrusted until then), not from the start.
        assert_eq!(ch.tick(ms(70_000), 0, true).fail_safe, None);
        assert_eq!(
            ch.tick(ms(80_100), 0, true).fail_safe,
            Some(FailSafe::NoActivity)
        );
        // Tripped, it holds through an outage and the recovery: a blind camera whose stream
        // stalls now and then stays failed. Only presence on trusted video clears it.
        assert_eq!(
            ch.tick(ms(81_000), 0, false).fail_safe,
            Some(FailSafe::Video)
        );
        assert_eq!(
            ch.tick(ms(82_000), 0, true).fail_safe,
            Some(FailSafe::Video)
        );
        assert_eq!(
            ch.tick(ms(92_000), 0, true).fail_safe,
            Some(FailSafe::NoActivity)
        );
        assert_eq!(ch.tick(ms(92_100), 1, true).fail_safe, None);
    }
}
