//! Run-time health: counters, latency histograms and memory readings.

pub mod memory;
pub mod stats;
