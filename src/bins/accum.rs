//! Adding up one bin on the frame path: fixed tables sized at start-up for the site's zones,
//! lines and cameras, overwritten in place. When the wall clock passes the bin's end, the
//! finished [`BinRecord`] is copied into the writer's queue and the tables start again.

use std::sync::Arc;
use std::time::Duration;

use super::queue::BinQueue;
use crate::config::MAX_CLASSES;
use crate::scene::LineCount;
use crate::utc::WallClock;

/// A wall clock that steps back by less than this stays in the current bin (a small NTP
/// correction); a longer step closes it.
const BACKWARDS_SLACK_S: u64 = 60;

/// One zone over one bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneBin {
    /// Frames with any object in the zone.
    pub occupied_frames: u32,
    /// Most objects in the zone in one frame.
    pub max_queue: u32,
    /// Per counted class: frames with one of that class in the zone.
    pub class_frames: [u32; MAX_CLASSES],
    /// Per counted class: most of that class in the zone in one frame.
    pub class_max: [u32; MAX_CLASSES],
    /// Per counted class: rises of the zone's count between frames (arrivals).
    pub entries: [u32; MAX_CLASSES],
    /// Per counted class: falls of the zone's count between frames (departures).
    pub exits: [u32; MAX_CLASSES],
}

/// One counting line over one bin: crossings per counted class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineBin {
    /// Onto the line's "in" side.
    pub inbound: [u64; MAX_CLASSES],
    /// Off it.
    pub outbound: [u64; MAX_CLASSES],
}

/// One camera over one bin: how much of it was seen, and how well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CameraBin {
    /// Frames processed end to end.
    pub frames: u32,
    /// Frames the detector could not process (bad frame, failed invoke or decode).
    pub faults: u32,
    /// Time the video was frozen or dark, or the detector marked failed.
    pub degraded: Duration,
}

/// A finished (or running) bin of the whole site, in tables sized at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinRecord {
    /// Start, seconds since the Unix epoch (a multiple of the interval).
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// Per site zone, in config order.
    pub zones: Box<[ZoneBin]>,
    /// Per site line, in config order.
    pub lines: Box<[LineBin]>,
    /// Per camera, in config order.
    pub cameras: Box<[CameraBin]>,
}

impl BinRecord {
    /// An empty record for `zones` zones, `lines` lines and `cameras` cameras.
    pub fn new(zones: usize, lines: usize, cameras: usize) -> BinRecord {
        BinRecord {
            start: 0,
            end: 0,
            zones: vec![ZoneBin::default(); zones].into_boxed_slice(),
            lines: vec![LineBin::default(); lines].into_boxed_slice(),
            cameras: vec![CameraBin::default(); cameras].into_boxed_slice(),
        }
    }

    /// Copies `other` into this record's tables (no allocation; both come from one site).
    pub fn copy_from(&mut self, other: &BinRecord) {
        self.start = other.start;
        self.end = other.end;
        copy_prefix(&mut self.zones, &other.zones);
        copy_prefix(&mut self.lines, &other.lines);
        copy_prefix(&mut self.cameras, &other.cameras);
    }

    fn clear(&mut self) {
        self.zones.fill(ZoneBin::default());
        self.lines.fill(LineBin::default());
        self.cameras.fill(CameraBin::default());
    }
}

fn copy_prefix<T: Copy>(to: &mut [T], from: &[T]) {
    let n = to.len().min(from.len());
    to[..n].copy_from_slice(&from[..n]);
}

/// Where one camera's degraded time stands.
#[derive(Debug, Clone, Copy, Default)]
struct CameraMark {
    /// Clock time of the latest frame seen, and whether it was degraded.
    last: Option<(Duration, bool)>,
}

/// Adds up the running bin; see the module docs. Nothing here allocates after [`new`].
///
/// [`new`]: BinAccumulator::new
#[derive(Debug)]
pub struct BinAccumulator {
    interval_s: u64,
    record: BinRecord,
    /// A bin is open (false until the first tick).
    open: bool,
    /// Per zone: its per-class count at the previous frame, for arrivals and departures.
    prev_zone: Box<[[u32; MAX_CLASSES]]>,
    /// Per line: cumulative crossings now, and when the bin opened.
    line_now: Box<[LineCount]>,
    line_base: Box<[LineCount]>,
    marks: Box<[CameraMark]>,
    queue: Arc<BinQueue>,
    wall: Arc<dyn WallClock>,
}

impl BinAccumulator {
    /// An accumulator for `zones` zones, `lines` lines and `cameras` cameras, closing a bin
    /// every `interval_s` seconds of `wall` time (aligned to the epoch, so to UTC) into `queue`.
    pub fn new(
        zones: usize,
        lines: usize,
        cameras: usize,
        interval_s: u64,
        queue: Arc<BinQueue>,
        wall: Arc<dyn WallClock>,
    ) -> BinAccumulator {
        BinAccumulator {
            interval_s: interval_s.max(1),
            record: BinRecord::new(zones, lines, cameras),
            open: false,
            prev_zone: vec![[0; MAX_CLASSES]; zones].into_boxed_slice(),
            line_now: vec![LineCount::default(); lines].into_boxed_slice(),
            line_base: vec![LineCount::default(); lines].into_boxed_slice(),
            marks: vec![CameraMark::default(); cameras].into_boxed_slice(),
            queue,
            wall,
        }
    }

    /// The running bin, as added up so far (lines' crossings are added when it closes).
    pub fn running(&self) -> &BinRecord {
        &self.record
    }

    /// Looks at the wall clock (`now` is the monotonic clock's time): opens the first bin, or
    /// closes the running one into the queue once its end has passed. Call before a frame's
    /// figures are added, so they land in the bin of the time they were taken.
    pub fn tick(&mut self, now: Duration) {
        let wall = self.wall.unix_now().as_secs();
        let start = wall - wall % self.interval_s;
        if !self.open {
            self.open_at(start);
            return;
        }
        let stepped_back = wall + BACKWARDS_SLACK_S < self.record.start;
        if wall >= self.record.end || stepped_back {
            self.close(now);
            self.open_at(start);
        }
    }

    fn open_at(&mut self, start: u64) {
        self.open = true;
        self.record.clear();
        self.record.start = start;
        self.record.end = start + self.interval_s;
    }

    /// Finishes the running bin at clock time `now` and hands it to the writer.
    fn close(&mut self, now: Duration) {
        for ((bin, now_c), base) in self
            .record
            .lines
            .iter_mut()
            .zip(self.line_now.iter())
            .zip(self.line_base.iter_mut())
        {
            for c in 0..MAX_CLASSES {
                bin.inbound[c] = now_c.inbound[c].saturating_sub(base.inbound[c]);
                bin.outbound[c] = now_c.outbound[c].saturating_sub(base.outbound[c]);
            }
            *base = *now_c;
        }
        for (cam, mark) in self.record.cameras.iter_mut().zip(self.marks.iter_mut()) {
            // A camera still degraded at the boundary: its time so far goes in this bin.
            if let Some((at, true)) = mark.last {
                cam.degraded += now.saturating_sub(at);
                mark.last = Some((now, true));
            }
        }
        self.queue.push(&self.record);
    }

    /// A frame of camera `camera` seen at clock time `now`, degraded or not (video frozen or
    /// dark, detector failed): the time since its previous frame counts as degraded when that
    /// one was.
    pub fn observe(&mut self, camera: usize, degraded: bool, now: Duration) {
        let (Some(mark), Some(cam)) = (
            self.marks.get_mut(camera),
            self.record.cameras.get_mut(camera),
        ) else {
            return;
        };
        if let Some((at, true)) = mark.last {
            cam.degraded += now.saturating_sub(at);
        }
        mark.last = Some((now, degraded));
    }

    /// A frame of camera `camera` the detector could not process.
    pub fn fault(&mut self, camera: usize) {
        if let Some(cam) = self.record.cameras.get_mut(camera) {
            cam.faults = cam.faults.saturating_add(1);
        }
    }

    /// A frame of camera `camera` processed end to end: `occupancy[i]` is the per-class count
    /// in site zone `zones[i]`, `counts[i]` the cumulative crossings of site line `lines[i]`.
    pub fn frame(
        &mut self,
        camera: usize,
        zones: &[usize],
        occupancy: &[[u32; MAX_CLASSES]],
        lines: &[usize],
        counts: &[LineCount],
    ) {
        if let Some(cam) = self.record.cameras.get_mut(camera) {
            cam.frames = cam.frames.saturating_add(1);
        }
        for (&z, counts) in zones.iter().zip(occupancy) {
            let (Some(bin), Some(prev)) = (self.record.zones.get_mut(z), self.prev_zone.get_mut(z))
            else {
                continue;
            };
            let total: u32 = counts.iter().sum();
            if total > 0 {
                bin.occupied_frames += 1;
            }
            bin.max_queue = bin.max_queue.max(total);
            for c in 0..MAX_CLASSES {
                let (n, was) = (counts[c], prev[c]);
                if n > 0 {
                    bin.class_frames[c] += 1;
                }
                bin.class_max[c] = bin.class_max[c].max(n);
                bin.entries[c] += n.saturating_sub(was);
                bin.exits[c] += was.saturating_sub(n);
            }
            *prev = *counts;
        }
        for (&l, c) in lines.iter().zip(counts) {
            if let Some(now) = self.line_now.get_mut(l) {
                *now = *c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn counts(n: &[u32]) -> [u32; MAX_CLASSES] {
        let mut a = [0; MAX_CLASSES];
        a[..n.len()].copy_from_slice(n);
        a
    }

    #[test]
    fn a_camera_degraded_across_the_boundary_splits_its_time() {
        let wall = ManualClock::new();
        wall.set(Duration::from_secs(1_000 * 60));
        let queue = Arc::new(BinQueue::new(2, 0, 0, 1));
        let mut acc = BinAccumulator::new(0, 0, 1, 60, queue.clone(), Arc::new(wall.clone()));
        let t = Duration::from_secs;
        acc.tick(t(0));
        acc.observe(0, true, t(0));
        acc.observe(0, true, t(40));
        wall.advance(t(61));
        acc.tick(t(61));
        acc.observe(0, false, t(70));
        acc.frame(0, &[], &[], &[], &[]);
        let mut out = BinRecord::new(0, 0, 1);
        assert!(queue.pop_into(&mut out));
        assert_eq!(out.cameras[0].degraded, t(61));
        assert_eq!(acc.running().cameras[0].degraded, t(9));
        assert_eq!(acc.running().cameras[0].frames, 1);
    }

    #[test]
    fn arrivals_and_departures_carry_over_bins() {
        let wall = ManualClock::new();
        let queue = Arc::new(BinQueue::new(2, 1, 0, 1));
        let mut acc = BinAccumulator::new(1, 0, 1, 60, queue.clone(), Arc::new(wall.clone()));
        acc.tick(Duration::ZERO);
        acc.frame(0, &[0], &[counts(&[2, 1])], &[], &[]);
        wall.advance(Duration::from_secs(60));
        acc.tick(Duration::ZERO);
        // The same three objects: no new arrivals in the new bin; one car leaves.
        acc.frame(0, &[0], &[counts(&[1, 1])], &[], &[]);
        let z = acc.running().zones[0];
        assert_eq!((z.entries[0], z.exits[0], z.entries[1]), (0, 1, 0));
        assert_eq!((z.occupied_frames, z.max_queue), (1, 2));
    }
}
