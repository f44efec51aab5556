//! Zones (polygons) and counting lines: the geometry the scene tests ground points against, and
//! the per-class counts a line keeps.
//!
//! Coordinates are normalized image coordinates: x grows to the right and y grows downward.

use crate::config::{Anchor, InSide, LineConfig, ZoneConfig, MAX_CLASSES};
use crate::geometry::{BBox, Point};

fn sub(a: Point, b: Point) -> Point {
    Point::new(a.x - b.x, a.y - b.y)
}

/// z component of the 2-D cross product `a x b`.
fn cross(a: Point, b: Point) -> f32 {
    a.x * b.y - a.y * b.x
}

/// An occupancy zone: a simple or self-intersecting polygon, tested with the even-odd rule.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    points: Box<[Point]>,
    /// Quick reject: most ground points are nowhere near most zones.
    bounds: BBox,
    anchor: Anchor,
    ignore_stationary: bool,
}

impl Zone {
    /// The zone a config entry describes. Fewer than 3 points (which validation rejects) give
    /// a zone that contains nothing.
    pub fn new(config: &ZoneConfig) -> Zone {
        let points: Box<[Point]> = config.polygon().collect();
        let mut bounds = BBox::new(
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        );
        for p in points.iter() {
            bounds.xmin = bounds.xmin.min(p.x);
            bounds.ymin = bounds.ymin.min(p.y);
            bounds.xmax = bounds.xmax.max(p.x);
            bounds.ymax = bounds.ymax.max(p.y);
        }
        Zone {
            name: config.name.clone(),
            points,
            bounds,
            anchor: config.anchor,
            ignore_stationary: config.ignore_stationary,
        }
    }

    /// The point of a box tested against the polygon.
    pub fn anchor(&self) -> Anchor {
        self.anchor
    }

    /// Whether stationary tracks are kept out of the zone's presence.
    pub fn ignores_stationary(&self) -> bool {
        self.ignore_stationary
    }

    /// The zone's name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The polygon's corners.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Whether `p` lies inside, by the even-odd rule. Points exactly on an edge may land on
    /// either side; a non-finite point is never inside.
    pub fn contains(&self, p: Point) -> bool {
        let b = &self.bounds;
        if p.x < b.xmin || p.x > b.xmax || p.y < b.ymin || p.y > b.ymax {
            return false;
        }
        let mut inside = false;
        let mut j = self.points.len().wrapping_sub(1);
        for (i, &a) in self.points.iter().enumerate() {
            let c = self.points[j];
            // The edge straddles the horizontal through p (so a.y != c.y and the division is
            // safe); flip if it crosses that horizontal to the right of p.
            if (a.y > p.y) != (c.y > p.y) && p.x < a.x + (c.x - a.x) * (p.y - a.y) / (c.y - a.y) {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// Which way an object crossed a counting line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// Onto the line's "in" side.
    Inbound,
    /// Off the line's "in" side.
    Outbound,
}

/// A counting line: a finite segment from `from` to `to`, with the side objects move onto to
/// count as "in".
#[derive(Debug, Clone)]
pub struct CountingLine {
    name: String,
    from: Point,
    to: Point,
    in_side: InSide,
    anchor: Anchor,
}

impl CountingLine {
    /// The line a config entry describes.
    pub fn new(config: &LineConfig) -> CountingLine {
        CountingLine {
            name: config.name.clone(),
            from: Point::new(config.from[0], config.from[1]),
            to: Point::new(config.to[0], config.to[1]),
            in_side: config.in_side,
            anchor: config.anchor,
        }
    }

    /// The point of a box whose path is tested against the line.
    pub fn anchor(&self) -> Anchor {
        self.anchor
    }

    /// The line's name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// End points, `(from, to)`.
    pub fn end_points(&self) -> (Point, Point) {
        (self.from, self.to)
    }

    /// The side moving onto which counts as [`Crossing::Inbound`].
    pub fn in_side(&self) -> InSide {
        self.in_side
    }

    /// Which side of the (infinitely extended) line `p` lies on, as seen on the image:
    /// walking along the line from `from` to `to` on screen (x right, y down), `Left` is on the
    /// walker's left hand. So for a line drawn left to right, `Left` is above it (smaller y);
    /// for a line drawn top to bottom, `Left` is to its right (larger x). In y-down coordinates
    /// that is where `cross(to - from, p - from) < 0`.
    ///
    /// A point exactly on the line is `Right`: the sides are half-open, so an object whose
    /// ground point stops exactly on the line still crosses exactly once when it moves on.
    pub fn side(&self, p: Point) -> InSide {
        if cross(sub(self.to, self.from), sub(p, self.from)) < 0.0 {
            InSide::Left
        } else {
            InSide::Right
        }
    }

    /// Whether moving from `a` to `b` crosses the line segment, and which way. The move must
    /// change sides and meet the segment between its end points (inclusive); passing beyond an
    /// end point, where the line only extends, does not count. A zero-length line is never
    /// crossed.
    pub fn crossing(&self, a: Point, b: Point) -> Option<Crossing> {
        if ![a.x, a.y, b.x, b.y].iter().all(|v| v.is_finite()) {
            return None;
        }
        let after = self.side(b);
        if self.side(a) == after {
            return None;
        }
        // The move changes sides, so it meets the infinite line; it meets the segment only if
        // the segment's end points do not both lie strictly on one side of the move.
        let step = sub(b, a);
        let s_from = cross(step, sub(self.from, a));
        let s_to = cross(step, sub(self.to, a));
        if (s_from > 0.0 && s_to > 0.0) || (s_from < 0.0 && s_to < 0.0) {
            return None;
        }
        Some(if after == self.in_side {
            Crossing::Inbound
        } else {
            Crossing::Outbound
        })
    }
}

/// Cumulative crossings of one line, per counted class index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCount {
    /// Objects that crossed onto the "in" side.
    pub inbound: [u64; MAX_CLASSES],
    /// Objects that crossed off the "in" side.
    pub outbound: [u64; MAX_CLASSES],
}

impl LineCount {
    /// Adds one crossing of counted class `class_index`.
    pub fn record(&mut self, crossing: Crossing, class_index: usize) {
        let counts = match crossing {
            Crossing::Inbound => &mut self.inbound,
            Crossing::Outbound => &mut self.outbound,
        };
        counts[class_index] += 1;
    }

    /// Inbound crossings of every class.
    pub fn total_inbound(&self) -> u64 {
        self.inbound.iter().sum()
    }

    /// Outbound crossings of every class.
    pub fn total_outbound(&self) -> u64 {
        self.outbound.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(points: &[[f32; 2]]) -> Zone {
        Zone::new(&ZoneConfig {
            name: "z".into(),
            points: points.to_vec(),
            camera: None,
            anchor: Anchor::BottomCenter,
            enter_frames: 1,
            exit_ms: 0,
            ignore_stationary: false,
        })
    }

    fn line(from: [f32; 2], to: [f32; 2], in_side: InSide) -> CountingLine {
        CountingLine::new(&LineConfig {
            name: "l".into(),
            camera: None,
            from,
            to,
            in_side,
            anchor: Anchor::Center,
        })
    }

    fn p(x: f32, y: f32) -> Point {
        Point::new(x, y)
    }

    #[test]
    fn convex_polygon_contains_its_inside_only() {
        let z = zone(&[[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]);
        assert!(z.contains(p(0.5, 0.5)));
        assert!(z.contains(p(0.21, 0.79)));
        assert!(!z.contains(p(0.1, 0.5)));
        assert!(!z.contains(p(0.5, 0.9)));
        assert!(!z.contains(p(f32::NAN, 0.5)));
    }

    #[test]
    fn concave_polygon_excludes_its_notch() {
        // A "U": two arms joined at the bottom, open at the top between x = 0.4 and 0.6.
        let u = zone(&[
            [0.2, 0.2],
            [0.4, 0.2],
            [0.4, 0.6],
            [0.6, 0.6],
            [0.6, 0.2],
            [0.8, 0.2],
            [0.8, 0.8],
            [0.2, 0.8],
        ]);
        assert!(u.contains(p(0.3, 0.3)), "left arm");
        assert!(u.contains(p(0.7, 0.3)), "right arm");
        assert!(u.contains(p(0.5, 0.7)), "bottom");
        assert!(!u.contains(p(0.5, 0.3)), "notch, inside the bounding box");
        assert!(!u.contains(p(0.9, 0.3)));
    }

    #[test]
    fn self_intersecting_polygon_uses_even_odd() {
        // A bow tie lying on its side: the left and right triangles are inside, the wedges
        // above and below the crossing are not.
        let bow = zone(&[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(bow.contains(p(0.2, 0.5)));
        assert!(bow.contains(p(0.8, 0.5)));
        assert!(!bow.contains(p(0.5, 0.2)));
        assert!(!bow.contains(p(0.5, 0.8)));
    }

    #[test]
    fn degenerate_zone_contains_nothing() {
        assert!(!zone(&[[0.2, 0.2], [0.8, 0.8]]).contains(p(0.5, 0.5)));
        assert!(!zone(&[]).contains(p(0.5, 0.5)));
    }

    #[test]
    fn left_is_the_walkers_left_hand_on_screen() {
        let rightwards = line([0.0, 0.5], [1.0, 0.5], InSide::Left);
        assert_eq!(
            rightwards.side(p(0.5, 0.2)),
            InSide::Left,
            "above a line drawn to the right"
        );
        assert_eq!(rightwards.side(p(0.5, 0.8)), InSide::Right);
        let leftwards = line([1.0, 0.5], [0.0, 0.5], InSide::Left);
        assert_eq!(
            leftwards.side(p(0.5, 0.8)),
            InSide::Left,
            "below a line drawn to the left"
        );
        let downwards = line([0.5, 0.0], [0.5, 1.0], InSide::Left);
        assert_eq!(
            downwards.side(p(0.8, 0.5)),
            InSide::Left,
            "right of a line drawn downward"
        );
        assert_eq!(downwards.side(p(0.2, 0.5)), InSide::Right);
        let upwards = line([0.5, 1.0], [0.5, 0.0], InSide::Left);
        assert_eq!(
            upwards.side(p(0.2, 0.5)),
            InSide::Left,
            "left of a line drawn upward"
        );
        assert_eq!(
            rightwards.side(p(0.3, 0.5)),
            InSide::Right,
            "on the line is Right"
        );
    }

    #[test]
    fn crossing_direction_follows_the_in_side() {
        // A vertical line drawn downward: its Left is the screen's right.
        let left_in = line([0.5, 0.0], [0.5, 1.0], InSide::Left);
        let right_in = line([0.5, 0.0], [0.5, 1.0], InSide::Right);
        let (west, east) = (p(0.4, 0.5), p(0.6, 0.5));
        assert_eq!(left_in.crossing(west, east), Some(Crossing::Inbound));
        assert_eq!(left_in.crossing(east, west), Some(Crossing::Outbound));
        assert_eq!(right_in.crossing(west, east), Some(Crossing::Outbound));
        assert_eq!(right_in.crossing(east, west), Some(Crossing::Inbound));
        assert_eq!(left_in.crossing(west, p(0.45, 0.9)), None, "same side");
        assert_eq!(left_in.crossing(west, west), None, "no move");
    }

    #[test]
    fn only_the_finite_segment_counts() {
        let l = line([0.5, 0.2], [0.5, 0.6], InSide::Left);
        assert_eq!(
            l.crossing(p(0.4, 0.8), p(0.6, 0.8)),
            None,
            "below the end point"
        );
        assert_eq!(
            l.crossing(p(0.4, 0.1), p(0.6, 0.1)),
            None,
            "above the start point"
        );
        assert_eq!(
            l.crossing(p(0.4, 0.6), p(0.6, 0.4)),
            Some(Crossing::Inbound),
            "diagonal"
        );
        assert_eq!(
            l.crossing(p(0.4, 0.5), p(0.6, 0.9)),
            None,
            "diagonal past the end"
        );
        assert_eq!(
            l.crossing(p(0.4, 0.6), p(0.6, 0.6)),
            Some(Crossing::Inbound),
            "through an end"
        );
        let dot = line([0.5, 0.5], [0.5, 0.5], InSide::Left);
        assert_eq!(
            dot.crossing(p(0.4, 0.5), p(0.6, 0.5)),
            None,
            "zero-length line"
        );
    }

    #[test]
    fn stopping_on_the_line_still_counts_once() {
        let l = line([0.0, 0.5], [1.0, 0.5], InSide::Left);
        let (above, on, below) = (p(0.5, 0.4), p(0.5, 0.5), p(0.5, 0.6));
        // Downward: above -> on is the crossing, on -> below is not.
        assert_eq!(l.crossing(above, on), Some(Crossing::Outbound));
        assert_eq!(l.crossing(on, below), None);
        // Upward: below -> on is not, on -> above is.
        assert_eq!(l.crossing(below, on), None);
        assert_eq!(l.crossing(on, above), Some(Crossing::Inbound));
    }

    #[test]
    fn line_count_records_per_class_and_direction() {
        let mut c = LineCount::default();
        c.record(Crossing::Inbound, 0);
        c.record(Crossing::Inbound, 3);
        c.record(Crossing::Outbound, 3);
        assert_eq!((c.inbound[0], c.inbound[3], c.outbound[3]), (1, 1, 1));
        assert_eq!((c.total_inbound(), c.total_outbound()), (2, 1));
    }
}
