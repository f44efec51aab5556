//! The live view: what the cameras and the tracker see, drawn and JPEG-encoded off the frame
//! loop, for `/snapshot.jpg`, `/stream.mjpeg`, the status page and `edgewatch snapshot`.
//!
//! The frame loop only ever copies a frame into a fixed slot ([`slot`]), and only when a viewer
//! asked for one and at most `view.fps` times a second; it never waits. One viewer thread
//! takes the frames, draws them ([`render`]) and encodes them into buffers kept from frame to
//! frame; HTTP workers copy the newest JPEG out. Nothing is rendered while nobody watches.

pub mod events;
pub mod render;
pub mod shot;
pub mod slot;
pub mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::SignalStatus;
use events::{Event, EventKind};
use render::{CameraLayout, Renderer};
use slot::{ViewDemand, ViewFrame};
use store::SnapshotStore;

/// Events waiting for their frame in the viewer thread; more are dropped (counted).
const PENDING_EVENTS: usize = 16;

/// How long a request for frames lasts: a snapshot's, or a stream's since its last frame.
const DEMAND_HOLD: Duration = Duration::from_secs(3);
/// How long a snapshot waits for a fresh frame.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);
/// How often the viewer thread looks for frames while one is wanted.
const POLL: Duration = Duration::from_millis(20);

/// Why a view could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// No camera has that name.
    #[error("no camera is named `{0}`")]
    UnknownCamera(String),
    /// No frame came in time (the camera is offline, or the pipeline has not started).
    #[error("no frame from camera `{0}` yet")]
    NoFrame(String),
    /// `view.max_viewers` streams are already open.
    #[error("{0} viewers already watching (view.max_viewers)")]
    TooManyViewers(usize),
    /// The frame could not be converted to RGB.
    #[error("camera `{0}`: {1}")]
    Convert(String, crate::capture::convert::ConvertError),
    /// The JPEG encoder failed, or the JPEG would not fit its buffer.
    #[error("camera `{0}`: JPEG encoding failed: {1}")]
    Encode(String, String),
    /// The output (a response buffer or a file) refused the bytes.
    #[error("writing the JPEG: {0}")]
    Io(#[from] std::io::Error),
    /// The viewer thread could not be started.
    #[error("cannot start the viewer thread: {0}")]
    Thread(std::io::Error),
}

/// What the viewer has done; shown in `/metrics`.
#[derive(Debug, Default)]
pub struct ViewCounters {
    /// Frames drawn and encoded (annotated and raw).
    pub rendered: AtomicU64,
    /// Frames whose conversion or encoding failed.
    pub failed: AtomicU64,
    /// Streams refused because `view.max_viewers` were open.
    pub refused: AtomicU64,
    /// Streams dropped because the client did not read in time.
    pub dropped_slow: AtomicU64,
}

/// The newest JPEGs of one camera.
#[derive(Debug)]
struct Latest {
    jpeg: Vec<u8>,
    seq: u64,
    at: Option<Instant>,
    raw: Vec<u8>,
    raw_seq: u64,
    raw_at: Option<Instant>,
}

/// One camera as the viewer and the HTTP workers share it.
#[derive(Debug)]
struct CameraView {
    name: String,
    demand: Arc<ViewDemand>,
    /// Milliseconds since the viewer's epoch until which annotated (raw) frames are wanted.
    want_until: AtomicU64,
    raw_until: AtomicU64,
    latest: Mutex<Latest>,
    ready: Condvar,
}

/// The live view of every camera: demand, newest JPEGs and counters.
#[derive(Debug)]
pub struct Viewer {
    cameras: Vec<CameraView>,
    period: Duration,
    max_viewers: usize,
    max_jpeg: usize,
    viewers: AtomicUsize,
    epoch: Instant,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    /// What the viewer has done.
    pub counters: ViewCounters,
}

/// The viewer thread's own state for one camera.
struct Drawing {
    output: triple_buffer::Output<ViewFrame>,
    renderer: Renderer,
    scratch: Vec<u8>,
    /// The newest frame taken from the slot.
    seq: u64,
}

/// Where event snapshots go: the events the frame loop posts, and the folder.
#[derive(Debug)]
pub struct EventSink {
    /// Events from the frame loop (a bounded queue).
    pub queue: std::sync::mpsc::Receiver<Event>,
    /// The snapshot folder.
    pub store: SnapshotStore,
    /// Per `snapshots.events` entry: `zone-NAME` or `line-NAME`, for file names.
    pub rules: Vec<String>,
    /// Counted class labels.
    pub classes: Vec<String>,
    /// Save a frame of every camera on faults.
    pub faults: bool,
    /// This process started after a watchdog restart.
    pub restarted: bool,
    /// Where the frame loop says the detector failed (for fault snapshots).
    pub feed: Option<Arc<crate::control::SceneFeed>>,
    /// Events dropped (queue or pending list full); shared with the frame loop's posts.
    pub dropped: Arc<AtomicU64>,
}

/// How the viewer runs.
#[derive(Debug)]
pub struct ViewerOptions {
    /// The pipeline's publish rate (`view.fps`), used to judge whether a JPEG is fresh.
    pub fps: f32,
    /// JPEG quality.
    pub quality: u8,
    /// Most streams at once.
    pub max_viewers: usize,
    /// The signal groups to draw, when the site has signals.
    pub signals: Option<Arc<SignalStatus>>,
    /// Event snapshots, when `[snapshots]` has events.
    pub events: Option<EventSink>,
}

/// A camera's slot output and layout, handed from the pipeline to [`Viewer::start`].
#[derive(Debug)]
pub struct ViewFeed {
    /// The viewer's end of the camera's slot.
    pub output: triple_buffer::Output<ViewFrame>,
    /// What the pipeline and viewer share about demand.
    pub demand: Arc<ViewDemand>,
    /// The camera's size, zones and lines.
    pub layout: CameraLayout,
}

/// Largest JPEG kept for a frame of `width` x `height`: one byte a pixel (a quality-95 JPEG
/// of a street scene takes well under half that), and at least 64 KiB.
pub fn max_jpeg_bytes(width: u32, height: u32) -> usize {
    (width as usize * height as usize).max(64 * 1024)
}

/// Encodes `rgb` (`width` x `height`) into `out`, which is cleared first and must not need to
/// grow past `limit`.
pub fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    out.clear();
    let encoder = jpeg_encoder::Encoder::new(&mut *out, quality);
    encoder
        .encode(
            rgb,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("{} bytes, more than the {limit} kept", out.len()));
    }
    Ok(())
}

/// The running viewer thread; stops when dropped.
#[derive(Debug)]
pub struct ViewerThread {
    viewer: Arc<Viewer>,
    handle: Option<JoinHandle<()>>,
}

impl ViewerThread {
    /// The shared viewer.
    pub fn viewer(&self) -> &Arc<Viewer> {
        &self.viewer
    }
}

impl Drop for ViewerThread {
    fn drop(&mut self) {
        self.viewer.stop.store(true, Relaxed);
        self.viewer.wake.1.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Holds one of the `view.max_viewers` stream places; gives it back when dropped.
#[derive(Debug)]
pub struct Watching<'a>(&'a Viewer);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Relaxed);
    }
}

impl Viewer {
    /// Starts the viewer thread over `feeds` (one per camera, in config order).
    pub fn start(feeds: Vec<ViewFeed>, options: ViewerOptions) -> Result<ViewerThread, ViewError> {
        let ViewerOptions {
            fps,
            quality,
            max_viewers,
            signals,
            events,
        } = options;
        let max_jpeg = feeds
            .iter()
            .map(|f| max_jpeg_bytes(f.layout.format.width, f.layout.format.height))
            .max()
            .unwrap_or(0);
        let mut cameras = Vec::with_capacity(feeds.len());
        let mut drawings = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let limit = max_jpeg_bytes(feed.layout.format.width, feed.layout.format.height);
            cameras.push(CameraView {
                name: feed.layout.name.clone(),
                demand: feed.demand,
                want_until: AtomicU64::new(0),
                raw_until: AtomicU64::new(0),
                latest: Mutex::new(Latest {
                    jpeg: Vec::with_capacity(limit),
                    seq: 0,
                    at: None,
                    raw: Vec::with_capacity(limit),
                    raw_seq: 0,
                    raw_at: None,
                }),
                ready: Condvar::new(),
            });
            drawings.push(Drawing {
                output: feed.output,
                renderer: Renderer::new(feed.layout),
                scratch: Vec::with_capacity(limit),
                seq: 0,
            });
        }
        let viewer = Arc::new(Viewer {
            cameras,
            period: Duration::from_secs_f32(1.0 / fps),
            max_viewers,
            max_jpeg,
            viewers: AtomicUsize::new(0),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            counters: ViewCounters::default(),
        });
        let shared = viewer.clone();
        let handle = thread::Builder::new()
            .name("viewer".into())
            .spawn(move || shared.run(drawings, quality, signals.as_deref(), events))
            .map_err(ViewError::Thread)?;
        Ok(ViewerThread {
            viewer,
            handle: Some(handle),
        })
    }

    /// The largest JPEG a camera's frame may take; responses must have room for it.
    pub fn max_jpeg(&self) -> usize {
        self.max_jpeg
    }

    /// `view.max_viewers`.
    pub fn max_viewers(&self) -> usize {
        self.max_viewers
    }

    /// The view rate, frames a second per camera.
    pub fn fps(&self) -> f64 {
        1.0 / self.period.as_secs_f64()
    }

    /// Confirmed tracks left out of view frames because they were full.
    pub fn tracks_dropped(&self) -> u64 {
        self.cameras
            .iter()
            .map(|c| c.demand.tracks_dropped.load(Relaxed))
            .sum()
    }

    /// Streams being watched now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Relaxed)
    }

    /// Frames the pipeline published to the viewer, over every camera.
    pub fn published(&self) -> u64 {
        self.cameras
            .iter()
            .map(|c| c.demand.published.load(Relaxed))
            .sum()
    }

    /// The index of camera `name`, or the first camera for `None`.
    pub fn camera(&self, name: Option<&str>) -> Result<usize, ViewError> {
        match name {
            None if !self.cameras.is_empty() => Ok(0),
            None => Err(ViewError::UnknownCamera(String::new())),
            Some(n) => self
                .cameras
                .iter()
                .position(|c| c.name == n)
                .ok_or_else(|| ViewError::UnknownCamera(n.to_string())),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Asks for frames of `camera` for the next few seconds.
    pub fn want(&self, camera: usize, raw: bool) {
        let until = self.now_ms() + DEMAND_HOLD.as_millis() as u64;
        let cam = &self.cameras[camera];
        let slot = if raw { &cam.raw_until } else { &cam.want_until };
        if slot.swap(until, Relaxed) < self.now_ms() {
            self.wake.1.notify_all();
        }
    }

    /// Takes one of the `view.max_viewers` stream places.
    pub fn watch(&self) -> Result<Watching<'_>, ViewError> {
        let taken = self.viewers.fetch_add(1, Relaxed);
        if taken >= self.max_viewers {
            self.viewers.fetch_sub(1, Relaxed);
            self.counters.refused.fetch_add(1, Relaxed);
            return Err(ViewError::TooManyViewers(self.max_viewers));
        }
        Ok(Watching(self))
    }

    /// Writes the newest JPEG of `camera` after frame `after` into `out`, waiting up to
    /// `wait` for one; returns its frame number, or `None` when none came in time.
    pub fn next_jpeg(
        &self,
        camera: usize,
        raw: bool,
        after: u64,
        wait: Duration,
        out: &mut dyn std::io::Write,
    ) -> Result<Option<u64>, ViewError> {
        self.want(camera, raw);
        let cam = &self.cameras[camera];
        let deadline = Instant::now() + wait;
        let mut latest = cam.latest.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let seq = if raw { latest.raw_seq } else { latest.seq };
            if seq > after {
                out.write_all(if raw { &latest.raw } else { &latest.jpeg })?;
                return Ok(Some(seq));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            latest = cam
                .ready
                .wait_timeout(latest, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Writes a current JPEG of `camera` into `out`: the newest if it is at most about one
    /// view period old, else the next one, waiting up to a few seconds for it.
    pub fn snapshot(
        &self,
        camera: usize,
        raw: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<(), ViewError> {
        let cam = &self.cameras[camera];
        let after = {
            let latest = cam.latest.lock().unwrap_or_else(PoisonError::into_inner);
            let (seq, at) = if raw {
                (latest.raw_seq, latest.raw_at)
            } else {
                (latest.seq, latest.at)
            };
            let fresh = at.is_some_and(|t| t.elapsed() <= self.period + POLL * 5);
            if fresh {
                seq - 1
            } else {
                seq
            }
        };
        match self.next_jpeg(camera, raw, after, SNAPSHOT_WAIT, out)? {
            Some(_) => Ok(()),
            None => Err(ViewError::NoFrame(cam.name.clone())),
        }
    }

    fn run(
        &self,
        mut drawings: Vec<Drawing>,
        quality: u8,
        signals: Option<&SignalStatus>,
        mut events: Option<EventSink>,
    ) {
        let mut pending = heapless::Vec::<(Event, u64), PENDING_EVENTS>::new();
        let (mut flashing, mut failed) = (false, false);
        if let Some(sink) = events.as_ref().filter(|s| s.faults && s.restarted) {
            for camera in 0..self.cameras.len() {
                let event = Event {
                    camera,
                    kind: EventKind::WatchdogRestart,
                };
                if pending.push((event, 0)).is_err() {
                    sink.dropped.fetch_add(1, Relaxed);
                }
            }
        }
        while !self.stop.load(Relaxed) {
            if let Some(sink) = &events {
                let flash = signals.is_some_and(|s| s.fault_flash());
                let flash = flash && !std::mem::replace(&mut flashing, flash);
                let fail = sink.feed.as_ref().is_some_and(|f| f.detector_failed());
                let fail = fail && !std::mem::replace(&mut failed, fail);
                let kinds = [
                    (flash, EventKind::FaultFlash),
                    (fail, EventKind::DetectorFailed),
                ];
                let faults = kinds
                    .into_iter()
                    .filter(|&(fired, _)| fired && sink.faults)
                    .flat_map(|(_, kind)| {
                        (0..self.cameras.len()).map(move |camera| Event { camera, kind })
                    });
                for event in faults.chain(sink.queue.try_iter()) {
                    let after = drawings[event.camera].seq;
                    if pending.push((event, after)).is_err() {
                        sink.dropped.fetch_add(1, Relaxed);
                    }
                }
            }
            let now = self.now_ms();
            let mut wanted = false;
            for (i, (cam, drawing)) in self.cameras.iter().zip(&mut drawings).enumerate() {
                let due = pending.iter().any(|(e, _)| e.camera == i);
                let annotated = due || cam.want_until.load(Relaxed) > now;
                let raw = cam.raw_until.load(Relaxed) > now;
                if !(annotated || raw) {
                    continue;
                }
                wanted = true;
                if drawing.output.update() {
                    drawing.seq = drawing.output.output_buffer().seq;
                    self.draw(cam, drawing, quality, signals, annotated, raw);
                    if let Some(sink) = &mut events {
                        self.save_events(i, drawing.seq, sink, &mut pending);
                    }
                }
                cam.demand.wanted.store(true, Relaxed);
            }
            if wanted {
                thread::sleep(POLL);
            } else {
                // Idle: nothing is rendered until a request wakes us.
                let guard = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = self.wake.1.wait_timeout(guard, Duration::from_millis(500));
            }
        }
    }

    /// Writes the newest annotated JPEG of camera `camera` (frame `seq`) once for each of its
    /// pending events that came before that frame.
    fn save_events(
        &self,
        camera: usize,
        seq: u64,
        sink: &mut EventSink,
        pending: &mut heapless::Vec<(Event, u64), PENDING_EVENTS>,
    ) {
        let cam = &self.cameras[camera];
        let latest = cam.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.at.is_none() {
            return; // the frame could not be drawn; try the next one
        }
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut i = 0;
        while i < pending.len() {
            let (event, after) = pending[i];
            if event.camera != camera || seq <= after {
                i += 1;
                continue;
            }
            pending.swap_remove(i);
            let what = match event.kind {
                EventKind::Rule { rule, class } => format!(
                    "{}-{}-{}",
                    cam.name,
                    sink.rules
                        .get(rule as usize)
                        .map_or("event", String::as_str),
                    sink.classes
                        .get(class as usize)
                        .map_or("object", String::as_str)
                ),
                EventKind::FaultFlash => format!("{}-fault-flash", cam.name),
                EventKind::DetectorFailed => format!("{}-detector-failed", cam.name),
                EventKind::WatchdogRestart => format!("{}-watchdog-restart", cam.name),
            };
            sink.store.save(unix_ms, &what, &latest.jpeg);
        }
    }

    /// Renders and encodes the slot's newest frame for what is wanted, then swaps each JPEG
    /// into the camera's newest (both buffers keep their capacity).
    fn draw(
        &self,
        cam: &CameraView,
        drawing: &mut Drawing,
        quality: u8,
        signals: Option<&SignalStatus>,
        annotated: bool,
        raw: bool,
    ) {
        let frame = drawing.output.output_buffer();
        let f = drawing.renderer.layout().format;
        let limit = max_jpeg_bytes(f.width, f.height);
        for annotate in [true, false] {
            if (annotate && !annotated) || (!annotate && !raw) {
                continue;
            }
            let done = drawing
                .renderer
                .render(frame, signals, annotate)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let canvas = drawing.renderer.canvas();
                    encode_jpeg(
                        canvas,
                        f.width,
                        f.height,
                        quality,
                        &mut drawing.scratch,
                        limit,
                    )
                });
            if let Err(e) = done {
                if self.counters.failed.fetch_add(1, Relaxed).is_power_of_two() {
                    log::warn!("view: camera {}: {e}", cam.name);
                }
                continue;
            }
            self.counters.rendered.fetch_add(1, Relaxed);
            let mut latest = cam.latest.lock().unwrap_or_else(PoisonError::into_inner);
            let latest = &mut *latest;
            let (jpeg, seq, at) = if annotate {
                (&mut latest.jpeg, &mut latest.seq, &mut latest.at)
            } else {
                (&mut latest.raw, &mut latest.raw_seq, &mut latest.raw_at)
            };
            std::mem::swap(jpeg, &mut drawing.scratch);
            *seq += 1;
            *at = Some(Instant::now());
            cam.ready.notify_all();
        }
    }
}
