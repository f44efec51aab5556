//! Traffic data bins: every `bins.interval_min` minutes of UTC wall time, per zone and per
//! line, the volume per class and direction, occupancy, the longest queue and the camera's
//! faults, kept on disk in daily CSV files that survive a restart or a power cut.
//!
//! - the frame loop adds each frame into a [`BinAccumulator`] (fixed tables, no allocation)
//!   and, when the wall clock passes a bin's end, copies the finished record into a
//!   [`BinQueue`] (bounded; a full queue drops the bin and counts it);
//! - the **writer** thread takes records from the queue, formats their rows, appends them to
//!   the day's file with an fsync, and prunes old days ([`store::BinStore`]);
//! - `GET /bins.csv` and `edgewatch bins` read the files back ([`store::copy_range`]).
//!
//! A bin is written when it ends, so a restart or power cut loses at most the running bin.

pub mod accum;
pub mod queue;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use accum::{BinAccumulator, BinRecord};
pub use queue::BinQueue;
pub use store::{BinLimits, BinStore, Layout, TimeRange};

/// Bins the queue holds for the writer: an hour of 15-minute bins with the disk stuck.
pub const QUEUE_BINS: usize = 4;
/// How often the writer looks at its stop flag while the queue is empty.
const WRITER_POLL: Duration = Duration::from_millis(200);

/// Why the bins could not start.
#[derive(Debug, thiserror::Error)]
pub enum BinsError {
    /// The folder could not be created or read.
    #[error("bins.dir: {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the bins writer thread: {0}")]
    Thread(std::io::Error),
}

/// The writer's counters and the queue's, for `/health` and `/metrics`, and where the files
/// are, for `/bins.csv`.
#[derive(Debug)]
pub struct BinStats {
    dir: PathBuf,
    queue: Arc<BinQueue>,
    /// Bins written and synced.
    pub written: AtomicU64,
    /// Bins whose write failed (disk full, I/O error).
    pub failed: AtomicU64,
    /// Day files deleted to stay within `retention_days` and `max_bytes`.
    pub pruned: AtomicU64,
}

/// One reading of [`BinStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinCounts {
    /// Bins closed by the frame loop.
    pub closed: u64,
    /// Bins written and synced.
    pub written: u64,
    /// Bins dropped: the queue was full.
    pub dropped: u64,
    /// Bins whose write failed.
    pub failed: u64,
    /// Day files deleted.
    pub pruned: u64,
    /// Bins waiting for the writer.
    pub queued: usize,
}

impl BinStats {
    /// Counters for the files in `dir`, fed through `queue`.
    pub fn new(dir: &Path, queue: Arc<BinQueue>) -> BinStats {
        BinStats {
            dir: dir.to_path_buf(),
            queue,
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
        }
    }

    /// The folder of the day files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The queue the frame loop closes bins into.
    pub fn queue(&self) -> &Arc<BinQueue> {
        &self.queue
    }

    /// The counters now.
    pub fn counts(&self) -> BinCounts {
        BinCounts {
            closed: self.queue.closed.load(Relaxed),
            written: self.written.load(Relaxed),
            dropped: self.queue.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            pruned: self.pruned.load(Relaxed),
            queued: self.queue.queued(),
        }
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct BinWriter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl BinWriter {
    /// Writes what is queued, then stops. The running bin is not written: it is incomplete.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        if self.thread.join().is_err() {
            log::error!("the bins writer thread panicked");
        }
    }
}

/// Starts the writer: bins from `stats`' queue go into `store` as rows named by `layout`.
pub fn start(
    store: BinStore,
    layout: Layout,
    stats: Arc<BinStats>,
) -> Result<BinWriter, BinsError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bins-writer".into())
        .spawn(move || write_loop(store, &layout, &stats, &flag))
        .map_err(BinsError::Thread)?;
    Ok(BinWriter { stop, thread })
}

fn write_loop(mut store: BinStore, layout: &Layout, stats: &BinStats, stop: &AtomicBool) {
    let queue = stats.queue();
    let mut record = BinRecord::new(layout.zones.len(), layout.lines.len(), cameras(layout));
    let mut rows = Vec::with_capacity(64 * 1024);
    loop {
        if !queue.pop_wait(&mut record, WRITER_POLL) {
            if stop.load(Relaxed) {
                return;
            }
            continue;
        }
        write_one(&mut store, layout, stats, &record, &mut rows);
    }
}

/// How many cameras the layout's zones and lines name (the record's camera table).
fn cameras(layout: &Layout) -> usize {
    let most = layout.zones.iter().chain(&layout.lines).map(|z| z.1 + 1);
    most.max().unwrap_or(0)
}

/// Writes one bin and prunes; failures are counted and logged sparsely, never fatal.
pub fn write_one(
    store: &mut BinStore,
    layout: &Layout,
    stats: &BinStats,
    record: &BinRecord,
    rows: &mut Vec<u8>,
) {
    rows.clear();
    let day = record.start / crate::utc::DAY_S;
    let written = store::write_rows(record, layout, rows).and_then(|()| store.append(day, rows));
    match written {
        Ok(()) => {
            stats.written.fetch_add(1, Relaxed);
        }
        Err(e) => {
            let failed = stats.failed.fetch_add(1, Relaxed) + 1;
            if failed.is_power_of_two() {
                log::warn!(
                    "bins: cannot write to {} ({failed} bins lost so far): {e}",
                    store.dir().display()
                );
            }
        }
    }
    match store.prune(day) {
        Ok(n) => {
            stats.pruned.fetch_add(n, Relaxed);
        }
        Err(e) => log::warn!("bins: cannot prune {}: {e}", store.dir().display()),
    }
}
