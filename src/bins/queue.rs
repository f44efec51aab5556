//! The bounded queue between the frame loop, which closes bins, and the writer thread: a ring
//! of [`BinRecord`]s allocated at start-up. A bin that finds the ring full (the disk has hung
//! for several bins) is dropped and counted; the frame loop never waits.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::accum::BinRecord;

#[derive(Debug)]
struct Ring {
    slots: Box<[BinRecord]>,
    head: usize,
    len: usize,
}

/// A bounded queue of fixed-size bin records, shared by the frame loop and the writer.
#[derive(Debug)]
pub struct BinQueue {
    ring: Mutex<Ring>,
    ready: Condvar,
    /// Bins closed and offered.
    pub closed: AtomicU64,
    /// Bins dropped because the ring was full.
    pub dropped: AtomicU64,
}

impl BinQueue {
    /// A queue of `capacity` bins (at least 1) of `zones` zones, `lines` lines and `cameras`
    /// cameras.
    pub fn new(capacity: usize, zones: usize, lines: usize, cameras: usize) -> BinQueue {
        let slots = (0..capacity.max(1))
            .map(|_| BinRecord::new(zones, lines, cameras))
            .collect();
        BinQueue {
            ring: Mutex::new(Ring {
                slots,
                head: 0,
                len: 0,
            }),
            ready: Condvar::new(),
            closed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Every update is a copy and two integer stores: a poisoned lock is still consistent.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a copy of `record`; when the ring is full it is dropped and counted instead.
    pub fn push(&self, record: &BinRecord) {
        self.closed.fetch_add(1, Relaxed);
        let mut r = self.lock();
        let cap = r.slots.len();
        if r.len == cap {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        let tail = (r.head + r.len) % cap;
        r.slots[tail].copy_from(record);
        r.len += 1;
        drop(r);
        self.ready.notify_one();
    }

    /// Moves the oldest bin into `into`; false when empty.
    pub fn pop_into(&self, into: &mut BinRecord) -> bool {
        let mut r = self.lock();
        Self::take(&mut r, into)
    }

    /// Like [`BinQueue::pop_into`], waiting up to `wait` for a bin.
    pub fn pop_wait(&self, into: &mut BinRecord, wait: Duration) -> bool {
        let r = self.lock();
        let (mut r, _) = self
            .ready
            .wait_timeout_while(r, wait, |r| r.len == 0)
            .unwrap_or_else(|e| e.into_inner());
        Self::take(&mut r, into)
    }

    fn take(r: &mut Ring, into: &mut BinRecord) -> bool {
        if r.len == 0 {
            return false;
        }
        into.copy_from(&r.slots[r.head]);
        r.head = (r.head + 1) % r.slots.len();
        r.len -= 1;
        true
    }

    /// Bins waiting now.
    pub fn queued(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_new_bin_and_counts_it() {
        let q = BinQueue::new(2, 1, 0, 1);
        let mut r = BinRecord::new(1, 0, 1);
        for start in [10, 20, 30] {
            r.start = start;
            q.push(&r);
        }
        assert_eq!(q.dropped.load(Relaxed), 1);
        assert_eq!(q.closed.load(Relaxed), 3);
        let mut out = BinRecord::new(1, 0, 1);
        assert!(q.pop_wait(&mut out, Duration::ZERO));
        assert_eq!(out.start, 10);
        assert!(q.pop_into(&mut out));
        assert_eq!(out.start, 20);
        assert!(!q.pop_wait(&mut out, Duration::from_millis(1)));
    }
}
