//! Events that save a snapshot (`[snapshots]`): the frame loop compares each camera's zone
//! occupancy and line counts with the previous frame's, in arrays sized at build, and posts
//! what fired to a bounded queue without waiting (a full queue drops and counts). The viewer
//! thread takes the camera's next frame for each event and writes it to the store.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use crate::config::{SnapshotsConfig, MAX_CLASSES};
use crate::scene::{LineCount, Scene};

/// Events waiting for the viewer thread; more are dropped (counted).
pub const EVENT_QUEUE: usize = 64;

/// What fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `snapshots.events[rule]` fired for counted class `class`.
    Rule {
        /// Index into `snapshots.events`.
        rule: u8,
        /// Counted class index.
        class: u8,
    },
    /// The conflict monitor went to flash.
    FaultFlash,
    /// The detector failed `model.max_failures` frames in a row.
    DetectorFailed,
    /// This process started after a watchdog restart.
    WatchdogRestart,
}

/// One event of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Camera index.
    pub camera: usize,
    /// What fired.
    pub kind: EventKind,
}

/// One rule as one camera's scene sees it.
#[derive(Debug, Clone, Copy)]
struct LaneRule {
    rule: u8,
    /// The zone's or line's index in the camera's scene.
    index: usize,
    is_zone: bool,
    /// Bit `c` set: counted class `c` triggers it.
    classes: u16,
}

/// The frame loop's side for one camera: its rules and the previous frame's counts.
#[derive(Debug)]
pub struct LaneEvents {
    camera: usize,
    rules: Vec<LaneRule>,
    zones: Vec<[u32; MAX_CLASSES]>,
    lines: Vec<LineCount>,
    queue: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
}

impl LaneEvents {
    /// The rules of `config` on camera `camera`, whose scene's zones and lines are named
    /// `zones` and `lines`; `classes` are the counted class labels. `None` when no rule is on
    /// this camera.
    pub fn new(
        camera: usize,
        config: &SnapshotsConfig,
        zones: &[&str],
        lines: &[&str],
        classes: &[String],
        queue: SyncSender<Event>,
        dropped: Arc<AtomicU64>,
    ) -> Option<LaneEvents> {
        let mut rules = Vec::new();
        for (rule, e) in config.events.iter().enumerate() {
            let found = match (&e.zone, &e.line) {
                (Some(z), _) => zones.iter().position(|n| n == z).map(|i| (i, true)),
                (_, Some(l)) => lines.iter().position(|n| n == l).map(|i| (i, false)),
                _ => None,
            };
            let Some((index, is_zone)) = found else {
                continue;
            };
            let mut mask = 0u16;
            for (c, name) in classes.iter().enumerate().take(MAX_CLASSES) {
                if e.classes.is_empty() || e.classes.contains(name) {
                    mask |= 1 << c;
                }
            }
            rules.push(LaneRule {
                rule: rule as u8,
                index,
                is_zone,
                classes: mask,
            });
        }
        (!rules.is_empty()).then(|| LaneEvents {
            camera,
            rules,
            zones: vec![[0; MAX_CLASSES]; zones.len()],
            lines: vec![LineCount::default(); lines.len()],
            queue,
            dropped,
        })
    }

    /// Compares `scene` with the previous frame and posts what fired. Allocates nothing and
    /// never waits.
    pub fn check(&mut self, scene: &Scene) {
        let occupancy = scene.zone_occupancy();
        let counts = scene.line_counts();
        for r in &self.rules {
            let mut bits = r.classes;
            while bits != 0 {
                let class = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let fired = if r.is_zone {
                    let (before, now) = (self.zones[r.index][class], occupancy[r.index][class]);
                    before == 0 && now > 0
                } else {
                    let (b, n) = (&self.lines[r.index], &counts[r.index]);
                    n.inbound[class] + n.outbound[class] > b.inbound[class] + b.outbound[class]
                };
                if fired {
                    let kind = EventKind::Rule {
                        rule: r.rule,
                        class: class as u8,
                    };
                    self.post(kind);
                }
            }
        }
        self.zones.copy_from_slice(occupancy);
        self.lines.copy_from_slice(counts);
    }

    fn post(&self, kind: EventKind) {
        let event = Event {
            camera: self.camera,
            kind,
        };
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}
