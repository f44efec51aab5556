//! What `/health` and `/metrics` report, read from the atomics the threads publish: status,
//! uptime, restarts, memory, frame rate, latency per stage, counts, signal and camera state.

use std::io::{self, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::memory::{peak_rss_bytes, rss_bytes};
use super::restart::RestartHistory;
use super::server::HealthSource;
use super::stats::{DetectorHealth, PipelineStats, Stage};
use crate::bins::{BinCounts, BinStats};
use crate::clock::Clock;
use crate::control::{CameraFeed, SceneFeed, SignalStatus};
use crate::json;
use crate::mqtt::{MqttCounts, MqttStats};
use crate::scene::Dwell;
use crate::signal::SafeState;
use crate::version::{GIT_HASH, VERSION};
use crate::view::store::StoreCounters;
use crate::view::Viewer;
use std::sync::atomic::AtomicU64;

/// Stages reported (capture wait is idle time, not work).
const STAGES: [Stage; 5] = [
    Stage::Preprocess,
    Stage::Invoke,
    Stage::Decode,
    Stage::Scene,
    Stage::Frame,
];

/// Overall state, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything works.
    Ok,
    /// Counting works less well: the camera is stale, frozen or dark, or the signals run
    /// fixed-time for want of detection.
    Degraded,
    /// The signals are held safe: by the conflict monitor or by the watchdog.
    Failsafe,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failsafe => "failsafe",
        }
    }
}

/// Names and handles the health endpoint reads; built once at start-up.
#[derive(Debug)]
pub struct HealthState {
    /// The process clock.
    pub clock: Arc<dyn Clock>,
    /// Clock time at start-up.
    pub started: Duration,
    /// Pipeline counters.
    pub stats: Arc<PipelineStats>,
    /// Counts and video state.
    pub feed: Arc<SceneFeed>,
    /// Signal lamps, when the site has signals.
    pub signals: Option<Arc<SignalStatus>>,
    /// Detector calls, when the site has `[[detector_outputs]]`.
    pub detector_outputs: Option<Arc<crate::detector_outputs::DetectorStatus>>,
    /// The outputs' safe-state latch, when the site has signals.
    pub safe: Option<Arc<dyn SafeState>>,
    /// Restarts that led to this process.
    pub restarts: RestartHistory,
    /// Counted class labels.
    pub classes: Vec<String>,
    /// Camera names, in config order.
    pub cameras: Vec<String>,
    /// Zone names.
    pub zones: Vec<String>,
    /// Line names.
    pub lines: Vec<String>,
    /// No frame for this long makes the camera stale.
    pub camera_stale: Duration,
    /// The live view, when `[view]` enables it.
    pub view: Option<Arc<Viewer>>,
    /// Event snapshots' counters and events dropped, when `[snapshots]` has events.
    pub snapshots: Option<(Arc<StoreCounters>, Arc<AtomicU64>)>,
    /// The inference runtime in use (`litert` or `tflite`), for the build information.
    pub backend: &'static str,
    /// The MQTT link's counters, when the site publishes over MQTT.
    pub mqtt: Option<Arc<MqttStats>>,
    /// The control socket's counters, when it is configured.
    pub ctl: Option<Arc<crate::ctl::CtlCounters>>,
    /// The traffic data bins' counters and folder, when `[bins]` is on.
    pub bins: Option<Arc<BinStats>>,
}

impl HealthState {
    /// A camera's state: offline (reconnecting), stale (no recent frame), waiting (none
    /// yet, within the grace period) or what the video check says; and its last frame's age.
    fn camera_state(&self, cam: &CameraFeed) -> (&'static str, Option<Duration>) {
        let now = self.clock.now();
        let age = cam.last_frame().map(|t| now.saturating_sub(t));
        let state = match (age, cam.video()) {
            _ if !cam.capture().online => "offline",
            (None, _) if now.saturating_sub(self.started) > self.camera_stale => "stale",
            (None, _) => "waiting",
            (Some(a), _) if a > self.camera_stale => "stale",
            (_, v) => v.as_str(),
        };
        (state, age)
    }

    /// The worst camera's state and age (the first camera's when all are fine).
    fn camera(&self) -> (&'static str, Option<Duration>) {
        let states = self.feed.cameras().iter().map(|c| self.camera_state(c));
        let mut first = None;
        for (state, age) in states {
            if !matches!(state, "ok" | "waiting") {
                return (state, age);
            }
            first.get_or_insert((state, age));
        }
        first.unwrap_or(("waiting", None))
    }

    /// The overall status.
    pub fn status(&self) -> Status {
        let forced = self.safe.as_ref().is_some_and(|s| s.is_forced());
        let flash = self.signals.as_ref().is_some_and(|s| s.fault_flash());
        if forced || flash {
            return Status::Failsafe;
        }
        let camera_ok = matches!(self.camera().0, "ok" | "waiting");
        let degraded = self
            .signals
            .as_ref()
            .is_some_and(|s| s.degraded() || s.detector_fault())
            || self
                .detector_outputs
                .as_ref()
                .is_some_and(|d| d.outputs().any(|o| o.fail_safe.is_some()));
        if !camera_ok || degraded || self.stats.detector.failure().is_some() {
            Status::Degraded
        } else {
            Status::Ok
        }
    }
}

/// `{"state":"ok"|"failed","consecutive_failures":..,"failed_step":..}`: whether the model
/// still runs, and if not, which step failed.
fn detector_json(w: &mut dyn Write, d: &DetectorHealth) -> io::Result<()> {
    let failure = d.failure();
    write!(
        w,
        "{{\"state\":\"{}\",\"consecutive_failures\":{},\"failed_step\":",
        if failure.is_some() { "failed" } else { "ok" },
        d.consecutive()
    )?;
    match failure {
        Some(f) => write!(w, "\"{}\"}}", f.step.as_str()),
        None => w.write_all(b"null}"),
    }
}

/// `{"visits":..,"mean_s":..,"max_s":..,"current_max_s":..}`: completed stays, their mean
/// and longest length, and the longest stay still going on.
fn dwell_json(w: &mut dyn Write, d: &Dwell) -> io::Result<()> {
    write!(
        w,
        "{{\"visits\":{},\"mean_s\":{:.1},\"max_s\":{:.1},\"current_max_s\":{:.1}}}",
        d.visits,
        d.mean().as_secs_f64(),
        d.longest.as_secs_f64(),
        d.current_longest.as_secs_f64()
    )
}

/// `{"state":..,"last_frame_age_ms":..}`, with the capture counters when `cam` is given.
fn camera_json(
    w: &mut dyn Write,
    state: &str,
    age: Option<Duration>,
    cam: Option<&CameraFeed>,
) -> io::Result<()> {
    w.write_all(b"{\"state\":")?;
    json::string(w, state)?;
    match age {
        Some(a) => write!(w, ",\"last_frame_age_ms\":{}", a.as_millis())?,
        None => w.write_all(b",\"last_frame_age_ms\":null")?,
    }
    if let Some(cam) = cam {
        let c = cam.capture();
        write!(
            w,
            ",\"frames\":{},\"dropped\":{},\"corrupt\":{},\"reconnects\":{},\"online\":{},\"video_incidents\":{}",
            cam.frames(),
            c.dropped,
            c.corrupt,
            c.reconnects,
            c.online,
            cam.video_incidents()
        )?;
    }
    w.write_all(b"}")
}

/// `{"connected":..,"queued":..,"capacity":..,"enqueued":..,"published":..,"in_flight":..,
/// "dropped":..,"reconnects":..}`.
fn mqtt_json(w: &mut dyn Write, c: &MqttCounts) -> io::Result<()> {
    write!(
        w,
        "{{\"connected\":{},\"queued\":{},\"capacity\":{},\"enqueued\":{},\"published\":{},\"in_flight\":{},\"dropped\":{},\"reconnects\":{}}}",
        c.connected,
        c.queue.queued,
        c.capacity,
        c.queue.enqueued,
        c.published,
        c.in_flight,
        c.queue.dropped,
        c.reconnects
    )
}

/// `{"closed":..,"written":..,"queued":..,"dropped":..,"failed":..,"pruned":..}`.
fn bins_json(w: &mut dyn Write, c: &BinCounts) -> io::Result<()> {
    write!(
        w,
        "{{\"closed\":{},\"written\":{},\"queued\":{},\"dropped\":{},\"failed\":{},\"pruned\":{}}}",
        c.closed, c.written, c.queued, c.dropped, c.failed, c.pruned
    )
}

impl HealthSource for HealthState {
    fn write_health(&self, w: &mut dyn Write) -> io::Result<()> {
        let s = &self.stats;
        let uptime = self.clock.now().saturating_sub(self.started);
        write!(
            w,
            "{{\"status\":\"{}\",\"uptime_s\":{:.1}",
            self.status().as_str(),
            uptime.as_secs_f64()
        )?;
        write!(
            w,
            ",\"restarts\":{},\"last_restart_reason\":",
            self.restarts.count()
        )?;
        match &self.restarts.last_reason {
            Some(r) => json::string(w, r)?,
            None => w.write_all(b"null")?,
        }
        let (rss, peak) = (rss_bytes().unwrap_or(0), peak_rss_bytes().unwrap_or(0));
        write!(
            w,
            ",\"rss_bytes\":{rss},\"peak_rss_bytes\":{peak},\"fps\":{:.2},\"frames\":{},\"dropped\":{},\"errors\":{}",
            s.recent_fps(),
            s.frames.load(Relaxed),
            s.dropped.load(Relaxed),
            s.errors.load(Relaxed)
        )?;
        w.write_all(b",\"detector\":")?;
        detector_json(w, &s.detector)?;
        let classes = &self.classes;
        w.write_all(b",\"latency_ms\":")?;
        json::latency(w, &STAGES, |stage| s.total(stage))?;
        w.write_all(b",\"zones\":")?;
        let zones = self
            .zones
            .iter()
            .map(String::as_str)
            .enumerate()
            .map(|(i, n)| (n, i));
        json::object(w, zones.clone(), |w, i| {
            json::class_counts(w, classes, self.feed.zone(i).map(u64::from))
        })?;
        w.write_all(b",\"dwell\":")?;
        json::object(w, zones, |w, i| dwell_json(w, &self.feed.dwell(i)))?;
        w.write_all(b",\"lines\":")?;
        let lines = self
            .lines
            .iter()
            .map(String::as_str)
            .enumerate()
            .map(|(i, n)| (n, i));
        json::object(w, lines, |w, i| {
            json::line_counts(
                w,
                classes,
                self.feed.line(i, false),
                self.feed.line(i, true),
            )
        })?;
        w.write_all(b",\"signals\":")?;
        match &self.signals {
            None => w.write_all(b"null")?,
            Some(sig) => {
                w.write_all(b"{\"groups\":")?;
                json::signal_groups(w, sig)?;
                let forced = self.safe.as_ref().is_some_and(|s| s.is_forced());
                write!(
                    w,
                    ",\"mode\":\"{}\",\"fault_flash\":{},\"degraded\":{},\"forced_safe\":{forced},\
                     \"fault\":",
                    sig.mode().as_str(),
                    sig.fault_flash(),
                    sig.degraded()
                )?;
                match sig.fault() {
                    Some(fault) => json::string(w, &fault)?,
                    None => w.write_all(b"null")?,
                }
                let (vehicle, ped) = sig.no_activity();
                w.write_all(b",\"no_activity\":{\"vehicle\":")?;
                json::strings(w, vehicle)?;
                w.write_all(b",\"pedestrian\":")?;
                json::strings(w, ped)?;
                let (vehicle, ped) = sig.max_presence();
                w.write_all(b"},\"max_presence\":{\"vehicle\":")?;
                json::strings(w, vehicle)?;
                w.write_all(b",\"pedestrian\":")?;
                json::strings(w, ped)?;
                w.write_all(b"},\"plan\":")?;
                match sig.plan() {
                    Some(plan) => json::string(w, plan)?,
                    None => w.write_all(b"null")?,
                }
                write!(w, ",\"clock_synced\":{}}}", sig.clock_synced())?;
            }
        }
        w.write_all(b",\"detector_outputs\":")?;
        match &self.detector_outputs {
            None => w.write_all(b"null")?,
            Some(d) => {
                let outputs = d.outputs().map(|o| (o.name, o));
                json::object(w, outputs, |w, o| {
                    write!(w, "{{\"call\":{},\"fail_safe\":", o.call)?;
                    match o.fail_safe {
                        Some(f) => json::string(w, f.as_str())?,
                        None => w.write_all(b"null")?,
                    }
                    write!(
                        w,
                        ",\"volume\":{},\"occupancy\":{:.3}}}",
                        o.volume, o.occupancy
                    )
                })?;
            }
        }
        let (camera, age) = self.camera();
        w.write_all(b",\"camera\":")?;
        camera_json(w, camera, age, None)?;
        w.write_all(b",\"cameras\":")?;
        let cameras = self
            .cameras
            .iter()
            .map(String::as_str)
            .zip(self.feed.cameras());
        json::object(w, cameras, |w, cam| {
            let (state, age) = self.camera_state(cam);
            camera_json(w, state, age, Some(cam))
        })?;
        write!(
            w,
            ",\"incidents\":{{\"video\":{}}}",
            self.feed.video_incidents()
        )?;
        w.write_all(b",\"view\":")?;
        match &self.view {
            None => w.write_all(b"null")?,
            Some(v) => write!(
                w,
                "{{\"viewers\":{},\"max_viewers\":{},\"fps\":{:.2},\"published\":{},\"rendered\":{}}}",
                v.viewers(),
                v.max_viewers(),
                v.fps(),
                v.published(),
                v.counters.rendered.load(Relaxed)
            )?,
        }
        write!(
            w,
            ",\"version\":{{\"version\":\"{VERSION}\",\"git\":\"{GIT_HASH}\",\"backend\":\"{}\"}}",
            self.backend
        )?;
        w.write_all(b",\"mqtt\":")?;
        match &self.mqtt {
            None => w.write_all(b"null")?,
            Some(m) => mqtt_json(w, &m.counts())?,
        }
        w.write_all(b",\"ctl\":")?;
        match &self.ctl {
            None => w.write_all(b"null")?,
            Some(c) => {
                let c = c.counts();
                write!(
                    w,
                    "{{\"requests\":{},\"refused\":{},\"malformed\":{}}}",
                    c.requests, c.refused, c.malformed
                )?
            }
        }
        w.write_all(b",\"bins\":")?;
        match &self.bins {
            None => w.write_all(b"null")?,
            Some(b) => bins_json(w, &b.counts())?,
        }
        w.write_all(b"}")
    }

    fn view(&self) -> Option<&Viewer> {
        self.view.as_deref()
    }

    fn bins(&self) -> Option<&BinStats> {
        self.bins.as_deref()
    }

    fn write_metrics(&self, w: &mut dyn Write) -> io::Result<()> {
        let s = &self.stats;
        let counter = |w: &mut dyn Write, name: &str, help: &str, v: u64| -> io::Result<()> {
            writeln!(w, "# HELP edgewatch_{name} {help}\n# TYPE edgewatch_{name} counter\nedgewatch_{name} {v}")
        };
        let gauge = |w: &mut dyn Write, name: &str, help: &str, v: f64| -> io::Result<()> {
            writeln!(w, "# HELP edgewatch_{name} {help}\n# TYPE edgewatch_{name} gauge\nedgewatch_{name} {v}")
        };
        counter(
            w,
            "frames_total",
            "Frames processed.",
            s.frames.load(Relaxed),
        )?;
        counter(
            w,
            "dropped_frames_total",
            "Frames dropped for a newer one.",
            s.dropped.load(Relaxed),
        )?;
        counter(
            w,
            "frame_errors_total",
            "Frames that could not be processed.",
            s.errors.load(Relaxed),
        )?;
        counter(
            w,
            "restarts_total",
            "Watchdog restarts before this process.",
            self.restarts.count() as u64,
        )?;
        counter(
            w,
            "video_incidents_total",
            "Frozen or dark video episodes.",
            self.feed.video_incidents(),
        )?;
        gauge(
            w,
            "detector_failed",
            "1 while the model has failed model.max_failures frames in a row.",
            f64::from(u8::from(s.detector.failure().is_some())),
        )?;
        gauge(
            w,
            "detector_consecutive_failures",
            "Frames in a row whose invoke or decode failed.",
            s.detector.consecutive() as f64,
        )?;
        gauge(
            w,
            "fps",
            "Frames per second over the last summary window.",
            s.recent_fps(),
        )?;
        gauge(
            w,
            "rss_bytes",
            "Resident memory.",
            rss_bytes().unwrap_or(0) as f64,
        )?;
        gauge(
            w,
            "peak_rss_bytes",
            "Peak resident memory.",
            peak_rss_bytes().unwrap_or(0) as f64,
        )?;
        if let Some(v) = &self.view {
            let c = &v.counters;
            let view_counters = [
                (
                    "view_published_total",
                    "Frames the frame loop copied for the live view.",
                    v.published(),
                ),
                (
                    "view_rendered_total",
                    "Live-view frames drawn and JPEG-encoded.",
                    c.rendered.load(Relaxed),
                ),
                (
                    "view_failed_total",
                    "Live-view frames that could not be drawn or encoded.",
                    c.failed.load(Relaxed),
                ),
                (
                    "view_refused_total",
                    "Streams refused: view.max_viewers were watching.",
                    c.refused.load(Relaxed),
                ),
                (
                    "view_dropped_slow_total",
                    "Streams dropped: the client did not read in time.",
                    c.dropped_slow.load(Relaxed),
                ),
                (
                    "view_tracks_dropped_total",
                    "Tracks left undrawn: more than a view frame holds.",
                    v.tracks_dropped(),
                ),
            ];
            for (name, help, value) in view_counters {
                counter(w, name, help, value)?;
            }
            gauge(
                w,
                "view_viewers",
                "Streams being watched.",
                v.viewers() as f64,
            )?;
        }
        if let Some((store, dropped)) = &self.snapshots {
            let snapshot_counters = [
                (
                    "snapshots_saved_total",
                    "Event snapshots written.",
                    store.saved.load(Relaxed),
                ),
                (
                    "snapshots_rotated_total",
                    "Old event snapshots deleted to stay within snapshots.max_files and max_bytes.",
                    store.rotated.load(Relaxed),
                ),
                (
                    "snapshots_skipped_total",
                    "Event snapshots not written: low disk, too large, or a failed write.",
                    store.skipped.load(Relaxed),
                ),
                (
                    "snapshot_events_dropped_total",
                    "Events dropped before a snapshot: the queue was full.",
                    dropped.load(Relaxed),
                ),
            ];
            for (name, help, value) in snapshot_counters {
                counter(w, name, help, value)?;
            }
        }
        let uptime = self.clock.now().saturating_sub(self.started).as_secs_f64();
        gauge(w, "uptime_seconds", "Seconds since start-up.", uptime)?;
        writeln!(
            w,
            "# HELP edgewatch_build_info The build: version, git commit, inference backend.\n\
             # TYPE edgewatch_build_info gauge\n\
             edgewatch_build_info{{version=\"{VERSION}\",git=\"{GIT_HASH}\",backend=\"{}\"}} 1",
            self.backend
        )?;
        if let Some(m) = &self.mqtt {
            let c = m.counts();
            counter(
                w,
                "mqtt_published_total",
                "MQTT messages the broker acknowledged.",
                c.published,
            )?;
            counter(
                w,
                "mqtt_dropped_total",
                "MQTT messages lost: queue full, broken connection, or too large.",
                c.queue.dropped,
            )?;
            counter(
                w,
                "mqtt_reconnects_total",
                "Times the MQTT connection came back after breaking.",
                c.reconnects,
            )?;
            gauge(
                w,
                "mqtt_queued",
                "MQTT messages waiting for the broker.",
                c.queue.queued as f64,
            )?;
            gauge(
                w,
                "mqtt_connected",
                "1 while connected to the MQTT broker.",
                f64::from(u8::from(c.connected)),
            )?;
        }
        if let Some(c) = &self.ctl {
            let c = c.counts();
            counter(
                w,
                "ctl_requests_total",
                "Well-formed requests on the control socket from permitted peers.",
                c.requests,
            )?;
            counter(
                w,
                "ctl_refused_total",
                "Control socket connections refused: not root, the service user or its group.",
                c.refused,
            )?;
            counter(
                w,
                "ctl_malformed_total",
                "Control socket requests too long, unknown, not text or not sent in time.",
                c.malformed,
            )?;
        }
        if let Some(b) = &self.bins {
            let c = b.counts();
            let bin_counters = [
                (
                    "bins_written_total",
                    "Traffic data bins written and synced.",
                    c.written,
                ),
                (
                    "bins_dropped_total",
                    "Traffic data bins dropped: the writer's queue was full.",
                    c.dropped,
                ),
                (
                    "bins_failed_total",
                    "Traffic data bins whose write failed.",
                    c.failed,
                ),
                (
                    "bins_pruned_files_total",
                    "Day files of bins deleted for bins.retention_days or max_bytes.",
                    c.pruned,
                ),
            ];
            for (name, help, value) in bin_counters {
                counter(w, name, help, value)?;
            }
        }

        writeln!(
            w,
            "# HELP edgewatch_stage_latency_seconds Latency per stage since start-up."
        )?;
        writeln!(w, "# TYPE edgewatch_stage_latency_seconds summary")?;
        for stage in STAGES {
            let h = s.total(stage);
            for q in [0.5, 0.99] {
                let v = h.quantile(q).as_secs_f64();
                writeln!(
                    w,
                    "edgewatch_stage_latency_seconds{{stage=\"{}\",quantile=\"{q}\"}} {v}",
                    stage.name()
                )?;
            }
            writeln!(
                w,
                "edgewatch_stage_latency_seconds_count{{stage=\"{}\"}} {}",
                stage.name(),
                h.count()
            )?;
        }
        let cameras = || self.cameras.iter().zip(self.feed.cameras());
        let per_camera = [
            (
                "camera_online",
                "gauge",
                "1 while the camera delivers, 0 while it reconnects.",
            ),
            (
                "camera_frames_total",
                "counter",
                "Frames of each camera processed.",
            ),
            (
                "camera_dropped_frames_total",
                "counter",
                "Frames of each camera dropped for a newer one.",
            ),
            (
                "camera_corrupt_frames_total",
                "counter",
                "Frames of each camera rejected as damaged.",
            ),
            (
                "camera_reconnects_total",
                "counter",
                "Times each camera was reopened after a fault.",
            ),
        ];
        for (i, (name, kind, help)) in per_camera.into_iter().enumerate() {
            writeln!(
                w,
                "# HELP edgewatch_{name} {help}\n# TYPE edgewatch_{name} {kind}"
            )?;
            for (camera, feed) in cameras() {
                let c = feed.capture();
                let v = [
                    u64::from(c.online),
                    feed.frames(),
                    c.dropped,
                    c.corrupt,
                    c.reconnects,
                ][i];
                write!(w, "edgewatch_{name}{{camera=")?;
                label(w, camera)?;
                writeln!(w, "}} {v}")?;
            }
        }
        if let Some(d) = &self.detector_outputs {
            let per_output: [(&str, &str, &str); 4] = [
                ("detector_call", "gauge", "1 while the output calls."),
                (
                    "detector_fail_safe",
                    "gauge",
                    "1 while the output calls whatever its zones show.",
                ),
                (
                    "detector_volume_total",
                    "counter",
                    "Activations (NTCIP volume).",
                ),
                (
                    "detector_occupancy_ratio",
                    "gauge",
                    "Share of the time an object was present (NTCIP occupancy).",
                ),
            ];
            for (i, (name, kind, help)) in per_output.into_iter().enumerate() {
                writeln!(
                    w,
                    "# HELP edgewatch_{name} {help}\n# TYPE edgewatch_{name} {kind}"
                )?;
                for o in d.outputs() {
                    write!(w, "edgewatch_{name}{{output=")?;
                    label(w, o.name)?;
                    match i {
                        0 => writeln!(w, "}} {}", u8::from(o.call))?,
                        1 => writeln!(w, "}} {}", u8::from(o.fail_safe.is_some()))?,
                        2 => writeln!(w, "}} {}", o.volume)?,
                        _ => writeln!(w, "}} {:.3}", o.occupancy)?,
                    }
                }
            }
        }
        writeln!(
            w,
            "# HELP edgewatch_zone_occupancy Objects now in each zone."
        )?;
        writeln!(w, "# TYPE edgewatch_zone_occupancy gauge")?;
        for (i, zone) in self.zones.iter().enumerate() {
            for (class, n) in self.classes.iter().zip(self.feed.zone(i)) {
                write!(w, "edgewatch_zone_occupancy{{zone=")?;
                label(w, zone)?;
                write!(w, ",class=")?;
                label(w, class)?;
                writeln!(w, "}} {n}")?;
            }
        }
        let per_zone: [ZoneMetric; 5] = [
            (
                "zone_visits_total",
                "counter",
                "Completed stays of tracks in each zone (left it, or lost inside it).",
                |d| d.visits as f64,
            ),
            (
                "zone_dwell_seconds_total",
                "counter",
                "Total length of the completed stays in each zone.",
                |d| d.total.as_secs_f64(),
            ),
            (
                "zone_dwell_mean_seconds",
                "gauge",
                "Mean length of a completed stay in each zone.",
                |d| d.mean().as_secs_f64(),
            ),
            (
                "zone_dwell_max_seconds",
                "gauge",
                "Longest completed stay in each zone.",
                |d| d.longest.as_secs_f64(),
            ),
            (
                "zone_dwell_current_max_seconds",
                "gauge",
                "Longest stay of a track still in each zone.",
                |d| d.current_longest.as_secs_f64(),
            ),
        ];
        for (name, kind, help, value) in per_zone {
            writeln!(
                w,
                "# HELP edgewatch_{name} {help}\n# TYPE edgewatch_{name} {kind}"
            )?;
            for (i, zone) in self.zones.iter().enumerate() {
                write!(w, "edgewatch_{name}{{zone=")?;
                label(w, zone)?;
                writeln!(w, "}} {}", value(&self.feed.dwell(i)))?;
            }
        }
        writeln!(
            w,
            "# HELP edgewatch_line_crossings_total Objects that crossed each line."
        )?;
        writeln!(w, "# TYPE edgewatch_line_crossings_total counter")?;
        for (i, line) in self.lines.iter().enumerate() {
            for (dir, out) in [("in", false), ("out", true)] {
                for (class, n) in self.classes.iter().zip(self.feed.line(i, out)) {
                    write!(w, "edgewatch_line_crossings_total{{line=")?;
                    label(w, line)?;
                    write!(w, ",class=")?;
                    label(w, class)?;
                    writeln!(w, ",direction=\"{dir}\"}} {n}")?;
                }
            }
        }
        if let Some(sig) = &self.signals {
            writeln!(w, "# HELP edgewatch_signal_state What each signal group shows (1 for the state shown).")?;
            writeln!(w, "# TYPE edgewatch_signal_state gauge")?;
            for (name, state) in sig.states() {
                write!(w, "edgewatch_signal_state{{group=")?;
                label(w, name)?;
                writeln!(w, ",state=\"{}\"}} 1", state.as_str())?;
            }
        }
        writeln!(
            w,
            "# HELP edgewatch_status Overall status (1 for the current one)."
        )?;
        writeln!(w, "# TYPE edgewatch_status gauge")?;
        let now = self.status();
        for st in [Status::Ok, Status::Degraded, Status::Failsafe] {
            writeln!(
                w,
                "edgewatch_status{{status=\"{}\"}} {}",
                st.as_str(),
                u8::from(st == now)
            )?;
        }
        Ok(())
    }
}

/// A per-zone metric: name, Prometheus type, help text, and its value from the zone's dwell.
type ZoneMetric = (&'static str, &'static str, &'static str, fn(&Dwell) -> f64);

/// Writes a Prometheus label value in quotes, escaped.
fn label(w: &mut dyn Write, value: &str) -> io::Result<()> {
    w.write_all(b"\"")?;
    for c in value.chars() {
        match c {
            '\\' => w.write_all(b"\\\\")?,
            '"' => w.write_all(b"\\\"")?,
            '\n' => w.write_all(b"\\n")?,
            c => write!(w, "{c}")?,
        }
    }
    w.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::MAX_CLASSES;

    fn state() -> (HealthState, ManualClock) {
        let clock = ManualClock::new();
        let feed = Arc::new(SceneFeed::new(1, 1));
        let mut occ = [[0u32; MAX_CLASSES]; 1];
        occ[0][1] = 2;
        feed.publish(&occ, Duration::ZERO);
        let mut road = crate::scene::ZonePresence::new(&crate::config::ZoneConfig {
            name: "road".into(),
            camera: None,
            points: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
            anchor: crate::config::Anchor::BottomCenter,
            enter_frames: 1,
            exit_ms: 0,
            ignore_stationary: false,
        });
        road.record_visit(Duration::from_secs(4));
        road.record_visit(Duration::from_secs(2));
        road.set_current_longest(Duration::from_millis(12_500));
        feed.publish_dwell(&[0], std::slice::from_ref(&road));
        let s = HealthState {
            clock: Arc::new(clock.clone()),
            started: Duration::ZERO,
            stats: Arc::new(PipelineStats::default()),
            feed,
            signals: None,
            detector_outputs: None,
            safe: None,
            restarts: RestartHistory {
                times: vec![1],
                last_reason: Some("inference \"stuck\"".into()),
            },
            classes: vec!["car".into(), "bus".into()],
            cameras: vec!["north".into()],
            zones: vec!["road".into()],
            lines: vec!["gantry".into()],
            camera_stale: Duration::from_secs(3),
            view: None,
            snapshots: None,
            backend: "tflite",
            mqtt: None,
            ctl: None,
            bins: None,
        };
        (s, clock)
    }

    #[test]
    fn health_is_valid_json_with_the_counts() {
        let (s, clock) = state();
        let mut out = Vec::new();
        s.write_health(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"status\":\"ok\""), "{text}");
        assert!(
            text.contains("\"zones\":{\"road\":{\"car\":0,\"bus\":2}}"),
            "{text}"
        );
        assert!(
            text.contains(
                "\"dwell\":{\"road\":{\"visits\":2,\"mean_s\":3.0,\"max_s\":4.0,\"current_max_s\":12.5}}"
            ),
            "{text}"
        );
        assert!(
            text.contains("\"last_restart_reason\":\"inference \\\"stuck\\\"\""),
            "{text}"
        );
        assert!(
            text.contains("\"cameras\":{\"north\":{\"state\":\"ok\",\"last_frame_age_ms\":0,"),
            "{text}"
        );
        // The camera goes stale without frames.
        clock.advance(Duration::from_secs(4));
        assert_eq!(s.status(), Status::Degraded);
    }

    #[test]
    fn a_failed_detector_degrades_and_says_which_step() {
        use crate::health::stats::DetectorStep;
        let (s, _) = state();
        let health = |s: &HealthState| {
            let mut out = Vec::new();
            s.write_health(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let ok = "\"detector\":{\"state\":\"ok\",\"consecutive_failures\":0,\"failed_step\":null}";
        assert!(health(&s).contains(ok), "{}", health(&s));
        for _ in 0..3 {
            s.stats.detector.failed_at(DetectorStep::Decode, 3);
        }
        assert_eq!(s.status(), Status::Degraded);
        let text = health(&s);
        assert!(
            text.contains("\"detector\":{\"state\":\"failed\",\"consecutive_failures\":3,\"failed_step\":\"decode\"}"),
            "{text}"
        );
        let mut out = Vec::new();
        s.write_metrics(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("edgewatch_detector_failed 1\n"), "{text}");
        assert!(
            text.contains("edgewatch_detector_consecutive_failures 3\n"),
            "{text}"
        );
    }

    #[test]
    fn a_reconnecting_camera_is_offline_and_degrades() {
        let (s, _) = state();
        assert_eq!(s.status(), Status::Ok);
        let offline = crate::capture::CaptureStats {
            reconnects: 2,
            ..Default::default()
        };
        s.feed.publish_capture(0, offline, 7);
        assert_eq!(s.status(), Status::Degraded);
        let mut out = Vec::new();
        s.write_health(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"camera\":{\"state\":\"offline\""), "{text}");
        assert!(
            text.contains(
                "\"frames\":7,\"dropped\":0,\"corrupt\":0,\"reconnects\":2,\"online\":false"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        s.write_metrics(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("edgewatch_camera_online{camera=\"north\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgewatch_camera_reconnects_total{camera=\"north\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn metrics_have_help_type_and_labels() {
        let (s, _) = state();
        let mut out = Vec::new();
        s.write_metrics(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("# TYPE edgewatch_frames_total counter\nedgewatch_frames_total 0"));
        assert!(
            text.contains("edgewatch_zone_occupancy{zone=\"road\",class=\"bus\"} 2"),
            "{text}"
        );
        assert!(text.contains("edgewatch_status{status=\"ok\"} 1"));
        for sample in [
            "# TYPE edgewatch_zone_visits_total counter\nedgewatch_zone_visits_total{zone=\"road\"} 2\n",
            "edgewatch_zone_dwell_seconds_total{zone=\"road\"} 6\n",
            "edgewatch_zone_dwell_mean_seconds{zone=\"road\"} 3\n",
            "edgewatch_zone_dwell_max_seconds{zone=\"road\"} 4\n",
            "edgewatch_zone_dwell_current_max_seconds{zone=\"road\"} 12.5\n",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "sample line `{line}`");
        }
    }
}
