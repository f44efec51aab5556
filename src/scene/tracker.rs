//! Fixed-capacity multi-object tracker in the ByteTrack family.
//!
//! Each track carries a constant-velocity Kalman filter on its box ([`super::kalman`]),
//! stepped by the real time between frames, so dropped frames and a varying frame rate move
//! the prediction as far as the object really moved. Each update associates in three stages:
//!
//! 1. confident detections (score ≥ `high_score`) against confirmed tracks, lost ones too;
//! 2. weak detections (`low_score` ≤ score < `high_score`) against the confirmed tracks seen
//!    in the previous update that stage 1 left unmatched: an object the detector is unsure of
//!    for a few frames (occluded, far, blurred) keeps its track instead of starting a new one;
//! 3. the remaining confident detections against tentative tracks.
//!
//! A pair is a candidate when the boxes overlap by `iou_threshold`, or when the detection's
//! centre lies within the prediction's gate (Mahalanobis distance on the centre, so it widens
//! while a track coasts) and its size is plausible: small, fast objects whose boxes no longer
//! overlap between frames still match. Candidates are taken greedily, cheapest first, with a
//! cost of `1 - IoU` plus the normalised distance plus a penalty for a class change.
//!
//! A track starts tentative and is confirmed after `confirm_hits` matches; a tentative track
//! that misses two updates in a row is dropped. A confirmed track that goes unmatched is lost:
//! kept and predicted for `ttl_ms`, then dropped, or dropped at once when its prediction
//! leaves the frame. Its class is the score-weighted majority of its detections.
//!
//! Every slot is allocated by [`Tracker::new`]; [`Tracker::update`] only overwrites them. A
//! detection that finds no free slot is dropped and counted rather than growing the table.

use std::time::Duration;

use super::kalman::{BoxFilter, Gate, MotionNoise};
use crate::config::{TrackerConfig, MAX_CLASSES, MAX_ZONES};
use crate::geometry::{BBox, Point};
use crate::vision::detection::{Detection, MAX_DETECTIONS};

/// Squared gate distance: 99 % of a correct detection's centre falls inside (chi-square, two
/// degrees of freedom).
const GATE2: f32 = 9.21;
/// Added to a pair's cost when the detection's class differs from the track's: a car that the
/// detector calls a truck for a frame keeps its track, but a same-class match wins a tie.
const CLASS_CHANGE_COST: f32 = 0.5;
/// A detection's width or height may differ from the prediction's by at most this factor.
const SIZE_RATIO: f32 = 2.5;
/// An unmatched confident detection whose box and a box matched in the same update overlap by
/// this fraction of the smaller one is a duplicate (the same car boxed as "car" and "truck",
/// or a box around two tracked cars), not a new object.
const DUPLICATE_OVERLAP: f32 = 0.8;
/// Two detections of different classes whose boxes overlap this much are one object boxed
/// twice (a car called "car" and "truck"); only the more confident one is tracked, so a lost
/// track cannot take the second box and follow the same car.
const SAME_OBJECT_IOU: f32 = 0.8;
/// Consecutive missed updates after which a tentative track is dropped.
const TENTATIVE_MISSES: u32 = 2;

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
    /// Model class id: the score-weighted majority of the detections the track absorbed.
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
    filter: BoxFilter,
    votes: [f32; MAX_CLASSES],
    confirmed: bool,
    /// Consecutive updates without a match.
    misses: u32,
    seen: bool,
    /// The box at the last point line counting looked at (the first detection until then).
    count_from: BBox,
    lines_counted: u64,
    still_at: Point,
    still_since: Duration,
    stationary: bool,
    zones_in: u32,
    zone_entered: [Duration; MAX_ZONES],
}

impl Track {
    /// Where the object touches the ground now (bottom centre of the latest detection).
    pub fn ground_point(&self) -> Point {
        self.bbox.ground_point()
    }

    /// Whether a detection of the latest update continued or created this track; tracks that
    /// are lost and only predicted answer `false`.
    pub fn seen_this_frame(&self) -> bool {
        self.seen
    }

    /// Whether the track has been matched `confirm_hits` times: tentative tracks are not
    /// counted on lines or in zones.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether the object has stayed within half its size of one place for `stationary_ms`
    /// (a parked car).
    pub fn is_stationary(&self) -> bool {
        self.stationary
    }

    /// The filter's box at the latest update: the prediction for a lost track.
    pub fn estimate(&self) -> BBox {
        self.filter.bbox()
    }

    /// Estimated centre velocity, in normalized units per second.
    pub fn velocity(&self) -> Point {
        self.filter.velocity()
    }

    /// The box line counting last looked at and the latest detection's box, if the track is
    /// confirmed and was seen in the latest update. Until the first look that is the track's
    /// first box, so a crossing made while the track was tentative still counts, and one made
    /// while it was lost is found when it is seen again.
    pub fn counting_move(&self) -> Option<(BBox, BBox)> {
        (self.seen && self.confirmed).then_some((self.count_from, self.bbox))
    }

    pub(crate) fn counted_up_to_now(&mut self) {
        self.count_from = self.bbox;
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

    /// How long the track has been in zone `zone` at `now`, if it is in it.
    pub fn dwell(&self, zone: usize, now: Duration) -> Option<Duration> {
        (zone < MAX_ZONES && self.zones_in & (1 << zone) != 0)
            .then(|| now.saturating_sub(self.zone_entered[zone]))
    }

    /// Records whether the track is in zone `zone` (< [`MAX_ZONES`]) at `now`; returns the
    /// dwell that ends when it leaves.
    pub(crate) fn set_in_zone(
        &mut self,
        zone: usize,
        inside: bool,
        now: Duration,
    ) -> Option<Duration> {
        let bit = 1u32 << zone;
        match (self.zones_in & bit != 0, inside) {
            (false, true) => {
                self.zones_in |= bit;
                self.zone_entered[zone] = now;
                None
            }
            (true, false) => {
                self.zones_in &= !bit;
                Some(now.saturating_sub(self.zone_entered[zone]))
            }
            _ => None,
        }
    }

    /// The zones the track is in (as of its latest sighting) and how long it had been in each
    /// when it was last seen: the stays its eviction ends.
    pub(crate) fn stays(&self) -> impl Iterator<Item = (usize, Duration)> + '_ {
        (0..MAX_ZONES)
            .filter(|&z| self.zones_in & (1 << z) != 0)
            .map(|z| (z, self.last_seen.saturating_sub(self.zone_entered[z])))
    }

    fn absorb(&mut self, d: &Detection, class_index: usize, now: Duration, t: &TrackerParams) {
        self.filter.update(&d.bbox, &t.noise);
        self.bbox = d.bbox;
        self.score = d.score;
        self.last_seen = now;
        self.hits = self.hits.saturating_add(1);
        self.misses = 0;
        self.seen = true;
        self.votes[class_index] += d.score;
        let best = (0..MAX_CLASSES)
            .max_by(|&a, &b| self.votes[a].total_cmp(&self.votes[b]).then(b.cmp(&a)))
            .unwrap_or(class_index);
        if self.votes[best] > self.votes[self.class_index] {
            self.class_index = best;
            self.class = t.classes.as_slice()[best];
        }
        let c = self.filter.center();
        let (w, h) = self.filter.size();
        let (dx, dy) = (c.x - self.still_at.x, c.y - self.still_at.y);
        if (dx * dx + dy * dy).sqrt() > t.stationary_distance * w.max(h) {
            self.still_at = c;
            self.still_since = now;
        }
        self.stationary = t
            .stationary_after
            .is_some_and(|after| now.saturating_sub(self.still_since) >= after);
    }
}

/// What the tracker holds and what it has created, dropped and ignored since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Tracks alive now, tentative ones included.
    pub live: usize,
    /// The most tracks alive at once.
    pub capacity: usize,
    /// Tracks ever confirmed: the objects the tracker believes it saw.
    pub created: u64,
    /// Confirmed tracks dropped after being lost for `ttl_ms`, or when their prediction left
    /// the frame.
    pub evicted: u64,
    /// Tentative tracks dropped before confirmation (flicker, false detections).
    pub tentative_dropped: u64,
    /// Detections dropped as a second box, of another class, around an object already boxed.
    pub duplicates: u64,
    /// Detections that would have started a track but found every slot taken.
    pub dropped_full: u64,
    /// Detections past the first [`MAX_DETECTIONS`] of one update, never looked at.
    pub dropped_overflow: u64,
    /// Detections of a class that is not counted, below `low_score`, larger than
    /// `max_box_area`, or with a non-finite box.
    pub ignored: u64,
}

/// A possible detection-to-track match.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    cost: f32,
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

/// Which tracks and detections an association stage pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Confident detections, confirmed tracks (lost ones too).
    Confident,
    /// Weak detections, confirmed tracks seen in the previous update.
    Weak,
    /// Confident detections, tentative tracks.
    Tentative,
}

/// The tuning the tracks need during an update.
#[derive(Debug, Clone, Copy)]
struct TrackerParams {
    noise: MotionNoise,
    iou_threshold: f32,
    high_score: f32,
    low_score: f32,
    confirm_hits: u32,
    stationary_after: Option<Duration>,
    stationary_distance: f32,
    max_box_area: f32,
    classes: CountedClasses,
}

/// ByteTrack-style tracker over a table of at most `capacity` tracks.
#[derive(Debug)]
pub struct Tracker {
    /// In creation order (so by id): new tracks are pushed at the end and removal keeps the
    /// order.
    tracks: Vec<Track>,
    capacity: usize,
    ttl: Duration,
    params: TrackerParams,
    /// Scratch for matching, sized for every track against every detection so it never grows.
    candidates: Vec<Candidate>,
    /// Each track's prediction for this update, by table index; as many slots as tracks.
    gates: Vec<Gate>,
    next_id: u64,
    last_update: Option<Duration>,
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
            params: TrackerParams {
                noise: MotionNoise::default(),
                iou_threshold: config.iou_threshold,
                high_score: config.high_score,
                low_score: config.low_score,
                confirm_hits: config.confirm_hits,
                stationary_after: (config.stationary_ms > 0)
                    .then(|| Duration::from_millis(config.stationary_ms)),
                stationary_distance: config.stationary_distance,
                max_box_area: config.max_box_area,
                classes: CountedClasses::new(counted_classes),
            },
            candidates: Vec::with_capacity(capacity.saturating_mul(MAX_DETECTIONS)),
            gates: Vec::with_capacity(capacity),
            next_id: 1,
            last_update: None,
            stats: TrackerStats {
                capacity,
                ..TrackerStats::default()
            },
        }
    }

    /// One frame taken at `now`: predicts every track to `now`, associates the detections in
    /// three stages, starts tentative tracks for the confident detections left over while
    /// slots are free, and drops tracks whose budget ran out.
    pub fn update(&mut self, detections: &[Detection], now: Duration) {
        self.update_with(detections, now, |_| {});
    }

    /// [`Tracker::update`], calling `evicted` with each confirmed track it drops (lost past
    /// its time budget or out of the frame) just before it goes, so the scene can close the
    /// track's zone stays.
    pub fn update_with(
        &mut self,
        detections: &[Detection],
        now: Duration,
        evicted: impl FnMut(&Track),
    ) {
        let kept = detections.len().min(MAX_DETECTIONS);
        self.stats.dropped_overflow += (detections.len() - kept) as u64;
        let detections = &detections[..kept];

        let dt = self
            .last_update
            .map_or(0.0, |t| now.saturating_sub(t).as_secs_f32());
        self.last_update = Some(now);
        for track in &mut self.tracks {
            track.filter.predict(dt, &self.params.noise);
            track.seen = false;
        }
        self.gates.clear();
        let noise = &self.params.noise;
        self.gates
            .extend(self.tracks.iter().map(|t| t.filter.gate(noise)));

        let mut fates = [Fate::Ignored; MAX_DETECTIONS];
        for (fate, d) in fates.iter_mut().zip(detections) {
            let finite = [d.bbox.xmin, d.bbox.ymin, d.bbox.xmax, d.bbox.ymax, d.score]
                .iter()
                .all(|v| v.is_finite());
            let plausible = finite
                && d.score >= self.params.low_score
                && d.bbox.area() <= self.params.max_box_area;
            match self.params.classes.index_of(d.class) {
                Some(index) if plausible => *fate = Fate::Unmatched(index),
                _ => self.stats.ignored += 1,
            }
        }
        let fates = &mut fates[..kept];
        self.suppress_duplicates(detections, fates);
        for stage in [Stage::Confident, Stage::Weak, Stage::Tentative] {
            self.associate(stage, detections, fates, now);
        }
        self.drop_expired(now, evicted);
        self.start_tracks(detections, fates, now);
        self.stats.live = self.tracks.len();
    }

    /// Live tracks, oldest (lowest id) first: confirmed, tentative and lost.
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
        &self.params.classes
    }

    fn suppress_duplicates(&mut self, detections: &[Detection], fates: &mut [Fate]) {
        for i in 0..detections.len() {
            if fates[i] == Fate::Ignored {
                continue;
            }
            for j in i + 1..detections.len() {
                let (a, b) = (&detections[i], &detections[j]);
                if fates[j] == Fate::Ignored
                    || a.class == b.class
                    || a.bbox.iou(&b.bbox) < SAME_OBJECT_IOU
                {
                    continue;
                }
                let weaker = if b.score > a.score { i } else { j };
                fates[weaker] = Fate::Ignored;
                self.stats.duplicates += 1;
                if weaker == i {
                    break;
                }
            }
        }
    }

    fn eligible(&self, stage: Stage, track: &Track, d: &Detection) -> bool {
        let confident = d.score >= self.params.high_score;
        match stage {
            Stage::Confident => confident && track.confirmed,
            // `misses` still holds the count before this update: 0 means seen last time.
            Stage::Weak => !confident && track.misses == 0,
            Stage::Tentative => confident && !track.confirmed,
        }
    }

    /// The cost of continuing `track` with `d`, or `None` when the pair is implausible.
    fn cost(&self, track: &Track, gate: &Gate, d: &Detection, class_index: usize) -> Option<f32> {
        let b = &d.bbox;
        // Most pairs are far apart: reject them before any division. Past this reach neither
        // the overlap nor the capped motion gate (at most about 3.4 sizes) can accept them.
        let reach_x = 3.5 * (gate.w + b.width());
        let reach_y = 3.5 * (gate.h + b.height());
        let (pc, dc) = (gate.bbox.center(), b.center());
        if (dc.x - pc.x).abs() > reach_x || (dc.y - pc.y).abs() > reach_y {
            return None;
        }
        let iou = gate.bbox.iou(b);
        let d2 = gate.distance2(b);
        let ratio_ok = |a: f32, b: f32| a <= b * SIZE_RATIO && b <= a * SIZE_RATIO;
        let gated = d2 <= GATE2 && ratio_ok(b.width(), gate.w) && ratio_ok(b.height(), gate.h);
        // Boxes that do not touch never match on overlap alone, even with a threshold of 0.
        let overlaps = iou > 0.0 && iou >= self.params.iou_threshold;
        if !(gated || overlaps) {
            return None;
        }
        let class_cost = if class_index == track.class_index {
            0.0
        } else {
            CLASS_CHANGE_COST
        };
        Some((1.0 - iou) + d2.min(GATE2) / GATE2 + class_cost)
    }

    fn associate(
        &mut self,
        stage: Stage,
        detections: &[Detection],
        fates: &mut [Fate],
        now: Duration,
    ) {
        self.candidates.clear();
        for (ti, track) in self.tracks.iter().enumerate() {
            if track.seen {
                continue;
            }
            for (di, d) in detections.iter().enumerate() {
                let Fate::Unmatched(class_index) = fates[di] else {
                    continue;
                };
                if !self.eligible(stage, track, d) {
                    continue;
                }
                if let Some(cost) = self.cost(track, &self.gates[ti], d, class_index) {
                    if self.candidates.len() < self.candidates.capacity() {
                        self.candidates.push(Candidate {
                            cost,
                            track: ti as u32,
                            detection: di as u16,
                        });
                    }
                }
            }
        }
        // Cheapest first, so two nearby objects do not steal each other's tracks the way
        // matching in detection order can; ties go to the older track, then the earlier
        // detection, which keeps results deterministic. `sort_unstable_by` does not allocate.
        self.candidates.sort_unstable_by(|a, b| {
            a.cost
                .total_cmp(&b.cost)
                .then(a.track.cmp(&b.track))
                .then(a.detection.cmp(&b.detection))
        });
        for c in &self.candidates {
            let track = &mut self.tracks[c.track as usize];
            let fate = &mut fates[c.detection as usize];
            let Fate::Unmatched(class_index) = *fate else {
                continue;
            };
            if track.seen {
                continue;
            }
            track.absorb(
                &detections[c.detection as usize],
                class_index,
                now,
                &self.params,
            );
            if !track.confirmed && track.hits >= self.params.confirm_hits {
                track.confirmed = true;
                self.stats.created += 1;
            }
            *fate = Fate::Matched;
        }
    }

    fn drop_expired(&mut self, now: Duration, mut evicted: impl FnMut(&Track)) {
        let ttl = self.ttl;
        let stats = &mut self.stats;
        // `retain` rather than `swap_remove` keeps the table in creation order, so output
        // order is stable and ties in matching go to the older track.
        self.tracks.retain_mut(|t| {
            if t.seen {
                return true;
            }
            t.misses = t.misses.saturating_add(1);
            if !t.confirmed {
                let keep = t.misses < TENTATIVE_MISSES;
                stats.tentative_dropped += u64::from(!keep);
                return keep;
            }
            let c = t.filter.center();
            let in_frame = (-0.05..=1.05).contains(&c.x) && (-0.05..=1.05).contains(&c.y);
            let keep = in_frame && now.saturating_sub(t.last_seen) <= ttl;
            if !keep {
                stats.evicted += 1;
                evicted(t);
            }
            keep
        });
    }

    fn start_tracks(&mut self, detections: &[Detection], fates: &[Fate], now: Duration) {
        for (d, fate) in detections.iter().zip(fates) {
            let Fate::Unmatched(class_index) = *fate else {
                continue;
            };
            if d.score < self.params.high_score {
                continue;
            }
            let duplicate = self
                .tracks
                .iter()
                .any(|t| t.seen && t.bbox.overlap_of_smaller(&d.bbox) >= DUPLICATE_OVERLAP);
            if duplicate {
                continue;
            }
            // The table never grows past the capacity it was allocated with.
            if self.tracks.len() >= self.capacity {
                self.stats.dropped_full += 1;
                continue;
            }
            let mut votes = [0.0; MAX_CLASSES];
            votes[class_index] = d.score;
            let confirmed = self.params.confirm_hits <= 1;
            self.stats.created += u64::from(confirmed);
            self.tracks.push(Track {
                id: self.next_id,
                class: d.class,
                class_index,
                score: d.score,
                bbox: d.bbox,
                first_seen: now,
                last_seen: now,
                hits: 1,
                filter: BoxFilter::new(&d.bbox, &self.params.noise),
                votes,
                confirmed,
                misses: 0,
                seen: true,
                count_from: d.bbox,
                lines_counted: 0,
                still_at: d.bbox.center(),
                still_since: now,
                stationary: false,
                zones_in: 0,
                zone_entered: [Duration::ZERO; MAX_ZONES],
            });
            self.next_id += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAR: u16 = 2;
    const TRUCK: u16 = 7;
    const PERSON: u16 = 0;

    fn config(capacity: usize, ttl_ms: u64) -> TrackerConfig {
        TrackerConfig {
            capacity,
            ttl_ms,
            confirm_hits: 1,
            ..TrackerConfig::default()
        }
    }

    fn det(class: u16, cx: f32, cy: f32) -> Detection {
        scored(class, cx, cy, 0.9)
    }

    fn scored(class: u16, cx: f32, cy: f32, score: f32) -> Detection {
        Detection {
            class,
            score,
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
            // Two cars moving towards each other, passing through each other, and a person.
            let dets = [
                det(CAR, 0.3 + step, 0.5),
                det(CAR, 0.7 - step, 0.55),
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
        assert!((tracks[0].bbox.center().x - 0.49).abs() < 1e-5);
        assert!((tracks[1].bbox.center().x - 0.51).abs() < 1e-5);
        assert!(tracks[0].velocity().x > 0.2 && tracks[1].velocity().x < -0.2);
        assert_eq!(tracks[2].class_index, 0);
        assert_eq!(tracks[0].class_index, 1);
        assert_eq!(t.stats().created, 3);
    }

    #[test]
    fn a_fast_object_whose_boxes_no_longer_overlap_keeps_its_track() {
        // A small car moving 1.5 box widths per frame at 5 fps: consecutive boxes never touch.
        let mut t = Tracker::new(&config(8, 1000), &[CAR]);
        for f in 0..10u64 {
            let x = 0.1 + 0.06 * f as f32;
            t.update(
                &[Detection {
                    class: CAR,
                    score: 0.9,
                    bbox: BBox::from_center(x, 0.5, 0.04, 0.03),
                }],
                ms(f * 200),
            );
            assert_eq!(ids(&t), vec![1], "frame {f}");
        }
    }

    #[test]
    fn the_prediction_bridges_missed_frames_at_the_real_time_step() {
        let mut t = Tracker::new(&config(8, 2000), &[CAR]);
        for f in 0..8u64 {
            t.update(&[det(CAR, 0.1 + 0.02 * f as f32, 0.5)], ms(f * 100));
        }
        // Unseen for 600 ms while moving 0.2 per second: the car reappears 0.12 further on,
        // more than a box width from where it was last seen.
        t.update(&[], ms(800));
        let lost = t.tracks()[0];
        assert!(!lost.seen_this_frame());
        assert!((lost.estimate().center().x - 0.26).abs() < 0.01);
        t.update(&[det(CAR, 0.1 + 0.02 * 13.0, 0.5)], ms(1300));
        assert_eq!(ids(&t), vec![1]);
        assert_eq!(t.stats().created, 1);
    }

    #[test]
    fn weak_detections_continue_tracks_but_never_start_them() {
        let cfg = TrackerConfig {
            confirm_hits: 1,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(&cfg, &[CAR]);
        t.update(&[det(CAR, 0.5, 0.5)], ms(0));
        // Stage 2: a weak detection of the same car keeps it seen.
        for f in 1..5 {
            t.update(&[scored(CAR, 0.5, 0.5, 0.2)], ms(f * 40));
            assert!(t.tracks()[0].seen_this_frame(), "frame {f}");
        }
        // A weak detection elsewhere starts nothing; one below low_score is ignored.
        t.update(
            &[scored(CAR, 0.5, 0.5, 0.2), scored(CAR, 0.1, 0.1, 0.3)],
            ms(200),
        );
        t.update(&[scored(CAR, 0.5, 0.5, 0.05)], ms(240));
        assert_eq!(ids(&t), vec![1]);
        assert!(!t.tracks()[0].seen_this_frame());
        assert_eq!(t.stats().ignored, 1);
    }

    #[test]
    fn weak_detections_do_not_revive_lost_tracks() {
        let mut t = Tracker::new(&config(8, 1000), &[CAR]);
        t.update(&[det(CAR, 0.5, 0.5)], ms(0));
        t.update(&[], ms(40));
        t.update(&[scored(CAR, 0.5, 0.5, 0.2)], ms(80));
        assert!(!t.tracks()[0].seen_this_frame());
        // A confident detection does (stage 1 takes lost tracks).
        t.update(&[det(CAR, 0.5, 0.5)], ms(120));
        assert!(t.tracks()[0].seen_this_frame());
        assert_eq!(ids(&t), vec![1]);
    }

    #[test]
    fn tracks_are_confirmed_after_n_hits_and_flicker_is_dropped() {
        let cfg = TrackerConfig {
            confirm_hits: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(&cfg, &[CAR]);
        // A false detection for one frame, then gone: tentative, dropped after two misses.
        t.update(&[det(CAR, 0.2, 0.2), det(CAR, 0.7, 0.7)], ms(0));
        assert!(t.tracks().iter().all(|t| !t.is_confirmed()));
        t.update(&[det(CAR, 0.7, 0.7)], ms(40));
        assert_eq!(ids(&t), vec![1, 2]);
        assert!(t.tracks().iter().all(|t| !t.is_confirmed()));
        t.update(&[det(CAR, 0.7, 0.7)], ms(80));
        assert_eq!(ids(&t), vec![2]);
        assert!(t.tracks()[0].is_confirmed());
        let s = t.stats();
        assert_eq!((s.created, s.tentative_dropped, s.evicted), (1, 1, 0));
    }

    #[test]
    fn the_class_is_the_majority_and_survives_a_flip() {
        let mut t = Tracker::new(&config(8, 500), &[CAR, TRUCK]);
        for f in 0..6u64 {
            // Called a truck once in a while: still one track, still a car.
            let class = if f == 2 { TRUCK } else { CAR };
            t.update(&[det(class, 0.3 + 0.01 * f as f32, 0.5)], ms(f * 40));
        }
        assert_eq!(ids(&t), vec![1]);
        assert_eq!((t.tracks()[0].class, t.tracks()[0].class_index), (CAR, 0));
        // Called a truck from now on, with higher scores: the vote turns.
        for f in 6..16u64 {
            t.update(&[det(TRUCK, 0.3 + 0.01 * f as f32, 0.5)], ms(f * 40));
        }
        assert_eq!((t.tracks()[0].class, t.tracks()[0].class_index), (TRUCK, 1));
        assert_eq!(ids(&t), vec![1]);
    }

    #[test]
    fn a_duplicate_box_of_another_class_starts_no_track() {
        let mut t = Tracker::new(&config(8, 500), &[CAR, TRUCK]);
        t.update(&[det(CAR, 0.5, 0.5), det(TRUCK, 0.501, 0.5)], ms(0));
        assert_eq!(ids(&t), vec![1]);
        assert_eq!(t.stats().duplicates, 1);
        // A box around a tracked car and its neighbour is no new object either.
        let wide = Detection {
            class: CAR,
            score: 0.9,
            bbox: BBox::new(0.4, 0.4, 0.75, 0.6),
        };
        t.update(&[det(CAR, 0.5, 0.5), wide], ms(40));
        assert_eq!(ids(&t), vec![1]);
    }

    #[test]
    fn a_lost_track_does_not_take_the_second_box_of_a_tracked_object() {
        let mut t = Tracker::new(&config(8, 1000), &[CAR, TRUCK]);
        t.update(&[det(CAR, 0.5, 0.5), det(CAR, 0.58, 0.5)], ms(0));
        t.update(&[det(CAR, 0.5, 0.5)], ms(40));
        // Track 2 is lost; track 1's car comes boxed twice, the second box within 2's gate.
        t.update(&[det(CAR, 0.52, 0.5), det(TRUCK, 0.525, 0.5)], ms(80));
        assert!(t.tracks()[0].seen_this_frame());
        assert!(!t.tracks()[1].seen_this_frame());
    }

    #[test]
    fn greedy_matching_prefers_the_cheapest_pair() {
        let mut t = Tracker::new(&config(8, 500), &[CAR]);
        t.update(&[det(CAR, 0.30, 0.5), det(CAR, 0.45, 0.5)], ms(0));
        // Listed in the opposite order: matching by detection order would hand the first
        // detection to track 1 (it is within its gate too), swapping the ids.
        t.update(&[det(CAR, 0.46, 0.5), det(CAR, 0.31, 0.5)], ms(40));
        let at = |i: usize| {
            (
                t.tracks()[i].id,
                (t.tracks()[i].bbox.center().x * 100.0).round(),
            )
        };
        assert_eq!((at(0), at(1)), ((1, 31.0), (2, 46.0)));
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
    fn far_detections_never_match_even_with_zero_threshold() {
        let cfg = TrackerConfig {
            iou_threshold: 0.0,
            ..config(8, 500)
        };
        let mut t = Tracker::new(&cfg, &[CAR]);
        t.update(&[det(CAR, 0.2, 0.5)], ms(0));
        t.update(&[det(CAR, 0.8, 0.5)], ms(40));
        assert_eq!(ids(&t), vec![1, 2]);
    }

    #[test]
    fn lost_tracks_are_evicted_after_the_ttl() {
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
    fn a_lost_track_predicted_out_of_the_frame_is_dropped() {
        let mut t = Tracker::new(&config(8, 10_000), &[CAR]);
        for f in 0..10u64 {
            t.update(&[det(CAR, 0.6 + 0.04 * f as f32, 0.5)], ms(f * 100));
        }
        // Leaving at 0.4 per second from x = 0.96: out of the frame within half a second,
        // long before the 10 s budget.
        t.update(&[], ms(950));
        assert_eq!(ids(&t), vec![1]);
        t.update(&[], ms(1500));
        assert!(t.tracks().is_empty());
        assert_eq!(t.stats().evicted, 1);
    }

    #[test]
    fn a_still_object_is_flagged_stationary() {
        let cfg = TrackerConfig {
            stationary_ms: 2000,
            ..config(8, 1000)
        };
        let mut t = Tracker::new(&cfg, &[CAR]);
        for f in 0..30u64 {
            // Jitter of a few hundredths of its size does not count as moving.
            let jitter = if f % 2 == 0 { 0.002 } else { -0.002 };
            t.update(&[det(CAR, 0.5 + jitter, 0.5)], ms(f * 100));
            assert_eq!(t.tracks()[0].is_stationary(), f >= 20, "frame {f}");
        }
        // Driving off clears the flag.
        for (i, x) in [0.52, 0.54, 0.56, 0.58].into_iter().enumerate() {
            t.update(&[det(CAR, x, 0.5)], ms(3000 + i as u64 * 100));
        }
        assert_eq!(ids(&t), vec![1]);
        assert!(!t.tracks()[0].is_stationary());
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
        let many: Vec<Detection> = (0..MAX_DETECTIONS + 5)
            .map(|i| det(CAR, (i % 16) as f32 / 16.0, (i / 16) as f32 / 16.0))
            .collect();
        t.update(&many, ms(0));
        let s = t.stats();
        assert_eq!((s.dropped_overflow, s.live), (5, 4));
        assert_eq!(s.dropped_full, MAX_DETECTIONS as u64 - 4);
    }

    #[test]
    fn dwell_is_measured_per_zone() {
        let mut t = Tracker::new(&config(4, 100), &[CAR]);
        t.update(&[det(CAR, 0.5, 0.5)], ms(0));
        let track = &mut t.tracks_mut()[0];
        assert_eq!(track.set_in_zone(3, true, ms(100)), None);
        assert_eq!(track.dwell(3, ms(700)), Some(ms(600)));
        assert_eq!(track.dwell(2, ms(700)), None);
        assert_eq!(track.set_in_zone(3, false, ms(900)), Some(ms(800)));
        assert_eq!(track.dwell(3, ms(1000)), None);
    }
}
