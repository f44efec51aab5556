//! `edgewatch soak`: many frames as fast as the pipeline goes, with resident memory sampled
//! at a checkpoint and at the end, to show that nothing grows.

use std::sync::Arc;

use crate::clock::MonotonicClock;
use crate::config::Config;
use crate::health::memory::{heap_in_use, peak_rss_bytes, rss_bytes};
use crate::pipeline::{Pipeline, PipelineError};

/// Memory readings of one soak run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakReport {
    /// Frames processed.
    pub frames: u64,
    /// RSS (bytes) after `checkpoint` frames.
    pub rss_at_checkpoint: u64,
    /// RSS (bytes) at the end.
    pub rss_at_end: u64,
    /// Peak RSS (bytes) of the whole process.
    pub peak_rss: u64,
    /// glibc heap bytes in use after `checkpoint` frames.
    pub heap_at_checkpoint: u64,
    /// glibc heap bytes in use at the end.
    pub heap_at_end: u64,
}

/// Runs `frames` frames of `config`'s first camera in lock-step (nothing dropped), looping the
/// recording, and prints a line at the checkpoint and at the end.
pub fn run(config: &Config, frames: u64, checkpoint: u64) -> Result<SoakReport, PipelineError> {
    let mut config = config.clone();
    config.cameras[0].fps = 0.0;
    config.cameras[0].looping = true;
    let mut pipeline = Pipeline::build(&config, Arc::new(MonotonicClock::new()))?;
    let checkpoint = checkpoint.clamp(1, frames.max(1));
    // The first print allocates stdout's buffer: do it before any reading is taken.
    println!("soak: {frames} frames, baseline after {checkpoint}");
    let mut at_checkpoint = (0, 0);
    let done = pipeline.run_frames(frames, |done| {
        if done == checkpoint {
            at_checkpoint = (rss_bytes().unwrap_or(0), heap_in_use().bytes);
            print_line(done, at_checkpoint.0, at_checkpoint.1);
        }
    })?;
    let report = SoakReport {
        frames: done,
        rss_at_checkpoint: at_checkpoint.0,
        rss_at_end: rss_bytes().unwrap_or(0),
        peak_rss: peak_rss_bytes().unwrap_or(0),
        heap_at_checkpoint: at_checkpoint.1,
        heap_at_end: heap_in_use().bytes,
    };
    print_line(done, report.rss_at_end, report.heap_at_end);
    println!(
        "soak: rss_growth_kib={} heap_growth_bytes={} peak_rss_kib={} errors={}",
        (report.rss_at_end as i64 - report.rss_at_checkpoint as i64) / 1024,
        report.heap_at_end as i64 - report.heap_at_checkpoint as i64,
        report.peak_rss / 1024,
        pipeline
            .stats()
            .errors
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(report)
}

fn print_line(frames: u64, rss: u64, heap: u64) {
    println!(
        "soak: frames={frames} rss_kib={} heap_bytes={heap}",
        rss / 1024
    );
}
