//! Fixed-capacity IoU multi-object tracker.
//!
//! Every slot is allocated by [`Tracker::new`]; [`Tracker::update`] only overwrites them. A track
//! that no detection continues for the configured TTL is evicted, so nothing accumulates however
//! long the process runs (the Python predecessor never forgot a face it had once tracked), and a
//! detection that finds no free slot is dropped and counted rather than growing the table.

use std::time::Duration;

use crate::config::{TrackerConfig, MAX_CLASSES};
use crate::geometry::{BBox, Point};
use crate::vision::detection::{Detection, MAX_DETECTIONS};

/// Model class ids of the counted classes, in site order: position `i` is counted class `i`,
/// the index every count array uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedClasses {
    ids: [u16; MAX_CLASSES],
    len: usize,
}

impl CountedClasses {
    /// `ids[i]` is the model class id of counted class `i`.
    ///
    /// # Panics
    /// If more than [`MAX_CLASSES`] ids are given; config validation rules that out.
    pub fn new(ids: &[u16]) -> CountedClasses {
        assert!(
            ids.len() <= MAX_CLASSES,
            "{} counted classes, at most {MAX_CLASSES} fit the count arrays",
            ids.len()
        );
        let mut all = [0; MAX_CLASSES];
        all[..ids.len()].copy_from_slice(ids);
        CountedClasses {
            ids: all,
            len: ids.len(),
        }
    }

    /// The counted class index of model class `class`, if it is counted.
    pub fn index_of(&self, class: u16) -> Option<usize> {
        self.as_slice().iter().position(|&c| c == class)
    }

    /// The model class ids, in counted class order.
    pub fn as_slice(&self) -> &[u16] {
        &self.ids[..self.len]
    }
}

/// One tracked object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track {
    /// Unique for the life of the tracker; ids increase and are never reused.
    pub id: u64,
    /// Model class id (tracks only continue with detections of the same class).
    pub class: u16,
    /// Counted class index of `class`: where this track lands in count arrays.
    pub class_index: usize,
    /// Score of the latest detection.
    pub score: f32,
    /// Box of the latest detection.
    pub bbox: BBox,
    /// Timestamp of the frame that created the track.
    pub first_seen: Duration,
    /// Timestamp of the latest frame with a matching detection.
    pub last_seen: Duration,
    /// Number of detections this track has absorbed (saturating).
    pub hits: u32,
    previous_ground: Point,
    seen: bool,
    lines_counted: u64,
}

impl Track {
    /// Where the object touches the ground now: the point zones and lines test.
    pub fn ground_point(&self) -> Point {
        self.bbox.ground_point()
    }

    /// Whether a detection of the latest update continued or created this track; tracks that
    /// are only coasting until their TTL runs out answer `false`.
    pub fn seen_this_frame(&self) -> bool {
        self.seen
    }

    /// The ground point's move in the latest update, `(before, now)`, if the track was seen in
    /// it. "Before" is the previous detection, however many frames ago, so a crossing made
    /// while the detector missed the object is still found. A new track has not moved.
    pub fn movement(&self) -> Option<(Point, Point)> {
        self.seen
            .then(|| (self.previous_ground, self.ground_point()))
    }

    /// Bit `i` is set once the track has been counted on line `i`.
    pub fn lines_counted(&self) -> u64 {
        self.lines_counted
    }

    /// Whether the track has been counted on line `line` (< 64).
    pub fn line_counted(&self, line: usize) -> bool {
        self.lines_counted & (1 << line) != 0
    }

    pub(crate) fn mark_line_counted(&mut self, line: usize) {
        self.lines_counted |= 1 << line;
    }
}

/// What the tracker holds and what it has created, evicted and dropped since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Tracks alive now.
    pub live: usize,
    /// The most tracks alive at once.
    pub capacity: usize,
    /// Tracks ever created.
    pub created: u64,
    /// Tracks evicted after their TTL.
    pub evicted: u64,
    /// Detections that would have started a track but found every slot taken.
    pub dropped_full: u64,
    /// Detections past the first [`MAX_DETECTIONS`] of one update, never looked at.
    pub dropped_overflow: u64,
    /// Detections of a class that is not counted, or with a non-finite box.
    pub ignored: u64,
}

/// A possible detection-to-track match.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    iou: f32,
    track: u32,
    detection: u16,
}

/// What became of one detection during an update.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Ignored,
    /// Still looking for a track; holds its counted class index.
    Unmatched(usize),
    Matched,
}

/// Greedy IoU tracker over a table of at most `capacity` tracks.
#[derive(Debug)]
pub struct Tracker {
    /// Sorted by id: new tracks are pushed at the end and eviction keeps the order.
    tracks: Vec<Track>,
    capacity: usize,
    ttl: Duration,
    iou_threshold: f32,
    classes: CountedClasses,
    /// Scratch for matching, sized for every track against every detection so it never grows.
    candidates: Vec<Candidate>,
    next_id: u64,
    stats: TrackerStats,
}

impl Tracker {
    /// A tracker with room for `config.capacity` tracks of the `counted_classes` (model class
    /// ids, in counted class order); detections of other classes are ignored.
    ///
    /// # Panics
    /// If more than [`MAX_CLASSES`] classes are given.
    pub fn new(config: &TrackerConfig, counted_classes: &[u16]) -> Tracker {
        let capacity = config.capacity;
        Tracker {
            tracks: Vec::with_capacity(capacity),
            capacity,
            ttl: Duration::from_millis(config.ttl_ms),
            iou_threshold: config.iou_threshold,
            classes: CountedClasses::new(counted_classes),
            candidates: Vec::with_capacity(capacity.saturating_mul(MAX_DETECTIONS)),
            next_id: 1,
            stats: TrackerStats {
                capacity,
                ..TrackerStats::default()
            },
        }
    }

    /// One frame taken at `now`: evicts tracks unseen for longer than the TTL, continues
    /// tracks with the same-class detections that overlap them most (greedy, highest IoU
    /// first), and starts tracks for the rest while slots are free, in detection order.
    pub fn update(&mut self, detections: &[Detection], now: Duration) {
        let kept = detections.len().min(MAX_DETECTIONS);
        self.stats.dropped_overflow += (detections.len() - kept) as u64;
        let detections = &detections[..kept];

        for track in &mut self.tracks {
            track.seen = false;
        }
        self.evict_stale(now);

        let mut fates = [Fate::Ignored; MAX_DETECTIONS];
        for (fate, d) in fates.iter_mut().zip(detections) {
            let finite = [d.bbox.xmin, d.bbox.ymin, d.bbox.xmax, d.bbox.ymax]
                .iter()
                .all(|v| v.is_finite());
            match self.classes.index_of(d.class) {
                Some(index) if finite => *fate = Fate::Unmatched(index),
                _ => self.stats.ignored += 1,
            }
        }
        self.match_tracks(detections, &mut fates[..kept], now);
        self.start_tracks(detections, &fates[..kept], now);
        self.stats.live = self.tracks.len();
    }

    /// Live tracks, oldest (lowest id) first.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub(crate) fn tracks_mut(&mut self) -> &mut [Track] {
        &mut self.tracks
    }

    /// Counters since the tracker started.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// The counted classes the tracker follows.
    pub fn counted_classes(&self) -> &CountedClasses {
        &self.classes
    }

    fn evict_stale(&mut self, now: Duration) {
        let ttl = self.ttl;
        let before = self.tracks.len();
        // `retain` rather than `swap_remove` keeps the table sorted by id, so output order is
        // stable and ties in matching go to the older track.
        self.tracks
            .retain(|t| now.saturating_sub(t.last_seen) <= ttl);
        self.stats.evicted += (before - self.tracks.len()) as u64;
    }

    fn match_tracks(&mut self, detections: &[Detection], fates: &mut [Fate], now: Duration) {
        self.candidates.clear();
        for (ti, track) in self.tracks.iter().enumerate() {
            for (di, d) in detections.iter().enumerate() {
                if d.class != track.class || fates[di] == Fate::Ignored {
                    continue;
                }
                let iou = track.bbox.iou(&d.bbox);
                // Boxes that do not touch never continue a track, even with a threshold of 0.
                let overlaps = iou > 0.0 && iou >= self.iou_threshold;
                if overlaps && self.candidates.len() < self.candidates.capacity() {
                    self.candidates.push(Candidate {
                        iou,
                        track: ti as u32,
                        detection: di as u16,
                    });
                }
            }
        }
        // Highest IoU first, so two nearby objects do not steal each other's tracks the way
        // matching in detection order can; ties go to the older track, then the earlier
        // detection, which keeps results deterministic. `sort_unstable_by` does not allocate.
        self.candidates.sort_unstable_by(|a, b| {
            b.iou
                .total_cmp(&a.iou)
                .then(a.track.cmp(&b.track))
                .then(a.detection.cmp(&b.detection))
        });
        for c in &self.candidates {
            let track = &mut self.tracks[c.track as usize];
            let fate = &mut fates[c.detection as usize];
            if track.seen || *fate == Fate::Matched {
                continue;
            }
            let d = &detections[c.detection as usize];
            track.previous_ground = track.bbox.ground_point();
            track.bbox = d.bbox;
            track.score = d.score;
            track.last_seen = now;
            track.hits = track.hits.saturating_add(1);
            track.seen = true;
            *fate = Fate::Matched;
        }
    }

    fn start_tracks(&mut self, detections: &[Detection], fates: &[Fate], now: Duration) {
        for (d, fate) in detections.iter().zip(fates) {
            let Fate::Unmatched(class_index) = *fate else {
                continue;
            };
            // The table never grows past the capacity it was allocated with.
            if self.tracks.len() >= self.capacity {
                self.stats.dropped_full += 1;
                continue;
            }
            self.tracks.push(Track {
                id: self.next_id,
                class: d.class,
                class_index,
                score: d.score,
                bbox: d.bbox,
                first_seen: now,
                last_seen: now,
                hits: 1,
                previous_ground: d.bbox.ground_point(),
                seen: true,
                lines_counted: 0,
            });
            self.next_id += 1;
            self.stats.created += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAR: u16 = 2;
    const PERSON: u16 = 0;

    fn config(capacity: usize, ttl_ms: u64) -> TrackerConfig {
        TrackerConfig {
            capacity,
            ttl_ms,
            iou_threshold: 0.3,
        }
    }

    fn det(class: u16, cx: f32, cy: f32) -> Detection {
        Detection {
            class,
            score: 0.9,
            bbox: BBox::from_center(cx, cy, 0.1, 0.1),
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn ids(t: &Tracker) -> Vec<u64> {
        t.tracks().iter().map(|t| t.id).collect()
    }

    #[test]
    fn moving_boxes_keep_their_ids() {
        let mut t = Tracker::new(&config(8, 500), &[PERSON, CAR]);
        for frame in 0..20u64 {
            let step = frame as f32 * 0.01;
            // Two cars moving towards each other and a person walking down.
            let dets = [
                det(CAR, 0.2 + step, 0.5),
                det(CAR, 0.8 - step, 0.5),
                det(PERSON, 0.5, 0.1 + step),
            ];
            t.update(&dets, ms(frame * 40));
            assert_eq!(ids(&t), vec![1, 2, 3], "frame {frame}");
            assert!(t
                .tracks()
                .iter()
                .all(|t| t.seen_this_frame() && t.hits == frame as u32 + 1));
        }
        let tracks = t.tracks();
        assert!((tracks[0].bbox.center().x - 0.39).abs() < 1e-5);
        assert!((tracks[1].bbox.center().x - 0.61).abs() < 1e-5);
        assert_eq!(tracks[2].class_index, 0);
        assert_eq!(tracks[0].class_index, 1);
        assert_eq!(t.stats().created, 3);
    }

    #[test]
    fn greedy_matching_prefers_the_best_overlap() {
        let mut t = Tracker::new(&config(8, 500), &[CAR]);
        t.update(&[det(CAR, 0.50, 0.5), det(CAR, 0.56, 0.5)], ms(0));
        // Listed in the opposite order: matching by detection order would hand the first
        // detection to track 1 (it overlaps it too), swapping the ids.
        t.update(&[det(CAR, 0.57, 0.5), det(CAR, 0.51, 0.5)], ms(40));
        let tracks = t.tracks();
        assert_eq!((tracks[0].id, tracks[0].bbox.center().x), (1, 0.51));
        assert_eq!((tracks[1].id, tracks[1].bbox.center().x), (2, 0.57));
    }

    #[test]
    fn class_mismatch_does_not_match() {
        let mut t = Tracker::new(&config(8, 500), &[PERSON, CAR]);
        t.update(&[det(CAR, 0.5, 0.5)], ms(0));
        t.update(&[det(PERSON, 0.5, 0.5)], ms(40));
        let tracks = t.tracks();
        assert_eq!(ids(&t), vec![1, 2]);
        assert!(!tracks[0].seen_this_frame());
        assert_eq!((tracks[1].class, tracks[1].class_index), (PERSON, 0));
    }

    #[test]
    fn uncounted_classes_and_bad_boxes_are_ignored() {
        let mut t = Tracker::new(&config(8, 500), &[CAR]);
        let mut nan = det(CAR, 0.5, 0.5);
        nan.bbox.xmax = f32::NAN;
        t.update(&[det(PERSON, 0.5, 0.5), nan, det(CAR, 0.2, 0.2)], ms(0));
        assert_eq!(ids(&t), vec![1]);
        assert_eq!(t.stats().ignored, 2);
    }

    #[test]
    fn disjoint_boxes_never_match_even_with_zero_threshold() {
        let cfg = TrackerConfig {
            capacity: 8,
            ttl_ms: 500,
            iou_threshold: 0.0,
        };
        let mut t = Tracker::new(&cfg, &[CAR]);
        t.update(&[det(CAR, 0.2, 0.5)], ms(0));
        t.update(&[det(CAR, 0.8, 0.5)], ms(40));
        assert_eq!(ids(&t), vec![1, 2]);
    }

    #[test]
    fn unseen_tracks_are_evicted_after_the_ttl() {
        let mut t = Tracker::new(&config(8, 1000), &[CAR]);
        t.update(&[det(CAR, 0.2, 0.5), det(CAR, 0.8, 0.5)], ms(0));
        t.update(&[det(CAR, 0.8, 0.5)], ms(500));
        // Track 1 was last seen at 0: it lives for exactly the TTL, and no longer.
        t.update(&[], ms(1000));
        assert_eq!(ids(&t), vec![1, 2]);
        assert!(t.tracks().iter().all(|t| !t.seen_this_frame()));
        t.update(&[], ms(1001));
        assert_eq!(ids(&t), vec![2]);
        t.update(&[], ms(1501));
        assert!(t.tracks().is_empty());
        let s = t.stats();
        assert_eq!((s.live, s.created, s.evicted), (0, 2, 2));
        // An object reappearing after eviction is a new object with a new id.
        t.update(&[det(CAR, 0.8, 0.5)], ms(1600));
        assert_eq!(ids(&t), vec![3]);
    }

    #[test]
    fn a_track_within_its_ttl_resumes_after_missed_frames() {
        let mut t = Tracker::new(&config(8, 1000), &[CAR]);
        t.update(&[det(CAR, 0.2, 0.5)], ms(0));
        for f in 1..10 {
            t.update(&[], ms(f * 40));
        }
        t.update(&[det(CAR, 0.21, 0.5)], ms(400));
        assert_eq!(ids(&t), vec![1]);
        assert_eq!(
            t.tracks()[0].movement().unwrap().0,
            BBox::from_center(0.2, 0.5, 0.1, 0.1).ground_point()
        );
    }

    #[test]
    fn a_full_table_drops_and_counts_then_reuses_freed_slots() {
        let mut t = Tracker::new(&config(2, 100), &[CAR]);
        let three = [det(CAR, 0.1, 0.5), det(CAR, 0.5, 0.5), det(CAR, 0.9, 0.5)];
        t.update(&three, ms(0));
        assert_eq!(ids(&t), vec![1, 2]);
        assert_eq!(t.stats().dropped_full, 1);
        // Tracked objects keep their slots; the third is still shut out.
        t.update(&three, ms(40));
        assert_eq!(ids(&t), vec![1, 2]);
        assert_eq!(t.stats().dropped_full, 2);
        // Both objects leave; once evicted, their slots take new objects with fresh ids.
        t.update(&[], ms(200));
        assert!(t.tracks().is_empty());
        t.update(&three, ms(240));
        assert_eq!(ids(&t), vec![3, 4]);
        let s = t.stats();
        assert_eq!(
            (s.live, s.capacity, s.created, s.evicted, s.dropped_full),
            (2, 2, 4, 2, 3)
        );
        assert_eq!(t.tracks.capacity(), 2);
    }

    #[test]
    fn detections_past_the_bound_are_counted() {
        let mut t = Tracker::new(&config(4, 100), &[CAR]);
        let many = vec![det(CAR, 0.5, 0.5); MAX_DETECTIONS + 5];
        t.update(&many, ms(0));
        let s = t.stats();
        assert_eq!((s.dropped_overflow, s.live), (5, 4));
        assert_eq!(s.dropped_full, MAX_DETECTIONS as u64 - 4);
    }
}
