//! The watchdog: heartbeats from every working thread, checked against the configured limits
//! together with frame latency and resident memory. On a breach, while the signal control loop
//! still ticks, it asks the loop to clear the running phase in order (flashing don't walk,
//! amber, all-red) within `control.shutdown_limit_s`; if the loop is stuck (or does not clear
//! in time) it forces the outputs to all red from its own thread. Then it restarts the process
//! (see [`super::restart`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::memory::rss_bytes;
use super::notify::Notifier;
use super::stats::{DetectorStep, PipelineStats};
use crate::clock::Clock;
use crate::config::WatchdogConfig;
use crate::control::ClearanceRequest;
use crate::signal::SafeState;

const MIB: u64 = 1 << 20;
/// RSS samples kept for the trend check.
const TREND_SAMPLES: usize = 10;

/// A time stored as nanoseconds plus one, so 0 can mean "never".
#[derive(Debug, Default)]
struct Stamp(AtomicU64);

impl Stamp {
    fn set(&self, t: Duration) {
        self.0.store(t.as_nanos() as u64 + 1, Relaxed);
    }
    fn clear(&self) {
        self.0.store(0, Relaxed);
    }
    fn get(&self) -> Option<Duration> {
        match self.0.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }
}

/// Liveness stamps the working threads store every iteration; the watchdog reads them.
#[derive(Debug, Default)]
pub struct Heartbeats {
    frame: Stamp,
    inference: Stamp,
    control: Stamp,
}

impl Heartbeats {
    /// The pipeline got a frame at `now`.
    pub fn frame(&self, now: Duration) {
        self.frame.set(now);
    }
    /// The pipeline started an inference at `now`.
    pub fn inference_started(&self, now: Duration) {
        self.inference.set(now);
    }
    /// The inference finished.
    pub fn inference_done(&self) {
        self.inference.clear();
    }
    /// The control loop ticked at `now`.
    pub fn control(&self, now: Duration) {
        self.control.set(now);
    }
    /// When the control loop last ticked.
    pub fn control_at(&self) -> Option<Duration> {
        self.control.get()
    }
    /// When the latest frame arrived.
    pub fn last_frame(&self) -> Option<Duration> {
        self.frame.get()
    }
}

/// Why the watchdog fired.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    /// One inference has run longer than its limit.
    InferenceStuck {
        /// How long it has been running.
        for_ms: u64,
    },
    /// The model failed `model.max_failures` frames in a row.
    DetectorFailed {
        /// Frames in a row that failed.
        frames: u64,
        /// The step that failed last.
        step: DetectorStep,
    },
    /// No frame for longer than the camera limit.
    NoFrames {
        /// Time since the last frame (or since start).
        for_ms: u64,
    },
    /// The signal control loop stopped ticking.
    ControlStuck {
        /// Time since its last tick.
        for_ms: u64,
    },
    /// Frame latency p99 over the budget for a whole window.
    Latency {
        /// The window's p99.
        p99_ms: u64,
    },
    /// Resident memory over the limit.
    Rss {
        /// Resident memory now.
        mib: u64,
    },
    /// Resident memory rose through a whole trend window by more than allowed.
    RssRising {
        /// At the start of the window.
        from_mib: u64,
        /// Now.
        to_mib: u64,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Breach::InferenceStuck { for_ms } => write!(f, "inference stuck for {for_ms} ms"),
            Breach::DetectorFailed { frames, step } => {
                write!(
                    f,
                    "detector failed: {frames} frames in a row failed to {}",
                    step.as_str()
                )
            }
            Breach::NoFrames { for_ms } => write!(f, "no camera frame for {for_ms} ms"),
            Breach::ControlStuck { for_ms } => write!(f, "signal control stuck for {for_ms} ms"),
            Breach::Latency { p99_ms } => write!(f, "frame latency p99 {p99_ms} ms over budget"),
            Breach::Rss { mib } => write!(f, "resident memory {mib} MiB over the limit"),
            Breach::RssRising { from_mib, to_mib } => {
                write!(
                    f,
                    "resident memory rising steadily: {from_mib} -> {to_mib} MiB"
                )
            }
        }
    }
}

/// The checks, with the state they keep between periods. [`Watchdog::check`] allocates
/// nothing.
#[derive(Debug)]
pub struct Watchdog {
    cfg: WatchdogConfig,
    beats: Arc<Heartbeats>,
    stats: Arc<PipelineStats>,
    /// Whether a control loop runs (and must tick).
    control: bool,
    started: Duration,
    window_start: Duration,
    trend: [u64; TREND_SAMPLES],
    trend_len: usize,
    next_trend: Duration,
}

impl Watchdog {
    /// Watches `beats` and `stats` from clock time `now`; `control` says whether a signal
    /// control loop runs.
    pub fn new(
        cfg: &WatchdogConfig,
        beats: Arc<Heartbeats>,
        stats: Arc<PipelineStats>,
        control: bool,
        now: Duration,
    ) -> Watchdog {
        stats.watchdog_window().reset();
        Watchdog {
            cfg: cfg.clone(),
            beats,
            stats,
            control,
            started: now,
            window_start: now,
            trend: [0; TREND_SAMPLES],
            trend_len: 0,
            next_trend: now,
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    /// Runs every check at clock time `now`, with `rss` the resident bytes now (`None` when
    /// `/proc` cannot be read: the memory checks are skipped).
    pub fn check(&mut self, now: Duration, rss: Option<u64>) -> Result<(), Breach> {
        let limit = |ms: u64| Duration::from_millis(ms);
        if let Some(since) = self.beats.inference.get() {
            if now.saturating_sub(since) > limit(self.cfg.inference_limit_ms) {
                return Err(Breach::InferenceStuck {
                    for_ms: Self::ms(now.saturating_sub(since)),
                });
            }
        }
        if let Some(failure) = self.stats.detector.failure() {
            return Err(Breach::DetectorFailed {
                frames: failure.consecutive,
                step: failure.step,
            });
        }
        let last_frame = self.beats.frame.get().unwrap_or(self.started);
        if now.saturating_sub(last_frame) > limit(self.cfg.camera_limit_ms) {
            return Err(Breach::NoFrames {
                for_ms: Self::ms(now.saturating_sub(last_frame)),
            });
        }
        self.check_control(now)?;
        self.check_latency(now)?;
        if let Some(rss) = rss {
            self.check_memory(now, rss)?;
        }
        Ok(())
    }

    /// Only the control loop's heartbeat: whether it still ticks (always `Ok` without one).
    pub fn check_control(&self, now: Duration) -> Result<(), Breach> {
        if !self.control {
            return Ok(());
        }
        let last = self.beats.control.get().unwrap_or(self.started);
        let stuck_for = now.saturating_sub(last);
        if stuck_for > Duration::from_millis(self.cfg.control_limit_ms) {
            return Err(Breach::ControlStuck {
                for_ms: Self::ms(stuck_for),
            });
        }
        Ok(())
    }

    fn check_latency(&mut self, now: Duration) -> Result<(), Breach> {
        let window = Duration::from_secs(self.cfg.latency_window_s);
        if now.saturating_sub(self.window_start) < window {
            return Ok(());
        }
        let h = self.stats.watchdog_window();
        let p99 = h.quantile(0.99);
        let judged = h.count() > 0;
        h.reset();
        self.window_start = now;
        if judged && p99 > Duration::from_millis(self.cfg.latency_budget_ms) {
            return Err(Breach::Latency {
                p99_ms: Self::ms(p99),
            });
        }
        Ok(())
    }

    fn check_memory(&mut self, now: Duration, rss: u64) -> Result<(), Breach> {
        if rss > self.cfg.rss_limit_mib * MIB {
            return Err(Breach::Rss { mib: rss / MIB });
        }
        if now < self.next_trend {
            return Ok(());
        }
        self.next_trend =
            now + Duration::from_secs(self.cfg.rss_trend_window_s) / TREND_SAMPLES as u32;
        if self.trend_len == TREND_SAMPLES {
            self.trend.rotate_left(1);
            self.trend_len -= 1;
        }
        self.trend[self.trend_len] = rss;
        self.trend_len += 1;
        let samples = &self.trend[..self.trend_len];
        let rising = samples.windows(2).all(|w| w[1] >= w[0]);
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        if self.trend_len == TREND_SAMPLES
            && rising
            && last > first + self.cfg.rss_growth_limit_mib * MIB
        {
            return Err(Breach::RssRising {
                from_mib: first / MIB,
                to_mib: last / MIB,
            });
        }
        Ok(())
    }

    /// Reads the resident memory for [`Watchdog::check`].
    pub fn read_rss() -> Option<u64> {
        rss_bytes()
    }
}

/// What the watchdog thread does besides checking: keep systemd's watchdog fed, log a health
/// line now and then, and act on a breach.
pub struct Actions {
    /// Forces the signal outputs safe; `None` when the site has no signals.
    pub safe: Option<Arc<dyn SafeState>>,
    /// Asks the control loop to clear the signals in order; `None` when the site has none.
    pub clearance: Option<Arc<ClearanceRequest>>,
    /// How long the control loop may take to clear (`control.shutdown_limit_s`).
    pub clearance_limit: Duration,
    /// systemd's notify socket, when running under systemd.
    pub notifier: Option<Arc<Notifier>>,
    /// Logs the periodic health line.
    pub log_line: Box<dyn FnMut() + Send>,
    /// Restarts the process after a breach (the outputs are safe by then); never returns.
    pub on_breach: Box<dyn FnOnce(Breach) + Send>,
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actions")
            .field("safe", &self.safe)
            .field("clearance", &self.clearance)
            .field("notifier", &self.notifier)
            .finish_non_exhaustive()
    }
}

/// The running watchdog thread.
#[derive(Debug)]
pub struct WatchdogThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl WatchdogThread {
    /// Stops checking (on an orderly shutdown) and waits for the thread.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        let _ = self.handle.join();
    }
}

/// Starts checking `dog` every `watchdog.period_ms` on `clock`.
pub fn spawn(
    mut dog: Watchdog,
    clock: Arc<dyn Clock>,
    mut actions: Actions,
) -> std::io::Result<WatchdogThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let period = Duration::from_millis(dog.cfg.period_ms);
    let log_interval = Duration::from_secs(dog.cfg.log_interval_s);
    let handle = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            // The first ping one interval in: READY=1, sent by the starting thread just after
            // this one starts, must reach systemd first (a race the test saw under load).
            let mut next_ping = clock.now()
                + actions
                    .notifier
                    .as_ref()
                    .map_or(Duration::ZERO, |n| n.ping_interval());
            let mut next_log = clock.now() + log_interval;
            while !thread_stop.load(Relaxed) {
                let now = clock.now();
                if let Err(breach) = dog.check(now, rss_bytes()) {
                    let how = clear_signals(&dog, clock.as_ref(), &actions, breach);
                    log::error!("watchdog: {breach}; {how}, restarting");
                    (actions.on_breach)(breach);
                    return;
                }
                if let Some(n) = &actions.notifier {
                    if now >= next_ping {
                        let _ = n.send(b"WATCHDOG=1");
                        next_ping = now + n.ping_interval();
                    }
                }
                if now >= next_log {
                    (actions.log_line)();
                    next_log = now + log_interval;
                }
                clock.sleep_until(now + period);
            }
        })?;
    Ok(WatchdogThread { stop, handle })
}

/// Puts the signals in a safe state for the restart and says how: cleared in order by the
/// control loop while it still ticks (and within the limit), else forced to all red.
fn clear_signals(
    dog: &Watchdog,
    clock: &dyn Clock,
    actions: &Actions,
    breach: Breach,
) -> &'static str {
    let Some(safe) = &actions.safe else {
        return "no signals";
    };
    let mut how = "signals forced to all red";
    if let (Some(clearance), false) = (
        &actions.clearance,
        matches!(breach, Breach::ControlStuck { .. }),
    ) {
        log::error!("watchdog: {breach}; clearing the signals (amber, all red) first");
        clearance.request();
        let period = Duration::from_millis(dog.cfg.period_ms);
        let deadline = clock.now() + actions.clearance_limit;
        loop {
            let now = clock.now();
            if clearance.is_cleared() {
                how = "signals cleared to all red";
                break;
            }
            if let Err(stuck) = dog.check_control(now) {
                log::error!("watchdog: {stuck} while clearing");
                break;
            }
            if now >= deadline {
                log::error!("watchdog: the signals did not clear within the limit");
                break;
            }
            // The process is busy with an orderly clearance, bounded by the limit: systemd
            // must not kill it half-way through an amber.
            if let Some(n) = &actions.notifier {
                let _ = n.send(b"WATCHDOG=1");
            }
            clock.sleep_until(now + period);
        }
    }
    // Either way the outputs are latched safe now: nothing the control loop does later lands.
    if let Err(e) = safe.force_safe(clock.now()) {
        log::error!("watchdog: forcing the signals safe failed: {e}");
    }
    how
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::stats::Stage;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn dog(control: bool) -> (Watchdog, Arc<Heartbeats>, Arc<PipelineStats>) {
        let beats = Arc::new(Heartbeats::default());
        let stats = Arc::new(PipelineStats::default());
        let cfg = WatchdogConfig::default();
        (
            Watchdog::new(&cfg, beats.clone(), stats.clone(), control, ms(0)),
            beats,
            stats,
        )
    }

    #[test]
    fn healthy_threads_pass_and_stuck_ones_are_named() {
        let (mut w, beats, _) = dog(true);
        for t in (0..10_000).step_by(100) {
            beats.frame(ms(t));
            beats.control(ms(t));
            beats.inference_started(ms(t));
            assert_eq!(w.check(ms(t + 50), Some(MIB)), Ok(()));
            beats.inference_done();
        }
        beats.inference_started(ms(10_000));
        beats.frame(ms(12_000));
        beats.control(ms(12_000));
        assert_eq!(
            w.check(ms(12_001), None),
            Err(Breach::InferenceStuck { for_ms: 2001 })
        );
        beats.inference_done();
        beats.control(ms(17_100));
        assert_eq!(
            w.check(ms(17_100), None),
            Err(Breach::NoFrames { for_ms: 5100 })
        );
        beats.frame(ms(17_100));
        assert_eq!(
            w.check(ms(18_200), None),
            Err(Breach::ControlStuck { for_ms: 1100 })
        );
    }

    #[test]
    fn a_failed_detector_is_a_breach_while_frames_still_flow() {
        let (mut w, beats, stats) = dog(false);
        beats.frame(ms(100));
        stats.detector.failed_at(DetectorStep::Invoke, 2);
        assert_eq!(w.check(ms(100), None), Ok(()), "one failure is not yet");
        stats.detector.failed_at(DetectorStep::Invoke, 2);
        let breach = w.check(ms(100), None).unwrap_err();
        assert_eq!(
            breach,
            Breach::DetectorFailed {
                frames: 2,
                step: DetectorStep::Invoke
            }
        );
        assert!(breach
            .to_string()
            .contains("2 frames in a row failed to invoke"));
    }

    #[test]
    fn no_control_loop_means_no_control_check() {
        let (mut w, beats, _) = dog(false);
        beats.frame(ms(4000));
        assert_eq!(w.check(ms(4000), None), Ok(()));
    }

    #[test]
    fn latency_is_judged_per_window() {
        let (mut w, beats, stats) = dog(false);
        beats.frame(ms(10_000));
        for _ in 0..100 {
            stats.record(Stage::Frame, ms(1500));
        }
        assert_eq!(w.check(ms(9_000), None), Ok(()), "window not over yet");
        let err = w.check(ms(10_000), None).unwrap_err();
        assert!(
            matches!(err, Breach::Latency { p99_ms } if p99_ms >= 1500),
            "{err:?}"
        );
        // A fresh window with fast frames passes.
        stats.record(Stage::Frame, ms(100));
        beats.frame(ms(20_000));
        assert_eq!(w.check(ms(20_000), None), Ok(()));
    }

    #[test]
    fn rss_over_limit_and_steady_growth_fire() {
        let (mut w, beats, _) = dog(false);
        beats.frame(ms(0));
        assert_eq!(w.check(ms(1), Some(65 * MIB)), Err(Breach::Rss { mib: 65 }));
        // Rising by 1 MiB per sample: fires once the window is full and growth > 8 MiB.
        let step = 60_000; // rss_trend_window_s 600 / 10 samples
        let mut result = Ok(());
        for i in 0..10u64 {
            beats.frame(ms(i * step));
            result = w.check(ms(i * step), Some((20 + i) * MIB));
        }
        assert_eq!(
            result,
            Err(Breach::RssRising {
                from_mib: 20,
                to_mib: 29
            })
        );
        // Flat memory never fires.
        let (mut w, beats, _) = dog(false);
        for i in 0..30u64 {
            beats.frame(ms(i * step));
            assert_eq!(
                w.check(ms(i * step), Some(20 * MIB + (i % 2) * 4096)),
                Ok(())
            );
        }
    }
}
