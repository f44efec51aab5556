//! edgewatch: camera frames -> TensorFlow Lite detector -> zone and line counts -> safe signal
//! outputs, with every buffer sized at start-up and nothing allocated per frame.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod clock;
pub mod geometry;
pub mod capture;
pub mod config;
pub mod scene;
pub mod signal;
pub mod vision;
