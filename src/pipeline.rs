//! The frame loop: newest frame -> preprocess into the input tensor -> invoke -> decode ->
//! scene. Every buffer it touches is allocated in [`Pipeline::build`]; [`Pipeline::step`]
//! allocates nothing, which `tests/zero_alloc.rs` proves.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::replay::ReplaySource;
use crate::capture::{CaptureError, FrameSource};
use crate::clock::Clock;
use crate::config::TestingConfig;
use crate::config::{Config, ConfigError, SourceKind};
use crate::control::SceneFeed;
use crate::geometry::Roi;
use crate::health::restart::RestartHistory;
use crate::health::stats::{PipelineStats, Stage};
use crate::health::video::VideoCheck;
use crate::health::watchdog::Heartbeats;
use crate::scene::Scene;
use crate::vision::detection::Detections;
use crate::vision::detector::{Detector, DetectorError};
use crate::vision::pool::{DetectorPool, FrameLag};
use crate::vision::preprocess::{InputSpec, PreprocessError, Preprocessor};
use crate::vision::tflite::{class_ids, TfliteDetector};

/// Why the pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration does not fit the model (e.g. an unknown class label).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The camera or recording failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The model failed to load.
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// The frame cannot be mapped onto the model input.
    #[error("preprocessing: {0}")]
    Preprocess(#[from] PreprocessError),
}

/// What one call to [`Pipeline::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A frame went through every stage.
    Processed,
    /// A frame arrived but could not be processed (counted in `errors`).
    Skipped,
    /// The recording ended.
    End,
}

/// Keeps the detections of counted classes and maps their boxes from the region of interest
/// into the full frame.
#[derive(Debug)]
struct DetectionFilter {
    /// `counted[class]`: whether the model class is counted.
    counted: Vec<bool>,
    roi: Roi,
}

impl DetectionFilter {
    fn apply(&self, detections: &mut Detections) {
        detections.retain(|d| self.counted.get(d.class as usize).copied().unwrap_or(false));
        if self.roi != Roi::FULL {
            for d in detections.iter_mut() {
                d.bbox = self.roi.to_frame(d.bbox);
            }
        }
    }
}

/// One camera's frame loop with everything it owns.
pub struct Pipeline {
    source: Box<dyn FrameSource>,
    preprocessor: Preprocessor,
    detector: Box<dyn Detector>,
    /// Which frame the detections belong to, when a pool's results trail the input.
    lag: FrameLag,
    detections: Detections,
    filter: DetectionFilter,
    scene: Scene,
    stats: Arc<PipelineStats>,
    clock: Arc<dyn Clock>,
    class_names: Vec<String>,
    class_ids: Vec<u16>,
    zone_names: Vec<String>,
    line_names: Vec<String>,
    feed: Option<Arc<SceneFeed>>,
    beats: Arc<Heartbeats>,
    video: VideoCheck,
    faults: FaultInjection,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source.format())
            .field("scene", &self.scene)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Opens the first camera, loads the model and sizes every buffer for `config`.
    pub fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Pipeline, PipelineError> {
        // model.interpreters > 1: throughput mode (see vision::pool).
        let detector: Box<dyn Detector> = match config.model.interpreters {
            0 | 1 => Box::new(TfliteDetector::load(&config.model)?),
            _ => Box::new(DetectorPool::load(&config.model)?),
        };
        let source = open_source(config, clock.clone())?;
        Self::assemble(config, detector, source, clock)
    }

    /// Builds a pipeline around a detector and a source the caller opened.
    pub fn assemble(
        config: &Config,
        detector: Box<dyn Detector>,
        source: Box<dyn FrameSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Pipeline, PipelineError> {
        let labels = detector.labels();
        let ids = class_ids(labels, &config.model.classes)
            .map_err(|m| ConfigError::invalid("model.classes", m))?;
        let mut counted = vec![false; labels.len()];
        for &id in &ids {
            counted[id as usize] = true;
        }
        let roi = config.model.roi.unwrap_or(Roi::FULL);
        let source_format = source.format();
        let preprocessor = Preprocessor::new(source_format, roi, detector.input_spec())?;
        // The region snapped to whole pixels, so boxes map back exactly.
        let roi = preprocessor.roi();
        let scene = Scene::new(&config.tracker, &config.zones, &config.lines, &ids);
        let detections = Detections::new();
        Ok(Pipeline {
            source,
            preprocessor,
            lag: FrameLag::new(detector.latency()),
            detector,
            detections,
            filter: DetectionFilter { counted, roi },
            scene,
            stats: Arc::new(PipelineStats::default()),
            clock,
            class_names: config.model.classes.clone(),
            class_ids: ids,
            zone_names: config.zones.iter().map(|z| z.name.clone()).collect(),
            line_names: config.lines.iter().map(|l| l.name.clone()).collect(),
            feed: None,
            beats: Arc::new(Heartbeats::default()),
            video: VideoCheck::new(source_format, &config.watchdog),
            faults: FaultInjection::new(&config.testing),
        })
    }

    /// Publishes zone occupancy to `feed` after every frame, for the signal control loop.
    pub fn set_feed(&mut self, feed: Arc<SceneFeed>) {
        self.feed = Some(feed);
    }

    /// Liveness stamps the watchdog reads: frame arrivals and inference start/end.
    pub fn heartbeats(&self) -> &Arc<Heartbeats> {
        &self.beats
    }

    /// Counters and latencies, shareable with a reporting thread.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Tracks, zone occupancy and line counts.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// The latest frame's detections, boxes in full-frame coordinates.
    pub fn detections(&self) -> &Detections {
        &self.detections
    }

    /// Labels of the counted classes, in count-array order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Model class ids of the counted classes, in count-array order.
    pub fn counted_class_ids(&self) -> &[u16] {
        &self.class_ids
    }

    /// Shape and element type of the model input.
    pub fn input_spec(&self) -> &InputSpec {
        self.detector.input_spec()
    }

    /// Zone names, in occupancy order.
    pub fn zone_names(&self) -> &[String] {
        &self.zone_names
    }

    /// Counting line names, in count order.
    pub fn line_names(&self) -> &[String] {
        &self.line_names
    }

    /// Labels of every model class.
    pub fn model_labels(&self) -> &[String] {
        self.detector.labels()
    }

    /// Takes the newest frame and runs it through every stage. Allocates nothing.
    pub fn step(&mut self) -> Result<Step, PipelineError> {
        let t0 = self.clock.now();
        let frame = match self.source.next_frame()? {
            Some(frame) => frame,
            None => return Ok(Step::End),
        };
        let (timestamp, frame_seq) = (frame.timestamp, frame.seq);
        let t1 = self.clock.now();
        self.stats.record(Stage::Capture, t1.saturating_sub(t0));
        let video = self.video.observe(frame.data, t1);
        self.beats.frame(t1);
        self.beats.inference_started(t1);
        self.faults
            .before_inference(self.stats.frames.load(Relaxed));

        let pre = self
            .preprocessor
            .run(frame.data, self.detector.input_tensor());
        let t2 = self.clock.now();
        let invoked = pre
            .map_err(PipelineError::from)
            .and_then(|()| Ok(self.detector.invoke()?));
        let t3 = self.clock.now();
        // A pool's detections are of an earlier frame: the scene gets that frame's time.
        let (timestamp, _) = self.lag.push(timestamp, frame_seq);
        let decoded = invoked.and_then(|()| Ok(self.detector.decode(&mut self.detections)?));
        self.beats.inference_done();
        if let Err(e) = decoded {
            let errors = self.stats.errors.fetch_add(1, Relaxed) + 1;
            // Logged at 1, 2, 4, 8, ... so a persistent fault cannot flood the log.
            if errors.is_power_of_two() {
                log::warn!("frame {} skipped ({errors} so far): {e}", frame_seq);
            }
            self.sync_source_stats();
            return Ok(Step::Skipped);
        }
        self.filter.apply(&mut self.detections);
        let t4 = self.clock.now();
        self.scene.update(&self.detections, timestamp);
        let t5 = self.clock.now();
        if let Some(feed) = &self.feed {
            feed.publish(self.scene.zone_occupancy(), t5);
            feed.publish_lines(self.scene.line_counts());
            feed.publish_video(video, self.video.incidents());
        }

        self.stats.record(Stage::Preprocess, t2 - t1);
        self.stats.record(Stage::Invoke, t3 - t2);
        self.stats.record(Stage::Decode, t4 - t3);
        self.stats.record(Stage::Scene, t5 - t4);
        self.stats.record(Stage::Frame, t5 - t1);
        self.stats.frames.fetch_add(1, Relaxed);
        self.stats
            .detections
            .fetch_add(self.detections.len() as u64, Relaxed);
        self.sync_source_stats();
        Ok(Step::Processed)
    }

    fn sync_source_stats(&self) {
        self.stats
            .dropped
            .store(self.source.stats().dropped, Relaxed);
    }

    /// Processes up to `frames` frames as fast as the source gives them, calling `each` with
    /// the count after every processed frame; returns how many were processed (fewer when a
    /// recording ends). For the bench and the soak.
    pub fn run_frames(
        &mut self,
        frames: u64,
        mut each: impl FnMut(u64),
    ) -> Result<u64, PipelineError> {
        let mut done = 0;
        while done < frames {
            match self.step()? {
                Step::Processed => {
                    done += 1;
                    each(done);
                }
                Step::Skipped => {}
                Step::End => break,
            }
        }
        Ok(done)
    }

    /// Runs until `stop` is set, the recording ends, or `max_frames` frames were processed,
    /// calling `report` every `interval` of clock time and once more at the end (with `true`).
    pub fn run(
        &mut self,
        max_frames: Option<u64>,
        interval: Duration,
        stop: &AtomicBool,
        mut report: impl FnMut(&Pipeline, Duration, bool),
    ) -> Result<(), PipelineError> {
        let mut next_report = self.clock.now() + interval;
        let mut processed = 0u64;
        while !stop.load(Relaxed) && max_frames.is_none_or(|m| processed < m) {
            match self.step()? {
                Step::End => break,
                Step::Processed => processed += 1,
                Step::Skipped => {}
            }
            let now = self.clock.now();
            if now >= next_report {
                report(self, now, false);
                self.stats.reset_window();
                next_report = now + interval;
            }
        }
        report(self, self.clock.now(), true);
        Ok(())
    }
}

fn open_source(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn FrameSource>, PipelineError> {
    let cam = &config.cameras[0];
    match cam.source {
        SourceKind::Replay => Ok(Box::new(ReplaySource::open(cam, clock)?)),
    }
}

/// Faults injected on purpose (`[testing]` in the config) so integration tests can watch the
/// watchdog act. Inert unless configured.
#[derive(Debug)]
struct FaultInjection {
    stall_after: Option<u64>,
    stall: Duration,
    balloon_after: Option<u64>,
    balloon: Vec<Vec<u8>>,
}

impl FaultInjection {
    fn new(cfg: &TestingConfig) -> FaultInjection {
        let restarted = !RestartHistory::from_env().times.is_empty();
        let active = !restarted || cfg.faults_on_restart;
        let balloon_mib = match cfg.balloon_after_frames {
            Some(_) if active => cfg.balloon_mib as usize,
            _ => 0,
        };
        FaultInjection {
            stall_after: cfg.stall_after_frames.filter(|_| active),
            stall: Duration::from_millis(cfg.stall_ms),
            balloon_after: cfg.balloon_after_frames.filter(|_| active),
            balloon: Vec::with_capacity(balloon_mib),
        }
    }

    fn before_inference(&mut self, frames: u64) {
        if self.stall_after == Some(frames) {
            log::warn!("testing: stalling inference for {:?}", self.stall);
            std::thread::sleep(self.stall);
        }
        if self.balloon_after.is_some_and(|n| frames >= n)
            && self.balloon.len() < self.balloon.capacity()
        {
            // 8 MiB a frame, written so the pages are resident.
            for _ in 0..8.min(self.balloon.capacity() - self.balloon.len()) {
                self.balloon.push(std::hint::black_box(vec![0x5a; 1 << 20]));
            }
        }
    }
}
