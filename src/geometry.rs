//! Normalized image geometry shared by the detector, the tracker and the zones.
//!
//! Every coordinate is normalized to the full camera frame: (0, 0) is the top-left corner and
//! (1, 1) the bottom-right, whatever the model's input size or region of interest.

use serde::{Deserialize, Serialize};

/// A point in normalized frame coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal position, 0 at the left edge.
    pub x: f32,
    /// Vertical position, 0 at the top edge.
    pub y: f32,
}

impl Point {
    /// A point at `(x, y)`.
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box in normalized frame coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    /// Left edge.
    pub xmin: f32,
    /// Top edge.
    pub ymin: f32,
    /// Right edge.
    pub xmax: f32,
    /// Bottom edge.
    pub ymax: f32,
}

impl BBox {
    /// A box from its edges.
    pub const fn new(xmin: f32, ymin: f32, xmax: f32, ymax: f32) -> Self {
        Self {
            xmin,
            ymin,
            xmax,
            ymax,
        }
    }

    /// A box from its centre and size.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    /// Width (0 for an inverted box).
    pub fn width(&self) -> f32 {
        (self.xmax - self.xmin).max(0.0)
    }

    /// Height (0 for an inverted box).
    pub fn height(&self) -> f32 {
        (self.ymax - self.ymin).max(0.0)
    }

    /// Area (0 for an inverted box).
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Centre of the box.
    pub fn center(&self) -> Point {
        Point::new((self.xmin + self.xmax) / 2.0, (self.ymin + self.ymax) / 2.0)
    }

    /// Middle of the bottom edge: where a vehicle or a person touches the ground, the point
    /// zones and counting lines test against.
    pub fn ground_point(&self) -> Point {
        Point::new((self.xmin + self.xmax) / 2.0, self.ymax)
    }

    /// Whether every edge lies within 1e-5 of `other`'s: equal up to float rounding.
    #[cfg(test)]
    pub(crate) fn close_to(&self, other: &BBox) -> bool {
        [
            self.xmin - other.xmin,
            self.ymin - other.ymin,
            self.xmax - other.xmax,
            self.ymax - other.ymax,
        ]
        .iter()
        .all(|d| d.abs() < 1e-5)
    }

    /// Intersection over the smaller box's area, in [0, 1]: 1 when one box lies inside the
    /// other.
    pub fn overlap_of_smaller(&self, other: &BBox) -> f32 {
        let smaller = self.area().min(other.area());
        if smaller <= 0.0 {
            return 0.0;
        }
        self.intersection(other) / smaller
    }

    fn intersection(&self, other: &BBox) -> f32 {
        let iw = (self.xmax.min(other.xmax) - self.xmin.max(other.xmin)).max(0.0);
        let ih = (self.ymax.min(other.ymax) - self.ymin.max(other.ymin)).max(0.0);
        iw * ih
    }

    /// Intersection over union with `other`, in [0, 1].
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A rectangle of interest in normalized coordinates, used to crop the frame before inference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl Roi {
    /// The whole frame.
    pub const FULL: Roi = Roi {
        x: 0.0,
        y: 0.0,
        width: 1.0,
        height: 1.0,
    };

    /// Maps a box normalized to this region back into full-frame coordinates.
    pub fn to_frame(&self, b: BBox) -> BBox {
        BBox::new(
            self.x + b.xmin * self.width,
            self.y + b.ymin * self.height,
            self.x + b.xmax * self.width,
            self.y + b.ymax * self.height,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox::new(0.0, 0.0, 0.2, 0.2);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(0.5, 0.5, 0.6, 0.6)), 0.0);
        let b = BBox::new(0.1, 0.0, 0.3, 0.2);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert!((a.overlap_of_smaller(&b) - 0.5).abs() < 1e-6);
        let inner = BBox::new(0.05, 0.05, 0.1, 0.1);
        assert_eq!(a.overlap_of_smaller(&inner), 1.0);
        assert_eq!(a.overlap_of_smaller(&BBox::default()), 0.0);
    }

    #[test]
    fn roi_maps_back_to_the_frame() {
        let roi = Roi {
            x: 0.5,
            y: 0.25,
            width: 0.5,
            height: 0.5,
        };
        let b = roi.to_frame(BBox::new(0.0, 0.0, 1.0, 1.0));
        assert_eq!(b, BBox::new(0.5, 0.25, 1.0, 0.75));
    }
}
