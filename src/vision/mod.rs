//! Everything between a frame and a list of detections.

pub mod detection;
pub mod detector;
pub mod preprocess;
pub mod ssd;
pub mod tflite;
