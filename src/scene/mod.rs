//! What the detections mean on the ground: tracked objects, zone occupancy, line crossings.

pub mod tracker;
pub mod zones;
