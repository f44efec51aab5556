//! The frame loop: newest frame of the next camera -> preprocess into the input tensor ->
//! invoke -> decode -> that camera's scene. Cameras share one detector in weighted
//! round-robin (`cameras[].weight` frames a turn); a camera with no frame is skipped. Every buffer it touches is allocated in [`Pipeline::build`]; [`Pipeline::step`]
//! allocates nothing, which `tests/zero_alloc.rs` proves.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::bins::{BinAccumulator, BinQueue, Layout};
use crate::capture::mjpeg_http::HttpMjpegSource;
use crate::capture::replay::ReplaySource;
use crate::capture::v4l2::V4l2Source;
use crate::capture::{CaptureError, CaptureStats, FrameSource, Next};
use crate::clock::Clock;
use crate::config::TestingConfig;
use crate::config::{CameraConfig, Config, ConfigError, SourceKind, MAX_CLASSES};
use crate::control::SceneFeed;
use crate::geometry::Roi;
use crate::health::restart::RestartHistory;
use crate::health::stats::DetectorStep;
use crate::health::stats::{PipelineStats, Stage};
use crate::health::video::VideoCheck;
use crate::health::watchdog::Heartbeats;
use crate::scene::tracker::TrackerStats;
use crate::scene::{LineCount, Scene};
use crate::view::events::{Event, LaneEvents};
use crate::view::render::{CameraLayout, LineShape, ZoneShape};
use crate::view::slot::{view_slot, ViewTap};
use crate::view::ViewFeed;
use crate::vision::detection::Detections;
use crate::vision::detector::{Detector, DetectorError};
use crate::vision::pool::{load_detector, FrameLag};
use crate::vision::preprocess::{InputSpec, PreprocessError, Preprocessor};
use crate::vision::tflite::class_ids;
use crate::vision::tiles::{self, Tile, TileMerge};

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
    /// A recording ended and not one of its frames could be processed.
    #[error("the recording ended with all {0} of its frames skipped (the warnings say why)")]
    AllSkipped(u64),
}

/// What one call to [`Pipeline::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A frame went through every stage.
    Processed,
    /// A frame arrived but could not be processed (counted in `errors`).
    Skipped,
    /// No camera had a frame (stale or reconnecting).
    Waiting,
    /// The recording ended.
    End,
}

/// Keeps the detections of counted classes: `counted[class]` says whether a model class is
/// counted.
fn keep_counted(counted: &[bool], detections: &mut Detections) {
    detections.retain(|d| counted.get(d.class as usize).copied().unwrap_or(false));
}

/// Maps detection boxes from the tensor into the full frame: `roi` is the frame region the
/// tensor stands for (the region of interest, extended over any letterbox padding).
fn to_frame(roi: Roi, detections: &mut Detections) {
    if roi != Roi::FULL {
        for d in detections.iter_mut() {
            d.bbox = roi.to_frame(d.bbox);
        }
    }
}

/// One tile of a tiled camera: its own preprocessor into the shared input tensor, and where
/// it lies in the frame.
struct TilePass {
    preprocessor: Preprocessor,
    tile: Tile,
}

/// A tiled camera's tiles (`cameras[].tiles`) and the merge of their detections.
struct Tiling {
    passes: Vec<TilePass>,
    merge: TileMerge,
}

impl Tiling {
    /// The tiles of `cam` over `roi`, each snapped to the camera's pixels; `None` for an
    /// untiled camera (or a grid of one tile), which keeps the single-invoke path.
    fn new(
        cam: &CameraConfig,
        format: crate::capture::FrameFormat,
        roi: Roi,
        detector: &dyn Detector,
    ) -> Result<Option<Tiling>, PipelineError> {
        let Some(grid) = cam.tiles.filter(|t| t.count() > 1) else {
            return Ok(None);
        };
        if detector.latency() > 0 {
            return Err(ConfigError::invalid(
                format!("cameras.{}.tiles", cam.name),
                "tiling needs a detector without a pool (model.interpreters = 1)",
            )
            .into());
        }
        let passes = tiles::grid(roi, &grid)
            .into_iter()
            .map(|tile| {
                let preprocessor = Preprocessor::new(format, tile.rect, detector.input_spec())?;
                let tile = Tile {
                    rect: preprocessor.roi(),
                    region: preprocessor.tensor_region(),
                    ..tile
                };
                Ok(TilePass { preprocessor, tile })
            })
            .collect::<Result<Vec<_>, PipelineError>>()?;
        Ok(Some(Tiling {
            merge: TileMerge::new(passes.len()),
            passes,
        }))
    }
}

/// Time spent preprocessing and invoking.
#[derive(Debug, Clone, Copy, Default)]
struct DetectTime {
    preprocess: Duration,
    invoke: Duration,
}

/// Runs every tile of `frame` through `detector` and merges their counted detections, in
/// frame coordinates, into `out`.
fn detect_tiles(
    tiling: &mut Tiling,
    frame: &[u8],
    detector: &mut dyn Detector,
    counted: &[bool],
    clock: &dyn Clock,
    out: &mut Detections,
    time: &mut DetectTime,
) -> Result<(), PipelineError> {
    tiling.merge.clear();
    for (i, pass) in tiling.passes.iter_mut().enumerate() {
        let t0 = clock.now();
        pass.preprocessor.run(frame, detector.input_tensor())?;
        let t1 = clock.now();
        detector.invoke()?;
        time.preprocess += t1 - t0;
        time.invoke += clock.now() - t1;
        detector.decode(out)?;
        keep_counted(counted, out);
        tiling.merge.add(i, &pass.tile, out);
    }
    tiling.merge.finish(out);
    Ok(())
}

/// One camera's lane: its source, its preprocessing, its scene and its video check.
struct Lane {
    name: String,
    source: Box<dyn FrameSource>,
    preprocessor: Preprocessor,
    /// The frame region the tensor stands for: the region of interest snapped to this
    /// camera's pixels (so boxes map back exactly), extended over any letterbox padding.
    roi: Roi,
    /// With `cameras[].tiles`: one invoke per tile instead of one for `preprocessor`.
    tiling: Option<Tiling>,
    scene: Scene,
    /// Site indexes of this camera's zones and lines, in its scene's order.
    zones: Vec<usize>,
    lines: Vec<usize>,
    video: VideoCheck,
    /// The live view's slot, once [`Pipeline::enable_view`] made one.
    view: Option<ViewTap>,
    /// Event-snapshot rules on this camera, once [`Pipeline::enable_events`] set them.
    events: Option<LaneEvents>,
    /// Frames per turn at the detector.
    weight: u32,
    /// Frames of this camera processed end to end.
    frames: u64,
    /// The recording ended (never for a live camera).
    ended: bool,
}

/// Which frame a detector result belongs to.
#[derive(Debug, Clone, Copy)]
struct FrameTag {
    lane: usize,
    timestamp: Duration,
    seq: u64,
}

/// The frame loop over every camera, with everything it owns.
pub struct Pipeline {
    lanes: Vec<Lane>,
    /// The lane whose turn it is, and the frames left in its turn.
    turn: usize,
    turn_left: u32,
    detector: Box<dyn Detector>,
    /// Which frame the detections belong to, when a pool's results trail the input.
    lag: FrameLag<FrameTag>,
    detections: Detections,
    /// `counted[class]`: whether the model class is counted.
    counted: Vec<bool>,
    stats: Arc<PipelineStats>,
    clock: Arc<dyn Clock>,
    class_names: Vec<String>,
    class_ids: Vec<u16>,
    zone_names: Vec<String>,
    line_names: Vec<String>,
    /// For each site zone (line): its lane and its index in that lane's scene.
    zone_slots: Vec<(usize, usize)>,
    line_slots: Vec<(usize, usize)>,
    feed: Option<Arc<SceneFeed>>,
    beats: Arc<Heartbeats>,
    faults: FaultInjection,
    /// `model.max_failures`.
    max_failures: u32,
    /// The running traffic data bin, once [`Pipeline::enable_bins`] set one up.
    bins: Option<BinAccumulator>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cameras: Vec<&str> = self.lanes.iter().map(|l| l.name.as_str()).collect();
        f.debug_struct("Pipeline")
            .field("cameras", &cameras)
            .finish_non_exhaustive()
    }
}

/// One camera as summaries see it.
#[derive(Debug, Clone, Copy)]
pub struct CameraView<'a> {
    /// The camera's name.
    pub name: &'a str,
    /// Frames of it processed end to end.
    pub frames: u64,
    /// Its source's counters.
    pub capture: CaptureStats,
    /// Its tracks, zones and lines.
    pub scene: &'a Scene,
}

/// How long the loop rests when no camera had a frame (all reconnecting or stale).
const IDLE: Duration = Duration::from_millis(20);

impl Pipeline {
    /// Opens every camera, loads the model and sizes every buffer for `config`.
    pub fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Pipeline, PipelineError> {
        // model.interpreters > 1: throughput mode (see vision::pool).
        let detector = load_detector(&config.model)?;
        let sources = config
            .cameras
            .iter()
            .map(|cam| open_source(cam, clock.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::assemble_cameras(config, detector, sources, clock)
    }

    /// Builds a pipeline around a detector and the first camera's source, opened by the
    /// caller (a single-camera site).
    pub fn assemble(
        config: &Config,
        detector: Box<dyn Detector>,
        source: Box<dyn FrameSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Pipeline, PipelineError> {
        Self::assemble_cameras(config, detector, vec![source], clock)
    }

    /// Builds a pipeline around a detector and one source per camera of `config`, in order.
    pub fn assemble_cameras(
        config: &Config,
        detector: Box<dyn Detector>,
        sources: Vec<Box<dyn FrameSource>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Pipeline, PipelineError> {
        if sources.len() != config.cameras.len() {
            return Err(ConfigError::invalid(
                "cameras",
                format!(
                    "{} cameras but {} sources",
                    config.cameras.len(),
                    sources.len()
                ),
            )
            .into());
        }
        let labels = detector.labels();
        let ids = class_ids(labels, &config.model.classes)
            .map_err(|m| ConfigError::invalid("model.classes", m))?;
        let mut counted = vec![false; labels.len()];
        for &id in &ids {
            counted[id as usize] = true;
        }
        let roi = config.model.roi.unwrap_or(Roi::FULL);
        let zone_lane: Vec<usize> = config
            .zones
            .iter()
            .map(|z| config.camera_index(z.camera.as_deref()).unwrap_or(0))
            .collect();
        let line_lane: Vec<usize> = config
            .lines
            .iter()
            .map(|l| config.camera_index(l.camera.as_deref()).unwrap_or(0))
            .collect();
        let mut zone_slots = vec![(0, 0); config.zones.len()];
        let mut line_slots = vec![(0, 0); config.lines.len()];
        let mut lanes = Vec::with_capacity(sources.len());
        for (i, (cam, source)) in config.cameras.iter().zip(sources).enumerate() {
            let format = source.format();
            let preprocessor = Preprocessor::new(format, roi, detector.input_spec())?;
            let tiling = Tiling::new(cam, format, roi, detector.as_ref())?;
            let zones: Vec<usize> = (0..config.zones.len())
                .filter(|&z| zone_lane[z] == i)
                .collect();
            let lines: Vec<usize> = (0..config.lines.len())
                .filter(|&l| line_lane[l] == i)
                .collect();
            for (local, &z) in zones.iter().enumerate() {
                zone_slots[z] = (i, local);
            }
            for (local, &l) in lines.iter().enumerate() {
                line_slots[l] = (i, local);
            }
            let zone_cfgs: Vec<_> = zones.iter().map(|&z| config.zones[z].clone()).collect();
            let line_cfgs: Vec<_> = lines.iter().map(|&l| config.lines[l].clone()).collect();
            lanes.push(Lane {
                name: cam.name.clone(),
                roi: preprocessor.tensor_region(),
                preprocessor,
                tiling,
                scene: Scene::new(&config.tracker, &zone_cfgs, &line_cfgs, &ids),
                zones,
                lines,
                video: VideoCheck::new(format, &config.watchdog),
                view: None,
                events: None,
                weight: cam.weight.max(1),
                frames: 0,
                ended: false,
                source,
            });
        }
        Ok(Pipeline {
            turn: 0,
            turn_left: lanes.first().map_or(1, |l| l.weight),
            lanes,
            lag: FrameLag::new(detector.latency()),
            detector,
            detections: Detections::new(),
            counted,
            stats: Arc::new(PipelineStats::default()),
            clock,
            class_names: config.model.classes.clone(),
            class_ids: ids,
            zone_names: config.zones.iter().map(|z| z.name.clone()).collect(),
            line_names: config.lines.iter().map(|l| l.name.clone()).collect(),
            zone_slots,
            line_slots,
            feed: None,
            beats: Arc::new(Heartbeats::default()),
            faults: FaultInjection::new(&config.testing),
            max_failures: config.model.max_failures,
            bins: None,
        })
    }

    /// Publishes zone occupancy, line counts and camera state to `feed` after every frame,
    /// for the signal control loop and the health endpoint.
    pub fn set_feed(&mut self, feed: Arc<SceneFeed>) {
        self.feed = Some(feed);
    }

    /// Gives every camera a live-view slot, allocated here, that the frame loop fills at most
    /// `fps` times a second while the viewer asks for frames; returns the viewer's ends, in
    /// camera order. Calling it again replaces the slots.
    pub fn enable_view(&mut self, fps: f32) -> Vec<ViewFeed> {
        let period = Duration::from_secs_f32(1.0 / fps);
        let classes = self.class_names.clone();
        self.lanes
            .iter_mut()
            .map(|lane| {
                let format = lane.source.format();
                let (tap, output, demand) = view_slot(format, period);
                lane.view = Some(tap);
                let zones = lane
                    .scene
                    .zones()
                    .iter()
                    .map(|z| ZoneShape {
                        name: z.name().to_string(),
                        points: z.points().to_vec(),
                    })
                    .collect();
                let lines = lane
                    .scene
                    .lines()
                    .iter()
                    .map(|l| {
                        let (from, to) = l.end_points();
                        LineShape {
                            name: l.name().to_string(),
                            from,
                            to,
                        }
                    })
                    .collect();
                ViewFeed {
                    output,
                    demand,
                    layout: CameraLayout {
                        name: lane.name.clone(),
                        format,
                        zones,
                        lines,
                        classes: classes.clone(),
                    },
                }
            })
            .collect()
    }

    /// Watches every camera's zones and lines for `config`'s events, posting each to `queue`
    /// without waiting (a full queue counts in `dropped`).
    pub fn enable_events(
        &mut self,
        config: &crate::config::SnapshotsConfig,
        queue: std::sync::mpsc::SyncSender<Event>,
        dropped: Arc<std::sync::atomic::AtomicU64>,
    ) {
        for (camera, lane) in self.lanes.iter_mut().enumerate() {
            let zones: Vec<&str> = lane.scene.zones().iter().map(|z| z.name()).collect();
            let lines: Vec<&str> = lane.scene.lines().iter().map(|l| l.name()).collect();
            lane.events = LaneEvents::new(
                camera,
                config,
                &zones,
                &lines,
                &self.class_names,
                queue.clone(),
                dropped.clone(),
            );
        }
    }

    /// Adds every frame into traffic data bins of `interval_s` seconds of `wall` time,
    /// closing each into `queue`; returns the names the writer labels the rows with.
    pub fn enable_bins(
        &mut self,
        interval_s: u64,
        queue: Arc<BinQueue>,
        wall: Arc<dyn crate::utc::WallClock>,
    ) -> Layout {
        self.bins = Some(BinAccumulator::new(
            self.zone_names.len(),
            self.line_names.len(),
            self.lanes.len(),
            interval_s,
            queue,
            wall,
        ));
        let named = |names: &[String], slots: &[(usize, usize)]| {
            names
                .iter()
                .zip(slots)
                .map(|(n, &(lane, _))| (n.clone(), lane))
                .collect()
        };
        Layout {
            zones: named(&self.zone_names, &self.zone_slots),
            lines: named(&self.line_names, &self.line_slots),
            classes: self.class_names.clone(),
        }
    }

    /// The running traffic data bin, when bins are on.
    pub fn bins(&self) -> Option<&BinAccumulator> {
        self.bins.as_ref()
    }

    /// Liveness stamps the watchdog reads: capture progress and inference start/end.
    pub fn heartbeats(&self) -> &Arc<Heartbeats> {
        &self.beats
    }

    /// Counters and latencies, shareable with a reporting thread.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// The first camera's tracks, zone occupancy and line counts.
    pub fn scene(&self) -> &Scene {
        &self.lanes[0].scene
    }

    /// Every camera: name, frames, capture counters and scene, in config order.
    pub fn cameras(&self) -> impl Iterator<Item = CameraView<'_>> + '_ {
        self.lanes.iter().map(|l| CameraView {
            name: &l.name,
            frames: l.frames,
            capture: l.source.stats(),
            scene: &l.scene,
        })
    }

    /// Every site zone with its occupancy per counted class, in config order.
    pub fn zones(&self) -> impl Iterator<Item = (&str, &[u32; MAX_CLASSES])> + '_ {
        self.zone_names
            .iter()
            .zip(&self.zone_slots)
            .map(|(name, &(lane, i))| (name.as_str(), &self.lanes[lane].scene.zone_occupancy()[i]))
    }

    /// Every counting line with its crossings, in config order.
    pub fn lines(&self) -> impl Iterator<Item = (&str, &LineCount)> + '_ {
        self.line_names
            .iter()
            .zip(&self.line_slots)
            .map(|(name, &(lane, i))| (name.as_str(), &self.lanes[lane].scene.line_counts()[i]))
    }

    /// Tracker counters summed over every camera.
    pub fn tracker_stats(&self) -> TrackerStats {
        self.lanes
            .iter()
            .map(|l| l.scene.stats())
            .fold(TrackerStats::default(), |a, b| TrackerStats {
                live: a.live + b.live,
                capacity: a.capacity + b.capacity,
                created: a.created + b.created,
                evicted: a.evicted + b.evicted,
                tentative_dropped: a.tentative_dropped + b.tentative_dropped,
                duplicates: a.duplicates + b.duplicates,
                dropped_full: a.dropped_full + b.dropped_full,
                dropped_overflow: a.dropped_overflow + b.dropped_overflow,
                ignored: a.ignored + b.ignored,
            })
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

    /// Moves the detector to the next camera once this one's turn is used up (`used`) or it
    /// had no frame.
    fn next_turn(&mut self, used: bool) {
        if used && self.turn_left > 1 {
            self.turn_left -= 1;
            return;
        }
        self.turn = (self.turn + 1) % self.lanes.len();
        self.turn_left = self.lanes[self.turn].weight;
    }

    /// Takes the newest frame of the next camera that has one (weighted round-robin) and
    /// runs it through every stage. Allocates nothing.
    pub fn step(&mut self) -> Result<Step, PipelineError> {
        if let Some(bins) = &mut self.bins {
            // Before any frame, so a frame's figures land in the bin of its time; also while
            // every camera waits, so an offline site still closes (empty) bins on time.
            bins.tick(self.clock.now());
        }
        for _ in 0..self.lanes.len() {
            let lane = self.turn;
            if self.lanes[lane].ended {
                self.next_turn(false);
                continue;
            }
            let step = self.step_lane(lane)?;
            self.next_turn(step != Step::Waiting && step != Step::End);
            match step {
                Step::End => self.lanes[lane].ended = true,
                Step::Waiting => {}
                done => return Ok(done),
            }
        }
        if self.lanes.iter().all(|l| l.ended) {
            return Ok(Step::End);
        }
        // Every camera is waiting: the capture side is alive (the sources reconnect on their
        // own), so the watchdog hears from it, and the loop rests instead of spinning.
        self.beats.frame(self.clock.now());
        self.publish_capture();
        std::thread::sleep(IDLE);
        Ok(Step::Waiting)
    }

    /// One frame of camera `i`.
    fn step_lane(&mut self, i: usize) -> Result<Step, PipelineError> {
        let t0 = self.clock.now();
        let lane = &mut self.lanes[i];
        let frame = match lane.source.next_frame()? {
            Next::Frame(frame) => frame,
            Next::Waiting => return Ok(Step::Waiting),
            Next::End => return Ok(Step::End),
        };
        let tag = FrameTag {
            lane: i,
            timestamp: frame.timestamp,
            seq: frame.seq,
        };
        let t1 = self.clock.now();
        self.stats.record(Stage::Capture, t1.saturating_sub(t0));
        let video = lane.video.observe(frame.data, t1);
        if let Some(bins) = &mut self.bins {
            let failed = self.stats.detector.failure().is_some();
            bins.observe(
                i,
                failed || video != crate::health::video::VideoState::Ok,
                t1,
            );
        }
        if let Some(view) = &mut lane.view {
            // A copy only when the viewer asked and the view rate allows; never a wait.
            view.stage(frame.data, frame.timestamp, t1);
        }
        self.beats.frame(t1);
        self.beats.inference_started(t1);
        self.faults
            .before_inference(self.stats.frames.load(Relaxed));

        let mut time = DetectTime::default();
        let (tag, decoded) = if self.faults.fail_invoke() {
            (self.lag.push(tag), Err(DetectorError::Invoke.into()))
        } else if let Some(tiling) = &mut lane.tiling {
            let decoded = detect_tiles(
                tiling,
                frame.data,
                self.detector.as_mut(),
                &self.counted,
                self.clock.as_ref(),
                &mut self.detections,
                &mut time,
            );
            // Never a pool (refused at build), so the detections are of this frame.
            (self.lag.push(tag), decoded)
        } else {
            let pre = lane
                .preprocessor
                .run(frame.data, self.detector.input_tensor());
            let t2 = self.clock.now();
            let invoked = pre
                .map_err(PipelineError::from)
                .and_then(|()| Ok(self.detector.invoke()?));
            let t3 = self.clock.now();
            time.preprocess = t2 - t1;
            time.invoke = t3 - t2;
            // A pool's detections are of an earlier frame, maybe of another camera.
            let tag = self.lag.push(tag);
            let decoded = invoked.and_then(|()| Ok(self.detector.decode(&mut self.detections)?));
            (tag, decoded)
        };
        self.beats.inference_done();
        if let Some(feed) = &self.feed {
            feed.publish_video(i, video, lane.video.incidents());
        }
        if let Err(e) = decoded {
            if let Some(view) = &mut lane.view {
                // The frame is still shown (with the last good scene), so a viewer or a fault
                // snapshot sees what the camera sees while the detector fails.
                view.publish(&lane.scene, t1);
            }
            if let Some(bins) = &mut self.bins {
                bins.fault(i);
            }
            self.skipped(i, tag.seq, &e);
            return Ok(Step::Skipped);
        }
        if self.stats.detector.failure().is_some() {
            log::info!("detector: frames run and decode again");
            if let Some(feed) = &self.feed {
                feed.set_detector_failed(false);
            }
        }
        self.stats.detector.succeeded();
        let lane = &mut self.lanes[tag.lane];
        // Tiled detections are counted ones in frame coordinates already.
        if lane.tiling.is_none() {
            keep_counted(&self.counted, &mut self.detections);
            to_frame(lane.roi, &mut self.detections);
        }
        let t4 = self.clock.now();
        lane.scene.update(&self.detections, tag.timestamp);
        lane.frames += 1;
        let t5 = self.clock.now();
        if let Some(view) = &mut lane.view {
            // With a pool the boxes trail the staged frame by the pool's latency.
            view.publish(&lane.scene, t5);
        }
        if let Some(events) = &mut lane.events {
            events.check(&lane.scene);
        }
        if let Some(bins) = &mut self.bins {
            bins.frame(
                tag.lane,
                &lane.zones,
                lane.scene.zone_occupancy(),
                &lane.lines,
                lane.scene.line_counts(),
            );
        }
        if let Some(feed) = &self.feed {
            feed.publish_zones(tag.lane, &lane.zones, lane.scene.zone_occupancy(), t5);
            feed.publish_dwell(&lane.zones, lane.scene.zone_presence());
            feed.publish_lines(&lane.lines, lane.scene.line_counts());
        }

        self.stats.record(Stage::Preprocess, time.preprocess);
        self.stats.record(Stage::Invoke, time.invoke);
        let decode = (t4 - t1).saturating_sub(time.preprocess + time.invoke);
        self.stats.record(Stage::Decode, decode);
        self.stats.record(Stage::Scene, t5 - t4);
        self.stats.record(Stage::Frame, t5 - t1);
        self.stats.frames.fetch_add(1, Relaxed);
        self.stats
            .detections
            .fetch_add(self.detections.len() as u64, Relaxed);
        self.publish_capture();
        Ok(Step::Processed)
    }

    /// Counts a frame of camera `lane` that could not be processed, logged at the 1st, 2nd,
    /// 4th, 8th, ... error so a persistent fault cannot flood the log. A failed invoke or
    /// decode also counts towards `model.max_failures` in a row, which marks the detector
    /// failed: the signals degrade and the watchdog restarts.
    fn skipped(&mut self, lane: usize, seq: u64, e: &PipelineError) {
        let step = match e {
            PipelineError::Detector(DetectorError::Decode(_)) => Some(DetectorStep::Decode),
            PipelineError::Detector(_) => Some(DetectorStep::Invoke),
            _ => None,
        };
        let errors = self.stats.errors.fetch_add(1, Relaxed) + 1;
        if errors.is_power_of_two() {
            log::warn!(
                "camera {} frame {seq} skipped ({errors} so far): {e}",
                self.lanes[lane].name
            );
        }
        if let Some(step) = step {
            let detector = &self.stats.detector;
            if detector.failed_at(step, u64::from(self.max_failures)) {
                log::error!(
                    "detector failed: {} frames in a row could not {} (last: {e}); \
                     signals degrade, the watchdog restarts",
                    detector.consecutive(),
                    match step {
                        DetectorStep::Invoke => "run",
                        DetectorStep::Decode => "decode",
                    }
                );
                if let Some(feed) = &self.feed {
                    feed.set_detector_failed(true);
                }
            }
        }
        self.publish_capture();
    }

    /// Copies every source's counters to the stats and the feed.
    fn publish_capture(&self) {
        let mut dropped = 0;
        for (i, lane) in self.lanes.iter().enumerate() {
            let capture = lane.source.stats();
            dropped += capture.dropped;
            if let Some(feed) = &self.feed {
                feed.publish_capture(i, capture, lane.frames);
            }
        }
        self.stats.dropped.store(dropped, Relaxed);
    }

    /// Processes up to `frames` frames as fast as the source gives them, calling `each` with
    /// the count after every processed frame; returns how many were processed (fewer when a
    /// recording ends). For the bench and the soak.
    pub fn run_frames(
        &mut self,
        frames: u64,
        mut each: impl FnMut(u64),
    ) -> Result<u64, PipelineError> {
        let (mut done, mut skipped) = (0, 0);
        while done < frames {
            match self.step()? {
                Step::Processed => {
                    done += 1;
                    each(done);
                }
                Step::Skipped => skipped += 1,
                Step::Waiting => {}
                Step::End if done == 0 && skipped > 0 => {
                    return Err(PipelineError::AllSkipped(skipped))
                }
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
        let (mut processed, mut skipped) = (0u64, 0u64);
        while !stop.load(Relaxed) && max_frames.is_none_or(|m| processed < m) {
            match self.step()? {
                Step::End if processed == 0 && skipped > 0 => {
                    report(self, self.clock.now(), true);
                    return Err(PipelineError::AllSkipped(skipped));
                }
                Step::End => break,
                Step::Processed => processed += 1,
                Step::Skipped => skipped += 1,
                Step::Waiting => {}
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
    cam: &CameraConfig,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn FrameSource>, PipelineError> {
    match cam.source {
        SourceKind::Replay => Ok(Box::new(ReplaySource::open(cam, clock)?)),
        SourceKind::V4l2 => Ok(Box::new(V4l2Source::open(cam, clock)?)),
        SourceKind::Http => Ok(Box::new(HttpMjpegSource::open(cam, clock)?)),
    }
}

/// Faults injected on purpose (`[testing]` in the config) so integration tests can watch the
/// watchdog act. Inert unless configured.
#[derive(Debug)]
struct FaultInjection {
    fail_invoke_after: Option<u64>,
    /// Frames through the detector so far (for `fail_invoke_after`).
    invokes: u64,
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
            fail_invoke_after: cfg.fail_invoke_after_frames.filter(|_| active),
            invokes: 0,
            stall_after: cfg.stall_after_frames.filter(|_| active),
            stall: Duration::from_millis(cfg.stall_ms),
            balloon_after: cfg.balloon_after_frames.filter(|_| active),
            balloon: Vec::with_capacity(balloon_mib),
        }
    }

    /// Whether this invoke is to fail (every one after `fail_invoke_after` frames).
    fn fail_invoke(&mut self) -> bool {
        self.invokes += 1;
        self.fail_invoke_after.is_some_and(|n| self.invokes > n)
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
