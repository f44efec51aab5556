//! Throughput mode: a pool of single-threaded interpreters sharing one loaded model.
//!
//! Intra-op threads lower one frame's latency, but gemmlowp allocates per worker task (179
//! mallocs per invoke at 2 threads). Here each interpreter runs at 1 thread, which allocates
//! nothing, on its own worker thread, and frames go to the interpreters in turn: throughput
//! scales with cores, each frame takes as long as at 1 thread, and results come back in frame
//! order, `N - 1` frames behind ([`Detector::latency`]).
//!
//! The pipeline writes a frame into the pool's staging tensor ([`Detector::input_tensor`]);
//! [`Detector::invoke`] copies it into the next interpreter's input (a few hundred KB, a few
//! microseconds against ~100 ms of inference), wakes its worker, and once all `N` are busy
//! waits for the oldest; [`Detector::decode`] hands out the oldest's detections. Every slot,
//! thread and buffer is made at load; a frame moves through a mutex and a condition variable
//! per slot, neither of which allocates.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::detection::Detections;
use super::detector::{Detector, DetectorError};
use super::litert::LiteRtDetector;
use super::preprocess::{InputKind, InputSpec, InputTensor};
use super::tflite::{PreparedModel, TfliteDetector};
use crate::config::{ModelConfig, RuntimeChoice};

/// The detector `cfg` asks for: one interpreter, or a pool of `model.interpreters`, on the
/// runtime `model.runtime` resolves to.
pub fn load_detector(cfg: &ModelConfig) -> Result<Box<dyn Detector>, DetectorError> {
    let runtime = cfg.runtime.resolve();
    log::info!(
        "inference: {}, {} interpreter(s) x {} thread(s)",
        match runtime {
            RuntimeChoice::Tflite => "TensorFlow Lite 1.15",
            _ => "LiteRT (XNNPACK)",
        },
        cfg.interpreters.max(1),
        cfg.threads
    );
    Ok(match (cfg.interpreters, runtime) {
        (0 | 1, RuntimeChoice::Tflite) => Box::new(TfliteDetector::load(cfg)?),
        (0 | 1, _) => Box::new(LiteRtDetector::load(cfg)?),
        _ => Box::new(DetectorPool::load(cfg)?),
    })
}

/// Where one slot's frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The pipeline may fill it.
    Idle,
    /// Its worker is (or is about to be) running it.
    Submitted,
    /// Its detections wait to be collected.
    Done,
    /// The pool is shutting down.
    Stop,
}

struct SlotInner {
    detector: Box<dyn Detector>,
    state: State,
    detections: Detections,
    /// Whether the invoke and decode succeeded (kept apart from the error, whose message
    /// would be a `String`, so the frame path never formats one unless something failed).
    result: Result<(), DetectorError>,
}

impl std::fmt::Debug for SlotInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotInner")
            .field("state", &self.state)
            .field("detections", &self.detections.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Slot {
    inner: Mutex<SlotInner>,
    changed: Condvar,
}

impl Slot {
    fn lock(&self) -> Result<MutexGuard<'_, SlotInner>, DetectorError> {
        // A poisoned slot means its worker panicked mid-frame: report it as a failed invoke.
        self.inner.lock().map_err(|_| DetectorError::Invoke)
    }

    /// Waits until the slot is in `state` (or stopping), then returns it locked.
    fn wait_for(&self, state: State) -> Result<MutexGuard<'_, SlotInner>, DetectorError> {
        let mut g = self.lock()?;
        while g.state != state {
            if g.state == State::Stop {
                return Err(DetectorError::Invoke);
            }
            g = self.changed.wait(g).map_err(|_| DetectorError::Invoke)?;
        }
        Ok(g)
    }
}

/// The pipeline's copy of the input tensor, written by the preprocessor.
#[derive(Debug)]
enum Staging {
    U8(Vec<u8>),
    F32(Vec<f32>),
    I8(Vec<i8>),
}

/// `N` single-threaded interpreters on one shared model, each on its own thread, fed in turn.
#[derive(Debug)]
pub struct DetectorPool {
    slots: Vec<Arc<Slot>>,
    workers: Vec<JoinHandle<()>>,
    staging: Staging,
    input_spec: InputSpec,
    labels: Vec<String>,
    /// Slot the next frame goes to; once the pool is full, also the oldest frame in flight.
    next: usize,
    /// Frames submitted and not yet collected.
    in_flight: usize,
    /// Slot whose detections the next `decode` hands out.
    ready: Option<usize>,
}

impl DetectorPool {
    /// Loads `cfg.file` once and builds `cfg.interpreters` single-threaded interpreters on it,
    /// each with its own arena and worker thread.
    ///
    /// On TensorFlow Lite 1.15 the loaded model is leaked: interpreters borrow it for
    /// `'static`, and it must outlive them all. A pool is built once per process (the
    /// pipeline's), so this is a few MB held for the process lifetime, not a leak that grows.
    /// LiteRT's compiled models share it through an `Arc`.
    pub fn load(cfg: &ModelConfig) -> Result<DetectorPool, DetectorError> {
        let count = cfg.interpreters.max(1) as usize;
        let mut detectors: Vec<Box<dyn Detector>> = Vec::with_capacity(count);
        if cfg.runtime.resolve() == RuntimeChoice::Tflite {
            let model: &'static PreparedModel = Box::leak(Box::new(PreparedModel::read(cfg)?));
            for _ in 0..count {
                detectors.push(Box::new(TfliteDetector::on_shared(model, cfg)?));
            }
        } else {
            let model = std::sync::Arc::new(PreparedModel::read(cfg)?);
            for _ in 0..count {
                detectors.push(Box::new(LiteRtDetector::on_shared(model.clone(), cfg)?));
            }
        }
        let mut slots = Vec::with_capacity(count);
        for detector in detectors {
            slots.push(Arc::new(Slot {
                inner: Mutex::new(SlotInner {
                    detector,
                    state: State::Idle,
                    detections: Detections::new(),
                    result: Ok(()),
                }),
                changed: Condvar::new(),
            }));
        }
        let (input_spec, labels, len) = {
            let mut first = slots[0].lock()?;
            let len = first.detector.input_tensor().len();
            let d = &first.detector;
            (*d.input_spec(), d.labels().to_vec(), len)
        };
        let staging = match input_spec.kind {
            InputKind::U8 { .. } => Staging::U8(vec![0; len]),
            InputKind::F32 => Staging::F32(vec![0.0; len]),
            InputKind::I8 { .. } => Staging::I8(vec![0; len]),
        };
        let mut workers = Vec::with_capacity(count);
        for (i, slot) in slots.iter().enumerate() {
            let slot = slot.clone();
            let worker = std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || run_worker(&slot))
                .map_err(|e| DetectorError::BadModel {
                    path: cfg.file.clone(),
                    message: format!("cannot start inference thread {i}: {e}"),
                })?;
            workers.push(worker);
        }
        log::info!(
            "inference: {count} single-threaded interpreters sharing one model (throughput mode)"
        );
        Ok(DetectorPool {
            slots,
            workers,
            staging,
            input_spec,
            labels,
            next: 0,
            in_flight: 0,
            ready: None,
        })
    }

    /// Interpreters in the pool.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a pool has at least one interpreter.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Copies the staged frame into slot `i`'s interpreter and wakes its worker.
    fn submit(&mut self, i: usize) -> Result<(), DetectorError> {
        let slot = &self.slots[i];
        let mut g = slot.wait_for(State::Idle)?;
        match (g.detector.input_tensor(), &self.staging) {
            (InputTensor::U8(dst), Staging::U8(src)) if dst.len() == src.len() => {
                dst.copy_from_slice(src)
            }
            (InputTensor::F32(dst), Staging::F32(src)) if dst.len() == src.len() => {
                dst.copy_from_slice(src)
            }
            (InputTensor::I8(dst), Staging::I8(src)) if dst.len() == src.len() => {
                dst.copy_from_slice(src)
            }
            _ => return Err(DetectorError::Decode("pool input tensors differ".into())),
        }
        g.state = State::Submitted;
        drop(g);
        slot.changed.notify_all();
        Ok(())
    }
}

/// A worker: runs its slot's interpreter whenever a frame is submitted, until stopped.
fn run_worker(slot: &Slot) {
    loop {
        let Ok(mut g) = slot.lock() else { return };
        while g.state != State::Submitted && g.state != State::Stop {
            g = match slot.changed.wait(g) {
                Ok(g) => g,
                Err(_) => return,
            };
        }
        if g.state == State::Stop {
            return;
        }
        // The lock is held while the frame runs: the pipeline only ever waits for this slot
        // to be done, so nothing contends for it meanwhile.
        let inner = &mut *g;
        inner.result = inner
            .detector
            .invoke()
            .and_then(|()| inner.detector.decode(&mut inner.detections));
        inner.state = State::Done;
        drop(g);
        slot.changed.notify_all();
    }
}

impl Detector for DetectorPool {
    fn input_spec(&self) -> &InputSpec {
        &self.input_spec
    }

    fn input_tensor(&mut self) -> InputTensor<'_> {
        match &mut self.staging {
            Staging::U8(t) => InputTensor::U8(t),
            Staging::F32(t) => InputTensor::F32(t),
            Staging::I8(t) => InputTensor::I8(t),
        }
    }

    fn invoke(&mut self) -> Result<(), DetectorError> {
        if let Some(i) = self.ready.take() {
            // The previous result was never collected: drop it so its slot can run again.
            self.slots[i].lock()?.state = State::Idle;
            self.in_flight -= 1;
        }
        let n = self.slots.len();
        let i = self.next;
        self.submit(i)?;
        self.next = (i + 1) % n;
        self.in_flight += 1;
        if self.in_flight == n {
            // Full: the oldest frame is the one in the slot submitted to next.
            let oldest = self.next;
            let result = {
                let mut g = self.slots[oldest].wait_for(State::Done)?;
                std::mem::replace(&mut g.result, Ok(()))
            };
            self.ready = Some(oldest);
            result?;
        }
        Ok(())
    }

    fn decode(&mut self, out: &mut Detections) -> Result<(), DetectorError> {
        out.clear();
        let Some(i) = self.ready.take() else {
            // Still filling the pool at start-up: no frame has finished yet.
            return Ok(());
        };
        let mut g = self.slots[i].lock()?;
        out.extend_from_slice(&g.detections)
            .map_err(|_| DetectorError::Decode("detections overflow".into()))?;
        g.state = State::Idle;
        self.in_flight -= 1;
        Ok(())
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn latency(&self) -> usize {
        self.slots.len() - 1
    }
}

impl Drop for DetectorPool {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Ok(mut g) = slot.inner.lock() {
                g.state = State::Stop;
            }
            slot.changed.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Maps a pool's lagging detections back to the frame they came from: a tag (camera,
/// timestamp, sequence number, ...) for each of the last `latency + 1` frames, in a ring
/// sized at start-up.
#[derive(Debug)]
pub struct FrameLag<T> {
    ring: heapless::Deque<T, 17>,
    latency: usize,
}

impl<T: Copy> FrameLag<T> {
    /// A ring for a detector that trails by `latency` frames (at most 16).
    pub fn new(latency: usize) -> Self {
        FrameLag {
            ring: heapless::Deque::new(),
            latency: latency.min(16),
        }
    }

    /// Records the tag of the frame just invoked and returns the tag of the frame the next
    /// decode describes (while the pool fills, the first frame's).
    pub fn push(&mut self, tag: T) -> T {
        let _ = self.ring.push_back(tag);
        if self.ring.len() > self.latency {
            self.ring.pop_front().unwrap_or(tag)
        } else {
            self.ring.front().copied().unwrap_or(tag)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn frame_lag_returns_the_frame_n_minus_1_back() {
        let ms = Duration::from_millis;
        let mut lag = FrameLag::new(0);
        assert_eq!(lag.push((ms(5), 1)), (ms(5), 1));
        assert_eq!(lag.push((ms(6), 2)), (ms(6), 2));
        let mut lag = FrameLag::new(2);
        // Filling: the first frame's time, no detections yet.
        assert_eq!(lag.push((ms(10), 1)), (ms(10), 1));
        assert_eq!(lag.push((ms(20), 2)), (ms(10), 1));
        // Full: each decode describes the frame two invokes back.
        assert_eq!(lag.push((ms(30), 3)), (ms(10), 1));
        assert_eq!(lag.push((ms(40), 4)), (ms(20), 2));
        assert_eq!(lag.push((ms(50), 5)), (ms(30), 3));
    }
}
