//! Everything between a frame and a list of detections.

pub mod detection;
pub mod detector;
pub mod flexbuffer;
pub mod litert;
pub mod pool;
pub mod preprocess;
pub mod ssd;
pub mod ssd_head;
pub mod tflite;
pub mod tiles;
pub mod yolox;
