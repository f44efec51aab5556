//! Run-time health: counters, latency histograms and memory readings.

pub mod hw_watchdog;
pub mod memory;
pub mod notify;
pub mod restart;
pub mod server;
pub mod stats;
pub mod status;
pub mod video;
pub mod watchdog;
