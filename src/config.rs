//! Site configuration: one TOML file -> a validated [`Config`].
//!
//! Every bound is explicit and every error names the key it is about, e.g.
//! `zones[2].points: a polygon needs at least 3 points`. Unknown keys are errors, so a typo
//! never silently falls back to a default.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capture::PixelFormat;
use crate::geometry::{Point, Roi};
use crate::signal::SignalConfig;
use crate::vision::detection::MAX_DETECTIONS;

/// Environment variable naming the folder models and labels are looked up in.
pub const MODEL_DIR_ENV: &str = "EDGEWATCH_MODEL_DIR";
/// Environment variable naming the folder relative replay paths are looked up in.
pub const FRAMES_DIR_ENV: &str = "EDGEWATCH_FRAMES_DIR";
/// Where `models/fetch.sh` puts the models when no environment variable is set.
pub const DEFAULT_MODEL_DIR: &str = "models";
/// Where `models/fetch.sh` puts the sample frames when no environment variable is set.
pub const DEFAULT_FRAMES_DIR: &str = "models/frames";
/// The most classes a site may keep; counts are fixed arrays of this size.
pub const MAX_CLASSES: usize = 16;
/// The most zones a site may define.
pub const MAX_ZONES: usize = 32;
/// The most counting lines a site may define (a track remembers them in a 64-bit set).
pub const MAX_LINES: usize = 32;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not fit the schema (unknown key, wrong type, ...).
    #[error("{path}: {key}: {message}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// Dotted key path, e.g. `cameras[0].fps`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value parsed but is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key path, e.g. `zones[2].points`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`.
    pub fn invalid(key: impl fmt::Display, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

fn invalid(key: impl fmt::Display, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// A whole site: cameras, model, scene and bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Site name, shown in summaries.
    #[serde(default = "default_site")]
    pub site: String,
    /// Cameras; zones and lines name the one they are drawn on.
    pub cameras: Vec<CameraConfig>,
    /// The detector.
    pub model: ModelConfig,
    /// The multi-object tracker.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Occupancy zones.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Counting lines.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Summary output.
    #[serde(default)]
    pub summary: SummaryConfig,
    /// Signal control loop and output pins.
    #[serde(default)]
    pub control: ControlConfig,
    /// Traffic and bus signals driven from the zone counts (optional).
    #[serde(default)]
    pub signals: Option<SignalConfig>,
    /// Detector calls to an existing signal controller, one relay output each (optional).
    #[serde(default)]
    pub detector_outputs: Vec<crate::detector_outputs::DetectorOutputConfig>,
    /// Limits the watchdog enforces, and the restart budget.
    #[serde(default)]
    pub watchdog: WatchdogConfig,
    /// The local health endpoint.
    #[serde(default)]
    pub health: HealthConfig,
    /// The live annotated view on the health endpoint (`/`, `/snapshot.jpg`, `/stream.mjpeg`).
    #[serde(default)]
    pub view: ViewConfig,
    /// Annotated JPEGs saved on events (zone entries, line crossings, faults), bounded on disk.
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    /// Publishing counts, events and stats to a fleet MQTT broker.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Traffic data bins on disk (optional; on when the section is present).
    #[serde(default)]
    pub bins: Option<BinsConfig>,
    /// Fault injection for the watchdog's integration tests. Never set on a real site.
    #[serde(default)]
    pub testing: TestingConfig,
}

/// What the watchdog checks, how often, and how often it may restart the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Check period in milliseconds.
    pub period_ms: u64,
    /// Longest one inference may take.
    pub inference_limit_ms: u64,
    /// Longest the capture side may go without delivering a frame or reporting that every
    /// camera is waiting (a capture call that hangs). A camera that is merely absent is
    /// reconnected by its source and shows as stale or offline, without a restart.
    pub camera_limit_ms: u64,
    /// Longest the control loop may go without a tick.
    pub control_limit_ms: u64,
    /// Frame latency p99 budget, judged over `latency_window_s`.
    pub latency_budget_ms: u64,
    /// Window for the latency budget.
    pub latency_window_s: u64,
    /// Resident memory limit in MiB.
    pub rss_limit_mib: u64,
    /// Growth of resident memory (MiB) over the last `rss_trend_window_s` that counts as a
    /// leak when every sample in the window rose or held.
    pub rss_growth_limit_mib: u64,
    /// Window of the RSS trend (sampled every tenth of it).
    pub rss_trend_window_s: u64,
    /// Restarts allowed within `restart_window_s`; past it the signals stay safe and the
    /// process exits non-zero.
    pub restart_budget: u32,
    /// Window of the restart budget.
    pub restart_window_s: u64,
    /// Seconds between the health lines the watchdog logs.
    pub log_interval_s: u64,
    /// Video whose sampled pixels do not change for this long is frozen.
    pub freeze_s: f32,
    /// Video whose mean luma stays below `dark_luma` for this long is dark.
    pub dark_s: f32,
    /// Mean luma (0..255) below which a frame is dark.
    pub dark_luma: u8,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            period_ms: 100,
            inference_limit_ms: 2000,
            camera_limit_ms: 5000,
            control_limit_ms: 1000,
            latency_budget_ms: 1000,
            latency_window_s: 10,
            rss_limit_mib: 64,
            rss_growth_limit_mib: 8,
            rss_trend_window_s: 600,
            restart_budget: 3,
            restart_window_s: 600,
            log_interval_s: 30,
            freeze_s: 10.0,
            dark_s: 10.0,
            dark_luma: 16,
        }
    }
}

/// The local health endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Serve `/health` and `/metrics`.
    pub enabled: bool,
    /// Address to listen on; keep it on loopback unless the unit's network is trusted.
    pub bind: String,
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:8787".into(),
            max_connections: 8,
        }
    }
}

/// The live view: annotated JPEGs drawn off the frame loop while someone watches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// Serve the live view (needs `health.enabled`).
    pub enabled: bool,
    /// Most frames a second drawn per camera (0.1..10); the frame loop copies no more.
    pub fps: f32,
    /// Most `/stream.mjpeg` clients at once (1..64, below `health.max_connections`, so
    /// `/health` always has a worker).
    pub max_viewers: usize,
    /// JPEG quality (10..95).
    pub quality: u8,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            fps: 2.0,
            max_viewers: 2,
            quality: 75,
        }
    }
}

/// The longest MQTT topic prefix, so every topic fits its fixed buffer.
pub const MQTT_PREFIX_MAX: usize = 96;
/// The longest zone, line, group or class name on a site that publishes over MQTT.
pub const MQTT_NAME_MAX: usize = 48;

/// Publishing to a fleet MQTT broker (see `src/mqtt/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish at all.
    pub enabled: bool,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883, or 8883 with TLS).
    pub port: u16,
    /// Client id; default `edgewatch-<site>`.
    pub client_id: Option<String>,
    /// User name, when the broker wants one.
    pub username: Option<String>,
    /// Password (needs `username`).
    pub password: Option<String>,
    /// Connect with TLS.
    pub tls: bool,
    /// CA certificate (PEM) to trust; without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Topic prefix; default `edgewatch/<site>`.
    pub prefix: Option<String>,
    /// Seconds between `stats` messages (the `/health` JSON).
    pub stats_interval_s: u32,
    /// Milliseconds between looks at the counts and signals for changes.
    pub poll_ms: u64,
    /// Messages held while the broker is away; past it the oldest are dropped and counted.
    pub queue_capacity: usize,
    /// Size of one queued message's payload in KiB (the `stats` JSON must fit).
    pub max_message_kib: usize,
    /// Keep-alive in seconds: how soon a dead connection is noticed.
    pub keep_alive_s: u64,
    /// Wait after a failed connection attempt, doubling up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest wait between connection attempts.
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "localhost".into(),
            port: 1883,
            client_id: None,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            client_cert: None,
            client_key: None,
            prefix: None,
            stats_interval_s: 30,
            poll_ms: 200,
            queue_capacity: 256,
            max_message_kib: 16,
            keep_alive_s: 10,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
        }
    }
}

impl ViewConfig {
    fn validate(&self, health: &HealthConfig) -> Result<(), ConfigError> {
        if !(0.1..=10.0).contains(&self.fps) {
            return Err(invalid("view.fps", "must be between 0.1 and 10"));
        }
        check_range("view.quality", self.quality, 10, 95)?;
        check_range("view.max_viewers", self.max_viewers, 1, 64)?;
        if self.enabled && !health.enabled {
            return Err(invalid(
                "view.enabled",
                "the view is served by the health endpoint: set health.enabled = true",
            ));
        }
        if self.enabled && self.max_viewers >= health.max_connections {
            return Err(invalid(
                "view.max_viewers",
                format!(
                    "{} streams would take every one of the {} health.max_connections workers; \
                     keep it below, so /health stays reachable",
                    self.max_viewers, health.max_connections
                ),
            ));
        }
        Ok(())
    }
}

/// Event snapshots: which events save an annotated frame, where, and within which bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// The folder (created if missing); needed when any event is configured.
    pub dir: Option<PathBuf>,
    /// Most snapshot files kept (1..1000000); the oldest go first.
    pub max_files: usize,
    /// Most bytes kept over every snapshot (at least 1024).
    pub max_bytes: u64,
    /// Writing pauses while the disk has less free space than this (MiB).
    pub min_free_disk_mib: u64,
    /// Also save a frame of every camera on a fault: conflict-monitor flash, a failed
    /// detector, or a start after a watchdog restart.
    pub faults: bool,
    /// Zone entries and line crossings that save a frame (at most 32).
    pub events: Vec<SnapshotEventConfig>,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_files: 1000,
            max_bytes: 200 * 1024 * 1024,
            min_free_disk_mib: 500,
            faults: false,
            events: Vec::new(),
        }
    }
}

/// One kind of event that saves a snapshot: an object of `classes` entering `zone`, or
/// crossing `line` (either way).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotEventConfig {
    /// A zone: saved when one of `classes` enters it (its count for the class rises from 0).
    #[serde(default)]
    pub zone: Option<String>,
    /// A counting line: saved when one of `classes` crosses it.
    #[serde(default)]
    pub line: Option<String>,
    /// Counted classes that trigger it; empty: every counted class.
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Most event kinds in `snapshots.events`.
pub const MAX_SNAPSHOT_EVENTS: usize = 32;

impl SnapshotsConfig {
    /// Whether any event saves snapshots.
    pub fn enabled(&self) -> bool {
        self.faults || !self.events.is_empty()
    }

    fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        check_range("snapshots.max_files", self.max_files, 1, 1_000_000)?;
        check_range("snapshots.max_bytes", self.max_bytes, 1024, u64::MAX)?;
        if self.events.len() > MAX_SNAPSHOT_EVENTS {
            return Err(invalid(
                "snapshots.events",
                format!("at most {MAX_SNAPSHOT_EVENTS} events"),
            ));
        }
        if self.enabled() && self.dir.is_none() {
            return Err(invalid(
                "snapshots.dir",
                "a folder is needed to save event snapshots",
            ));
        }
        for (i, e) in self.events.iter().enumerate() {
            let key = format!("snapshots.events[{i}]");
            match (&e.zone, &e.line) {
                (Some(z), None) if config.zones.iter().any(|c| &c.name == z) => {}
                (None, Some(l)) if config.lines.iter().any(|c| &c.name == l) => {}
                (Some(z), None) => {
                    return Err(invalid(key + ".zone", format!("no zone is named `{z}`")))
                }
                (None, Some(l)) => {
                    return Err(invalid(key + ".line", format!("no line is named `{l}`")))
                }
                _ => return Err(invalid(key, "give exactly one of `zone` and `line`")),
            }
            for class in &e.classes {
                if !config.model.classes.contains(class) {
                    return Err(invalid(
                        format!("{key}.classes"),
                        format!("`{class}` is not in model.classes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl MqttConfig {
    /// The topic prefix: `prefix`, or `edgewatch/<site>`.
    pub fn prefix(&self, site: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("edgewatch/{site}"))
    }

    /// The client id: `client_id`, or `edgewatch-<site>`.
    pub fn client_id(&self, site: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("edgewatch-{site}"))
    }

    fn validate(&self, site: &str) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.host.trim().is_empty() {
            return Err(invalid("mqtt.host", "must name the broker"));
        }
        if self.port == 0 {
            return Err(invalid("mqtt.port", "must not be 0"));
        }
        let prefix = self.prefix(site);
        if prefix.is_empty() || prefix.len() > MQTT_PREFIX_MAX {
            return Err(invalid(
                "mqtt.prefix",
                format!("`{prefix}` must be 1..={MQTT_PREFIX_MAX} bytes"),
            ));
        }
        if prefix.contains(['+', '#', '\0']) || prefix.ends_with('/') || prefix.starts_with('/') {
            return Err(invalid(
                "mqtt.prefix",
                format!("`{prefix}`: no `+`, `#` or NUL, and no `/` at either end"),
            ));
        }
        let id = self.client_id(site);
        if id.is_empty() || id.len() > 64 {
            return Err(invalid(
                "mqtt.client_id",
                format!("`{id}` must be 1..=64 bytes"),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid("mqtt.password", "needs mqtt.username"));
        }
        if !self.tls {
            for (key, set) in [
                ("mqtt.ca_file", self.ca_file.is_some()),
                ("mqtt.client_cert", self.client_cert.is_some()),
                ("mqtt.client_key", self.client_key.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "is only used with mqtt.tls = true"));
                }
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(invalid(
                "mqtt.client_cert",
                "mqtt.client_cert and mqtt.client_key go together",
            ));
        }
        check_range("mqtt.stats_interval_s", self.stats_interval_s, 1, 86_400)?;
        check_range("mqtt.poll_ms", self.poll_ms, 20, 10_000)?;
        check_range("mqtt.queue_capacity", self.queue_capacity, 1, 4096)?;
        check_range("mqtt.max_message_kib", self.max_message_kib, 1, 256)?;
        if self.queue_capacity * self.max_message_kib > 16 * 1024 {
            return Err(invalid(
                "mqtt.queue_capacity",
                format!(
                    "{} messages of {} KiB is over 16 MiB of queue",
                    self.queue_capacity, self.max_message_kib
                ),
            ));
        }
        check_range("mqtt.keep_alive_s", self.keep_alive_s, 5, 3600)?;
        check_range("mqtt.reconnect_min_ms", self.reconnect_min_ms, 10, 600_000)?;
        check_range(
            "mqtt.reconnect_max_ms",
            self.reconnect_max_ms,
            self.reconnect_min_ms,
            3_600_000,
        )?;
        Ok(())
    }
}

/// Traffic data bins (see `src/bins/`): per zone and line, every `interval_min`, written to
/// daily CSV files in `dir` within `retention_days` and `max_bytes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinsConfig {
    /// Write bins (default true once the section is present).
    pub enabled: bool,
    /// The folder of the daily files (created if missing).
    pub dir: PathBuf,
    /// Minutes per bin, dividing the hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).
    pub interval_min: u32,
    /// Days of files kept before today's (1..3660).
    pub retention_days: u32,
    /// Most bytes kept over every file; the oldest days go first (at least 64 KiB).
    pub max_bytes: u64,
}

impl Default for BinsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("/var/lib/edgewatch/bins"),
            interval_min: 15,
            retention_days: 90,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl BinsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(invalid("bins.dir", "must name a folder"));
        }
        if !(1..=60).contains(&self.interval_min) || 60 % self.interval_min != 0 {
            return Err(invalid(
                "bins.interval_min",
                format!(
                    "{} does not divide the hour: use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60",
                    self.interval_min
                ),
            ));
        }
        check_range("bins.retention_days", self.retention_days, 1, 3660)?;
        check_range("bins.max_bytes", self.max_bytes, 64 * 1024, u64::MAX)?;
        Ok(())
    }
}

impl Config {
    /// The `[bins]` section when it is present and enabled.
    pub fn bins(&self) -> Option<&BinsConfig> {
        self.bins.as_ref().filter(|b| b.enabled)
    }
}

/// Faults injected on purpose so tests can watch the watchdog act.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// After this many frames through the detector, every invoke fails (a model that stops
    /// running).
    pub fail_invoke_after_frames: Option<u64>,
    /// After this many frames, the next inference stalls for `stall_ms`.
    pub stall_after_frames: Option<u64>,
    /// How long the injected stall lasts.
    pub stall_ms: u64,
    /// After this many frames, allocate and touch `balloon_mib` of memory, 8 MiB a frame.
    pub balloon_after_frames: Option<u64>,
    /// Size of the memory balloon.
    pub balloon_mib: u64,
    /// Inject the faults again after a watchdog restart (a restart storm); by default only
    /// the first process has them.
    pub faults_on_restart: bool,
    /// Simulated outputs: writes to this lamp pin fail from the start (a broken load switch),
    /// so the monitor latches a fault.
    pub fail_pin: Option<u32>,
    /// Simulated outputs: a field fault on a lamp with a sense input (a welded load switch,
    /// a burnt-out lamp), so field read-back latches flash.
    pub stuck_lamp: Option<StuckLamp>,
    /// The control loop takes the wall clock as NTP-synchronised (true) or not (false)
    /// instead of asking the kernel (see `control.require_clock_sync`).
    pub clock_synced: Option<bool>,
}

/// A lamp whose field output sticks (`testing.stuck_lamp`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StuckLamp {
    /// The lamp's output pin.
    pub pin: u32,
    /// What the field shows from then on: lit (welded) or dark (burnt out).
    pub lit: bool,
    /// Seconds after start-up.
    #[serde(default)]
    pub after_s: f32,
}

/// Where signal outputs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputBackend {
    /// Simulated pins that record (and print) every transition: for the demo and tests.
    Simulated,
    /// Raspberry Pi GPIO through rppal (build with `--features rppal`).
    Rppal,
    /// The Linux GPIO character device (build with `--features gpio-cdev`).
    GpioCdev,
}

/// The signal control loop, which ticks at its own period whatever the frame rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Controller tick in milliseconds (at most 250, so 1 Hz flash keeps its 50 % duty).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// No fresh frame for this long marks the camera stale: the controller falls back to
    /// fixed-time with recall.
    #[serde(default = "default_stale_ms")]
    pub camera_stale_ms: u64,
    /// Output pins.
    #[serde(default = "default_backend")]
    pub outputs: OutputBackend,
    /// Simulated outputs: also append every transition to this file (for tests).
    #[serde(default)]
    pub sim_log: Option<PathBuf>,
    /// GPIO character device for `outputs = "gpio-cdev"`.
    #[serde(default = "default_gpio_chip")]
    pub gpio_chip: PathBuf,
    /// On shutdown or a watchdog breach, how long the running phase may take to clear
    /// (flashing don't walk, amber, all-red) before the lamps are set to all red regardless.
    /// At least the longest clearance of any phase plus four control ticks.
    #[serde(default = "default_shutdown_s")]
    pub shutdown_limit_s: f32,
    /// The persistent fault latch: a monitor fault is written here, and a unit that finds it
    /// at start-up stays in flash until `edgewatch reset-fault` removes it.
    #[serde(default = "default_fault_file")]
    pub fault_file: PathBuf,
    /// An output that toggles every tick while the controller and the monitor are healthy, to
    /// hold a pulse-maintained flash-transfer relay (see `board/README.md`).
    #[serde(default)]
    pub heartbeat: Option<HeartbeatConfig>,
    /// The kernel's hardware watchdog, pinged while the control loop ticks, so a hung
    /// process or kernel resets the unit (see `src/health/hw_watchdog.rs`).
    #[serde(default)]
    pub hardware_watchdog: Option<HwWatchdogConfig>,
    /// The Unix socket `edgewatch ctl` talks to (maintenance flash, reset-fault, reload,
    /// status); mode 0660, group `edgewatch` when that group exists. Empty: no socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Apply time-of-day plans (`signals.plans`) only while the kernel says the wall clock is
    /// synchronised (NTP): a Pi has no real-time clock and may start in 1970 or at the last
    /// `fake-hwclock` save. Until then the site's own `signals.mode` applies. Set false only
    /// at a site without NTP whose clock is known to be right.
    #[serde(default = "yes")]
    pub require_clock_sync: bool,
}

/// The hardware watchdog (`control.hardware_watchdog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwWatchdogConfig {
    /// The device, usually `/dev/watchdog`.
    pub device: PathBuf,
    /// Seconds without a ping before the unit resets (2..=60; the Pi's bcm2835 takes at most
    /// 15).
    #[serde(default = "default_hw_watchdog_s")]
    pub timeout_s: u32,
}

fn default_hw_watchdog_s() -> u32 {
    15
}

/// The heartbeat output (`control.heartbeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Pin number, as for lamps.
    pub pin: u32,
    /// The relay driver is on when the pin is low.
    #[serde(default)]
    pub active_low: bool,
}

fn default_tick_ms() -> u64 {
    100
}
fn default_stale_ms() -> u64 {
    3000
}
fn default_backend() -> OutputBackend {
    OutputBackend::Simulated
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_fault_file() -> PathBuf {
    PathBuf::from("/var/lib/edgewatch/fault")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/edgewatch/ctl.sock")
}
/// The longest Unix socket path Linux takes (`sun_path` holds 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;
fn default_shutdown_s() -> f32 {
    60.0
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            tick_ms: default_tick_ms(),
            camera_stale_ms: default_stale_ms(),
            outputs: default_backend(),
            gpio_chip: default_gpio_chip(),
            sim_log: None,
            shutdown_limit_s: default_shutdown_s(),
            fault_file: default_fault_file(),
            heartbeat: None,
            hardware_watchdog: None,
            socket: default_socket(),
            require_clock_sync: yes(),
        }
    }
}

impl ControlConfig {
    /// The control socket, unless `control.socket` is empty (no socket).
    pub fn socket(&self) -> Option<&Path> {
        (!self.socket.as_os_str().is_empty()).then_some(self.socket.as_path())
    }

    fn validate_socket(&self) -> Result<(), ConfigError> {
        let Some(path) = self.socket() else {
            return Ok(());
        };
        if !path.is_absolute() {
            return Err(invalid(
                "control.socket",
                format!(
                    "`{}` must be an absolute path (or empty: no socket)",
                    path.display()
                ),
            ));
        }
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(invalid(
                "control.socket",
                format!(
                    "`{}` is {len} bytes; a Unix socket path takes at most {MAX_SOCKET_PATH}",
                    path.display()
                ),
            ));
        }
        Ok(())
    }
}

fn default_site() -> String {
    "edgewatch".into()
}

/// Where frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A directory of images (BMP, PNG, JPEG, PPM) or a raw Y4M video file.
    Replay,
    /// A Video4Linux2 camera (USB, CSI through libcamera's V4L2 compatibility, capture cards).
    V4l2,
    /// A network camera serving Motion JPEG over HTTP (`multipart/x-mixed-replace`).
    Http,
}

impl SourceKind {
    /// Whether the source is a live camera that can go away and come back.
    pub fn is_live(self) -> bool {
        !matches!(self, SourceKind::Replay)
    }
}

/// One camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Name used in logs and summaries.
    pub name: String,
    /// Source kind.
    pub source: SourceKind,
    /// Replay: a directory of images or a `.y4m` file. Relative paths are looked up in
    /// `$EDGEWATCH_FRAMES_DIR` (default `models/frames`).
    #[serde(default)]
    pub path: PathBuf,
    /// V4L2: the device, `/dev/videoN` or a stable name from `/dev/v4l/by-id/` (either the
    /// full path or just the name).
    #[serde(default)]
    pub device: String,
    /// HTTP: the stream's URL, `http://host[:port]/path` (no TLS; keep cameras on a closed
    /// network).
    #[serde(default)]
    pub url: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second: for replay the rate it plays at (0 replays as fast as the pipeline
    /// takes frames, lock-step, nothing dropped); for V4L2 the rate asked of the driver (0
    /// keeps the driver's default); ignored for HTTP, where the camera sets the rate.
    #[serde(default)]
    pub fps: f32,
    /// Pixel format: for replay what it delivers, as a driver would; for V4L2 the format asked
    /// of the driver. Defaults: `rgb24` for replay, `yuyv` for V4L2, `mjpeg` for HTTP.
    #[serde(default)]
    pub pixel_format: Option<CaptureFormat>,
    /// Replay: start again at the end instead of stopping.
    #[serde(default = "yes", rename = "loop")]
    pub looping: bool,
    /// Replay of an image directory: the most images preloaded at start-up.
    #[serde(default = "default_max_frames")]
    pub max_frames: usize,
    /// Replay of an image directory: only file names matching this pattern (`*` matches any
    /// run of characters), e.g. `traffic_*.bmp`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// V4L2: driver buffers to stream with (2..=32); they are the frame ring.
    #[serde(default = "default_buffers")]
    pub buffers: u32,
    /// Live cameras: a camera that delivers no frame for this long is stale, and is closed
    /// and reopened.
    #[serde(default = "default_frame_timeout_ms")]
    pub timeout_ms: u64,
    /// Live cameras: the first wait before reopening a camera; it doubles on every failed
    /// attempt up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Live cameras: the longest wait between attempts to reopen.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// HTTP: how long connecting may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// MJPEG (V4L2 or HTTP): the largest compressed frame accepted, in KiB; larger frames
    /// are rejected and counted as corrupt. Buffers of this size are allocated at start-up.
    #[serde(default = "default_max_frame_kib")]
    pub max_frame_kib: u32,
    /// Share of the detector: with several cameras, each round gives this camera `weight`
    /// frames before moving on (1..=16).
    #[serde(default = "one")]
    pub weight: u32,
    /// Split the region of interest into overlapping tiles, each run through the detector on
    /// its own, so small and far objects cover more of the model input (one invoke per tile).
    /// Absent: the whole region in one invoke.
    #[serde(default)]
    pub tiles: Option<TilesConfig>,
}

/// A grid of overlapping tiles over the region of interest (`cameras[].tiles`). Detections
/// of every tile are mapped back into the frame and merged (see [`crate::vision::tiles`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TilesConfig {
    /// Tiles across (1..=4).
    pub cols: u32,
    /// Tiles down (1..=4).
    pub rows: u32,
    /// How much of a tile's width (height) it shares with its neighbour (0..=0.5), so an
    /// object on a tile border is seen whole in at least one tile if it is no larger than
    /// that.
    #[serde(default = "default_tile_overlap")]
    pub overlap: f32,
    /// Also run the whole region once (default true): objects larger than the overlap are
    /// then seen whole there, and a piece cut by a tile edge goes for the whole box instead
    /// of being joined with a piece the next tile may not have detected.
    #[serde(default = "default_full_frame")]
    pub full_frame: bool,
}

impl TilesConfig {
    /// Tiles in the grid.
    pub fn count(&self) -> usize {
        (self.cols * self.rows) as usize
    }

    /// Invokes per frame: the tiles, and the whole region once with `full_frame`.
    pub fn invokes(&self) -> usize {
        self.count() + usize::from(self.full_frame && self.count() > 1)
    }
}

fn default_full_frame() -> bool {
    true
}

fn default_tile_overlap() -> f32 {
    0.2
}

/// Pixel formats a camera can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// Packed 8-bit R, G, B (V4L2 `RGB3`).
    Rgb24,
    /// Packed 4:2:2 (V4L2 `YUYV`).
    Yuyv,
    /// Planar 4:2:0 with interleaved chroma (V4L2 `NV12`).
    Nv12,
    /// Planar 4:2:0 with separate U and V planes (V4L2 `YU12`, I420).
    Yu12,
    /// 8-bit luma only (V4L2 `GREY`).
    Grey,
    /// Motion JPEG: one JPEG a frame (V4L2 `MJPG`, and every HTTP camera).
    Mjpeg,
}

impl CaptureFormat {
    /// The layout frames reach the preprocessor in: formats the preprocessor reads are passed
    /// as they are, the others are converted (or decoded) into NV12.
    pub fn delivered(self) -> PixelFormat {
        match self {
            CaptureFormat::Rgb24 => PixelFormat::Rgb24,
            CaptureFormat::Yuyv => PixelFormat::Yuyv,
            CaptureFormat::Nv12
            | CaptureFormat::Yu12
            | CaptureFormat::Grey
            | CaptureFormat::Mjpeg => PixelFormat::Nv12,
        }
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureFormat::Rgb24 => "rgb24",
            CaptureFormat::Yuyv => "yuyv",
            CaptureFormat::Nv12 => "nv12",
            CaptureFormat::Yu12 => "yu12",
            CaptureFormat::Grey => "grey",
            CaptureFormat::Mjpeg => "mjpeg",
        })
    }
}

impl CameraConfig {
    /// The pixel format asked for, or the source's default.
    pub fn capture_format(&self) -> CaptureFormat {
        self.pixel_format.unwrap_or(match self.source {
            SourceKind::Replay => CaptureFormat::Rgb24,
            SourceKind::V4l2 => CaptureFormat::Yuyv,
            SourceKind::Http => CaptureFormat::Mjpeg,
        })
    }

    /// The format of the frames the camera hands the pipeline.
    pub fn frame_format(&self) -> crate::capture::FrameFormat {
        crate::capture::FrameFormat {
            width: self.width,
            height: self.height,
            pixel_format: self.capture_format().delivered(),
        }
    }

    /// The largest compressed frame accepted, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_kib as usize * 1024
    }
}

fn default_buffers() -> u32 {
    4
}
fn default_frame_timeout_ms() -> u64 {
    2000
}
fn default_reconnect_min_ms() -> u64 {
    250
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    3000
}
fn default_max_frame_kib() -> u32 {
    1024
}
fn yes() -> bool {
    true
}
fn default_max_frames() -> usize {
    16
}

/// The detector model and how to read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The `.tflite` file. Relative paths are looked up in `$EDGEWATCH_MODEL_DIR`
    /// (default `models`).
    pub file: PathBuf,
    /// Labels, one a line, 0-indexed by the model's class output. Looked up like `file`.
    pub labels: PathBuf,
    /// Interpreter threads.
    #[serde(default = "one")]
    pub threads: u32,
    /// Detections below this score are discarded.
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    /// The most detections kept per frame (at most 128).
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// Labels of the classes counted (1 to 16); other detections are discarded.
    pub classes: Vec<String>,
    /// Input normalization: tensor value = (pixel - mean) / std. Required for float models;
    /// uint8 models get the raw pixel value when it is absent.
    #[serde(default)]
    pub input_mean: Option<f32>,
    /// See `input_mean`.
    #[serde(default)]
    pub input_std: Option<f32>,
    /// Crop the frame to this region before resizing into the model.
    #[serde(default)]
    pub roi: Option<Roi>,
    /// Anchor decoding for models without a post-processing op (e.g. BlazeFace).
    #[serde(default)]
    pub anchors: Option<AnchorConfig>,
    /// Who turns an SSD's raw heads into detections: `auto` (the Rust head whenever the model
    /// has the TF Object Detection API's post-process tail, which it then cuts off) or
    /// `tflite-op` (always run the model's own `TFLite_Detection_PostProcess` op).
    #[serde(default)]
    pub head: HeadChoice,
    /// Which decoder the model's outputs need: `auto` (from the output shapes), `ssd` (the
    /// post-process op, the Rust SSD head, or raw anchors with `[model.anchors]`) or `yolox`.
    #[serde(default)]
    pub family: ModelFamily,
    /// Interpreters sharing the one loaded model (1 to 16). Above 1, frames go to
    /// single-threaded interpreters in turn (throughput mode; `threads` must then be 1);
    /// at 1, one interpreter runs each frame on `threads` threads (latency mode).
    #[serde(default = "one")]
    pub interpreters: u32,
    /// Inference runtime: `auto` (LiteRT on x86_64 and aarch64, TensorFlow Lite 1.15
    /// elsewhere), `litert` or `tflite`.
    #[serde(default)]
    pub runtime: RuntimeChoice,
    /// Frames in a row whose invoke or decode may fail before the detector counts as failed
    /// (1 to 10000): the signals then run degraded, `/health` says why and the watchdog
    /// restarts the process.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
}

/// The inference runtime (`model.runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeChoice {
    /// LiteRT where its library exists (x86_64, aarch64), TensorFlow Lite 1.15 elsewhere.
    #[default]
    Auto,
    /// LiteRT (`libLiteRt.so`, XNNPACK): several times faster; its run call makes a few
    /// short-lived mallocs per frame.
    Litert,
    /// TensorFlow Lite 1.15, compiled in: no malloc per frame at 1 thread; the only choice on
    /// armv7.
    Tflite,
}

impl RuntimeChoice {
    /// `Auto` resolved for the machine this binary was built for.
    pub fn resolve(self) -> RuntimeChoice {
        match self {
            RuntimeChoice::Auto if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) => {
                RuntimeChoice::Litert
            }
            RuntimeChoice::Auto => RuntimeChoice::Tflite,
            other => other,
        }
    }
}

/// Who decodes an SSD's outputs (`model.head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadChoice {
    /// The Rust head when the graph has the recognised SSD tail, else the model as it is.
    #[default]
    Auto,
    /// The model's own post-process op, as exported.
    TfliteOp,
}

/// The model family, which decides how outputs are decoded (`model.family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFamily {
    /// YOLOX when the one output is `[1, N, 5 + C]` with `N` the cells of the input's stride
    /// 8/16/32 grids (`vision::yolox::matches`), else SSD.
    #[default]
    Auto,
    /// An SSD: the TFLite post-process op, the Rust SSD head, or raw anchors.
    Ssd,
    /// A YOLOX anchor-free head (`vision::yolox`); needs the LiteRT runtime.
    Yolox,
}

fn one() -> u32 {
    1
}
fn default_score() -> f32 {
    0.5
}
fn default_max_detections() -> usize {
    10
}

fn default_max_failures() -> u32 {
    10
}

/// SSD anchor scheme (MediaPipe's `SsdAnchorsCalculator`) and raw-output decoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    /// Feature-map strides, one per layer (BlazeFace short range: 8, 16, 16, 16).
    pub strides: Vec<u32>,
    /// Anchors per feature-map cell.
    #[serde(default = "two")]
    pub per_cell: u32,
    /// Box regressor scale in pixels (BlazeFace short range: 128).
    pub scale: f32,
    /// IoU above which boxes are merged by NMS.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Weighted NMS (MediaPipe's blending) instead of plain suppression.
    #[serde(default = "yes")]
    pub weighted_nms: bool,
}

fn two() -> u32 {
    2
}
fn default_nms_iou() -> f32 {
    0.3
}

/// Multi-object tracker bounds and tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// The most objects tracked at once; new objects past this are dropped and counted.
    #[serde(default = "default_track_capacity")]
    pub capacity: usize,
    /// A lost track (no matching detection) is kept, predicted, for this long, then dropped.
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u64,
    /// Boxes overlapping a track's prediction by this IoU are always candidates to continue
    /// it, whatever the motion gate says.
    #[serde(default = "default_track_iou")]
    pub iou_threshold: f32,
    /// Detections at or above this score are matched first and may start tracks.
    #[serde(default = "default_high_score")]
    pub high_score: f32,
    /// Detections from this score up to `high_score` only continue tracks seen in the
    /// previous frame; below it they are ignored. The model's `score_threshold` must be at or
    /// below it for the second stage to see any.
    #[serde(default = "default_low_score")]
    pub low_score: f32,
    /// Matches before a new track is confirmed (counted on lines and in zones).
    #[serde(default = "default_confirm_hits")]
    pub confirm_hits: u32,
    /// A track that stays within `stationary_distance` of one place this long is stationary
    /// (a parked car); 0 turns the flag off.
    #[serde(default = "default_stationary_ms")]
    pub stationary_ms: u64,
    /// How far a stationary object may drift, in box sizes.
    #[serde(default = "default_stationary_distance")]
    pub stationary_distance: f32,
    /// Detections covering more than this fraction of the frame are ignored: a box that big
    /// is the detector's frame-wide false positive, not a road user.
    #[serde(default = "default_max_box_area")]
    pub max_box_area: f32,
}

fn default_track_capacity() -> usize {
    64
}
fn default_ttl_ms() -> u64 {
    3000
}
fn default_track_iou() -> f32 {
    0.3
}
fn default_high_score() -> f32 {
    0.4
}
fn default_low_score() -> f32 {
    0.1
}
fn default_confirm_hits() -> u32 {
    2
}
fn default_stationary_ms() -> u64 {
    60_000
}
fn default_stationary_distance() -> f32 {
    0.5
}
fn default_max_box_area() -> f32 {
    0.4
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            capacity: default_track_capacity(),
            ttl_ms: default_ttl_ms(),
            iou_threshold: default_track_iou(),
            high_score: default_high_score(),
            low_score: default_low_score(),
            confirm_hits: default_confirm_hits(),
            stationary_ms: default_stationary_ms(),
            stationary_distance: default_stationary_distance(),
            max_box_area: default_max_box_area(),
        }
    }
}

/// The point of a box that zones and lines test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// The box centre.
    Center,
    /// The middle of the bottom edge: where a vehicle or person touches the ground.
    BottomCenter,
}

impl Anchor {
    /// This anchor point of `b`.
    pub fn of(self, b: &crate::geometry::BBox) -> Point {
        match self {
            Anchor::Center => b.center(),
            Anchor::BottomCenter => b.ground_point(),
        }
    }
}

/// A polygon in which objects are counted while they stand in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Zone name.
    pub name: String,
    /// The camera it is drawn on, by name; the first camera when left out.
    #[serde(default)]
    pub camera: Option<String>,
    /// Corners in normalized coordinates, `[[x, y], ...]`, at least 3.
    pub points: Vec<[f32; 2]>,
    /// The point of each box tested against the polygon.
    #[serde(default = "default_zone_anchor")]
    pub anchor: Anchor,
    /// Consecutive frames with an object inside before the zone reports it occupied.
    #[serde(default = "default_enter_frames")]
    pub enter_frames: u32,
    /// The zone stays occupied this long after the last object inside was seen.
    #[serde(default = "default_exit_ms")]
    pub exit_ms: u64,
    /// Keep stationary tracks (parked cars) out of the zone's presence, so they cannot hold
    /// a signal's demand for ever.
    #[serde(default)]
    pub ignore_stationary: bool,
}

fn default_zone_anchor() -> Anchor {
    Anchor::BottomCenter
}
fn default_enter_frames() -> u32 {
    2
}
fn default_exit_ms() -> u64 {
    1000
}

/// Which side of a line counts as "in".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InSide {
    /// Crossing onto the left side, looking from `from` to `to`, counts as "in".
    Left,
    /// Crossing onto the right side, looking from `from` to `to`, counts as "in".
    Right,
}

/// A counting line: each object that crosses it counts once, "in" or "out".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Line name.
    pub name: String,
    /// The camera it is drawn on, by name; the first camera when left out.
    #[serde(default)]
    pub camera: Option<String>,
    /// First end point `[x, y]`.
    pub from: [f32; 2],
    /// Second end point `[x, y]`.
    pub to: [f32; 2],
    /// The side objects move onto to count as "in".
    #[serde(default = "default_in_side", rename = "in")]
    pub in_side: InSide,
    /// The point of each box whose path is tested against the line: `center` by default,
    /// `bottom-center` for vehicles seen from the side.
    #[serde(default = "default_line_anchor")]
    pub anchor: Anchor,
}

fn default_line_anchor() -> Anchor {
    Anchor::Center
}

fn default_in_side() -> InSide {
    InSide::Left
}

/// Summary output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Seconds between summary lines.
    #[serde(default = "default_summary_secs")]
    pub interval_secs: f32,
}

fn default_summary_secs() -> f32 {
    1.0
}

impl Default for SummaryConfig {
    fn default() -> Self {
        Self {
            interval_secs: default_summary_secs(),
        }
    }
}

impl ZoneConfig {
    /// The polygon as points.
    pub fn polygon(&self) -> impl Iterator<Item = Point> + '_ {
        self.points.iter().map(|p| Point::new(p[0], p[1]))
    }
}

impl Config {
    /// Reads, parses and validates a config file, resolving model and frame paths.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.validate()?;
        config.resolve_paths(&Dirs::from_env());
        Ok(config)
    }

    /// Parses TOML text; `path` only names the file in errors. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Syntax {
                path: path.into(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: describe_toml_error(&inner, text),
            }
        })
    }

    /// The index of the camera named `name`; the first camera for `None`.
    pub fn camera_index(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => (!self.cameras.is_empty()).then_some(0),
            Some(name) => self.cameras.iter().position(|c| c.name == name),
        }
    }

    /// Checks every value and bound; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cameras.is_empty() {
            return Err(invalid("cameras", "at least one camera is needed"));
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            cam.validate(&format!("cameras[{i}]"))?;
        }
        self.model.validate()?;
        for (i, cam) in self.cameras.iter().enumerate() {
            let tiled = cam.tiles.is_some_and(|t| t.count() > 1);
            if tiled && self.model.interpreters > 1 {
                // A pool's decode trails its invoke by a frame or more, so the tiles of one
                // frame would come back interleaved with the next frame's.
                return Err(invalid(
                    format!("cameras[{i}].tiles"),
                    "tiling needs model.interpreters = 1 (a pool of interpreters returns \
                     detections frames late); use model.threads to speed up each invoke",
                ));
            }
        }
        self.tracker.validate()?;
        if self.zones.len() > MAX_ZONES {
            return Err(invalid("zones", format!("at most {MAX_ZONES} zones")));
        }
        for (i, zone) in self.zones.iter().enumerate() {
            zone.validate(&format!("zones[{i}]"))?;
        }
        if self.lines.len() > MAX_LINES {
            return Err(invalid("lines", format!("at most {MAX_LINES} lines")));
        }
        for (i, line) in self.lines.iter().enumerate() {
            line.validate(&format!("lines[{i}]"))?;
        }
        check_unique_names("zones", self.zones.iter().map(|z| z.name.as_str()))?;
        check_unique_names("lines", self.lines.iter().map(|l| l.name.as_str()))?;
        check_unique_names("cameras", self.cameras.iter().map(|c| c.name.as_str()))?;
        let drawn_on = self
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (format!("zones[{i}].camera"), z.camera.as_deref()))
            .chain(
                self.lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("lines[{i}].camera"), l.camera.as_deref())),
            );
        for (key, camera) in drawn_on {
            if let Some(name) = camera {
                if self.camera_index(Some(name)).is_none() {
                    return Err(invalid(key, format!("no camera is named `{name}`")));
                }
            }
        }
        crate::detector_outputs::validate(self)?;
        let s = self.summary.interval_secs;
        if !(0.1..=3600.0).contains(&s) {
            return Err(invalid(
                "summary.interval_secs",
                "must be between 0.1 and 3600",
            ));
        }
        check_range("control.tick_ms", self.control.tick_ms, 10, 250)?;
        check_range(
            "control.camera_stale_ms",
            self.control.camera_stale_ms,
            100,
            600_000,
        )?;
        check_range(
            "control.shutdown_limit_s",
            self.control.shutdown_limit_s,
            10.0,
            600.0,
        )?;
        self.control.validate_socket()?;
        self.watchdog.validate()?;
        if self.health.enabled && self.health.bind.parse::<std::net::SocketAddr>().is_err() {
            let message = format!(
                "`{}` is not an address like 127.0.0.1:8787",
                self.health.bind
            );
            return Err(invalid("health.bind", message));
        }
        check_range(
            "health.max_connections",
            self.health.max_connections,
            1,
            256,
        )?;
        self.mqtt.validate(&self.site)?;
        if self.mqtt.enabled {
            self.check_topic_names()?;
        }
        if let Some(wd) = &self.control.hardware_watchdog {
            if !(2..=60).contains(&wd.timeout_s) {
                return Err(invalid(
                    "control.hardware_watchdog.timeout_s",
                    format!("{} is not in 2..=60", wd.timeout_s),
                ));
            }
            if self.signals.is_none() {
                return Err(invalid(
                    "control.hardware_watchdog",
                    "the site has no [signals]: the control loop pings it",
                ));
            }
        }
        if self.signals.is_none() && self.control.heartbeat.is_some() {
            return Err(invalid(
                "control.heartbeat",
                "the site has no [signals] to be healthy for",
            ));
        }
        self.view.validate(&self.health)?;
        self.snapshots.validate(self)?;
        if let Some(bins) = &self.bins {
            bins.validate()?;
        }
        if let Some(signals) = &self.signals {
            let zones: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
            let classes: Vec<&str> = self.model.classes.iter().map(|c| c.as_str()).collect();
            let plan = crate::signal::SignalPlan::new(signals, &zones, &classes)?;
            if let Some(hb) = &self.control.heartbeat {
                if let Some((_, key)) = signals.pins().into_iter().find(|(p, _)| *p == hb.pin) {
                    return Err(invalid(
                        "control.heartbeat.pin",
                        format!("pin {} is already used by {key}", hb.pin),
                    ));
                }
            }
            let sensed = signals
                .pins()
                .iter()
                .any(|(_, key)| key.ends_with(".sense.pin"));
            let ticks2 = 2 * self.control.tick_ms;
            if sensed && u64::from(signals.sense_conflict_ms) < ticks2 {
                return Err(invalid(
                    "signals.sense_conflict_ms",
                    format!(
                        "{} ms is under two control ticks ({ticks2} ms): one bad reading of the \
                         sense inputs would trip",
                        signals.sense_conflict_ms
                    ),
                ));
            }
            // Stopping, or a watchdog breach, clears the running phase within the limit; a
            // limit shorter than a clearance would cut it short. Each of the request, the
            // flashing don't walk, the amber and the all-red ends at the next tick.
            let (phase, needed) = plan.longest_clearance();
            let ticks = 4.0 * self.control.tick_ms as f32 / 1000.0;
            let limit = self.control.shutdown_limit_s;
            if limit + 1e-3 < needed.as_secs_f32() + ticks {
                return Err(invalid(
                    "control.shutdown_limit_s",
                    format!(
                        "{limit} s cannot clear phase `{phase}` (flashing don't walk, amber and \
                         all-red take {:.1} s, and up to {ticks:.1} s more for the ticks)",
                        needed.as_secs_f32()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Zone, line, group and class names become MQTT topic levels: no `/`, `+`, `#`, and
    /// short enough that every topic fits its fixed buffer.
    fn check_topic_names(&self) -> Result<(), ConfigError> {
        let mut all: Vec<(String, String)> = Vec::new();
        let mut add = |key: &str, names: &mut dyn Iterator<Item = &str>| {
            for (i, n) in names.enumerate() {
                all.push((format!("{key}[{i}]"), n.to_string()));
            }
        };
        add("zones", &mut self.zones.iter().map(|z| z.name.as_str()));
        add("lines", &mut self.lines.iter().map(|l| l.name.as_str()));
        let groups = self.signals.iter().flat_map(|s| s.groups.iter());
        add("signals.groups", &mut groups.map(|g| g.name.as_str()));
        for (i, class) in self.model.classes.iter().enumerate() {
            all.push((format!("model.classes[{i}]"), class.clone()));
        }
        for (key, name) in all {
            if name.contains(['/', '+', '#', '\0']) || name.len() > MQTT_NAME_MAX {
                let message = format!(
                    "`{name}` is an MQTT topic level with mqtt.enabled: at most \
                     {MQTT_NAME_MAX} bytes, no `/`, `+`, `#`"
                );
                let key = if key.starts_with("model.") {
                    key
                } else {
                    format!("{key}.name")
                };
                return Err(invalid(key, message));
            }
        }
        Ok(())
    }

    /// Makes relative model, label and replay paths absolute against `dirs`.
    pub fn resolve_paths(&mut self, dirs: &Dirs) {
        self.model.file = dirs.models.join(&self.model.file);
        self.model.labels = dirs.models.join(&self.model.labels);
        for cam in &mut self.cameras {
            cam.path = if cam.path == Path::new(".") {
                dirs.frames.clone()
            } else {
                dirs.frames.join(&cam.path)
            };
        }
    }

    /// The resolved config as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Folders that relative model and frame paths are resolved against.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Models and labels.
    pub models: PathBuf,
    /// Replay frames.
    pub frames: PathBuf,
}

impl Dirs {
    /// `$EDGEWATCH_MODEL_DIR` and `$EDGEWATCH_FRAMES_DIR`, or the folders `models/fetch.sh` fills.
    pub fn from_env() -> Dirs {
        let dir = |var, default| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Dirs {
            models: dir(MODEL_DIR_ENV, DEFAULT_MODEL_DIR),
            frames: dir(FRAMES_DIR_ENV, DEFAULT_FRAMES_DIR),
        }
    }
}

fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

fn check_unique_names<'a>(
    key: &str,
    names: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), ConfigError> {
    for (i, name) in names.clone().enumerate() {
        if name.trim().is_empty() {
            return Err(invalid(format!("{key}[{i}].name"), "must not be empty"));
        }
        if names.clone().take(i).any(|n| n == name) {
            return Err(invalid(
                format!("{key}[{i}].name"),
                format!("`{name}` is used twice"),
            ));
        }
    }
    Ok(())
}

fn check_range<T: PartialOrd + fmt::Display + Copy>(
    key: impl fmt::Display,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    // `!(a <= b)` rather than `a > b` so NaN is rejected too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(lo <= value && value <= hi) {
        return Err(invalid(key, format!("{value} is out of range {lo}..={hi}")));
    }
    Ok(())
}

fn check_point(key: impl fmt::Display, p: [f32; 2]) -> Result<(), ConfigError> {
    if !p.iter().all(|v| (0.0..=1.0).contains(v)) {
        return Err(invalid(
            key,
            format!(
                "[{}, {}] is outside the frame: normalized coordinates lie in 0..=1",
                p[0], p[1]
            ),
        ));
    }
    Ok(())
}

impl CameraConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_range(format!("{key}.width"), self.width, 2, 8192)?;
        check_range(format!("{key}.height"), self.height, 2, 8192)?;
        let format = self.capture_format();
        if format.delivered().needs_even_size()
            && (!self.width.is_multiple_of(2) || !self.height.is_multiple_of(2))
        {
            return Err(invalid(
                format!("{key}.pixel_format"),
                format!(
                    "{format} needs an even width and height, got {}x{}",
                    self.width, self.height
                ),
            ));
        }
        check_range(format!("{key}.fps"), self.fps, 0.0, 240.0)?;
        let (field, empty, formats): (&str, bool, &[CaptureFormat]) = match self.source {
            SourceKind::Replay => (
                "path",
                self.path.as_os_str().is_empty(),
                &[
                    CaptureFormat::Rgb24,
                    CaptureFormat::Yuyv,
                    CaptureFormat::Nv12,
                ],
            ),
            SourceKind::V4l2 => (
                "device",
                self.device.is_empty(),
                &[
                    CaptureFormat::Rgb24,
                    CaptureFormat::Yuyv,
                    CaptureFormat::Nv12,
                    CaptureFormat::Yu12,
                    CaptureFormat::Grey,
                    CaptureFormat::Mjpeg,
                ],
            ),
            SourceKind::Http => ("url", self.url.is_empty(), &[CaptureFormat::Mjpeg]),
        };
        if empty {
            return Err(invalid(format!("{key}.{field}"), "must not be empty"));
        }
        if !formats.contains(&format) {
            let names: Vec<String> = formats.iter().map(|f| f.to_string()).collect();
            return Err(invalid(
                format!("{key}.pixel_format"),
                format!(
                    "{format} is not available from this source; use one of {}",
                    names.join(", ")
                ),
            ));
        }
        if self.source == SourceKind::Http && !self.url.starts_with("http://") {
            return Err(invalid(
                format!("{key}.url"),
                "must start with http:// (TLS is not supported; keep cameras on a closed network)",
            ));
        }
        check_range(format!("{key}.max_frames"), self.max_frames, 1, 4096)?;
        check_range(format!("{key}.buffers"), self.buffers, 2, 32)?;
        check_range(format!("{key}.timeout_ms"), self.timeout_ms, 50, 600_000)?;
        check_range(
            format!("{key}.reconnect_min_ms"),
            self.reconnect_min_ms,
            1,
            600_000,
        )?;
        check_range(
            format!("{key}.reconnect_max_ms"),
            self.reconnect_max_ms,
            self.reconnect_min_ms,
            3_600_000,
        )?;
        check_range(
            format!("{key}.connect_timeout_ms"),
            self.connect_timeout_ms,
            10,
            600_000,
        )?;
        check_range(
            format!("{key}.max_frame_kib"),
            self.max_frame_kib,
            16,
            65_536,
        )?;
        check_range(format!("{key}.weight"), self.weight, 1, 16)?;
        if let Some(t) = &self.tiles {
            check_range(format!("{key}.tiles.cols"), t.cols, 1, 4)?;
            check_range(format!("{key}.tiles.rows"), t.rows, 1, 4)?;
            check_range(format!("{key}.tiles.overlap"), t.overlap, 0.0, 0.5)?;
        }
        Ok(())
    }
}

impl ModelConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("model.threads", self.threads, 1, 16)?;
        check_range("model.max_failures", self.max_failures, 1, 10_000)?;
        check_range("model.score_threshold", self.score_threshold, 0.0, 1.0)?;
        check_range(
            "model.max_detections",
            self.max_detections,
            1,
            MAX_DETECTIONS,
        )?;
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(invalid(
                "model.classes",
                format!("list 1 to {MAX_CLASSES} labels to count"),
            ));
        }
        check_unique_names("model.classes", self.classes.iter().map(|s| s.as_str()))?;
        if let Some(std) = self.input_std {
            if !(std.is_finite() && std > 0.0) {
                return Err(invalid("model.input_std", "must be a positive number"));
            }
        }
        if self.input_mean.is_some() != self.input_std.is_some() {
            return Err(invalid(
                "model.input_mean",
                "give input_mean and input_std together",
            ));
        }
        if let Some(roi) = self.roi {
            let ok = roi.x >= 0.0
                && roi.y >= 0.0
                && roi.width > 0.0
                && roi.height > 0.0
                && roi.x + roi.width <= 1.0 + 1e-6
                && roi.y + roi.height <= 1.0 + 1e-6;
            if !ok {
                return Err(invalid(
                    "model.roi",
                    "must be a non-empty rectangle inside 0..=1",
                ));
            }
        }
        if let Some(a) = &self.anchors {
            if a.strides.is_empty() || a.strides.iter().any(|&s| s == 0 || s > 512) {
                return Err(invalid(
                    "model.anchors.strides",
                    "give 1 or more strides in 1..=512",
                ));
            }
            check_range("model.anchors.per_cell", a.per_cell, 1, 16)?;
            check_range("model.anchors.scale", a.scale, 1.0, 8192.0)?;
            check_range("model.anchors.nms_iou", a.nms_iou, 0.0, 1.0)?;
        }
        if self.family == ModelFamily::Yolox && self.anchors.is_some() {
            return Err(invalid(
                "model.anchors",
                "applies to raw-output SSD models, not to model.family = \"yolox\"",
            ));
        }
        check_range("model.interpreters", self.interpreters, 1, 16)?;
        if self.interpreters > 1 && self.threads != 1 {
            return Err(invalid(
                "model.threads",
                "must be 1 when model.interpreters > 1 (each interpreter of the pool runs on one thread)",
            ));
        }
        Ok(())
    }
}

impl WatchdogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("watchdog.period_ms", self.period_ms, 10, 10_000)?;
        check_range(
            "watchdog.inference_limit_ms",
            self.inference_limit_ms,
            100,
            600_000,
        )?;
        check_range(
            "watchdog.camera_limit_ms",
            self.camera_limit_ms,
            100,
            600_000,
        )?;
        check_range(
            "watchdog.control_limit_ms",
            self.control_limit_ms,
            100,
            600_000,
        )?;
        check_range(
            "watchdog.latency_budget_ms",
            self.latency_budget_ms,
            1,
            600_000,
        )?;
        check_range("watchdog.latency_window_s", self.latency_window_s, 1, 3600)?;
        check_range("watchdog.rss_limit_mib", self.rss_limit_mib, 8, 1 << 20)?;
        check_range(
            "watchdog.rss_growth_limit_mib",
            self.rss_growth_limit_mib,
            1,
            1 << 20,
        )?;
        check_range(
            "watchdog.rss_trend_window_s",
            self.rss_trend_window_s,
            10,
            86_400,
        )?;
        check_range("watchdog.restart_budget", self.restart_budget, 0, 100)?;
        check_range(
            "watchdog.restart_window_s",
            self.restart_window_s,
            1,
            86_400,
        )?;
        check_range("watchdog.log_interval_s", self.log_interval_s, 1, 86_400)?;
        check_range("watchdog.freeze_s", self.freeze_s, 0.5, 3600.0)?;
        check_range("watchdog.dark_s", self.dark_s, 0.5, 3600.0)?;
        Ok(())
    }
}

impl TrackerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("tracker.capacity", self.capacity, 1, 1024)?;
        check_range("tracker.ttl_ms", self.ttl_ms, 1, 600_000)?;
        check_range("tracker.iou_threshold", self.iou_threshold, 0.0, 1.0)?;
        check_range("tracker.high_score", self.high_score, 0.0, 1.0)?;
        check_range("tracker.low_score", self.low_score, 0.0, self.high_score)?;
        check_range("tracker.confirm_hits", self.confirm_hits, 1, 100)?;
        check_range("tracker.stationary_ms", self.stationary_ms, 0, 86_400_000)?;
        check_range(
            "tracker.stationary_distance",
            self.stationary_distance,
            0.0,
            100.0,
        )?;
        check_range("tracker.max_box_area", self.max_box_area, 0.01, 1.0)?;
        Ok(())
    }
}

impl ZoneConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.points.len() < 3 {
            return Err(invalid(
                format!("{key}.points"),
                "a polygon needs at least 3 points",
            ));
        }
        if self.points.len() > 64 {
            return Err(invalid(
                format!("{key}.points"),
                "a polygon may have at most 64 points",
            ));
        }
        for (j, p) in self.points.iter().enumerate() {
            check_point(format!("{key}.points[{j}]"), *p)?;
        }
        check_range(format!("{key}.enter_frames"), self.enter_frames, 1, 1000)?;
        check_range(format!("{key}.exit_ms"), self.exit_ms, 0, 3_600_000)?;
        Ok(())
    }
}

impl LineConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_point(format!("{key}.from"), self.from)?;
        check_point(format!("{key}.to"), self.to)?;
        if self.from == self.to {
            return Err(invalid(key, "`from` and `to` are the same point"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[cameras]]
        name = "road"
        source = "replay"
        path = "."
        width = 256
        height = 256

        [model]
        file = "m.tflite"
        labels = "l.txt"
        classes = ["car", "person"]

        [[zones]]
        name = "road"
        points = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]
    "#;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(text, Path::new("site.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn mqtt_is_off_by_default_and_its_keys_are_checked() {
        let c = load_str(MINIMAL).unwrap();
        assert!(!c.mqtt.enabled);
        assert_eq!(c.mqtt.prefix(&c.site), format!("edgewatch/{}", c.site));
        let on = format!("{MINIMAL}\n[mqtt]\nenabled = true\nhost = \"broker.lan\"\n");
        let c = load_str(&on).unwrap();
        assert_eq!((c.mqtt.port, c.mqtt.queue_capacity), (1883, 256));
        let err = |extra: &str| load_str(&format!("{on}{extra}\n")).unwrap_err().to_string();
        assert!(err("prefix = \"a/#\"").starts_with("mqtt.prefix:"));
        assert!(err("prefix = \"a/\"").starts_with("mqtt.prefix:"));
        assert!(err("password = \"x\"").starts_with("mqtt.password: needs mqtt.username"));
        assert!(err("ca_file = \"ca.pem\"").starts_with("mqtt.ca_file: is only used"));
        assert!(err("tls = true\nclient_cert = \"c.pem\"").starts_with("mqtt.client_cert:"));
        assert!(err("queue_capacity = 0").starts_with("mqtt.queue_capacity: 0 is out of range"));
        let big = err("queue_capacity = 4096\nmax_message_kib = 256");
        assert!(big.contains("over 16 MiB"), "{big}");
        assert!(err("reconnect_min_ms = 5000\nreconnect_max_ms = 100")
            .starts_with("mqtt.reconnect_max_ms:"));
        assert!(err("port = 0").starts_with("mqtt.port:"));
        assert!(err("bogus = 1").contains("unknown field"));
    }

    #[test]
    fn bins_are_on_when_the_section_is_present_and_their_keys_are_checked() {
        assert!(load_str(MINIMAL).unwrap().bins().is_none());
        let c = load_str(&format!("{MINIMAL}\n[bins]\n")).unwrap();
        let b = c.bins().expect("present means on");
        assert_eq!((b.interval_min, b.retention_days), (15, 90));
        assert_eq!(b.dir, Path::new("/var/lib/edgewatch/bins"));
        let off = load_str(&format!("{MINIMAL}\n[bins]\nenabled = false\n")).unwrap();
        assert!(off.bins().is_none());
        let err = |extra: &str| {
            load_str(&format!("{MINIMAL}\n[bins]\n{extra}\n"))
                .unwrap_err()
                .to_string()
        };
        let e = err("interval_min = 7");
        assert!(e.starts_with("bins.interval_min: 7 does not divide"), "{e}");
        assert!(err("interval_min = 0").starts_with("bins.interval_min:"));
        assert!(err("interval_min = 120").starts_with("bins.interval_min:"));
        assert!(err("retention_days = 0").starts_with("bins.retention_days: 0 is out of range"));
        assert!(err("max_bytes = 10").starts_with("bins.max_bytes:"));
        assert!(err("dir = \"\"").starts_with("bins.dir:"));
        let e = err("interval = 5");
        assert!(e.contains("bins") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn with_mqtt_on_names_must_be_topic_levels() {
        let zone = "\n[[zones]]\nname = \"a/b\"\npoints = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n";
        // Fine without MQTT.
        load_str(&format!("{MINIMAL}{zone}")).unwrap();
        let e = load_str(&format!("{MINIMAL}{zone}\n[mqtt]\nenabled = true\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("zones[1].name: `a/b` is an MQTT topic level"),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load_str(MINIMAL).unwrap();
        assert_eq!(c.model.threads, 1);
        assert_eq!(c.tracker.capacity, 64);
        assert_eq!(c.cameras[0].capture_format(), CaptureFormat::Rgb24);
        assert!(c.cameras[0].looping);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL
            .replace("threads", "x")
            .replace("[model]", "[model]\nthreadz = 2");
        let err = load_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("model.threadz") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn view_is_off_by_default_and_its_bounds_are_named() {
        assert!(!load_str(MINIMAL).unwrap().view.enabled);
        let view = |extra: &str| load_str(&format!("{MINIMAL}\n{extra}"));
        let c = view("[view]\nenabled = true\nfps = 1.5\nquality = 80").unwrap();
        assert_eq!(
            (c.view.fps, c.view.quality, c.view.max_viewers),
            (1.5, 80, 2)
        );
        let cases = [
            ("[view]\nfps = 0.0", "view.fps: must be between 0.1 and 10"),
            ("[view]\nquality = 100", "view.quality: 100 is out of range 10..=95"),
            ("[view]\nmax_viewers = 0", "view.max_viewers: 0 is out of range 1..=64"),
            (
                "[view]\nenabled = true\n[health]\nenabled = false",
                "view.enabled: the view is served by the health endpoint: set health.enabled = true",
            ),
        ];
        for (extra, message) in cases {
            assert_eq!(view(extra).unwrap_err().to_string(), message, "{extra}");
        }
        let err = view("[view]\nenabled = true\nmax_viewers = 8\n[health]\nmax_connections = 8")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("view.max_viewers: 8 streams would take every one of the 8"),
            "{err}"
        );
    }

    #[test]
    fn short_polygon_is_named() {
        let text = MINIMAL.replace(", [1.0, 1.0]]", "]");
        let err = load_str(&text).unwrap_err().to_string();
        assert_eq!(err, "zones[0].points: a polygon needs at least 3 points");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let cases = [
            ("width = 256", "width = 0", "cameras[0].width"),
            (
                "labels = \"l.txt\"",
                "labels = \"l.txt\"\nmax_detections = 500",
                "model.max_detections",
            ),
            (
                "labels = \"l.txt\"",
                "labels = \"l.txt\"\nscore_threshold = 1.5",
                "model.score_threshold",
            ),
            (
                "labels = \"l.txt\"",
                "labels = \"l.txt\"\nthreads = 0",
                "model.threads",
            ),
            ("[1.0, 1.0]]", "[1.0, 1.5]]", "zones[0].points[2]"),
            ("height = 256", "height = 256\nfps = -1.0", "cameras[0].fps"),
            (
                "height = 256",
                "height = 255\npixel_format = \"nv12\"",
                "cameras[0].pixel_format",
            ),
        ];
        for (from, to, key) in cases {
            let err = load_str(&MINIMAL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = load_str(&MINIMAL.replace("width = 256", "width = \"wide\"")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cameras[0].width") && msg.contains("line"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = format!("{MINIMAL}\n[[zones]]\nname = \"road\"\npoints = [[0,0],[1,0],[1,1]]\n");
        let err = load_str(&text).unwrap_err().to_string();
        assert!(err.starts_with("zones[1].name"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_dirs() {
        let mut c = load_str(MINIMAL).unwrap();
        c.resolve_paths(&Dirs {
            models: "/m".into(),
            frames: "/f".into(),
        });
        assert_eq!(c.model.file, Path::new("/m/m.tflite"));
        assert_eq!(c.cameras[0].path, Path::new("/f"));
    }

    #[test]
    fn detector_head_and_interpreter_pool_keys() {
        let c = load_str(MINIMAL).unwrap();
        assert_eq!((c.model.head, c.model.interpreters), (HeadChoice::Auto, 1));
        assert_eq!(c.model.family, ModelFamily::Auto);
        let with = |extra: &str| {
            load_str(&MINIMAL.replace(
                "labels = \"l.txt\"",
                &format!("labels = \"l.txt\"\n{extra}"),
            ))
        };
        let c = with("head = \"tflite-op\"\ninterpreters = 2").unwrap();
        assert_eq!(
            (c.model.head, c.model.interpreters),
            (HeadChoice::TfliteOp, 2)
        );
        for (text, family) in [("ssd", ModelFamily::Ssd), ("yolox", ModelFamily::Yolox)] {
            let c = with(&format!("family = \"{text}\"")).unwrap();
            assert_eq!(c.model.family, family);
        }
        for (extra, key) in [
            ("head = \"rust\"", "model.head"),
            ("interpreters = 0", "model.interpreters"),
            ("interpreters = 17", "model.interpreters"),
            ("interpreters = 2\nthreads = 2", "model.threads"),
            ("family = \"yolo\"", "model.family"),
            (
                "family = \"yolox\"\n[model.anchors]\nstrides = [8]\nscale = 128.0",
                "model.anchors",
            ),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }
    #[test]
    fn camera_tiles_are_optional_and_checked() {
        assert_eq!(load_str(MINIMAL).unwrap().cameras[0].tiles, None);
        let with = |tiles: &str, model: &str| {
            load_str(
                &MINIMAL
                    .replace("height = 256", &format!("height = 256\ntiles = {tiles}"))
                    .replace(
                        "labels = \"l.txt\"",
                        &format!("labels = \"l.txt\"\n{model}"),
                    ),
            )
        };
        let c = with("{ cols = 2, rows = 1 }", "").unwrap();
        let t = c.cameras[0].tiles.unwrap();
        assert_eq!((t.cols, t.rows, t.overlap, t.count()), (2, 1, 0.2, 2));
        assert!(t.full_frame, "the whole region is a pass by default");
        assert_eq!(t.invokes(), 3);
        for (tiles, model, key) in [
            ("{ cols = 0, rows = 1 }", "", "cameras[0].tiles.cols"),
            ("{ cols = 2, rows = 5 }", "", "cameras[0].tiles.rows"),
            (
                "{ cols = 2, rows = 2, overlap = 0.6 }",
                "",
                "cameras[0].tiles.overlap",
            ),
            ("{ cols = 2, rows = 1, size = 3 }", "", "cameras[0].tiles"),
            (
                "{ cols = 2, rows = 1 }",
                "interpreters = 2",
                "cameras[0].tiles",
            ),
        ] {
            let err = with(tiles, model).unwrap_err().to_string();
            assert!(err.contains(key), "{tiles} {model}: {err}");
        }
        // One tile is the untiled pipeline, which a pool can run.
        assert!(with("{ cols = 1, rows = 1 }", "interpreters = 2").is_ok());
    }

    #[test]
    fn runtime_key_chooses_the_inference_runtime() {
        let c = load_str(MINIMAL).unwrap();
        assert_eq!(c.model.runtime, RuntimeChoice::Auto);
        let expected = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            RuntimeChoice::Litert
        } else {
            RuntimeChoice::Tflite
        };
        assert_eq!(c.model.runtime.resolve(), expected);
        let with = |v: &str| {
            load_str(&MINIMAL.replace(
                "labels = \"l.txt\"",
                &format!("labels = \"l.txt\"\nruntime = \"{v}\""),
            ))
        };
        assert_eq!(
            with("tflite").unwrap().model.runtime.resolve(),
            RuntimeChoice::Tflite
        );
        assert_eq!(
            with("litert").unwrap().model.runtime.resolve(),
            RuntimeChoice::Litert
        );
        let err = with("onnx").unwrap_err().to_string();
        assert!(err.contains("model.runtime"), "{err}");
    }
}
