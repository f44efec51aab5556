//! Everything between a frame and a list of detections.

pub mod detection;
pub mod preprocess;
pub mod ssd;
