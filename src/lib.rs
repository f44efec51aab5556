//! edgewatch: camera frames -> TensorFlow Lite detector -> zone and line counts -> safe signal
//! outputs, with every buffer sized at start-up and nothing allocated per frame.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod bench;
pub mod bins;
pub mod capture;
pub mod clock;
pub mod config;
pub mod control;
pub mod ctl;
pub mod detector_outputs;
pub mod eval;
pub mod geometry;
pub mod health;
pub mod json;
pub mod mqtt;
pub mod pipeline;
pub mod report;
pub mod scene;
pub mod service;
pub mod signal;
pub mod sim;
pub mod soak;
pub mod utc;
pub mod version;
pub mod view;
pub mod vision;
