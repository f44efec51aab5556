//! Lock-free counters and fixed-bucket latency histograms, readable from any thread while the
//! pipeline writes them. Nothing here allocates after construction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Exact buckets for 0..8 ns, then 8 buckets per power of two: a reported percentile is at
/// most 12.5 % above the true value, from nanoseconds to hours.
const SUB_BUCKETS: u64 = 8;
/// Enough buckets for latencies up to 2^44 ns (about 5 hours); longer ones share the last.
const BUCKETS: usize = 344;

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS {
        return nanos as usize;
    }
    let octave = 63 - u64::from(nanos.leading_zeros()); // >= 3
    let sub = (nanos >> (octave - 3)) & (SUB_BUCKETS - 1);
    (((octave - 2) * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

/// Largest value (ns) that falls in bucket `index`.
fn bucket_upper(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB_BUCKETS {
        return i;
    }
    let octave = i / SUB_BUCKETS + 2;
    let sub = i % SUB_BUCKETS;
    let width = 1u64 << (octave - 3);
    ((SUB_BUCKETS + sub) << (octave - 3)) + width - 1
}

/// A latency histogram with fixed log-spaced buckets.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Largest sample seen.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns.load(Relaxed))
    }

    /// Mean of the samples; zero when empty.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Relaxed) / self.count().max(1))
    }

    /// The `q`-quantile (0..=1), as the upper edge of its bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(i).min(self.max_ns.load(Relaxed)));
            }
        }
        self.max()
    }

    /// Forgets every sample.
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum_ns.store(0, Relaxed);
        self.max_ns.store(0, Relaxed);
    }
}

/// The per-frame stages timed by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for and fetching the newest frame.
    Capture,
    /// Pixel conversion and resize into the input tensor.
    Preprocess,
    /// The model itself.
    Invoke,
    /// Output decoding into detections.
    Decode,
    /// Tracker, zones and lines.
    Scene,
    /// Everything from frame in hand to counts updated (capture wait excluded).
    Frame,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Capture,
        Stage::Preprocess,
        Stage::Invoke,
        Stage::Decode,
        Stage::Scene,
        Stage::Frame,
    ];

    /// Short name for summaries and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Preprocess => "preprocess",
            Stage::Invoke => "invoke",
            Stage::Decode => "decode",
            Stage::Scene => "scene",
            Stage::Frame => "frame",
        }
    }
}

/// Everything the pipeline counts, shared with the reporting side through atomics.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Frames processed end to end.
    pub frames: AtomicU64,
    /// Frames the source dropped because a newer one was ready.
    pub dropped: AtomicU64,
    /// Frames that could not be processed (bad frame, failed invoke or decode).
    pub errors: AtomicU64,
    /// Detections kept after filtering, summed over all frames.
    pub detections: AtomicU64,
    /// Latency per stage since start.
    total: [Histogram; 6],
    /// Latency per stage since the last summary.
    window: [Histogram; 6],
    /// Frame latency since the watchdog last judged it.
    watchdog: Histogram,
    /// Frames per second over the last summary window, as f64 bits.
    recent_fps: AtomicU64,
    /// Whether the model still runs.
    pub detector: DetectorHealth,
}

/// Which step of running the model failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorStep {
    /// The runtime's invoke.
    Invoke,
    /// Decoding the outputs into detections.
    Decode,
}

impl DetectorStep {
    /// Lower-case name for logs and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorStep::Invoke => "invoke",
            DetectorStep::Decode => "decode",
        }
    }
}

/// Consecutive failed invokes or decodes, and whether they reached `model.max_failures`:
/// a detector that fails every frame is a failure of the unit (the signals degrade, the
/// watchdog restarts), not a stream of skipped frames.
#[derive(Debug, Default)]
pub struct DetectorHealth {
    consecutive: AtomicU64,
    failed: AtomicBool,
    decode: AtomicBool,
}

/// A failed detector: how many frames in a row, and the step that failed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorFailure {
    /// Consecutive frames the model could not run or decode.
    pub consecutive: u64,
    /// The step that failed last.
    pub step: DetectorStep,
}

impl DetectorHealth {
    /// A frame ran and decoded: the count starts again.
    pub fn succeeded(&self) {
        self.consecutive.store(0, Relaxed);
        self.failed.store(false, Relaxed);
    }

    /// A frame failed at `step`; returns true when this failure makes `limit` in a row (the
    /// moment the detector is marked failed).
    pub fn failed_at(&self, step: DetectorStep, limit: u64) -> bool {
        self.decode.store(step == DetectorStep::Decode, Relaxed);
        let n = self.consecutive.fetch_add(1, Relaxed) + 1;
        if n >= limit.max(1) {
            !self.failed.swap(true, Relaxed)
        } else {
            false
        }
    }

    /// Consecutive failures so far, failed or not yet.
    pub fn consecutive(&self) -> u64 {
        self.consecutive.load(Relaxed)
    }

    /// `Some` while the detector is marked failed.
    pub fn failure(&self) -> Option<DetectorFailure> {
        self.failed.load(Relaxed).then(|| DetectorFailure {
            consecutive: self.consecutive(),
            step: if self.decode.load(Relaxed) {
                DetectorStep::Decode
            } else {
                DetectorStep::Invoke
            },
        })
    }
}

impl PipelineStats {
    /// Records one stage's time in both the running and the window histogram.
    pub fn record(&self, stage: Stage, d: Duration) {
        self.total[stage as usize].record(d);
        self.window[stage as usize].record(d);
        if stage == Stage::Frame {
            self.watchdog.record(d);
        }
    }

    /// Records the frame rate of the summary window that just ended.
    pub fn set_recent_fps(&self, fps: f64) {
        self.recent_fps.store(fps.to_bits(), Relaxed);
    }

    /// Frames per second over the last summary window.
    pub fn recent_fps(&self) -> f64 {
        f64::from_bits(self.recent_fps.load(Relaxed))
    }

    /// Frame latency since the watchdog last reset it.
    pub fn watchdog_window(&self) -> &Histogram {
        &self.watchdog
    }

    /// Latency of `stage` since start.
    pub fn total(&self, stage: Stage) -> &Histogram {
        &self.total[stage as usize]
    }

    /// Latency of `stage` since the last [`PipelineStats::reset_window`].
    pub fn window(&self, stage: Stage) -> &Histogram {
        &self.window[stage as usize]
    }

    /// Starts a new summary window.
    pub fn reset_window(&self) {
        for h in &self.window {
            h.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_fails_after_the_limit_in_a_row_and_recovers_on_success() {
        let d = DetectorHealth::default();
        assert!(!d.failed_at(DetectorStep::Invoke, 3));
        assert!(!d.failed_at(DetectorStep::Invoke, 3));
        d.succeeded();
        assert!(!d.failed_at(DetectorStep::Invoke, 3));
        assert!(!d.failed_at(DetectorStep::Decode, 3));
        assert_eq!(d.failure(), None);
        assert!(d.failed_at(DetectorStep::Decode, 3), "third in a row");
        assert!(!d.failed_at(DetectorStep::Decode, 3), "reported once");
        assert_eq!(
            d.failure(),
            Some(DetectorFailure {
                consecutive: 4,
                step: DetectorStep::Decode
            })
        );
        d.succeeded();
        assert_eq!((d.failure(), d.consecutive()), (None, 0));
    }

    #[test]
    fn buckets_are_contiguous_and_bound_their_values() {
        for v in (0..100_000u64).chain([1 << 30, (1 << 44) - 1]) {
            let b = bucket_of(v);
            assert!(bucket_upper(b) >= v, "{v} above its bucket {b}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v} also fits bucket {}", b - 1);
            }
            assert!(bucket_upper(b) as f64 <= v as f64 * 1.125 + 1.0);
        }
    }

    #[test]
    fn quantiles_come_within_a_bucket() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((50_000.0..=50_000.0 * 1.125).contains(&p50), "{p50}");
        assert!((99_000.0..=100_000.0).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_millis(100));
        assert_eq!(h.mean(), Duration::from_micros(50_500));
        h.reset();
        assert_eq!((h.count(), h.quantile(0.5)), (0, Duration::ZERO));
    }
}
