//! The running unit: the pipeline on the calling thread, the signal control loop, the
//! watchdog and the health endpoint on theirs, wired through shared atomics, with systemd told
//! when it is ready. `edgewatch run` is this and a summary printer.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::bins::{self, BinLimits, BinQueue, BinStats, BinStore, BinWriter, BinsError};
use crate::clock::Clock;
use crate::config::Config;
use crate::control::{self, ControlError, ControlThread, SceneFeed};
use crate::ctl::server::CtlContext;
use crate::ctl::{CtlCounters, CtlServer};
use crate::health::memory::{peak_rss_bytes, rss_bytes};
use crate::health::notify::Notifier;
use crate::health::restart::{self, RestartHistory};
use crate::health::server::{HealthServer, ServerLimits};
use crate::health::status::HealthState;
use crate::health::watchdog::{self, Actions, Watchdog, WatchdogThread};
use crate::mqtt::queue::MessageQueue;
use crate::mqtt::watch::{Topics, Watcher};
use crate::mqtt::{self, MqttError, MqttStats, MqttThreads};
use crate::pipeline::{Pipeline, PipelineError};
use crate::view::events::EVENT_QUEUE;
use crate::view::store::{SnapshotStore, StoreError, StoreLimits};
use crate::view::{EventSink, ViewError, Viewer, ViewerOptions, ViewerThread};

/// Why the unit could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The pipeline could not be built or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The signal control loop could not start.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The detector outputs could not start.
    #[error(transparent)]
    DetectorOutputs(#[from] crate::detector_outputs::DetectorOutputError),
    /// A thread could not be started.
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    /// The live view could not start.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The event snapshot folder cannot be used.
    #[error(transparent)]
    Snapshots(#[from] StoreError),
    /// MQTT could not start.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The traffic data bins could not start.
    #[error(transparent)]
    Bins(#[from] BinsError),
}

/// Everything `edgewatch run` runs.
#[derive(Debug)]
pub struct Service {
    pipeline: Pipeline,
    control: Option<ControlThread>,
    detector_outputs: Option<crate::detector_outputs::DetectorThread>,
    watchdog: Option<WatchdogThread>,
    health: Option<HealthServer>,
    view: Option<ViewerThread>,
    mqtt: Option<MqttThreads>,
    ctl: Option<CtlServer>,
    reload: Arc<AtomicBool>,
    notifier: Option<Arc<Notifier>>,
    bins: Option<BinWriter>,
    interval: Duration,
}

impl Service {
    /// Builds the pipeline, starts the control loop, the health endpoint, the control socket
    /// and the watchdog, and tells systemd (when it started us) that the unit is ready.
    /// `config_path` is the file `edgewatch ctl reload` re-reads; a reload sets `stop`.
    pub fn start(
        config: &Config,
        config_path: &Path,
        stop: Arc<AtomicBool>,
        clock: Arc<dyn Clock>,
    ) -> Result<Service, ServiceError> {
        let restarts = RestartHistory::from_env();
        if let Some(reason) = &restarts.last_reason {
            log::warn!(
                "restart {} after a watchdog breach: {reason}",
                restarts.count()
            );
        }
        // Before anything starts: a missing TLS file is the config's fault.
        let mqtt_options = match config.mqtt.enabled {
            true => Some(mqtt::connect_options(&config.mqtt, &config.site)?),
            false => None,
        };
        let mut pipeline = Pipeline::build(config, clock.clone())?;
        let (bins, bin_stats) = match start_bins(config, &mut pipeline)? {
            Some((writer, stats)) => (Some(writer), Some(stats)),
            None => (None, None),
        };
        let feed = Arc::new(SceneFeed::with_cameras(
            config.zones.len(),
            config.lines.len(),
            config.cameras.len(),
        ));
        pipeline.set_feed(feed.clone());
        let beats = pipeline.heartbeats().clone();
        let control = control::start(config, feed.clone(), clock.clone(), beats.clone())?;
        let detector_outputs = crate::detector_outputs::start(config, feed.clone(), clock.clone())?;
        let notifier = match Notifier::from_env() {
            Some(Ok(n)) => Some(Arc::new(n)),
            Some(Err(e)) => {
                log::error!("NOTIFY_SOCKET is set but cannot be reached: {e}");
                None
            }
            None => None,
        };
        let restarted = restarts.last_reason.is_some();
        let events = start_events(config, &mut pipeline, restarted, feed.clone())?;
        let snapshots = events
            .as_ref()
            .map(|e| (e.store.counters().clone(), e.dropped.clone()));
        // The viewer draws for the live view and for event snapshots alike.
        let viewer = if config.view.enabled || events.is_some() {
            let feeds = pipeline.enable_view(config.view.fps);
            let options = ViewerOptions {
                fps: config.view.fps,
                quality: config.view.quality,
                max_viewers: config.view.max_viewers,
                signals: control.as_ref().map(|c| c.status().clone()),
                events,
            };
            Some(Viewer::start(feeds, options)?)
        } else {
            None
        };
        let served = viewer.as_ref().filter(|_| config.view.enabled);
        let mqtt_stats = config.mqtt.enabled.then(|| {
            let m = &config.mqtt;
            let queue = MessageQueue::new(m.queue_capacity, m.max_message_kib * 1024);
            Arc::new(MqttStats::new(Arc::new(queue)))
        });
        let ctl_counters = config
            .control
            .socket()
            .map(|_| Arc::new(CtlCounters::default()));
        let state = HealthState {
            clock: clock.clone(),
            started: clock.now(),
            stats: pipeline.stats().clone(),
            feed: feed.clone(),
            signals: control.as_ref().map(|c| c.status().clone()),
            detector_outputs: detector_outputs.as_ref().map(|d| d.status().clone()),
            safe: control.as_ref().map(|c| c.safe_state().clone()),
            restarts: restarts.clone(),
            classes: config.model.classes.clone(),
            cameras: config.cameras.iter().map(|c| c.name.clone()).collect(),
            zones: config.zones.iter().map(|z| z.name.clone()).collect(),
            lines: config.lines.iter().map(|l| l.name.clone()).collect(),
            camera_stale: Duration::from_millis(config.control.camera_stale_ms),
            view: served.map(|v| v.viewer().clone()),
            snapshots,
            backend: crate::version::backend(config.model.runtime),
            mqtt: mqtt_stats.clone(),
            ctl: ctl_counters.clone(),
            bins: bin_stats,
        };
        let state = Arc::new(state);
        let health = start_health(config, state.clone());
        let mqtt = match (mqtt_stats, mqtt_options) {
            (Some(stats), Some(options)) => {
                Some(start_mqtt(config, &state, options, stats, clock.clone())?)
            }
            _ => None,
        };
        let reload = Arc::new(AtomicBool::new(false));
        let ctl = ctl_counters.and_then(|counters| {
            let ctx = CtlContext {
                link: control.as_ref().map(|c| c.commands().clone()),
                status: control.as_ref().map(|c| c.status().clone()),
                config_path: config_path.to_path_buf(),
                reload: reload.clone(),
                stop,
                counters,
            };
            start_ctl(config, ctx)
        });
        let watchdog = start_watchdog(
            config,
            &pipeline,
            control.as_ref(),
            detector_outputs.as_ref().map(|d| d.force_calls()),
            notifier.clone(),
            restarts,
            clock,
        )?;
        // Last: the kernel watchdog is armed only once everything else has started.
        if let Some(c) = &control {
            c.arm_hardware_watchdog(config)?;
        }
        if let Some(n) = &notifier {
            if let Err(e) = n.send(b"READY=1") {
                log::error!("systemd notify READY=1 failed: {e}");
            }
        }
        let interval = Duration::from_secs_f32(config.summary.interval_secs);
        Ok(Service {
            pipeline,
            control,
            detector_outputs,
            watchdog: Some(watchdog),
            health,
            view: viewer,
            mqtt,
            ctl,
            reload,
            notifier,
            bins,
            interval,
        })
    }

    /// What the signal lamps show, for summaries.
    pub fn signal_status(&self) -> Option<Arc<crate::control::SignalStatus>> {
        self.control.as_ref().map(|c| c.status().clone())
    }

    /// Where the health endpoint listens, if it started.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.health.as_ref().map(|h| h.local_addr())
    }

    /// Runs the pipeline until `stop`, the end of a recording or `frames` frames; see
    /// [`Pipeline::run`] for `report`.
    pub fn run(
        &mut self,
        frames: Option<u64>,
        stop: &AtomicBool,
        report: impl FnMut(&Pipeline, Duration, bool),
    ) -> Result<(), PipelineError> {
        self.pipeline.run(frames, self.interval, stop, report)
    }

    /// True once `edgewatch ctl reload` accepted a new config: after [`Service::shut_down`],
    /// the process restarts to apply it.
    pub fn reload_requested(&self) -> bool {
        self.reload.load(SeqCst)
    }

    /// Where the control socket listens, if it started.
    pub fn ctl_path(&self) -> Option<&Path> {
        self.ctl.as_ref().map(|c| c.path())
    }

    /// Orderly stop: the control socket closes (no command during the stop), the watchdog
    /// stops (the threads are about to go quiet on purpose), the signals clear to all red,
    /// MQTT publishes that and says `offline`, then the health endpoint closes.
    pub fn shut_down(mut self) {
        // Under systemd: the watchdog pings end here, and the clearance may take a while.
        if let Some(n) = &self.notifier {
            if let Err(e) = n.send(b"STOPPING=1") {
                log::warn!("systemd notify STOPPING=1 failed: {e}");
            }
        }
        if let Some(c) = self.ctl.take() {
            c.stop();
        }
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
        if let Some(c) = self.control.take() {
            c.shut_down();
        }
        if let Some(d) = self.detector_outputs.take() {
            d.shut_down();
        }
        if let Some(m) = self.mqtt.take() {
            m.stop();
        }
        if let Some(h) = self.health.take() {
            h.stop();
        }
        if let Some(b) = self.bins.take() {
            b.stop();
        }
        drop(self.view.take());
    }
}

/// Opens the snapshot folder and sets the frame loop watching for `[snapshots]` events;
/// `None` when none are configured.
fn start_events(
    config: &Config,
    pipeline: &mut Pipeline,
    restarted: bool,
    feed: Arc<SceneFeed>,
) -> Result<Option<EventSink>, ServiceError> {
    let s = &config.snapshots;
    let Some(dir) = s.dir.as_ref().filter(|_| s.enabled()) else {
        return Ok(None);
    };
    let limits = StoreLimits {
        max_files: s.max_files,
        max_bytes: s.max_bytes,
        min_free_disk_mib: s.min_free_disk_mib,
    };
    let store = SnapshotStore::open(dir, limits)?;
    let (queue, events) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    pipeline.enable_events(s, queue, dropped.clone());
    let rules = s
        .events
        .iter()
        .map(|e| match (&e.zone, &e.line) {
            (Some(z), _) => format!("zone-{z}"),
            (_, Some(l)) => format!("line-{l}"),
            _ => "event".into(),
        })
        .collect();
    log::info!(
        "event snapshots in {} ({} events{})",
        dir.display(),
        s.events.len(),
        if s.faults { ", faults" } else { "" }
    );
    Ok(Some(EventSink {
        queue: events,
        store,
        rules,
        classes: config.model.classes.clone(),
        faults: s.faults,
        restarted,
        feed: Some(feed),
        dropped,
    }))
}

/// Opens the bins' folder, sets the frame loop adding into bins and starts their writer;
/// `None` without `[bins]`.
fn start_bins(
    config: &Config,
    pipeline: &mut Pipeline,
) -> Result<Option<(BinWriter, Arc<BinStats>)>, BinsError> {
    let Some(b) = config.bins() else {
        return Ok(None);
    };
    let limits = BinLimits {
        retention_days: b.retention_days,
        max_bytes: b.max_bytes,
    };
    let store = BinStore::open(&b.dir, limits)?;
    let queue = Arc::new(BinQueue::new(
        bins::QUEUE_BINS,
        config.zones.len(),
        config.lines.len(),
        config.cameras.len(),
    ));
    let wall = Arc::new(crate::utc::SystemWallClock);
    let layout = pipeline.enable_bins(u64::from(b.interval_min) * 60, queue.clone(), wall);
    let stats = Arc::new(BinStats::new(&b.dir, queue));
    log::info!(
        "bins: every {} min in {} (kept {} days, at most {} bytes)",
        b.interval_min,
        b.dir.display(),
        b.retention_days,
        b.max_bytes
    );
    let writer = bins::start(store, layout, stats.clone())?;
    Ok(Some((writer, stats)))
}

/// Starts publishing the site's counts, events, signals and `state`'s JSON over MQTT.
fn start_mqtt(
    config: &Config,
    state: &Arc<HealthState>,
    options: rumqttc::MqttOptions,
    stats: Arc<MqttStats>,
    clock: Arc<dyn Clock>,
) -> Result<MqttThreads, MqttError> {
    let m = &config.mqtt;
    let topics = Topics {
        prefix: m.prefix(&config.site),
        zones: state.zones.clone(),
        lines: state.lines.clone(),
        classes: state.classes.clone(),
    };
    let watcher = Watcher::new(
        topics,
        state.feed.clone(),
        state.signals.clone(),
        state.clone(),
        stats.queue().clone(),
        Duration::from_secs(u64::from(m.stats_interval_s)),
    )
    .resync_on_connect(stats.clone());
    let watcher = match &state.detector_outputs {
        Some(d) => watcher.with_detector_outputs(d.clone()),
        None => watcher,
    };
    log::info!(
        "mqtt: publishing to {}:{} under {}/",
        m.host,
        m.port,
        m.prefix(&config.site)
    );
    mqtt::start(m, &config.site, options, watcher, stats, clock)
}

/// Starts the health endpoint. A failure to bind is logged, not fatal: the signals and the
/// watchdog matter more than the endpoint.
fn start_health(config: &Config, state: Arc<HealthState>) -> Option<HealthServer> {
    if !config.health.enabled {
        return None;
    }
    let addr = config.health.bind.parse().ok()?;
    let defaults = ServerLimits::default();
    // A worker's response buffer must hold a whole JPEG of the largest camera.
    let jpeg = state.view.as_ref().map_or(0, |v| v.max_jpeg());
    let limits = ServerLimits {
        max_connections: config.health.max_connections,
        max_response_bytes: defaults.max_response_bytes.max(jpeg),
        ..defaults
    };
    match HealthServer::start(addr, limits, state) {
        Ok(server) => {
            log::info!("health endpoint on http://{}/health", server.local_addr());
            Some(server)
        }
        Err(e) => {
            log::error!("{e}; running without the health endpoint");
            None
        }
    }
}

/// Opens the control socket. A failure is logged, not fatal, as for the health endpoint.
fn start_ctl(config: &Config, ctx: CtlContext) -> Option<CtlServer> {
    let path = config.control.socket()?;
    match CtlServer::start(path, ctx) {
        Ok(server) => {
            log::info!("control socket on {} (edgewatch ctl)", path.display());
            Some(server)
        }
        Err(e) => {
            log::error!("{e}; running without `edgewatch ctl`");
            None
        }
    }
}

fn start_watchdog(
    config: &Config,
    pipeline: &Pipeline,
    control: Option<&ControlThread>,
    detector_calls: Option<crate::detector_outputs::ForceCalls>,
    notifier: Option<Arc<Notifier>>,
    restarts: RestartHistory,
    clock: Arc<dyn Clock>,
) -> Result<WatchdogThread, ServiceError> {
    let cfg = &config.watchdog;
    let stats = pipeline.stats().clone();
    let dog = Watchdog::new(
        cfg,
        pipeline.heartbeats().clone(),
        stats.clone(),
        control.is_some(),
        clock.now(),
    );
    let (budget, window) = (cfg.restart_budget, cfg.restart_window_s);
    let breach_notifier = notifier.clone();
    let mut last_rss = None;
    let actions = Actions {
        safe: control.map(|c| c.safe_state().clone()),
        clearance: control.map(|c| c.clearance().clone()),
        clearance_limit: Duration::from_secs_f32(config.control.shutdown_limit_s),
        notifier,
        // What the operators of the old Python units watched: memory, frames, trend.
        log_line: Box::new(move || {
            let rss = rss_bytes().unwrap_or(0);
            let trend = last_rss.map_or(0, |l: u64| rss as i64 - l as i64) / 1024;
            last_rss = Some(rss);
            log::info!(
                "health: rss {} KiB (peak {} KiB, {trend:+} KiB since last), frames {}, fps {:.1}, dropped {}, errors {}",
                rss / 1024,
                peak_rss_bytes().unwrap_or(0) / 1024,
                stats.frames.load(std::sync::atomic::Ordering::Relaxed),
                stats.recent_fps(),
                stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
                stats.errors.load(std::sync::atomic::Ordering::Relaxed),
            );
        }),
        on_breach: Box::new(move |breach| {
            // Detector outputs call before the process goes: a relay held energised through
            // the restart would say "no call" while nothing watches.
            if let Some(calls) = &detector_calls {
                if !calls.force() {
                    log::error!(
                        "watchdog: the detector outputs did not answer; the restart releases them"
                    );
                }
            }
            restart::restart(
                &breach.to_string(),
                &restarts,
                budget,
                window,
                breach_notifier.as_deref(),
            )
        }),
    };
    watchdog::spawn(dog, clock, actions).map_err(|e| ServiceError::Thread("watchdog", e))
}
