//! What the detections mean on the ground: tracked objects, zone occupancy, line crossings.
//!
//! [`Scene`] allocates every table in [`Scene::new`]; [`Scene::update`], run once per frame,
//! only overwrites them.

pub mod tracker;
pub mod zones;

use std::time::Duration;

use crate::config::{LineConfig, TrackerConfig, ZoneConfig, MAX_CLASSES, MAX_LINES};
use crate::vision::detection::Detection;

pub use tracker::{CountedClasses, Track, Tracker, TrackerStats};
pub use zones::{CountingLine, Crossing, LineCount, Zone};

// A track remembers the lines it has been counted on in a u64.
const _: () = assert!(MAX_LINES <= 64);

/// The tracker plus the zones and lines it is counted against.
#[derive(Debug)]
pub struct Scene {
    tracker: Tracker,
    zones: Vec<Zone>,
    lines: Vec<CountingLine>,
    occupancy: Vec<[u32; MAX_CLASSES]>,
    line_counts: Vec<LineCount>,
}

impl Scene {
    /// A scene for the site's zones and lines. `counted_classes[i]` is the model class id of
    /// counted class `i`, the index of every count array; detections of other classes are
    /// ignored.
    ///
    /// # Panics
    /// If there are more than [`MAX_CLASSES`] counted classes or [`MAX_LINES`] lines; config
    /// validation rules both out.
    pub fn new(
        tracker: &TrackerConfig,
        zones: &[ZoneConfig],
        lines: &[LineConfig],
        counted_classes: &[u16],
    ) -> Scene {
        assert!(
            lines.len() <= MAX_LINES,
            "{} counting lines, at most {MAX_LINES}",
            lines.len()
        );
        Scene {
            tracker: Tracker::new(tracker, counted_classes),
            zones: zones.iter().map(Zone::new).collect(),
            lines: lines.iter().map(CountingLine::new).collect(),
            occupancy: vec![[0; MAX_CLASSES]; zones.len()],
            line_counts: vec![LineCount::default(); lines.len()],
        }
    }

    /// One frame taken at `now`: tracks the detections (see [`Tracker::update`]), recounts
    /// zone occupancy and adds the line crossings of the tracks seen in this frame.
    pub fn update(&mut self, detections: &[Detection], now: Duration) {
        self.tracker.update(detections, now);
        self.occupancy.fill([0; MAX_CLASSES]);
        for track in self.tracker.tracks_mut() {
            let Some((before, after)) = track.movement() else {
                continue;
            };
            for (zone, occupancy) in self.zones.iter().zip(&mut self.occupancy) {
                if zone.contains(after) {
                    occupancy[track.class_index] += 1;
                }
            }
            for (i, (line, count)) in self.lines.iter().zip(&mut self.line_counts).enumerate() {
                if track.line_counted(i) {
                    continue;
                }
                // Once per track and line, whichever way it crosses first: an object wobbling
                // on the line, or turning back, is still one object.
                if let Some(crossing) = line.crossing(before, after) {
                    track.mark_line_counted(i);
                    count.record(crossing, track.class_index);
                }
            }
        }
    }

    /// `[zone][counted class]`: tracks seen in the latest frame whose ground point is inside
    /// the zone. Zones are in config order.
    pub fn zone_occupancy(&self) -> &[[u32; MAX_CLASSES]] {
        &self.occupancy
    }

    /// Cumulative crossings per line, in config order.
    pub fn line_counts(&self) -> &[LineCount] {
        &self.line_counts
    }

    /// Live tracks, oldest first, including those coasting unseen until their TTL runs out.
    pub fn tracks(&self) -> &[Track] {
        self.tracker.tracks()
    }

    /// Tracker counters: live, created, evicted, dropped.
    pub fn stats(&self) -> TrackerStats {
        self.tracker.stats()
    }

    /// The zones, in config order (the rows of [`Scene::zone_occupancy`]).
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The counting lines, in config order (the entries of [`Scene::line_counts`]).
    pub fn lines(&self) -> &[CountingLine] {
        &self.lines
    }

    /// Model class id of each counted class index.
    pub fn counted_classes(&self) -> &[u16] {
        self.tracker.counted_classes().as_slice()
    }

    /// The tracker itself.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InSide;
    use crate::geometry::BBox;

    const PERSON: u16 = 0;
    const CAR: u16 = 2;
    const BUS: u16 = 5;

    fn zone(name: &str, points: &[[f32; 2]]) -> ZoneConfig {
        ZoneConfig {
            name: name.into(),
            points: points.to_vec(),
            camera: None,
        }
    }

    fn line(from: [f32; 2], to: [f32; 2], in_side: InSide) -> LineConfig {
        LineConfig {
            name: "stop line".into(),
            camera: None,
            from,
            to,
            in_side,
        }
    }

    fn tracker() -> TrackerConfig {
        TrackerConfig {
            capacity: 16,
            ttl_ms: 500,
            iou_threshold: 0.3,
        }
    }

    /// A 0.1 x 0.1 box standing on ground point `(x, y)`.
    fn standing(class: u16, x: f32, y: f32) -> Detection {
        Detection {
            class,
            score: 0.9,
            bbox: BBox::new(x - 0.05, y - 0.1, x + 0.05, y),
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn occupancy_is_per_zone_and_class() {
        let zones = [
            zone("left", &[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]),
            // An L covering the bottom and right: concave, with the top-left notch outside.
            zone(
                "ell",
                &[
                    [0.6, 0.0],
                    [1.0, 0.0],
                    [1.0, 1.0],
                    [0.0, 1.0],
                    [0.0, 0.7],
                    [0.6, 0.7],
                ],
            ),
        ];
        let mut scene = Scene::new(&tracker(), &zones, &[], &[PERSON, CAR, BUS]);
        scene.update(
            &[
                standing(CAR, 0.2, 0.3),     // left only
                standing(CAR, 0.3, 0.9),     // left and ell's bottom
                standing(PERSON, 0.55, 0.5), // in ell's notch: neither
                standing(PERSON, 0.8, 0.4),  // ell's arm
                standing(BUS, 0.8, 0.9),     // ell's corner
                standing(7, 0.2, 0.3),       // not counted
            ],
            ms(0),
        );
        let occ = scene.zone_occupancy();
        assert_eq!(occ.len(), 2);
        assert_eq!(&occ[0][..3], &[0, 2, 0]);
        assert_eq!(&occ[1][..3], &[1, 1, 1]);
        assert_eq!(scene.zones()[1].name(), "ell");
        assert_eq!(scene.stats().ignored, 1);

        // Occupancy is of this frame only: unseen (coasting) tracks are not in any zone.
        scene.update(&[standing(CAR, 0.2, 0.3)], ms(40));
        assert_eq!(scene.tracks().len(), 5);
        assert_eq!(&scene.zone_occupancy()[0][..3], &[0, 1, 0]);
        assert_eq!(&scene.zone_occupancy()[1][..3], &[0, 0, 0]);
    }

    /// Feeds one car along `xs` (ground point at y = 0.5), one frame every 40 ms.
    fn drive(scene: &mut Scene, xs: &[f32]) {
        for (i, &x) in xs.iter().enumerate() {
            scene.update(&[standing(CAR, x, 0.5)], ms(i as u64 * 40));
        }
    }

    fn vertical_line(in_side: InSide) -> [LineConfig; 1] {
        // Drawn downward, so its Left is the screen's right.
        [line([0.5, 0.2], [0.5, 0.8], in_side)]
    }

    #[test]
    fn crossing_left_to_right_counts_inbound_once() {
        let mut scene = Scene::new(
            &tracker(),
            &[],
            &vertical_line(InSide::Left),
            &[PERSON, CAR],
        );
        drive(&mut scene, &[0.40, 0.44, 0.48, 0.52, 0.56, 0.60]);
        let c = scene.line_counts()[0];
        assert_eq!((c.inbound[1], c.outbound[1]), (1, 0));
        assert_eq!((c.total_inbound(), c.total_outbound()), (1, 0));
        assert_eq!(scene.tracks()[0].lines_counted(), 1);
    }

    #[test]
    fn crossing_right_to_left_counts_outbound_once() {
        let mut scene = Scene::new(
            &tracker(),
            &[],
            &vertical_line(InSide::Left),
            &[PERSON, CAR],
        );
        drive(&mut scene, &[0.60, 0.56, 0.52, 0.48, 0.44]);
        let c = scene.line_counts()[0];
        assert_eq!((c.inbound[1], c.outbound[1]), (0, 1));
        let mut right_in = Scene::new(&tracker(), &[], &vertical_line(InSide::Right), &[CAR]);
        drive(&mut right_in, &[0.60, 0.56, 0.52, 0.48, 0.44]);
        let c = right_in.line_counts()[0];
        assert_eq!((c.inbound[0], c.outbound[0]), (1, 0));
    }

    #[test]
    fn wobbling_across_the_line_counts_once() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        drive(
            &mut scene,
            &[
                0.46, 0.49, 0.51, 0.49, 0.51, 0.48, 0.52, 0.5, 0.49, 0.53, 0.56,
            ],
        );
        assert_eq!(scene.tracks().len(), 1, "one object throughout");
        let c = scene.line_counts()[0];
        assert_eq!((c.inbound[0], c.outbound[0]), (1, 0));
    }

    #[test]
    fn each_line_counts_each_object_once() {
        let lines = [
            line([0.3, 0.2], [0.3, 0.8], InSide::Left),
            line([0.5, 0.2], [0.5, 0.8], InSide::Left),
            line([0.7, 0.2], [0.7, 0.8], InSide::Right),
        ];
        let mut scene = Scene::new(&tracker(), &[], &lines, &[CAR]);
        let xs: Vec<f32> = (0..20).map(|i| 0.2 + i as f32 * 0.03).collect();
        drive(&mut scene, &xs);
        let c = scene.line_counts();
        assert_eq!(
            [c[0].inbound[0], c[1].inbound[0], c[2].outbound[0]],
            [1, 1, 1]
        );
        assert_eq!(
            [c[0].outbound[0], c[1].outbound[0], c[2].inbound[0]],
            [0, 0, 0]
        );
        assert_eq!(scene.tracks()[0].lines_counted(), 0b111);
    }

    #[test]
    fn passing_beyond_the_end_of_a_line_does_not_count() {
        // The line spans y in 0.2..0.8; the car drives across at y = 0.9.
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        for (i, x) in [0.40, 0.45, 0.50, 0.55, 0.60].into_iter().enumerate() {
            scene.update(&[standing(CAR, x, 0.9)], ms(i as u64 * 40));
        }
        assert_eq!(scene.line_counts()[0], LineCount::default());
    }

    #[test]
    fn a_crossing_during_missed_frames_is_still_counted() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        scene.update(&[standing(CAR, 0.47, 0.5)], ms(0));
        scene.update(&[], ms(40));
        scene.update(&[], ms(80));
        scene.update(&[standing(CAR, 0.52, 0.5)], ms(120));
        assert_eq!(scene.tracks()[0].id, 1);
        assert_eq!(scene.line_counts()[0].inbound[0], 1);
    }

    #[test]
    fn new_objects_and_evicted_ones_count_separately() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        drive(&mut scene, &[0.46, 0.49, 0.52, 0.55]);
        // Gone for longer than the TTL, then a car crosses back: a new object, counted again.
        scene.update(&[], ms(1000));
        assert!(scene.tracks().is_empty());
        scene.update(&[standing(CAR, 0.54, 0.5)], ms(1040));
        scene.update(&[standing(CAR, 0.50, 0.5)], ms(1080));
        scene.update(&[standing(CAR, 0.46, 0.5)], ms(1120));
        let c = scene.line_counts()[0];
        assert_eq!((c.inbound[0], c.outbound[0]), (1, 1));
        assert_eq!(scene.tracks()[0].id, 2);
    }

    #[test]
    fn names_and_classes_are_exposed_in_config_order() {
        let zones = [zone("a", &[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])];
        let lines = vertical_line(InSide::Left);
        let scene = Scene::new(&tracker(), &zones, &lines, &[CAR, PERSON]);
        assert_eq!(scene.zones()[0].name(), "a");
        assert_eq!(scene.lines()[0].name(), "stop line");
        assert_eq!(scene.counted_classes(), &[CAR, PERSON]);
        assert_eq!(scene.line_counts().len(), 1);
        assert_eq!(scene.zone_occupancy().len(), 1);
        assert_eq!(scene.stats().capacity, 16);
    }
}
