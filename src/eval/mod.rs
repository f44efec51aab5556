//! `edgewatch eval`: runs a recording through the whole pipeline, deterministically, and checks
//! the counts against a truth file ([`truth`]), optionally scoring the tracks against an MOT
//! ground truth ([`mot`]).
//!
//! Time is the recording's: frame `i` is stamped `i / fps`, whatever the wall clock does, so
//! the tracker sees the same elapsed time between frames on a fast or a slow machine, and two
//! runs give the same counts. The replay is driven by its own [`ManualClock`], moved to each
//! frame's time before the pipeline asks for it; the pipeline itself keeps the real clock, so
//! its stage timings are real. `--every N` moves that clock N frames at a time, so the replay
//! skips (and counts as dropped) the frames in between, as a camera's would be while a slow
//! detector is busy.

pub mod assign;
pub mod mot;
mod report;
pub mod truth;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::replay::{self, ReplaySource};
use crate::capture::y4m;
use crate::capture::CaptureError;
use crate::clock::{ManualClock, MonotonicClock};
use crate::config::{CaptureFormat, Config, ConfigError, SourceKind};
use crate::health::stats::Stage;
use crate::pipeline::{Pipeline, PipelineError, Step};
use crate::scene::LineCount;
use crate::vision::pool::load_detector;

use mot::{MotBox, MotError, MotSequence};
pub use report::{Figures, LineCheck, Report, TrackCheck, ZoneCheck, ZoneStat};
use truth::{SiteNames, Truth, TruthError};

/// What `edgewatch eval` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Site configuration: model, tracker, zones and lines (the camera's source is replaced).
    pub config: PathBuf,
    /// Truth file.
    pub truth: PathBuf,
    /// Y4M file, MJPEG file (`.mjpeg`, `.mjpg`), image folder or one image.
    pub recording: PathBuf,
    /// Process one frame in this many (1: every frame).
    pub every: u32,
    /// The recording's frame rate, overriding the truth file and the Y4M header.
    pub fps: Option<f64>,
    /// MOT ground truth (`gt.txt`) to score the tracks against.
    pub gt: Option<PathBuf>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The site configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The truth file was rejected.
    #[error(transparent)]
    Truth(#[from] TruthError),
    /// The MOT ground truth was rejected.
    #[error(transparent)]
    Mot(#[from] MotError),
    /// An option does not fit the recording (no frame rate, `--every 0`, ...).
    #[error("{key}: {message}")]
    Usage {
        /// The option or key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The recording, the model or a frame failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl EvalError {
    /// Whether the fault is in what was given (config, truth, options), not in running it.
    pub fn is_input(&self) -> bool {
        match self {
            EvalError::Pipeline(e) => matches!(e, PipelineError::Config(_)),
            _ => true,
        }
    }
}

fn usage(key: &str, message: impl Into<String>) -> EvalError {
    EvalError::Usage {
        key: key.into(),
        message: message.into(),
    }
}

/// Size and frame rate the recording declares, where it declares them.
struct Probe {
    size: Option<(u32, u32)>,
    fps: Option<f64>,
    pixel_format: Option<CaptureFormat>,
}

fn probe(path: &Path, max_frame: usize) -> Result<Probe, EvalError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let io = |source| {
        PipelineError::Capture(CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    if path.is_dir() {
        return Ok(Probe {
            size: None,
            fps: None,
            pixel_format: None,
        });
    }
    match ext.as_str() {
        "y4m" => {
            let file = std::fs::File::open(path).map_err(io)?;
            let header = y4m::read_header(&mut BufReader::new(file)).map_err(|e| {
                PipelineError::Capture(CaptureError::Y4m {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            })?;
            Ok(Probe {
                size: Some((header.width, header.height)),
                fps: header
                    .fps
                    .filter(|&(_, d)| d > 0)
                    .map(|(n, d)| n as f64 / d as f64),
                pixel_format: Some(CaptureFormat::Nv12),
            })
        }
        "mjpeg" | "mjpg" => Ok(Probe {
            size: Some(replay::mjpeg_size(path, max_frame).map_err(PipelineError::from)?),
            fps: None,
            pixel_format: Some(CaptureFormat::Nv12),
        }),
        _ => {
            let size = image::image_dimensions(path).map_err(|e| {
                PipelineError::Capture(CaptureError::Decode {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            })?;
            Ok(Probe {
                size: Some(size),
                fps: None,
                pixel_format: None,
            })
        }
    }
}

/// The site as eval runs it: only the first camera, replaying `recording` at `fps`.
fn eval_config(
    mut config: Config,
    recording: &Path,
    probe: &Probe,
    fps: f64,
) -> Result<Config, EvalError> {
    let cam_name = config.cameras[0].name.clone();
    let on_cam = |c: &Option<String>| c.as_deref().is_none_or(|n| n == cam_name);
    config.zones.retain(|z| on_cam(&z.camera));
    config.lines.retain(|l| on_cam(&l.camera));
    config.cameras.truncate(1);
    let cam = &mut config.cameras[0];
    cam.source = SourceKind::Replay;
    cam.path = recording.to_path_buf();
    cam.fps = fps as f32;
    cam.looping = false;
    cam.max_frames = 4096;
    if let Some((w, h)) = probe.size {
        cam.width = w;
        cam.height = h;
    }
    if let Some(f) = probe.pixel_format {
        cam.pixel_format = Some(f);
    }
    if cam.capture_format().delivered().needs_even_size()
        && (!cam.width.is_multiple_of(2) || !cam.height.is_multiple_of(2))
    {
        cam.pixel_format = Some(CaptureFormat::Rgb24);
    }
    // The signals and the health server are not part of an evaluation.
    config.signals = None;
    config.health.enabled = false;
    Ok(config)
}

/// Runs the evaluation and returns its report; [`Report::passed`] says whether every
/// expectation held.
pub fn run(opts: &EvalOptions) -> Result<Report, EvalError> {
    if opts.every == 0 {
        return Err(usage("--every", "must be at least 1"));
    }
    let site = Config::load(&opts.config)?;
    let max_frame = site.cameras[0].max_frame_bytes();
    let probe = probe(&opts.recording, max_frame)?;
    // The truth is checked against the names of the first camera's lines and zones.
    let cam_name = site.cameras[0].name.clone();
    let on_cam = |c: &Option<String>| c.as_deref().is_none_or(|n| n == cam_name);
    let line_names: Vec<String> = site
        .lines
        .iter()
        .filter(|l| on_cam(&l.camera))
        .map(|l| l.name.clone())
        .collect();
    let zone_names: Vec<String> = site
        .zones
        .iter()
        .filter(|z| on_cam(&z.camera))
        .map(|z| z.name.clone())
        .collect();
    let truth = Truth::load(
        &opts.truth,
        SiteNames {
            lines: &line_names,
            zones: &zone_names,
            classes: &site.model.classes,
        },
    )?;
    let fps =
        match opts.fps.or(truth.fps).or(probe.fps) {
            Some(f) if f > 0.0 && f <= 240.0 => f,
            Some(f) => return Err(usage("--fps", format!("{f} is not in (0, 240]"))),
            None => return Err(usage(
                "fps",
                "the recording does not say its frame rate: give --fps or `fps` in the truth file",
            )),
        };
    let mot_gt = opts.gt.as_deref().map(MotSequence::load).transpose()?;
    let config = eval_config(site, &opts.recording, &probe, fps)?;
    let run = Run::new(&config, fps, opts.every)?;
    let observed = run.go(mot_gt.is_some())?;
    Ok(report::build(opts, &truth, fps, observed, mot_gt))
}

/// What the run saw, frame by frame, before it is judged.
struct Observed {
    frames_read: u64,
    frames_processed: u64,
    /// MOT frame numbers (from 1) of the processed frames.
    processed: Vec<u64>,
    classes: Vec<String>,
    lines: Vec<(String, LineCount)>,
    tracks_created: u64,
    /// Track id -> counted class index it had when last seen.
    track_class: BTreeMap<u64, usize>,
    /// Per site zone: name and, per processed frame, its occupancy per counted class.
    zones: Vec<(String, Vec<[u32; crate::config::MAX_CLASSES]>)>,
    hyp: MotSequence,
    figures: Figures,
}

struct Run {
    pipeline: Pipeline,
    clock: ManualClock,
    interval: Duration,
    every: u64,
    width: f64,
    height: f64,
}

impl Run {
    fn new(config: &Config, fps: f64, every: u32) -> Result<Run, EvalError> {
        let clock = ManualClock::new();
        let cam = &config.cameras[0];
        let interval =
            replay::frame_interval(cam.fps).ok_or_else(|| usage("fps", "must be above 0"))?;
        debug_assert!((interval.as_secs_f64() - 1.0 / fps).abs() < 1e-6);
        let source =
            ReplaySource::open(cam, Arc::new(clock.clone())).map_err(PipelineError::from)?;
        let detector = load_detector(&config.model).map_err(PipelineError::from)?;
        let pipeline = Pipeline::assemble(
            config,
            detector,
            Box::new(source),
            Arc::new(MonotonicClock::new()),
        )?;
        Ok(Run {
            pipeline,
            clock,
            interval,
            every: u64::from(every),
            width: f64::from(cam.width),
            height: f64::from(cam.height),
        })
    }

    /// Steps the pipeline through the recording, one frame in `every`, observing the scene
    /// after each processed frame.
    fn go(mut self, want_boxes: bool) -> Result<Observed, EvalError> {
        let p = &mut self.pipeline;
        let zone_count = p.zone_names().len();
        let mut zones: Vec<Vec<[u32; crate::config::MAX_CLASSES]>> = vec![Vec::new(); zone_count];
        let mut track_class = BTreeMap::new();
        let mut hyp = MotSequence::default();
        let mut processed = Vec::new();
        let step_ns = self.interval.as_nanos() as u64;
        let started = Instant::now();
        let mut k = 0u64;
        loop {
            let seq = k * self.every;
            // The replay delivers the frame due at this time: frame `seq`, stamped seq / fps.
            self.clock.set(Duration::from_nanos(step_ns * seq));
            k += 1;
            match p.step()? {
                Step::End => break,
                Step::Skipped | Step::Waiting => continue,
                Step::Processed => {}
            }
            processed.push(seq + 1);
            for (z, (_, occ)) in zones.iter_mut().zip(p.zones()) {
                z.push(*occ);
            }
            let counted = p.counted_class_ids();
            for t in p
                .scene()
                .tracks()
                .iter()
                .filter(|t| t.is_confirmed() && t.seen_this_frame())
            {
                if let Some(c) = counted.iter().position(|&id| id == t.class) {
                    track_class.insert(t.id, c);
                }
                if want_boxes {
                    // The frame the track was seen in (a pool of interpreters trails a frame).
                    let frame = (t.last_seen.as_nanos() as u64 + step_ns / 2) / step_ns.max(1) + 1;
                    let known = hyp.frames.get(&frame);
                    if known.is_some_and(|f| f.iter().any(|b| b.id == t.id)) {
                        continue;
                    }
                    let b = t.bbox;
                    hyp.push(
                        frame,
                        MotBox {
                            id: t.id,
                            x: f64::from(b.xmin) * self.width,
                            y: f64::from(b.ymin) * self.height,
                            w: f64::from(b.xmax - b.xmin) * self.width,
                            h: f64::from(b.ymax - b.ymin) * self.height,
                        },
                    );
                }
            }
        }
        let wall = started.elapsed();
        let capture = p.cameras().next().map(|c| c.capture).unwrap_or_default();
        let stats = p.stats();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let invoke = stats.total(Stage::Invoke);
        let frame = stats.total(Stage::Frame);
        let frames_processed = processed.len() as u64;
        let figures = Figures {
            wall_s: wall.as_secs_f64(),
            fps: frames_processed as f64 / wall.as_secs_f64().max(1e-9),
            invoke_ms_mean: ms(invoke.mean()),
            invoke_ms_p50: ms(invoke.quantile(0.5)),
            invoke_ms_p99: ms(invoke.quantile(0.99)),
            frame_ms_mean: ms(frame.mean()),
        };
        Ok(Observed {
            frames_read: capture.delivered + capture.dropped,
            frames_processed,
            processed,
            classes: p.class_names().to_vec(),
            lines: p.lines().map(|(n, c)| (n.to_string(), *c)).collect(),
            tracks_created: p.tracker_stats().created,
            track_class,
            zones: p.zone_names().iter().cloned().zip(zones).collect(),
            hyp,
            figures,
        })
    }
}

/// Classes as a `+`-joined label, e.g. `car+truck`.
fn class_label(indexes: &[usize], classes: &[String]) -> String {
    indexes
        .iter()
        .map(|&i| classes[i].as_str())
        .collect::<Vec<_>>()
        .join("+")
}
