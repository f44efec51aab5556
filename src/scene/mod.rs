//! What the detections mean on the ground: tracked objects, zone occupancy, line crossings.
//!
//! [`Scene`] allocates every table in [`Scene::new`]; [`Scene::update`], run once per frame,
//! only overwrites them.

pub mod kalman;
pub mod presence;
pub mod tracker;
pub mod zones;

use std::time::Duration;

use crate::config::{LineConfig, TrackerConfig, ZoneConfig, MAX_CLASSES, MAX_LINES, MAX_ZONES};
use crate::vision::detection::Detection;

pub use presence::{Dwell, ZonePresence};
pub use tracker::{CountedClasses, Track, Tracker, TrackerStats};
pub use zones::{CountingLine, Crossing, LineCount, Zone};

// A track remembers the lines it has been counted on in a u64, its zones in a u32.
const _: () = assert!(MAX_LINES <= 64 && MAX_ZONES <= 32);

/// The tracker plus the zones and lines it is counted against.
#[derive(Debug)]
pub struct Scene {
    tracker: Tracker,
    zones: Vec<Zone>,
    lines: Vec<CountingLine>,
    presence: Vec<ZonePresence>,
    occupancy: Vec<[u32; MAX_CLASSES]>,
    line_counts: Vec<LineCount>,
}

impl Scene {
    /// A scene for the site's zones and lines. `counted_classes[i]` is the model class id of
    /// counted class `i`, the index of every count array; detections of other classes are
    /// ignored.
    ///
    /// # Panics
    /// If there are more than [`MAX_CLASSES`] counted classes, [`MAX_ZONES`] zones or
    /// [`MAX_LINES`] lines; config validation rules them out.
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
        assert!(
            zones.len() <= MAX_ZONES,
            "{} zones, at most {MAX_ZONES}",
            zones.len()
        );
        Scene {
            tracker: Tracker::new(tracker, counted_classes),
            zones: zones.iter().map(Zone::new).collect(),
            lines: lines.iter().map(CountingLine::new).collect(),
            presence: zones.iter().map(ZonePresence::new).collect(),
            occupancy: vec![[0; MAX_CLASSES]; zones.len()],
            line_counts: vec![LineCount::default(); lines.len()],
        }
    }

    /// One frame taken at `now`: tracks the detections (see [`Tracker::update`]), updates
    /// zone presence and dwell, and counts the line crossings of the confirmed tracks seen in
    /// this frame. A track evicted while in a zone ends its stay there when it was last seen.
    pub fn update(&mut self, detections: &[Detection], now: Duration) {
        let presence = &mut self.presence;
        self.tracker.update_with(detections, now, |track| {
            for (zone, dwell) in track.stays() {
                if let Some(p) = presence.get_mut(zone) {
                    p.record_visit(dwell);
                }
            }
        });
        let mut inside = [[0u32; MAX_CLASSES]; MAX_ZONES];
        for track in self.tracker.tracks_mut() {
            if !(track.seen_this_frame() && track.is_confirmed()) {
                continue;
            }
            for (zi, (zone, presence)) in self.zones.iter().zip(&mut self.presence).enumerate() {
                let is_in = zone.contains(zone.anchor().of(&track.bbox));
                if let Some(dwell) = track.set_in_zone(zi, is_in, now) {
                    presence.record_visit(dwell);
                }
                if is_in && !(zone.ignores_stationary() && track.is_stationary()) {
                    inside[zi][track.class_index] += 1;
                }
            }
            let Some((from, to)) = track.counting_move() else {
                continue;
            };
            for (i, (line, count)) in self.lines.iter().zip(&mut self.line_counts).enumerate() {
                if track.line_counted(i) {
                    continue;
                }
                // Once per track and line, whichever way it crosses first: an object wobbling
                // on the line, or turning back, is still one object.
                let anchor = line.anchor();
                if let Some(crossing) = line.crossing(anchor.of(&from), anchor.of(&to)) {
                    track.mark_line_counted(i);
                    count.record(crossing, track.class_index);
                }
            }
            track.counted_up_to_now();
        }
        for (zi, ((presence, occupancy), inside)) in self
            .presence
            .iter_mut()
            .zip(&mut self.occupancy)
            .zip(&inside)
            .enumerate()
        {
            presence.update(inside, now, occupancy);
            // Lost tracks still count: their stay ends when they are seen out or evicted.
            let longest = self
                .tracker
                .tracks()
                .iter()
                .filter_map(|t| t.dwell(zi, now));
            presence.set_current_longest(longest.max().unwrap_or(Duration::ZERO));
        }
    }

    /// `[zone][counted class]`: objects present in each zone, with the zone's hysteresis (see
    /// [`ZonePresence`]); what signal demand reads. Zones are in config order.
    pub fn zone_occupancy(&self) -> &[[u32; MAX_CLASSES]] {
        &self.occupancy
    }

    /// Presence state, periods and dwell figures per zone, in config order.
    pub fn zone_presence(&self) -> &[ZonePresence] {
        &self.presence
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
    use crate::config::{Anchor, InSide};
    use crate::geometry::BBox;

    const PERSON: u16 = 0;
    const CAR: u16 = 2;
    const BUS: u16 = 5;

    fn zone(name: &str, points: &[[f32; 2]]) -> ZoneConfig {
        ZoneConfig {
            name: name.into(),
            points: points.to_vec(),
            camera: None,
            anchor: Anchor::BottomCenter,
            enter_frames: 1,
            exit_ms: 0,
            ignore_stationary: false,
        }
    }

    fn line(from: [f32; 2], to: [f32; 2], in_side: InSide) -> LineConfig {
        LineConfig {
            name: "stop line".into(),
            camera: None,
            from,
            to,
            in_side,
            anchor: Anchor::BottomCenter,
        }
    }

    /// Confirmed on the first hit, so each test sees its rule and not the confirmation.
    fn tracker() -> TrackerConfig {
        TrackerConfig {
            capacity: 16,
            ttl_ms: 500,
            confirm_hits: 1,
            ..TrackerConfig::default()
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
                standing(7, 0.2, 0.6),       // not counted
            ],
            ms(0),
        );
        let occ = scene.zone_occupancy();
        assert_eq!(occ.len(), 2);
        assert_eq!(&occ[0][..3], &[0, 2, 0]);
        assert_eq!(&occ[1][..3], &[1, 1, 1]);
        assert_eq!(scene.zones()[1].name(), "ell");
        assert_eq!(scene.stats().ignored, 1);

        // With no hold time, presence is of this frame only: lost tracks are in no zone.
        scene.update(&[standing(CAR, 0.2, 0.3)], ms(40));
        assert_eq!(scene.tracks().len(), 5);
        assert_eq!(&scene.zone_occupancy()[0][..3], &[0, 1, 0]);
        assert_eq!(&scene.zone_occupancy()[1][..3], &[0, 0, 0]);
    }

    #[test]
    fn presence_holds_through_missed_frames_and_counts_periods() {
        let mut z = zone(
            "stop bar",
            &[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
        );
        z.enter_frames = 2;
        z.exit_ms = 300;
        let mut scene = Scene::new(&tracker(), &[z], &[], &[CAR]);
        let car = [standing(CAR, 0.5, 0.5)];
        scene.update(&car, ms(0));
        assert_eq!(scene.zone_occupancy()[0][0], 0, "one frame is not presence");
        scene.update(&car, ms(100));
        assert_eq!(scene.zone_occupancy()[0][0], 1);
        // The detector misses the car for 200 ms: the call holds.
        scene.update(&[], ms(200));
        scene.update(&[], ms(300));
        assert_eq!(scene.zone_occupancy()[0][0], 1);
        scene.update(&car, ms(350));
        scene.update(&[], ms(500));
        assert_eq!(scene.zone_occupancy()[0][0], 1);
        scene.update(&[], ms(650));
        assert_eq!(scene.zone_occupancy()[0][0], 0);
        assert_eq!(scene.zone_presence()[0].occupied_periods(), 1);
    }

    #[test]
    fn stationary_tracks_can_be_kept_out_of_a_zone() {
        let whole = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let mut parked_out = zone("demand", &whole);
        parked_out.ignore_stationary = true;
        let tracker = TrackerConfig {
            stationary_ms: 1000,
            ttl_ms: 5000,
            ..tracker()
        };
        let mut scene = Scene::new(&tracker, &[zone("all", &whole), parked_out], &[], &[CAR]);
        for f in 0..15u64 {
            scene.update(&[standing(CAR, 0.5, 0.5)], ms(f * 100));
            let occ = scene.zone_occupancy();
            let parked = f >= 10;
            assert_eq!((occ[0][0], occ[1][0]), (1, u32::from(!parked)), "frame {f}");
        }
        // The dwell of the parked car in the zone is known while it stays.
        let track = scene.tracks()[0];
        assert_eq!(track.dwell(0, ms(1400)), Some(ms(1400)));
    }

    #[test]
    fn dwell_counts_tracks_that_leave_and_tracks_evicted_inside() {
        let left = zone("left", &[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]);
        let mut scene = Scene::new(&tracker(), &[left], &[], &[CAR]);
        let dwell = |scene: &Scene| scene.zone_presence()[0].dwell();
        // A car drives out of the zone: in at 0 ms, out at 400 ms.
        for f in 0..=10u64 {
            scene.update(&[standing(CAR, 0.31 + 0.02 * f as f32, 0.5)], ms(f * 40));
            if f == 5 {
                assert_eq!(dwell(&scene).current_longest, ms(200));
            }
        }
        let d = dwell(&scene);
        assert_eq!((d.visits, d.total, d.current_longest), (1, ms(400), ms(0)));
        // Another stands in it from 1000 to 2000 ms, then is never seen again.
        for t in (1000..=2000).step_by(100) {
            scene.update(&[standing(CAR, 0.25, 0.8)], ms(t));
        }
        assert_eq!(dwell(&scene).current_longest, ms(1000));
        // Lost but not yet evicted: still in the zone, for all we know.
        scene.update(&[], ms(2400));
        assert_eq!(dwell(&scene).visits, 1);
        assert_eq!(dwell(&scene).current_longest, ms(1400));
        // Evicted past the TTL: the stay ends when it was last seen, and counts.
        scene.update(&[], ms(2600));
        assert_eq!(scene.stats().evicted, 2);
        let d = dwell(&scene);
        assert_eq!(
            (d.visits, d.total, d.longest, d.current_longest),
            (2, ms(1400), ms(1000), ms(0))
        );
        assert_eq!(d.mean(), ms(700));
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
    fn turning_back_after_crossing_counts_once() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        drive(
            &mut scene,
            &[
                0.46, 0.47, 0.48, 0.49, 0.50, 0.51, 0.52, 0.525, 0.525, 0.52, 0.51, 0.50, 0.49,
                0.48, 0.47,
            ],
        );
        assert_eq!(scene.tracks().len(), 1);
        let c = scene.line_counts()[0];
        assert_eq!((c.inbound[0], c.outbound[0]), (1, 0));
    }

    #[test]
    fn a_track_born_past_the_line_does_not_count() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        drive(&mut scene, &[0.51, 0.55, 0.59, 0.63]);
        assert_eq!(scene.line_counts()[0], LineCount::default());
    }

    #[test]
    fn a_crossing_while_tentative_counts_once_confirmed() {
        let tracker = TrackerConfig {
            confirm_hits: 3,
            ..tracker()
        };
        let mut scene = Scene::new(&tracker, &[], &vertical_line(InSide::Left), &[CAR]);
        scene.update(&[standing(CAR, 0.47, 0.5)], ms(0));
        scene.update(&[standing(CAR, 0.51, 0.5)], ms(40));
        assert_eq!(scene.line_counts()[0].inbound[0], 0, "not yet confirmed");
        scene.update(&[standing(CAR, 0.55, 0.5)], ms(80));
        assert_eq!(scene.line_counts()[0].inbound[0], 1);
        scene.update(&[standing(CAR, 0.59, 0.5)], ms(120));
        assert_eq!(scene.line_counts()[0].inbound[0], 1);
    }

    #[test]
    fn a_tentative_track_that_vanishes_counts_nothing() {
        let tracker = TrackerConfig {
            confirm_hits: 3,
            ..tracker()
        };
        let mut scene = Scene::new(&tracker, &[], &vertical_line(InSide::Left), &[CAR]);
        scene.update(&[standing(CAR, 0.47, 0.5)], ms(0));
        scene.update(&[standing(CAR, 0.52, 0.5)], ms(40));
        for t in [80, 120, 160] {
            scene.update(&[], ms(t));
        }
        assert_eq!(scene.line_counts()[0], LineCount::default());
        assert!(scene.tracks().is_empty());
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
    fn the_anchor_decides_which_point_crosses() {
        // A horizontal line at y = 0.4; a car drives down with its ground point from 0.42 to
        // 0.50: its bottom edge starts past the line, its centre (0.37 to 0.45) crosses it.
        let mut centre = line([0.0, 0.4], [1.0, 0.4], InSide::Right);
        centre.anchor = Anchor::Center;
        let bottom = line([0.0, 0.4], [1.0, 0.4], InSide::Right);
        let mut scene = Scene::new(&tracker(), &[], &[centre, bottom], &[CAR]);
        for (i, y) in [0.42, 0.44, 0.46, 0.48, 0.50].into_iter().enumerate() {
            scene.update(&[standing(CAR, 0.5, y)], ms(i as u64 * 40));
        }
        let c = scene.line_counts();
        assert_eq!((c[0].inbound[0], c[0].outbound[0]), (1, 0));
        assert_eq!(c[1], LineCount::default());
    }

    #[test]
    fn a_crossing_during_missed_frames_is_still_counted() {
        let mut scene = Scene::new(&tracker(), &[], &vertical_line(InSide::Left), &[CAR]);
        scene.update(&[standing(CAR, 0.45, 0.5)], ms(0));
        scene.update(&[standing(CAR, 0.47, 0.5)], ms(40));
        scene.update(&[], ms(80));
        scene.update(&[], ms(120));
        scene.update(&[standing(CAR, 0.53, 0.5)], ms(160));
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
