//! What a detector reports for one frame.

use crate::geometry::BBox;

/// The most detections one frame can carry; `model.max_detections` is validated against it.
pub const MAX_DETECTIONS: usize = 128;

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Detection {
    /// Class index into the model's label list (0-based, as the labels file is).
    pub class: u16,
    /// Confidence in [0, 1].
    pub score: f32,
    /// Box in normalized full-frame coordinates.
    pub bbox: BBox,
}

/// The fixed-capacity list a detector decodes into; it never allocates.
pub type Detections = heapless::Vec<Detection, MAX_DETECTIONS>;
