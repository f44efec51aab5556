//! The fixed slot through which the frame loop hands one camera's newest frame, its tracks and
//! its counts to the viewer: a triple buffer, so the pipeline never waits for the viewer and
//! the viewer always reads a whole, consistent frame. Every buffer is allocated in
//! [`view_slot`]; staging and publishing copy into them and allocate nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::FrameFormat;
use crate::config::{MAX_CLASSES, MAX_LINES, MAX_ZONES};
use crate::geometry::BBox;
use crate::scene::{LineCount, Scene};

/// Tracks a view frame holds; more confirmed tracks than this are left undrawn (counted in
/// [`ViewDemand::tracks_dropped`]).
pub const MAX_VIEW_TRACKS: usize = 256;

/// One confirmed track as the viewer draws it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ViewTrack {
    /// Track id.
    pub id: u64,
    /// Counted class index (into the site's `model.classes`).
    pub class_index: u8,
    /// Score of the latest detection.
    pub score: f32,
    /// Box of the latest detection, normalized.
    pub bbox: BBox,
    /// Whether the track is stationary (parked).
    pub stationary: bool,
}

/// One camera's frame with what the scene made of it, as published to the viewer.
#[derive(Debug, Clone)]
pub struct ViewFrame {
    /// The frame's pixels in the camera's format (its length never changes).
    pub pixels: Vec<u8>,
    /// Frames published into this slot so far, this one included (0: none yet).
    pub seq: u64,
    /// Capture time on the pipeline's clock.
    pub timestamp: Duration,
    /// Confirmed tracks seen in this frame.
    pub tracks: heapless::Vec<ViewTrack, MAX_VIEW_TRACKS>,
    /// Occupancy per class of each of the camera's zones, in its scene's order.
    pub zones: heapless::Vec<[u32; MAX_CLASSES], MAX_ZONES>,
    /// Crossings of each of the camera's lines, in its scene's order.
    pub lines: heapless::Vec<LineCount, MAX_LINES>,
}

impl ViewFrame {
    /// An empty frame (seq 0) sized for `format`.
    pub fn new(format: FrameFormat) -> ViewFrame {
        ViewFrame {
            pixels: vec![0; format.frame_len()],
            seq: 0,
            timestamp: Duration::ZERO,
            tracks: heapless::Vec::new(),
            zones: heapless::Vec::new(),
            lines: heapless::Vec::new(),
        }
    }

    /// Copies the confirmed tracks seen this frame, the occupancy and the line counts of
    /// `scene`; returns how many tracks did not fit.
    pub fn fill_scene(&mut self, scene: &Scene) -> u64 {
        self.tracks.clear();
        let mut dropped = 0;
        for t in scene.tracks() {
            if !t.is_confirmed() || !t.seen_this_frame() {
                continue;
            }
            let track = ViewTrack {
                id: t.id,
                class_index: t.class_index as u8,
                score: t.score,
                bbox: t.bbox,
                stationary: t.is_stationary(),
            };
            if self.tracks.push(track).is_err() {
                dropped += 1;
            }
        }
        self.zones.clear();
        for z in scene.zone_occupancy().iter().take(MAX_ZONES) {
            let _ = self.zones.push(*z);
        }
        self.lines.clear();
        for l in scene.line_counts().iter().take(MAX_LINES) {
            let _ = self.lines.push(*l);
        }
        dropped
    }
}

/// What the viewer asks of one camera's slot, and what the pipeline did about it.
#[derive(Debug, Default)]
pub struct ViewDemand {
    /// Set by the viewer when it wants a frame; cleared by the pipeline when it publishes.
    pub wanted: AtomicBool,
    /// Frames published.
    pub published: AtomicU64,
    /// Confirmed tracks left out of a view frame because it was full.
    pub tracks_dropped: AtomicU64,
}

/// The pipeline's end of a camera's slot.
#[derive(Debug)]
pub struct ViewTap {
    input: triple_buffer::Input<ViewFrame>,
    demand: Arc<ViewDemand>,
    period: Duration,
    next_due: Duration,
    staged: bool,
    seq: u64,
}

/// Builds a camera's slot: the pipeline's tap, the viewer's output, and the shared demand.
/// `period` is the shortest time between two published frames (1 / `view.fps`).
pub fn view_slot(
    format: FrameFormat,
    period: Duration,
) -> (ViewTap, triple_buffer::Output<ViewFrame>, Arc<ViewDemand>) {
    let (input, output) = triple_buffer::triple_buffer(&ViewFrame::new(format));
    let demand = Arc::new(ViewDemand::default());
    let tap = ViewTap {
        input,
        demand: demand.clone(),
        period,
        next_due: Duration::ZERO,
        staged: false,
        seq: 0,
    };
    (tap, output, demand)
}

impl ViewTap {
    /// Called with each new frame: copies it into the slot's back buffer if the viewer wants
    /// one and the view rate allows, else does nothing (the usual case). Never waits.
    pub fn stage(&mut self, pixels: &[u8], timestamp: Duration, now: Duration) {
        self.staged = false;
        if now < self.next_due || !self.demand.wanted.load(Relaxed) {
            return;
        }
        let frame = self.input.input_buffer_mut();
        if frame.pixels.len() != pixels.len() {
            return; // a source's format is fixed at open, so this does not happen
        }
        frame.pixels.copy_from_slice(pixels);
        frame.timestamp = timestamp;
        self.staged = true;
    }

    /// Called after the scene took the staged frame's detections: adds the scene and
    /// publishes the frame to the viewer.
    pub fn publish(&mut self, scene: &Scene, now: Duration) {
        if !std::mem::take(&mut self.staged) {
            return;
        }
        self.seq += 1;
        let frame = self.input.input_buffer_mut();
        frame.seq = self.seq;
        let dropped = frame.fill_scene(scene);
        self.input.publish();
        self.next_due = now + self.period;
        self.demand.wanted.store(false, Relaxed);
        self.demand.published.fetch_add(1, Relaxed);
        if dropped > 0 {
            self.demand.tracks_dropped.fetch_add(dropped, Relaxed);
        }
    }
}
